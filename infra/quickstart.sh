#!/usr/bin/env bash
# One command from a fresh Debian machine to a running system on embedded defaults: installs
# the build prerequisites, fetches and converts the models, builds `flashfit`, and runs the
# whole system (quality → detect → classify → attributes → embed, the Parquet and LanceDB
# sinks, the feedback and kpi workers) in one process with an embedded broker and file://
# storage, feeding it a folder of photos and printing what each became.
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
# Same profile and features as infra/test.sh's build: one build of the dependency stack serves
# both commands.
log "building flashfit (the first build of the dependency stack takes ~25-40 min on 2 cores)"
cargo build --locked -p flashfit
# The shipped taxonomy head (is it clothing, which category) and the labelled set: trained and
# built once (~1 min), then a no-op.
bash "$ROOT/models/train_head.sh"
# The whole system in one process; results go to ./warehouse, ./lancedb and ./flashfit.db
# under the repository. Warnings and errors only in the log: the table is the output.
export FLASHFIT_LOG_LEVEL="${FLASHFIT_LOG_LEVEL:-warn}"
BIN="$CARGO_TARGET_DIR/debug/flashfit"
# A development secret for serve's bearer tokens (HS256), made once per machine and kept
# beside the stack's state; production takes keys from a JWKS document instead.
SECRET_FILE="$DEFAULT_HOME/dev-hs256-secret"
if [ -z "${FLASHFIT_AUTH__HS256_SECRET:-}" ]; then
  if [ ! -s "$SECRET_FILE" ]; then
    mkdir -p "$(dirname "$SECRET_FILE")"
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET_FILE")
  fi
  FLASHFIT_AUTH__HS256_SECRET="$(cat "$SECRET_FILE")"
  export FLASHFIT_AUTH__HS256_SECRET
fi
"$BIN" run --ingest "$PHOTOS" --exit-when-done
TOKEN="$("$BIN" token --user local-user --ttl 86400)"
cat <<EOF

The wardrobe of user local-user is in ./warehouse (Parquet) and ./lancedb. To ask it over
HTTP, run the system with its API (the development secret is in $SECRET_FILE):

  FLASHFIT_AUTH__HS256_SECRET="\$(cat $SECRET_FILE)" $BIN run --serve 127.0.0.1:8080

and in another shell, with a development token for local-user (valid 24 h; mint another with
\`$BIN token --user local-user\`):

  curl -H "Authorization: Bearer $TOKEN" \\
    "http://127.0.0.1:8080/v1/users/local-user/search?text=a+red+shirt&k=5"
EOF
