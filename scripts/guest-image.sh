#!/usr/bin/env bash
# Builds the test guest for the kvm backend from Debian's own packages: the kernel
# (linux-image-amd64 of this machine's release; its bzImage and the uncompressed
# vmlinux, which boots faster because it skips the decompressor), hv_vmbus.ko and
# hv_netvsc.ko, and an initramfs with busybox-static, scripts/guest/init and, if
# given, the guest agent binary.
#
#   scripts/guest-image.sh [OUT_DIR] [AGENT_BINARY]
#
# OUT_DIR defaults to target/guest. Downloads are cached there: a second run with the
# same kernel version costs nothing. Nothing downloaded is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-target/guest}"
AGENT="${2:-}"
mkdir -p "$OUT/debs"
OUT="$(cd "$OUT" && pwd)"

if ! command -v apt-get >/dev/null; then
  echo "guest-image: needs apt-get (a Debian or Ubuntu host) to fetch Debian's kernel" >&2
  exit 2
fi

need_update=0
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1 || true)
if [ -z "$pkg" ]; then need_update=1; fi
if [ "$need_update" = 1 ]; then
  apt-get update -qq >/dev/null
  pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
fi
[ -n "$pkg" ] || { echo "guest-image: cannot resolve linux-image-amd64" >&2; exit 1; }
kver="${pkg#linux-image-}"

fetch() { # package -> path of the .deb in the cache
  local p="$1" f
  f=$(ls "$OUT/debs/${p}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    (cd "$OUT/debs" && apt-get download "$p" >/dev/null 2>&1) || {
      apt-get update -qq >/dev/null
      (cd "$OUT/debs" && apt-get download "$p" >/dev/null)
    }
    f=$(ls "$OUT/debs/${p}_"*.deb | head -1)
  fi
  echo "$f"
}

if [ ! -f "$OUT/vmlinux-$kver" ] || [ ! -f "$OUT/modules-$kver/hv_netvsc.ko" ]; then
  kdeb=$(fetch "$pkg")
  tmp=$(mktemp -d)
  dpkg-deb -x "$kdeb" "$tmp"
  cp "$tmp/boot/vmlinuz-$kver" "$OUT/vmlinuz-$kver"
  mkdir -p "$OUT/modules-$kver"
  cp "$tmp/lib/modules/$kver/kernel/drivers/hv/hv_vmbus.ko" \
     "$tmp/lib/modules/$kver/kernel/drivers/net/hyperv/hv_netvsc.ko" "$OUT/modules-$kver/"
  rm -rf "$tmp"
  # The bzImage's payload is an xz stream holding the ELF vmlinux.
  python3 - "$OUT/vmlinuz-$kver" "$OUT/vmlinux-$kver.tmp" <<'PY'
import lzma, sys
data = open(sys.argv[1], 'rb').read()
off = data.find(b'\xfd7zXZ\x00')
if off < 0:
    sys.exit('no xz payload in the bzImage')
out = lzma.LZMADecompressor().decompress(data[off:])
if out[:4] != b'\x7fELF':
    sys.exit('the xz payload is not an ELF')
open(sys.argv[2], 'wb').write(out)
PY
  mv "$OUT/vmlinux-$kver.tmp" "$OUT/vmlinux-$kver"
fi

bdeb=$(fetch busybox-static)
root=$(mktemp -d)
tmp=$(mktemp -d)
dpkg-deb -x "$bdeb" "$tmp"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/lib/modules"
cp "$tmp/bin/busybox" "$root/bin/busybox"
rm -rf "$tmp"
cp scripts/guest/init "$root/init"
chmod 755 "$root/init"
cp "$OUT/modules-$kver/"*.ko "$root/lib/modules/"
if [ -n "$AGENT" ]; then cp "$AGENT" "$root/bin/hv-guest-agent"; fi
# newc cpio written here rather than by cpio(1), which is not on every machine.
python3 - "$root" "$OUT/initramfs.cpio.gz.tmp" <<'PY'
import gzip, os, stat, sys
root, out = sys.argv[1], sys.argv[2]
entries = []
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        entries.append(os.path.join(d, n))
def header(name, st, size):
    fields = [1, st.st_mode, 0, 0, 1 if not stat.S_ISDIR(st.st_mode) else 2,
              int(st.st_mtime), size, 0, 0, 0, 0, len(name) + 1, 0]
    return b'070701' + b''.join(b'%08X' % f for f in fields)
def pad(n):
    return b'\0' * ((4 - n % 4) % 4)
with gzip.open(out, 'wb', compresslevel=1) as f:
    ino = 1
    for path in entries:
        name = os.path.relpath(path, root).encode()
        st = os.lstat(path)
        data = b''
        if stat.S_ISREG(st.st_mode):
            data = open(path, 'rb').read()
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        h = header(name, st, len(data))
        h = h[:6] + b'%08X' % ino + h[14:]
        ino += 1
        rec = h + name + b'\0'
        f.write(rec + pad(len(rec)) + data + pad(len(data)))
    rec = header(b'TRAILER!!!', os.stat(root), 0)[:6] + b'0' * 88 + b'%08X' % 11 + b'0' * 8 + b'TRAILER!!!\0'
    f.write(rec + pad(len(rec)))
PY
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
rm -rf "$root"
ln -sf "vmlinux-$kver" "$OUT/vmlinux"
ln -sf "vmlinuz-$kver" "$OUT/vmlinuz"
echo "guest-image: $OUT/vmlinux ($kver), $OUT/vmlinuz, $OUT/initramfs.cpio.gz"
