#!/usr/bin/env bash
# Measures each worker's peak RSS (VmHWM) as deployed: every worker of the default pipeline and
# serve as its own process against the local stack (infra/up.sh), the fixture photos ingested
# ROUNDS times (a fresh user each round, so every round is new work), then the peak of each
# process. The Kubernetes requests (infra/k8s/base) are sized from these figures.
# Usage: bash infra/measure_rss.sh [ROUNDS]   (needs a release or debug build of flashfit)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/common.sh"
# shellcheck disable=SC1091
source "$STACK_DIR/env.sh"
# shellcheck disable=SC1091
source "${FLASHFIT_MODELS_DIR:-$DEFAULT_HOME/models}/env.sh"
BIN="${FLASHFIT_BIN:-$CARGO_TARGET_DIR/debug/flashfit}"
ROUNDS="${1:-5}"
RUN="rss$(date +%s)"
export FLASHFIT_KAFKA__TOPIC_PREFIX="$RUN." FLASHFIT_KAFKA__GROUP_PREFIX="$RUN"
export FLASHFIT_WAREHOUSE_URI="s3://flashfit/$RUN/warehouse" FLASHFIT_LANCEDB_URI="s3://flashfit/$RUN/lancedb"
TMP="$(mktemp -d)"
declare -A PIDS
port=9600
for w in quality detect classify attributes embed parquet lance feedback kpi; do
  FLASHFIT_ADMIN_ADDR="127.0.0.1:$port" "$BIN" worker "$w" >"$TMP/$w.log" 2>&1 &
  PIDS[$w]=$!
  port=$((port + 1))
done
FLASHFIT_HTTP_ADDR="127.0.0.1:$port" "$BIN" serve >"$TMP/serve.log" 2>&1 &
PIDS[serve]=$!
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
for r in $(seq 1 "$ROUNDS"); do
  "$BIN" ingest "$ROOT/tests/fixtures/photos" --user "$RUN-u$r" --wait --timeout 300 >/dev/null
  for i in $(seq 1 5); do
    curl -fsS "http://127.0.0.1:$port/v1/users/$RUN-u$r/outfits?k=5" >/dev/null || true
    curl -fsS "http://127.0.0.1:$port/v1/users/$RUN-u$r/search?text=shirt" >/dev/null || true
  done
done
sleep 5
printf '%-12s %10s\n' worker "peak RSS"
for w in quality detect classify attributes embed parquet lance feedback kpi serve; do
  kb="$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[$w]}/status" 2>/dev/null || echo 0)"
  printf '%-12s %7d MiB\n' "$w" "$((kb / 1024))"
done
