#!/usr/bin/env bash
# Installs what the OMS needs and a fresh machine of this kind may lack: PostgreSQL server
# binaries (apt), the nisshi Kafka-protocol broker (cargo +nightly install with only the SQLite
# storage engine the stack uses, once per machine), and with --test: docker-compose (apt) to
# validate compose.yaml, tmux for the TUI test, schemathesis (PyPI, in a virtualenv) for the
# API fuzzing test, and kubernetes-validate with jsonpatch (PyPI, in a virtualenv) for the
# offline check of deploy/kubernetes.
# Safe to run again: each step is skipped when its tool is already there.
source "$(dirname "$0")/lib.sh"

# venv_install WHAT VENV CHECK PACKAGE...: a fresh virtualenv VENV with the pinned PACKAGEs, then
# CHECK (a lib.sh finder) must find them.
venv_install() {
  local what="$1" venv="$2" check="$3"
  shift 3
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv
  fi
  oms_log "installing $what into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  "$check" >/dev/null || oms_die "$what still missing after pip install"
}

want_test_tools=false
[[ "${1:-}" == "--test" ]] && want_test_tools=true

apt_install() {
  local sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  oms_log "installing with apt: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! oms_pg_bin >/dev/null; then
  apt_install postgresql
  oms_pg_bin >/dev/null || oms_die "PostgreSQL server binaries still missing after apt install"
fi

# curl and jq: scripts/demo.sh and scripts/bench.sh read omsctl's JSON with jq.
missing=()
for tool in curl jq; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

if ! oms_nisshi_bin >/dev/null; then
  # nisshi needs rustc >= 1.96; this kind of machine has a nightly toolchain for that.
  toolchain=""
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain="+nightly"; fi
  # Only the storage engine the stack uses (SQLite, via libsql). nisshi 0.8.1 still compiles its
  # PostgreSQL and object-store dependencies (they are not optional upstream; docs/benchmarks.md),
  # so this saves nothing yet, but it will as soon as they are.
  oms_log "building the nisshi broker $OMS_NISSHI_VERSION with SQLite storage (cargo $toolchain install; about 18 minutes on 2 cores, once per machine)"
  cargo $toolchain install --locked nisshi --version "$OMS_NISSHI_VERSION" --no-default-features --features libsql
  oms_nisshi_bin >/dev/null || oms_die "nisshi is not on PATH or in ~/.cargo/bin after installing"
fi

if $want_test_tools; then
  missing=()
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  # tmux: the real-terminal test of `omsctl tui`.
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  # schemathesis: generated requests against every service's OpenAPI document.
  oms_schemathesis_bin >/dev/null ||
    venv_install "schemathesis $OMS_SCHEMATHESIS_VERSION" "$OMS_SCHEMATHESIS_VENV" oms_schemathesis_bin \
      "schemathesis==$OMS_SCHEMATHESIS_VERSION"
  # kubernetes-validate and jsonpatch: the offline check of deploy/kubernetes.
  oms_kube_validate_python >/dev/null ||
    venv_install "kubernetes-validate $OMS_KUBE_VALIDATE_VERSION" "$OMS_KUBE_VALIDATE_VENV" oms_kube_validate_python \
      "kubernetes-validate==$OMS_KUBE_VALIDATE_VERSION" "jsonpatch==$OMS_JSONPATCH_VERSION"
fi
