//! The verdict of a drill: a pure function of what the plan demanded and what was observed.

use std::time::Duration;

use super::plan::Expectations;

/// What a drill run observed, as far as the verdict is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Accepted orders not finished by the deadline.
    pub lost: u64,
    /// Confirmed orders.
    pub confirmed: u64,
    /// Orders refused at the door.
    pub refused: u64,
    /// Cancelled orders by cancel reason.
    pub cancelled: std::collections::BTreeMap<String, u64>,
    /// Dead letters written during the drill.
    pub dlq_new: i64,
    /// Failed invariant checks of `verify`, one line each (title: first failures).
    pub failed_checks: Vec<String>,
    /// Steady-state probes that did not come back, one line each.
    pub steady_state_not_back: Vec<String>,
    /// Method steps that failed.
    pub step_errors: Vec<String>,
    /// Killed replicas whose service did not take over within the watch, one line each.
    pub no_takeover: Vec<String>,
}

/// Why the hypothesis did not hold: one reason per broken demand, none when it held.
pub fn reasons(expect: &Expectations, o: &Observed) -> Vec<String> {
    let mut why = Vec::new();
    if o.lost > expect.max_lost {
        why.push(format!(
            "{} order(s) lost (not {} {} after the load)",
            o.lost,
            if expect.settled {
                "delivered or cancelled"
            } else {
                "finished"
            },
            humantime::format_duration(round_secs(expect.deadline))
        ));
    }
    if !o.failed_checks.is_empty() {
        why.push(format!(
            "invariants failed: {}",
            o.failed_checks.join(" | ")
        ));
    }
    if !o.steady_state_not_back.is_empty() {
        why.push(format!(
            "steady state not back: {}",
            o.steady_state_not_back.join("; ")
        ));
    }
    if let Some(n) = expect.confirmed {
        if o.confirmed != n {
            why.push(format!("{} confirmed, expected exactly {n}", o.confirmed));
        }
    }
    if let Some(max) = expect.max_dlq {
        if o.dlq_new > max {
            why.push(format!(
                "{} new dead letters, at most {max} expected",
                o.dlq_new
            ));
        }
    }
    if let Some(min) = expect.min_dlq {
        if o.dlq_new < min {
            why.push(format!(
                "{} new dead letters, at least {min} expected",
                o.dlq_new
            ));
        }
    }
    if let Some(max) = expect.max_refused {
        if o.refused > max {
            why.push(format!(
                "{} order(s) refused at the door, at most {max} expected",
                o.refused
            ));
        }
    }
    for (reason, max) in &expect.max_cancelled {
        let n = o.cancelled.get(reason).copied().unwrap_or(0);
        if n > *max {
            why.push(format!(
                "{n} order(s) cancelled {reason}, at most {max} expected"
            ));
        }
    }
    if !o.step_errors.is_empty() {
        why.push(format!("method steps failed: {}", o.step_errors.join("; ")));
    }
    if !o.no_takeover.is_empty() {
        why.push(format!("no takeover: {}", o.no_takeover.join("; ")));
    }
    why
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect() -> Expectations {
        Expectations {
            deadline: Duration::from_secs(60),
            ..Expectations::default()
        }
    }

    fn held(e: &Expectations, o: &Observed) -> bool {
        reasons(e, o).is_empty()
    }

    #[test]
    fn cancellations_over_their_reasons_limit_break_it() {
        let e = Expectations {
            max_cancelled: [("TIMEOUT".to_owned(), 0)].into(),
            ..expect()
        };
        let declined = Observed {
            cancelled: [("PAYMENT_DECLINED".to_owned(), 4)].into(),
            ..Observed::default()
        };
        assert!(held(&e, &declined));
        let timed_out = Observed {
            cancelled: [("TIMEOUT".to_owned(), 1)].into(),
            ..Observed::default()
        };
        let why = reasons(&e, &timed_out);
        assert_eq!(
            why,
            vec!["1 order(s) cancelled TIMEOUT, at most 0 expected".to_owned()]
        );
    }

    #[test]
    fn a_clean_run_holds() {
        assert!(held(&expect(), &Observed::default()));
    }

    #[test]
    fn a_replica_nobody_took_over_from_breaks_it() {
        let o = Observed {
            no_takeover: vec!["order-1: relay NO LEADER, group 1.00s".into()],
            ..Observed::default()
        };
        let why = reasons(&expect(), &o);
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("no takeover: order-1"));
    }

    #[test]
    fn lost_orders_break_it_beyond_the_allowance() {
        let o = Observed {
            lost: 2,
            ..Observed::default()
        };
        let why = reasons(&expect(), &o);
        assert_eq!(why.len(), 1);
        assert!(
            why[0].starts_with("2 order(s) lost") && why[0].contains("1m"),
            "{why:?}"
        );
        let lenient = Expectations {
            max_lost: 2,
            ..expect()
        };
        assert!(held(&lenient, &o));
    }

    #[test]
    fn failed_invariants_and_steady_state_break_it() {
        let o = Observed {
            failed_checks: vec!["stock is conserved: a".into()],
            ..Observed::default()
        };
        assert!(reasons(&expect(), &o)[0].contains("stock is conserved"));
        let o = Observed {
            steady_state_not_back: vec!["services-ready: saga not ready".into()],
            ..Observed::default()
        };
        assert!(reasons(&expect(), &o)[0].starts_with("steady state not back"));
    }

    #[test]
    fn confirmed_must_match_exactly_when_demanded() {
        let e = Expectations {
            confirmed: Some(11),
            ..expect()
        };
        let with = |confirmed| Observed {
            confirmed,
            ..Observed::default()
        };
        assert!(held(&e, &with(11)));
        assert!(!held(&e, &with(10)) && !held(&e, &with(12)));
        assert!(held(&expect(), &with(3)), "no demand, no check");
    }

    #[test]
    fn dead_letters_are_bounded_both_ways() {
        let e = Expectations {
            max_dlq: Some(0),
            ..expect()
        };
        let dlq = |dlq_new| Observed {
            dlq_new,
            ..Observed::default()
        };
        assert!(held(&e, &dlq(0)) && !held(&e, &dlq(1)));
        let e = Expectations {
            min_dlq: Some(3),
            ..expect()
        };
        assert!(!held(&e, &dlq(2)) && held(&e, &dlq(3)));
    }

    #[test]
    fn refusals_and_failed_steps_break_it() {
        let e = Expectations {
            max_refused: Some(0),
            ..expect()
        };
        let o = Observed {
            refused: 1,
            ..Observed::default()
        };
        assert!(reasons(&e, &o)[0].contains("refused at the door"));
        assert!(held(&expect(), &o), "refusals count only when bounded");
        let o = Observed {
            step_errors: vec!["`omsctl chaos db stop` failed".into()],
            ..Observed::default()
        };
        assert!(reasons(&expect(), &o)[0].starts_with("method steps failed"));
    }

    #[test]
    fn every_broken_demand_is_named() {
        let e = Expectations {
            confirmed: Some(5),
            max_dlq: Some(0),
            ..expect()
        };
        let o = Observed {
            lost: 1,
            confirmed: 4,
            dlq_new: 2,
            ..Observed::default()
        };
        assert_eq!(reasons(&e, &o).len(), 3);
    }
}
