#!/usr/bin/env bash
# Builds a small Linux guest kernel with hv_vmbus and hv_netvsc built in and IP
# autoconfiguration, from Debian's linux-source-6.1 (the same kernel version and
# drivers as Debian's linux-image-amd64, configured down to what a VMBus NIC test
# needs). It needs no user space: the kernel brings eth0 up itself (ip=...) and,
# with `root=/dev/sda rootwait` and no disk, waits for a root device forever with
# networking alive. For hosts whose KVM cannot run guest user space (kvm_pvm here).
#
#   scripts/guest-kernel.sh            -> target/guest/tiny-smp/vmlinux (cached)
#
# SMP (up to 4 CPUs): booted with 2 vCPUs, Linux asks for a subchannel and sets RSS.
#
# Built in: the test agent scripts/guest-kernel/hvtest.c (off unless hvtest.port=N is
# on the command line; see that file for its commands).
#
# Installs linux-source-6.1, flex, bison and libelf-dev with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=target/guest/tiny-smp
src=$out/linux-6.1
mkdir -p "$out"
agent=scripts/guest-kernel/hvtest.c
if [ -f "$out/vmlinux" ] && [ "$out/vmlinux" -nt "$0" ] && [ "$out/vmlinux" -nt "$agent" ]; then
  echo "$out/vmlinux (cached)"
  exit 0
fi
tarball=/usr/src/linux-source-6.1.tar.xz
need=()
[ -f "$tarball" ] || need+=(linux-source-6.1)
for tool in make gcc flex bison bc xz; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=("${need[@]/#xz/xz-utils}")
  echo "installing ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if [ ! -f "$src/Makefile" ]; then
  echo "extracting $tarball"
  rm -rf "$src"
  tar -C "$out" -xf "$tarball"
  mv "$out"/linux-source-6.1 "$src"
fi
cd "$src"
# The test agent (scripts/guest-kernel/hvtest.c, GPL-2.0): built in, off unless the
# command line says hvtest.port=N.
cp "$root/$agent" drivers/misc/hvtest.c
grep -q '^obj-y += hvtest.o$' drivers/misc/Makefile || echo 'obj-y += hvtest.o' >>drivers/misc/Makefile
make -s tinyconfig
# What a VMBus NIC guest needs on top of tinyconfig (symbols from Linux 6.1 Kconfig).
# HZ is a choice: the default (HZ_250) must be turned off for HZ_100 to stick.
enable=(64BIT PRINTK PRINTK_TIME EARLY_PRINTK BUG KALLSYMS
  TTY SERIAL_8250 SERIAL_8250_CONSOLE BLOCK PROC_FS SYSFS BINFMT_ELF
  CPU_SUP_INTEL CPU_SUP_AMD ACPI PCI
  HYPERVISOR_GUEST PARAVIRT HYPERV HYPERV_NET
  NET INET NETDEVICES IP_PNP HZ_100 NO_HZ_IDLE SMP)
disable=(MODULES IPV6 WIRELESS WLAN ETHERNET HZ_250)
args=()
for sym in "${enable[@]}"; do args+=(-e "$sym"); done
for sym in "${disable[@]}"; do args+=(-d "$sym"); done
./scripts/config "${args[@]}" --set-val NR_CPUS 4
make -s olddefconfig
# Every option must have stuck (a dependency olddefconfig could not meet undoes it).
for sym in "${enable[@]}"; do
  grep -q "^CONFIG_${sym}=y" .config || { echo "CONFIG_$sym did not stick" >&2; exit 1; }
done
for sym in "${disable[@]}"; do
  ! grep -q "^CONFIG_${sym}=y" .config || { echo "CONFIG_$sym is still set" >&2; exit 1; }
done
grep -q '^CONFIG_HZ=100$' .config || { echo "CONFIG_HZ is not 100" >&2; exit 1; }
grep -q '^CONFIG_NR_CPUS=4$' .config || { echo "CONFIG_NR_CPUS is not 4" >&2; exit 1; }
echo "building vmlinux (make -j$(nproc))"
make -s -j"$(nproc)" vmlinux
cp vmlinux ../vmlinux
echo "$out/vmlinux"
