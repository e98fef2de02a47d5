#!/usr/bin/env bash
# A real screenshot of `omsctl tui` on the running stack: the dashboard runs in a tmux window of
# 120x36 while orders flow, its screen is captured with its colours (tmux capture-pane -e) and
# drawn as SVG (scripts/ansi2svg.py), then PNG (rsvg-convert).
#
#   scripts/screenshot.sh [VIEW] [OUT.png]    VIEW: dashboard (default), sagas, dlq, logs, lag
#                                             OUT: docs/images/tui-VIEW.png
#
# Needs a stack (scripts/stack.sh up) and installs tmux, librsvg2-bin and fonts-dejavu-core.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

view="${1:-dashboard}"
out="${2:-$OMS_ROOT/docs/images/tui-$view.png}"
cols=120 rows=36
case "$view" in dashboard | overview | sagas | dlq | logs | lag) ;; *) oms_die "unknown view $view (dashboard, sagas, dlq, logs, lag)" ;; esac

missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v rsvg-convert >/dev/null || missing+=(librsvg2-bin)
fc-list 2>/dev/null | grep -qi "DejaVu Sans Mono" || missing+=(fonts-dejavu-core)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
omsctl="${OMSCTL:-$(oms_omsctl)}" || oms_die "omsctl is not built yet; run scripts/stack.sh up (or set OMSCTL)"
"$omsctl" stack status >/dev/null || oms_die "the stack is not ready; run scripts/stack.sh up"

work="$(mktemp -d)"
session="oms-shot-$$"
load=""
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [[ -n "$load" ]] && kill "$load" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Orders flowing, so that rates, the latency chart and the lag have something to show.
"$omsctl" order create --count 120 --rate 4/s --timeout 60s >/dev/null 2>&1 &
load=$!
tmux new-session -d -s "$session" -x "$cols" -y "$rows" "$omsctl tui $view --refresh 1s"

# The screen is ready when the view shows its own content (a deadline, not a fixed wait).
case "$view" in
  dashboard | overview) ready="p50 " ;;
  sagas) ready="ORDER" ;;
  dlq) ready="dead letters\|DLQ" ;;
  logs) ready="INFO\|WARN\|log" ;;
  lag) ready="oms-" ;;
esac
deadline=$((SECONDS + 90))
until tmux capture-pane -t "$session" -p | grep -q "$ready"; do
  ((SECONDS < deadline)) || oms_die "the $view view showed nothing ready in 90 s"
  sleep 1
done
# Half a minute more of history for the chart and the rates, unless the load is over.
until ((SECONDS > deadline - 60)) || ! kill -0 "$load" 2>/dev/null; do sleep 1; done

tmux capture-pane -t "$session" -e -p >"$work/screen.txt"
python3 "$OMS_ROOT/scripts/ansi2svg.py" "$work/screen.txt" "$work/screen.svg" \
  --cols "$cols" --rows "$rows" --title "omsctl tui $view"
mkdir -p "$(dirname "$out")"
rsvg-convert "$work/screen.svg" -o "$out"
oms_log "wrote $out"
