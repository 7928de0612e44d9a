# secretfs in a container: a multi-stage build (Rust toolchain, then a slim Debian with glibc
# and fuse3). Run it with /dev/fuse and CAP_SYS_ADMIN (README "Containers and Kubernetes").
# Base images pinned to a release (the toolchain this tree is tested with; Debian 12); pin
# digests (@sha256:...) in your own registry.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: source changes do not rebuild the SDK crates.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src target/release/deps/secretfs* target/release/secretfs*
COPY src ./src
RUN cargo build --release --locked

FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends fuse3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/secretfs /usr/local/bin/secretfs
COPY LICENSE /usr/share/doc/secretfs/LICENSE
# The mount point must be empty and writable only by its owner.
RUN install -d -m 0755 /run/secrets
ENTRYPOINT ["/usr/local/bin/secretfs"]
CMD ["mount", "-f", "/run/secrets", "--read-only", "--allow-other", "--file-mode", "0444", "--dir-mode", "0555"]
