//! `omsctl produce TOPIC`: produces the NDJSON that `omsctl tail -o json` writes.

use oms_ops::ctx::Ctx;
use oms_ops::produce;
use oms_ops::render::table;
use oms_ops::Failure;

/// `omsctl produce` arguments.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Topic (contract name such as oms.payment.commands; the prefix is added).
    #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::topics))]
    topic: String,
    /// Read this file instead of standard input (`-` is standard input).
    #[arg(long, short = 'f')]
    file: Option<std::path::PathBuf>,
    /// Check every value against the contracts: an envelope that decodes, of a message type
    /// published on this topic, keyed by its order id.
    #[arg(long)]
    validate: bool,
    /// Check the input (and with --validate the envelopes) and send nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Ctx, args: ProduceArgs) -> Result<(), Failure> {
    let topic = ctx.deployed_topic(&args.topic);
    let unprefixed = topic
        .strip_prefix(ctx.topics.prefix())
        .unwrap_or(&topic)
        .to_owned();
    let check = args.validate.then_some(unprefixed.as_str());
    let messages = match args.file.as_deref() {
        None => produce::read_all(std::io::stdin().lock(), "stdin", check)?,
        Some(p) if p.as_os_str() == "-" => {
            produce::read_all(std::io::stdin().lock(), "stdin", check)?
        }
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", p.display())))?;
            produce::read_all(std::io::BufReader::new(f), &p.display().to_string(), check)?
        }
    };
    if messages.is_empty() {
        return Err(Failure::usage("no messages in the input"));
    }
    produce::exists(ctx, &topic).await?;
    if args.dry_run {
        let doc = produce::DryRun {
            dry_run: true,
            topic: topic.clone(),
            messages: messages.len(),
            validated: args.validate,
        };
        return ctx.print(&doc, || {
            format!(
                "would produce {} message(s) to {topic} (dry run: nothing sent)",
                messages.len()
            )
        });
    }
    let sent = produce::send(ctx, &topic, &messages).await?;
    ctx.print(&sent, || {
        let mut t = table(&["PRODUCED AT"]);
        for r in &sent {
            t.add_row([r.at.clone()]);
        }
        format!("{t}\nproduced {} message(s) to {topic}", sent.len())
    })
}
