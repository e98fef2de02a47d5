//! Examples for every command's long help (`omsctl order create --help`), kept in one table so
//! a test can hold every command to having them and parse every example with omsctl's own
//! parser: an example that no longer parses fails the build, not a reader.

/// (command path without `omsctl`, its examples: one per line, `# ` lines say what the next
/// does).
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "stack up",
        "# PostgreSQL, Kafka and the six services, then one order through its whole life\n\
         omsctl stack up\n\
         # A cluster of three Kafka nodes over SASL_SSL, two replicas of each service\n\
         omsctl stack up --broker-nodes 3 --secure --replicas 2\n\
         # Only PostgreSQL, Kafka and the topics (what the tests use)\n\
         omsctl stack up --infra",
    ),
    ("stack down", "omsctl stack down"),
    (
        "stack wipe",
        "# See what would be deleted\n\
         omsctl stack wipe --dry-run\n\
         omsctl stack wipe --yes",
    ),
    (
        "stack status",
        "omsctl stack status\n\
         omsctl stack status -o json",
    ),
    (
        "stack start",
        "omsctl stack start payment\n\
         omsctl stack start broker-2",
    ),
    (
        "stack stop",
        "omsctl stack stop saga\n\
         omsctl stack stop order-2",
    ),
    (
        "stack env",
        "omsctl stack env\n\
         # The stack's settings in this shell\n\
         eval \"$(omsctl stack env)\"",
    ),
    (
        "stack services",
        "omsctl stack services\n\
         omsctl stack services -o ids",
    ),
    (
        "stack logs",
        "omsctl stack logs saga\n\
         omsctl stack logs payment --follow",
    ),
    (
        "stack cpu",
        "omsctl stack cpu --over 10s",
    ),
    (
        "order create",
        "omsctl order create --item mouse-01:2 --item hub-01\n\
         # Follow it to its outcome (exit 1 when it is cancelled)\n\
         omsctl order create --item hub-01 --wait\n\
         # A declined card: cancelled with PAYMENT_DECLINED\n\
         omsctl order create --item hub-01 --payment-token tok_chargeDeclined --wait\n\
         # Fifty orders at 10 per second, summarized\n\
         omsctl order create --count 50 --rate 10/s",
    ),
    (
        "order get",
        "omsctl order get 0199b1c2-7f00-7000-8000-000000000001",
    ),
    (
        "order list",
        "omsctl order list --status CANCELLED --limit 5\n\
         omsctl order list --customer c-42 -o ids",
    ),
    (
        "order trace",
        "omsctl order trace 0199b1c2-7f00-7000-8000-000000000001",
    ),
    (
        "order cancel",
        "omsctl order cancel 0199b1c2-7f00-7000-8000-000000000001 --dry-run\n\
         omsctl order cancel 0199b1c2-7f00-7000-8000-000000000001 --yes --wait",
    ),
    (
        "saga list",
        "omsctl saga list --stuck\n\
         omsctl saga list --state AUTHORIZING -o json",
    ),
    (
        "saga show",
        "omsctl saga show 0199b1c2-7f00-7000-8000-000000000001",
    ),
    (
        "saga retry",
        "omsctl saga retry 0199b1c2-7f00-7000-8000-000000000001 --yes",
    ),
    (
        "saga cancel",
        "omsctl saga cancel 0199b1c2-7f00-7000-8000-000000000001 --reason \"customer called\" --yes",
    ),
    (
        "topic ensure",
        "omsctl topic ensure\n\
         omsctl topic ensure --partitions 6",
    ),
    (
        "topic list",
        "omsctl topic list\n\
         omsctl topics list -o json",
    ),
    (
        "topic describe",
        "omsctl topic describe oms.payment.commands",
    ),
    (
        "topic create",
        "omsctl topic create exports --partitions 3 --topic-config retention.ms=86400000",
    ),
    (
        "topic delete",
        "omsctl topic delete exports --dry-run\n\
         omsctl topic delete exports --yes",
    ),
    (
        "group list",
        "omsctl group list",
    ),
    (
        "group describe",
        "omsctl group describe oms-payment",
    ),
    (
        "group reset-offsets",
        "# Handle the last message of each partition again (the group must be idle)\n\
         omsctl group reset-offsets oms-payment --topic oms.payment.commands --shift-by -1 --dry-run\n\
         omsctl group reset-offsets oms-payment --to-datetime @-10m --yes",
    ),
    (
        "tail",
        "omsctl tail oms.order.events\n\
         # Everything about one order, from the beginning, then stop\n\
         omsctl tail all --from beginning --key 0199b1c2-7f00-7000-8000-000000000001 --exit\n\
         # Large declined payments of the last ten minutes\n\
         omsctl tail oms.payment.events --from @-10m --where type=payment.declined --where 'payload.amount.amountMinor>=10000'\n\
         # One line per message, kcat style\n\
         omsctl tail oms.order.events --format '%t/%p@%o %k %y\\n'",
    ),
    (
        "produce",
        "# Send back what tail wrote, checked against the contracts\n\
         omsctl produce oms.payment.commands --file saved.ndjson\n\
         omsctl produce oms.payment.commands --file saved.ndjson --dry-run",
    ),
    (
        "dlq list",
        "omsctl dlq list\n\
         omsctl dlq list --group-by error\n\
         omsctl dlq list oms.payment.commands --where dlq.class=poison",
    ),
    (
        "dlq show",
        "omsctl dlq show oms.payment.commands.dlq/0@12",
    ),
    (
        "dlq replay",
        "# The plan and what each entry would do, nothing sent\n\
         omsctl dlq replay --all --dry-run\n\
         omsctl dlq replay oms.payment.commands.dlq/0@12 --yes\n\
         omsctl dlq replay --filter class=transient --rate 10/s --yes\n\
         # Fix a message before it is sent again\n\
         omsctl dlq replay oms.payment.commands.dlq/0@12 --patch fix.json --yes",
    ),
    ("dlq audit", "omsctl dlq audit -o json"),
    (
        "chaos broker",
        "omsctl chaos broker stop --for 30s\n\
         omsctl chaos broker kill leader\n\
         omsctl chaos broker start",
    ),
    (
        "chaos service",
        "omsctl chaos service kill payment\n\
         omsctl chaos service pause saga --for 20s",
    ),
    (
        "chaos db",
        "omsctl chaos db stop --for 15s",
    ),
    (
        "chaos poison",
        "omsctl chaos poison oms.payment.commands --count 3",
    ),
    (
        "chaos duplicate",
        "omsctl chaos duplicate oms.payment.commands --from -5",
    ),
    (
        "chaos payment",
        "omsctl chaos payment --decline-rate 0.5 --for 1m\n\
         omsctl chaos payment --latency 800ms --error-rate 0.2",
    ),
    (
        "chaos carrier",
        "omsctl chaos carrier --failure-rate 0.3 --for 2m",
    ),
    ("chaos status", "omsctl chaos status"),
    ("chaos reset", "omsctl chaos reset"),
    ("drill list", "omsctl drill list"),
    (
        "drill run",
        "omsctl drill run broker-outage\n\
         omsctl drill run poison-pill --report report.json",
    ),
    (
        "drill validate",
        "omsctl drill validate my-drill.toml",
    ),
    (
        "verify",
        "omsctl verify\n\
         omsctl verify --since 10m -o json",
    ),
    (
        "bench",
        "# Open loop: 20 orders per second for a minute, each followed to DELIVERED\n\
         omsctl bench --rate 20/s --duration 60s --until delivered --stock 1000000\n\
         # Closed loop: 16 customers at once\n\
         omsctl bench --concurrency 16 --duration 30s",
    ),
    (
        "tui",
        "omsctl tui\n\
         omsctl tui sagas\n\
         omsctl tui dlq --refresh 2s",
    ),
    (
        "auth init",
        "omsctl auth init",
    ),
    (
        "auth token",
        "omsctl auth token --role operator --ttl 1h\n\
         export OMS_TOKEN=\"$(omsctl auth token --role viewer -o ids)\"",
    ),
    ("context list", "omsctl context list"),
    ("context use", "omsctl context use staging"),
    (
        "context show",
        "omsctl context show\n\
         omsctl context show staging -o json",
    ),
    (
        "context create",
        "omsctl context create shop target=compose project=shop topic-prefix=shop.",
    ),
    (
        "context set",
        "omsctl context set shop brokers=kafka.shop:9092",
    ),
    (
        "context delete",
        "omsctl context delete shop --yes",
    ),
    (
        "version",
        "omsctl version\n\
         omsctl version -o json",
    ),
    (
        "completions",
        "# Installed where your shell ($SHELL) loads them\n\
         omsctl completions --install\n\
         # Or loaded by hand\n\
         source <(omsctl completions bash)\n\
         omsctl completions zsh > ~/.omsctl.zsh",
    ),
];

/// The examples of the command at `path` (`"order create"`), when it has any.
pub fn of(path: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// `cmd` with every command's examples appended to its long help.
pub fn attach(cmd: clap::Command) -> clap::Command {
    fn walk(cmd: clap::Command, path: &str) -> clap::Command {
        let mut cmd = match of(path) {
            Some(examples) => {
                let text: String = examples.lines().map(|l| format!("  {l}\n")).collect();
                cmd.after_long_help(format!("Examples:\n{}", text.trim_end()))
            }
            None => cmd,
        };
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        for name in names {
            let sub_path = format!("{path} {name}").trim_start().to_owned();
            cmd = cmd.mut_subcommand(&name, |s| walk(s, &sub_path));
        }
        cmd
    }
    walk(cmd, "")
}
