//! `omsctl`: the terminal-first toolkit that operates the OMS.
//!
//! # Layout
//! - this module: the command tree (clap), exit codes and dispatch.
//! - [`ctx`]: settings (flags, `OMS_*` env, config file, defaults), the HTTP client of the
//!   services and output helpers; [`context`]: the named targets of the config file.
//! - [`order`], [`saga`]: orders and sagas through the services' HTTP APIs.
//! - [`topics`], [`tail`], [`produce`], [`dlq`], [`groups`]: Kafka directly: topics and lag,
//!   following and producing messages, dead letters and their safe replay, consumer groups.
//! - [`verify`]: the cross-service invariants.
//! - [`bench`]: the load generator; [`cpu`]: CPU time of the local stack's processes.
//! - [`chaos`]: fault injection on the local stack; [`drill`]: scripted drills with a verdict.
//! - [`auth`]: tokens (`auth token`, and the one each request carries).
//! - [`stack`]: the local stack (delegating start and stop to `scripts/stack.sh`).
//! - [`tui`]: the live dashboard.
//!
//! Exit codes: 0 ok, 1 a failed check or verdict, 2 a usage error or an unreachable dependency
//! (one line on stderr names it). omsctl never writes a service's database.

mod args;
mod auth;
mod bench;
mod chaos;
mod client;
mod cmd;
mod complete;
mod context;
mod cpu;
mod ctx;
mod dlq;
mod drill;
mod filter;
mod groups;
mod local;
mod paths;
mod place;
mod produce;
mod render;
mod status;
mod tail;
mod topics;
mod trace;
mod tui;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Operate the OMS: orders, sagas, topics, dead letters, invariants, the local stack.
#[derive(Debug, Parser)]
#[command(name = "omsctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    settings: ctx::Settings,

    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    #[default]
    Table,
    /// JSON (JSON Lines for streams); field names are stable.
    Json,
    /// YAML of the same document as JSON (a document per message for streams).
    Yaml,
    /// One id per line (order ids, entry ids, groups, message coordinates): for xargs.
    Ids,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The local stack: PostgreSQL, the Kafka broker(s) and the six services.
    #[command(subcommand)]
    Stack(cmd::stack::StackCommand),
    /// Orders: create, get, list, trace.
    #[command(subcommand)]
    Order(cmd::order::OrderCommand),
    /// Sagas: list, show, retry a step, cancel with compensation.
    #[command(subcommand)]
    Saga(cmd::saga::SagaCommand),
    /// Kafka topics of the OMS.
    #[command(subcommand)]
    Topics(cmd::topics::TopicsCommand),
    /// Consumer groups: list, describe (lag per partition), reset offsets with a plan first.
    #[command(subcommand)]
    Groups(cmd::groups::GroupsCommand),
    /// Follow topics, decoding envelopes.
    Tail(cmd::tail::TailArgs),
    /// Produce messages: the NDJSON `tail -o json` writes, checked against the contracts.
    Produce(cmd::produce::ProduceArgs),
    /// Dead letters: list, show, replay.
    #[command(subcommand)]
    Dlq(cmd::dlq::DlqCommand),
    /// Inject faults into the context's target (local stack, compose or Kubernetes): broker,
    /// database, services, poison, duplicates, payment and carrier knobs.
    #[command(subcommand)]
    Chaos(cmd::chaos::ChaosCommand),
    /// Scripted chaos drills with a verdict.
    #[command(subcommand)]
    Drill(cmd::drill::DrillCommand),
    /// Check the invariants that must hold across all services.
    Verify(verify::VerifyArgs),
    /// Load generator: open or closed loop, latency histograms, outcomes and CPU per order.
    Bench(bench::BenchArgs),
    /// Live dashboard of saga states, throughput, health and dead letters.
    Tui(tui::TuiArgs),
    /// Tokens for the services' APIs.
    #[command(subcommand)]
    Auth(cmd::auth::AuthCommand),
    /// Contexts: the targets omsctl operates (local, compose, kubernetes).
    #[command(subcommand)]
    Context(cmd::context::ContextCommand),
    /// Print the script that registers omsctl's completions with a shell (bash, zsh, fish,
    /// elvish, powershell); completions are asked of omsctl as you type, so topics, groups,
    /// drills, components, saga states and order statuses complete too.
    Completions {
        /// Shell.
        shell: String,
    },
}

/// An error that knows its exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code: 1 failed check or verdict, 2 usage or connection error.
    pub code: u8,
    /// What to print.
    pub error: anyhow::Error,
}

impl Failure {
    /// A usage or connection error (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            error: anyhow::anyhow!("{message}"),
        }
    }

    /// A failed check or verdict (exit 1).
    pub fn verdict(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            error: anyhow::anyhow!("{message}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 2,
            error: e.into(),
        }
    }
}

