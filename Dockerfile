# cdc-relay serve in a container: `docker build -t cdc-relay .`
#
# The binary carries its C libraries (librdkafka, OpenSSL, zstd, zlib, curl are compiled
# in); at run time it needs only glibc, which the distroless base provides without a
# shell or a package manager. It runs as the image's non-root user (65532).
# For Fargate on Graviton (ecs.yaml's default), build for linux/arm64:
#   docker buildx build --platform linux/arm64 -t cdc-relay .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The same release build as the README's and CI's (perl, make and a C compiler are in
# the rust image). An arm64 build compiles librdkafka with CMake (Cargo.toml), which the
# rust image lacks.
RUN if [ "$(uname -m)" = aarch64 ]; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake >/dev/null; \
    fi \
 && cargo build --release --locked --bin cdc-relay \
 && cp target/release/cdc-relay /cdc-relay

FROM gcr.io/distroless/cc-debian12:nonroot
# The routes file beside the binary is the default (RELAY_ROUTES overrides it).
COPY --from=build /cdc-relay /cdc-relay
COPY routes.toml /routes.toml
USER nonroot
EXPOSE 8080
# Exec form: the image has no shell; `cdc-relay health` asks /healthz itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s CMD ["/cdc-relay", "health"]
ENTRYPOINT ["/cdc-relay", "serve"]
