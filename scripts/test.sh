#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, compose validation, unit tests and the end-to-end
# tests against a real PostgreSQL and Apache Kafka. It installs what is missing, starts a private
# test stack (state in <repo>/.oms-test, ports 55433 and 19093, wiped on every run so runs do not
# see each other), and stops it when done, pass or fail.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export OMS_STATE_DIR="${OMS_TEST_STATE_DIR:-$ROOT/.oms-test}"
export OMS_PG_PORT="${OMS_TEST_PG_PORT:-55433}"
export OMS_BROKER_PORT="${OMS_TEST_BROKER_PORT:-19093}"
source "$ROOT/scripts/lib.sh"
# The test stack answers as it was told, not as an earlier run recorded.
unset OMS_BROKERS OMS_DATABASE_URL
cd "$ROOT"

started=$SECONDS
# A Kafka node keeps a file open per partition and a socket per client; with 1,024 open files at
# most (the default soft limit on many machines) the test broker stops taking connections at
# about 1,400 partitions ("Too many open files"). The tests delete their topics as they end, and
# the limit goes up: the hard one to 65536 where that is allowed, the soft one to the hard one.
hard="$(ulimit -Hn)"
if [[ "$hard" != unlimited && "$hard" -lt 65536 ]]; then ulimit -Hn 65536 2>/dev/null || true; fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
oms_log "open files: $(ulimit -n) at most; $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2}') GiB"
"$ROOT/scripts/deps.sh" --test

oms_log "cargo fmt --check"
cargo fmt --all --check

oms_log "docker-compose config"
docker-compose -f compose.yaml config -q

oms_log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The service binaries, for the test that runs the process stack (`omsctl stack up`).
oms_log "cargo build (binaries)"
cargo build --workspace --bins --quiet

"$ROOT/scripts/stack.sh" wipe >/dev/null 2>&1 || true
trap '"$ROOT/scripts/stack.sh" down' EXIT
# `up` prints the stack's settings as exports: the tests get them under OMS_TEST_*.
# The test broker holds the topics of every test (a few thousand partitions by the end of a
# run): a larger heap than a stack's own broker needs, so it never dies of OutOfMemoryError
# (OMS_TEST_BROKER_JVM_OPTS replaces it).
test_jvm="${OMS_TEST_BROKER_JVM_OPTS:--Xms512m -Xmx2g -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
eval "$(OMS_BROKER_JVM_OPTS="$test_jvm" "$ROOT/scripts/stack.sh" up --infra --debug | sed 's/^export OMS_/export OMS_TEST_/')"
[[ -n "${OMS_TEST_DATABASE_URL:-}" && -n "${OMS_TEST_BROKERS:-}" ]] || oms_die "stack up printed no settings"
# Kafka's jars, for the tests' own brokers and for omsctl run with another HOME.
OMS_BROKER_HOME="$(oms_kafka_home)" || oms_die "Apache Kafka is missing (scripts/deps.sh installs it)"
export OMS_BROKER_HOME
OMS_SCHEMATHESIS="$(oms_schemathesis_bin)" || oms_die "schemathesis is missing (scripts/deps.sh --test installs it)"
export OMS_SCHEMATHESIS
OMS_KUBE_VALIDATE="$(oms_kube_validate_python)" || oms_die "kubernetes-validate is missing (scripts/deps.sh --test installs it)"
export OMS_KUBE_VALIDATE

# Failures print their message, not pages of backtrace (OMS_TEST_BACKTRACE=1 brings them back).
export RUST_BACKTRACE="${OMS_TEST_BACKTRACE:-0}" RUST_LIB_BACKTRACE="${OMS_TEST_BACKTRACE:-0}"
oms_log "cargo test (PostgreSQL 127.0.0.1:$OMS_PG_PORT, broker $OMS_TEST_BROKERS)"
log="$OMS_STATE_DIR/cargo-test.log"
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# omsctl and the services installed with `cargo install` and run from a scratch directory, away
# from this checkout (its own ports; the debug builds above are reused).
if [[ -z "${OMS_SKIP_INSTALL_CHECK:-}" ]]; then
  "$ROOT/scripts/install-check.sh" 2>&1 | tee -a "$log" || { status=1; echo "install check FAILED" | tee -a "$log"; }
fi
trap - EXIT
# A broker or database that died under the tests fails every test after it: that is said (with
# the end of its log) after the failures it caused, where the reader of the run's tail sees it.
: >"$OMS_STATE_DIR/died.txt"
for pidfile in "$OMS_STATE_DIR/broker/broker.pid" "$OMS_STATE_DIR/postgres/data/postmaster.pid"; do
  pid="$(head -1 "$pidfile" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
    log_of="$OMS_STATE_DIR/broker/broker.log"
    [[ "$pidfile" == *postgres* ]] && log_of="$OMS_STATE_DIR/postgres/postgres.log"
    { echo "the test stack's $(basename "$(dirname "$pidfile")") (pid $pid) died during the run; the end of its log:"
      tail -n 30 "$log_of" 2>/dev/null | cut -c1-300; } >>"$OMS_STATE_DIR/died.txt"
  fi
done
"$ROOT/scripts/stack.sh" down
oms_log "test run took $((SECONDS - started))s"
# Each failure in short (its first 40 lines, each cut at 300 characters) where a reader of the
# run's tail sees it, whatever else the run printed before.
awk '/^---- .* stdout ----$/ { on = 1; n = 0; print; next }
     on && (/^failures:$/ || /^---- /) { on = 0 }
     on && n < 40 { print substr($0, 1, 300); n++ }' "$log" >"$OMS_STATE_DIR/failures.txt" || true
if [[ -s "$OMS_STATE_DIR/failures.txt" ]]; then
  echo "failures, in short:"
  cat "$OMS_STATE_DIR/failures.txt"
fi
[[ -s "$OMS_STATE_DIR/died.txt" ]] && cat "$OMS_STATE_DIR/died.txt"
# The closing line: totals over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
