# The versioned models image: models/fetch.sh run at build time (fetch from the registries,
# verify checksums, convert to ONNX, verify outputs against models/reference/), leaving the
# models under /models. Tag it with the manifest's version (e.g. flashfit-models:2026-12) and
# copy /models into the workers' volume with the init step (compose `models-init`, Kubernetes
# `models-fetch`). Build: docker build -f infra/models.Dockerfile -t flashfit-models:latest .
# The shipped taxonomy head is trained here too (models/train_head.sh, with the app image's
# `flashfit train head`): build the app image first (APP_IMAGE, default flashfit:latest).
ARG APP_IMAGE=flashfit:latest
FROM ${APP_IMAGE} AS app

FROM python:3.12-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends curl unzip ca-certificates \
      libcurl4 libgomp1 dataset-fashion-mnist tuxpaint-stamps-default \
    && rm -rf /var/lib/apt/lists/*
COPY --from=app /usr/local/bin/flashfit /usr/local/bin/flashfit
WORKDIR /src
COPY models/ models/
# verify.py and optimise_onnx.py run the models on the reference images, two of them fixtures.
COPY tests/fixtures/models/cat_224.png tests/fixtures/models/motorcycle_224.png tests/fixtures/models/
COPY infra/common.sh infra/common.sh
COPY eval/ eval/
COPY crates/flashfit-models/src/head.rs crates/flashfit-models/src/head.rs
ENV FLASHFIT_MODELS_DIR=/models FLASHFIT_VENV=/opt/venv FLASHFIT_BIN=/usr/local/bin/flashfit \
    FLASHFIT_EVAL_SET=/tmp/eval
RUN bash models/fetch.sh && bash models/train_head.sh \
    && rm -rf /opt/venv /root/.cache /tmp/eval /root/.cache/flashfit/train /var/lib/flashfit
# The init step: copy the models into the volume mounted at /target, env.sh last (readers
# wait for it), so a reader never starts on a half-copied volume. Idempotent.
CMD ["sh", "-c", "rm -f /target/env.sh && tar -C /models --exclude=./env.sh -cf - . | tar -C /target -xf - && cp /models/env.sh /target/env.sh && echo models copied"]
