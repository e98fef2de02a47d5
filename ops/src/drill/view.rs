//! A drill as `drill list`, `drill validate` and `drill run --dry-run` show it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::{self, Plan};
use crate::render::table;

/// A drill of `drill list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRow {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// What must hold.
    pub hypothesis: String,
    /// Its file.
    pub file: String,
}

/// `drill validate`: both forms of a valid file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Always true (an invalid file is an error).
    pub valid: bool,
    /// The file.
    pub file: String,
    /// The full form.
    pub full: PlanView,
    /// The short form.
    pub short: PlanView,
}

/// A step of the method, at its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When, from the start of the load (`3s`).
    pub at: String,
    /// The action as written.
    pub action: String,
}

/// Customers cancelling during the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelsView {
    /// Share of accepted orders.
    pub share: f64,
    /// Within this long of acceptance.
    pub within: String,
}

/// What the verdict demands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Demands {
    /// Orders finished this long after the load.
    pub deadline: String,
    /// At most this many lost.
    pub max_lost: u64,
    /// Exactly this many confirmed.
    pub confirmed: Option<u64>,
    /// At most this many new dead letters.
    pub max_dlq: Option<i64>,
    /// At least this many new dead letters.
    pub min_dlq: Option<i64>,
    /// At most this many refused at the door.
    pub max_refused: Option<u64>,
    /// At most this many cancelled per reason.
    pub max_cancelled: BTreeMap<String, u64>,
    /// Delivered or cancelled, not only placed.
    pub settled: bool,
}

/// A resolved plan, for people and for `-o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    /// The drill's name.
    pub drill: String,
    /// The short form.
    pub short: bool,
    /// What must hold.
    pub hypothesis: String,
    /// Steady-state probes, as written.
    pub steady_state: Vec<String>,
    /// Steps before the load.
    pub setup: Vec<String>,
    /// The load, for people.
    pub load: String,
    /// Cancellations during the load.
    pub cancels: Option<CancelsView>,
    /// The method.
    pub method: Vec<Step>,
    /// Steps that always run at the end.
    pub rollback: Vec<String>,
    /// The verdict's demands.
    pub verify: Demands,
}

fn secs(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl PlanView {
    /// The view of `p`.
    pub fn of(p: &Plan) -> Self {
        let e = &p.expect;
        PlanView {
            drill: p.name.clone(),
            short: p.short,
            hypothesis: p.hypothesis.clone(),
            steady_state: p.steady_state.iter().map(|(n, _)| n.clone()).collect(),
            setup: p.setup.iter().map(plan::Action::describe).collect(),
            load: p.load_text.clone(),
            cancels: p.cancels.map(|c| CancelsView {
                share: c.share,
                within: secs(c.within),
            }),
            method: p
                .method
                .iter()
                .map(|(at, a)| Step {
                    at: secs(*at),
                    action: a.describe(),
                })
                .collect(),
            rollback: p.rollback.iter().map(plan::Action::describe).collect(),
            verify: Demands {
                deadline: secs(e.deadline),
                max_lost: e.max_lost,
                confirmed: e.confirmed,
                max_dlq: e.max_dlq,
                min_dlq: e.min_dlq,
                max_refused: e.max_refused,
                max_cancelled: e.max_cancelled.clone(),
                settled: e.settled,
            },
        }
    }

    /// The plan as a table.
    pub fn table(&self) -> String {
        let mut t = table(&["PLAN", ""]);
        t.add_row([
            "drill".to_string(),
            format!("{}{}", self.drill, if self.short { " (short)" } else { "" }),
        ]);
        t.add_row(["hypothesis".to_string(), self.hypothesis.clone()]);
        t.add_row(["steady state".to_string(), self.steady_state.join("\n")]);
        t.add_row(["setup".to_string(), self.setup.join("\n")]);
        let mut load = self.load.clone();
        if let Some(c) = &self.cancels {
            load.push_str(&format!(
                "; the customer cancels {}% of them within {}",
                (c.share * 100.0).round(),
                c.within
            ));
        }
        t.add_row(["load".to_string(), load]);
        let method: Vec<String> = self
            .method
            .iter()
            .map(|m| format!("at {}: {}", m.at, m.action))
            .collect();
        t.add_row(["method".to_string(), method.join("\n")]);
        t.add_row(["rollback".to_string(), self.rollback.join("\n")]);
        let v = &self.verify;
        let mut demands = vec![
            format!(
                "every order {} {} after the load",
                if v.settled {
                    "delivered or cancelled"
                } else {
                    "finished"
                },
                v.deadline
            ),
            format!("at most {} lost", v.max_lost),
        ];
        let optional = [
            (v.confirmed.map(|n| n.to_string()), "exactly {} confirmed"),
            (
                v.max_dlq.map(|n| n.to_string()),
                "at most {} new dead letters",
            ),
            (
                v.min_dlq.map(|n| n.to_string()),
                "at least {} new dead letters",
            ),
            (
                v.max_refused.map(|n| n.to_string()),
                "at most {} refused at the door",
            ),
        ];
        for (n, text) in optional {
            if let Some(n) = n {
                demands.push(text.replace("{}", &n));
            }
        }
        for (reason, n) in &v.max_cancelled {
            demands.push(format!("at most {n} cancelled {reason}"));
        }
        t.add_row(["verify".to_string(), demands.join("\n")]);
        t.to_string()
    }
}
