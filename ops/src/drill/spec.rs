//! The drill file format (`scripts/drills/*.toml`), as written: strings where the file has
//! strings. [`super::plan`] turns a file into a checked plan.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::Failure;

/// A drill file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// What must hold.
    pub hypothesis: String,
    /// Probes before and after: `services-ready`, `no-faults`, `dlq-empty`, `outbox-backlog<N>`.
    #[serde(default)]
    pub steady_state: Vec<Spanned<String>>,
    /// Steps before the load (same syntax as method actions).
    #[serde(default)]
    pub setup: Vec<Spanned<String>>,
    /// The load.
    pub load: LoadSpec,
    /// Faults and steps at given times.
    #[serde(default)]
    pub method: Vec<StepSpec>,
    /// Always run at the end.
    #[serde(default)]
    pub rollback: Vec<Spanned<String>>,
    /// What is checked.
    pub verify: VerifySpec,
    /// Overrides for the short form.
    #[serde(default)]
    pub short: Option<ShortSpec>,
}

/// The load of a drill.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Orders per second.
    #[serde(default)]
    pub rate: f64,
    /// For how long.
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    /// Instead of a rate: this many orders at once.
    #[serde(default)]
    pub burst: u32,
    /// Lines to choose from, `PRODUCT[:QTY]`; each order takes one at random.
    pub items: Vec<Spanned<String>>,
    /// Payment tokens to choose from (default tok_visa).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Requests in flight at most.
    #[serde(default = "eight")]
    pub concurrency: usize,
    /// Share of accepted orders their customer then cancels (0 to 1), each at a random moment
    /// within `cancel_within` of its acceptance.
    #[serde(default)]
    pub cancel_share: f64,
    /// How long after acceptance a cancellation may come (default 2s).
    #[serde(default)]
    pub cancel_within: Option<Spanned<String>>,
}

fn eight() -> usize {
    8
}

/// One step of the method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// When, from the start of the load.
    pub at: Spanned<String>,
    /// What: `chaos …`, `dlq …` (omsctl commands), `stock PRODUCT N` or `wait-ready`.
    pub action: Spanned<String>,
}

/// The verification of a drill.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Every accepted order must be finished this long after the load and method are done.
    pub deadline: Spanned<String>,
    /// At most this many lost orders (0 unless the drill says otherwise).
    #[serde(default)]
    pub max_lost: u64,
    /// Exactly this many confirmed, when given.
    #[serde(default)]
    pub confirmed: Option<u64>,
    /// At most this many new dead letters, when given.
    #[serde(default)]
    pub max_dlq: Option<i64>,
    /// At least this many new dead letters, when given (drills that poison on purpose).
    #[serde(default)]
    pub min_dlq: Option<i64>,
    /// At most this many orders refused at the door (HTTP errors), when given.
    #[serde(default)]
    pub max_refused: Option<u64>,
    /// At most this many cancelled orders per cancel reason (`{ TIMEOUT = 0 }`), when given.
    #[serde(default)]
    pub max_cancelled: std::collections::BTreeMap<String, u64>,
    /// Every order must reach the end of its life (DELIVERED or CANCELLED) by the deadline,
    /// not only its placement's outcome.
    #[serde(default)]
    pub settled: bool,
}

/// Short-form overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortSpec {
    /// Orders per second.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Load duration.
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    /// Burst size.
    #[serde(default)]
    pub burst: Option<u32>,
    /// A replacement method.
    #[serde(default)]
    pub method: Option<Vec<StepSpec>>,
    /// A replacement deadline.
    #[serde(default)]
    pub deadline: Option<Spanned<String>>,
    /// Replacement expectation of confirmed orders.
    #[serde(default)]
    pub confirmed: Option<u64>,
    /// Replacement minimum of new dead letters.
    #[serde(default)]
    pub min_dlq: Option<i64>,
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads a drill file; a syntax error or an unknown field names its line.
pub fn read(path: &Path, text: &str) -> Result<Drill, Failure> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" line {}:", line_of(text, s.start)))
            .unwrap_or_default();
        Failure::usage(format!(
            "drill file {}:{at} {}",
            path.display(),
            e.message()
        ))
    })
}
