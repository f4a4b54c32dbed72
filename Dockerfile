# Production image of the `flashfit` binary (every worker runs it with a different subcommand),
# with ONNX Runtime inside. The models are not in this image: they come from the models image
# (infra/models.Dockerfile: runs models/fetch.sh, which fetches, converts and verifies them)
# copied into a volume at /models by an init step (compose: `models-init`; Kubernetes: the
# `models-fetch` Job). Same environment contract as everywhere else (README "Configuration").
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      cmake nasm libcurl4-openssl-dev protobuf-compiler libssl-dev pkg-config mold \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p flashfit

# ONNX Runtime 1.31.1: the shared library from the PyPI wheel (the same build models/fetch.sh
# uses on development machines), loaded at run time through ORT_DYLIB_PATH.
FROM python:3.12-slim-bookworm AS ort
RUN pip download --no-deps --only-binary=:all: -d /tmp/ort onnxruntime==1.31.1 \
    && python -c "import zipfile,glob; z=zipfile.ZipFile(glob.glob('/tmp/ort/*.whl')[0]); \
open('/libonnxruntime.so.1.31.1','wb').write(z.read('onnxruntime/capi/libonnxruntime.so.1.31.1'))"

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 libgomp1 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 flashfit \
    && mkdir -p /models && chown flashfit /models
COPY --from=build /src/target/release/flashfit /usr/local/bin/flashfit
COPY --from=ort /libonnxruntime.so.1.31.1 /usr/local/lib/libonnxruntime.so.1.31.1
RUN ln -s /usr/local/lib/libonnxruntime.so.1.31.1 /usr/local/lib/libonnxruntime.so
USER 10001
ENV FLASHFIT_ADMIN_ADDR=0.0.0.0:9464 FLASHFIT_LOG_FORMAT=json \
    FLASHFIT_MODELS_DIR=/models ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/flashfit"]
