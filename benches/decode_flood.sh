#!/usr/bin/env bash
# Peak memory of a quality worker flooded with 50 MP photos (issue 12: memory bounded per
# process). Needs the local stack (bash infra/up.sh) and a built flashfit. Makes N noisy
# 7071x7071 JPEGs, publishes one upload event per photo, runs `flashfit worker quality` with
# concurrency 8 until every photo has a status, and prints the worker's peak RSS (VmHWM) —
# once with the default decode budget and once with the budget lifted.
# Usage: bash benches/decode_flood.sh [N=16]   (FLOOD_PHOTOS=DIR reuses photos made earlier)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=infra/common.sh
source "$ROOT/infra/common.sh"
# shellcheck disable=SC1091
source "$STACK_DIR/env.sh"
N="${1:-16}"
BIN="$CARGO_TARGET_DIR/debug/flashfit"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PHOTOS="${FLOOD_PHOTOS:-$WORK/photos}"
[ -d "$PHOTOS" ] && [ "$(ls "$PHOTOS" | wc -l)" -ge "$N" ] || "$VENV/bin/python" - "$PHOTOS" "$N" <<'PY'
import os, sys
import numpy as np
import cv2
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
side = 7071  # 49,999,041 px: just under the 50 MP cap
base = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
img = cv2.resize(base, (side, side), interpolation=cv2.INTER_NEAREST)
for i in range(n):
    cv2.imwrite(os.path.join(out, f"flood-{i:02}.jpg"), np.roll(img, i, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 80])
PY
run() { # label, extra env...
  local label="$1"; shift
  local prefix="flood$(date +%s%N | tail -c 7)."
  local port=$((20000 + RANDOM % 20000))
  export FLASHFIT_KAFKA__TOPIC_PREFIX="$prefix" FLASHFIT_KAFKA__GROUP_PREFIX="${prefix}flashfit"
  "$BIN" --pipeline "$ROOT/pipelines/quality.toml" ingest "$PHOTOS" --user flood >/dev/null 2>&1
  env "$@" FLASHFIT_RUNTIME__CONCURRENCY=8 FLASHFIT_ADMIN_ADDR="127.0.0.1:$port" FLASHFIT_LOG_LEVEL=warn \
    "$BIN" --pipeline "$ROOT/pipelines/quality.toml" worker quality >/dev/null 2>&1 &
  local pid=$!
  local start=$SECONDS peak=0 statuses=0
  # Until every photo has a status, counted by the worker's own metrics.
  while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - start)) -lt 900 ]; do
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    peak=$(( hwm > peak ? hwm : peak ))
    statuses=$( (curl -s "http://127.0.0.1:$port/metrics" || true) | awk '/^flashfit_status_events_total/ {s += $2} END {print s + 0}')
    if [ "${statuses%.*}" -ge "$N" ]; then break; fi
    sleep 1
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf '%-30s %3d photos of 50 MP (%s statuses), concurrency 8: peak RSS %5d MiB, %3d s\n' "$label" "$N" "$statuses" $((peak / 1024)) $((SECONDS - start))
}
run "default budget (100 MP):"
run "budget lifted (10^12 px):" FLASHFIT_QUALITY__DECODE_BUDGET_PIXELS=1000000000000