fn main() -> ExitCode {
    // `COMPLETE=<shell> omsctl -- …` (the registered completion script): answer and exit.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("omsctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // A closed pipe (`omsctl tail | head`) is a normal way to stop.
            if crate::render::is_broken_pipe(&f.error) {
                return ExitCode::SUCCESS;
            }
            let line = format!("{:#}", f.error).replace('\n', " ");
            eprintln!("omsctl: {line}");
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = &cli.command {
        use std::io::Write;
        let script = complete::registration(shell)?;
        std::io::stdout().lock().write_all(&script)?;
        return Ok(());
    }
    let ctx = ctx::Ctx::new(cli.settings)?;
    match cli.command {
        Command::Stack(c) => cmd::stack::run(&ctx, c).await,
        Command::Order(c) => cmd::order::run(&ctx, c).await,
        Command::Saga(c) => cmd::saga::run(&ctx, c).await,
        Command::Topics(c) => cmd::topics::run(&ctx, c).await,
        Command::Groups(c) => cmd::groups::run(&ctx, c).await,
        Command::Tail(args) => cmd::tail::run(&ctx, args).await,
        Command::Produce(args) => cmd::produce::run(&ctx, args).await,
        Command::Dlq(c) => cmd::dlq::run(&ctx, c).await,
        Command::Verify(args) => cmd::verify::run(&ctx, args).await,
        Command::Chaos(c) => cmd::chaos::run(&ctx, c).await,
        Command::Drill(c) => cmd::drill::run(&ctx, c).await,
        Command::Bench(args) => cmd::bench::run(&ctx, args).await,
        Command::Tui(args) => tui::run(&ctx, args).await,
        Command::Auth(c) => cmd::auth::run(&ctx, c).await,
        Command::Context(c) => cmd::context::run(&ctx, c).await,
        Command::Completions { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks the whole command tree (duplicate flags, a subcommand's flag shadowing a
    /// global one, bad defaults) only when a command is built in a debug build; this builds
    /// every one of them, so a clash fails here instead of panicking in a user's shell.
    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The command tree as the reference shows it: the same on every machine (no environment
    /// values in it).
    fn documented() -> clap::Command {
        fn hide_env(cmd: clap::Command) -> clap::Command {
            cmd.mut_args(|a| a.hide_env_values(true))
                .mut_subcommands(hide_env)
        }
        hide_env(Cli::command())
    }

    /// The generated reference: `docs/reference/omsctl.md` and a man page per command in
    /// `docs/man/`, from the clap definitions.
    fn reference() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = vec![(
            "reference/omsctl.md".into(),
            clap_markdown::help_markdown_command_custom(
                &documented(),
                &clap_markdown::MarkdownOptions::new()
                    .title("omsctl reference".to_owned())
                    .show_footer(false),
            )
            .into_bytes(),
        )];
        fn pages(cmd: &clap::Command, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
            let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
            let mut page = Vec::new();
            if clap_mangen::Man::new(cmd.clone()).render(&mut page).is_ok() {
                out.push((format!("man/{name}.1").into(), page));
            }
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                pages(sub, out);
            }
        }
        let mut cmd = documented();
        cmd.build();
        pages(&cmd, &mut out);
        out
    }

    /// The reference and man pages in docs/ are what the definitions make: a flag or help text
    /// changed without them fails here. `OMS_BLESS=1 cargo test -p omsctl reference` writes
    /// them again.
    #[test]
    fn the_reference_and_man_pages_match_the_definitions() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let generated = reference();
        assert!(generated.len() > 20, "only {} pages", generated.len());
        if std::env::var_os("OMS_BLESS").is_some() {
            let _ = std::fs::remove_dir_all(docs.join("man"));
            for (path, bytes) in &generated {
                let path = docs.join(path);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).expect("docs dir");
                }
                std::fs::write(&path, bytes).expect("write the reference");
            }
        }
        let mut stale = Vec::new();
        for (path, bytes) in &generated {
            if std::fs::read(docs.join(path)).ok().as_ref() != Some(bytes) {
                stale.push(path.display().to_string());
            }
        }
        let pages: Vec<String> = std::fs::read_dir(docs.join("man"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("man/{}", e.file_name().to_string_lossy()))
            .filter(|p| !generated.iter().any(|(g, _)| g.display().to_string() == *p))
            .collect();
        assert!(
            stale.is_empty() && pages.is_empty(),
            "docs/ is stale: {stale:?} differ, {pages:?} are left over; run \
             `OMS_BLESS=1 cargo test -p omsctl reference` and commit docs/"
        );
    }
}
