#!/usr/bin/env bash
# The one test command (README "Run the tests"): installs what the tests need on a fresh
# Debian machine (fuse3, a Python virtualenv with moto), then runs format, lint and all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --features shuttle --test shuttle_core --quiet -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast
else
    cargo test --no-fail-fast
fi
echo "== schedule exploration (shuttle)"
cargo test --features shuttle --test shuttle_core --quiet
