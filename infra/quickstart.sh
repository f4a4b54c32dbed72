#!/usr/bin/env bash
# One command from a fresh Debian machine to a running pipeline on embedded defaults: installs
# the build prerequisites, fetches and converts the models, builds `flashfit`, and runs every
# stage (quality → detect → classify → attributes → embed) in one process with an
# embedded broker and file:// storage, feeding it a folder of photos and printing each status.
# Usage: bash infra/quickstart.sh [PHOTO_DIR]   (default: the bundled fixture photos)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/common.sh"
cd "$ROOT"

PHOTOS="${1:-$ROOT/tests/fixtures/photos}"
install_debian_packages
require_cargo
# The default pipeline runs the model stages: fetch and convert the models (a no-op once done).
bash "$ROOT/models/fetch.sh"
# shellcheck disable=SC1091
source "${FLASHFIT_MODELS_DIR:-$([ "$(id -u)" -eq 0 ] && echo /var/lib/flashfit/models || echo "$HOME/.cache/flashfit/models")}/env.sh"
log "building flashfit (first build of the dependency stack takes a while)"
cargo build --locked -p flashfit
exec "$CARGO_TARGET_DIR/debug/flashfit" run --ingest "$PHOTOS" --exit-when-done
