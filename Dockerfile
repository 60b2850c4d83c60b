# Multi-stage build: compile with the full Rust image, run the stripped binary on distroless
# (glibc + CA certificates, no shell, ~25 MB) as its non-root user.
#
# Stopping: catgate drains in-flight requests for up to `shutdown_grace_secs` (default 30 s)
# after SIGTERM, then writes the last usage records. Docker kills a container 10 s after
# SIGTERM by default, mid-drain: give it longer, e.g. `docker run --stop-timeout 45 ...`,
# `docker stop -t 45`, or `stop_grace_period: 45s` in compose.

FROM rust:1-bookworm AS build
WORKDIR /src
# `strip = true` for this image only: local release builds keep their symbols for profiling.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies only, with stub sources: this layer is rebuilt when Cargo.toml or Cargo.lock
# change, not on every source edit. The [[bench]] targets must exist for cargo to load the
# manifest, so each one Cargo.toml names gets a stub (they stay: the image never builds them).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for b in $(grep -A1 '^\[\[bench\]\]' Cargo.toml | sed -n 's/^name = "\(.*\)"$/\1/p'); do \
           echo 'fn main() {}' > "benches/$b.rs"; \
       done \
    && cargo build --release --locked --bin catgate

# The real sources (and what they embed: built-in prices, the dashboard). COPY keeps the
# files' own mtimes, which can be older than the stub build: touch them so cargo rebuilds.
COPY src ./src
COPY ui ./ui
COPY prices.toml ./
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin catgate \
    && mkdir -p /out/data \
    && cp target/release/catgate /out/catgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/catgate /usr/local/bin/catgate
COPY config.toml /etc/catgate/config.toml
# The volume's mount point, owned by the image's user (uid 65532) so a new volume is writable.
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot
WORKDIR /data
VOLUME ["/data"]
ENV CATGATE_CONFIG=/etc/catgate/config.toml \
    CATGATE_LISTEN=0.0.0.0:8080 \
    CATGATE_DATABASE=/data/catgate.db \
    RUST_LOG=info
EXPOSE 8080
# `catgate health` reads the same config and env, so it probes the port serve listens on.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["catgate", "health"]
STOPSIGNAL SIGTERM
# `docker run ... catgate root-token` (or backup /data/backup.db, report, ...) works too: the
# arguments replace `serve`.
ENTRYPOINT ["catgate"]
CMD ["serve"]
