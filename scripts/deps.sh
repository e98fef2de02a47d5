#!/usr/bin/env bash
# Installs what the OMS needs and a fresh machine of this kind may lack: PostgreSQL server
# binaries (apt), OpenSSL's headers (apt: librdkafka speaks TLS and SASL/SCRAM through it), a JDK
# and Maven (apt) and Apache Kafka's jars from Maven Central (kafka/dist/pom.xml, every jar checked
# against kafka/dist/jars.sha256, once per machine under the user's cache), and with --test:
# docker-compose (apt) to validate compose.yaml, tmux for the TUI test, kcat for the test that
# reads the OMS topics with standard tools, schemathesis (PyPI, in a virtualenv) for the API
# fuzzing test, and kubernetes-validate with jsonpatch (PyPI, in a virtualenv) for the offline
# check of deploy/kubernetes, and Prometheus (also alone with --observability: `omsctl stack up
# --observability` runs it).
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

want_test_tools=false want_observability=false
[[ "${1:-}" == "--test" ]] && want_test_tools=true want_observability=true
[[ "${1:-}" == "--observability" ]] && want_observability=true

if ! oms_pg_bin >/dev/null; then
  apt_install postgresql
  oms_pg_bin >/dev/null || oms_die "PostgreSQL server binaries still missing after apt install"
fi

# curl and jq: scripts/demo.sh and scripts/bench.sh read omsctl's JSON with jq.
missing=()
for tool in curl jq; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

# OpenSSL's headers and pkg-config: rdkafka builds librdkafka with TLS and SASL/SCRAM.
if ! pkg-config --exists openssl 2>/dev/null; then apt_install libssl-dev pkg-config; fi

# Java 17 or newer (Kafka 4 needs it) and Maven (it resolves Kafka's jars from Maven Central).
# The java the broker runs: $JAVA_HOME's when set, as kafka/src/node/mod.rs picks it.
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
java_major() { "$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v "$java_bin" >/dev/null 2>&1 || (( $(java_major || echo 0) < 17 )); then
  if [[ -n "${JAVA_HOME:-}" ]]; then
    [[ -x "$java_bin" ]] || oms_die "JAVA_HOME=$JAVA_HOME has no bin/java (unset it or point it at a JDK 17 or newer)"
    oms_die "Kafka $OMS_KAFKA_VERSION needs Java 17 or newer; JAVA_HOME=$JAVA_HOME has Java $(java_major) (unset it or point it at a JDK 17 or newer)"
  fi
  apt_install openjdk-17-jre-headless
  (( $(java_major || echo 0) >= 17 )) || oms_die "Kafka $OMS_KAFKA_VERSION needs Java 17 or newer; java -version says $(java_major)"
fi
if ! command -v mvn >/dev/null 2>&1; then apt_install maven; fi

if ! oms_kafka_home >/dev/null; then
  # Only an install of ours (an older list) is replaced: OMS_BROKER_HOME may name anything.
  if [[ -n "$(ls -A "$OMS_BROKER_HOME" 2>/dev/null)" && ! -f "$OMS_BROKER_HOME/libs/.checked" ]]; then
    oms_die "$OMS_BROKER_HOME exists but is not a Kafka install of scripts/deps.sh (no libs/.checked); point OMS_BROKER_HOME at a new directory or remove it"
  fi
  oms_log "installing Apache Kafka $OMS_KAFKA_VERSION from Maven Central into $OMS_BROKER_HOME (once per machine)"
  mkdir -p "$(dirname "$OMS_BROKER_HOME")"
  staging="$(mktemp -d "$(dirname "$OMS_BROKER_HOME")/.kafka-install-XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  mvn -q -B -Dstyle.color=never -f "$OMS_ROOT/kafka/dist/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$staging/libs" >&2 ||
    oms_die "Maven could not resolve kafka/dist/pom.xml (is Maven Central reachable?)"
  # The bytes of every jar, and no jar beyond the list.
  (cd "$staging/libs" && sha256sum --quiet --strict -c "$OMS_ROOT/kafka/dist/jars.sha256") ||
    oms_die "a jar does not match kafka/dist/jars.sha256"
  extra="$(comm -13 <(awk '{print $2}' "$OMS_ROOT/kafka/dist/jars.sha256" | sort) <(ls "$staging/libs" | sort))"
  [[ -z "$extra" ]] || oms_die "Maven resolved jars kafka/dist/jars.sha256 does not list: $extra"
  cp "$OMS_ROOT/kafka/dist/jars.sha256" "$staging/libs/.checked"
  rm -rf "$OMS_BROKER_HOME"
  mv "$staging" "$OMS_BROKER_HOME"
  trap - EXIT
  oms_kafka_home >/dev/null || oms_die "Kafka is still not installed in $OMS_BROKER_HOME"
fi

# Prometheus for `omsctl stack up --observability` (Debian's package; nothing is started by it).
if $want_observability && ! command -v prometheus >/dev/null 2>&1; then
  apt_install --no-install-recommends prometheus
fi

if $want_test_tools; then
  missing=()
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  # tmux: the real-terminal test of `omsctl tui`.
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  # kcat: a standard tool reading the OMS topics (the test of what other tools see).
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
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
