//! Scripted chaos drills with a verdict (`omsctl drill list | run | validate`).
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
//! - [`run`]: running a plan; its steps (actions and probes, logged) are in `steps`.
//! - [`verdict`]: the verdict, a pure function of the demands and what was observed.
//! - [`report`]: the JSON report and the verdict table.
//! - [`view`]: a plan and the drill list as `drill run --dry-run`, `validate` and `list` show them.
//! - [`takeover`]: how long a service took to take over from a killed replica (relay leader,
//!   consumer group).

pub mod failover;
pub mod plan;
pub mod report;
pub mod run;
pub mod spec;
mod steps;
pub mod takeover;
pub mod verdict;
pub mod view;

use std::path::{Path, PathBuf};

use crate::Failure;

/// Reads and checks a drill file (both forms).
pub fn parse(
    path: &Path,
    text: &str,
    commands: plan::CommandCheck,
) -> Result<spec::Drill, Failure> {
    let drill = spec::read(path, text)?;
    plan::check(path, text, &drill, commands)?;
    Ok(drill)
}

/// The file of a drill named by name or path.
pub fn locate(drill: &str) -> Result<PathBuf, Failure> {
    if Path::new(drill).is_file() {
        return Ok(PathBuf::from(drill));
    }
    if drill.ends_with(".toml") || drill.contains('/') {
        return Err(Failure::usage(format!("no drill file {drill:?}")));
    }
    crate::paths::drills_dir()
        .map(|d| d.join(format!("{drill}.toml")))
        .filter(|p| p.is_file())
        .ok_or_else(|| Failure::usage(format!("no drill {drill:?} (see `omsctl drill list`)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// omsctl's parser is omsctl's: its tests run it on every shipped drill; here any command
    /// line is taken.
    fn any(_: &[String]) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn a_faulty_drill_file_names_the_line() {
        let text = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = 1\nitems = [\"mouse-01:1\"]\nspeed = 3\n[verify]\ndeadline = \"10s\"\n";
        let e = parse(Path::new("x.toml"), text, any).expect_err("unknown field accepted");
        let msg = e.error.to_string();
        assert!(msg.contains("line 7") && msg.contains("speed"), "{msg}");
        let bad_action = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = 1\nitems = [\"mouse-01:1\"]\n[[method]]\nat = \"1s\"\naction = \"explode\"\n[verify]\ndeadline = \"10s\"\n";
        let e = parse(Path::new("x.toml"), bad_action, any).expect_err("bad action accepted");
        assert!(
            e.error.to_string().contains("unknown action \"explode\""),
            "{}",
            e.error
        );
        let bad_duration = bad_action
            .replace("explode", "chaos broker stop")
            .replace("\"1s\"", "\"soon\"");
        assert!(parse(Path::new("x.toml"), &bad_duration, any).is_err());
    }

    #[test]
    fn a_plan_is_described_with_every_step_and_demand() {
        let text = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\nsetup = [\"stock mouse-01 5\"]\nrollback = [\"chaos reset\"]\n[load]\nrate = 2\nduration = \"10s\"\nitems = [\"mouse-01:1\"]\n[[method]]\nat = \"3s\"\naction = \"chaos broker stop --for 5s\"\n[verify]\ndeadline = \"30s\"\nmax_dlq = 0\nmax_cancelled = { TIMEOUT = 0 }\n";
        let path = Path::new("x.toml");
        let d = parse(path, text, any).expect("valid");
        let p = plan::resolve(path, text, &d, false, any).expect("resolves");
        let doc = view::PlanView::of(&p);
        assert_eq!(
            doc.method,
            [view::Step {
                at: "3s".into(),
                action: "chaos broker stop --for 5s".into()
            }]
        );
        assert_eq!(doc.setup, ["stock mouse-01 5"]);
        assert_eq!(
            doc.verify.max_cancelled,
            std::collections::BTreeMap::from([("TIMEOUT".to_owned(), 0)])
        );
        let shown = doc.table();
        for part in [
            "at 3s: chaos broker stop --for 5s",
            "at most 0 cancelled TIMEOUT",
            "at most 0 new dead letters",
            "chaos reset",
        ] {
            assert!(shown.contains(part), "{part}: {shown}");
        }
    }

    #[test]
    fn every_shipped_drill_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/drills");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scripts/drills exists") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            if let Err(e) = parse(&path, &text, any) {
                panic!("{}: {}", path.display(), e.error);
            }
            n += 1;
        }
        assert_eq!(n, 12, "twelve drills ship");
    }
}
