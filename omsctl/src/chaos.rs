//! `omsctl chaos`: fault injection on the local stack.
//!
//! Every fault that lasts (a stopped broker, a paused service, gateway knobs) is recorded in
//! `<state dir>/chaos.json` before it is applied, with what undoes it. `--for DURATION` keeps
//! omsctl in the foreground for that long and then undoes the fault (Ctrl-C undoes it at once);
//! `chaos reset` undoes every recorded fault, so a fault outlives an omsctl that was killed
//! only until the next reset. One-shot faults (`poison`, `duplicate`) write messages and record
//! nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use oms_contracts::headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ctx::{self, table, Ctx, Svc};
use crate::tail::{self, From};
use crate::{stack, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum ChaosCommand {
    /// Stop or start the broker.
    Broker {
        /// stop or start.
        action: OnOff,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Kill (SIGKILL), stop, start, restart, pause (SIGSTOP) or resume (SIGCONT) a service.
    Service {
        /// kill, stop, start, restart, pause or resume.
        action: ServiceAction,
        /// order, payment, inventory, notification or saga.
        name: String,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Stop or start PostgreSQL.
    Db {
        /// stop or start.
        action: OnOff,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Write malformed messages to a topic (each consumer group dead-letters them).
    Poison {
        /// Topic (contract name, e.g. oms.payment.commands).
        topic: String,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// What is wrong with them.
        #[arg(long, value_enum, default_value_t = PoisonKind::BadJson)]
        kind: PoisonKind,
    },
    /// Re-deliver messages already on a topic (at-least-once made visible).
    Duplicate {
        /// Topic (contract name).
        topic: String,
        /// From where: beginning, OFFSET, -N (last N per partition), @TIMESTAMP or @-10m.
        #[arg(long, default_value = "beginning", value_parser = tail::parse_from, allow_hyphen_values = true)]
        from: From,
    },
    /// Set the payment gateway's fault knobs (unset knobs are zero).
    Payment {
        /// Share of approvals turned into declines (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        decline_rate: f64,
        /// Added to every gateway call.
        #[arg(long, value_parser = ctx::duration)]
        latency: Option<Duration>,
        /// Share of calls failing transiently (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// The faults in force.
    Status,
    /// Undo every recorded fault (works after a killed omsctl too).
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Stop it.
    Stop,
    /// Start it.
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceAction {
    /// SIGKILL, like a crash.
    Kill,
    /// SIGTERM and wait (graceful).
    Stop,
    /// Start it again.
    Start,
    /// Stop then start.
    Restart,
    /// SIGSTOP: alive but frozen.
    Pause,
    /// SIGCONT.
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoisonKind {
    /// Not JSON at all.
    BadJson,
    /// A well-formed envelope of a type nobody defined.
    UnknownType,
    /// A known type whose payload breaks its schema.
    BadSchema,
}

/// `--for DURATION`.
#[derive(Debug, Clone, clap::Args)]
pub struct Lasting {
    /// Undo the fault by itself after this long (omsctl waits in the foreground).
    #[arg(long = "for", value_parser = ctx::duration)]
    lasting: Option<Duration>,
}

/// A fault in force, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// broker, db, service, payment.
    pub kind: String,
    /// What it hits (service name, "broker", "db", "gateway").
    pub target: String,
    /// stopped, killed, paused, knobs.
    pub action: String,
    /// When it started (RFC 3339).
    pub since: String,
    /// When `--for` undoes it, if given.
    pub until: Option<String>,
    /// The process id paused, for pause.
    pub pid: Option<u32>,
    /// Knobs to restore, for payment.
    pub previous_knobs: Option<Value>,
}

/// The faults recorded as in force (for dashboards), one line each.
pub fn active(ctx: &Ctx) -> Vec<String> {
    load(&file(ctx))
        .unwrap_or_default()
        .into_iter()
        .map(|f| match f.kind.as_str() {
            "payment" => format!("payment gateway: {}", f.action),
            _ => format!(
                "{} {} since {}",
                f.target,
                f.action,
                f.since.get(11..19).unwrap_or(&f.since)
            ),
        })
        .collect()
}

fn file(ctx: &Ctx) -> PathBuf {
    ctx.state_dir.join("chaos.json")
}

fn load(path: &Path) -> Result<Vec<Fault>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Vec::new()),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("{} is not a fault list: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Failure::usage(format!("{}: {e}", path.display()))),
    }
}

/// Writes the list atomically (temporary file, then rename).
fn save(path: &Path, faults: &[Fault]) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(faults)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn record(ctx: &Ctx, fault: Fault) -> Result<(), Failure> {
    let path = file(ctx);
    let mut faults = load(&path)?;
    faults.retain(|f| !(f.kind == fault.kind && f.target == fault.target));
    faults.push(fault);
    save(&path, &faults)
}

fn forget(ctx: &Ctx, kind: &str, target: &str) -> Result<(), Failure> {
    let path = file(ctx);
    let mut faults = load(&path)?;
    faults.retain(|f| !(f.kind == kind && f.target == target));
    save(&path, &faults)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn until(lasting: &Lasting) -> Option<String> {
    let d = chrono::TimeDelta::from_std(lasting.lasting?).ok()?;
    Some((chrono::Utc::now() + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn signal(pid: u32, sig: &str) -> Result<(), Failure> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map_err(|e| Failure::usage(format!("kill {sig} {pid}: {e}")))?;
    if !status.success() {
        return Err(Failure::verdict(format!(
            "kill {sig} {pid} failed ({status})"
        )));
    }
    Ok(())
}

fn service_pid(ctx: &Ctx, svc: Svc) -> Result<u32, Failure> {
    let path = ctx.state_dir.join(format!("services/{}.pid", svc.name()));
    let pid: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            Failure::usage(format!(
                "{} is not running (no pid in {})",
                svc.name(),
                path.display()
            ))
        })?;
    if !crate::stack::alive(pid) {
        return Err(Failure::usage(format!(
            "{} is not running (pid {pid} is gone)",
            svc.name()
        )));
    }
    Ok(pid)
}

/// Waits out `--for`, then undoes; Ctrl-C undoes at once.
async fn hold(
    lasting: &Lasting,
    what: &str,
    undo: impl AsyncFnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let Some(d) = lasting.lasting else {
        eprintln!("omsctl: {what}; in force until `omsctl chaos reset`");
        return Ok(());
    };
    eprintln!(
        "omsctl: {what} for {}; Ctrl-C ends it early",
        humantime::format_duration(d)
    );
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("omsctl: interrupted; undoing"),
    }
    undo().await?;
    eprintln!("omsctl: {what}: undone");
    Ok(())
}

async fn set_knobs(ctx: &Ctx, knobs: &Value) -> Result<Value, Failure> {
    let url = format!("{}/gateway/faults", ctx.url(Svc::Payment));
    let r = reqwest::Client::new()
        .put(&url)
        .json(knobs)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| {
            Failure::usage(format!(
                "payment service unreachable at {}",
                ctx.url(Svc::Payment)
            ))
        })?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(ctx::api_failure(Svc::Payment, status, &body));
    }
    Ok(body)
}

pub async fn run(ctx: &Ctx, command: ChaosCommand) -> Result<(), Failure> {
    match command {
        ChaosCommand::Broker { action, lasting } => match action {
            OnOff::Stop => {
                record(
                    ctx,
                    Fault {
                        kind: "broker".into(),
                        target: "broker".into(),
                        action: "stopped".into(),
                        since: now(),
                        until: until(&lasting),
                        pid: None,
                        previous_knobs: None,
                    },
                )?;
                stack::script(ctx, &["broker-stop"])?;
                hold(&lasting, "broker stopped", async || {
                    stack::script(ctx, &["broker-start"])?;
                    forget(ctx, "broker", "broker")
                })
                .await
            }
            OnOff::Start => {
                stack::script(ctx, &["broker-start"])?;
                forget(ctx, "broker", "broker")
            }
        },
        ChaosCommand::Db { action, lasting } => match action {
            OnOff::Stop => {
                record(
                    ctx,
                    Fault {
                        kind: "db".into(),
                        target: "db".into(),
                        action: "stopped".into(),
                        since: now(),
                        until: until(&lasting),
                        pid: None,
                        previous_knobs: None,
                    },
                )?;
                stack::script(ctx, &["db-stop"])?;
                hold(&lasting, "PostgreSQL stopped", async || {
                    stack::script(ctx, &["db-start"])?;
                    forget(ctx, "db", "db")
                })
                .await
            }
            OnOff::Start => {
                stack::script(ctx, &["db-start"])?;
                forget(ctx, "db", "db")
            }
        },
        ChaosCommand::Service {
            action,
            name,
            lasting,
        } => {
            let svc = stack::service_named(&name)?;
            let start = async || {
                stack::script(ctx, &["service-start", svc.name()])?;
                forget(ctx, "service", svc.name())
            };
            match action {
                ServiceAction::Kill | ServiceAction::Stop => {
                    let pid = service_pid(ctx, svc)?;
                    let verb = if action == ServiceAction::Kill {
                        "killed"
                    } else {
                        "stopped"
                    };
                    record(
                        ctx,
                        Fault {
                            kind: "service".into(),
                            target: svc.name().into(),
                            action: verb.into(),
                            since: now(),
                            until: until(&lasting),
                            pid: Some(pid),
                            previous_knobs: None,
                        },
                    )?;
                    if action == ServiceAction::Kill {
                        signal(pid, "-KILL")?;
                    } else {
                        stack::script(ctx, &["service-stop", svc.name()])?;
                    }
                    hold(&lasting, &format!("{} {verb}", svc.name()), start).await
                }
                ServiceAction::Pause => {
                    let pid = service_pid(ctx, svc)?;
                    record(
                        ctx,
                        Fault {
                            kind: "service".into(),
                            target: svc.name().into(),
                            action: "paused".into(),
                            since: now(),
                            until: until(&lasting),
                            pid: Some(pid),
                            previous_knobs: None,
                        },
                    )?;
                    signal(pid, "-STOP")?;
                    hold(&lasting, &format!("{} paused", svc.name()), async || {
                        signal(pid, "-CONT")?;
                        forget(ctx, "service", svc.name())
                    })
                    .await
                }
                ServiceAction::Resume => {
                    let pid = service_pid(ctx, svc)?;
                    signal(pid, "-CONT")?;
                    forget(ctx, "service", svc.name())
                }
                ServiceAction::Start => start().await,
                ServiceAction::Restart => {
                    stack::script(ctx, &["service-stop", svc.name()])?;
                    start().await
                }
            }
        }
        ChaosCommand::Payment {
            decline_rate,
            latency,
            error_rate,
            lasting,
        } => {
            let previous = ctx.get(Svc::Payment, "/gateway/faults").await?;
            let knobs = json!({
                "declineRate": decline_rate,
                "latencyMs": latency.map(|d| d.as_millis() as u64).unwrap_or(0),
                "errorRate": error_rate,
            });
            let zero = json!({"declineRate": 0.0, "latencyMs": 0, "errorRate": 0.0});
            if knobs == zero {
                set_knobs(ctx, &zero).await?;
                return forget(ctx, "payment", "gateway");
            }
            record(
                ctx,
                Fault {
                    kind: "payment".into(),
                    target: "gateway".into(),
                    action: format!("knobs {knobs}"),
                    since: now(),
                    until: until(&lasting),
                    pid: None,
                    previous_knobs: Some(previous.clone()),
                },
            )?;
            set_knobs(ctx, &knobs).await?;
            hold(
                &lasting,
                &format!("payment gateway knobs {knobs}"),
                async || {
                    set_knobs(ctx, &previous).await?;
                    forget(ctx, "payment", "gateway")
                },
            )
            .await
        }
        ChaosCommand::Poison { topic, count, kind } => poison(ctx, &topic, count, kind).await,
        ChaosCommand::Duplicate { topic, from } => duplicate(ctx, &topic, from).await,
        ChaosCommand::Status => {
            let faults = load(&file(ctx))?;
            let value = serde_json::to_value(&faults)?;
            ctx.print(&value, || {
                if faults.is_empty() {
                    return "no faults in force".to_owned();
                }
                let mut t = table(&["KIND", "TARGET", "FAULT", "SINCE", "UNTIL"]);
                for f in &faults {
                    t.add_row([
                        f.kind.clone(),
                        f.target.clone(),
                        f.action.clone(),
                        f.since.clone(),
                        f.until.clone().unwrap_or_else(|| "reset".into()),
                    ]);
                }
                t.to_string()
            })
        }
        ChaosCommand::Reset => reset(ctx).await,
    }
}

/// Undoes every recorded fault; the ones it could not undo stay recorded.
async fn reset(ctx: &Ctx) -> Result<(), Failure> {
    let path = file(ctx);
    let faults = load(&path)?;
    let mut left = Vec::new();
    let mut done = Vec::new();
    // Infrastructure first: services need the database and broker to come back ready.
    let order = |f: &Fault| match f.kind.as_str() {
        "db" => 0,
        "broker" => 1,
        "service" => 2,
        _ => 3,
    };
    let mut sorted = faults.clone();
    sorted.sort_by_key(order);
    for f in sorted {
        let result = match (f.kind.as_str(), f.action.as_str()) {
            ("db", _) => stack::script(ctx, &["db-start"]),
            ("broker", _) => stack::script(ctx, &["broker-start"]),
            ("service", "paused") => match f.pid {
                Some(pid) if crate::stack::alive(pid) => signal(pid, "-CONT"),
                _ => stack::script(ctx, &["service-start", &f.target]),
            },
            ("service", _) => stack::script(ctx, &["service-start", &f.target]),
            ("payment", _) => set_knobs(ctx, f.previous_knobs.as_ref().unwrap_or(&json!({})))
                .await
                .map(|_| ()),
            _ => Err(Failure::usage(format!("unknown fault kind {:?}", f.kind))),
        };
        match result {
            Ok(()) => done.push(format!("{} {}", f.kind, f.target)),
            Err(e) => {
                eprintln!(
                    "omsctl: could not undo {} {}: {:#}",
                    f.kind, f.target, e.error
                );
                left.push(f);
            }
        }
    }
    save(&path, &left)?;
    let doc = json!({"undone": done, "left": left});
    ctx.print(&doc, || {
        if done.is_empty() && left.is_empty() {
            "no faults to undo".into()
        } else {
            format!(
                "undone: {}{}",
                if done.is_empty() {
                    "-".into()
                } else {
                    done.join(", ")
                },
                if left.is_empty() {
                    String::new()
                } else {
                    format!("; still in force: {}", left.len())
                }
            )
        }
    })?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "{} fault(s) could not be undone",
            left.len()
        )))
    }
}

