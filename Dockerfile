# Multi-stage build: compile with the full Rust image, run on debian-slim as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
COPY config.toml ./
RUN cargo build --release --locked --bin catgate

FROM debian:bookworm-slim
# CA certificates: reqwest's rustls uses the platform verifier for api.openai.com / Azure.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin catgate \
    && mkdir -p /data /etc/catgate \
    && chown catgate /data
COPY --from=build /src/target/release/catgate /usr/local/bin/catgate
COPY config.toml /etc/catgate/config.toml
USER catgate
VOLUME ["/data"]
ENV CATGATE_LISTEN=0.0.0.0:8080 \
    CATGATE_DATABASE=/data/catgate.db \
    RUST_LOG=info
EXPOSE 8080
# `docker run ... catgate root-token` etc. work too: the arguments replace `serve`.
ENTRYPOINT ["catgate", "--config", "/etc/catgate/config.toml"]
CMD ["serve"]
