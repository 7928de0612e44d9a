#!/usr/bin/env bash
# Longer fuzz run (on demand, not in CI): runs the proptest fuzz targets of tests/fuzz_parsers.rs
# (JSON directory view, local store file, names) and of the binary (config file, mount.fuse
# options) in a release build, again and again with fresh random seeds, until DURATION passes.
#   ./scripts/fuzz.sh 7200        (seconds, or any `sleep` duration such as 2h; default 1h)
#   CASES=50000 ./scripts/fuzz.sh (cases per target per round)
# A failure stops the run and prints proptest's shrunk input.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-1h}"
export PROPTEST_CASES="${CASES:-20000}"
# Built once and run directly, so edits made while it runs do not rebuild it.
built=$(cargo test --release --no-run --test fuzz_parsers --bin secretfs 2>&1 | grep -oE '\(target/release/deps/[^)]+\)' | tr -d '()')
parsers=$(grep fuzz_parsers <<<"$built")
binary=$(grep -v fuzz_parsers <<<"$built")
start=$(date +%s)
( sleep "$duration" ) & timer=$!
rounds=0
while kill -0 "$timer" 2>/dev/null; do
    "$parsers" --quiet >/tmp/secretfs-fuzz.log 2>&1 \
        && "$binary" --quiet any_ >>/tmp/secretfs-fuzz.log 2>&1 \
        || { cat /tmp/secretfs-fuzz.log; kill "$timer"; exit 1; }
    rounds=$((rounds + 1))
done
elapsed=$(( $(date +%s) - start ))
echo "fuzz: $rounds rounds x $PROPTEST_CASES cases x 5 targets in ${elapsed}s, no failure"
