# secretfs in a container: a multi-stage build (Rust toolchain, then a slim Debian with glibc
# and fuse3). Run it with /dev/fuse and CAP_SYS_ADMIN (README "Containers and Kubernetes").
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends fuse3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/secretfs /usr/local/bin/secretfs
COPY LICENSE /usr/share/doc/secretfs/LICENSE
# The mount point must be empty and writable only by its owner.
RUN install -d -m 0755 /run/secrets
ENTRYPOINT ["/usr/local/bin/secretfs"]
CMD ["mount", "-f", "/run/secrets", "--read-only", "--allow-other", "--file-mode", "0444", "--dir-mode", "0555"]
