//! `omsctl dlq list | show | replay | audit`: dead letters and their safe replay (the library's
//! [`oms_ops::dlq`] does the work).

use oms_ops::ctx::Ctx;

use super::confirm::Confirm;
use oms_ops::dlq::audit;
use oms_ops::dlq::entry::entries;
use oms_ops::dlq::replay::{self, PlanReport, Repair};
use oms_ops::dlq::view::{self, GroupBy};
use oms_ops::render::{opt, table};
use oms_ops::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupByArg {
    /// Error class.
    Error,
    /// Origin topic.
    Origin,
    /// Message type.
    Type,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Dead letters (of one origin topic, or all), or groups of them.
    List {
        /// Origin topic (e.g. oms.payment.commands) or its DLQ.
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::topics))]
        topic: Option<String>,
        /// Group by error class, origin topic or message type.
        #[arg(long)]
        group_by: Option<GroupByArg>,
        /// Only entries that match FIELD OP VALUE: the envelope's fields
        /// (payload.reason=OUT_OF_STOCK), the record's (key, headers.NAME, partition, ...) and
        /// the dead letter's (dlq.class=poison, dlq.service, dlq.error); OP = != > >= < <= ~;
        /// repeatable, all must match.
        #[arg(long = "where", value_parser = oms_ops::filter::parse)]
        conditions: Vec<oms_ops::filter::Where>,
    },
    /// One dead letter: the original message, its diagnosis, a decode attempt, the order now.
    Show {
        /// Entry id (`<dlq topic>/<partition>@<offset>`, as `dlq list` prints it).
        id: String,
    },
    /// Re-publish dead letters to their origin topic.
    Replay(ReplayArgs),
    /// The replay audit: who replayed which entries when, and how it went.
    Audit,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Entry ids.
    ids: Vec<String>,
    /// Every dead letter (narrowed by --where and --filter).
    #[arg(long)]
    all: bool,
    /// Only entries with FIELD=VALUE, FIELD one of class, origin, type, key, service: a
    /// shorthand for --where dlq.class=VALUE, dlq.origin=, type=, key=, dlq.service=;
    /// repeatable.
    #[arg(long = "filter", value_parser = parse_filter)]
    filters: Vec<oms_ops::filter::Where>,
    /// Only entries that match FIELD OP VALUE: the envelope's fields, the record's (key,
    /// headers.NAME, ...) and the dead letter's (dlq.class, dlq.origin, dlq.service,
    /// dlq.error), as `dlq list --where`; repeatable, all must match.
    #[arg(long = "where", value_parser = oms_ops::filter::parse)]
    conditions: Vec<oms_ops::filter::Where>,
    /// At most this many messages per second (e.g. 10/s).
    #[arg(long, value_parser = oms_ops::args::rate)]
    rate: Option<f64>,
    /// Replay entries even if they were replayed before (within --budget).
    #[arg(long)]
    force: bool,
    /// Open the entry's value in $EDITOR before it is sent (one entry); the edit is checked
    /// against the contracts and recorded in the audit.
    #[arg(long, conflicts_with = "patch")]
    edit: bool,
    /// Apply this JSON merge patch (RFC 7396) to the entry's value before it is sent (one
    /// entry); checked and recorded like --edit.
    #[arg(long, value_name = "FILE")]
    patch: Option<std::path::PathBuf>,
    /// Send to this topic instead of the origin topic.
    #[arg(long, value_name = "TOPIC")]
    to: Option<String>,
    /// The most times any entry may be sent, --force or not.
    #[arg(long, default_value_t = 3)]
    budget: u32,
    /// Send what the replay AUDIT (cut short) planned and never sent, under the same audit.
    #[arg(long, value_name = "AUDIT")]
    resume: Option<String>,
    #[command(flatten)]
    confirm: Confirm,
}

/// `--filter FIELD=VALUE`: the `--where` condition it stands for.
fn parse_filter(s: &str) -> Result<oms_ops::filter::Where, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --filter {s:?}: expected FIELD=VALUE"))?;
    if !["class", "origin", "type", "key", "service"].contains(&k) {
        return Err(format!(
            "invalid --filter field {k:?}: expected class, origin, type, key or service"
        ));
    }
    oms_ops::filter::shorthand(k, v)
}

