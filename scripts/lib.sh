# Shared settings and helpers of the OMS scripts. Source it; do not run it.
# Everything the local stack keeps lives under one state directory (default: <repo>/.oms).

set -euo pipefail

OMS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMS_STATE_DIR="${OMS_STATE_DIR:-$OMS_ROOT/.oms}"
OMS_PG_PORT="${OMS_PG_PORT:-55432}"
OMS_BROKER_PORT="${OMS_BROKER_PORT:-19092}"
OMS_PG_USER="oms"
# A local, loopback-only development cluster: the password is not a secret.
OMS_PG_PASSWORD="oms"
OMS_NISSHI_VERSION="0.8.1"
export OMS_ROOT OMS_STATE_DIR OMS_PG_PORT OMS_BROKER_PORT

# The five services, in start order, and their HTTP ports (OMS_<NAME>_PORT overrides).
OMS_SERVICES=(inventory payment order saga notification)
oms_service_port() {
  local name="$1" var
  var="OMS_$(echo "$1" | tr '[:lower:]' '[:upper:]')_PORT"
  if [[ -n "${!var:-}" ]]; then echo "${!var}"; return; fi
  case "$name" in
    order) echo 8081 ;; payment) echo 8082 ;; inventory) echo 8083 ;;
    notification) echo 8084 ;; saga) echo 8085 ;;
    *) return 1 ;;
  esac
}

oms_log() { printf '\033[1m[oms]\033[0m %s\n' "$*" >&2; }
oms_die() { printf '[oms] error: %s\n' "$*" >&2; exit 1; }

oms_database_url() { echo "postgres://$OMS_PG_USER:$OMS_PG_PASSWORD@127.0.0.1:$OMS_PG_PORT/postgres"; }
oms_brokers() { echo "127.0.0.1:$OMS_BROKER_PORT"; }

# Directory holding initdb, pg_ctl and postgres (newest installed major version).
oms_pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

oms_nisshi_bin() {
  if [[ -n "${OMS_NISSHI_BIN:-}" && -x "${OMS_NISSHI_BIN}" ]]; then echo "$OMS_NISSHI_BIN"; return; fi
  if command -v nisshi >/dev/null 2>&1; then command -v nisshi; return; fi
  if [[ -x "$HOME/.cargo/bin/nisshi" ]]; then echo "$HOME/.cargo/bin/nisshi"; return; fi
  return 1
}

# Waits until TCP port $1 on 127.0.0.1 accepts connections, for at most $2 seconds.
oms_wait_port() {
  local port="$1" deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

oms_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether process $1 is alive: exists and is not a zombie (a killed service whose parent never
# reaped it still has a /proc entry and answers kill -0).
oms_alive() {
  local pid="$1" state
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" && -n "$state" ]]
}
