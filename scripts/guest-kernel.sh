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
# Installs linux-source-6.1, flex, bison and libelf-dev with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/guest/tiny-smp
src=$out/linux-6.1
mkdir -p "$out"
if [ -f "$out/vmlinux" ] && [ "$out/vmlinux" -nt "$0" ]; then
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
make -s tinyconfig
# What a VMBus NIC guest needs on top of tinyconfig (symbols from Linux 6.1 Kconfig).
./scripts/config \
  -e 64BIT -e PRINTK -e PRINTK_TIME -e EARLY_PRINTK -e BUG -e KALLSYMS \
  -e TTY -e SERIAL_8250 -e SERIAL_8250_CONSOLE \
  -e BLOCK -e PROC_FS -e SYSFS -e BINFMT_ELF \
  -e CPU_SUP_INTEL -e CPU_SUP_AMD -e ACPI -e PCI \
  -e HYPERVISOR_GUEST -e PARAVIRT -e HYPERV -e HYPERV_NET \
  -e NET -e INET -e NETDEVICES -e IP_PNP \
  -e HZ_100 -e NO_HZ_IDLE -e SMP --set-val NR_CPUS 4 \
  -d MODULES -d IPV6 -d WIRELESS -d WLAN -d ETHERNET
make -s olddefconfig
for sym in HYPERV HYPERV_NET IP_PNP ACPI SERIAL_8250_CONSOLE BLOCK; do
  grep -q "^CONFIG_${sym}=y" .config || { echo "CONFIG_$sym did not stick" >&2; exit 1; }
done
echo "building vmlinux (make -j$(nproc))"
make -s -j"$(nproc)" vmlinux
cp vmlinux ../vmlinux
echo "$out/vmlinux"
