#!/usr/bin/env bash
# Benchmarks that print figures (never asserted): scripts/bench.sh relay|saga|tail|tui
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
    # omsctl tail (decoding every envelope) against a bare rdkafka reader, side by side.
    "$OMS_ROOT/scripts/stack.sh" up --infra >/dev/null
    cd "$OMS_ROOT" && cargo build --release -q -p omsctl
    export OMS_TEST_BROKERS OMS_OMSCTL_BIN="$OMS_ROOT/target/release/omsctl"
    OMS_TEST_BROKERS="$(oms_brokers)"
    cargo bench -p oms-tests --bench tail
    ;;
  tui)
    # Key press to screen of `omsctl tui` in tmux: empty and idle vs 10,000 sagas under load.
    "$OMS_ROOT/scripts/stack.sh" up --infra >/dev/null
    cd "$OMS_ROOT" && cargo build --release -q -p omsctl
    export OMS_TEST_DATABASE_URL OMS_TEST_BROKERS OMS_OMSCTL_BIN="$OMS_ROOT/target/release/omsctl"
    OMS_TEST_DATABASE_URL="$(oms_database_url)"
    OMS_TEST_BROKERS="$(oms_brokers)"
    cargo bench -p oms-tests --bench tui
    ;;
  *) echo "usage: $0 relay|saga|tail|tui" >&2; exit 2 ;;
esac
