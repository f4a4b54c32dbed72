#!/usr/bin/env bash
# One command from a fresh Debian machine to a running pipeline on embedded defaults: installs
# the build prerequisites, builds `flashfit`, and runs every stage in one process with an
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
log "building flashfit (first build of the dependency stack takes a while)"
cargo build --locked -p flashfit
exec "$CARGO_TARGET_DIR/debug/flashfit" run --ingest "$PHOTOS" --exit-when-done
