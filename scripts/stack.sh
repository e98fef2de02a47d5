#!/usr/bin/env bash
# The local stack: a private PostgreSQL cluster, Apache Kafka (one node, or three with --brokers 3)
# with the OMS topics, and the services of the topology (contracts/src/topology.rs). This script installs what is missing,
# builds omsctl and the services, and hands over to `omsctl stack`, which owns the components.
#
#   scripts/stack.sh up [--debug|--release] [--infra] [--no-smoke] [--replicas N] [--brokers 1|3]
#                 install, build (release unless --debug), start everything (N instances of each
#                 service with --replicas, a three-node Kafka cluster with --brokers 3), wait until
#                 each is ready, then send one smoke order through the saga
#   scripts/stack.sh down | wipe | status | env | logs [NAME] | start C | stop C | cpu | services
#                 the same verbs of `omsctl stack` (C: postgres, broker (every node) or one node,
#                 e.g. broker-2, a service or one replica of it, e.g. order-2)
#
# Release builds are the default: 3-5x less CPU per order than debug builds, which performance
# work and a laptop's fan both notice (docs/benchmarks.md); --debug halves the first build.
# State lives in $OMS_STATE_DIR (default ~/.local/state/oms); ports come from OMS_PG_PORT
# (55432), OMS_BROKER_PORT (19092) and OMS_<NAME>_PORT.
source "$(dirname "$0")/lib.sh"

verb="${1:-}"
[[ -n "$verb" ]] || { echo "usage: $0 up [--debug|--release] [--infra] [--no-smoke] [--replicas N] [--brokers 1|3] | down | wipe | status | env | logs [NAME] | start C | stop C | cpu | services" >&2; exit 2; }
shift

if [[ "$verb" == up ]]; then
  profile=release infra=false rest=()
  for flag in "$@"; do
    case "$flag" in
      --debug) profile=debug ;;
      --release) profile=release ;;
      --infra) infra=true; rest+=("$flag") ;;
      # omsctl's --brokers is the global bootstrap list; its node count is --broker-nodes.
      --brokers) rest+=(--broker-nodes) ;;
      *) rest+=("$flag") ;;
    esac
  done
  "$OMS_ROOT/scripts/deps.sh"
  flag=""; [[ "$profile" == release ]] && flag="--release"
  # omsctl and the services in one cargo run: the dependencies are built once.
  if $infra; then
    oms_log "building omsctl ($profile)"
    (cd "$OMS_ROOT" && cargo build -q $flag -p omsctl)
  else
    oms_log "building omsctl and the services ($profile)"
    (cd "$OMS_ROOT" && cargo build -q $flag --workspace --bins)
  fi
  exec "$OMS_ROOT/target/$profile/omsctl" stack up --bin-dir "$OMS_ROOT/target/$profile" "${rest[@]}"
fi

# Any built omsctl will do: the stack records which binaries it runs.
omsctl="$(oms_omsctl)" || {
  [[ "$verb" == down || "$verb" == wipe || "$verb" == status ]] && { oms_log "no omsctl built yet; nothing runs"; [[ "$verb" == status ]] && exit 1; exit 0; }
  oms_die "omsctl is not built yet; run $0 up"
}
# Asking for a wipe by name is the confirmation omsctl asks for.
[[ "$verb" == wipe ]] && set -- --yes "$@"
exec "$omsctl" stack "$verb" "$@"
