# syntax=docker/dockerfile:1
# One image with every OMS binary (omsctl and the six services), built once: compose.yaml and
# the Kubernetes manifests run each service from it by naming its binary as the command.
#   docker build -t oms:local .
# BuildKit cache mounts keep the crates downloaded and the compiled dependencies between builds,
# so a change to the sources rebuilds only the workspace's own crates.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/omsctl target/release/oms-order target/release/oms-payment \
          target/release/oms-inventory target/release/oms-notification target/release/oms-saga \
          target/release/oms-fulfillment /out/

FROM debian:bookworm-slim
# libssl3: librdkafka speaks TLS and SASL/SCRAM through the system's OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# bash answers the compose healthchecks (/dev/tcp), so the image needs no HTTP client.
USER 10001:10001
CMD ["omsctl", "--help"]
