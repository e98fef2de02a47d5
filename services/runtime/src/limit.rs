//! Rate limits per client (a token's subject, an address): how they are written in settings
//! (`N/s`, `N/s:B`, `off`) and the keyed limiter behind them. The 429 a request over one gets is
//! `http::too_many`.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests at once after a quiet spell.
    pub burst: u32,
}

/// Parses `N/s` (burst 2N), `N/s:B` (burst B, at least N) or `off`.
pub fn parse_rate_limit(s: &str) -> Result<Option<RateLimit>, String> {
    if s == "off" {
        return Ok(None);
    }
    let bad = || {
        format!(
            "invalid rate limit {s:?} (expected N/s or N/s:BURST with whole numbers above 0, the burst at least N, or off)"
        )
    };
    let (rate, burst) = match s.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (s, None),
    };
    let per_second = match rate.strip_suffix("/s").unwrap_or(rate).parse::<u32>() {
        Ok(n) if n > 0 => n,
        _ => return Err(bad()),
    };
    let burst = match burst.map(str::parse::<u32>) {
        None => per_second.saturating_mul(2),
        Some(Ok(b)) if b >= per_second => b,
        Some(_) => return Err(bad()),
    };
    Ok(Some(RateLimit { per_second, burst }))
}

/// Requests per client `K`, each client with its own bucket.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: governor::DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Limiter<K> {
    /// A limiter of `limit` per client.
    pub fn new(limit: RateLimit) -> Option<Self> {
        let per_second = NonZeroU32::new(limit.per_second)?;
        let burst = NonZeroU32::new(limit.burst.max(1))?;
        Some(Self {
            inner: governor::RateLimiter::hashmap(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
        })
    }

    /// Counts one request of `client`: `Err` with the wait until it would pass when it is over.
    pub fn check(&self, client: &K) -> Result<(), Duration> {
        self.inner.check_key(client).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Forgets, every minute until `shutdown`, the clients quiet long enough to be back at a
    /// full burst (the map would otherwise grow with every address ever seen).
    pub async fn upkeep(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), String> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    self.inner.retain_recent();
                    self.inner.shrink_to_fit();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_and_bad_ones_are_refused() {
        let limit = |per_second, burst| Ok(Some(RateLimit { per_second, burst }));
        assert_eq!(parse_rate_limit("20/s"), limit(20, 40));
        assert_eq!(parse_rate_limit("20"), limit(20, 40));
        assert_eq!(parse_rate_limit("2/s:10"), limit(2, 10));
        assert_eq!(parse_rate_limit("off"), Ok(None));
        for bad in [
            "0/s", "-1/s", "fast", "", "/s", "2/s:1", "2/s:", "2/s:x", "off:3",
        ] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_counted() {
        let Some(l) = Limiter::new(RateLimit {
            per_second: 1,
            burst: 3,
        }) else {
            panic!("limiter")
        };
        for _ in 0..3 {
            assert!(l.check(&"alice").is_ok());
        }
        let wait = l.check(&"alice").err();
        assert!(
            wait.is_some_and(|w| w <= Duration::from_secs(1)),
            "{wait:?}"
        );
        assert!(l.check(&"bob").is_ok());
    }
}
