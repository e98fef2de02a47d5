//! `omsctl drill list | run NAME|FILE [--short] [--report FILE]`: scripted chaos drills with a
//! verdict.
//!
//! A drill is a TOML file (`scripts/drills/*.toml`): a hypothesis, steady-state probes checked
//! before and after, setup steps, a load (orders per second for a duration, item mix, payment
//! tokens, or a burst of concurrent buyers), a method (omsctl commands at given times), rollbacks
//! that always run (Ctrl-C included), and the verification. The run ends with a verdict table
//! and a JSON report: orders created, confirmed, cancelled by reason, lost (accepted but not
//! finished by the deadline), charges without a confirmed order, new dead letters, the
//! invariant checks of `omsctl verify`, time to recover, and the ids of affected orders. Exit 0
//! only when the hypothesis held.
//!
//! - [`spec`]: the file format as written.
//! - [`plan`]: the file resolved (short or full form) and checked, actions parsed by omsctl's
//!   own command parser: a mistake is refused when the file is read, with its line.
//! - [`run`]: running a plan.
//! - [`verdict`]: the verdict, a pure function of the demands and what was observed.
//! - [`report`]: the JSON report and the verdict table.
//! - [`takeover`]: how long a service took to take over from a killed replica (relay leader,
//!   consumer group).

pub mod plan;
pub mod report;
pub mod run;
pub mod spec;
pub mod takeover;
pub mod verdict;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::ctx::{cell, table, Ctx};
use crate::Failure;

/// Reads and checks a drill file (both forms).
pub fn parse(path: &Path, text: &str) -> Result<spec::Drill, Failure> {
    let drill = spec::read(path, text)?;
    plan::check(path, text, &drill)?;
    Ok(drill)
}

#[derive(Debug, clap::Subcommand)]
pub enum DrillCommand {
    /// The drills shipped in scripts/drills.
    List,
    /// Run a drill by name or file.
    Run {
        /// A name from `drill list`, or a path to a TOML file.
        drill: String,
        /// The short form (small load, short durations), as CI runs it.
        #[arg(long)]
        short: bool,
        /// Write the JSON report here too.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

pub async fn run(ctx: &Ctx, command: DrillCommand) -> Result<(), Failure> {
    match command {
        DrillCommand::List => {
            let dir = spec::drills_dir().ok_or_else(|| {
                Failure::usage("scripts/drills not found next to this omsctl: set OMS_DRILLS_DIR (or OMS_ROOT to the repository)")
            })?;
            let mut rows = Vec::new();
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            entries.sort();
            for p in entries {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?;
                let d = parse(&p, &text)?;
                rows.push(json!({"name": d.name, "description": d.description, "hypothesis": d.hypothesis, "file": p.display().to_string()}));
            }
            let value = Value::Array(rows.clone());
            ctx.print(&value, || {
                let mut t = table(&["DRILL", "HYPOTHESIS"]);
                for r in &rows {
                    t.add_row([cell(&r["name"]), cell(&r["hypothesis"])]);
                }
                t.to_string()
            })
        }
        DrillCommand::Run {
            drill,
            short,
            report,
        } => {
            let path = if Path::new(&drill).is_file() {
                PathBuf::from(&drill)
            } else {
                spec::drills_dir()
                    .map(|d| d.join(format!("{drill}.toml")))
                    .filter(|p| p.is_file())
                    .ok_or_else(|| {
                        Failure::usage(format!("no drill {drill:?} (see `omsctl drill list`)"))
                    })?
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            let d = parse(&path, &text)?;
            let plan = plan::resolve(&path, &text, &d, short)?;
            run::execute(ctx, plan, report.as_deref()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faulty_drill_file_names_the_line() {
        let text = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = 1\nitems = [\"mouse-01:1\"]\nspeed = 3\n[verify]\ndeadline = \"10s\"\n";
        let e = parse(Path::new("x.toml"), text).expect_err("unknown field accepted");
        let msg = e.error.to_string();
        assert!(msg.contains("line 7") && msg.contains("speed"), "{msg}");
        let bad_action = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = 1\nitems = [\"mouse-01:1\"]\n[[method]]\nat = \"1s\"\naction = \"explode\"\n[verify]\ndeadline = \"10s\"\n";
        let e = parse(Path::new("x.toml"), bad_action).expect_err("bad action accepted");
        assert!(
            e.error.to_string().contains("unknown action \"explode\""),
            "{}",
            e.error
        );
        let bad_duration = bad_action
            .replace("explode", "chaos broker stop")
            .replace("\"1s\"", "\"soon\"");
        assert!(parse(Path::new("x.toml"), &bad_duration).is_err());
    }

    #[test]
    fn every_shipped_drill_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/drills");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scripts/drills exists") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            if let Err(e) = parse(&path, &text) {
                panic!("{}: {}", path.display(), e.error);
            }
            n += 1;
        }
        assert_eq!(n, 9, "nine drills ship");
    }
}
