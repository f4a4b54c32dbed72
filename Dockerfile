# Production image of the `flashfit` binary (every worker runs it with a different subcommand).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      cmake libcurl4-openssl-dev protobuf-compiler libssl-dev pkg-config mold \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p flashfit

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 flashfit
COPY --from=build /src/target/release/flashfit /usr/local/bin/flashfit
USER flashfit
ENV FLASHFIT_ADMIN_ADDR=0.0.0.0:9464 FLASHFIT_LOG_FORMAT=json
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/flashfit"]
