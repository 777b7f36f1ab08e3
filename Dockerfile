# evaltap in a container: `docker compose up` (see docker-compose.yml) runs it on PostgreSQL.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN SQLX_OFFLINE=true cargo build --release --locked --bin evaltap

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/evaltap /usr/local/bin/evaltap
COPY rubrics /etc/evaltap/rubrics
COPY datasets /etc/evaltap/datasets
WORKDIR /etc/evaltap
ENV EVALTAP_CONFIG=/etc/evaltap/evaltap.toml
EXPOSE 7077
ENTRYPOINT ["evaltap"]
CMD ["serve", "--bind", "0.0.0.0:7077", "--no-workers"]
