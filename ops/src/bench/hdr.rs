//! `bench --hdr-log`: the run's latency histograms in the HdrHistogram interval log format.

use std::io;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// The latency histograms of a run, in microseconds (1 µs to an hour, three significant digits),
/// each of the measured window's orders.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Request due (or sent) → HTTP 201.
    pub accept: Histogram<u64>,
    /// HTTP 201 → the outcome event seen here.
    pub saga: Histogram<u64>,
    /// `order.created` → the outcome, by the envelopes' clocks.
    pub decided: Histogram<u64>,
    /// CONFIRMED seen → DELIVERED seen.
    pub delivery: Histogram<u64>,
    /// When the measured window started (wall clock).
    pub window_start: SystemTime,
    /// From the window's start to the end of the run (the last outcomes followed included).
    pub span: Duration,
}

impl Histograms {
    /// The histograms with the tag each has in the log, in the report's order.
    pub fn tagged(&self) -> [(&'static str, &Histogram<u64>); 4] {
        [
            ("accept", &self.accept),
            ("saga", &self.saga),
            ("decided", &self.decided),
            ("delivery", &self.delivery),
        ]
    }
}

/// Writes `h` to `out` as an HdrHistogram interval log: one interval per non-empty histogram,
/// tagged `accept`, `saga`, `decided` or `delivery`, each spanning the whole run (StartTime and
/// BaseTime are the window's start, so every interval starts at 0). Values are microseconds;
/// the MaxValueDivisor of 1000 makes the max column read in milliseconds. Histograms are V2
/// compressed (deflate), as the Java tools (HistogramLogProcessor and friends) read them.
pub fn write_log(out: &mut impl io::Write, h: &Histograms) -> anyhow::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment("omsctl bench latency histograms; values in microseconds")
        .add_comment("tags: accept (due -> HTTP 201), saga (HTTP 201 -> outcome seen), decided (order.created -> outcome, services' clocks), delivery (CONFIRMED -> DELIVERED seen)")
        .with_start_time(h.window_start)
        .with_base_time(h.window_start)
        .with_max_value_divisor(1000.0);
    let mut log = builder.begin_log_with(out, &mut serializer)?;
    for (tag, histogram) in h.tagged() {
        if histogram.is_empty() {
            continue;
        }
        log.write_histogram(histogram, Duration::ZERO, h.span, Tag::new(tag))
            .map_err(|e| anyhow::anyhow!("writing the {tag} histogram: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::report::{histogram, record};
    use super::*;
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    fn filled(ms: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = histogram();
        for ms in ms {
            record(&mut h, Duration::from_millis(ms));
        }
        h
    }

    #[test]
    fn the_log_reads_back_as_the_same_histograms() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = Histograms {
            accept: filled((1..=200).map(|i| i % 7 + 1)),
            saga: filled(1..=1000),
            decided: filled([3, 5, 8, 13]),
            // With `--until confirmed`: nothing delivered, no entry.
            delivery: histogram(),
            window_start: start,
            span: Duration::from_millis(31_500),
        };
        let mut out = Vec::new();
        write_log(&mut out, &h).expect("written");
        let text = String::from_utf8(out.clone()).expect("text");
        assert!(text.contains("#[MaxValueDivisor: 1000.000]"), "{text}");

        let mut starts = Vec::new();
        let mut read = Vec::new();
        for entry in IntervalLogIterator::new(&out) {
            match entry.expect("parses") {
                LogEntry::StartTime(t) | LogEntry::BaseTime(t) => starts.push(t),
                LogEntry::Interval(i) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(i.encoded_histogram())
                        .expect("base64");
                    let back: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut bytes.as_slice())
                        .expect("a histogram");
                    assert_eq!(i.start_timestamp(), Duration::ZERO);
                    assert_eq!(i.duration(), Duration::from_millis(31_500));
                    // The max column is in ms (divided by 1000).
                    let max_ms = back.max() as f64 / 1000.0;
                    assert!((i.max() - max_ms).abs() < 0.01, "{} vs {max_ms}", i.max());
                    read.push((i.tag().map(|t| t.as_str().to_owned()), back));
                }
            }
        }
        assert_eq!(starts, vec![Duration::from_secs(1_800_000_000); 2]);
        let tags: Vec<_> = read.iter().map(|(t, _)| t.as_deref()).collect();
        assert_eq!(tags, [Some("accept"), Some("saga"), Some("decided")]);
        for ((_, back), (_, original)) in read.iter().zip(h.tagged()) {
            assert_eq!(back.len(), original.len());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(
                    back.value_at_quantile(q),
                    original.value_at_quantile(q),
                    "{q}"
                );
            }
            assert_eq!(back, original);
        }
        // And the values are the samples, in µs.
        let saga = &read[1].1;
        assert_eq!(saga.len(), 1000);
        let p50 = saga.value_at_quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() <= 500.0, "{p50}");
        assert!(saga.max() >= 1_000_000 && saga.max() <= 1_001_000);
    }
}
