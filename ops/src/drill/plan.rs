//! A drill file resolved into what will run: the short or full form picked, every duration
//! parsed, every action parsed by omsctl's own command parser, every probe and item checked.
//! A mistake is refused when the file is read, with its line, never half-way through a drill.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::spec::{line_of, Drill, StepSpec};
use crate::place::{Customer, Lines, Load};
use crate::Failure;

/// A step of a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An omsctl `chaos` or `dlq` command (its words, as parsed).
    Omsctl(Vec<String>),
    /// Set a product's available stock.
    Stock {
        /// Product id.
        product: String,
        /// Units.
        available: i64,
    },
    /// Wait until every service is ready.
    WaitReady,
    /// Check a probe now, during the method (`probe p99<3s`): a failure fails the drill.
    Check(String, Probe),
}

/// Checks an omsctl command line (its words, without `omsctl`) with omsctl's own parser; the
/// error is the parser's first line. omsctl gives its own (`omsctl::check_command`); the
/// library cannot, since the command line is omsctl's.
pub type CommandCheck = fn(&[String]) -> Result<(), String>;

impl Action {
    /// Parses an action; `omsctl` commands go through `check` (the real command-line parser),
    /// and only `chaos` and `dlq` are allowed.
    pub fn parse(text: &str, check: CommandCheck) -> Result<Self, String> {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        match refs.as_slice() {
            [] => Err("empty action".into()),
            ["wait-ready"] => Ok(Action::WaitReady),
            ["probe", p] => Probe::parse(p).map(|k| Action::Check((*p).to_owned(), k)),
            ["probe", ..] => Err(format!("{text:?}: expected `probe NAME` (one probe)")),
            ["stock", product, n] => n
                .parse()
                .map(|available| Action::Stock {
                    product: (*product).to_owned(),
                    available,
                })
                .map_err(|_| format!("stock {product} {n}: {n:?} is not a whole number")),
            ["stock", ..] => Err(format!("{text:?}: expected `stock PRODUCT N`")),
            [first, ..] if !matches!(*first, "chaos" | "dlq") => Err(format!(
                "unknown action {text:?} (expected `chaos …`, `dlq …`, `stock PRODUCT N`, `wait-ready` or `probe NAME`)"
            )),
            _ => check(&words).map(|()| Action::Omsctl(words)),
        }
    }

    /// How it reads in progress lines.
    pub fn describe(&self) -> String {
        match self {
            Action::Omsctl(words) => words.join(" "),
            Action::Stock { product, available } => format!("stock {product} {available}"),
            Action::WaitReady => "wait-ready".into(),
            Action::Check(name, _) => format!("probe {name}"),
        }
    }
}

/// A steady-state probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The p99 from accepted to finished of the orders that finished in the last
    /// [`LATENCY_WINDOW`] is under this (`p99<3s`); at least one must have finished.
    P99Under(Duration),
    /// Every service answers ready.
    Ready,
    /// No chaos fault is recorded.
    NoFaults,
    /// No dead letter anywhere.
    DlqEmpty,
    /// Every service's outbox backlog is below N.
    Backlog(i64),
    /// Every service runs at least N replicas (each answering ready).
    Replicas(usize),
    /// The Kafka cluster has at least N brokers answering.
    Brokers(usize),
}

impl Probe {
    /// Parses `services-ready`, `no-faults`, `dlq-empty`, `outbox-backlog<N>`, `replicas>=N`,
    /// `brokers>=N` or `p99<DURATION`.
    pub fn parse(p: &str) -> Result<Self, String> {
        let unknown = || {
            format!(
                "unknown probe {p:?} (services-ready, no-faults, dlq-empty, outbox-backlog<N>, replicas>=N, brokers>=N, p99<DURATION)"
            )
        };
        if let Some(d) = p.strip_prefix("p99<") {
            return humantime::parse_duration(d)
                .ok()
                .filter(|d| !d.is_zero())
                .map(Probe::P99Under)
                .ok_or_else(unknown);
        }
        match p {
            "services-ready" => Ok(Probe::Ready),
            "no-faults" => Ok(Probe::NoFaults),
            "dlq-empty" => Ok(Probe::DlqEmpty),
            other => {
                if let Some(n) = other.strip_prefix("outbox-backlog<") {
                    return n.parse().map(Probe::Backlog).map_err(|_| unknown());
                }
                if let Some(n) = other.strip_prefix("brokers>=") {
                    return match n.parse::<usize>() {
                        Ok(n) if n >= 1 => Ok(Probe::Brokers(n)),
                        _ => Err(unknown()),
                    };
                }
                match other.strip_prefix("replicas>=").map(str::parse::<usize>) {
                    Some(Ok(n)) if n >= 1 => Ok(Probe::Replicas(n)),
                    _ => Err(unknown()),
                }
            }
        }
    }
}

