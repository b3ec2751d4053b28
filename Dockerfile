# syntax=docker/dockerfile:1

# Build stage: protox compiles the .proto in build.rs, so no protoc is needed.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
RUN cargo build --release --locked --bin k8s-deployer \
    && cp target/release/k8s-deployer /usr/local/bin/k8s-deployer

# Runtime stage: glibc and libgcc only, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/k8s-deployer /usr/local/bin/k8s-deployer
USER nonroot
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/k8s-deployer", "--listen", "0.0.0.0:50051"]
