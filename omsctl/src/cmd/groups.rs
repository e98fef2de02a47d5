//! `omsctl groups list | describe | reset-offsets`: consumer groups, their lag, and moving their
//! committed offsets.

use oms_ops::ctx::Ctx;
use oms_ops::groups::{self, group_name, Target};
use oms_ops::render::{opt, table};
use oms_ops::Failure;

use super::confirm::Confirm;

#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// Consumer groups: the OMS services' (with their topics and total lag) and any other the
    /// broker knows (state and members; `describe` works out its lag).
    List,
    /// One group: its members and, per partition, the committed offset, the end offset, the lag
    /// and the member that holds it.
    Describe {
        /// Group id (e.g. oms-payment).
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::groups))]
        group: String,
    },
    /// Move a group's committed offsets: shows the plan, then asks (--yes: at once; --dry-run:
    /// the plan only).
    ResetOffsets(ResetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Group id.
    #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::groups))]
    pub group: String,
    /// Only these topics (contract names; default: every topic the group reads).
    #[arg(long = "topic", add = clap_complete::ArgValueCandidates::new(crate::complete::topics))]
    pub topics: Vec<String>,
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub confirm: Confirm,
}

pub async fn run(ctx: &Ctx, command: GroupsCommand) -> Result<(), Failure> {
    match command {
        GroupsCommand::List => list(ctx).await,
        GroupsCommand::Describe { group } => describe(ctx, &group_name(ctx, &group)).await,
        GroupsCommand::ResetOffsets(args) => {
            let group = group_name(ctx, &args.group);
            reset(ctx, &group, args).await
        }
    }
}

async fn list(ctx: &Ctx) -> Result<(), Failure> {
    let rows = groups::list(ctx).await?;
    ctx.print(&rows, || {
        let mut t = table(&["GROUP", "STATE", "MEMBERS", "LAG", "TOPICS"]);
        for r in &rows {
            let topics: Vec<&str> = r.topics.iter().map(String::as_str).collect();
            t.add_row([
                r.group.clone(),
                r.state.clone(),
                r.members.to_string(),
                opt(r.lag),
                topics.join(" "),
            ]);
        }
        t.to_string()
    })
}

async fn describe(ctx: &Ctx, group: &str) -> Result<(), Failure> {
    let doc = groups::describe(ctx, group).await?;
    ctx.print(&doc, || {
        let mut m = table(&["MEMBER", "CLIENT", "HOST", "ASSIGNED"]);
        for member in &doc.members {
            let assigned: Vec<String> = member
                .assigned
                .iter()
                .map(|(t, p)| format!("{t}/{p}"))
                .collect();
            m.add_row([
                member.id.clone(),
                member.client_id.clone(),
                member.host.clone(),
                assigned.join(" "),
            ]);
        }
        let mut t = table(&["PARTITION", "COMMITTED", "START", "END", "LAG", "MEMBER"]);
        for p in &doc.partitions {
            t.add_row([
                format!("{}/{}", p.topic, p.partition),
                p.committed.map_or("-".into(), |o| o.to_string()),
                p.start.to_string(),
                p.end.to_string(),
                p.lag.to_string(),
                p.member.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        format!(
            "group {group}: {} with {} member(s), lag {}\n{m}\n{t}",
            doc.state,
            doc.members.len(),
            doc.lag
        )
    })
}

async fn reset(ctx: &Ctx, group: &str, args: ResetArgs) -> Result<(), Failure> {
    if !args.confirm.yes {
        let plan = groups::reset(ctx, group, &args.topics, args.target, false).await?;
        print_reset(ctx, &plan, false)?;
        if !args
            .confirm
            .go_ahead(&format!("move the committed offsets of group {group}"))?
        {
            return Ok(());
        }
    }
    let done = groups::reset(ctx, group, &args.topics, args.target, true).await?;
    print_reset(ctx, &done, true)
}

fn print_reset(ctx: &Ctx, doc: &groups::ResetReport, committed: bool) -> Result<(), Failure> {
    ctx.print(doc, || {
        let mut t = table(&["PARTITION", "CURRENT", "TARGET", "CHANGE", "LAG AFTER"]);
        for m in &doc.plan {
            let change = match m.current {
                Some(c) => format!("{:+}", m.target - c),
                None => "new".into(),
            };
            t.add_row([
                format!("{}/{}", m.topic, m.partition),
                m.current.map_or("-".into(), |o| o.to_string()),
                m.target.to_string(),
                change,
                m.lag_after.to_string(),
            ]);
        }
        if committed {
            format!("{t}\ncommitted: group {} now starts from TARGET", doc.group)
        } else {
            format!("{t}\nthe plan (the group must have no live members)")
        }
    })
}
