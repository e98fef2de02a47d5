//! The dashboard's state: what it shows and what it was asked. Pure: keys and data arrive as
//! [`Action`]s ([`super::input`] turns keys into them) and only [`super::update`] changes the
//! state; what must happen outside (fetching a trace, replaying) comes back as [`Effect`]s.
//! Drawing only reads (see `view`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use oms_ops::trace::Trace;

use oms_ops::dlq::Item;

/// The views, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Counts, throughput, health.
    Overview,
    /// Recent sagas.
    Sagas,
    /// Dead letters.
    Dlq,
    /// One order's timeline.
    Detail,
    /// A service's log (local stack).
    Logs,
    /// Consumer lag per group and topic, with its trend.
    Lag,
}

impl View {
    /// Views reachable with Tab and number keys.
    pub const TABS: [View; 5] = [
        View::Overview,
        View::Sagas,
        View::Dlq,
        View::Logs,
        View::Lag,
    ];

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "1 Overview",
            View::Sagas => "2 Sagas",
            View::Dlq => "3 DLQ",
            View::Logs => "4 Logs",
            View::Lag => "5 Lag",
            View::Detail => "Detail",
        }
    }
}

/// Something being fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum Load<T> {
    /// Not asked for.
    Idle,
    /// Asked for, no answer yet.
    Loading,
    /// The answer.
    Loaded(T),
    /// It failed; why.
    Error(String),
}

/// One service's health as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Service name.
    pub name: String,
    /// Ready (`None`: could not ask).
    pub ready: Option<bool>,
    /// Outbox rows waiting.
    pub backlog: Option<i64>,
    /// Consumer lag.
    pub lag: Option<i64>,
    /// Why it is not ready.
    pub error: Option<String>,
}

/// A Kafka node as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerNode {
    /// `broker`, `broker-2` (the local stack's names) or `broker ID`.
    pub name: String,
    /// Whether the cluster's metadata names it (`None`: the cluster was not asked).
    pub up: Option<bool>,
    /// Partitions of the OMS topics it leads.
    pub leads: usize,
}

/// One consumer group's lag: messages on the topics it reads that it has not handled yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupLag {
    /// The group, as deployed.
    pub group: String,
    /// Each topic it reads (without the deployment's prefix) and its lag there, in the order
    /// the group reads them.
    pub topics: Vec<(String, i64)>,
}

impl GroupLag {
    /// Its lag over every topic it reads.
    pub fn total(&self) -> i64 {
        self.topics.iter().map(|(_, n)| n).sum()
    }
}

/// The consumer lag of the OMS's groups as one read of the broker gave it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LagReading {
    /// Seconds since the epoch when the broker was read.
    pub at: f64,
    /// Each group that reads something, in the topology's order.
    pub groups: Vec<GroupLag>,
}

/// One row of the sagas table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaRow {
    /// Order id.
    pub order_id: String,
    /// State.
    pub state: String,
    /// Created at (RFC 3339).
    pub created_at: String,
    /// Age in seconds when fetched.
    pub age_secs: i64,
    /// Latest step's note.
    pub last_step: String,
    /// Customer.
    pub customer: String,
    /// Total, formatted.
    pub total: String,
    /// Past its deadline.
    pub stuck: bool,
    /// The fulfillment part's state (empty before confirmation).
    pub shipment: String,
}

/// Everything one poll brings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Saga counts by state.
    pub by_state: Vec<(String, i64)>,
    /// Confirmed sagas by fulfillment state.
    pub by_fulfillment_state: Vec<(String, i64)>,
    /// Running sagas past their deadline.
    pub stuck: i64,
    /// Recent sagas, newest first.
    pub sagas: Vec<SagaRow>,
    /// Per-service health.
    pub services: Vec<Health>,
    /// Dead letters per DLQ topic (`None`: broker not asked this time).
    pub dlq_depth: Option<Vec<(String, i64)>>,
    /// The Kafka nodes.
    pub brokers: Vec<BrokerNode>,
    /// Active faults (gateway knobs that are not zero).
    pub faults: Vec<String>,
    /// p50 and p99 milliseconds from accepted to finished, over recent orders.
    pub latency_ms: Option<(f64, f64)>,
    /// Consumer lag per group (`None`: the broker has not answered this time).
    pub lag: Option<LagReading>,
    /// Why the broker's last read failed.
    pub broker_error: Option<String>,
    /// Seconds since the epoch when fetched.
    pub fetched_at: f64,
    /// Parts that could not be fetched.
    pub errors: Vec<String>,
}

impl Snapshot {
    pub(super) fn count(&self, state: &str) -> i64 {
        self.by_state
            .iter()
            .find(|(s, _)| s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// Every saga.
    pub fn total(&self) -> i64 {
        self.by_state.iter().map(|(_, n)| n).sum()
    }
}

/// Sort orders of the sagas table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    Newest,
    /// Oldest first.
    Oldest,
    /// By state name.
    State,
}

/// A confirmation being asked: every action that changes something goes through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The question.
    pub what: String,
    /// What happens on yes.
    pub effect: Effect,
}

