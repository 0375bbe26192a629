# The engine in a container. With no DATABASE_URL it keeps its data in the
# embedded SQLite store, /var/lib/aion-webhooks/aion-webhooks.db: mount a
# volume there so it outlives the container, and run one container per
# volume (a second engine on the same file refuses to start). For several
# engines, set DATABASE_URL=postgres://… instead.
#
# The default policy is the production one: it starts only once every
# secret variable it names is set (see docs/src/reference/policy.md, "Production secrets"). To
# try it out: docker run -p 8080:8080 -e AION_WEBHOOKS_POLICY=/etc/aion-webhooks/policies/dev.yaml IMAGE
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/aion-webhooks --create-home aion
COPY --from=build /src/target/release/aion-webhooks /usr/local/bin/aion-webhooks
COPY policies /etc/aion-webhooks/policies
USER aion
WORKDIR /var/lib/aion-webhooks
VOLUME /var/lib/aion-webhooks
ENV AION_WEBHOOKS_POLICY=/etc/aion-webhooks/policies/webhooks.yaml AION_WEBHOOKS_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["aion-webhooks"]
CMD ["serve"]
