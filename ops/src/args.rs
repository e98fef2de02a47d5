//! Value parsers shared by the commands' flags.

use std::time::Duration;

/// Parses a rate: `20/s` or `20` (per second), above zero.
pub fn rate(s: &str) -> Result<f64, String> {
    match s.strip_suffix("/s").unwrap_or(s).parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("invalid rate {s:?} (expected e.g. 20/s)")),
    }
}

/// A point in the past as the span back to it from now: `@-10m` and `@2026-12-01T10:00:00Z`
/// (the point-in-time syntax of `tail --from`), or a bare `10m` ("within the last ten
/// minutes"). A time in the future is refused.
pub fn since(s: &str) -> Result<Duration, String> {
    let bad = |why: String| {
        format!("invalid --since {s:?}: {why} (expected @-DURATION such as @-10m, @TIMESTAMP in RFC 3339, or DURATION)")
    };
    match s.strip_prefix('@') {
        None => duration(s).map_err(bad),
        Some(rest) => match rest.strip_prefix('-') {
            Some(span) => duration(span).map_err(bad),
            None => {
                let at =
                    chrono::DateTime::parse_from_rfc3339(rest).map_err(|e| bad(e.to_string()))?;
                let back = chrono::Utc::now().signed_duration_since(at);
                back.to_std()
                    .map_err(|_| bad("that time is in the future".to_owned()))
            }
        },
    }
}

/// Parses `30s`, `10m`, ...
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_the_point_in_time_syntax_and_a_span() {
        assert_eq!(since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(since("@-10m"), Ok(Duration::from_secs(600)));
        let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let back = since(&format!("@{an_hour_ago}")).expect("a time");
        assert!(
            back >= Duration::from_secs(3600) && back < Duration::from_secs(3660),
            "{back:?}"
        );
        let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        assert!(since(&format!("@{tomorrow}")).is_err_and(|e| e.contains("future")));
        for bad in ["@", "@-", "soon", "@yesterday"] {
            assert!(since(bad).is_err_and(|e| e.contains("--since")), "{bad}");
        }
    }
}
