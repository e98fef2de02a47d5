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
mod order;
mod paths;
mod place;
mod predict;
mod produce;
mod render;
mod repair;
mod saga;
mod stack;
mod tail;
mod topics;
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
    /// The local stack: PostgreSQL, broker and the five services.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Orders: create, get, list, trace.
    #[command(subcommand)]
    Order(order::OrderCommand),
    /// Sagas: list, show, retry a step, cancel with compensation.
    #[command(subcommand)]
    Saga(saga::SagaCommand),
    /// Kafka topics of the OMS.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Consumer groups: list, describe (lag per partition), reset offsets with a plan first.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Follow topics, decoding envelopes.
    Tail(tail::TailArgs),
    /// Produce messages: the NDJSON `tail -o json` writes, checked against the contracts.
    Produce(produce::ProduceArgs),
    /// Dead letters: list, show, replay.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Inject faults into the local stack: broker, database, services, poison, duplicates,
    /// gateway knobs.
    #[command(subcommand)]
    Chaos(chaos::ChaosCommand),
    /// Scripted chaos drills with a verdict.
    #[command(subcommand)]
    Drill(drill::DrillCommand),
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
        Command::Stack(c) => stack::run(&ctx, c).await,
        Command::Order(c) => order::run(&ctx, c).await,
        Command::Saga(c) => saga::run(&ctx, c).await,
        Command::Topics(c) => topics::run(&ctx, c).await,
        Command::Groups(c) => groups::run(&ctx, c).await,
        Command::Tail(args) => tail::run(&ctx, args).await,
        Command::Produce(args) => produce::run(&ctx, args).await,
        Command::Dlq(c) => dlq::run(&ctx, c).await,
        Command::Verify(args) => verify::run(&ctx, args).await,
        Command::Chaos(c) => chaos::run(&ctx, c).await,
        Command::Drill(c) => drill::run(&ctx, c).await,
        Command::Bench(args) => bench::run(&ctx, args).await,
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
}
