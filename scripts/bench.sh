#!/usr/bin/env bash
# Benchmarks that print figures (never asserted; these machines are shared and noisy).
#
#   scripts/bench.sh saga [--repeat N] [--quick]
#       The whole process stack in release builds, driven by `omsctl bench`, run twice side by
#       side on a bench stack of its own (state .oms-bench, ports 55435/19095/1818x, wiped first):
#         oms         this design, default settings
#         comparable  the design of comparable projects: relay polling every 500 ms, consumers
#                     handling one message per transaction, one at a time (the same 500 ms
#                     fetch wait as this design)
#       Each design: idle CPU, a lone customer (closed loop, 1 in flight), 20 orders/s and the
#       saturation point (closed loop, 64 in flight); this design also 50 orders/s and 120 orders/s
#       for 60 s followed by `omsctl verify`. Then the `pgbench -N` ceiling of the same cluster
#       divided by the commits per order measured at saturation. Every run is repeated N times
#       (default 1) and the summary quotes medians. --quick: 10 s runs (a smoke of the script).
#       JSON of every run: .oms-bench/results/; summary: .oms-bench/results/summary.md.
#       The simulated carrier answers at once (pick, ship and deliver after 0 s), so the delivery
#       figures (CONFIRMED -> DELIVERED) are this design's own cost.
#   scripts/bench.sh profile [--seconds 30]
#       Where an order's CPU goes: the release stack at 20/s, 50/s and saturation (64 in flight),
#       each under `perf record` (49 Hz, DWARF call graphs, every component) and
#       pg_stat_statements (loaded through OMS_PG_OPTIONS): CPU per order per component,
#       statements and commits per order per database, the heaviest statements, each
#       component's hottest symbols and (with inferno installed) its flame graph. Figures under
#       perf run slower than the saga bench's. Results and summary: .oms-bench/results-profile/.
#   scripts/bench.sh soak [--minutes 30] [--rate 50/s] [--window 5]
#       One release stack under a steady open-loop rate for the whole run, reported per window
#       (an `omsctl bench` each): saga and delivery p50/p99, CPU per order, then the rows and
#       bytes of every service's inbox and outbox, the databases' sizes and every component's
#       memory (PSS). Inbox and outbox retention 2 minutes, so the pruning shows. Ends with
#       `omsctl verify`. Summary: .oms-bench/results-soak/summary.md (last window against first).
#   scripts/bench.sh auth [--repeat N] [--quick]
#       The cost of token checks: the release process stack with auth on (ES256, the local
#       stack's JWKS) and off (OMS_AUTH=off), alternated N times (default 3) on one bench stack;
#       POST /orders latency p50/p99 (1 in flight, and 50 orders/s) and the order service's CPU
#       per order, medians and ratios; then `Gate::check` alone per kind of key (HS256, RS256,
#       ES256; a token's first check against a remembered one). Summary:
#       .oms-bench/results-auth/summary.md.
#   scripts/bench.sh tracing [--repeat N] [--quick]
#       The cost of tracing: the release process stack in three modes, alternated N times
#       (default 3), each run on a freshly wiped bench stack: `export` (every span sent over OTLP/HTTP to a receiver,
#       otlp-sink, standing in for Jaeger), `local` (spans made, ids propagated, nothing exported:
#       the default without an endpoint) and `off` (OMS_TRACING=off: no spans, the baseline);
#       saga p50/p99 and POST /orders p50 at 1 in flight and at 50 orders/s, the stack's CPU per
#       order, medians and ratios, and the spans received. Summary:
#       .oms-bench/results-tracing/summary.md.
#   scripts/bench.sh replicas [--repeat N] [--quick]
#       The release process stack with one replica of every service, with two (`stack up
#       --replicas 2`, two partitions per topic) and with two on one partition (the second a hot
#       standby), alternated N times (default 3), each run on a freshly wiped bench stack: idle
#       CPU, 20 orders/s (saga p50/p99) and the saturation point (closed loop, 64 in flight:
#       confirmed orders/s, CPU per order, the broker's part), medians and ratios. Summary:
#       .oms-bench/results-replicas/summary.md.
#   scripts/bench.sh outage [--repeat N] [--quick]
#       The cost of the saga's outage watch (a broker metadata probe before every deadline
#       sweep): the release process stack with it (`budget`, the default 120 s) and without it
#       (`off`, OMS_SAGA_OUTAGE_BUDGET=0s), alternated N times (default 3), each run on a
#       freshly wiped bench stack: idle CPU of the stack and of the saga, 20 orders/s (saga
#       p50/p99) and the saturation point (64 in flight), medians and ratios. Summary:
#       .oms-bench/results-outage/summary.md.
#   scripts/bench.sh fulfillment [--repeat N] [--quick]
#       What fulfillment adds to each order: the release process stack with every service
#       (`on`: each confirmed order is then picked, shipped and delivered, six more messages and
#       the carrier's steps) and with the fulfillment service stopped (`stopped`: its commands
#       wait in their topic), alternated N times (default 3), each run on a freshly wiped bench
#       stack: idle CPU, 20 orders/s (saga p50/p99 to CONFIRMED) and the saturation point (64 in
#       flight), medians and ratios. Summary: .oms-bench/results-fulfillment/summary.md.
#   scripts/bench.sh kafka [--repeat N] [--quick]
#       What the broker's shape costs: one plain node, one secured node (SASL_SSL, SCRAM, ACLs)
#       and three plain nodes (replication 3, min.insync.replicas 2), alternated N times (default
#       3): idle CPU, 20 orders/s and saturation, the brokers' CPU per order. Summary:
#       .oms-bench/results-kafka/summary.md.
#   scripts/bench.sh linger [--repeat N] [--quick]
#       The producers' linger.ms, 0 (the default) against 5 ms, alternated N times (default 3):
#       20 orders/s and saturation, the broker's CPU per order. Summary:
#       .oms-bench/results-linger/summary.md.
#   scripts/bench.sh batch [--repeat N] [--quick]
#       The consumers' batch, each handler's choice (payment 1, the others up to 32 messages in
#       one transaction) against one message a transaction everywhere, alternated N times
#       (default 3): 20 orders/s and saturation, CPU per order. Summary:
#       .oms-bench/results-batch/summary.md.
#   scripts/bench.sh groups [--repeat N]
#       The consumer group protocol, classic against KIP-848's `consumer`, alternated N times
#       (default 3): replica-failover's short form on two replicas (group and relay takeover) and
#       broker-outage's on one (time until every order finished). Summary:
#       .oms-bench/results-groups/summary.md.
#   scripts/bench.sh broker   the local broker alone (a private Kafka node per setting): start
#                             time, idle CPU and memory, hop latency and CPU per message by JVM
#                             options, fetch wait and partitions (OMS_BENCH_JVMS: `;`-separated
#                             option lists, OMS_BENCH_WAITS, OMS_BENCH_PARTITIONS)
#   scripts/bench.sh relay|tail|tui   the in-process benchmarks of the tests crate
source "$(dirname "$0")/lib.sh"

infra_env() {
  # `up` prints the stack's settings as exports: the benches get them under OMS_TEST_*.
  eval "$("$OMS_ROOT/scripts/stack.sh" up --infra | sed 's/^export OMS_/export OMS_TEST_/')"
  export OMS_OMSCTL_BIN="$OMS_ROOT/target/release/omsctl"
  cd "$OMS_ROOT"
}

# The options of the stack benchmarks, into the caller's `repeat` (holding its default) and
# `quick` variables: --repeat N, --quick. Also checks that jq is there for the summaries.
bench_args() {
  while (($#)); do
    case "$1" in
      --repeat) repeat="${2:?--repeat needs a number}"; shift 2 ;;
      --quick) quick=true; shift ;;
      *) oms_die "unexpected argument $1 (expected --repeat N or --quick)" ;;
    esac
  done
  [[ "$repeat" =~ ^[1-9][0-9]*$ ]] || oms_die "--repeat must be a whole number of at least 1"
  command -v jq >/dev/null || oms_die "jq is missing; run scripts/deps.sh"
}

