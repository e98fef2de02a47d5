//! The report of a bench run: latency percentiles, outcomes, CPU per component, and its table.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::render::table;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    /// The distribution as (percentile, ms) points, for `--plot` and `--plot-baseline`: those of
    /// `CURVE` that the sample count resolves (older reports have none).
    #[serde(default)]
    pub curve: Vec<(f64, f64)>,
}

/// The percentiles a latency's curve is taken at: dense where "1 - p" gets small, as a
/// percentile plot on a log scale of 1 - p needs (each decade 1, 0.5, 0.3, 0.2 times 10^-k).
pub(super) const CURVE: [f64; 22] = [
    0.0, 25.0, 50.0, 70.0, 80.0, 90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.8, 99.9, 99.95,
    99.97, 99.98, 99.99, 99.995, 99.997, 99.998, 99.999,
];

/// Where percentile `p` (0 to 100, below 100) sits on a log scale of 1 - p: 0 at 0 %, 1 at
/// 90 %, 2 at 99 %, 3 at 99.9 %.
pub(super) fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).max(1e-12).log10()
}

/// Orders of the measured window per second of it, by when each event was seen here. Seconds
/// past the window's end are the outcomes (and deliveries) of its last orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    /// Orders accepted (HTTP 201 received) in this second.
    pub accepted: u64,
    /// Orders whose outcome (CONFIRMED or CANCELLED) was seen in this second.
    pub finished: u64,
    /// Orders seen DELIVERED in this second.
    pub delivered: u64,
}

pub(super) fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to an hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

pub(super) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

pub(super) fn latency(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Some(Latency {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
        // Only the percentiles with more than one sample above them: past that the curve is the
        // max, which the plot puts where the samples end (1 - p = 1 / count).
        curve: CURVE
            .iter()
            .filter(|p| nines(**p) + 1e-9 < (h.len() as f64).log10())
            .map(|p| (*p, ms(h.value_at_quantile(p / 100.0))))
            .collect(),
    })
}

/// CPU of one component over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuFigure {
    pub component: String,
    pub seconds: f64,
    /// Seconds of CPU per second of the window (1.0 = one core).
    pub cores: f64,
    pub ms_per_order: Option<f64>,
}

/// The whole report (`-o json` prints it as is).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `open` or `closed` loop.
    pub mode: String,
    /// Orders per second offered (open loop).
    pub offered_rate: Option<f64>,
    /// Customers in flight (closed loop).
    pub concurrency: Option<usize>,
    /// Seconds of load before the measured window.
    pub warmup_seconds: f64,
    /// Seconds measured.
    pub duration_seconds: f64,
    /// Orders accepted in the window.
    pub accepted: u64,
    /// Accepted per second.
    pub achieved_rate: f64,
    /// Orders that reached an outcome.
    pub finished: u64,
    /// Finished per second.
    pub finished_rate: f64,
    /// Outcomes that were CONFIRMED.
    pub confirmed: u64,
    /// Outcomes that were CANCELLED, by reason.
    pub cancelled: BTreeMap<String, u64>,
    /// Accepted orders without an outcome by the end.
    pub unfinished: u64,
    /// Requests refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Open-loop sends skipped (too many in flight).
    pub skipped: u64,
    /// Confirmed orders seen DELIVERED (followed with `--until delivered`).
    pub delivered: u64,
    /// Confirmed orders cancelled afterwards (a carrier refusal), by reason.
    pub cancelled_after_confirmation: BTreeMap<String, u64>,
    /// Confirmed orders neither delivered nor cancelled by the end (`--until delivered`).
    pub undelivered: u64,
    /// Request due (or sent) → HTTP 201.
    pub accept_ms: Option<Latency>,
    /// HTTP 201 → the outcome event seen here.
    pub saga_ms: Option<Latency>,
    /// `order.created` → the outcome, by the envelopes' clocks.
    pub decided_ms: Option<Latency>,
    /// CONFIRMED seen → DELIVERED seen.
    pub delivered_ms: Option<Latency>,
    /// Saga latency buckets: (upper bound in ms, count).
    pub saga_histogram: Vec<(f64, u64)>,
    /// CPU of each component of the local stack over the window.
    pub cpu: Vec<CpuFigure>,
    /// Their sum, in cores.
    pub cpu_total_cores: Option<f64>,
    /// Their sum, in ms of CPU per accepted order.
    pub cpu_ms_per_order: Option<f64>,
    /// Orders accepted, finished and delivered in each second from the window's start (for
    /// `--plot`; older reports have none).
    #[serde(default)]
    pub per_second: Vec<Second>,
}

