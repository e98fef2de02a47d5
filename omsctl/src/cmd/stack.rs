//! `omsctl stack up | down | wipe | status | start | stop | env | logs | cpu`: the local stack,
//! on the component model of [`oms_ops::local`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use oms_ops::ctx::Ctx;
use oms_ops::local::{say, Component, Local};
use oms_ops::render::{opt, table};
use oms_ops::Failure;

use super::confirm::Confirm;

#[derive(Debug, clap::Subcommand)]
pub enum StackCommand {
    /// Start PostgreSQL, the broker (with the topics) and the services; wait until all are
    /// ready, then send one order through the saga. Idempotent: what runs is only checked.
    Up {
        /// Only PostgreSQL, the broker and the topics (what the tests use).
        #[arg(long)]
        infra: bool,
        /// Skip the smoke order at the end.
        #[arg(long)]
        no_smoke: bool,
        /// Also start Prometheus (Debian's package) on 127.0.0.1:9090 (OMS_PROMETHEUS_PORT):
        /// every service replica scraped, the OMS alert rules loaded. Grafana and Jaeger run
        /// under compose only (docs/observability.md says why).
        #[arg(long, conflicts_with = "infra")]
        observability: bool,
        /// Directory of the oms-* service binaries [default: next to this omsctl, else the
        /// first directory on PATH holding them all, else built with cargo in a checkout of
        /// the repository (the one omsctl runs or was installed from)].
        #[arg(long, env = "OMS_BIN_DIR", conflicts_with_all = ["release", "debug"])]
        bin_dir: Option<PathBuf>,
        /// The release builds next to this omsctl (target/release); `scripts/stack.sh up` builds
        /// them and is the default there.
        #[arg(long, conflicts_with = "debug")]
        release: bool,
        /// The debug builds next to this omsctl (target/debug).
        #[arg(long)]
        debug: bool,
        /// Instances of each service (1 to 9): replica K listens on the service's port + 100 x
        /// (K - 1); the replicas of a service share its database and consumer group. On a
        /// running stack, replicas are started or stopped to match [default: as the stack runs,
        /// else 1].
        #[arg(long, env = "OMS_REPLICAS", value_parser = clap::value_parser!(u32).range(1..=oms_ops::local::MAX_REPLICAS as i64))]
        replicas: Option<u32>,
        /// Kafka nodes: 1, or 3 (a KRaft cluster of three controller+broker nodes, topics
        /// replicated three times with min.insync.replicas=2, so one node may die). Node K takes
        /// clients on the broker port + 10 x (K - 1). Changing it needs `stack wipe` first
        /// [default: as the stack was made, else 1]. (`--brokers` is the global bootstrap list.)
        #[arg(long = "broker-nodes", env = "OMS_BROKER_NODES", value_parser = parse_broker_nodes)]
        broker_nodes: Option<u32>,
        /// Secure Kafka: clients over SASL_SSL (a local CA, SCRAM-SHA-512), one Kafka user per
        /// service and one for omsctl, ACLs derived from the topology (a service writes only
        /// the topics it emits, reads only those it handles, joins only its own group), mutual
        /// TLS between the nodes. Files in <state dir>/broker/security [default: as the stack
        /// was made, else plain].
        #[arg(long, overrides_with = "plain")]
        secure: bool,
        /// Plain Kafka (PLAINTEXT, no users, no ACLs).
        #[arg(long, overrides_with = "secure")]
        plain: bool,
    },
    /// Stop everything cleanly (services first, PostgreSQL last).
    Down,
    /// Stop everything and delete the state directory (databases, Kafka's logs, keys).
    Wipe {
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Each component's pid, port, readiness, outbox backlog and consumer lag.
    Status,
    /// Start one component (postgres, broker, a service or one replica) unless it runs.
    Start {
        /// postgres, broker, a service name (every replica) or one replica (order-2).
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::components))]
        component: String,
    },
    /// Stop one component.
    Stop {
        /// postgres, broker, a service name (every replica) or one replica (order-2).
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::components))]
        component: String,
    },
    /// Print the stack's connection settings as shell exports.
    Env,
    /// The topology: every service with its port, consumer group and the topics it reads and
    /// writes (what scripts read instead of a list of their own).
    Services {
        /// Only the names, one per line, in start order: the same as `-o ids`, which is what
        /// to use (kept for older scripts).
        #[arg(long, hide = true)]
        names: bool,
    },
    /// Print a service's log (all services' without a name).
    Logs {
        /// Service (order, inventory, payment, saga, fulfillment, notification: every replica's
        /// log), or one replica (order-2).
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::services))]
        service: Option<String>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// CPU each running component uses over a window, in percent of one core (the idle cost of
    /// the stack when nothing else runs).
    Cpu {
        /// How long to measure.
        #[arg(long, default_value = "10s", value_parser = oms_ops::args::duration)]
        over: Duration,
    },
}

