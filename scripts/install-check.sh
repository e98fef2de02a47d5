#!/usr/bin/env bash
# Installs omsctl and the six services with `cargo install` into a scratch directory and runs them
# from another one, away from this checkout, as someone who installed them would: the drills come
# from the binary, the services from PATH, a whole stack comes up and an order goes through its
# whole life, the completions install. scripts/test.sh runs it after the tests.
#
#   scripts/install-check.sh            (CARGO_TARGET_DIR defaults to this checkout's target/, so
#                                        the debug builds of the test run are reused)
#
# The machine's own dependencies stay the machine's: PostgreSQL's server binaries and Apache
# Kafka's jars (scripts/deps.sh installs both; OMS_BROKER_HOME names other jars).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

started=$SECONDS
scratch="$(mktemp -d "${TMPDIR:-/tmp}/oms-install.XXXXXX")"
chmod 755 "$scratch"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$OMS_ROOT/target}"

oms_log "install check: cargo install omsctl and the services into $scratch/bin"
services="$(cd "$OMS_ROOT" && cargo run -q -p omsctl -- stack services -o ids)"
for crate in omsctl $(printf 'services/%s ' $services); do
  cargo install --quiet --locked --debug --path "$OMS_ROOT/$crate" --root "$scratch" 2>&1 \
    | grep -v "^warning: be sure to add" || true
  [[ -x "$scratch/bin/oms-$(basename "$crate")" || -x "$scratch/bin/$(basename "$crate")" ]] \
    || oms_die "cargo install --path $crate installed nothing"
done

# A user's shell away from the checkout: the installed binaries first on PATH, no OMS_* setting,
# config, state and completions in the scratch directory, ports of their own.
work="$scratch/work"
mkdir -p "$work"
chmod 777 "$scratch/work"
run() {
  (cd "$work" && env -i HOME="$HOME" USER="${USER:-root}" TERM=dumb \
    PATH="$scratch/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    XDG_CONFIG_HOME="$scratch/config" XDG_STATE_HOME="$scratch/state" \
    XDG_DATA_HOME="$scratch/data" XDG_CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}" \
    OMS_BROKER_HOME="$OMS_BROKER_HOME" \
    OMS_PG_PORT=55437 OMS_BROKER_PORT=19097 \
    OMS_ORDER_PORT=18281 OMS_PAYMENT_PORT=18282 OMS_INVENTORY_PORT=18283 \
    OMS_NOTIFICATION_PORT=18284 OMS_SAGA_PORT=18285 OMS_FULFILLMENT_PORT=18286 \
    OMS_ORDER_URL=http://127.0.0.1:18281 OMS_PAYMENT_URL=http://127.0.0.1:18282 \
    OMS_INVENTORY_URL=http://127.0.0.1:18283 OMS_NOTIFICATION_URL=http://127.0.0.1:18284 \
    OMS_SAGA_URL=http://127.0.0.1:18285 OMS_FULFILLMENT_URL=http://127.0.0.1:18286 \
    OMS_BROKERS=127.0.0.1:19097 \
    "$@")
}
cleanup() {
  run omsctl stack wipe --yes >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

out="$(run omsctl drill list)"
echo "$out"
for drill in broker-outage poison-pill service-crash; do
  grep -q "$drill" <<<"$out" || oms_die "the installed omsctl lists no $drill drill"
done
run omsctl drill validate broker-outage >/dev/null

# The whole stack from PATH, and the smoke order through its whole life.
run omsctl stack up 2>&1 | tail -n 12
run omsctl stack status
run omsctl version
run omsctl order create --item hub-01 --wait
run omsctl completions --install bash
[[ -s "$scratch/data/bash-completion/completions/omsctl" ]] || oms_die "no bash completions installed"
oms_log "install check: ok ($((SECONDS - started))s)"
