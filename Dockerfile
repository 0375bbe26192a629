# Placeholder until the embedded-store issue: builds the binary; a PostgreSQL
# is still needed at run time (DATABASE_URL). The default policy is the
# production one: it starts only once every secret variable it names is set
# (see README, "Production secrets").
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/aion-webhooks /usr/local/bin/aion-webhooks
COPY policies /etc/aion-webhooks/policies
ENV AION_WEBHOOKS_POLICY=/etc/aion-webhooks/policies/webhooks.yaml AION_WEBHOOKS_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["aion-webhooks"]
CMD ["serve"]
