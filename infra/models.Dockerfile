# The versioned models image: models/fetch.sh run at build time (fetch from the registries,
# verify checksums, convert to ONNX, verify outputs against models/reference/), leaving the
# models under /models. Tag it with the manifest's version (e.g. flashfit-models:2026-12) and
# copy /models into the workers' volume with the init step (compose `models-init`, Kubernetes
# `models-fetch`). Build: docker build -f infra/models.Dockerfile -t flashfit-models:latest .
FROM python:3.12-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends curl unzip ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY models/ models/
# verify.py and optimise_onnx.py run the models on the reference images, two of them fixtures.
COPY tests/fixtures/models/cat_224.png tests/fixtures/models/motorcycle_224.png tests/fixtures/models/
COPY infra/common.sh infra/common.sh
ENV FLASHFIT_MODELS_DIR=/models FLASHFIT_VENV=/opt/venv
RUN bash models/fetch.sh && rm -rf /opt/venv /root/.cache
# The init step: copy the models into the volume mounted at /target, env.sh last (readers
# wait for it), so a reader never starts on a half-copied volume. Idempotent.
CMD ["sh", "-c", "rm -f /target/env.sh && tar -C /models --exclude=./env.sh -cf - . | tar -C /target -xf - && cp /models/env.sh /target/env.sh && echo models copied"]
