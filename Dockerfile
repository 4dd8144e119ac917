# The demo app's image: pwless-demo, small and non-root. The stack's Deployment runs it with
# DB_ENDPOINT, DB_PORT, DB_NAME, DB_USER, AWS_REGION, RDS_CA_CERT and PORT set (no secret).
#
#   docker build -t ghcr.io/example/pwless-demo:0.1.0 .
#
# Build stage: the workspace's own lock file, release profile, only the demo crate
# (crates/demo, on crates/iam-auth: no Kubernetes client, no EC2 or EKS SDK to compile). Cargo
# reads every member's manifest, so the product's sources come along; they are not built.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY crates ./crates
RUN cargo build --release --locked -p pwless-demo

# The RDS CA bundle the app verifies the database certificate with (RDS_CA_CERT points here).
FROM debian:bookworm-slim AS ca
ADD https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /rds-ca-bundle.pem
RUN chmod 0444 /rds-ca-bundle.pem

# Runtime: distroless with glibc and no shell, as uid/gid 65532 (what the Deployment's
# securityContext asks for); the root filesystem can stay read-only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/pwless-demo /usr/local/bin/pwless-demo
COPY --from=ca /rds-ca-bundle.pem /etc/pwless/rds-ca-bundle.pem
USER 65532:65532
ENV PORT=8080 RDS_CA_CERT=/etc/pwless/rds-ca-bundle.pem
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pwless-demo"]
