# Container image of `connector-token` (the token-file agent) for the
# deploy/ecs and deploy/kubernetes fragments. Build from the repository root:
#   docker build -f deploy/connector-token.Dockerfile -t connector-token .
# The binary is the release build of connector-client's `connector-token`
# with its default features (cli, aws-iam).
#
# /var/run/connector is a VOLUME owned by the image's user (10001:10001, mode
# 0750): ECS copies that ownership into the task's bind-mount volume, so the
# non-root agent can write there; a connector running with group 10001 can
# read a token written with --mode 0640.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p connector-client --bin connector-token \
 && strip target/release/connector-token

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 connector-token \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin connector-token \
 && mkdir -p /var/run/connector \
 && chown 10001:10001 /var/run/connector \
 && chmod 0750 /var/run/connector
COPY --from=build /src/target/release/connector-token /usr/local/bin/connector-token
USER 10001:10001
VOLUME ["/var/run/connector"]
ENV CONNECTOR_TOKEN_FILE=/var/run/connector/token
ENTRYPOINT ["/usr/local/bin/connector-token"]
CMD ["agent"]
