#!/usr/bin/env bash
# Sends one order through the saga of the running local stack and follows it to its outcome.
#
#   scripts/demo.sh [PRODUCT:QTY ...] [--token TOKEN]     default: mouse-01:1, tok_visa
#
# Exits 0 when the order is CONFIRMED, 1 when it is CANCELLED, 2 when it did not finish in time.
source "$(dirname "$0")/lib.sh"

token="tok_visa"
items=()
while (($#)); do
  case "$1" in
    --token) token="${2:?--token needs a value}"; shift 2 ;;
    *:*) items+=("$1"); shift ;;
    *) oms_die "unexpected argument $1 (expected PRODUCT:QTY or --token TOKEN)" ;;
  esac
done
((${#items[@]})) || items=("mouse-01:1")

lines="$(for item in "${items[@]}"; do
  jq -n --arg p "${item%%:*}" --argjson q "${item##*:}" '{productId: $p, quantity: $q}'
done | jq -s .)" || oms_die "quantities must be whole numbers"
body="$(jq -n --argjson items "$lines" --arg t "$token" '{customerId: "demo", items: $items, paymentToken: $t}')"

order_url="http://127.0.0.1:$(oms_service_port order)"
saga_url="http://127.0.0.1:$(oms_service_port saga)"
answer="$(curl -sS -X POST "$order_url/orders" -H 'content-type: application/json' -d "$body")" \
  || oms_die "the order service at $order_url is unreachable"
id="$(jq -r '.orderId // empty' <<<"$answer")"
[[ -n "$id" ]] || oms_die "order refused: $answer"
oms_log "order $id accepted (PENDING); following it through the saga"

deadline=$((SECONDS + ${OMS_DEMO_TIMEOUT:-60}))
while :; do
  order="$(curl -sS "$order_url/orders/$id")"
  status="$(jq -r .status <<<"$order")"
  [[ "$status" != "PENDING" ]] && break
  ((SECONDS < deadline)) || { oms_log "order $id still PENDING after ${OMS_DEMO_TIMEOUT:-60}s"; exit 2; }
  sleep 0.1
done

curl -sS "$saga_url/sagas/$id" | jq -r '.steps[] | "  \(.at)  \(.from // "-") -> \(.to)  [\(.input)] \(.note)"'
jq -r '"order \(.orderId): \(.status)" + (if .cancelReason then " (\(.cancelReason): \(.cancelDetail))" else " total \(.total.amountMinor / 100) \(.total.currency)" end)' <<<"$order"
[[ "$status" == "CONFIRMED" ]]
