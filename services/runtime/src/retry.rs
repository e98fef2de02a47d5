//! The consumer's retry decision as a small typed policy: after a failed try, retry (after a
//! backoff), wait for the database (without using up a try), or dead-letter (with why).
//!
//! Backoffs are capped exponential with equal jitter: step `n`'s ceiling is the first delay
//! doubled `n - 1` times and capped, and the delay is drawn uniformly from the upper half of
//! that ceiling. Workers and services that fail together (a database outage, a broker hiccup)
//! then retry spread out instead of in lockstep, and no delay is ever longer than it was
//! without jitter, nor shorter than half of it. The schedule is a function of the step, not a
//! stateful iterator (as retry crates such as `backon` build), because the consumer asks for
//! the delay of a given attempt: a message whose first try failed inside a batch resumes at
//! its second, and outage rounds count apart from attempts.

use std::time::Duration;

/// How a try failed, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler refused the message: retrying cannot help.
    Rejected,
    /// Something that may not happen again.
    Transient,
    /// The database is unreachable: not the message's fault.
    Outage,
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after `after`; the failed try counted.
    Retry {
        /// Backoff before the next try.
        after: Duration,
    },
    /// Wait for the database (rounds of [`RetryPolicy::outage_wait`]), then try again; the
    /// failed try did not count.
    AwaitDatabase,
    /// Give up: dead-letter the message with this error class.
    DeadLetter {
        /// `handler.rejected` or `handler.exhausted`.
        class: &'static str,
    },
}

/// Attempts and backoffs of one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per message before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Ceiling of the first retry delay; doubles per attempt (the delay is jittered down to
    /// half of it at most).
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Ceiling of the first wait for an unreachable database; doubles per round (jittered like
    /// the retry delay).
    pub outage_base: Duration,
    /// Longest wait for an unreachable database.
    pub outage_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            outage_base: Duration::from_millis(200),
            outage_max: Duration::from_secs(5),
        }
    }
}

