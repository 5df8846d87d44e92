#!/usr/bin/env bash
# Instructions per packet or frame, counted by valgrind's callgrind: deterministic (the
# same binary gives the same count on every run, whatever the machine's load), so it
# can steer the data path on a noisy machine where wall-clock ratios cannot.
#
#   scripts/icount.sh            the ring and VMBus rows (about 5 minutes on 2 cores)
#   scripts/icount.sh ring       only the ring rows (or: vmbus, core, vm)
#   scripts/icount.sh nic        the NIC rows: slow, see below
#   HOT=1 scripts/icount.sh ...  also the hottest functions of each row
#
# Each row runs its harness twice, with N1 and N2 packets, and prints
# (Ir(N2) - Ir(N1)) / (N2 - N1): setup and teardown cancel out. Both ends are counted
# (every thread of the process). Harnesses:
#   ring    benches/icount.rs: one thread writes, commits, reads and commits; the
#           minimal ring of that file is the baseline in the same table
#   vmbus   benches/vmbus.rs with VMBUS_BENCH_PROBE=rtt|stream: a 64-byte request and
#           its reply, or 1500-byte packets one way, over a VMBus channel (sim
#           partition, HostBus, GuestBus; every thread counted, spin-waits included,
#           so these rows move by a few percent between runs)
#   core    benches/icount_nic.rs: the netvsp core (NicCore) alone on one thread, a
#           switch port its backend: a guest's SEND_RNDIS_PKT to the frame on the wire,
#           and frames from the wire to completed transfer pages (no rings, no netvsc)
#   vm      benches/icount_vm.rs: the whole NIC, host and guest, on one thread (polled
#           HostBus and Netvsp, polled GuestBus on SimPlatform::on_one_thread,
#           netvsc), 1 and 2 queues, 32 frames per turn or 1; every instruction of a
#           frame on both sides (no cross-thread cost: callgrind cannot count that)
#   nic     benches/nic.rs with NIC_BENCH_PROBE=g2h|h2g: frames through netvsp and
#           netvsc on the sim partition (1 and 2 queues), each side on its own
#           threads, a bench backend (no switch). Not in the default table: the
#           spin-waits of two threads run one at a time by valgrind are counted too
# Installs valgrind with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
if ! command -v valgrind >/dev/null; then
  echo "installing valgrind"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
echo "building the harnesses (release)"
cargo build -q --release -p vmbus-benches --bin icount
bench_bin() { # the bench executable for $1, built
  cargo bench -q -p vmbus-benches --bench "$1" --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep "/deps/$1-" | tail -1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions of one run of "$@" (all threads).
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out.%p" "$@" >/dev/null 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; return 1; }
  local f
  f=$(ls -t "$tmp"/out.* | head -1)
  local total
  total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f" | head -1)
  if [ -n "${HOT:-}" ]; then
    callgrind_annotate --inclusive=no "$f" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '3,10p' >"$tmp/hot"
  fi
  rm -f "$tmp"/out.*
  echo "$total"
}

# per N1 N2 cmd...: instructions per item, with "{}" in cmd replaced by the count.
# per_env N1 N2 VAR cmd...: the same with the count in environment variable VAR.
per() {
  local n1=$1 n2=$2
  shift 2
  local a b
  a=$(ir "${@//\{\}/$n1}")
  b=$(ir "${@//\{\}/$n2}")
  report "$a" "$b" "$n1" "$n2"
}
per_env() {
  local n1=$1 n2=$2 var=$3
  shift 3
  local a b
  a=$(export "$var=$n1"; ir "$@")
  b=$(export "$var=$n2"; ir "$@")
  report "$a" "$b" "$n1" "$n2"
}
report() {
  local a=$1 b=$2 n1=$3 n2=$4
  if [ -z "$a" ] || [ -z "$b" ]; then
    echo "failed"
  else
    echo $(((b - a) / (n2 - n1)))
  fi
}

row() { # label, count
  printf '| %-44s | %8s |\n' "$1" "$2"
  if [ -n "${HOT:-}" ] && [ -s "$tmp/hot" ]; then sed 's/^/    /' "$tmp/hot"; fi
}

echo
echo "| instructions per packet or frame (callgrind, $(git rev-parse --short HEAD), $(date -u +%F)) | Ir |"
echo "|---|---:|"
if [ "$what" = all ] || [ "$what" = ring ]; then
  icount=target/release/icount
  for size in 64 1500 16384; do
    # Fewer packets for the large size: callgrind runs about 50x slower than native.
    if [ "$size" = 16384 ]; then n1=2000 n2=12000; else n1=20000 n2=120000; fi
    for every in 1 16; do
      for ring in mini flat double paged; do
        row "ring $ring ${size} B, commit per $every" "$(per $n1 $n2 $icount $ring $size $every '{}')"
      done
    done
  done
fi
if [ "$what" = all ] || [ "$what" = vmbus ]; then
  vb=$(bench_bin vmbus)
  row "vmbus channel round trip (64 B each way)" \
    "$(VMBUS_BENCH_PROBE=rtt per_env 2000 12000 VMBUS_BENCH_ITERS "$vb" --bench)"
  row "vmbus channel stream (1500 B)" \
    "$(VMBUS_BENCH_PROBE=stream per_env 20000 120000 VMBUS_BENCH_ITERS "$vb" --bench)"
fi
if [ "$what" = all ] || [ "$what" = core ]; then
  for dir in g2h g2h-sub h2g; do
    for size in 64 1514; do
      row "netvsp core $dir $size B (one thread)" \
        "$(per 10000 30000 target/release/icount nic-$dir $size 1 '{}')"
    done
  done
fi
if [ "$what" = all ] || [ "$what" = vm ]; then
  for dir in g2h h2g; do
    for size in 64 1514; do
      for q in 1 2; do
        row "NIC $dir $size B, $q queue(s), 32 a turn" \
          "$(per 10000 30000 target/release/icount vm-$dir $size 32 '{}' $q)"
      done
      row "NIC $dir $size B, 1 queue, 1 a turn" \
        "$(per 10000 30000 target/release/icount vm-$dir $size 1 '{}' 1)"
    done
  done
fi
if [ "$what" = nic ]; then
  nb=$(bench_bin nic)
  for q in 1 2; do
    for dir in g2h h2g; do
      for size in 64 1514; do
        row "NIC $dir $size B, $q queue(s), both threads" \
          "$(NIC_BENCH_QUEUES=$q NIC_BENCH_SIZE=$size NIC_BENCH_PROBE=$dir per_env 20000 120000 NIC_BENCH_FRAMES "$nb" --bench)"
      done
    done
  done
fi
