#!/usr/bin/env bash
# Benchmarks (on demand, not in CI): builds this tree and a baseline commit in release mode,
# then runs tests/bench_hot_path.rs (warm reads, stat, ls -l and 32-thread throughput next to
# tmpfs), tests/bench_memory.rs (resident memory over ten passes of 52,000 values) and
# tests/bench_freshness.rs, which print each figure for both builds side by side, and
# tests/bench_cli.rs (`secretfs get` next to the AWS CLI and boto3, each a new process).
#   BASELINE_REV=<commit> ./scripts/bench.sh      (default: e5a3895, main before the hot-path work)
#   BENCH=<filter> ./scripts/bench.sh             (one scenario, e.g. BENCH=mount_ready)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export MOTO_SERVER="$PWD/.venv/bin/moto_server"
BASELINE_REV="${BASELINE_REV:-e5a3895}"
baseline_tree="target/baseline-src"
if [ ! -d "$baseline_tree" ]; then
    git worktree add --detach "$baseline_tree" "$BASELINE_REV"
fi
git -C "$baseline_tree" checkout --quiet --detach "$BASELINE_REV"
echo "== building the baseline ($BASELINE_REV) and this tree (release)"
CARGO_TARGET_DIR="$PWD/target/baseline" cargo build --release --quiet --manifest-path "$baseline_tree/Cargo.toml"
export SECRETFS_BASELINE="$PWD/target/baseline/release/secretfs"
cargo build --release --quiet
export SECRETFS_BUILD="$PWD/target/release/secretfs"
cargo test --release --quiet --test bench_hot_path -- --ignored --nocapture --test-threads 1 | grep -oE 'BENCH.*' || true
cargo test --release --quiet --test bench_memory -- --ignored --nocapture | grep -oE 'BENCH.*' || true
# The AWS CLI and boto3 for the process-to-value comparison, in a virtualenv of their own (the
# AWS CLI pins its botocore, which must not move moto's).
export BENCH_VENV="$PWD/target/bench-venv"
if [ ! -x "$BENCH_VENV/bin/aws" ]; then
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install --quiet awscli boto3
fi
cargo test --quiet --test bench_cli -- --ignored --nocapture --test-threads 1 | grep -oE 'BENCH.*' || true
export MOUNT_DEADLINE_SECS=600
cargo test --release --quiet --test bench_freshness -- --ignored --nocapture --test-threads 1 ${BENCH:-} \
    | grep -oE '(BENCH|  \().*' || true
# The fleet simulator's table (the real cache engine of up to 1,000 hosts on a fake clock).
cargo test --release --quiet --test fleet -- --ignored --nocapture | grep -oE 'FLEET.*' || true