/// `base` doubled per step after the first, capped at `max`: the ceiling of step `step`'s
/// delay.
pub fn exponential(base: Duration, max: Duration, step: u32) -> Duration {
    let factor = 2u32.saturating_pow(step.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

/// Equal jitter: a delay drawn uniformly from `[ceiling / 2, ceiling]` (to the nanosecond), from
/// a thread-local generator seeded at random.
pub fn equal_jitter(ceiling: Duration) -> Duration {
    let half = ceiling / 2;
    let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(..=spread))
}

impl RetryPolicy {
    /// The decision after try number `attempt` (1-based, counting only tries that counted)
    /// failed with `kind`.
    pub fn next(&self, kind: FailureKind, attempt: u32) -> Next {
        match kind {
            FailureKind::Rejected => Next::DeadLetter {
                class: "handler.rejected",
            },
            FailureKind::Outage => Next::AwaitDatabase,
            FailureKind::Transient if attempt >= self.max_attempts.max(1) => Next::DeadLetter {
                class: "handler.exhausted",
            },
            FailureKind::Transient => Next::Retry {
                after: self.backoff(attempt),
            },
        }
    }

    /// The delay before the try after try number `attempt`: jittered in the upper half of
    /// `base_backoff` doubled per attempt, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        equal_jitter(exponential(self.base_backoff, self.max_backoff, attempt))
    }

    /// The wait of database-outage round `round` (1-based): jittered in the upper half of
    /// `outage_base` doubled per round, capped at `outage_max`.
    pub fn outage_wait(&self, round: u32) -> Duration {
        equal_jitter(exponential(self.outage_base, self.outage_max, round))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            outage_base: Duration::from_millis(200),
            outage_max: Duration::from_secs(5),
        }
    }

    /// How many draws each statistical test takes.
    const SAMPLES: usize = 10_000;

    /// Whether `d` lies in the upper half of `ceiling`, ends included.
    fn in_upper_half(d: Duration, ceiling: Duration) -> bool {
        d >= ceiling / 2 && d <= ceiling
    }

    #[test]
    fn transient_failures_back_off_then_dead_letter_after_the_last_attempt() {
        let p = policy(3);
        let ms = Duration::from_millis;
        for (attempt, ceiling) in [(1, ms(100)), (2, ms(200))] {
            for _ in 0..SAMPLES {
                match p.next(FailureKind::Transient, attempt) {
                    Next::Retry { after } => assert!(
                        in_upper_half(after, ceiling),
                        "attempt {attempt}: {after:?} outside [{:?}, {ceiling:?}]",
                        ceiling / 2
                    ),
                    other => panic!("attempt {attempt}: {other:?}"),
                }
            }
        }
        assert_eq!(
            p.next(FailureKind::Transient, 3),
            Next::DeadLetter {
                class: "handler.exhausted"
            }
        );
        // One attempt allowed (or a nonsensical zero): the first failure is the last.
        for max in [0, 1] {
            assert!(matches!(
                policy(max).next(FailureKind::Transient, 1),
                Next::DeadLetter { .. }
            ));
        }
    }

    #[test]
    fn a_rejection_is_dead_lettered_at_once_whatever_attempts_are_left() {
        assert_eq!(
            policy(10).next(FailureKind::Rejected, 1),
            Next::DeadLetter {
                class: "handler.rejected"
            }
        );
    }

    #[test]
    fn an_outage_waits_in_rounds_that_double_to_a_cap_and_never_dead_letters() {
        let p = policy(1);
        // Whatever the attempt, even past the last one: an outage is not the message's fault.
        for attempt in [1, 5, 100] {
            assert_eq!(p.next(FailureKind::Outage, attempt), Next::AwaitDatabase);
        }
        let ms = Duration::from_millis;
        for (round, ceiling) in [
            (1, ms(200)),
            (2, ms(400)),
            (3, ms(800)),
            (10, ms(5000)),
            (1000, ms(5000)),
        ] {
            let waits: Vec<Duration> = (0..SAMPLES).map(|_| p.outage_wait(round)).collect();
            assert!(
                waits.iter().all(|w| in_upper_half(*w, ceiling)),
                "round {round}"
            );
            assert!(spread(&waits) > ceiling / 4, "round {round}: not jittered");
        }
    }

    #[test]
    fn every_delay_stays_within_its_steps_bounds_and_never_past_the_cap() {
        let p = RetryPolicy::default();
        for attempt in 0..=30 {
            let ceiling = exponential(p.base_backoff, p.max_backoff, attempt);
            let delays: Vec<Duration> = (0..SAMPLES / 10).map(|_| p.backoff(attempt)).collect();
            for d in &delays {
                assert!(in_upper_half(*d, ceiling), "attempt {attempt}: {d:?}");
                assert!(*d <= p.max_backoff && *d >= p.base_backoff / 2);
            }
            assert!(
                spread(&delays) > ceiling / 4,
                "attempt {attempt}: not jittered"
            );
        }
    }

    #[test]
    fn jitter_spreads_the_delays_over_the_upper_half() {
        let ceiling = Duration::from_millis(800);
        let draws: Vec<Duration> = (0..SAMPLES).map(|_| equal_jitter(ceiling)).collect();
        assert!(draws.iter().all(|d| in_upper_half(*d, ceiling)));
        // Uniform over [400, 800] ms: a quarter of the draws in each 100 ms band, a mean of
        // 600 ms (its standard error is about 1.2 ms at this many draws).
        for band in 0..4u32 {
            let (lo, hi) = (millis(400 + 100 * band), millis(500 + 100 * band));
            let n = draws.iter().filter(|d| **d >= lo && **d < hi).count();
            assert!(
                n > SAMPLES / 5 && n < SAMPLES * 3 / 10,
                "{n} of {SAMPLES} draws in [{lo:?}, {hi:?})"
            );
        }
        let mean = draws.iter().sum::<Duration>() / SAMPLES as u32;
        assert!(
            mean > millis(585) && mean < millis(615),
            "mean {mean:?}, expected about 600 ms"
        );
        let distinct: std::collections::HashSet<&Duration> = draws.iter().collect();
        assert!(
            distinct.len() > SAMPLES * 9 / 10,
            "{} distinct",
            distinct.len()
        );
    }

    #[test]
    fn jitter_handles_the_extremes() {
        assert_eq!(equal_jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(equal_jitter(Duration::from_nanos(1)) <= Duration::from_nanos(1));
            let d = equal_jitter(Duration::MAX);
            assert!(in_upper_half(d, Duration::MAX));
        }
    }

    /// The longest of `draws` less the shortest.
    fn spread(draws: &[Duration]) -> Duration {
        let (min, max) = (draws.iter().min(), draws.iter().max());
        max.zip(min)
            .map(|(max, min)| *max - *min)
            .unwrap_or_default()
    }

    fn millis(ms: u32) -> Duration {
        Duration::from_millis(ms.into())
    }

    #[test]
    fn the_ceiling_doubles_and_is_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(exponential(base, max, 0), base);
        assert_eq!(exponential(base, max, 1), base);
        assert_eq!(exponential(base, max, 4), Duration::from_millis(800));
        assert_eq!(exponential(base, max, 5), max);
        assert_eq!(exponential(base, max, u32::MAX), max);
    }
}