/// The window of finished orders a `p99<…` probe looks at.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(10);

/// What the verdict demands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expectations {
    /// Accepted orders must be finished this long after the load and method.
    pub deadline: Duration,
    /// At most this many lost orders.
    pub max_lost: u64,
    /// Exactly this many confirmed.
    pub confirmed: Option<u64>,
    /// At most this many new dead letters.
    pub max_dlq: Option<i64>,
    /// At least this many new dead letters.
    pub min_dlq: Option<i64>,
    /// At most this many orders refused at the door.
    pub max_refused: Option<u64>,
    /// At most this many cancelled orders per cancel reason.
    pub max_cancelled: std::collections::BTreeMap<String, u64>,
    /// Orders must be DELIVERED or CANCELLED, not only placed.
    pub settled: bool,
}

/// Customers cancelling their orders during the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cancels {
    /// Share of accepted orders cancelled.
    pub share: f64,
    /// At a random moment within this long of acceptance.
    pub within: Duration,
}

/// A drill ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Name.
    pub name: String,
    /// What must hold.
    pub hypothesis: String,
    /// The short form.
    pub short: bool,
    /// Probes with their names as written.
    pub steady_state: Vec<(String, Probe)>,
    /// Steps before the load.
    pub setup: Vec<Action>,
    /// The orders.
    pub load: Load,
    /// Cancellations by customers during the load, if any.
    pub cancels: Option<Cancels>,
    /// How the load is paced, for people (`3/s for 12s`, `15 orders at once`).
    pub load_text: String,
    /// Steps at times from the start of the load, in time order.
    pub method: Vec<(Duration, Action)>,
    /// Steps that always run at the end.
    pub rollback: Vec<Action>,
    /// The verdict's demands.
    pub expect: Expectations,
}

/// Resolves both forms of `drill`: any mistake in either is reported now.
pub fn check(
    path: &Path,
    text: &str,
    drill: &Drill,
    commands: CommandCheck,
) -> Result<(), Failure> {
    resolve(path, text, drill, false, commands)?;
    resolve(path, text, drill, true, commands)?;
    Ok(())
}