pub async fn run(ctx: &Ctx, command: DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::List {
            topic,
            group_by,
            conditions,
        } => list(ctx, topic.as_deref(), group_by, &conditions).await,
        DlqCommand::Show { id } => show(ctx, &id).await,
        DlqCommand::Replay(args) => replay(ctx, args).await,
        DlqCommand::Audit => {
            let history = audit::history(ctx).await?;
            ctx.print(&history, || {
                let mut t = table(&[
                    "STARTED", "AUDIT", "WHO", "STATE", "SENT", "ENTRIES", "EDITED",
                ]);
                for r in &history {
                    let edited: Vec<&str> = r.edits.keys().map(String::as_str).collect();
                    t.add_row([
                        r.started_at.clone(),
                        r.audit_id.clone(),
                        r.who.clone(),
                        if r.resumed_by.is_empty() {
                            r.state.to_string()
                        } else {
                            format!("{} (resumed)", r.state)
                        },
                        format!("{}/{}", r.sent.len(), r.planned.len()),
                        r.planned.join(" "),
                        edited.join(" "),
                    ]);
                }
                t.to_string()
            })
        }
    }
}

async fn list(
    ctx: &Ctx,
    topic: Option<&str>,
    group_by: Option<GroupByArg>,
    conditions: &[oms_ops::filter::Where],
) -> Result<(), Failure> {
    let all = view::list(ctx, topic, conditions).await?;
    let Some(by) = group_by else {
        return ctx.print(&all, || {
            let mut t = table(&[
                "ID",
                "ORIGIN",
                "TYPE",
                "KEY",
                "CLASS",
                "ERROR",
                "FAILED AT",
                "REPLAYED",
            ]);
            for e in &all {
                t.add_row([
                    e.id.clone(),
                    e.origin_topic.clone(),
                    e.message_type.clone(),
                    opt(e.key.as_ref()),
                    e.error_class.clone(),
                    e.error.clone(),
                    e.failed_at.clone(),
                    if e.replayed { "yes" } else { "no" }.into(),
                ]);
            }
            t.to_string()
        });
    };
    let by = match by {
        GroupByArg::Error => GroupBy::Error,
        GroupByArg::Origin => GroupBy::Origin,
        GroupByArg::Type => GroupBy::Type,
    };
    let groups = view::groups(&all, by);
    ctx.print(&groups, || {
        let mut t = table(&["GROUP", "COUNT", "FIRST SEEN", "LAST SEEN", "REPLAYED"]);
        for g in &groups {
            t.add_row([
                g.group.clone(),
                g.count.to_string(),
                g.first_seen.clone(),
                g.last_seen.clone(),
                g.replayed.to_string(),
            ]);
        }
        t.to_string()
    })
}

async fn show(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let shown = view::show(ctx, id).await?;
    ctx.print(&shown, || {
        let m = &shown.message;
        let mut t = table(&["FIELD", "VALUE"]);
        t.add_row(["id".to_string(), shown.entry.id.clone()]);
        t.add_row(["key".to_string(), opt(shown.entry.key.as_ref())]);
        for h in &m.headers {
            let value = match &h.value {
                oms_ops::tail::HeaderValue::Text { value } => {
                    value.clone().unwrap_or_else(|| "(null)".into())
                }
                oms_ops::tail::HeaderValue::Hex { value_hex } => format!("(hex) {value_hex}"),
            };
            t.add_row([format!("header {}", h.name), value]);
        }
        let value = match (&m.value, &m.value_hex) {
            (Some(v), _) => v.clone(),
            (None, Some(hex)) => format!("(hex) {hex}"),
            (None, None) => "(null)".into(),
        };
        t.add_row(["value".to_string(), value]);
        let d = &shown.decode;
        t.add_row([
            "decode".to_string(),
            if d.ok {
                format!("ok: {}", opt(d.message_type.as_ref()))
            } else {
                format!("{}: {}", opt(d.class.as_ref()), opt(d.error.as_ref()))
            },
        ]);
        t.add_row([
            "order now".to_string(),
            shown
                .order
                .as_ref()
                .map(|o| format!("{} {}", o.status, opt(o.cancel_reason.as_ref())))
                .unwrap_or_else(|| "-".into()),
        ]);
        t.add_row([
            "replayed".to_string(),
            if shown.entry.replayed { "yes" } else { "no" }.into(),
        ]);
        t.to_string()
    })
}

