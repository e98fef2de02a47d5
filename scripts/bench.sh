#!/usr/bin/env bash
# Benchmarks that print figures (never asserted): scripts/bench.sh relay|saga|tail
# Runs against the local stack (started if needed) in release mode.
source "$(dirname "$0")/lib.sh"
case "${1:-relay}" in
  relay|saga)
    "$OMS_ROOT/scripts/stack.sh" up --infra >/dev/null
    export OMS_TEST_DATABASE_URL OMS_TEST_BROKERS
    OMS_TEST_DATABASE_URL="$(oms_database_url)"
    OMS_TEST_BROKERS="$(oms_brokers)"
    cd "$OMS_ROOT" && cargo bench -p oms-tests --bench "$1"
    ;;
  tail)
    # omsctl tail (decoding every envelope) against kcat (raw bytes), reading one topic of
    # $OMS_BENCH_MESSAGES envelopes from the beginning to the end.
    command -v kcat >/dev/null 2>&1 || { oms_log "installing kcat (the baseline)"; sudo_cmd=""; [[ "$(id -u)" -ne 0 ]] && sudo_cmd=sudo; $sudo_cmd apt-get install -y -qq kcat >/dev/null; }
    "$OMS_ROOT/scripts/stack.sh" up --infra >/dev/null
    n="${OMS_BENCH_MESSAGES:-50000}"
    topic="bench.tail.$(date +%s)"
    cd "$OMS_ROOT" && cargo build --release -q -p omsctl
    omsctl="$OMS_ROOT/target/release/omsctl"
    kcat -b "$(oms_brokers)" -X topic.partitions=3 -P -t "$topic" -K '|' < <(
      awk -v n="$n" 'BEGIN { srand(1); for (i = 0; i < n; i++) {
        id = sprintf("0192f0c4-5a1e-7cc0-8000-%012d", i % 5000)
        printf "%s|{\"eventId\":\"0192f0c4-5a1e-7cc0-9000-%012d\",\"type\":\"order.cancelled\",\"schemaVersion\":1,\"occurredAt\":\"2026-11-23T12:00:00Z\",\"correlationId\":\"%s\",\"causationId\":null,\"source\":\"bench\",\"payload\":{\"orderId\":\"%s\",\"reason\":\"TIMEOUT\"}}\n", id, i, id, id } }')
    timed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'; }
    k=$(timed kcat -b "$(oms_brokers)" -C -t "$topic" -o beginning -e -q)
    j=$(timed "$omsctl" --brokers "$(oms_brokers)" tail "$topic" --from beginning --exit -o json)
    t=$(timed "$omsctl" --brokers "$(oms_brokers)" tail "$topic" --from beginning --exit)
    f=$(timed "$omsctl" --brokers "$(oms_brokers)" tail "$topic" --from beginning --exit --type payment.declined)
    awk -v n="$n" -v k="$k" -v j="$j" -v t="$t" -v f="$f" 'BEGIN {
      printf "tail: %d envelopes, one topic, 3 partitions, from the beginning to the end\n", n
      printf "%-44s %8s %12s %10s\n", "reader", "seconds", "messages/s", "vs kcat"
      printf "%-44s %8.2f %12.0f %10s\n", "kcat -C (raw bytes, baseline)", k, n / k, "1.00x"
      printf "%-44s %8.2f %12.0f %9.2fx\n", "omsctl tail -o json (NDJSON, decoded)", j, n / j, k / j
      printf "%-44s %8.2f %12.0f %9.2fx\n", "omsctl tail (table lines, decoded)", t, n / t, k / t
      printf "%-44s %8.2f %12.0f %9.2fx\n", "omsctl tail --type (filter, nothing printed)", f, n / f, k / f }'
    ;;
  *) echo "usage: $0 relay|saga|tail" >&2; exit 2 ;;
esac
