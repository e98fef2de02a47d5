//! `omsctl drill list | run NAME|FILE [--short] [--report FILE] | validate`: scripted chaos
//! drills with a verdict.

use std::path::PathBuf;

use oms_ops::ctx::Ctx;
use oms_ops::render::table;
use oms_ops::{drill, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum DrillCommand {
    /// The drills shipped in scripts/drills.
    List,
    /// Run a drill by name or file.
    Run {
        /// A name from `drill list`, or a path to a TOML file.
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::drills))]
        drill: String,
        /// The short form (small load, short durations), as CI runs it.
        #[arg(long)]
        short: bool,
        /// Write the JSON report here too.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the resolved plan (steady state, setup, load, method with times, rollback,
        /// what the verdict demands) and run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a drill file (both forms) without running it.
    Validate {
        /// A name from `drill list`, or a path to a TOML file.
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::drills))]
        drill: String,
    },
}

pub async fn run(ctx: &Ctx, command: DrillCommand) -> Result<(), Failure> {
    match command {
        DrillCommand::List => {
            let dir = oms_ops::paths::drills_dir().ok_or_else(|| {
                Failure::usage("scripts/drills not found next to this omsctl: set OMS_DRILLS_DIR (or OMS_ROOT to the repository)")
            })?;
            let mut rows: Vec<drill::view::DrillRow> = Vec::new();
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            entries.sort();
            for p in entries {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?;
                let d = drill::parse(&p, &text, crate::check_command)?;
                rows.push(drill::view::DrillRow {
                    name: d.name,
                    description: d.description,
                    hypothesis: d.hypothesis,
                    file: p.display().to_string(),
                });
            }
            ctx.print(&rows, || {
                let mut t = table(&["DRILL", "HYPOTHESIS"]);
                for r in &rows {
                    t.add_row([r.name.clone(), r.hypothesis.clone()]);
                }
                t.to_string()
            })
        }
        DrillCommand::Run {
            drill,
            short,
            report,
            dry_run,
        } => {
            let path = drill::locate(&drill)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            let d = drill::parse(&path, &text, crate::check_command)?;
            let plan = drill::plan::resolve(&path, &text, &d, short, crate::check_command)?;
            if dry_run {
                let shown = drill::view::PlanView::of(&plan);
                return ctx.print(&shown, || {
                    format!("{}\ndry run: nothing was run", shown.table())
                });
            }
            drill::run::execute(ctx, plan, report.as_deref()).await
        }
        DrillCommand::Validate { drill } => {
            let path = drill::locate(&drill)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            // `parse` resolves both forms: any mistake in either is reported with its line.
            let d = drill::parse(&path, &text, crate::check_command)?;
            let full = drill::plan::resolve(&path, &text, &d, false, crate::check_command)?;
            let short = drill::plan::resolve(&path, &text, &d, true, crate::check_command)?;
            let doc = drill::view::Validation {
                valid: true,
                file: path.display().to_string(),
                full: drill::view::PlanView::of(&full),
                short: drill::view::PlanView::of(&short),
            };
            ctx.print(&doc, || {
                format!(
                    "{}: valid ({}; full form: {} method step(s), load {}; short form: {} step(s), load {})",
                    path.display(),
                    d.name,
                    full.method.len(),
                    full.load_text,
                    short.method.len(),
                    short.load_text
                )
            })
        }
    }
}
