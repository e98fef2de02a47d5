//! `omsctl stack up | down | status | logs | cpu`: the local stack.
//!
//! Starting and stopping run `scripts/stack.sh` (one implementation of initdb, the broker and
//! the services' pid and log files); `status`, `logs` and `cpu` read the state directory and ask
//! each service, the broker and `/proc` directly.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::ctx::{cell, table, Ctx, Svc};
use crate::{topics, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum StackCommand {
    /// Build and start PostgreSQL, the broker and the five services; wait until all are ready.
    Up {
        /// Skip the smoke order at the end.
        #[arg(long)]
        no_smoke: bool,
        /// Debug builds instead of release builds: half the first build time, unoptimised code.
        #[arg(long)]
        debug: bool,
    },
    /// Stop everything cleanly (services first).
    Down,
    /// Each component's pid, port, readiness, outbox backlog and consumer lag.
    Status,
    /// Print a service's log (all services' without a name).
    Logs {
        /// Service (order, payment, inventory, notification, saga).
        service: Option<String>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// CPU each running component uses over a window, in percent of one core (the idle cost of
    /// the stack when nothing else runs).
    Cpu {
        /// How long to measure.
        #[arg(long, default_value = "10s", value_parser = crate::ctx::duration)]
        over: Duration,
    },
}

/// The repository's `scripts/stack.sh`: `OMS_ROOT`, else found upwards from here or from the
/// omsctl binary.
fn stack_script() -> Result<PathBuf, Failure> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(root) = std::env::var("OMS_ROOT") {
        starts.push(PathBuf::from(root));
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    for start in starts {
        for dir in start.ancestors() {
            let script = dir.join("scripts/stack.sh");
            if script.is_file() {
                return Ok(script);
            }
        }
    }
    Err(Failure::usage(
        "scripts/stack.sh not found: run omsctl from the repository or set OMS_ROOT",
    ))
}

/// Runs `scripts/stack.sh ARGS` for this state directory.
pub fn script(ctx: &Ctx, args: &[&str]) -> Result<(), Failure> {
    let script = stack_script()?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .env("OMS_STATE_DIR", absolute(&ctx.state_dir))
        .status()
        .map_err(|e| Failure::usage(format!("running {}: {e}", script.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "{} {} failed ({status})",
            script.display(),
            args.join(" ")
        )))
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Whether a process exists and is not a zombie (a killed service nobody reaped yet).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesised command name, which may contain spaces.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|s| s != "Z")
        })
        .unwrap_or(false)
}

fn pid_of(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    crate::stack::alive(pid).then_some(pid)
}

/// The service called `name`, or a usage error listing the names.
pub fn service_named(name: &str) -> Result<Svc, Failure> {
    name.parse()
        .map_err(|e: oms_contracts::topology::UnknownService| Failure::usage(e.to_string()))
}

pub async fn run(ctx: &Ctx, command: StackCommand) -> Result<(), Failure> {
    match command {
        StackCommand::Up { no_smoke, debug } => {
            let mut args = vec!["up"];
            if no_smoke {
                args.push("--no-smoke");
            }
            if debug {
                args.push("--debug");
            }
            script(ctx, &args)
        }
        StackCommand::Down => script(ctx, &["down"]),
        StackCommand::Status => status(ctx).await,
        StackCommand::Logs { service, follow } => logs(ctx, service.as_deref(), follow).await,
        StackCommand::Cpu { over } => cpu(ctx, over).await,
    }
}