/// What happens to the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Leave.
    Quit,
    /// Show or hide the help overlay.
    ToggleHelp,
    /// Go to a view.
    Show(View),
    /// Next tab.
    NextTab,
    /// Back (closes help, filter, detail, confirmation).
    Back,
    /// Stop or resume applying new data.
    ToggleFreeze,
    /// Start typing a filter.
    StartFilter,
    /// A character of the filter.
    FilterChar(char),
    /// Delete the filter's last character.
    FilterBackspace,
    /// Finish typing the filter.
    FilterDone,
    /// Next saga-state filter.
    CycleState,
    /// Next sort order.
    CycleSort,
    /// Selection up.
    Up,
    /// Selection down.
    Down,
    /// Open the selected saga's detail.
    Open,
    /// Ask to replay the selected dead letter.
    AskReplay,
    /// Selection to the first row.
    First,
    /// Selection to the last row.
    Last,
    /// Selection a page up.
    PageUp,
    /// Selection a page down.
    PageDown,
    /// Start typing a `:` command (with this text already typed).
    StartCommand(String),
    /// A character of the command.
    CommandChar(char),
    /// Delete the command's last character.
    CommandBackspace,
    /// Run the command typed (after the confirmation).
    CommandDone,
    /// Show or hide the selected row as raw JSON.
    ToggleRaw,
    /// Copy the raw JSON shown to the clipboard.
    CopyRaw,
    /// Show the next service's log.
    NextLog,
    /// Log lines arrived (for this service).
    Logs(String, Result<Vec<String>, String>),
    /// A `:` command finished: its summary.
    Ran(Result<String, String>),
    /// The answer to the confirmation.
    Confirm(bool),
    /// Fresh data.
    Data(Box<Snapshot>),
    /// A trace arrived (for this order id).
    Detail(String, Result<Box<Trace>, String>),
    /// Dead letters arrived.
    Dlq(Result<Vec<Item>, String>),
    /// A replay finished.
    Replayed(Result<String, String>),
}

/// What the runtime must do for the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Fetch this order's trace.
    LoadDetail(String),
    /// Fetch the dead letters.
    LoadDlq,
    /// Replay this entry (already confirmed).
    Replay(String),
    /// Run omsctl with these arguments (already confirmed).
    Run(Vec<String>),
    /// Read the last lines of this service's log.
    LoadLogs(String),
    /// Put this text on the clipboard (OSC 52, through the terminal).
    Copy(String),
}

/// Rows a page key moves.
pub const PAGE: usize = 10;

/// The services the Logs view cycles through: order first, then the rest of the topology.
pub fn log_services() -> impl Iterator<Item = oms_contracts::ServiceId> {
    use oms_contracts::ServiceId;
    std::iter::once(ServiceId::Order).chain(ServiceId::all().filter(|s| *s != ServiceId::Order))
}

/// The service whose log the Logs view shows at `i`.
pub fn log_service(i: usize) -> &'static str {
    let n = log_services().count().max(1);
    log_services().nth(i % n).map_or("-", |s| s.name())
}

/// Saga states the `s` key cycles through (`None` = all).
pub const STATE_FILTERS: [Option<&str>; 6] = [
    None,
    Some("RESERVING"),
    Some("AUTHORIZING"),
    Some("RELEASING"),
    Some("CONFIRMED"),
    Some("CANCELLED"),
];

/// Samples kept for the sparklines (at 1 s refresh: the last four minutes).
pub const HISTORY: usize = 240;

/// Readings kept for the latency chart (one a refresh) and each group's lag trend (one a read
/// of the broker).
pub const TREND: usize = 120;

/// The dashboard.
#[derive(Debug, Clone)]
pub struct App {
    /// Current view.
    pub view: View,
    /// The view Esc returns to from Detail.
    pub back_to: View,
    /// Help overlay shown.
    pub help: bool,
    /// New data is not applied.
    pub frozen: bool,
    /// Leaving.
    pub quit: bool,
    /// Text filter of the sagas table.
    pub filter: String,
    /// The filter is being typed.
    pub editing: bool,
    /// Index into [`STATE_FILTERS`].
    pub state_filter: usize,
    /// Sort of the sagas table.
    pub sort: Sort,
    /// Selected row (sagas or DLQ).
    pub selected: usize,
    /// Latest data.
    pub data: Load<Snapshot>,
    /// Created / confirmed / cancelled per second, per poll.
    pub rates: VecDeque<(u64, u64, u64)>,
    /// Seconds since the epoch, p50 and p99 ms of each poll that had them (at most [`TREND`]).
    pub latency: VecDeque<(f64, f64, f64)>,
    /// Each group's total lag, one a read of the broker (at most [`TREND`] each).
    pub lag_trend: BTreeMap<String, VecDeque<i64>>,
    /// When the broker was read for the last lag in [`App::lag_trend`].
    pub lag_read_at: Option<f64>,
    /// Order id and trace of the detail view.
    pub detail: Option<(String, Load<Box<Trace>>)>,
    /// Dead letters.
    pub dlq: Load<Vec<Item>>,
    /// Replay confirmation being asked.
    pub confirm: Option<Confirm>,
    /// A message for the status line.
    pub message: Option<String>,
    /// The `:` command being typed.
    pub command: Option<String>,
    /// Raw JSON of a row being shown.
    pub raw: Option<String>,
    /// Which service's log ([`log_service`]) and the lines of the Logs view.
    pub logs: (usize, Load<Vec<String>>),
    /// How often data is polled.
    pub refresh: Duration,
    /// State of each saga at the previous poll, and the poll number it last changed at.
    pub changed: HashMap<String, (String, u64)>,
    /// Polls applied.
    pub polls: u64,
}

