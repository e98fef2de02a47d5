//! The consumer's retry decision as a small typed policy: after a failed try, retry (after a
//! backoff), wait for the database (without using up a try), or dead-letter (with why).

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
    /// First retry delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// First wait for an unreachable database; doubles per round.
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

/// `base` doubled per step after the first, capped at `max`.
pub fn exponential(base: Duration, max: Duration, step: u32) -> Duration {
    let factor = 2u32.saturating_pow(step.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
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

    /// The delay before the try after try number `attempt`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        exponential(self.base_backoff, self.max_backoff, attempt)
    }

    /// The wait of database-outage round `round` (1-based).
    pub fn outage_wait(&self, round: u32) -> Duration {
        exponential(self.outage_base, self.outage_max, round)
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

    #[test]
    fn transient_failures_back_off_then_dead_letter_after_the_last_attempt() {
        let p = policy(3);
        assert_eq!(
            p.next(FailureKind::Transient, 1),
            Next::Retry {
                after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            p.next(FailureKind::Transient, 2),
            Next::Retry {
                after: Duration::from_millis(200)
            }
        );
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
    fn an_outage_waits_longer_each_round_and_never_dead_letters() {
        let p = policy(1);
        // Whatever the attempt, even past the last one: an outage is not the message's fault.
        for attempt in [1, 5, 100] {
            assert_eq!(p.next(FailureKind::Outage, attempt), Next::AwaitDatabase);
        }
        let waits: Vec<Duration> = [1, 2, 3, 10, 1000]
            .into_iter()
            .map(|round| p.outage_wait(round))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(200), ms(400), ms(800), ms(5000), ms(5000)]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(exponential(base, max, 0), base);
        assert_eq!(exponential(base, max, 1), base);
        assert_eq!(exponential(base, max, 4), Duration::from_millis(800));
        assert_eq!(exponential(base, max, 5), max);
        assert_eq!(exponential(base, max, u32::MAX), max);
    }
}
