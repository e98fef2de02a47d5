#!/usr/bin/env bash
# Sends one order through the saga of the running local stack, follows it to its outcome and
# prints its journey.
#
#   scripts/demo.sh [PRODUCT:QTY ...] [--payment-token TOKEN]  default: mouse-01:1, tok_visa
#
# Exits 0 when the order is CONFIRMED, 1 when it is CANCELLED or did not finish in time.
source "$(dirname "$0")/lib.sh"

token="tok_visa"
items=()
while (($#)); do
  case "$1" in
    --payment-token) token="${2:?--payment-token needs a value}"; shift 2 ;;
    *:*) items+=(--item "$1"); shift ;;
    *) oms_die "unexpected argument $1 (expected PRODUCT:QTY or --payment-token TOKEN)" ;;
  esac
done
((${#items[@]})) || items=(--item mouse-01:1)

omsctl="$(oms_omsctl)" || oms_die "omsctl is not built yet; run scripts/stack.sh up"
order="$("$omsctl" order create "${items[@]}" --customer demo --payment-token "$token" \
  --wait --timeout "${OMS_DEMO_TIMEOUT:-60}s" -o json)" && status=0 || status=$?
id="$(jq -r '.orderId // empty' <<<"$order" 2>/dev/null || true)"
[[ -n "$id" ]] || exit "$status"
"$omsctl" order trace "$id"
exit "$status"