/// The plan of `drill` in its short or full form.
pub fn resolve(
    path: &Path,
    text: &str,
    drill: &Drill,
    short: bool,
    commands: CommandCheck,
) -> Result<Plan, Failure> {
    let at = |s: &Spanned<String>, what: String| {
        Failure::usage(format!(
            "drill file {}: line {}: {what}",
            path.display(),
            line_of(text, s.span().start)
        ))
    };
    let duration = |s: &Spanned<String>| crate::args::duration(s.get_ref()).map_err(|e| at(s, e));
    let action = |s: &Spanned<String>| Action::parse(s.get_ref(), commands).map_err(|e| at(s, e));
    let steps = |steps: &[StepSpec]| -> Result<Vec<(Duration, Action)>, Failure> {
        let mut out = steps
            .iter()
            .map(|s| Ok((duration(&s.at)?, action(&s.action)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        out.sort_by_key(|(t, _)| *t);
        Ok(out)
    };
    let whole = |what: &str| Failure::usage(format!("drill file {}: {what}", path.display()));

    let s = drill.short.as_ref().filter(|_| short);
    let full_method = steps(&drill.method)?;
    let method = match s.and_then(|s| s.method.as_deref()) {
        Some(m) => steps(m)?,
        None => full_method,
    };
    let deadline = duration(
        s.and_then(|s| s.deadline.as_ref())
            .unwrap_or(&drill.verify.deadline),
    )?;
    let load_duration = match s
        .and_then(|s| s.duration.as_ref())
        .or(drill.load.duration.as_ref())
    {
        Some(d) => duration(d)?,
        None => Duration::ZERO,
    };
    let rate = s.and_then(|s| s.rate).unwrap_or(drill.load.rate);
    let burst = s.and_then(|s| s.burst).unwrap_or(drill.load.burst);
    if burst == 0 && (rate <= 0.0 || !rate.is_finite()) {
        return Err(whole("load needs a rate above 0 or a burst"));
    }
    let mut items = Vec::new();
    for item in &drill.load.items {
        let parsed = crate::place::parse_item(item.get_ref()).map_err(|e| at(item, e))?;
        items.push(parsed);
    }
    if items.is_empty() {
        return Err(whole("load.items needs at least one PRODUCT[:QTY]"));
    }
    let (count, pace, load_text) = if burst > 0 {
        (burst as usize, None, format!("{burst} orders at once"))
    } else {
        (
            (rate * load_duration.as_secs_f64()).round() as usize,
            Some(rate),
            format!("{rate}/s for {}", humantime::format_duration(load_duration)),
        )
    };
    let share = drill.load.cancel_share;
    if !(0.0..=1.0).contains(&share) {
        return Err(whole("load.cancel_share must be between 0 and 1"));
    }
    let cancels = if share > 0.0 {
        let within = match &drill.load.cancel_within {
            Some(w) => duration(w)?,
            None => Duration::from_secs(2),
        };
        Some(Cancels { share, within })
    } else {
        None
    };
    let steady_state = drill
        .steady_state
        .iter()
        .map(|p| {
            Probe::parse(p.get_ref())
                .map(|k| (p.get_ref().clone(), k))
                .map_err(|e| at(p, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan {
        name: drill.name.clone(),
        hypothesis: drill.hypothesis.clone(),
        short,
        steady_state,
        setup: drill.setup.iter().map(action).collect::<Result<_, _>>()?,
        load: Load {
            count,
            rate: pace,
            concurrency: if burst > 0 {
                burst as usize
            } else {
                drill.load.concurrency.max(1)
            },
            lines: Lines::OneOf(items),
            tokens: if drill.load.tokens.is_empty() {
                vec!["tok_visa".to_owned()]
            } else {
                drill.load.tokens.clone()
            },
            customer: Customer::Numbered("drill".into()),
        },
        cancels,
        load_text,
        method,
        rollback: drill
            .rollback
            .iter()
            .map(action)
            .collect::<Result<_, _>>()?,
        expect: Expectations {
            deadline,
            max_lost: drill.verify.max_lost,
            confirmed: s.and_then(|s| s.confirmed).or(drill.verify.confirmed),
            max_dlq: drill.verify.max_dlq,
            min_dlq: s.and_then(|s| s.min_dlq).or(drill.verify.min_dlq),
            max_refused: drill.verify.max_refused,
            max_cancelled: cancel_limits(&drill.verify.max_cancelled)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?,
            settled: drill.verify.settled,
        },
    })
}

/// `max_cancelled`: every key a cancel reason the contracts define.
fn cancel_limits(
    limits: &std::collections::BTreeMap<String, u64>,
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    for reason in limits.keys() {
        let known: Result<oms_contracts::messages::CancelReason, _> =
            serde_json::from_value(serde_json::Value::String(reason.clone()));
        if known.is_err() {
            return Err(format!(
                "verify.max_cancelled: {reason:?} is not a cancel reason (OUT_OF_STOCK, UNKNOWN_PRODUCT, PAYMENT_DECLINED, TIMEOUT, OPERATOR_CANCELLED, CUSTOMER_CANCELLED, FULFILLMENT_FAILED)"
            ));
        }
    }
    Ok(limits.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for omsctl's parser (omsctl's own tests run the real one on every shipped
    /// drill): refuses the misspellings these tests use.
    fn checker(words: &[String]) -> Result<(), String> {
        match words
            .iter()
            .find(|w| ["brokr", "stp"].contains(&w.as_str()))
        {
            Some(w) => Err(format!(
                "`omsctl {}`: unrecognized subcommand '{w}'",
                words.join(" ")
            )),
            None => Ok(()),
        }
    }

    fn plan(text: &str, short: bool) -> Result<Plan, String> {
        let path = Path::new("x.toml");
        let drill = super::super::spec::read(path, text).map_err(|f| f.error.to_string())?;
        resolve(path, text, &drill, short, checker).map_err(|f| f.error.to_string())
    }

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n";

    #[test]
    fn cancel_limits_name_cancel_reasons() {
        let with = |limits: &str| {
            plan(
                &format!("{HEAD}[load]\nrate = 1\nitems = [\"mouse-01:1\"]\n[verify]\ndeadline = \"10s\"\nmax_cancelled = {limits}\n"),
                false,
            )
        };
        let p = with("{ TIMEOUT = 0 }").expect("a known reason");
        assert_eq!(p.expect.max_cancelled.get("TIMEOUT"), Some(&0));
        let e = with("{ LATE = 0 }").expect_err("an unknown reason");
        assert!(e.contains("\"LATE\" is not a cancel reason"), "{e}");
    }

    #[test]
    fn actions_go_through_the_command_check() {
        assert_eq!(
            Action::parse("chaos broker stop --for 5s", checker),
            Ok(Action::Omsctl(
                ["chaos", "broker", "stop", "--for", "5s"]
                    .map(String::from)
                    .to_vec()
            ))
        );
        assert_eq!(
            Action::parse("stock mouse-01 5", checker),
            Ok(Action::Stock {
                product: "mouse-01".into(),
                available: 5
            })
        );
        assert_eq!(Action::parse("wait-ready", checker), Ok(Action::WaitReady));
        assert_eq!(
            Action::parse("probe p99<3s", checker),
            Ok(Action::Check(
                "p99<3s".into(),
                Probe::P99Under(Duration::from_secs(3))
            ))
        );
        assert!(Action::parse("probe p99<soon", checker).is_err());
        assert!(Action::parse("probe p99<0s", checker).is_err());
        assert!(Action::parse("probe", checker).is_err());
        let typo = Action::parse("chaos brokr stop", checker).expect_err("typo accepted");
        assert!(typo.contains("brokr"), "{typo}");
        assert!(
            Action::parse("order create --item x", checker).is_err(),
            "only chaos and dlq"
        );
        assert!(Action::parse("stock mouse-01 many", checker).is_err());
        assert!(Action::parse("explode", checker).is_err());
    }

    #[test]
    fn a_bad_action_is_refused_with_its_line_in_either_form() {
        let text = format!(
            "{HEAD}[load]\nrate = 1\nduration = \"2s\"\nitems = [\"mouse-01:1\"]\n[[method]]\nat = \"1s\"\naction = \"chaos brokr stop\"\n[verify]\ndeadline = \"10s\"\n"
        );
        let e = plan(&text, false).expect_err("typo accepted");
        assert!(e.contains("line 10") && e.contains("brokr"), "{e}");
        // A mistake in the short form is found when the file is read, not only with --short.
        let text = format!(
            "{HEAD}[load]\nrate = 1\nitems = [\"mouse-01:1\"]\n[verify]\ndeadline = \"10s\"\n[short]\nmethod = [{{ at = \"1s\", action = \"chaos db stp\" }}]\n"
        );
        let drill = super::super::spec::read(Path::new("x.toml"), &text).expect("reads");
        let e =
            check(Path::new("x.toml"), &text, &drill, checker).expect_err("short typo accepted");
        assert!(e.error.to_string().contains("line 10"), "{}", e.error);
    }

    #[test]
    fn the_short_form_overrides_what_it_names_and_keeps_the_rest() {
        let text = format!(
            "{HEAD}steady_state = [\"services-ready\"]\n[load]\nrate = 5\nduration = \"60s\"\nitems = [\"mouse-01:1\", \"hub-01:2\"]\n[[method]]\nat = \"10s\"\naction = \"chaos broker stop --for 30s\"\n[[method]]\nat = \"2s\"\naction = \"wait-ready\"\n[verify]\ndeadline = \"120s\"\nmax_dlq = 0\n[short]\nrate = 2\nduration = \"5s\"\ndeadline = \"30s\"\n"
        );
        let full = plan(&text, false).expect("full");
        assert_eq!(full.load.count, 300);
        assert_eq!(full.expect.deadline, Duration::from_secs(120));
        // Method steps run in time order whatever the file's order.
        assert_eq!(full.method[0], (Duration::from_secs(2), Action::WaitReady));
        let short = plan(&text, true).expect("short");
        assert_eq!((short.load.count, short.load.rate), (10, Some(2.0)));
        assert_eq!(short.expect.deadline, Duration::from_secs(30));
        assert_eq!(short.method.len(), 2, "no short method: the full one");
        assert_eq!(short.expect.max_dlq, Some(0));
        assert_eq!(short.steady_state[0].1, Probe::Ready);
        assert_eq!(
            short.load.lines,
            Lines::OneOf(vec![("mouse-01".into(), 1), ("hub-01".into(), 2)])
        );
    }

    #[test]
    fn loads_items_and_probes_are_checked() {
        let no_rate =
            format!("{HEAD}[load]\nitems = [\"mouse-01:1\"]\n[verify]\ndeadline = \"10s\"\n");
        assert!(plan(&no_rate, false)
            .expect_err("no rate")
            .contains("rate above 0"));
        let bad_item = format!(
            "{HEAD}[load]\nrate = 1\nitems = [\"mouse-01:0\"]\n[verify]\ndeadline = \"10s\"\n"
        );
        assert!(plan(&bad_item, false)
            .expect_err("qty 0")
            .contains("line 6"));
        let bad_probe = format!(
            "{HEAD}steady_state = [\"calm\"]\n[load]\nburst = 3\nitems = [\"a\"]\n[verify]\ndeadline = \"10s\"\n"
        );
        assert!(plan(&bad_probe, false).expect_err("probe").contains("calm"));
        let burst =
            format!("{HEAD}[load]\nburst = 3\nitems = [\"a\"]\n[verify]\ndeadline = \"10s\"\n");
        let p = plan(&burst, false).expect("burst");
        assert_eq!(
            (p.load.count, p.load.concurrency, p.load.rate),
            (3, 3, None)
        );
    }
}
