//! The report of a drill run: the JSON document (`-o json`, `--report FILE`) and the verdict
//! table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Order counts of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Orders {
    /// Accepted.
    pub created: usize,
    /// Refused at the door, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Placed: confirmed, shipped or delivered.
    pub confirmed: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Cancelled, by reason.
    pub cancelled: BTreeMap<String, u64>,
    /// Not finished by the deadline.
    pub lost: usize,
    /// The answers to customers' cancellations (drills that cancel), by kind.
    #[serde(
        rename = "cancelRequests",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cancel_requests: BTreeMap<String, u64>,
}

/// Double charges: one payment per order by key, so a second charge shows as a payment without
/// a confirmed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Duplicates {
    /// Payments without a confirmed order.
    pub double_charges: usize,
    /// How it is counted.
    pub note: String,
}

/// Everything a run found, and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Drill name.
    pub drill: String,
    /// The short form ran.
    pub short: bool,
    /// What had to hold.
    pub hypothesis: String,
    /// Whether it held.
    pub held: bool,
    /// Why not.
    pub why: Vec<String>,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// Order counts.
    pub orders: Orders,
    /// Payments without a confirmed order.
    pub charged_without_confirmed_order: usize,
    /// Double charges.
    pub duplicates: Duplicates,
    /// Dead letters written during the run.
    pub dlq_new: i64,
    /// `omsctl verify`'s document.
    pub invariants: crate::verify::VerifyView,
    /// From the last fault undone until every order was finished.
    pub time_to_recover_seconds: Option<f64>,
    /// Ids of lost orders.
    pub lost_orders: Vec<String>,
    /// Ids of lost and cancelled orders (at most 50).
    pub affected_orders: Vec<String>,
    /// Each killed replica's takeover (drills that kill one replica of a service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub takeovers: Vec<super::takeover::Takeover>,
    /// Each lost broker node's failover (drills that stop or kill a Kafka node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<super::failover::Failover>,
    /// Failed invariant checks, one line each (for the table).
    #[serde(skip)]
    pub failed_checks: Vec<String>,
    /// Every probe and action of the run: phase, start, end, status, output.
    pub journal: Vec<Activity>,
}

/// One activity of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// `steady-state-before`, `setup`, `method`, `rollback` or `steady-state-after`.
    pub phase: String,
    /// The action or probe as written.
    pub activity: String,
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// What it printed, or why it failed.
    pub output: Vec<String>,
}

impl Report {
    /// The verdict table.
    pub fn table(&self) -> String {
        let mut t = crate::render::table(&["VERDICT TABLE", ""]);
        t.add_row([
            "drill".to_string(),
            format!("{}{}", self.drill, if self.short { " (short)" } else { "" }),
        ]);
        t.add_row([
            "orders created".to_string(),
            self.orders.created.to_string(),
        ]);
        t.add_row([
            "refused at the door".to_string(),
            self.orders.refused.values().sum::<u64>().to_string(),
        ]);
        t.add_row(["confirmed".to_string(), self.orders.confirmed.to_string()]);
        if self.orders.delivered > 0 {
            t.add_row([
                "of them delivered".to_string(),
                self.orders.delivered.to_string(),
            ]);
        }
        for (answer, n) in &self.orders.cancel_requests {
            t.add_row([format!("cancel requests {answer}"), n.to_string()]);
        }
        for (r, n) in &self.orders.cancelled {
            t.add_row([format!("cancelled {r}"), n.to_string()]);
        }
        t.add_row(["LOST".to_string(), self.orders.lost.to_string()]);
        t.add_row([
            "charged without confirmed order".to_string(),
            self.charged_without_confirmed_order.to_string(),
        ]);
        t.add_row(["new dead letters".to_string(), self.dlq_new.to_string()]);
        t.add_row([
            "invariants".to_string(),
            if self.failed_checks.is_empty() {
                "all PASS".into()
            } else {
                self.failed_checks.join("\n")
            },
        ]);
        t.add_row([
            "time to recover".to_string(),
            self.time_to_recover_seconds
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "not recovered".into()),
        ]);
        for k in &self.takeovers {
            t.add_row([
                format!("takeover of {}", k.replica),
                format!("relay {}, group {}", k.relay_text(), k.group_text()),
            ]);
        }
        for f in &self.failovers {
            t.add_row([
                format!("failover of {}", f.node),
                format!(
                    "led {} partition(s); new leaders in {}; back {}",
                    f.led_before,
                    f.election_text(),
                    if f.back_at.is_some() { "yes" } else { "NO" }
                ),
            ]);
            t.add_row([
                format!("orders in flight while {} was down", f.node),
                match f.in_flight_p99_ms {
                    Some(p99) => format!("{}, p99 {:.0} ms", f.in_flight, p99),
                    None => "none".into(),
                },
            ]);
        }
        t.add_row([
            "VERDICT".to_string(),
            if self.held {
                "HYPOTHESIS HELD".into()
            } else {
                format!("FAILED: {}", self.why.join("; "))
            },
        ]);
        t.to_string()
    }
}
