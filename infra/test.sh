#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what a fresh Debian machine lacks, starts the
# local stack (broker, S3 server, PostgreSQL), fetches and converts the models
# (models/fetch.sh), builds, and runs every test (unit, stage
# harness, end-to-end against the stack). Usage: bash infra/test.sh [extra nextest args]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/common.sh"
cd "$ROOT"

bash "$HERE/up.sh"
bash "$ROOT/models/fetch.sh"
# shellcheck disable=SC1091
source "${FLASHFIT_MODELS_DIR:-$( [ "$(id -u)" -eq 0 ] && echo /var/lib/flashfit/models || echo "$HOME/.cache/flashfit/models")}/env.sh"
# The cached models against the references in models/reference/ (fetch.sh checks only what it
# converts), and the proof that the check rejects real conversion faults while last-bit
# differences between CPUs pass.
log "verifying the cached models (models/verify.py, models/test_verify.py, models/test_optimise.py)"
"$VENV/bin/python" "$ROOT/models/verify.py" --all "$FLASHFIT_MODELS_DIR"
"$VENV/bin/python" "$ROOT/models/test_verify.py" "$FLASHFIT_MODELS_DIR"
"$VENV/bin/python" "$ROOT/models/test_optimise.py" "$FLASHFIT_MODELS_DIR"
# shellcheck disable=SC1091
source "$STACK_DIR/env.sh"
require_cargo
ensure_cargo_tool cargo-nextest 0.9.151

log "building (target dir $CARGO_TARGET_DIR)"
cargo build --workspace --all-targets --locked
# The shipped taxonomy head and the labelled evaluation set the eval floors test reads.
bash "$ROOT/models/train_head.sh"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  log "cargo-nextest not installed; using cargo test"
  cargo test --workspace --locked --no-fail-fast "$@"
fi
