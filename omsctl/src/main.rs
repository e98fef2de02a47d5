//! `omsctl`: the terminal-first toolkit that operates the OMS.
//!
//! # Layout
//! - this module: the command tree (clap), exit codes and dispatch.
//! - [`cmd`]: one front-end per command: parses its flags, calls the operations library
//!   ([`oms_ops`]: settings, the typed client of the services, Kafka reads and writes, the local
//!   stack, chaos, drills, bench, verify, each with its typed report) and prints the report.
//! - [`tui`]: the live dashboard; [`complete`]: dynamic shell completions.
//!
//! Exit codes: 0 ok, 1 a failed check or verdict, 2 a usage error or an unreachable dependency
//! (one line on stderr names it). omsctl never writes a service's database.

mod cmd;
mod complete;
mod examples;
mod tui;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use oms_ops::{bench, ctx, verify};
pub use oms_ops::{Failure, Output};

/// Operate the OMS: orders, sagas, topics, dead letters, invariants, the local stack.
#[derive(Debug, Parser)]
#[command(name = "omsctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten, next_help_heading = "Global options")]
    settings: ctx::Settings,

    /// Tell more on stderr: -v warnings of the clients omsctl uses, -vv each request to a
    /// service, -vvv everything (the dashboard logs to its --log-file instead).
    #[arg(
        short,
        long,
        global = true,
        action = clap::ArgAction::Count,
        help_heading = "Global options"
    )]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

/// The log filter of `-v`, `-vv`, `-vvv` (none without `-v`).
fn verbosity(count: u8) -> Option<&'static str> {
    match count {
        0 => None,
        1 => Some("warn"),
        2 => Some("warn,oms_ops=debug,omsctl=debug"),
        _ => Some("debug"),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The local stack: PostgreSQL, the Kafka broker(s) and the six services.
    #[command(subcommand)]
    Stack(cmd::stack::StackCommand),
    /// Orders: create, get, list, trace.
    #[command(subcommand, visible_alias = "orders")]
    Order(cmd::order::OrderCommand),
    /// Sagas: list, show, retry a step, cancel with compensation.
    #[command(subcommand, visible_alias = "sagas")]
    Saga(cmd::saga::SagaCommand),
    /// Kafka topics of the OMS.
    #[command(subcommand, name = "topic", visible_alias = "topics")]
    Topic(cmd::topics::TopicsCommand),
    /// Consumer groups: list, describe (lag per partition), reset offsets with a plan first.
    #[command(subcommand, name = "group", visible_alias = "groups")]
    Group(cmd::groups::GroupsCommand),
    /// Follow topics, decoding envelopes.
    Tail(cmd::tail::TailArgs),
    /// Produce messages: the NDJSON `tail -o json` writes, checked against the contracts.
    Produce(cmd::produce::ProduceArgs),
    /// Dead letters: list, show, replay.
    #[command(subcommand, visible_alias = "dlqs")]
    Dlq(cmd::dlq::DlqCommand),
    /// Inject faults into the context's target (local stack, compose or Kubernetes): broker,
    /// database, services, poison, duplicates, payment and carrier knobs.
    #[command(subcommand)]
    Chaos(cmd::chaos::ChaosCommand),
    /// Scripted chaos drills with a verdict.
    #[command(subcommand, visible_alias = "drills")]
    Drill(cmd::drill::DrillCommand),
    /// Check the invariants that must hold across all services.
    Verify(verify::VerifyArgs),
    /// Load generator: open or closed loop, latency histograms, outcomes and CPU per order.
    Bench(bench::BenchArgs),
    /// Live dashboard of saga states, throughput, latency, health, consumer lag and dead letters.
    Tui(tui::TuiArgs),
    /// Tokens for the services' APIs.
    #[command(subcommand)]
    Auth(cmd::auth::AuthCommand),
    /// Contexts: the targets omsctl operates (local, compose, kubernetes).
    #[command(subcommand, visible_alias = "contexts")]
    Context(cmd::context::ContextCommand),
    /// omsctl's version, each service's and the Kafka cluster's (exit 1 when one does not
    /// answer).
    Version,
    /// Print the script that registers omsctl's completions with a shell (bash, zsh, fish,
    /// elvish, powershell); completions are asked of omsctl as you type, so topics, groups,
    /// drills, components, saga states and order statuses complete too.
    Completions {
        /// Shell (bash, zsh, fish, elvish, powershell) [default with --install: $SHELL's].
        #[arg(required_unless_present = "install")]
        shell: Option<String>,
        /// Write the script where the shell loads it (bash-completion's and fish's own
        /// directories; for the others a file and the line that sources it) instead of
        /// printing it.
        #[arg(long)]
        install: bool,
    },
}

