//! Value parsers shared by the commands' flags.

use std::time::Duration;

/// Parses a rate: `20/s` or `20` (per second), above zero.
pub fn rate(s: &str) -> Result<f64, String> {
    match s.strip_suffix("/s").unwrap_or(s).parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("invalid rate {s:?} (expected e.g. 20/s)")),
    }
}

/// Parses `30s`, `10m`, ...
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}