# A stack of its own, so a developer's stack is neither disturbed nor measured.
bench_stack_env() {
  export OMS_STATE_DIR="$OMS_ROOT/.oms-bench" OMS_PG_PORT=55435 OMS_BROKER_PORT=19095
  export OMS_BROKERS="127.0.0.1:$OMS_BROKER_PORT"
  (cd "$OMS_ROOT" && cargo build --release -q -p omsctl)
  local name port=18180
  for name in $("$OMS_ROOT/target/release/omsctl" stack services -o ids); do
    port=$((port + 1))
    export "OMS_${name^^}_PORT=$port" "OMS_${name^^}_URL=http://127.0.0.1:$port"
  done
}

# --- saga: the process stack under omsctl bench ----------------------------------------------

# The simulated carrier answers at once, so the delivery figures are this design's own cost.
carrier_at_once() {
  export OMS_FULFILLMENT_PICK_AFTER=0s OMS_FULFILLMENT_SHIP_AFTER=0s OMS_FULFILLMENT_DELIVER_AFTER=0s
}

saga_bench() {
  local repeat=1 quick=false
  bench_args "$@"
  bench_stack_env
  carrier_at_once
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results" keep
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT

  local long=30s sustain=60s idle=30s
  if $quick; then long=10s sustain=10s idle=5s; fi

  # The comparable design, as settings of the same binaries.
  local comparable=(OMS_OUTBOX_WAKEUP=poll:500ms OMS_CONSUMER_FETCH_WAIT=500ms
    OMS_CONSUMER_WORKERS=1 OMS_CONSUMER_MAX_BATCH=1)

  commits() {
    "$(oms_pg_bin)/psql" "$OMS_DATABASE_URL" -Atqc "SELECT sum(xact_commit) FROM pg_stat_database"
  }

  # One omsctl bench run, its JSON saved as $1.json with the commits it caused added.
  run_load() {
    local file="$keep/$1.json" before after
    shift
    oms_log "bench $*"
    before="$(commits)"
    "$omsctl" bench --stock 1000000 "$@" -o json >"$file.tmp" || oms_log "bench $* reported a failure"
    after="$(commits)"
    if ! jq -e . "$file.tmp" >/dev/null 2>&1; then rm -f "$file.tmp"; return; fi
    jq --argjson c "$((after - before))" '. + {commits: $c, commitsPerOrder: (if .finished > 0 then $c / .finished else null end)}' \
      "$file.tmp" >"$file"
    rm -f "$file.tmp"
  }

  local design rep
  for rep in $(seq 1 "$repeat"); do
    for design in oms comparable; do
      oms_log "=== $design, run $rep of $repeat ==="
      "$stack" wipe >/dev/null 2>&1 || true
      (
        if [[ "$design" == comparable ]]; then export "${comparable[@]}"; fi
        "$stack" up --no-smoke >"$keep/env"
      )
      # `up` prints OMS_DATABASE_URL and OMS_BROKERS as exports.
      eval "$(cat "$keep/env")"
      # Settle: consumer groups joined and the first order through.
      "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
      sleep 8
      "$omsctl" stack cpu --over "$idle" -o json >"$keep/$design-idle-$rep.json"
      run_load "$design-lone-$rep" --concurrency 1 --duration "$long"
      run_load "$design-rate20-$rep" --rate 20/s --duration "$long"
      run_load "$design-saturation-$rep" --concurrency 64 --duration "$long"
      if [[ "$design" == oms ]]; then
        run_load "$design-rate50-$rep" --rate 50/s --duration "$long"
        run_load "$design-rate120-$rep" --rate 120/s --duration "$sustain"
        if "$omsctl" verify >"$keep/verify-$rep.txt" 2>&1; then
          echo "omsctl verify after the sustained run $rep: passed" >>"$keep/verify.txt"
        else
          echo "omsctl verify after the sustained run $rep: FAILED ($(tail -n1 "$keep/verify-$rep.txt"))" >>"$keep/verify.txt"
        fi
        oms_log "$(tail -n1 "$keep/verify.txt")"
      fi
    done
  done

  # The ceiling of the same cluster: small write transactions, 8 clients.
  oms_log "pgbench -N (8 clients, ${long})"
  local pg
  pg="$(oms_pg_bin)"
  local bench_db="${OMS_DATABASE_URL%/postgres}/pgbench"
  "$pg/psql" "$OMS_DATABASE_URL" -qc "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS pgbench" -c "CREATE DATABASE pgbench" >/dev/null
  "$pg/pgbench" -i -s 10 -q "$bench_db" >/dev/null 2>&1
  "$pg/pgbench" -N -c 8 -j 2 -T "${long%s}" "$bench_db" \
    >"$keep/pgbench.txt" 2>&1 || oms_die "pgbench failed: $(tail -n 3 "$keep/pgbench.txt")"
  keep_results "$keep" "$results" "$keep"/*
  saga_summary "$results" | tee "$results/summary.md"
}

# The runs' files of KEEP (the temporary directory) become RESULTS, replacing an earlier run's:
# stop the bench stack, then move.  keep_results KEEP RESULTS FILE...
keep_results() {
  local keep="$1" results="$2"
  shift 2
  "$OMS_ROOT/scripts/stack.sh" down >/dev/null
  trap - EXIT
  rm -rf "$results"
  mkdir -p "$results"
  mv "$@" "$results"/
  rm -rf "$keep"
}

# 20 orders/s, then the saturation point (64 in flight), DURATION each, into
# PREFIX-rate20-REP.json and PREFIX-saturation-REP.json.  rate20_and_saturation OMSCTL DURATION PREFIX REP
rate20_and_saturation() {
  local omsctl="$1" long="$2" prefix="$3" rep="$4"
  oms_log "bench 20/s, then saturation (64 in flight), $long each"
  "$omsctl" bench --stock 1000000 --rate 20/s --duration "$long" -o json >"$prefix-rate20-$rep.json" ||
    oms_log "bench reported a failure"
  "$omsctl" bench --stock 1000000 --concurrency 64 --duration "$long" -o json >"$prefix-saturation-$rep.json" ||
    oms_log "bench reported a failure"
}

# --- replicas: one and two instances of every service ------------------------------------------

replicas_bench() {
  local repeat=3 quick=false long=30s idle=20s
  bench_args "$@"
  if $quick; then long=10s idle=5s; fi
  bench_stack_env
  # The replicas' URLs come from the stack's record (replica K listens on the port + 100 (K-1)).
  local name
  for name in $("$OMS_ROOT/target/release/omsctl" stack services -o ids); do unset "OMS_${name^^}_URL"; done
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-replicas" keep n rep
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
  # r1: one replica; r2: two replicas, two partitions per topic (each replica holds one);
  # r2p1: two replicas, one partition (the second replica's consumers stand by).
  local mode n partitions
  for rep in $(seq 1 "$repeat"); do
    for mode in r1 r2 r2p1; do
      case "$mode" in
        r1) n=1 partitions=1 ;;
        r2) n=2 partitions=2 ;;
        r2p1) n=2 partitions=1 ;;
      esac
      oms_log "=== $n replica(s), $partitions partition(s) per topic, run $rep of $repeat ==="
      "$stack" wipe >/dev/null 2>&1 || true
      OMS_TOPIC_PARTITIONS="$partitions" "$stack" up --no-smoke --replicas "$n" >"$keep/env"
      eval "$(cat "$keep/env")"
      # Settle: every consumer group joined and the first order through.
      "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
      sleep 8
      "$omsctl" stack cpu --over "$idle" -o json >"$keep/$mode-idle-$rep.json"
      rate20_and_saturation "$omsctl" "$long" "$keep/$mode" "$rep"
    done
  done
  keep_results "$keep" "$results" "$keep"/*.json
  replicas_summary "$results" | tee "$results/summary.md"
}

replicas_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def idle($mode): [$all[] | select(.file | test("^" + $mode + "-idle-[0-9]+\\.json$")) | .doc.totalCorePercent] | median;
      def broker($mode; $load): fig($mode; $load; [.cpu[] | select(.component == "broker") | .msPerOrder][0]);
      def row($name; $one; $two; $standby):
        "| \($name) | \($one | r2) | \($two | r2) | \($standby | r2) | \(ratio($two; $one)) | \(ratio($standby; $one)) |";
      def load($load; $name; f): row($name; fig("r1"; $load; f); fig("r2"; $load; f); fig("r2p1"; $load; f));
    "| figure | 1 replica | 2 replicas, 2 partitions | 2 replicas, 1 partition | 2 : 1 | standby : 1 |",
    "| --- | --- | --- | --- | --- | --- |",
    load("saturation"; "confirmed orders/s at saturation (64 in flight)"; .confirmed / .durationSeconds),
    load("saturation"; "saga p50 ms at saturation"; .sagaMs.p50),
    load("saturation"; "stack CPU ms per order at saturation"; .cpuMsPerOrder),
    row("broker CPU ms per order at saturation"; broker("r1"; "saturation"); broker("r2"; "saturation"); broker("r2p1"; "saturation")),
    load("rate20"; "saga p50 ms at 20/s"; .sagaMs.p50),
    load("rate20"; "saga p99 ms at 20/s"; .sagaMs.p99),
    load("rate20"; "stack CPU ms per order at 20/s"; .cpuMsPerOrder),
    row("idle stack, % of one core"; idle("r1"); idle("r2"); idle("r2p1")),
    "",
    "Runs per figure: \(runs("r1"; "saturation") | length) (medians); unfinished orders in all runs: \([$all[] | .doc.unfinished // 0] | add)."
  ' "$1"/*-*.json
}

# --- two modes of one stack side by side (outage, fulfillment) ----------------------------------

# Two modes of the release process stack, alternated REPEAT times, each run on a freshly wiped
# bench stack: idle CPU, then 20 orders/s and the saturation point, into MODE-LOAD-REP.json.
#   two_mode_bench NAME "MODE_A MODE_B" UP AFTER_IDLE [--repeat N] [--quick]
# UP MODE starts the stack in that mode (in a subshell, printing its environment like
# `stack.sh up`); AFTER_IDLE MODE OMSCTL DIR REP ("" for none) measures more on the idle
# stack. Results in .oms-bench/results-NAME; the summary is NAME_summary's.
two_mode_bench() {
  local name="$1" modes="$2" up="$3" after_idle="${4:-}"
  shift 4
  local repeat=3 quick=false long=30s idle=20s
  bench_args "$@"
  if $quick; then long=10s idle=5s; fi
  bench_stack_env
  local omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-$name" keep mode rep
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
  for rep in $(seq 1 "$repeat"); do
    for mode in $modes; do
      oms_log "=== $name $mode, run $rep of $repeat ==="
      "$OMS_ROOT/scripts/stack.sh" wipe >/dev/null 2>&1 || true
      # A secured mode exports omsctl's Kafka user, whose file the wipe removed.
      unset OMS_KAFKA_PROPERTIES_FILE
      ("$up" "$mode") >"$keep/env"
      eval "$(cat "$keep/env")"
      "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
      sleep 8
      "$omsctl" stack cpu --over "$idle" -o json >"$keep/$mode-idle-$rep.json"
      if [[ -n "$after_idle" ]]; then "$after_idle" "$mode" "$omsctl" "$keep" "$rep"; fi
      rate20_and_saturation "$omsctl" "$long" "$keep/$mode" "$rep"
    done
  done
  keep_results "$keep" "$results" "$keep"/*.json
  "${name}_summary" "$results" | tee "$results/summary.md"
}

# --- batch: the consumers' batch, each handler's choice against one message ------------------

# `handlers`: the default (OMS_CONSUMER_MAX_BATCH unset, each handler's own limit); `one`: every
# consumer settles one message per transaction.
batch_up() {
  if [[ "$1" == one ]]; then export OMS_CONSUMER_MAX_BATCH=1; else unset OMS_CONSUMER_MAX_BATCH; fi
  "$OMS_ROOT/scripts/stack.sh" up --no-smoke
}

batch_bench() {
  two_mode_bench batch "handlers one" batch_up "" "$@"
}

batch_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def row($name; $a; $b): "| \($name) | \($a | r2) | \($b | r2) | \(ratio($b; $a)) |";
      def load($load; $name; f): row($name; fig("handlers"; $load; f); fig("one"; $load; f));
    "| figure | each handler'"'"'s batch | one message | one : handlers |",
    "| --- | --- | --- | --- |",
    load("rate20"; "saga p50 ms at 20/s"; .sagaMs.p50),
    load("rate20"; "saga p99 ms at 20/s"; .sagaMs.p99),
    load("rate20"; "stack CPU ms per order at 20/s"; .cpuMsPerOrder),
    load("saturation"; "confirmed orders/s at saturation (64 in flight)"; .confirmed / .durationSeconds),
    load("saturation"; "saga p50 ms at saturation"; .sagaMs.p50),
    load("saturation"; "stack CPU ms per order at saturation"; .cpuMsPerOrder),
    "",
    "Runs per figure: \(runs("handlers"; "saturation") | length) (medians); unfinished orders in all runs: \([$all[] | .doc.unfinished // 0] | add)."
  ' "$1"/*-*.json
}

# --- linger: the producers' linger.ms, 0 against 5 ms ------------------------------------------

# `0ms`: the default (a message is sent as soon as the relay hands it over); `5ms`: librdkafka
# waits up to 5 ms to fill a batch (OMS_KAFKA_LINGER_MS reaches every client as linger.ms).
linger_up() {
  export OMS_KAFKA_LINGER_MS="${1%ms}"
  "$OMS_ROOT/scripts/stack.sh" up --no-smoke
}

linger_bench() {
  two_mode_bench linger "0ms 5ms" linger_up "" "$@"
}

linger_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def broker($mode; $load): fig($mode; $load; [.cpu[] | select(.component | startswith("broker")) | .msPerOrder] | add);
      def row($name; $a; $b): "| \($name) | \($a | r2) | \($b | r2) | \(ratio($b; $a)) |";
      def load($load; $name; f): row($name; fig("0ms"; $load; f); fig("5ms"; $load; f));
    "| figure | linger.ms 0 | linger.ms 5 | 5 : 0 |",
    "| --- | --- | --- | --- |",
    load("rate20"; "saga p50 ms at 20/s"; .sagaMs.p50),
    load("rate20"; "saga p99 ms at 20/s"; .sagaMs.p99),
    load("rate20"; "stack CPU ms per order at 20/s"; .cpuMsPerOrder),
    row("broker CPU ms per order at 20/s"; broker("0ms"; "rate20"); broker("5ms"; "rate20")),
    load("saturation"; "confirmed orders/s at saturation (64 in flight)"; .confirmed / .durationSeconds),
    load("saturation"; "saga p50 ms at saturation"; .sagaMs.p50),
    load("saturation"; "stack CPU ms per order at saturation"; .cpuMsPerOrder),
    row("broker CPU ms per order at saturation"; broker("0ms"; "saturation"); broker("5ms"; "saturation")),
    "",
    "Runs per figure: \(runs("0ms"; "saturation") | length) (medians); unfinished orders in all runs: \([$all[] | .doc.unfinished // 0] | add)."
  ' "$1"/*-*.json
}

# --- kafka: one plain node, one secured node, three nodes ---------------------------------------

# `plain`: one node, PLAINTEXT; `secure`: one node, SASL_SSL with SCRAM and ACLs; `three`: three
# nodes, replication 3, min.insync.replicas 2, plain.
kafka_up() {
  case "$1" in
    plain) "$OMS_ROOT/scripts/stack.sh" up --no-smoke --plain ;;
    secure) "$OMS_ROOT/scripts/stack.sh" up --no-smoke --secure ;;
    three) "$OMS_ROOT/scripts/stack.sh" up --no-smoke --plain --brokers 3 ;;
  esac
}

kafka_bench() {
  two_mode_bench kafka "plain secure three" kafka_up "" "$@"
}

kafka_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def idle($mode; f): [$all[] | select(.file | test("^" + $mode + "-idle-[0-9]+\\.json$")) | .doc | f] | median;
      def broker_idle: [.components[]? | select(.component | startswith("broker")) | .corePercent] | add;
      def broker($mode; $load): fig($mode; $load; [.cpu[] | select(.component | startswith("broker")) | .msPerOrder] | add);
      def row($name; $p; $s; $t): "| \($name) | \($p | r2) | \($s | r2) | \($t | r2) | \(ratio($s; $p)) | \(ratio($t; $p)) |";
      def load($load; $name; f): row($name; fig("plain"; $load; f); fig("secure"; $load; f); fig("three"; $load; f));
    "| figure | 1 node, plain | 1 node, SASL_SSL + ACLs | 3 nodes, plain | secure : plain | 3 : 1 |",
    "| --- | --- | --- | --- | --- | --- |",
    row("idle stack, % of one core"; idle("plain"; .totalCorePercent); idle("secure"; .totalCorePercent); idle("three"; .totalCorePercent)),
    row("idle broker (all nodes), % of one core"; idle("plain"; broker_idle); idle("secure"; broker_idle); idle("three"; broker_idle)),
    load("rate20"; "saga p50 ms at 20/s"; .sagaMs.p50),
    load("rate20"; "saga p99 ms at 20/s"; .sagaMs.p99),
    load("rate20"; "stack CPU ms per order at 20/s"; .cpuMsPerOrder),
    row("broker CPU ms per order at 20/s"; broker("plain"; "rate20"); broker("secure"; "rate20"); broker("three"; "rate20")),
    load("saturation"; "confirmed orders/s at saturation (64 in flight)"; .confirmed / .durationSeconds),
    load("saturation"; "stack CPU ms per order at saturation"; .cpuMsPerOrder),
    row("broker CPU ms per order at saturation"; broker("plain"; "saturation"); broker("secure"; "saturation"); broker("three"; "saturation")),
    "",
    "Runs per figure: \(runs("plain"; "saturation") | length) (medians); unfinished orders in all runs: \([$all[] | .doc.unfinished // 0] | add)."
  ' "$1"/*-*.json
}

# --- groups: the consumer group protocol and membership -----------------------------------------

# For each group protocol (`classic`, `consumer`: KIP-848's), alternated REPEAT times on a freshly wiped bench stack: replica-failover's short form on two
# replicas (how long until a killed replica's partitions are held again), then broker-outage's
# short form on one (how long until every order finished after the broker came back). Reports in
# .oms-bench/results-groups.
groups_bench() {
  local repeat=3 quick=false
  bench_args "$@"
  bench_stack_env
  local name
  for name in $("$OMS_ROOT/target/release/omsctl" stack services -o ids); do unset "OMS_${name^^}_URL"; done
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-groups" keep mode rep
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
  for rep in $(seq 1 "$repeat"); do
    for mode in classic consumer; do
      oms_log "=== consumer group protocol $mode, run $rep of $repeat ==="
      "$stack" wipe >/dev/null 2>&1 || true
      export OMS_CONSUMER_GROUP_PROTOCOL="$mode"
      "$stack" up --no-smoke --replicas 2 >"$keep/env"
      eval "$(cat "$keep/env")"
      "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
      "$omsctl" drill run replica-failover --short --report "$keep/$mode-failover-$rep.json" >/dev/null ||
        oms_log "replica-failover did not hold"
      "$stack" up --no-smoke --replicas 1 >/dev/null
      "$omsctl" drill run broker-outage --short --report "$keep/$mode-outage-$rep.json" >/dev/null ||
        oms_log "broker-outage did not hold"
    done
  done
  unset OMS_CONSUMER_GROUP_PROTOCOL
  keep_results "$keep" "$results" "$keep"/*.json
  groups_summary "$results" | tee "$results/summary.md"
}

groups_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def takeovers($p): [runs($p; "failover")[] | .takeovers[]? | .groupSeconds // empty];
      def relays($p): [runs($p; "failover")[] | .takeovers[]? | .relaySeconds // empty];
      def held($m): [runs($m; "failover")[], runs($m; "outage")[] | select(.held)] | length;
      def row($name; f): "| \($name) | \("classic" | f | r2) | \("consumer" | f | r2) |";
    "| figure | classic | consumer (KIP-848) |",
    "| --- | --- | --- |",
    row("replica-failover: group takeover, median s"; takeovers(.) | median),
    row("replica-failover: group takeover, slowest s"; takeovers(.) | max),
    row("replica-failover: relay takeover, median s"; relays(.) | median),
    row("broker-outage: every order finished after the broker is back, median s"; . as $m | fig($m; "outage"; .timeToRecoverSeconds)),
    row("broker-outage: orders cancelled TIMEOUT, median"; . as $m | fig($m; "outage"; .orders.cancelled.TIMEOUT // 0)),
    row("replica-failover: orders cancelled TIMEOUT, median"; . as $m | fig($m; "failover"; .orders.cancelled.TIMEOUT // 0)),
    row("drills that held"; held(.)),
    "",
    "Runs per protocol: \(runs("classic"; "failover") | length) of each drill."
  ' "$1"/*-*.json
}

# --- outage: the saga's broker probe on and off --------------------------------------------------

# The saga's outage watch with its budget (the default) and without (`off`).
outage_up() {
  if [[ "$1" == off ]]; then export OMS_SAGA_OUTAGE_BUDGET=0s; fi
  "$OMS_ROOT/scripts/stack.sh" up --no-smoke
}

outage_bench() {
  two_mode_bench outage "budget off" outage_up "" "$@"
}

# A lone customer's orders end to end: N orders one after the other on the idle stack, each
# followed to DELIVERED; the order service's createdAt → deliveredAt of each, in ms, as JSON
# {"ms": [...]}.  delivered_latency OMSCTL N OUT
delivered_latency() {
  local omsctl="$1" n="$2" out="$3" i id status ms=()
  for i in $(seq 1 "$n"); do
    id="$("$omsctl" order create --item mouse-01 -o ids)"
    for _ in $(seq 1 600); do
      status="$("$omsctl" order get "$id" -o json | jq -r .status)"
      [[ "$status" == DELIVERED || "$status" == CANCELLED ]] && break
      sleep 0.05
    done
    ms+=("$("$omsctl" order get "$id" -o json | jq '
      def epoch: (sub("\\.[0-9]+"; "") | fromdate) + ((capture("(?<f>\\.[0-9]+)") // {f: "0"}).f | tonumber);
      ((.deliveredAt | epoch) - (.createdAt | epoch)) * 1000')")
  done
  printf '%s\n' "${ms[@]}" | jq -s '{ms: .}' >"$out"
}

# Every service (`on`), or the fulfillment service stopped once the stack is up (`stopped`).
fulfillment_up() {
  "$OMS_ROOT/scripts/stack.sh" up --no-smoke
  if [[ "$1" == stopped ]]; then "$OMS_ROOT/target/release/omsctl" stack stop fulfillment >/dev/null; fi
}

# With fulfillment on, a lone customer's created → DELIVERED, 20 orders.
fulfillment_after_idle() {
  if [[ "$1" == on ]]; then delivered_latency "$2" 20 "$3/on-delivered-$4.json"; fi
}

fulfillment_bench() {
  two_mode_bench fulfillment "on stopped" fulfillment_up fulfillment_after_idle "$@"
}

fulfillment_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def idle($mode; f): [$all[] | select(.file | test("^" + $mode + "-idle-[0-9]+\\.json$")) | .doc | f] | median;
      def row($name; $on; $off): "| \($name) | \($on | r2) | \($off | r2) | \(ratio($on; $off)) |";
      def load($load; $name; f): row($name; fig("on"; $load; f); fig("stopped"; $load; f));
    "| figure | fulfillment on | fulfillment stopped | on : stopped |",
    "| --- | --- | --- | --- |",
    row("idle stack, % of one core"; idle("on"; .totalCorePercent); idle("stopped"; .totalCorePercent)),
    load("rate20"; "saga p50 ms at 20/s"; .sagaMs.p50),
    load("rate20"; "saga p99 ms at 20/s"; .sagaMs.p99),
    load("rate20"; "stack CPU ms per order at 20/s"; .cpuMsPerOrder),
    load("saturation"; "confirmed orders/s at saturation (64 in flight)"; .confirmed / .durationSeconds),
    load("saturation"; "stack CPU ms per order at saturation"; .cpuMsPerOrder),
    "",
    "",
    "Runs per figure: \(runs("on"; "saturation") | length) (medians); unfinished orders in all runs: \([$all[] | .doc.unfinished // 0] | add).",
    "",
    ([$all[] | select(.file | test("^on-delivered-")) | .doc.ms[]] as $d
      | "Idle stack, a lone customer: created → DELIVERED p50 \($d | median | r2) ms, min \($d | min | r2) ms, max \($d | max | r2) ms over \($d | length) orders (the simulated carrier itself waits 300 + 300 + 600 ms).")
  ' "$1"/*-*.json
}

outage_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def idle($mode; f): [$all[] | select(.file | test("^" + $mode + "-idle-[0-9]+\\.json$")) | .doc | f] | median;
      def row($name; $on; $off): "| \($name) | \($on | r2) | \($off | r2) | \(ratio($on; $off)) |";
      def load($load; $name; f): row($name; fig("budget"; $load; f); fig("off"; $load; f));
      def saga_idle: [.components[]? | select(.component == "saga") | .corePercent] | add;
    "| figure | outage watch on (budget 120 s) | off (budget 0 s) | on : off |",
    "| --- | --- | --- | --- |",
    row("idle stack, % of one core"; idle("budget"; .totalCorePercent); idle("off"; .totalCorePercent)),
    row("idle saga, % of one core"; idle("budget"; saga_idle); idle("off"; saga_idle)),
    load("rate20"; "saga p50 ms at 20/s"; .sagaMs.p50),
    load("rate20"; "saga p99 ms at 20/s"; .sagaMs.p99),
    load("saturation"; "confirmed orders/s at saturation (64 in flight)"; .confirmed / .durationSeconds),
    load("saturation"; "stack CPU ms per order at saturation"; .cpuMsPerOrder),
    "",
    "Runs per figure: \(runs("budget"; "saturation") | length) (medians); unfinished orders in all runs: \([$all[] | .doc.unfinished // 0] | add)."
  ' "$1"/*-*.json
}

# --- the A/B benchmarks (auth, tracing): one stack, the services in two or three modes ---------

# One mode's run: a warm-up order, then 1 in flight and 50 orders/s for DURATION each, into
# PREFIX-lone-REP.json and PREFIX-rate50-REP.json.  ab_loads OMSCTL DURATION PREFIX REP
ab_loads() {
  local omsctl="$1" long="$2" prefix="$3" rep="$4"
  "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
  "$omsctl" bench --stock 1000000 --concurrency 1 --duration "$long" -o json >"$prefix-lone-$rep.json" ||
    oms_log "bench reported a failure"
  "$omsctl" bench --stock 1000000 --rate 50/s --duration "$long" -o json >"$prefix-rate50-$rep.json" ||
    oms_log "bench reported a failure"
}

# What the A/B summaries start with: median, r2, ratio($a; $b), and over the JSON files given (MODE-LOAD-N.json)
# runs($mode; $load) and fig($mode; $load; f), the median of f over those runs.
AB_JQ_PRELUDE='
    def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    def r2: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
    def ratio($a; $b): if ($b // 0) > 0 and $a != null then ($a / $b | r2) + "x" else "-" end;
    [inputs | {file: (input_filename | split("/") | last), doc: .}] as $all
    | def runs($mode; $load): [$all[] | select(.file | test("^" + $mode + "-" + $load + "-[0-9]+\\.json$")) | .doc];
      def fig($mode; $load; f): [runs($mode; $load)[] | f // empty] | median;'

# --- auth: POST /orders with and without token checks ---------------------------------------

auth_bench() {
  local repeat=3 quick=false long=30s
  bench_args "$@"
  if $quick; then long=10s; fi
  bench_stack_env
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-auth" keep mode rep
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
  "$stack" wipe >/dev/null 2>&1 || true
  # The same stack and data throughout; only the services restart, with token checks on (jwt:
  # the state directory's ES256 JWKS) or off. omsctl sends its token either way.
  for rep in $(seq 1 "$repeat"); do
    for mode in jwt off; do
      oms_log "=== auth $mode, run $rep of $repeat ==="
      "$stack" down >/dev/null 2>&1 || true
      OMS_AUTH="$mode" "$stack" up --no-smoke >"$keep/env"
      eval "$(cat "$keep/env")"
      ab_loads "$omsctl" "$long" "$keep/$mode" "$rep"
    done
  done
  keep_results "$keep" "$results" "$keep"/*.json
  auth_summary "$results" | tee "$results/summary.md"
  # The check itself, per kind of key: first sight of a token against a remembered one.
  (cd "$OMS_ROOT" && cargo bench -q -p oms-tests --bench auth) | tee -a "$results/summary.md"
}

auth_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def order_cpu: [.cpu[] | select(.component == "order") | .msPerOrder][0];
      def row($load; $name; $what; f):
        fig("jwt"; $load; f) as $on | fig("off"; $load; f) as $off
        | "| \($name) | \($what) | \($on | r2) | \($off | r2) | \(if ($off // 0) > 0 and $on != null then ($on / $off | r2) + "x" else "-" end) |";
    "| load | figure | auth on (jwt) | auth off | ratio |",
    "| --- | --- | --- | --- | --- |",
    row("lone"; "1 in flight"; "POST /orders p50 ms"; .acceptMs.p50),
    row("lone"; "1 in flight"; "POST /orders p99 ms"; .acceptMs.p99),
    row("rate50"; "50/s"; "POST /orders p50 ms"; .acceptMs.p50),
    row("rate50"; "50/s"; "POST /orders p99 ms"; .acceptMs.p99),
    row("rate50"; "50/s"; "order service CPU ms/order"; order_cpu),
    "",
    "Runs per figure: \(runs("jwt"; "lone") | length) (medians)."
  ' "$1"/*-*.json
}

# --- tracing: the saga with span export on and off --------------------------------------------

tracing_bench() {
  local repeat=3 quick=false long=30s
  bench_args "$@"
  if $quick; then long=10s; fi
  bench_stack_env
  (cd "$OMS_ROOT" && cargo build --release -q -p oms-tests --bin otlp-sink)
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-tracing" keep mode rep sink_pid endpoint=127.0.0.1:14318
  keep="$(mktemp -d)"
  "$OMS_ROOT/target/release/otlp-sink" "$endpoint" >"$keep/sink.log" 2>&1 &
  sink_pid=$!
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true; kill "$sink_pid" 2>/dev/null || true' EXIT
  # Every run on a fresh stack (data left by earlier runs slows the later ones down), and the
  # order of the modes rotates from one repeat to the next.
  local modes=(export local off) i
  for rep in $(seq 1 "$repeat"); do
    for i in 0 1 2; do
      mode="${modes[$(((rep - 1 + i) % 3))]}"
      oms_log "=== tracing $mode, run $rep of $repeat ==="
      "$stack" wipe >/dev/null 2>&1 || true
      case "$mode" in
        export) OMS_OTLP_ENDPOINT="http://$endpoint" "$stack" up --no-smoke >"$keep/env" ;;
        local) (unset OMS_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_ENDPOINT; "$stack" up --no-smoke >"$keep/env") ;;
        off) (unset OMS_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_ENDPOINT; OMS_TRACING=off "$stack" up --no-smoke >"$keep/env") ;;
      esac
      eval "$(cat "$keep/env")"
      ab_loads "$omsctl" "$long" "$keep/$mode" "$rep"
    done
  done
  "$stack" down >/dev/null
  # Stopped, the sink prints its final count.
  kill "$sink_pid" 2>/dev/null || true
  wait "$sink_pid" 2>/dev/null || true
  keep_results "$keep" "$results" "$keep"/*.json "$keep/sink.log"
  {
    tracing_summary "$results"
    echo
    echo "OTLP receiver: $(grep 'spans received' "$results/sink.log" | tail -n1) (export runs only)."
  } | tee "$results/summary.md"
}

tracing_summary() {
  jq -rn "$AB_JQ_PRELUDE"'
      def row($load; $name; $what; f):
        fig("export"; $load; f) as $on | fig("local"; $load; f) as $local | fig("off"; $load; f) as $off
        | "| \($name) | \($what) | \($on | r2) | \($local | r2) | \($off | r2) | \(ratio($on; $local)) | \(ratio($on; $off)) |";
    "| load | figure | export | local (no export) | off (no spans) | export ÷ local | export ÷ off |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    row("lone"; "1 in flight"; "saga p50 ms"; .sagaMs.p50),
    row("lone"; "1 in flight"; "saga p99 ms"; .sagaMs.p99),
    row("lone"; "1 in flight"; "POST /orders p50 ms"; .acceptMs.p50),
    row("rate50"; "50/s"; "saga p50 ms"; .sagaMs.p50),
    row("rate50"; "50/s"; "saga p99 ms"; .sagaMs.p99),
    row("rate50"; "50/s"; "stack CPU ms/order"; .cpuMsPerOrder),
    "",
    "Runs per figure: \(runs("export"; "lone") | length) (medians)."
  ' "$1"/*-*.json
}

# Medians over the repeats, as a markdown table.
# --- profile: where an order's CPU goes ------------------------------------------------------

# One load under perf and pg_stat_statements: CPU samples of every component (with call graphs,
# for flame graphs), the statements and commits per order of every database.
#   profile_bench [--seconds 30]
profile_bench() {
  local seconds=30
  while (($#)); do
    case "$1" in
      --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
      *) oms_die "unexpected argument $1 (expected --seconds N)" ;;
    esac
  done
  [[ "$seconds" =~ ^[1-9][0-9]*$ ]] || oms_die "--seconds must be a whole number"
  command -v perf >/dev/null || oms_die "perf is missing (apt-get install linux-perf)"
  command -v jq >/dev/null || oms_die "jq is missing; run scripts/deps.sh"
  local flame=true
  command -v inferno-flamegraph >/dev/null || { flame=false; oms_log "no inferno-flamegraph (cargo install inferno): text profiles only"; }
  bench_stack_env
  carrier_at_once
  # pg_stat_statements, and the plans of statements slower than 5 ms and lock waits over 5 ms
  # in PostgreSQL's log.
  export OMS_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements,auto_explain -c pg_stat_statements.track=top -c auto_explain.log_min_duration=5 -c log_lock_waits=on -c deadlock_timeout=5ms"
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-profile" keep pg load
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
  "$stack" wipe >/dev/null 2>&1 || true
  "$stack" up --no-smoke >"$keep/env"
  eval "$(cat "$keep/env")"
  pg="$(oms_pg_bin)"
  local dbs
  dbs="$("$pg/psql" "$OMS_DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'oms\_%' ORDER BY 1")"
  for db in postgres $dbs; do
    "$pg/psql" "${OMS_DATABASE_URL%/postgres}/$db" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  done
  "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
  sleep 5
  for load in rate20 rate50 saturation; do
    local args=(--rate 20/s)
    case "$load" in
      rate50) args=(--rate 50/s) ;;
      saturation) args=(--concurrency 64) ;;
    esac
    # Every component's pid, as the stack recorded it (PostgreSQL: the postmaster and backends).
    local pids
    pids="$("$omsctl" stack status -o json | jq -r '.components[] | select(.pid != null) | "\(.component) \(.pid)"')"
    echo "$pids" >"$keep/pids-$load.txt"
    local all
    all="$(echo "$pids" | awk '{print $2}' | while read -r p; do echo "$p"; pgrep -P "$p" || true; done | paste -sd,)"
    "$pg/psql" "$OMS_DATABASE_URL" -Atqc "SELECT pg_stat_statements_reset()" >/dev/null
    "$pg/psql" "$OMS_DATABASE_URL" -Atqc "SELECT pg_stat_reset()" >/dev/null
    for db in $dbs; do "$pg/psql" "${OMS_DATABASE_URL%/postgres}/$db" -Atqc "SELECT pg_stat_reset()" >/dev/null; done
    oms_log "profile $load: perf on $(echo "$pids" | wc -l) components for ${seconds}s"
    # The warm-up of the bench (5 s) runs before perf starts.
    ( sleep 5; perf record -q -F 49 --call-graph dwarf,16384 -p "$all" -o "$keep/perf-$load.data" -- sleep "$seconds" >/dev/null 2>&1 ) &
    local perf_job=$!
    "$omsctl" bench --stock 1000000 "${args[@]}" --duration "${seconds}s" -o json >"$keep/$load.json" ||
      oms_log "bench $load reported a failure"
    wait "$perf_job" || oms_log "perf record failed for $load"
    # Statements per order and the heaviest statements, over the databases of the stack.
    local finished
    finished="$(jq -r '.finished // 0' "$keep/$load.json")"
    "$pg/psql" "$OMS_DATABASE_URL" -Atq -F $'\t' -c "
      SELECT d.datname, sum(s.calls), round(sum(s.total_exec_time)::numeric, 1)
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname LIKE 'oms\_%' GROUP BY 1 ORDER BY 1" >"$keep/statements-$load.tsv"
    "$pg/psql" "$OMS_DATABASE_URL" -Atq -F $'\t' -c "
      SELECT datname, xact_commit FROM pg_stat_database WHERE datname LIKE 'oms\_%' ORDER BY 1" >"$keep/commits-$load.tsv"
    "$pg/psql" "$OMS_DATABASE_URL" -Atq -F $'\t' -c "
      SELECT d.datname, s.calls, round(s.total_exec_time::numeric, 1), round(s.mean_exec_time::numeric, 3),
             left(regexp_replace(s.query, '\s+', ' ', 'g'), 160)
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname LIKE 'oms\_%' ORDER BY s.total_exec_time DESC LIMIT 25" >"$keep/top-statements-$load.tsv"
    echo "$finished" >"$keep/finished-$load.txt"
    # Per component: the hottest symbols (self time), and a flame graph.
    local name pid
    while read -r name pid; do
      local these="$pid"
      if [[ "$name" == postgres ]]; then these="$pid,$(pgrep -P "$pid" | paste -sd,)"; fi
      perf report -q -i "$keep/perf-$load.data" --pid "$these" --no-children --no-inline -g none --percentage relative --sort symbol --stdio 2>/dev/null |
        grep -v '^$' | grep -v '^#' | head -n 25 >"$keep/symbols-$load-$name.txt" || true
      if $flame && [[ "$load" == saturation ]]; then
        perf script -i "$keep/perf-$load.data" --no-inline --pid "$these" 2>/dev/null | inferno-collapse-perf 2>/dev/null |
          inferno-flamegraph --title "$name, $load" >"$keep/flame-$load-$name.svg" 2>/dev/null || rm -f "$keep/flame-$load-$name.svg"
      fi
    done <<<"$pids"
    rm -f "$keep/perf-$load.data"
  done
  # What PostgreSQL logged of slow plans and lock waits.
  grep -E "duration: |still waiting|acquired" "$OMS_STATE_DIR/postgres/postgres.log" 2>/dev/null | tail -n 200 >"$keep/postgres-slow.log" || true
  keep_results "$keep" "$results" "$keep"/*
  profile_summary "$results" | tee "$results/summary.md"
}

profile_summary() {
  local dir="$1" load
  for load in rate20 rate50 saturation; do
    [[ -f "$dir/$load.json" ]] || continue
    local finished
    finished="$(cat "$dir/finished-$load.txt")"
    echo "### $load: $(jq -r '"\(.finishedRate * 10 | round / 10) orders/s finished, saga p50 \(.sagaMs.p50 // "-") ms, delivery p50 \(.deliveredMs.p50 // "-") ms, \(.cpuMsPerOrder // 0 | . * 10 | round / 10) ms CPU per order (under perf)"' "$dir/$load.json")"
    echo
    echo "| component | ms CPU per order |"
    echo "| --- | --- |"
    jq -r '.cpu[] | "| \(.component) | \(.msPerOrder // 0 | . * 10 | round / 10) |"' "$dir/$load.json"
    echo
    echo "| database | statements per order | commits per order | statement ms per order |"
    echo "| --- | --- | --- | --- |"
    join -t $'\t' "$dir/statements-$load.tsv" "$dir/commits-$load.tsv" |
      awk -F'\t' -v n="$finished" 'n > 0 { printf "| %s | %.1f | %.1f | %.2f |\n", $1, $2 / n, $4 / n, $3 / n; s += $2; c += $4; t += $3 }
        END { if (n > 0) printf "| all | %.1f | %.1f | %.2f |\n", s / n, c / n, t / n }'
    echo
    echo "Heaviest statements:"
    echo
    echo "| database | calls | total ms | mean ms | statement |"
    echo "| --- | --- | --- | --- | --- |"
    head -n 10 "$dir/top-statements-$load.tsv" | awk -F'\t' '{ gsub(/\|/, "\\|", $5); printf "| %s | %s | %s | %s | `%s` |\n", $1, $2, $3, $4, $5 }'
    echo
  done
}

# --- soak: a long run at a steady rate, in windows ------------------------------------------

# The inbox and outbox of every service database: rows and bytes, one JSON object per database.
soak_tables() {
  local pg db
  pg="$(oms_pg_bin)"
  for db in $("$pg/psql" "$OMS_DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'oms\_%' ORDER BY 1"); do
    "$pg/psql" "${OMS_DATABASE_URL%/postgres}/$db" -Atqc "SELECT json_build_object(
        'database', current_database(),
        'inboxRows', (SELECT count(*) FROM processed_messages),
        'outboxRows', (SELECT count(*) FROM outbox),
        'inboxBytes', pg_total_relation_size('processed_messages'),
        'outboxBytes', pg_total_relation_size('outbox'),
        'databaseBytes', pg_database_size(current_database()))"
  done | jq -s .
}

# The proportional set size (kB) of every component the stack records; PostgreSQL's includes its
# backends.
soak_memory() {
  "$OMS_ROOT/target/release/omsctl" stack status -o json | jq -r '.components[] | select(.pid != null) | "\(.component) \(.pid)"' |
    while read -r name pid; do
      local pids="$pid" kb=0 p
      if [[ "$name" == postgres ]]; then pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"; fi
      for p in $pids; do
        kb=$((kb + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
      done
      jq -nc --arg c "$name" --argjson kb "$kb" '{component: $c, pssKb: $kb}'
    done | jq -s .
}

# 30 minutes at 50 orders/s (release), in 5-minute windows, each a full `omsctl bench` report
# followed by the tables' and the processes' sizes. The retentions are shorter than the run
# (2 minutes), so the run shows the pruning hold the tables at rate x retention.
#   soak_bench [--minutes 30] [--rate 50/s] [--window 5]
soak_bench() {
  local minutes=30 rate=50/s window=5
  while (($#)); do
    case "$1" in
      --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
      --rate) rate="${2:?--rate needs a rate such as 50/s}"; shift 2 ;;
      --window) window="${2:?--window needs minutes}"; shift 2 ;;
      *) oms_die "unexpected argument $1 (expected --minutes N, --rate R/s or --window M)" ;;
    esac
  done
  [[ "$minutes" =~ ^[1-9][0-9]*$ && "$window" =~ ^[1-9][0-9]*$ ]] || oms_die "--minutes and --window must be whole numbers of minutes"
  ((minutes >= window)) || oms_die "--minutes must be at least one --window"
  command -v jq >/dev/null || oms_die "jq is missing; run scripts/deps.sh"
  bench_stack_env
  carrier_at_once
  export OMS_INBOX_RETENTION=2m OMS_OUTBOX_RETENTION=2m
  local stack="$OMS_ROOT/scripts/stack.sh" omsctl="$OMS_ROOT/target/release/omsctl"
  local results="$OMS_STATE_DIR/results-soak" keep w
  keep="$(mktemp -d)"
  trap '"$OMS_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
  "$stack" wipe >/dev/null 2>&1 || true
  "$stack" up --no-smoke >"$keep/env"
  eval "$(cat "$keep/env")"
  "$omsctl" order create --item mouse-01 --wait >/dev/null 2>&1 || true
  for w in $(seq 1 $((minutes / window))); do
    oms_log "soak window $w of $((minutes / window)): $rate for ${window}m"
    "$omsctl" bench --stock 1000000 --rate "$rate" --duration "${window}m" -o json >"$keep/window-$w.json" ||
      oms_log "window $w reported a failure"
    soak_tables >"$keep/tables-$w.json"
    soak_memory >"$keep/memory-$w.json"
  done
  if "$omsctl" verify >"$keep/verify-soak.txt" 2>&1; then
    echo "omsctl verify after the soak: passed" >"$keep/verify.txt"
  else
    echo "omsctl verify after the soak: FAILED ($(tail -n1 "$keep/verify-soak.txt"))" >"$keep/verify.txt"
  fi
  keep_results "$keep" "$results" "$keep"/*
  soak_summary "$results" | tee "$results/summary.md"
}

soak_summary() {
  local dir="$1" w
  echo "| window | finished/s | saga p50 ms | saga p99 ms | delivery p50 ms | delivery p99 ms | CPU ms/order | unfinished | inbox rows | outbox rows | inbox+outbox MB | databases MB | memory MB (PSS) |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for w in $(ls "$dir"/window-*.json 2>/dev/null | sed 's/.*window-\([0-9]*\)\.json/\1/' | sort -n); do
    jq -rn --arg w "$w" \
      --slurpfile b "$dir/window-$w.json" --slurpfile t "$dir/tables-$w.json" --slurpfile m "$dir/memory-$w.json" '
      def r1: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
      def r0: if . == null then "-" else (round | tostring) end;
      ($b[0]) as $b | ($t[0]) as $t | ($m[0]) as $m
      | "| \($w) | \($b.finishedRate | r1) | \($b.sagaMs.p50 | r0) | \($b.sagaMs.p99 | r0) | \($b.deliveredMs.p50 | r0) | \($b.deliveredMs.p99 | r0) | \($b.cpuMsPerOrder | r1) | \($b.unfinished + $b.undelivered) | \([$t[].inboxRows] | add) | \([$t[].outboxRows] | add) | \(([$t[] | .inboxBytes + .outboxBytes] | add) / 1048576 | r1) | \(([$t[].databaseBytes] | add) / 1048576 | r1) | \(([$m[].pssKb] | add) / 1024 | r0) |"'
  done
  local first last
  first="$(ls "$dir"/window-*.json | sort -V | head -n1)"
  last="$(ls "$dir"/window-*.json | sort -V | tail -n1)"
  jq -rn --slurpfile a "$first" --slurpfile b "$last" '
    def pct: if . == null then "-" else ((. - 1) * 100 | round | tostring) + " %" end;
    "",
    "last window against the first: saga p99 \(if $a[0].sagaMs.p99 > 0 then ($b[0].sagaMs.p99 / $a[0].sagaMs.p99 | pct) else "-" end), CPU per order \(if $a[0].cpuMsPerOrder > 0 then ($b[0].cpuMsPerOrder / $a[0].cpuMsPerOrder | pct) else "-" end)"'
  if [[ -f "$dir/verify.txt" ]]; then cat "$dir/verify.txt"; fi
}

saga_summary() {
  local dir="$1" tps
  tps="$(awk '/^tps = / {print $3; exit}' "$dir/pgbench.txt")"
  jq -rn --arg dir "$dir" --argjson tps "${tps:-0}" '
    def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    def r1: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
    def r0: if . == null then "-" else (round | tostring) end;
    [inputs | {file: (input_filename | split("/") | last), doc: .}] as $all
    | def runs($design; $load):
        [$all[] | select(.file | test("^" + $design + "-" + $load + "-[0-9]+\\.json$")) | .doc];
      def row($design; $load; $name):
        runs($design; $load) as $r
        | if ($r | length) == 0 then empty else
          "| \($design) | \($name) | \([$r[].finishedRate] | median | r1) | \([$r[].sagaMs.p50 // empty] | median | r0) | \([$r[].sagaMs.p99 // empty] | median | r0) | \([$r[].deliveredMs.p50 // empty] | median | r0) | \([$r[].deliveredMs.p99 // empty] | median | r0) | \([$r[].acceptMs.p50 // empty] | median | r1) | \([$r[].cpuMsPerOrder // empty] | median | r1) | \([$r[].cpuTotalCores // empty] | median | (. // null) | if . == null then "-" else (. * 100 | round | tostring) + " %" end) | \([$r[].commitsPerOrder // empty] | median | r1) | \([$r[] | .unfinished + (.undelivered // 0)] | add) |"
          end;
      def idle($design):
        [$all[] | select(.file | test("^" + $design + "-idle-[0-9]+\\.json$")) | .doc.totalCorePercent] | median;
      def sat($design): [runs($design; "saturation")[] | .finishedRate] | median;
      def p50($design): [runs($design; "rate20")[] | .sagaMs.p50 // empty] | median;
      def d50($design): [runs($design; "rate20")[] | .deliveredMs.p50 // empty] | median;
      def cpo($design): [runs($design; "saturation")[] | .commitsPerOrder // empty] | median;
    "| design | load | finished/s | saga p50 ms | saga p99 ms | delivery p50 ms | delivery p99 ms | accept p50 ms | CPU ms/order | CPU (cores) | commits/order | unfinished |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    (["oms", "comparable"][] as $d
      | row($d; "lone"; "1 in flight"), row($d; "rate20"; "20/s"), row($d; "rate50"; "50/s"),
        row($d; "rate120"; "120/s sustained"), row($d; "saturation"; "saturation (64 in flight)")),
    "",
    "| | oms | comparable | ratio |",
    "| --- | --- | --- | --- |",
    "| idle stack, % of one core | \(idle("oms") | r1) | \(idle("comparable") | r1) | \(if idle("oms") > 0 then (idle("comparable") / idle("oms") | r1) + "x" else "-" end) |",
    "| saga p50 at 20/s, ms | \(p50("oms") | r0) | \(p50("comparable") | r0) | \(if (p50("oms") // 0) > 0 then (p50("comparable") / p50("oms") | r1) + "x lower" else "-" end) |",
    "| delivery p50 at 20/s, ms | \(d50("oms") | r0) | \(d50("comparable") | r0) | \(if (d50("oms") // 0) > 0 then (d50("comparable") / d50("oms") | r1) + "x lower" else "-" end) |",
    "| saturation, orders/s | \(sat("oms") | r1) | \(sat("comparable") | r1) | \(if (sat("comparable") // 0) > 0 then (sat("oms") / sat("comparable") | r1) + "x" else "-" end) |",
    "| pgbench -N ceiling ÷ commits/order, orders/s | \(if (cpo("oms") // 0) > 0 then ($tps / cpo("oms") | r0) else "-" end) | \(if (cpo("comparable") // 0) > 0 then ($tps / cpo("comparable") | r0) else "-" end) | |",
    "",
    "pgbench -N, 8 clients: \($tps | r0) transactions/s. Runs per figure: \([$all[] | select(.file | test("^oms-rate20-"))] | length) (medians)."
  ' "$dir"/*-*.json
  if [[ -f "$dir/verify.txt" ]]; then cat "$dir/verify.txt"; fi
}

case "${1:-}" in
  saga) shift; saga_bench "$@" ;;
  soak) shift; soak_bench "$@" ;;
  profile) shift; profile_bench "$@" ;;
  profile-summary) profile_summary "${2:-$OMS_ROOT/.oms-bench/results-profile}" ;;
  soak-summary) soak_summary "${2:-$OMS_ROOT/.oms-bench/results-soak}" ;;
  auth) shift; auth_bench "$@" ;;
  replicas) shift; replicas_bench "$@" ;;
  outage) shift; outage_bench "$@" ;;
  fulfillment) shift; fulfillment_bench "$@" ;;
  fulfillment-summary) fulfillment_summary "${2:-$OMS_ROOT/.oms-bench/results-fulfillment}" ;;
  outage-summary) outage_summary "${2:-$OMS_ROOT/.oms-bench/results-outage}" ;;
  replicas-summary) replicas_summary "${2:-$OMS_ROOT/.oms-bench/results-replicas}" ;;
  tracing) shift; tracing_bench "$@" ;;
  kafka) shift; kafka_bench "$@" ;;
  linger) shift; linger_bench "$@" ;;
  batch) shift; batch_bench "$@" ;;
  batch-summary) batch_summary "${2:-$OMS_ROOT/.oms-bench/results-batch}" ;;
  linger-summary) linger_summary "${2:-$OMS_ROOT/.oms-bench/results-linger}" ;;
  kafka-summary) kafka_summary "${2:-$OMS_ROOT/.oms-bench/results-kafka}" ;;
  groups) shift; groups_bench "$@" ;;
  groups-summary) groups_summary "${2:-$OMS_ROOT/.oms-bench/results-groups}" ;;
  tracing-summary) tracing_summary "${2:-$OMS_ROOT/.oms-bench/results-tracing}" ;;
  summary) saga_summary "${2:-$OMS_ROOT/.oms-bench/results}" ;;
  auth-summary) auth_summary "${2:-$OMS_ROOT/.oms-bench/results-auth}" ;;
  broker)
    infra_env
    cargo bench -p oms-tests --bench broker
    ;;
  relay) infra_env; cargo bench -p oms-tests --bench relay ;;
  tail)
    # omsctl tail (decoding every envelope) against a bare rdkafka reader, side by side.
    infra_env
    cargo build --release -q -p omsctl
    cargo bench -p oms-tests --bench tail
    ;;
  tui)
    # Key press to screen of `omsctl tui` in tmux: empty and idle vs 10,000 sagas under load.
    infra_env
    cargo build --release -q -p omsctl
    cargo bench -p oms-tests --bench tui
    ;;
  *) echo "usage: $0 saga [--repeat N] [--quick] | kafka|linger|groups [--repeat N] [--quick] | kafka-summary|linger-summary|groups-summary [DIR] | auth [--repeat N] [--quick] | replicas [--repeat N] [--quick] | replicas-summary [DIR] | outage [--repeat N] [--quick] | outage-summary [DIR] | fulfillment [--repeat N] [--quick] | fulfillment-summary [DIR] | tracing [--repeat N] [--quick] | summary [DIR] | auth-summary [DIR] | tracing-summary [DIR] | broker | relay | tail | tui" >&2; exit 2 ;;
esac
