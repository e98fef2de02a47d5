# Shared settings and helpers of the OMS scripts. Source it; do not run it.
# The stack itself (components, ports, state directory) is `omsctl stack`'s; the scripts only
# install, build and hand over.

set -euo pipefail

OMS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Apache Kafka, the local and test broker: the version kafka/dist/pom.xml pins (one place), its
# jars under the user's cache (what omsctl and the tests look for; OMS_BROKER_HOME overrides).
OMS_KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$OMS_ROOT/kafka/dist/pom.xml")"
OMS_BROKER_HOME="${OMS_BROKER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/oms/kafka-$OMS_KAFKA_VERSION}"
export OMS_BROKER_HOME
# schemathesis (PyPI), the API fuzzer of the test suite, in a virtualenv of its own.
OMS_SCHEMATHESIS_VERSION="4.32.5"
OMS_SCHEMATHESIS_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/oms/schemathesis-$OMS_SCHEMATHESIS_VERSION"
# kubernetes-validate (PyPI, with the Kubernetes schemas inside) and jsonpatch: the offline check
# of deploy/kubernetes (deploy/kubernetes/check.py), in a virtualenv of its own.
OMS_KUBE_VALIDATE_VERSION="1.37.0"
OMS_JSONPATCH_VERSION="1.33"
OMS_KUBE_VALIDATE_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/oms/kubernetes-validate-$OMS_KUBE_VALIDATE_VERSION"
export OMS_ROOT

oms_log() { printf '\033[1m[oms]\033[0m %s\n' "$*" >&2; }
oms_die() { printf '[oms] error: %s\n' "$*" >&2; exit 1; }

# apt_install PACKAGE...: Debian packages, with sudo unless root.
apt_install() {
  local sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  oms_log "installing with apt: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Directory holding initdb, pg_ctl and postgres (newest installed major version).
oms_pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

# The Kafka installation, when its jars were checked against this checkout's
# kafka/dist/jars.sha256 (scripts/deps.sh keeps the list it checked as libs/.checked).
oms_kafka_home() {
  cmp -s "$OMS_BROKER_HOME/libs/.checked" "$OMS_ROOT/kafka/dist/jars.sha256" && echo "$OMS_BROKER_HOME"
}

# The Python of the deploy/kubernetes check's virtualenv, when it has the pinned packages.
oms_kube_validate_python() {
  local py="$OMS_KUBE_VALIDATE_VENV/bin/python"
  [[ -x "$py" ]] && "$py" -c 'import jsonpatch, kubernetes_validate.version as v, sys
sys.exit(v.__version__ != sys.argv[1])' "$OMS_KUBE_VALIDATE_VERSION" 2>/dev/null && echo "$py"
}

# The schemathesis command of the pinned version (installed by scripts/deps.sh --test).
oms_schemathesis_bin() {
  local bin="$OMS_SCHEMATHESIS_VENV/bin/schemathesis"
  if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "$OMS_SCHEMATHESIS_VERSION"; then
    echo "$bin"; return
  fi
  return 1
}

# The most recently built omsctl of this repository (release or debug).
oms_omsctl() {
  local r="$OMS_ROOT/target/release/omsctl" d="$OMS_ROOT/target/debug/omsctl"
  if [[ -x "$r" && ( ! -x "$d" || "$r" -nt "$d" ) ]]; then echo "$r"; return; fi
  if [[ -x "$d" ]]; then echo "$d"; return; fi
  return 1
}
