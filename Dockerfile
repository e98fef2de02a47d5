# One image per OMS binary: docker build --build-arg BIN=<package> .
# (every service package builds a binary of the same name).
FROM rust:1.95-bookworm AS build
ARG BIN
WORKDIR /src
COPY . .
RUN test -n "$BIN" && cargo build --release --locked -p "$BIN" && cp "target/release/$BIN" /app

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /app /usr/local/bin/app
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/app"]
