//! `omsctl chaos`: inject faults into the context's target (local stack, compose or
//! Kubernetes) and undo them; the library's [`oms_ops::chaos`] does the work.

use std::time::Duration;

use oms_contracts::api::{CarrierKnobs, GatewayKnobs};
use oms_contracts::routes;
use serde_json::Value;

use oms_ops::chaos::target::Target as _;
use oms_ops::chaos::{
    broker_node, duplicate, inflict, knob_fault, lift, millis, poison, reset, target_of,
    BrokerAction, Fault, Faults, Lasting, OnOff, PoisonKind, ServiceAction, ServiceFault,
};
use oms_ops::ctx::Ctx;
use oms_ops::local::Unit;
use oms_ops::render::table;
use oms_ops::tail::{self, From};
use oms_ops::Failure;

#[derive(Debug, clap::Subcommand)]
pub enum ChaosCommand {
    /// Stop (SIGTERM: a clean shutdown), kill (SIGKILL: a crash) or start the broker: every
    /// node, or one node of a cluster of three (`stack up --broker-nodes 3`).
    Broker {
        /// stop, kill or start.
        action: BrokerAction,
        /// broker (every node), one node (broker-2), or `leader`: the node that leads the most
        /// partitions of the OMS topics right now. One node is a thing of the local stack.
        #[arg(default_value = "broker", add = clap_complete::ArgValueCandidates::new(crate::complete::broker_nodes))]
        node: String,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Kill (SIGKILL), stop, start, restart, pause (SIGSTOP) or resume (SIGCONT) a service.
    Service {
        /// kill, stop, start, restart, pause or resume.
        action: ServiceAction,
        /// A service of the topology (order, inventory, payment, saga, fulfillment,
        /// notification: every replica), or one replica of the local stack, such as order-2.
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::services))]
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
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::topics))]
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
        #[arg(long, value_parser = oms_ops::args::duration)]
        latency: Option<Duration>,
        /// Share of calls failing transiently (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        #[command(flatten)]
        lasting: Lasting,
    },
    /// Set the simulated carrier's fault knobs (unset knobs are zero): refusals at booking,
    /// latency on every step, transient errors (`--error-rate 1` is a carrier outage).
    Carrier {
        /// Share of deliverable shipments refused at booking (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        failure_rate: f64,
        /// Added to every carrier step.
        #[arg(long, value_parser = oms_ops::args::duration)]
        latency: Option<Duration>,
        /// Share of carrier calls failing transiently, retried (0 to 1).
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

pub async fn run(ctx: &Ctx, command: ChaosCommand) -> Result<(), Failure> {
    match command {
        ChaosCommand::Broker {
            action,
            node,
            lasting,
        } => {
            let node = broker_node(ctx, &node, action).await?;
            let fault = |killed| Fault::Broker { node, killed };
            match action {
                BrokerAction::Stop => inflict(ctx, fault(false), &lasting).await,
                BrokerAction::Kill => inflict(ctx, fault(true), &lasting).await,
                BrokerAction::Start => lift(ctx, fault(false)).await,
            }
        }
        ChaosCommand::Db { action, lasting } => match action {
            OnOff::Stop => inflict(ctx, Fault::Db, &lasting).await,
            OnOff::Start => lift(ctx, Fault::Db).await,
        },
        ChaosCommand::Service {
            action,
            name,
            lasting,
        } => {
            let unit = Unit::parse(&name)?;
            let target = target_of(ctx)?;
            let hit = |action: ServiceFault| Fault::Service {
                target: unit.to_string(),
                action,
                pid: None,
                replicas: None,
            };
            let running = || target.check_running(unit);
            match action {
                ServiceAction::Kill => {
                    running()?;
                    inflict(ctx, hit(ServiceFault::Killed), &lasting).await
                }
                ServiceAction::Stop => {
                    running()?;
                    inflict(ctx, hit(ServiceFault::Stopped), &lasting).await
                }
                ServiceAction::Pause => {
                    running()?;
                    inflict(ctx, hit(ServiceFault::Paused), &lasting).await
                }
                ServiceAction::Resume => lift(ctx, hit(ServiceFault::Paused)).await,
                ServiceAction::Start => lift(ctx, hit(ServiceFault::Stopped)).await,
                ServiceAction::Restart => {
                    target.restart(unit).await?;
                    Faults::at(ctx).forget(&unit.to_string())
                }
            }
        }
        ChaosCommand::Payment {
            decline_rate,
            latency,
            error_rate,
            lasting,
        } => {
            let previous = ctx.read(routes::GET_GATEWAY_FAULTS, &[]).await?;
            let knobs = GatewayKnobs {
                decline_rate,
                latency_ms: millis(latency),
                error_rate,
            };
            let fault = Fault::Payment {
                knobs,
                previous_knobs: previous,
            };
            knob_fault(
                ctx,
                fault,
                knobs.is_off(),
                routes::SET_GATEWAY_FAULTS,
                &knobs,
                &lasting,
            )
            .await
        }
        ChaosCommand::Carrier {
            failure_rate,
            latency,
            error_rate,
            lasting,
        } => {
            let previous = ctx.read(routes::GET_CARRIER_FAULTS, &[]).await?;
            let knobs = CarrierKnobs {
                failure_rate,
                latency_ms: millis(latency),
                error_rate,
            };
            let fault = Fault::Carrier {
                knobs,
                previous_knobs: previous,
            };
            knob_fault(
                ctx,
                fault,
                knobs.is_off(),
                routes::SET_CARRIER_FAULTS,
                &knobs,
                &lasting,
            )
            .await
        }
        ChaosCommand::Poison { topic, count, kind } => {
            let doc = poison(ctx, &topic, count, kind).await?;
            ctx.print(&doc, || {
                format!(
                    "wrote {count} poison message(s) ({}) to {}",
                    doc.kind, doc.topic
                )
            })
        }
        ChaosCommand::Duplicate { topic, from } => {
            let doc = duplicate(ctx, &topic, from).await?;
            ctx.print(&doc, || {
                format!(
                    "re-delivered {} message(s) on {}",
                    doc.redelivered, doc.topic
                )
            })
        }
        ChaosCommand::Status => {
            let now = chrono::Utc::now();
            let faults = Faults::at(ctx).read()?;
            let value = Value::Array(faults.iter().map(|r| r.view(now)).collect());
            ctx.print(&value, || {
                if faults.is_empty() {
                    return "no faults in force".to_owned();
                }
                let mut t = table(&["KIND", "TARGET", "FAULT", "SINCE", "UNTIL"]);
                for r in &faults {
                    let until = match (&r.until, r.overdue(now)) {
                        (Some(u), true) => format!("{u} OVERDUE (run `omsctl chaos reset`)"),
                        (Some(u), false) => u.clone(),
                        (None, _) => "reset".into(),
                    };
                    t.add_row([
                        r.fault.kind().to_owned(),
                        r.fault.target().to_owned(),
                        r.fault.action(),
                        r.since.clone(),
                        until,
                    ]);
                }
                t.to_string()
            })
        }
        ChaosCommand::Reset => {
            let doc = reset(ctx).await?;
            let (done, left) = (&doc.undone, &doc.left);
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
                            format!("; still in force: {}", left.join(", "))
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
    }
}