async fn cpu(ctx: &Ctx, over: Duration) -> Result<(), Failure> {
    if over.is_zero() {
        return Err(Failure::usage("--over must be longer than zero"));
    }
    let before = crate::cpu::Snapshot::take(&ctx.state_dir);
    let started = std::time::Instant::now();
    tokio::time::sleep(over).await;
    let seconds = started.elapsed().as_secs_f64();
    let spent: Vec<(String, f64)> = crate::cpu::Snapshot::take(&ctx.state_dir)
        .since(&before)
        .into_iter()
        .filter(|(name, _)| name != "generator")
        .collect();
    if spent.is_empty() {
        return Err(Failure::verdict(format!(
            "nothing of the local stack runs under {}",
            ctx.state_dir.display()
        )));
    }
    let total: f64 = spent.iter().map(|(_, s)| s).sum();
    let percent = |s: f64| (s / seconds * 1000.0).round() / 10.0;
    let components: Vec<Value> = spent
        .iter()
        .map(|(name, s)| json!({"component": name, "cpuSeconds": s, "corePercent": percent(*s)}))
        .collect();
    let doc = json!({
        "seconds": seconds,
        "components": components,
        "totalCpuSeconds": total,
        "totalCorePercent": percent(total),
    });
    ctx.print(&doc, || {
        let mut t = table(&["COMPONENT", "CPU SECONDS", "% OF ONE CORE"]);
        for (name, s) in &spent {
            t.add_row([
                name.clone(),
                format!("{s:.2}"),
                format!("{:.1}", percent(*s)),
            ]);
        }
        t.add_row([
            "total".to_owned(),
            format!("{total:.2}"),
            format!("{:.1}", percent(total)),
        ]);
        format!("{t}\nover {seconds:.1} s")
    })
}

async fn status(ctx: &Ctx) -> Result<(), Failure> {
    let brokers = ctx.brokers.clone();
    let groups = ctx.consumer_groups();
    let wanted = ctx.saga_topics();
    let lag_rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &wanted, &groups))
        .await
        .map_err(anyhow::Error::from)?;
    let broker_ok = lag_rows.is_ok();
    let lag_rows = lag_rows.unwrap_or_default();
    let mut components = vec![json!({
        "component": "broker",
        "pid": pid_of(&ctx.state_dir.join("broker/broker.pid")),
        "address": ctx.brokers,
        "ready": broker_ok,
    })];
    for svc in Svc::all() {
        let ready = ctx.get_opt(svc, "/health/ready").await;
        let (is_ready, backlog, detail) = match &ready {
            Ok(Some(r)) => (
                r["status"] == "ready",
                r["outbox"]["pending"].as_i64(),
                Value::Null,
            ),
            Ok(None) => (false, None, json!("no /health/ready")),
            Err(f) => (false, None, json!(f.error.to_string())),
        };
        let group = ctx.topics.name(svc.spec().group);
        let lag: i64 = lag_rows.iter().filter_map(|r| r.lag.get(&group)).sum();
        components.push(json!({
            "component": svc.name(),
            "pid": pid_of(&ctx.state_dir.join(format!("services/{}.pid", svc.name()))),
            "address": ctx.url(svc),
            "ready": is_ready,
            "outboxBacklog": backlog,
            "consumerLag": if broker_ok { json!(lag) } else { Value::Null },
            "error": detail,
        }));
    }
    let all_ready = components.iter().all(|c| c["ready"] == true);
    let doc = json!({"ready": all_ready, "components": components});
    ctx.print(&doc, || {
        let mut t = table(&["COMPONENT", "PID", "ADDRESS", "READY", "OUTBOX", "LAG"]);
        for c in &components {
            t.add_row([
                cell(&c["component"]),
                cell(&c["pid"]),
                cell(&c["address"]),
                if c["ready"] == true { "yes" } else { "NO" }.to_string(),
                cell(&c["outboxBacklog"]),
                cell(&c["consumerLag"]),
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
    let services: Vec<Svc> = match service {
        Some(name) => vec![service_named(name)?],
        None => Svc::all().collect(),
    };
    let mut files = Vec::new();
    for svc in &services {
        let path = ctx.state_dir.join(format!("services/{}.log", svc.name()));
        let file = std::fs::File::open(&path).map_err(|e| {
            Failure::usage(format!("log of {} at {}: {e}", svc.name(), path.display()))
        })?;
        files.push((svc.name(), file));
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
