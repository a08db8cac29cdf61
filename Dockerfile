# Release image of the Tenantry controller. Multi-stage: the build stage runs the same
# `cargo build --release --locked` that CI runs; the runtime stage holds only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin tenantry

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tenantry /usr/local/bin/tenantry
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tenantry", "run"]