fn producer(ctx: &Ctx) -> Result<FutureProducer, Failure> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &ctx.brokers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
        .context("creating the Kafka producer")?)
}

fn topic_name(ctx: &Ctx, topic: &str) -> Result<String, Failure> {
    let base = topic.strip_prefix(ctx.topics.prefix()).unwrap_or(topic);
    if !oms_contracts::topics::ALL.contains(&base) {
        return Err(Failure::usage(format!(
            "unknown topic {topic:?} (expected one of {})",
            oms_contracts::topics::ALL.join(", ")
        )));
    }
    Ok(ctx.topics.name(base))
}

async fn poison(ctx: &Ctx, topic: &str, count: u32, kind: PoisonKind) -> Result<(), Failure> {
    if count == 0 {
        return Err(Failure::usage("--count must be at least 1"));
    }
    let to = topic_name(ctx, topic)?;
    let producer = producer(ctx)?;
    let mut written = Vec::new();
    for i in 0..count {
        let order = uuid::Uuid::now_v7();
        let id = uuid::Uuid::now_v7();
        let (value, ty) = match kind {
            PoisonKind::BadJson => (format!("{{\"eventId\": \"{id}\", this is not json {i}"), "none"),
            PoisonKind::UnknownType => (
                json!({"eventId": id, "type": "order.teleported", "schemaVersion": 1, "occurredAt": now(), "correlationId": order, "source": "omsctl-chaos", "payload": {"orderId": order}}).to_string(),
                "order.teleported",
            ),
            PoisonKind::BadSchema => {
                let ty = oms_contracts::MessageType::ALL
                    .iter()
                    .find(|t| t.topic() == to.strip_prefix(ctx.topics.prefix()).unwrap_or(&to))
                    .map(|t| t.as_str())
                    .unwrap_or("order.created");
                (
                    json!({"eventId": id, "type": ty, "schemaVersion": 1, "occurredAt": now(), "correlationId": order, "source": "omsctl-chaos", "payload": {"orderId": order, "unexpected": true}}).to_string(),
                    ty,
                )
            }
        };
        let key = order.to_string();
        let id_text = id.to_string();
        let hs = OwnedHeaders::new()
            .insert(Header {
                key: headers::MESSAGE_ID,
                value: Some(id_text.as_str()),
            })
            .insert(Header {
                key: headers::MESSAGE_TYPE,
                value: Some(ty),
            });
        let d = producer
            .send(
                FutureRecord::to(&to).key(&key).payload(&value).headers(hs),
                Duration::from_secs(15),
            )
            .await
            .map_err(|(e, _)| Failure::usage(format!("writing to {to}: {e}")))?;
        written.push(json!({"key": key, "partition": d.partition, "offset": d.offset}));
    }
    let doc = json!({"topic": to, "kind": format!("{kind:?}"), "written": written});
    ctx.print(&doc, || {
        format!("wrote {count} poison message(s) ({kind:?}) to {to}")
    })
}

