#!/usr/bin/env bash
# The local stack: a private PostgreSQL cluster, the nisshi broker with the OMS topics, and the
# five services (order 8081, payment 8082, inventory 8083, notification 8084, saga 8085).
#
#   scripts/stack.sh up       install what is missing, start everything, wait until each service is
#                             ready, then send one smoke order through the saga (--no-smoke skips it)
#   scripts/stack.sh up --infra   only PostgreSQL, the broker and the topics (what the tests use)
#   scripts/stack.sh up --debug   debug builds of omsctl and the services instead of release
#                             builds (half the first build time, 3-5x the CPU per order)
#   scripts/stack.sh down     stop everything cleanly (services first)
#   scripts/stack.sh status   show what runs
#   scripts/stack.sh env      print the connection settings as shell exports
#   scripts/stack.sh broker-stop|broker-start|db-stop|db-start|service-stop NAME|service-start NAME
#                             one component (what `omsctl chaos` uses)
#   scripts/stack.sh wipe     stop everything and delete the state directory
#
# Idempotent: `up` on a running stack only checks it. State (data, logs, pid files) lives in
# $OMS_STATE_DIR (default <repo>/.oms); ports come from OMS_PG_PORT (55432) and OMS_BROKER_PORT (19092).
source "$(dirname "$0")/lib.sh"

PG_DIR="$OMS_STATE_DIR/postgres"
BROKER_DIR="$OMS_STATE_DIR/broker"