/// How long services get to become ready (`OMS_READY_TIMEOUT` seconds, default 120).
fn ready_timeout() -> Duration {
    let secs = std::env::var("OMS_READY_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

fn sibling_bin_dir(profile: &str) -> Result<PathBuf, Failure> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(profile)))
        .ok_or_else(|| Failure::usage("cannot tell where omsctl runs from; pass --bin-dir"))
}

/// `--broker-nodes`: 1 or 3 (two nodes would stop at the first loss: a quorum of two needs both).
fn parse_broker_nodes(s: &str) -> Result<u32, String> {
    match s {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!(
            "{s:?}: the local Kafka cluster has 1 or 3 nodes (with 2, losing either stops it)"
        )),
    }
}

/// What `stack up` was asked for.
struct Up {
    infra: bool,
    smoke: bool,
    observability: bool,
    bin_dir: Option<PathBuf>,
    replicas: Option<u32>,
    broker_nodes: Option<u32>,
    /// `Some(true)` for --secure, `Some(false)` for --plain.
    secure: Option<bool>,
}

/// Whether any of `components` has a live process.
fn any_runs(local: &Local, components: &[Component]) -> bool {
    components.iter().any(|c| c.pid(local).is_some())
}

/// Starts every component that is not running, in order; stops replicas above the count.
async fn up(ctx: &Ctx, asked: Up) -> Result<(), Failure> {
    let Up {
        infra,
        smoke,
        observability,
        bin_dir,
        replicas,
        broker_nodes,
        secure,
    } = asked;
    let bin_dir = match bin_dir {
        Some(dir) => Some(dir),
        None if infra => None,
        None => {
            use oms_ops::local::binaries::{locate, Found};
            let found = locate().await?;
            match &found {
                Found::BesideOmsctl(_) => {}
                Found::OnPath(d) => {
                    say(format!("the services' binaries: {} (on PATH)", d.display()))
                }
                Found::Built(d) => say(format!("the services' binaries: {} (built)", d.display())),
            }
            Some(found.dir().to_path_buf())
        }
    };
    let mut wanted = Local::from_env(&ctx.state_dir, bin_dir)?;
    let current = Local::open(&ctx.state_dir).ok();
    if let Some(current) = &current {
        if any_runs(current, &current.service_components()) && current.bin_dir != wanted.bin_dir {
            return Err(Failure::usage(format!(
                "the stack runs the binaries of {}; run `omsctl stack down` first to switch to {}",
                current.bin_dir.display(),
                wanted.bin_dir.display()
            )));
        }
    }
    // What the last `up` recorded, where it recorded anything.
    let recorded = current
        .as_ref()
        .filter(|_| Local::is_recorded(&ctx.state_dir));
    wanted.replicas = replicas.or(recorded.map(|c| c.replicas)).unwrap_or(1);
    // The Kafka cluster keeps the size its storage was formatted with.
    let formatted = current
        .as_ref()
        .filter(|c| c.cluster().dir().join("cluster.id").is_file())
        .map(|c| c.broker_nodes.max(1));
    wanted.broker_nodes = broker_nodes.or(formatted).unwrap_or(1);
    if let Some(had) = formatted.filter(|had| *had != wanted.broker_nodes) {
        return Err(Failure::usage(format!(
            "the stack's Kafka cluster has {had} node(s); run `omsctl stack wipe` first to make one of {}",
            wanted.broker_nodes
        )));
    }
    wanted.secure = secure.or(recorded.map(|c| c.secure)).unwrap_or(false);
    if let Some(current) = &current {
        // Services that run hold the old mode's settings as much as the nodes do.
        let runs = any_runs(current, &current.broker_components())
            || any_runs(current, &current.service_components());
        if runs && current.secure != wanted.secure {
            return Err(Failure::usage(format!(
                "the stack runs on {} Kafka; run `omsctl stack down` first to switch it to {}",
                if current.secure { "secured" } else { "plain" },
                if wanted.secure { "secured" } else { "plain" }
            )));
        }
    }
    // Replicas above the count are stopped before the record forgets them.
    if let Some(current) = &current {
        for c in current.service_components() {
            if let Component::Service(_, r) = c {
                if r > wanted.replicas {
                    c.stop(current).await?;
                }
            }
        }
    }
    wanted.record()?;
    let local = wanted;
    Component::Postgres.start(&local).await?;
    let nodes = local.broker_components();
    for c in &nodes {
        c.start(&local).await?;
    }
    oms_ops::local::wait_ready(&local, &nodes, ready_timeout()).await?;
    if local.secure {
        apply_security(ctx, &local).await?;
    }
    let here = ctx.for_local(&local)?;
    let partitions: i32 = match std::env::var("OMS_TOPIC_PARTITIONS") {
        Ok(v) => v.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
            Failure::usage(format!(
                "OMS_TOPIC_PARTITIONS={v:?} is not a positive number"
            ))
        })?,
        // The contracts' count, as compose and Kubernetes have it.
        Err(_) => oms_contracts::topics::PARTITIONS,
    };
    say(format!(
        "creating topics ({partitions} partition(s) each; topics made earlier keep theirs)"
    ));
    oms_kafka::ensure_topics_with(
        &local.brokers(),
        &here.brokers.props,
        &ctx.topics.all_with_dlq(),
        partitions,
    )
    .await
    .map_err(|e| Failure::verdict(e.to_string()))?;
    if !infra {
        let services = local.service_components();
        for c in &services {
            c.start(&local).await?;
        }
        oms_ops::local::wait_ready(&local, &services, ready_timeout()).await?;
        if observability {
            oms_ops::local::observability::start(&local).await?;
        }
        if smoke {
            crate::cmd::order::smoke(&here).await?;
        }
    }
    say(if local.replicas > 1 {
        format!("stack is up ({} replicas of each service)", local.replicas)
    } else {
        "stack is up".to_owned()
    });
    print_env(&local);
    Ok(())
}

