# syntax=docker/dockerfile:1.7
# switchyard: multi-stage build of the router binary into a small Debian runtime.
#   docker build -t switchyard:0.1.0 .
#   docker run -p 8080:8080 -v "$PWD/config:/app/config:ro" switchyard:0.1.0

# ---- build ----
FROM rust:1.89.0-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other crates: cargo reads every member, and `switchyard demo` (feature `demo`,
# on by default) links the mock engine's library.
COPY mock/Cargo.toml ./mock/Cargo.toml
COPY mock/src ./mock/src
COPY load/Cargo.toml ./load/Cargo.toml
COPY load/src ./load/src
# The catalogue data and templates are compiled into the binary (include_str!).
COPY catalogue ./catalogue
# Cache mounts keep the registry and incremental artefacts between builds; the binary is copied
# out of the mounted target dir because the mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchyard --bin switchyard \
    && cp target/release/switchyard /usr/local/bin/switchyard

# ---- runtime ----
FROM debian:12.12-slim
# ca-certificates for TLS to remote providers (the HEALTHCHECK is the binary itself, so no
# curl). The pin is the current bookworm version: bump it when Debian ships an update and the
# build reports the pinned version as missing.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates=20250419~deb12u2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 switchyard \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin switchyard \
    && mkdir -p /app/config /app/var \
    && chown -R 10001:10001 /app

COPY --from=builder /usr/local/bin/switchyard /usr/local/bin/switchyard

WORKDIR /app
# 0.0.0.0: reachable through the container's published port. With no client key the router
# then refuses to start (an open /v1 must be a decision): run it with API_KEYS (or KEYS_FILE),
# or with ALLOW_UNAUTHENTICATED=true on purpose. See docs/operations.md#running-it.
ENV HOST=0.0.0.0 \
    PORT=8080 \
    RUST_LOG=info
# config/ holds models.yaml (and routing.yaml); var/ the SQLite request log and job files.
VOLUME ["/app/config", "/app/var"]
USER 10001:10001
EXPOSE 8080

# HTTPS without a proxy: mount a PEM certificate and key (e.g. -v ./tls:/app/tls:ro) and run
# with -e TLS_CERT_FILE=/app/tls/tls.crt -e TLS_KEY_FILE=/app/tls/tls.key (docs/operations.md,
# "Serving HTTPS"); HTTP/2 is offered through ALPN.
# GET http://127.0.0.1:$PORT/health (the subcommand reads PORT itself), exit 0 on a 200; with
# TLS_CERT_FILE set it probes https:// instead (certificate unchecked on loopback).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["switchyard", "healthcheck", "--timeout", "2"]

ENTRYPOINT ["switchyard"]
CMD ["serve", "--config", "/app/config/models.yaml"]
