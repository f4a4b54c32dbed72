#!/usr/bin/env bash
# Builds the first wave (the code and models as they were before issue 17's CPU work, commit
# 425d2de) beside today's build, so `flashfit bench chain` can measure both in one run:
#
#   bash infra/first_wave.sh                     # -> /var/cache/flashfit/first-wave/{flashfit,models}
#   flashfit bench chain --profiles first-wave=/var/cache/flashfit/first-wave,default
#
# The old sources are a git worktree; they build in the same CARGO_TARGET_DIR (the dependency
# stack is shared, only FlashFit's own crates compile again), today's `flashfit` binary is put
# back afterwards and today's sources are touched so the next build compiles them again. Its models come from the old models/fetch.sh (same sources, that day's
# recipe). Reruns reuse what is there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/common.sh"
REV=425d2de7e42024b9c3ae8e3c62c419227e0f8d43
DEST="${1:-$(dirname "$CARGO_TARGET_DIR")/first-wave}"
require_cargo
mkdir -p "$DEST"
if [ ! -d "$DEST/src" ]; then
  log "checking out the first wave ($REV) in $DEST/src"
  git -C "$ROOT" worktree add --detach "$DEST/src" "$REV" >/dev/null
fi
if [ ! -x "$DEST/flashfit" ]; then
  log "building the first wave's flashfit (target dir $CARGO_TARGET_DIR)"
  today="$CARGO_TARGET_DIR/debug/flashfit"
  [ -f "$today" ] && cp -p "$today" "$DEST/flashfit.today"
  (cd "$DEST/src" && cargo build --locked -p flashfit --bin flashfit)
  cp "$CARGO_TARGET_DIR/debug/flashfit" "$DEST/flashfit.tmp" && mv "$DEST/flashfit.tmp" "$DEST/flashfit"
  if [ -f "$DEST/flashfit.today" ]; then mv "$DEST/flashfit.today" "$today"; fi
  # Cargo gives a workspace crate the same artifact name whatever its directory, so the old
  # crates' artifacts and fingerprints replaced today's: make the next build compile today's
  # sources again (FlashFit's crates only, a few minutes).
  find "$ROOT/crates" "$ROOT/tests" -name '*.rs' -exec touch {} +
fi
FLASHFIT_MODELS_DIR="$DEST/models" bash "$DEST/src/models/fetch.sh"
log "first wave ready: --profiles first-wave=$DEST,default"
