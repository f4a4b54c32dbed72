#!/usr/bin/env bash
# Builds what FlashFit's understanding of a photo is trained and measured on, once per change:
#   - the shipped taxonomy head, $FLASHFIT_MODELS_DIR/heads/taxonomy-head.json: a linear head
#     (taxonomy categories + `not_clothing`) on EfficientNet-Lite0's embedding, trained by
#     `flashfit train head` on eval/build_train.py's set (Fashion-MNIST train split, drawn
#     garments, Debian's tuxpaint-stamps-default photos, charts, text, textures);
#   - the labelled evaluation set, $FLASHFIT_EVAL_SET (eval/build_set.py over eval/labels.toml),
#     which `flashfit eval --set` and the eval floors test read.
# Needs the models (models/fetch.sh) and a built `flashfit` binary (FLASHFIT_BIN, default the
# cargo target dir's debug build). Reruns are no-ops unless the recipes changed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=infra/common.sh
source "$ROOT/infra/common.sh"
if [ "$(id -u)" -eq 0 ]; then DEF=/var/lib/flashfit/models; else DEF="$HOME/.cache/flashfit/models"; fi
MODELS="${FLASHFIT_MODELS_DIR:-$DEF}"
EVAL_SET="${FLASHFIT_EVAL_SET:-$DEFAULT_HOME/eval}"
TRAIN_SET="$DEFAULT_HOME/train"
BIN="${FLASHFIT_BIN:-$CARGO_TARGET_DIR/debug/flashfit}"
ensure_venv
# shellcheck disable=SC1091
source "$MODELS/env.sh"

stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

want="$(stamp "$ROOT/eval/build_set.py" "$ROOT/eval/labels.toml")"
if [ "$(cat "$EVAL_SET/.stamp" 2>/dev/null)" != "$want" ]; then
  log "building the evaluation set in $EVAL_SET (eval/build_set.py)"
  "$VENV/bin/python" "$ROOT/eval/build_set.py" "$EVAL_SET"
  echo "$want" >"$EVAL_SET/.stamp"
fi

HEAD="$MODELS/heads/taxonomy-head.json"
want="$(stamp "$ROOT/eval/build_train.py" "$ROOT/eval/build_set.py" "$ROOT/crates/flashfit-models/src/head.rs")"
if [ ! -f "$HEAD" ] || [ "$(cat "$HEAD.stamp" 2>/dev/null)" != "$want" ]; then
  log "building the head's training set in $TRAIN_SET (eval/build_train.py)"
  rm -rf "$TRAIN_SET"
  # (libpng complains about some stamps' sRGB chunks; harmless)
  "$VENV/bin/python" "$ROOT/eval/build_train.py" "$TRAIN_SET" 2> >(grep -v "libpng warning" >&2)
  mkdir -p "$MODELS/heads"
  log "training the shipped taxonomy head ($HEAD)"
  "$BIN" train head --manifest "$TRAIN_SET/manifest.csv" --out "$HEAD.tmp"
  mv "$HEAD.tmp" "$HEAD"
  echo "$want" >"$HEAD.stamp"
fi