# initdb refuses root: as root, the cluster runs as the `postgres` system user.
pg_run() {
  if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The data directory must be reachable by the user running PostgreSQL. When the repository sits
# where that user cannot go (say /root), the data lives in /var/tmp and the state dir links to it.
prepare_pg_dir() {
  mkdir -p "$OMS_STATE_DIR"
  if [[ -e "$PG_DIR" ]]; then return; fi
  if [[ "$(id -u)" -eq 0 ]]; then
    mkdir -p "$PG_DIR"
    chown postgres: "$PG_DIR"
    if ! runuser -u postgres -- test -w "$PG_DIR"; then
      rmdir "$PG_DIR"
      local elsewhere
      elsewhere="/var/tmp/oms-postgres-$(echo -n "$OMS_STATE_DIR" | md5sum | cut -c1-12)"
      mkdir -p "$elsewhere"
      chown postgres: "$elsewhere"
      ln -s "$elsewhere" "$PG_DIR"
      oms_log "postgres cannot reach $OMS_STATE_DIR; its data lives in $elsewhere (linked)"
    fi
  else
    mkdir -p "$PG_DIR"
  fi
}

pg_up() {
  local bin
  bin="$(oms_pg_bin)" || oms_die "PostgreSQL server binaries not found; run scripts/deps.sh"
  prepare_pg_dir
  if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
    oms_log "initialising a PostgreSQL cluster in $PG_DIR/data"
    local pwfile="$PG_DIR/.pwfile"
    pg_run bash -c "umask 077; echo '$OMS_PG_PASSWORD' > '$pwfile'"
    pg_run "$bin/initdb" -D "$PG_DIR/data" --username="$OMS_PG_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    pg_run rm -f "$pwfile"
    pg_run mkdir -p "$PG_DIR/run"
  fi
  if pg_run "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    oms_log "PostgreSQL already running on 127.0.0.1:$OMS_PG_PORT"
    return
  fi
  oms_log "starting PostgreSQL on 127.0.0.1:$OMS_PG_PORT"
  pg_run "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
    -o "-p $OMS_PG_PORT -k $PG_DIR/run -c listen_addresses=127.0.0.1 -c max_connections=400" \
    start >/dev/null || { tail -n 20 "$PG_DIR/postgres.log" >&2; oms_die "PostgreSQL did not start"; }
}

pg_down() {
  local bin
  bin="$(oms_pg_bin)" || return 0
  [[ -f "$PG_DIR/data/PG_VERSION" ]] || return 0
  if pg_run "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    oms_log "stopping PostgreSQL"
    pg_run "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
  fi
}

broker_pid() {
  local pid
  pid="$(cat "$BROKER_DIR/broker.pid" 2>/dev/null || true)"
  oms_alive "$pid" && echo "$pid"
}

broker_up() {
  local nisshi
  nisshi="$(oms_nisshi_bin)" || oms_die "nisshi not found; run scripts/deps.sh"
  mkdir -p "$BROKER_DIR"
  if broker_pid >/dev/null; then
    oms_log "broker already running on 127.0.0.1:$OMS_BROKER_PORT (pid $(broker_pid))"
    return
  fi
  if oms_port_open "$OMS_BROKER_PORT"; then
    oms_die "port $OMS_BROKER_PORT is taken by another process; set OMS_BROKER_PORT"
  fi
  oms_log "starting the nisshi broker on 127.0.0.1:$OMS_BROKER_PORT (SQLite storage)"
  # nisshi reads a .env from its working directory: run it from the state dir, not the repo.
  (
    cd "$BROKER_DIR"
    setsid nohup "$nisshi" broker \
      --listener-url "tcp://127.0.0.1:$OMS_BROKER_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$OMS_BROKER_PORT" \
      --storage-engine "sqlite://broker.db" \
      --group-initial-rebalance-delay 0s \
      >>"$BROKER_DIR/broker.log" 2>&1 </dev/null &
    echo $! >"$BROKER_DIR/broker.pid"
  )
  oms_wait_port "$OMS_BROKER_PORT" 30 || { tail -n 20 "$BROKER_DIR/broker.log" >&2; oms_die "broker did not open its port"; }
}

broker_down() {
  local pid
  pid="$(broker_pid)" || return 0
  oms_log "stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do oms_alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$BROKER_DIR/broker.pid"
}

# The cargo profile of the stack's binaries: release unless `up --debug` chose debug. Kept in the
# state dir so a service restarted later (chaos, service-start) runs the same build.
PROFILE_FILE="$OMS_STATE_DIR/profile"
stack_profile() { cat "$PROFILE_FILE" 2>/dev/null || echo release; }
cargo_profile_flag() { [[ "$(stack_profile)" == release ]] && echo --release || true; }

# omsctl and the services in one cargo run: the dependencies are built once.
binaries_build() {
  local args=(-p omsctl) flag
  if [[ "${1:-}" != "--omsctl-only" ]]; then
    for name in "${OMS_SERVICES[@]}"; do args+=(-p "oms-$name"); done
  fi
  flag="$(cargo_profile_flag)"
  oms_log "building ${args[*]//-p /} ($(stack_profile))"
  (cd "$OMS_ROOT" && cargo build -q $flag "${args[@]}")
}

# One partition per topic on the local broker: it re-reads every partition of a fetch each round,
# so idle CPU and hop latency grow with the partition count (docs/benchmarks.md). Apache Kafka
# deployments keep the contracts' count.
LOCAL_PARTITIONS="${OMS_TOPIC_PARTITIONS:-1}"

topics_up() {
  oms_log "creating topics ($LOCAL_PARTITIONS partition(s) each)"
  "$OMS_ROOT/target/$(stack_profile)/omsctl" --brokers "$(oms_brokers)" \
    topics ensure --partitions "$LOCAL_PARTITIONS" -o table >&2
}

SERVICE_DIR="$OMS_STATE_DIR/services"

service_pid() {
  local pid
  pid="$(cat "$SERVICE_DIR/$1.pid" 2>/dev/null || true)"
  oms_alive "$pid" && echo "$pid"
}

service_up() {
  local name="$1" port
  port="$(oms_service_port "$name")"
  mkdir -p "$SERVICE_DIR"
  if service_pid "$name" >/dev/null; then
    oms_log "$name already running on 127.0.0.1:$port (pid $(service_pid "$name"))"
    return
  fi
  if oms_port_open "$port"; then
    oms_die "port $port ($name) is taken by another process; set OMS_$(echo "$name" | tr '[:lower:]' '[:upper:]')_PORT"
  fi
  local upper
  upper="$(echo "$name" | tr '[:lower:]' '[:upper:]')"
  (
    export OMS_DATABASE_URL="$(oms_database_url)" OMS_BROKERS="$(oms_brokers)"
    export "OMS_${upper}_LISTEN=127.0.0.1:$port"
    setsid nohup "$OMS_ROOT/target/$(stack_profile)/oms-$name" >>"$SERVICE_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$SERVICE_DIR/$name.pid"
  )
  oms_log "started $name on 127.0.0.1:$port (pid $(cat "$SERVICE_DIR/$name.pid"), log $SERVICE_DIR/$name.log)"
}

# Waits until every service answers /health/ready with 200.
services_wait_ready() {
  local deadline=$((SECONDS + ${OMS_READY_TIMEOUT:-120})) name port
  for name in "${OMS_SERVICES[@]}"; do
    port="$(oms_service_port "$name")"
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready"; do
      if ! service_pid "$name" >/dev/null; then
        tail -n 20 "$SERVICE_DIR/$name.log" >&2
        oms_die "$name exited during start-up (log: $SERVICE_DIR/$name.log)"
      fi
      ((SECONDS < deadline)) || oms_die "$name not ready after ${OMS_READY_TIMEOUT:-120}s (log: $SERVICE_DIR/$name.log)"
      sleep 0.5
    done
    oms_log "$name ready"
  done
}

services_down() {
  local name pid
  for name in "${OMS_SERVICES[@]}"; do
    pid="$(service_pid "$name")" || continue
    oms_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do oms_alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$SERVICE_DIR/$name.pid"
  done
}

status() {
  local bin pg="stopped" broker="stopped"
  bin="$(oms_pg_bin || true)"
  if [[ -n "$bin" && -f "$PG_DIR/data/PG_VERSION" ]] && pg_run "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    pg="running on 127.0.0.1:$OMS_PG_PORT"
  fi
  if broker_pid >/dev/null; then broker="running on 127.0.0.1:$OMS_BROKER_PORT (pid $(broker_pid))"; fi
  echo "state dir:  $OMS_STATE_DIR"
  echo "postgresql: $pg"
  echo "broker:     $broker"
  local name state
  for name in "${OMS_SERVICES[@]}"; do
    state="stopped"
    if service_pid "$name" >/dev/null; then
      state="running on 127.0.0.1:$(oms_service_port "$name") (pid $(service_pid "$name"))"
      curl -fsS -o /dev/null "http://127.0.0.1:$(oms_service_port "$name")/health/ready" && state="$state, ready" || state="$state, not ready"
    fi
    printf '%-14s%s\n' "$name:" "$state"
  done
}

case "${1:-}" in
  up)
    infra=false smoke=true profile=release
    for flag in "${@:2}"; do
      case "$flag" in
        --infra) infra=true ;;
        --no-smoke) smoke=false ;;
        --debug) profile=debug ;;
        *) oms_die "unknown flag for up: $flag (expected --infra, --no-smoke or --debug)" ;;
      esac
    done
    if [[ "$(stack_profile)" != "$profile" ]] && service_pid "${OMS_SERVICES[0]}" >/dev/null; then
      oms_die "the stack runs $(stack_profile) builds; run down first to switch to $profile"
    fi
    "$(dirname "$0")/deps.sh"
    mkdir -p "$OMS_STATE_DIR"
    echo "$profile" >"$PROFILE_FILE"
    if $infra; then binaries_build --omsctl-only; else binaries_build; fi
    pg_up
    broker_up
    topics_up
    if ! $infra; then
      for name in "${OMS_SERVICES[@]}"; do service_up "$name"; done
      services_wait_ready
      if $smoke; then "$(dirname "$0")/demo.sh" >&2; fi
    fi
    oms_log "stack is up"
    printf 'export OMS_DATABASE_URL=%s\nexport OMS_BROKERS=%s\n' "$(oms_database_url)" "$(oms_brokers)"
    ;;
  down) services_down; broker_down; pg_down ;;
  status) status ;;
  env) printf 'export OMS_DATABASE_URL=%s\nexport OMS_BROKERS=%s\n' "$(oms_database_url)" "$(oms_brokers)" ;;
  wipe)
    services_down; broker_down; pg_down
    if [[ -L "$PG_DIR" ]]; then rm -rf "$(readlink "$PG_DIR")"; fi
    rm -rf "$OMS_STATE_DIR"
    oms_log "removed $OMS_STATE_DIR"
    ;;
  broker-stop) broker_down ;;
  broker-start) broker_up ;;
  db-stop) pg_down ;;
  db-start) pg_up ;;
  service-stop|service-start)
    name="${2:-}"
    oms_service_port "$name" >/dev/null || oms_die "unknown service ${name:-(none)}; expected one of ${OMS_SERVICES[*]}"
    OMS_SERVICES=("$name")
    if [[ "$1" == service-stop ]]; then
      services_down
    else
      service_up "$name"
      services_wait_ready
    fi
    ;;
  *) echo "usage: $0 up [--infra] [--no-smoke] [--debug]|down|status|env|wipe|broker-stop|broker-start|db-stop|db-start|service-stop NAME|service-start NAME" >&2; exit 2 ;;
esac