/// The saga latency distribution as (upper bound in ms, orders) over ten bars, oha-style.
pub(super) fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min(), h.max().max(h.min() + 1));
    let step = (hi - lo).div_ceil(10).max(1);
    let mut out = Vec::new();
    let mut from = lo;
    for _ in 0..10 {
        let to = from + step;
        let n = h.count_between(from, to.saturating_sub(1));
        out.push((to as f64 / 1000.0, n));
        from = to;
        if from > hi {
            break;
        }
    }
    out
}

pub(super) fn fmt_latency(l: &Option<Latency>) -> [String; 6] {
    match l {
        Some(l) => [l.p50, l.p90, l.p99, l.p999, l.max, l.mean].map(|v| format!("{v:.1}")),
        None => std::array::from_fn(|_| "-".to_owned()),
    }
}

impl Report {
    /// The report as tables, for a terminal.
    pub fn table(&self) -> String {
        render(self)
    }
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut summary = table(&["SUMMARY", ""]);
    let mode = match (r.offered_rate, r.concurrency) {
        (Some(rate), _) => format!("open loop, {rate:.1} orders/s offered"),
        (_, Some(c)) => format!("closed loop, {c} customers"),
        _ => "-".into(),
    };
    summary.add_row(["mode".to_owned(), mode]);
    summary.add_row([
        "measured".to_owned(),
        format!(
            "{:.0}s after a {:.0}s warm-up",
            r.duration_seconds, r.warmup_seconds
        ),
    ]);
    summary.add_row([
        "accepted".to_owned(),
        format!("{} ({:.1}/s)", r.accepted, r.achieved_rate),
    ]);
    summary.add_row([
        "finished".to_owned(),
        format!("{} ({:.1}/s)", r.finished, r.finished_rate),
    ]);
    summary.add_row(["confirmed".to_owned(), r.confirmed.to_string()]);
    for (reason, n) in &r.cancelled {
        summary.add_row([format!("cancelled {reason}"), n.to_string()]);
    }
    summary.add_row(["unfinished".to_owned(), r.unfinished.to_string()]);
    if r.delivered > 0 || r.undelivered > 0 {
        summary.add_row(["delivered".to_owned(), r.delivered.to_string()]);
        for (reason, n) in &r.cancelled_after_confirmation {
            summary.add_row([
                format!("cancelled after confirmation {reason}"),
                n.to_string(),
            ]);
        }
        summary.add_row(["undelivered".to_owned(), r.undelivered.to_string()]);
    }
    for (reason, n) in &r.refused {
        summary.add_row([format!("refused: {reason}"), n.to_string()]);
    }
    if r.skipped > 0 {
        summary.add_row([
            "skipped (generator at --max-in-flight)".to_owned(),
            r.skipped.to_string(),
        ]);
    }
    out.push_str(&summary.to_string());
    out.push('\n');

    let mut lat = table(&["LATENCY (ms)", "p50", "p90", "p99", "p99.9", "max", "mean"]);
    for (name, l) in [
        ("accept (POST /orders)", &r.accept_ms),
        ("saga (accepted → outcome seen)", &r.saga_ms),
        ("decided (created → outcome event)", &r.decided_ms),
        ("delivery (CONFIRMED → DELIVERED seen)", &r.delivered_ms),
    ] {
        let [a, b, c, d, e, f] = fmt_latency(l);
        lat.add_row([name.to_owned(), a, b, c, d, e, f]);
    }
    out.push_str(&lat.to_string());
    out.push('\n');