fn print_env(local: &Local) {
    println!("export OMS_DATABASE_URL={}", local.database_url());
    println!("export OMS_BROKERS={}", local.brokers());
    if local.secure {
        // omsctl's own user (a super user): what tools of the operator connect as.
        let file = local
            .cluster()
            .security()
            .user_file(oms_kafka::node::security::OPERATOR);
        println!(
            "export {}={}",
            oms_kafka::properties::ENV_FILE,
            file.display()
        );
    }
}

/// Applies the security plan of the topology to a secured stack's Kafka (SCRAM users and
/// ACLs, [`oms_kafka::node::security`]) and keeps what Kafka reports in `security/acls.txt`.
async fn apply_security(ctx: &Ctx, local: &Local) -> Result<(), Failure> {
    let cluster = local.cluster();
    let plan = oms_kafka::node::security::Plan::for_topology(&ctx.topics);
    let report = tokio::task::spawn_blocking(move || {
        let install = oms_kafka::node::Install::locate()?;
        cluster.security().apply(&cluster, &install, &plan)
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| Failure::verdict(e.to_string()))?;
    let dir = local.cluster().dir().join("security");
    let listed = dir.join("acls.txt");
    std::fs::write(&listed, &report)?;
    say(format!(
        "Kafka secured: SASL_SSL with SCRAM-SHA-512, {} (ACLs in {})",
        report.lines().next().unwrap_or("plan applied"),
        listed.display()
    ));
    Ok(())
}

pub async fn run(ctx: &Ctx, command: StackCommand) -> Result<(), Failure> {
    let topology_only = matches!(command, StackCommand::Services { .. });
    if ctx.context.target != oms_ops::context::Target::Local && !topology_only {
        return Err(Failure::usage(format!(
            "`stack` runs the local process stack; context {} is a {} target (switch with `omsctl --context local` or `omsctl context use local`; its own tools start and stop it)",
            ctx.context.name,
            ctx.context.target.kind().name()
        )));
    }
    match command {
        StackCommand::Up {
            infra,
            no_smoke,
            observability,
            bin_dir,
            release,
            debug,
            replicas,
            broker_nodes,
            secure,
            plain,
        } => {
            let bin_dir = match (bin_dir, release, debug) {
                (Some(d), _, _) => Some(d),
                (None, true, _) => Some(sibling_bin_dir("release")?),
                (None, _, true) => Some(sibling_bin_dir("debug")?),
                _ => None,
            };
            up(
                ctx,
                Up {
                    infra,
                    smoke: !no_smoke,
                    observability,
                    bin_dir,
                    replicas,
                    broker_nodes,
                    secure: (secure || plain).then_some(secure),
                },
            )
            .await
        }
        StackCommand::Down => oms_ops::local::down(&Local::open(&ctx.state_dir)?).await,
        StackCommand::Wipe { confirm } => {
            let what = format!(
                "stop the local stack and delete {} (its databases, Kafka's logs and keys)",
                ctx.state_dir.display()
            );
            if !confirm.go_ahead(&what)? {
                say(format!("would {what} (dry run: nothing changed)"));
                return Ok(());
            }
            let local = Local::open(&ctx.state_dir)?;
            oms_ops::local::down(&local).await?;
            oms_ops::local::wipe(&local)?;
            say(format!("removed {}", ctx.state_dir.display()));
            Ok(())
        }
        StackCommand::Start { component } => {
            let local = Local::open(&ctx.state_dir)?;
            let named = Component::named(&component, &local)?;
            for c in &named {
                c.start(&local).await?;
            }
            oms_ops::local::wait_ready(&local, &named, ready_timeout()).await
        }
        StackCommand::Stop { component } => {
            let local = Local::open(&ctx.state_dir)?;
            oms_ops::local::stop_all(&local, &Component::named(&component, &local)?).await
        }
        StackCommand::Env => {
            print_env(&Local::open(&ctx.state_dir)?);
            Ok(())
        }
        StackCommand::Services { names } => services(ctx, names),
        StackCommand::Status => status(ctx).await,
        StackCommand::Logs { service, follow } => logs(ctx, service.as_deref(), follow).await,
        StackCommand::Cpu { over } => cpu(ctx, over).await,
    }
}

fn services(ctx: &Ctx, names_only: bool) -> Result<(), Failure> {
    if names_only {
        for s in oms_contracts::topology::SERVICES {
            println!("{}", s.name);
        }
        return Ok(());
    }
    let rows = oms_ops::status::services(ctx);
    ctx.print(&rows, || {
        let mut t = table(&["SERVICE", "DEFAULT PORT", "GROUP", "READS", "WRITES"]);
        for r in &rows {
            t.add_row([
                r.name.clone(),
                r.default_port.to_string(),
                r.group.clone(),
                r.reads.join(", "),
                r.writes.join(", "),
            ]);
        }
        t.to_string()
    })
}

async fn cpu(ctx: &Ctx, over: Duration) -> Result<(), Failure> {
    let doc = oms_ops::cpu::measure(&ctx.state_dir, over).await?;
    ctx.print(&doc, || {
        let mut t = table(&["COMPONENT", "CPU SECONDS", "% OF ONE CORE"]);
        for c in &doc.components {
            t.add_row([
                c.component.clone(),
                format!("{:.2}", c.cpu_seconds),
                format!("{:.1}", c.core_percent),
            ]);
        }
        t.add_row([
            "total".to_owned(),
            format!("{:.2}", doc.total_cpu_seconds),
            format!("{:.1}", doc.total_core_percent),
        ]);
        format!("{t}\nover {:.1} s", doc.seconds)
    })
}

async fn status(ctx: &Ctx) -> Result<(), Failure> {
    let doc = oms_ops::status::status(ctx).await?;
    let all_ready = doc.ready;
    ctx.print(&doc, || {
        let mut t = table(&[
            "COMPONENT",
            "PID",
            "ADDRESS",
            "READY",
            "RELAY",
            "OUTBOX",
            "LAG",
        ]);
        for c in &doc.components {
            let relay = match c.relay_leader {
                Some(true) => "leader",
                Some(false) => "standby",
                None => "-",
            };
            t.add_row([
                c.component.clone(),
                opt(c.pid),
                c.address.clone(),
                if c.ready { "yes" } else { "NO" }.to_string(),
                relay.to_owned(),
                opt(c.outbox_backlog),
                opt(c.consumer_lag),
            ]);
        }
        t.to_string()
    })?;
    if all_ready {
        Ok(())
    } else {
        Err(Failure::verdict("not every component is ready"))
    }
}

async fn logs(ctx: &Ctx, service: Option<&str>, follow: bool) -> Result<(), Failure> {
    let local = Local::open(&ctx.state_dir)?;
    let services: Vec<Component> = match service {
        Some(name) => {
            let unit = oms_ops::local::Unit::parse(name)?;
            Component::of(unit, &local)?
        }
        None => local.service_components(),
    };
    let mut files = Vec::new();
    for c in &services {
        let Component::Service(svc, replica) = *c else {
            continue;
        };
        let path = local.log_of(svc, replica);
        let name = c.name(&local);
        let file = std::fs::File::open(&path)
            .map_err(|e| Failure::usage(format!("log of {name} at {}: {e}", path.display())))?;
        files.push((name, file));
    }
    let mut out = std::io::stdout().lock();
    let prefix = services.len() > 1;
    let mut carry: Vec<String> = vec![String::new(); files.len()];
    loop {
        let mut any = false;
        for (i, (name, file)) in files.iter_mut().enumerate() {
            let mut chunk = String::new();
            file.read_to_string(&mut chunk)?;
            if chunk.is_empty() {
                continue;
            }
            any = true;
            let text = std::mem::take(&mut carry[i]) + &chunk;
            let (complete, rest) = match text.rfind('\n') {
                Some(at) => text.split_at(at + 1),
                None => ("", text.as_str()),
            };
            carry[i] = rest.to_owned();
            for line in complete.lines() {
                if prefix {
                    writeln!(out, "{name:>12} | {line}")?;
                } else {
                    writeln!(out, "{line}")?;
                }
            }
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // A log rotated or truncated under us: start again from its beginning.
            for (_, file) in files.iter_mut() {
                let pos = file.stream_position()?;
                if file.metadata()?.len() < pos {
                    file.seek(SeekFrom::Start(0))?;
                }
            }
        }
    }
}
