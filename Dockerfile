# syntax=docker/dockerfile:1
#
# k8s-deployer as a distroless, non-root image:
#   docker build -t k8s-deployer:dev .
# Configuration comes from the environment (see manifests/base/deployment.yaml); the image
# sets none, so that `docker run` gets the binary's own defaults.

# --- build ---------------------------------------------------------------------------------
# Bookworm, as the runtime image below: the binary links the same glibc.
FROM rust:1.95-bookworm AS build
WORKDIR /src

# The dependencies first, in a layer that only Cargo.toml and Cargo.lock invalidate: an empty
# library, binary and build script with the real manifests build every dependency and build
# dependency (protox, tonic-prost-build) of the release binary.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' >build.rs \
    && echo 'fn main() {}' >src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin k8s-deployer \
    && rm -rf build.rs src

# Then the crate itself. protox compiles the .proto in build.rs, so no protoc is needed. The
# sources are touched because COPY keeps their (older) modification times, which would let
# cargo take the empty placeholders above for up to date.
COPY build.rs ./
COPY proto ./proto
COPY src ./src
RUN touch build.rs src/lib.rs src/main.rs \
    && cargo build --release --locked --bin k8s-deployer \
    && install -D -m 0755 target/release/k8s-deployer /out/k8s-deployer

# --- runtime -------------------------------------------------------------------------------
# glibc, libgcc and CA certificates; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/k8s-deployer /usr/local/bin/k8s-deployer
# Numeric, so that the kubelet can check runAsNonRoot without looking the name up.
USER 65532:65532
# gRPC over TLS, and the plaintext health port for the kubelet's gRPC probes.
EXPOSE 50051 8081
ENTRYPOINT ["/usr/local/bin/k8s-deployer"]