impl App {
    /// A dashboard polling every `refresh`.
    pub fn new(refresh: Duration) -> Self {
        App {
            view: View::Overview,
            back_to: View::Sagas,
            help: false,
            frozen: false,
            quit: false,
            filter: String::new(),
            editing: false,
            state_filter: 0,
            sort: Sort::Newest,
            selected: 0,
            data: Load::Loading,
            rates: VecDeque::new(),
            latency: VecDeque::new(),
            lag_trend: BTreeMap::new(),
            lag_read_at: None,
            detail: None,
            dlq: Load::Idle,
            confirm: None,
            message: None,
            command: None,
            raw: None,
            logs: (0, Load::Idle),
            refresh,
            changed: HashMap::new(),
            polls: 0,
        }
    }

    /// The latest snapshot, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        match &self.data {
            Load::Loaded(s) => Some(s),
            _ => None,
        }
    }

    /// The sagas table as shown: filtered and sorted.
    pub fn visible_sagas(&self) -> Vec<&SagaRow> {
        let Some(s) = self.snapshot() else {
            return Vec::new();
        };
        let wanted = STATE_FILTERS.get(self.state_filter).copied().flatten();
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&SagaRow> = s
            .sagas
            .iter()
            .filter(|r| wanted.is_none_or(|w| r.state == w))
            .filter(|r| {
                needle.is_empty()
                    || [&r.order_id, &r.state, &r.customer, &r.last_step, &r.total]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&needle))
            })
            .collect();
        match self.sort {
            Sort::Newest => rows.sort_by(|a, b| b.created_at.cmp(&a.created_at)),
            Sort::Oldest => rows.sort_by(|a, b| a.created_at.cmp(&b.created_at)),
            Sort::State => rows.sort_by(|a, b| a.state.cmp(&b.state)),
        }
        rows
    }

    /// Dead letters of the given order.
    pub fn dlq_of(&self, order_id: &str) -> Vec<&Item> {
        match &self.dlq {
            Load::Loaded(items) => items
                .iter()
                .filter(|i| i.key.as_deref() == Some(order_id))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether a saga changed state (or appeared) in the last few polls.
    pub fn is_fresh(&self, order_id: &str) -> bool {
        self.changed
            .get(order_id)
            .is_some_and(|(_, at)| *at > 0 && self.polls.saturating_sub(*at) < 3)
    }

    pub(super) fn rows_in_view(&self) -> usize {
        match self.view {
            View::Sagas => self.visible_sagas().len(),
            View::Dlq => match &self.dlq {
                Load::Loaded(items) => items.len(),
                _ => 0,
            },
            View::Detail => self
                .detail
                .as_ref()
                .map(|(id, _)| self.dlq_of(id).len())
                .unwrap_or(0),
            View::Overview | View::Logs | View::Lag => 0,
        }
    }

    /// The selected saga's order id (Sagas view, or the Detail view's order).
    pub fn selected_order(&self) -> Option<String> {
        match self.view {
            View::Sagas => self
                .visible_sagas()
                .get(self.selected)
                .map(|r| r.order_id.clone()),
            View::Detail => self.detail.as_ref().map(|(id, _)| id.clone()),
            View::Dlq => match &self.dlq {
                Load::Loaded(items) => items
                    .get(self.selected)
                    .and_then(|i| i.key.clone())
                    .filter(|k| !k.is_empty()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The selected row as JSON (a saga row, a dead letter, or the open trace).
    pub(super) fn selected_json(&self) -> Option<Value> {
        match self.view {
            View::Sagas => self
                .visible_sagas()
                .get(self.selected)
                .and_then(|r| serde_json::to_value(r).ok()),
            View::Dlq => match &self.dlq {
                Load::Loaded(items) => items
                    .get(self.selected)
                    .and_then(|i| serde_json::to_value(i).ok()),
                _ => None,
            },
            View::Detail => match &self.detail {
                Some((_, Load::Loaded(t))) => serde_json::to_value(t).ok(),
                _ => None,
            },
            View::Overview | View::Logs | View::Lag => None,
        }
    }

    pub(super) fn selected_dlq_entry(&self) -> Option<String> {
        match self.view {
            View::Dlq => match &self.dlq {
                Load::Loaded(items) => items.get(self.selected).map(|i| i.id.clone()),
                _ => None,
            },
            View::Detail => {
                let (id, _) = self.detail.as_ref()?;
                self.dlq_of(id).get(self.selected).map(|i| i.id.clone())
            }
            _ => None,
        }
    }
}
