//! The one confirmation rule of omsctl.
//!
//! A command that undoes, destroys or sends again what exists — its verb is one of
//! [`CONFIRMED_VERBS`] — first says what it will do, and goes ahead only when told: `--yes`
//! (`-y`), or `y` at the prompt when a person is at a terminal. `--dry-run` shows the plan and
//! changes nothing. Without a terminal and without `--yes` it refuses (exit 2) and changes
//! nothing, so a script never acts on a question nobody saw. Commands that create or inject (an
//! order, a topic, a fault that expires) act at once. A test over the command tree holds every
//! command to this.

use std::io::{IsTerminal, Write};

use oms_ops::Failure;

/// The verbs that confirm first: every command with one of these names takes [`Confirm`], and
/// no other command does.
pub const CONFIRMED_VERBS: &[&str] = &[
    "cancel",
    "delete",
    "replay",
    "reset-offsets",
    "retry",
    "wipe",
];

/// `--yes` and `--dry-run`, as every confirming command takes them.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
#[command(next_help_heading = "Confirmation")]
pub struct Confirm {
    /// Go ahead without asking (`--execute` is accepted too, as kafka-consumer-groups spells it).
    #[arg(
        short = 'y',
        long,
        visible_alias = "execute",
        conflicts_with = "dry_run"
    )]
    pub yes: bool,
    /// Show what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Confirm {
    /// Whether to do `what` (a phrase such as "cancel order 0199…"): `false` on `--dry-run`
    /// (the caller has shown the plan and stops), `true` with `--yes` or a `y` typed at the
    /// prompt. A refusal without a terminal to ask on, or when the answer is not yes.
    pub fn go_ahead(&self, what: &str) -> Result<bool, Failure> {
        self.decide(what, std::io::stdin().is_terminal(), || {
            eprint!("{what}? [y/N] ");
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            Ok(answer)
        })
    }

    fn decide(
        &self,
        what: &str,
        terminal: bool,
        ask: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<bool, Failure> {
        if self.dry_run {
            return Ok(false);
        }
        if self.yes {
            return Ok(true);
        }
        if !terminal {
            return Err(Failure::usage(format!(
                "{what} needs confirmation: add --yes (or --dry-run to see the plan only)"
            )));
        }
        let answer = ask()?;
        if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            Ok(true)
        } else {
            Err(Failure::verdict(format!(
                "{what}: not confirmed; nothing changed"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> std::io::Result<String> {
        panic!("asked although it must not ask")
    }

    #[test]
    fn dry_run_plans_yes_goes_and_a_script_is_refused() {
        let dry = Confirm {
            yes: false,
            dry_run: true,
        };
        assert!(!dry.decide("wipe", false, never).expect("dry run"));
        let yes = Confirm {
            yes: true,
            dry_run: false,
        };
        assert!(yes.decide("wipe", false, never).expect("yes"));
        let refused = Confirm::default()
            .decide("wipe the stack", false, never)
            .expect_err("no terminal, no --yes");
        assert_eq!(refused.code, 2);
        assert!(
            refused.error.to_string().contains("--yes"),
            "{}",
            refused.error
        );
    }

    #[test]
    fn at_a_terminal_only_yes_goes_ahead() {
        let ask = |answer: &'static str| move || Ok(answer.to_owned());
        assert!(Confirm::default().decide("x", true, ask("y\n")).expect("y"));
        assert!(Confirm::default()
            .decide("x", true, ask("yes\n"))
            .expect("yes"));
        for no in ["\n", "n\n", "yess\n", "sure\n"] {
            let e = Confirm::default()
                .decide("cancel order 1", true, ask(no))
                .expect_err(no);
            assert_eq!(e.code, 1, "{no:?}");
            assert!(e.error.to_string().contains("nothing changed"));
        }
    }
}
