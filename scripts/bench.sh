#!/usr/bin/env bash
# Benchmarks (on demand, not in CI): builds this tree and a baseline commit in release mode,
# then runs tests/bench_freshness.rs, which prints each figure for both builds side by side.
#   BASELINE_REV=<commit> ./scripts/bench.sh      (default: the last commit before the freshness engine)
#   BENCH=<filter> ./scripts/bench.sh             (one scenario, e.g. BENCH=mount_ready)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export MOTO_SERVER="$PWD/.venv/bin/moto_server"
BASELINE_REV="${BASELINE_REV:-52a26ac}"
baseline_tree="target/baseline-src"
if [ ! -d "$baseline_tree" ]; then
    git worktree add --detach "$baseline_tree" "$BASELINE_REV"
fi
git -C "$baseline_tree" checkout --quiet --detach "$BASELINE_REV"
echo "== building the baseline ($BASELINE_REV) and this tree (release)"
CARGO_TARGET_DIR="$PWD/target/baseline" cargo build --release --quiet --manifest-path "$baseline_tree/Cargo.toml"
export SECRETFS_BASELINE="$PWD/target/baseline/release/secretfs"
export MOUNT_DEADLINE_SECS=600
cargo test --release --quiet --test bench_freshness -- --ignored --nocapture --test-threads 1 ${BENCH:-} \
    | grep -oE '(BENCH|  \().*' || true