async fn replay(ctx: &Ctx, args: ReplayArgs) -> Result<(), Failure> {
    let conditions: Vec<_> = args
        .filters
        .iter()
        .chain(&args.conditions)
        .cloned()
        .collect();
    let request = replay::Request {
        ids: &args.ids,
        all: args.all,
        conditions: &conditions,
        force: args.force,
        budget: args.budget,
        to: args.to.as_deref(),
        repair: match (&args.patch, args.edit) {
            (Some(path), _) => Repair::Patch(path),
            (None, true) => Repair::Editor,
            (None, false) => Repair::None,
        },
        resume: args.resume.as_deref(),
    };
    replay::check(ctx, &request)?;
    let all = entries(ctx, None).await?;
    let history = audit::history(ctx).await?;
    let plan = replay::plan(ctx, &request, &all, &history).await?;
    for r in &plan.refused {
        eprintln!("omsctl: not replaying {}: {}", r.id, r.why);
    }
    if args.confirm.dry_run || plan.planned.is_empty() {
        let mut rows: Vec<replay::PlanRow> =
            plan.planned.iter().map(replay::Planned::row).collect();
        if args.confirm.dry_run && !plan.planned.is_empty() {
            for (row, p) in rows
                .iter_mut()
                .zip(replay::predictions(ctx, &plan.planned).await?)
            {
                row.prediction = Some(p);
            }
        }
        let report = PlanReport {
            dry_run: args.confirm.dry_run,
            plan: rows,
            refused: plan.refused.clone(),
            edits: plan.planned.iter().filter_map(|p| p.edit.clone()).collect(),
        };
        ctx.print(&report, || {
            let mut t = table(&["ENTRY", "TO TOPIC", "KEY", "TYPE", "EDITED", "PREDICTION"]);
            for p in &report.plan {
                t.add_row([
                    p.id.clone(),
                    p.to.clone(),
                    opt(p.key.as_ref()),
                    p.message_type.clone(),
                    if p.edited { "yes" } else { "no" }.into(),
                    p.prediction
                        .as_ref()
                        .map_or_else(|| "-".into(), |p| format!("{}: {}", p.outcome, p.detail)),
                ]);
            }
            let mut text = t.to_string();
            for edit in &report.edits {
                for c in &edit.changes {
                    text.push_str(&format!("\n  {}", c.line()));
                }
            }
            let n = report.plan.len();
            let entries = if n == 1 { "entry" } else { "entries" };
            if args.confirm.dry_run {
                format!("{text}\nwould replay {n} {entries} (dry run: nothing changed)")
            } else {
                format!("{text}\nnothing to replay")
            }
        })?;
        let held = plan.refused.len();
        return if !args.confirm.dry_run && held > 0 {
            Err(Failure::verdict(format!(
                "{held} entr{} held back; nothing sent",
                if held == 1 { "y" } else { "ies" }
            )))
        } else {
            Ok(())
        };
    }
    let n = plan.planned.len();
    let entries = if n == 1 { "entry" } else { "entries" };
    args.confirm.go_ahead(&format!("replay {n} {entries}"))?;
    let resumes = plan.resumed.as_ref().map(|r| r.audit_id.as_str());
    let sent = replay::send(ctx, &plan.planned, args.force, args.rate, resumes).await?;
    ctx.print(&sent.finished, || {
        let mut t = table(&["ENTRY", "RESULT"]);
        for r in &sent.results {
            t.add_row([
                r.id.clone(),
                if r.ok {
                    format!("sent to {}", opt(r.at.as_ref()))
                } else {
                    format!("FAILED: {}", opt(r.error.as_ref()))
                },
            ]);
        }
        format!("{t}\naudit {}: {}", sent.audit_id, sent.summary)
    })?;
    if sent.failed > 0 {
        return Err(Failure::verdict(format!(
            "{} of {n} replays failed",
            sent.failed
        )));
    }
    Ok(())
}