async fn duplicate(ctx: &Ctx, topic: &str, from: From) -> Result<(), Failure> {
    let to = topic_name(ctx, topic)?;
    let brokers = ctx.brokers.clone();
    let t = to.clone();
    let cutoff = match from {
        From::Time(ms) => Some(ms),
        _ => None,
    };
    let all = tokio::task::spawn_blocking(move || {
        tail::scan(&brokers, std::slice::from_ref(&t), |_| true)
    })
    .await
    .map_err(anyhow::Error::from)??;
    // Apply --from per partition.
    let mut by_partition: std::collections::BTreeMap<i32, Vec<&tail::Record>> = Default::default();
    for r in &all {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut chosen: Vec<&tail::Record> = Vec::new();
    for (_, mut records) in by_partition {
        records.sort_by_key(|r| r.offset);
        let keep: Vec<&tail::Record> = match &from {
            From::Beginning => records,
            From::End => Vec::new(),
            From::Offset(o) => records.into_iter().filter(|r| r.offset >= *o).collect(),
            From::Last(n) => {
                let skip = records.len().saturating_sub(*n as usize);
                records.into_iter().skip(skip).collect()
            }
            From::Time(_) => records
                .into_iter()
                .filter(|r| r.timestamp_ms >= cutoff)
                .collect(),
        };
        chosen.extend(keep);
    }
    let producer = producer(ctx)?;
    for r in &chosen {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&to);
        if let Some(hs) = &r.headers {
            record = record.headers(hs.clone());
        }
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        producer
            .send(record, Duration::from_secs(15))
            .await
            .map_err(|(e, _)| Failure::usage(format!("writing to {to}: {e}")))?;
    }
    let doc = json!({"topic": to, "redelivered": chosen.len()});
    ctx.print(&doc, || {
        format!("re-delivered {} message(s) on {to}", chosen.len())
    })
}
