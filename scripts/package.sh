#!/usr/bin/env bash
# Builds the Debian package: the release binary, its man page and completions, the systemd unit
# (pointing at /usr/bin) and the default options file, then `cargo deb --no-build`.
# Needs cargo-deb (`cargo install --locked cargo-deb`). The .deb lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
mkdir -p target/package
bin=target/release/secretfs
"$bin" manpage | gzip -9n > target/package/secretfs.8.gz
"$bin" completions bash > target/package/secretfs.bash
"$bin" completions zsh > target/package/_secretfs
"$bin" completions fish > target/package/secretfs.fish
sed 's|/usr/local/bin/secretfs|/usr/bin/secretfs|g' systemd/secretfs.service > target/package/secretfs.service
cargo deb --no-build --no-strip
