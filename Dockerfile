# Release image of the Tenantry controller. Multi-stage: the build stage runs the same
# `cargo build --release --locked` that CI runs; the runtime stage holds only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other members (the benchmark, the tests' testkit): cargo loads their manifests
# to resolve the lock file, but builds only tenantry.
COPY bench/Cargo.toml ./bench/
COPY bench/src ./bench/src
COPY testkit ./testkit
RUN cargo build --release --locked -p tenantry --bin tenantry

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tenantry /usr/local/bin/tenantry
USER 65532:65532
# The manifests (config/manager, the chart) pass `run` and its flags as args.
ENTRYPOINT ["/usr/local/bin/tenantry"]
