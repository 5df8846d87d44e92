#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time each (nightly toolchain required).
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Seeds: hv-fuzz-logic's built-in corpus (written to fuzz/corpus/<target>) plus the committed
# fuzz/seeds/<target> (inputs earlier runs found, replayed by cargo test);
# the corpus the fuzzer grows stays there (git-ignored) and `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run -q -p hv-fuzz-logic --bin write-seeds -- fuzz/corpus
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hv-vmbus-fuzz$')
fi
for t in "${targets[@]}"; do
  echo "== $t (${secs}s)"
  mkdir -p "fuzz/seeds/$t"
  # netvsp_guest inputs carry the send buffer (sections 6,144 bytes apart) before the
  # packets: longer inputs, or the bring-up seeds are cut short.
  case "$t" in netvsp_guest) max_len=32768 ;; *) max_len=4096 ;; esac
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- -max_total_time="$secs" -max_len="$max_len" 2>&1 \
    | grep -E '^(Done|#[0-9]+ +DONE)|SUMMARY|panicked|ERROR' || true
done