    if !r.saga_histogram.is_empty() {
        out.push_str("saga latency distribution:\n");
        let most = r.saga_histogram.iter().map(|(_, n)| *n).max().unwrap_or(1);
        for (upper, n) in &r.saga_histogram {
            let width = if most == 0 {
                0
            } else {
                (*n as f64 / most as f64 * 40.0).round() as usize
            };
            out.push_str(&format!(
                "  ≤ {upper:>9.1} ms [{n:>6}] {}\n",
                "■".repeat(width)
            ));
        }
    }

    if r.cpu.is_empty() {
        out.push_str("CPU: not measured (no local process stack in the state directory)");
    } else {
        let mut cpu = table(&["CPU (measured window)", "seconds", "cores", "ms/order"]);
        for c in &r.cpu {
            cpu.add_row([
                c.component.clone(),
                format!("{:.2}", c.seconds),
                format!("{:.3}", c.cores),
                c.ms_per_order
                    .map(|m| format!("{m:.2}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        cpu.add_row([
            "total".to_owned(),
            format!("{:.2}", r.cpu.iter().map(|c| c.seconds).sum::<f64>()),
            r.cpu_total_cores
                .map(|c| format!("{c:.3}"))
                .unwrap_or_default(),
            r.cpu_ms_per_order
                .map(|m| format!("{m:.2}"))
                .unwrap_or_else(|| "-".into()),
        ]);
        out.push_str(&cpu.to_string());
    }
    out
}

/// A report of a closed-loop run with these latencies and counts, the rest empty.
#[cfg(test)]
pub(super) fn sample(
    saga: &Histogram<u64>,
    delivery: &Histogram<u64>,
    per_second: Vec<Second>,
) -> Report {
    let accepted = per_second.iter().map(|s| s.accepted).sum();
    let finished = per_second.iter().map(|s| s.finished).sum();
    Report {
        mode: "closed".into(),
        offered_rate: None,
        concurrency: Some(4),
        warmup_seconds: 1.0,
        duration_seconds: 3.0,
        accepted,
        achieved_rate: accepted as f64 / 3.0,
        finished,
        finished_rate: finished as f64 / 3.0,
        confirmed: finished,
        cancelled: BTreeMap::new(),
        unfinished: 0,
        refused: BTreeMap::new(),
        skipped: 0,
        delivered: delivery.len(),
        cancelled_after_confirmation: BTreeMap::new(),
        undelivered: 0,
        accept_ms: None,
        saga_ms: latency(saga),
        decided_ms: None,
        delivered_ms: latency(delivery),
        saga_histogram: buckets(saga),
        cpu: Vec::new(),
        cpu_total_cores: None,
        cpu_ms_per_order: None,
        per_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_is_the_samples_percentiles_as_far_as_the_count_resolves() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let l = latency(&h).expect("samples");
        let percentiles: Vec<f64> = l.curve.iter().map(|(p, _)| *p).collect();
        // 99.9 % has exactly one sample above it: from there on the curve is the max.
        assert_eq!(
            percentiles,
            [0.0, 25.0, 50.0, 70.0, 80.0, 90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.8]
        );
        for (p, ms) in &l.curve {
            let sample = (p * 10.0).max(1.0);
            assert!((ms - sample).abs() <= sample * 0.002, "p{p}: {ms} ms");
        }
        assert!((nines(99.9) - 3.0).abs() < 1e-9 && nines(0.0) == 0.0);
    }

    #[test]
    fn an_older_report_without_the_new_fields_still_reads() {
        let mut h = histogram();
        record(&mut h, Duration::from_millis(7));
        let r = sample(&h, &histogram(), vec![Second::default(); 3]);
        let mut json = serde_json::to_value(&r).expect("json");
        let fields = json.as_object_mut().expect("an object");
        fields.remove("perSecond");
        if let Some(saga) = fields.get_mut("sagaMs").and_then(|s| s.as_object_mut()) {
            saga.remove("curve");
        }
        let old: Report = serde_json::from_value(json).expect("an older report reads");
        assert!(old.per_second.is_empty());
        assert!(old.saga_ms.as_ref().is_some_and(|l| l.curve.is_empty()));
        assert_eq!(old.saga_ms.map(|l| l.p50), r.saga_ms.map(|l| l.p50));
    }
}