/// The command tree with every command's examples in its long help.
fn command() -> clap::Command {
    examples::attach(Cli::command())
}

/// Checks `words` (an omsctl command line without `omsctl`) with omsctl's own parser; the
/// error is the parser's first line. Drill files and the dashboard's command line go through it.
pub fn check_command(words: &[String]) -> Result<(), String> {
    let argv = std::iter::once("omsctl").chain(words.iter().map(String::as_str));
    match Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("not a valid command")
                .trim_start_matches("error: ")
                .to_owned();
            Err(format!("`omsctl {}`: {first}", words.join(" ")))
        }
    }
}

fn main() -> ExitCode {
    // `COMPLETE=<shell> omsctl -- …` (the registered completion script): answer and exit.
    clap_complete::CompleteEnv::with_factory(command).complete();
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let (Some(filter), false) = (
        verbosity(cli.verbose),
        matches!(cli.command, Command::Tui(_)),
    ) {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
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
            if oms_ops::render::is_broken_pipe(&f.error) {
                return ExitCode::SUCCESS;
            }
            let line = format!("{:#}", f.error).replace('\n', " ");
            eprintln!("omsctl: {line}");
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell, install } = &cli.command {
        use std::io::Write;
        let shell = match shell.clone().or_else(complete::login_shell) {
            Some(s) => s,
            None => return Err(Failure::usage("name a shell: $SHELL is not set")),
        };
        if *install {
            let done = complete::install(&shell)?;
            eprintln!(
                "omsctl: {} completions installed in {}",
                done.shell,
                done.path.display()
            );
            match &done.add_to_startup {
                Some(line) => {
                    eprintln!("omsctl: add this line to your {shell} startup file: {line}")
                }
                None => eprintln!("omsctl: new {shell} sessions complete omsctl"),
            }
            return Ok(());
        }
        let script = complete::registration(&shell)?;
        std::io::stdout().lock().write_all(&script)?;
        return Ok(());
    }
    let ctx = ctx::Ctx::new(cli.settings)?;
    match cli.command {
        Command::Stack(c) => cmd::stack::run(&ctx, c).await,
        Command::Order(c) => cmd::order::run(&ctx, c).await,
        Command::Saga(c) => cmd::saga::run(&ctx, c).await,
        Command::Topic(c) => cmd::topics::run(&ctx, c).await,
        Command::Group(c) => cmd::groups::run(&ctx, c).await,
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
        Command::Version => cmd::version::run(&ctx).await,
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

    /// `-v` counts, anywhere on the line; each count asks for more.
    #[test]
    fn verbosity_counts() {
        let count = |argv: &[&str]| Cli::try_parse_from(argv).map(|c| c.verbose).ok();
        assert_eq!(count(&["omsctl", "topics", "list"]), Some(0));
        assert_eq!(count(&["omsctl", "-v", "topics", "list"]), Some(1));
        assert_eq!(count(&["omsctl", "topics", "list", "-vvv"]), Some(3));
        assert_eq!(verbosity(0), None);
        assert_eq!(verbosity(1), Some("warn"));
        assert_ne!(verbosity(2), verbosity(1));
        assert_ne!(verbosity(3), verbosity(2));
        assert_eq!(verbosity(9), Some("debug"));
    }

    /// Every noun is named in the singular, with its plural as a visible alias, so `omsctl
    /// topic list` and `omsctl orders list` work as kafkactl users type them, and the reference
    /// reads one way.
    #[test]
    fn nouns_are_singular_with_a_plural_alias() {
        let cmd = Cli::command();
        let mut wrong = Vec::new();
        for sub in cmd.get_subcommands().filter(|s| s.has_subcommands()) {
            let name = sub.get_name();
            // Mass nouns (the stack, chaos) and `auth` have no plural.
            if ["stack", "chaos", "auth"].contains(&name) {
                continue;
            }
            let plural = format!("{name}s");
            let aliases: Vec<&str> = sub.get_visible_aliases().collect();
            if name.ends_with('s') || !aliases.contains(&plural.as_str()) {
                wrong.push(format!("{name} (aliases {aliases:?})"));
            }
        }
        assert!(
            wrong.is_empty(),
            "nouns not singular with a plural alias: {wrong:?}"
        );
        for argv in [
            ["omsctl", "topic", "list"],
            ["omsctl", "orders", "list"],
            ["omsctl", "group", "list"],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
    }

    /// Every command without subcommands, with its path below `omsctl` (`order create`), from
    /// the built tree (global flags propagated).
    fn leaf_commands() -> Vec<(String, clap::Command)> {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name()).trim_start().to_owned();
                if sub.has_subcommands() {
                    walk(sub, &path, out);
                } else {
                    out.push((path, sub.clone()));
                }
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut out = Vec::new();
        walk(&cli, "", &mut out);
        out
    }

    /// The confirmation rule ([`cmd::confirm`]): every command whose verb undoes, destroys or
    /// sends again takes `--yes`/`-y` and `--dry-run`; no other command takes `--yes`; every
    /// verb of the rule names a command.
    #[test]
    fn every_command_that_undoes_or_destroys_confirms_and_nothing_else_asks() {
        let all = leaf_commands();
        assert!(all.len() > 40, "only {} commands", all.len());
        let mut wrong = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for (path, cmd) in &all {
            let arg = |id: &str| cmd.get_arguments().find(|a| a.get_id() == id).cloned();
            let yes = arg("yes");
            let confirms = cmd::confirm::CONFIRMED_VERBS.contains(&cmd.get_name());
            if confirms {
                used.insert(cmd.get_name().to_owned());
                let short_y = yes.as_ref().and_then(|a| a.get_short()) == Some('y');
                if !short_y || arg("dry_run").is_none() {
                    wrong.push(format!("{path}: no --yes/-y and --dry-run"));
                }
            } else if yes.is_some() || arg("execute").is_some() {
                wrong.push(format!(
                    "{path}: asks for --yes but is not a confirming verb"
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(
            used.len(),
            cmd::confirm::CONFIRMED_VERBS.len(),
            "a verb of the rule names no command: {used:?}"
        );
    }

    /// Words of an example line as a shell would split them (quotes removed), up to a
    /// redirection.
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut started = false;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    started = true;
                }
                (None, ' ') => {
                    if started || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    started = false;
                }
                (None, c) => word.push(c),
            }
        }
        if started || !word.is_empty() {
            words.push(word);
        }
        match words.iter().position(|w| w == ">") {
            Some(at) => words[..at].to_vec(),
            None => words,
        }
    }

    /// Every command has examples in its long help; every example parses with omsctl's own
    /// parser; every entry of the table names a command.
    #[test]
    fn every_command_has_examples_that_parse() {
        let all: Vec<String> = leaf_commands().into_iter().map(|(p, _)| p).collect();
        let missing: Vec<&String> = all.iter().filter(|p| examples::of(p).is_none()).collect();
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
        let stray: Vec<&str> = examples::EXAMPLES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !all.iter().any(|a| a == p))
            .collect();
        assert!(stray.is_empty(), "examples of no command: {stray:?}");
        let mut bad = Vec::new();
        for (path, text) in examples::EXAMPLES {
            let runs: Vec<&str> = text.lines().filter(|l| l.starts_with("omsctl ")).collect();
            if runs.is_empty() {
                bad.push(format!("{path}: no example runs omsctl"));
            }
            for line in runs {
                let words = shell_words(line);
                if let Err(e) = check_command(&words[1..]) {
                    bad.push(format!("{path}: {e}"));
                    continue;
                }
                // The example runs the command it stands under (an alias, `topics list`, is
                // fine: the canonical names are compared).
                let mut ran = Vec::new();
                if let Ok(m) = Cli::command().try_get_matches_from(&words) {
                    let mut at = &m;
                    while let Some((name, sub)) = at.subcommand() {
                        ran.push(name.to_owned());
                        at = sub;
                    }
                }
                if ran.join(" ") != *path {
                    bad.push(format!("{path}: `{line}` runs `{}`", ran.join(" ")));
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
        // The long help shows them.
        let mut cmd = command();
        let help = cmd
            .find_subcommand_mut("order")
            .and_then(|o| o.find_subcommand_mut("create"))
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(
            help.contains("Examples:") && help.contains("omsctl order create --item mouse-01:2"),
            "{help}"
        );
    }

    /// `omsctl tui dashboard` (and the other views) opens the dashboard on that view; bare
    /// `omsctl tui` opens the dashboard.
    #[test]
    fn the_dashboard_opens_on_the_view_named() {
        let view = |argv: &[&str]| match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Tui(args)) => Ok(args.start_view()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        };
        use tui::app::View;
        assert_eq!(view(&["omsctl", "tui"]), Ok(View::Overview));
        assert_eq!(view(&["omsctl", "tui", "dashboard"]), Ok(View::Overview));
        assert_eq!(view(&["omsctl", "tui", "overview"]), Ok(View::Overview));
        assert_eq!(view(&["omsctl", "tui", "sagas"]), Ok(View::Sagas));
        assert_eq!(view(&["omsctl", "tui", "dlq"]), Ok(View::Dlq));
        assert_eq!(
            view(&["omsctl", "tui", "logs", "--refresh", "2s"]),
            Ok(View::Logs)
        );
        assert_eq!(view(&["omsctl", "tui", "lag"]), Ok(View::Lag));
        assert!(view(&["omsctl", "tui", "dashbord"]).is_err_and(|e| e.contains("dashboard")));
    }

    /// Drill actions and the dashboard's typed commands go through omsctl's own parser.
    #[test]
    fn command_lines_are_checked_by_the_real_parser() {
        let words =
            |line: &str| -> Vec<String> { line.split_whitespace().map(String::from).collect() };
        assert_eq!(check_command(&words("chaos broker stop --for 5s")), Ok(()));
        let typo = check_command(&words("chaos brokr stop")).expect_err("typo accepted");
        assert!(typo.contains("brokr"), "{typo}");
        let bad = check_command(&words("chaos broker stop --for soon")).expect_err("bad duration");
        assert!(bad.contains("soon"), "{bad}");
    }

    /// Every drill that ships parses with the real parser (its actions included).
    #[test]
    fn every_shipped_drill_parses_with_the_real_parser() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/drills");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Err(e) = oms_ops::drill::parse(&path, &text, check_command) {
                panic!("{}: {}", path.display(), e.error);
            }
            n += 1;
        }
        assert_eq!(n, 12, "twelve drills ship");
    }

    /// The command tree as the reference shows it: the same on every machine (no environment
    /// values in it).
    fn documented() -> clap::Command {
        fn hide_env(cmd: clap::Command) -> clap::Command {
            cmd.mut_args(|a| a.hide_env_values(true))
                .mut_subcommands(hide_env)
        }
        hide_env(command())
    }

    /// The generated reference: `docs/reference/omsctl.md` and a man page per command in
    /// `docs/man/`, from the clap definitions.
    fn reference() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let markdown = clap_markdown::help_markdown_command_custom(
            &documented(),
            &clap_markdown::MarkdownOptions::new()
                .title("omsctl reference".to_owned())
                .show_footer(false),
        );
        let mut out = vec![(
            "reference/omsctl.md".into(),
            fence_examples(&markdown).into_bytes(),
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

    /// The Markdown reference with each command's examples (the indented lines after
    /// `Examples:`) in a shell code block.
    fn fence_examples(markdown: &str) -> String {
        let mut out = String::new();
        let mut fenced = false;
        for line in markdown.lines() {
            if fenced && !line.starts_with("  ") {
                out.push_str("```\n");
                fenced = false;
            }
            if line == "Examples:" {
                out.push_str("**Examples:**\n\n```sh\n");
                fenced = true;
                continue;
            }
            match line.strip_prefix("  ").filter(|_| fenced) {
                Some(example) => out.push_str(example),
                None => out.push_str(line),
            }
            out.push('\n');
        }
        if fenced {
            out.push_str("```\n");
        }
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
