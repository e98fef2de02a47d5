//! The only function that changes the dashboard's state (and the pure reshaping of what the
//! broker says into it).

use std::collections::VecDeque;

use super::app::*;
use super::input::command_args;
use oms_ops::topics::TopicRow;

/// Each consumer group's lag per topic, from the topics as [`oms_ops::topics::list`] gives them
/// and the `groups` it was asked about (group, topics it reads). Topics keep the order the group
/// reads them in and lose the deployment's `prefix`; a topic the broker does not have is left
/// out, and so is a group that reads nothing.
pub fn lag_by_group(
    rows: &[TopicRow],
    groups: &[(String, Vec<String>)],
    prefix: &str,
) -> Vec<GroupLag> {
    groups
        .iter()
        .filter(|(_, reads)| !reads.is_empty())
        .map(|(group, reads)| GroupLag {
            group: group.clone(),
            topics: reads
                .iter()
                .filter_map(|topic| {
                    let row = rows.iter().find(|r| r.topic == *topic)?;
                    let lag = row.lag.get(group).copied().unwrap_or(0);
                    Some((topic.strip_prefix(prefix).unwrap_or(topic).to_owned(), lag))
                })
                .collect(),
        })
        .collect()
}

/// Appends `value`, dropping the oldest beyond `bound`.
fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, bound: usize) {
    queue.push_back(value);
    while queue.len() > bound {
        queue.pop_front();
    }
}

/// Keeps a poll's latency for the chart, and a new read of the lag for the groups' trends (the
/// broker is read less often than the services: a reading already seen is not counted again).
fn record_trends(app: &mut App, snapshot: &Snapshot) {
    if let Some((p50, p99)) = snapshot.latency_ms {
        push_bounded(&mut app.latency, (snapshot.fetched_at, p50, p99), TREND);
    }
    let Some(reading) = &snapshot.lag else {
        return;
    };
    if app.lag_read_at == Some(reading.at) {
        return;
    }
    app.lag_read_at = Some(reading.at);
    for g in &reading.groups {
        let trend = app.lag_trend.entry(g.group.clone()).or_default();
        push_bounded(trend, g.total(), TREND);
    }
    app.lag_trend
        .retain(|group, _| reading.groups.iter().any(|g| g.group == *group));
}

/// Applies one action; returns what must be done outside.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    let mut effects = Vec::new();
    match action {
        Action::Quit => app.quit = true,
        Action::ToggleHelp => app.help = !app.help,
        Action::Show(view) => {
            app.help = false;
            if app.view != view {
                app.selected = 0;
            }
            app.view = view;
            if view == View::Dlq {
                app.dlq = Load::Loading;
                effects.push(Effect::LoadDlq);
            }
            if view == View::Logs {
                app.logs.1 = Load::Loading;
                effects.push(Effect::LoadLogs(log_service(app.logs.0).to_owned()));
            }
        }
        Action::NextTab => {
            let i = View::TABS.iter().position(|v| *v == app.view).unwrap_or(0);
            let next = View::TABS[(i + 1) % View::TABS.len()];
            return update(app, Action::Show(next));
        }
        Action::Back => {
            if app.command.is_some() {
                app.command = None;
            } else if app.raw.is_some() {
                app.raw = None;
            } else if app.help {
                app.help = false;
            } else if app.editing {
                app.editing = false;
                app.filter.clear();
            } else if app.view == View::Detail {
                app.view = app.back_to;
                app.detail = None;
                app.selected = 0;
            } else if !app.filter.is_empty() {
                app.filter.clear();
            }
        }
        Action::ToggleFreeze => app.frozen = !app.frozen,
        Action::StartFilter => {
            if app.view != View::Sagas {
                app.view = View::Sagas;
            }
            app.editing = true;
            app.selected = 0;
        }
        Action::FilterChar(c) => {
            app.filter.push(c);
            app.selected = 0;
        }
        Action::FilterBackspace => {
            app.filter.pop();
        }
        Action::FilterDone => app.editing = false,
        Action::CycleState => {
            app.state_filter = (app.state_filter + 1) % STATE_FILTERS.len();
            app.selected = 0;
        }
        Action::CycleSort => {
            app.sort = match app.sort {
                Sort::Newest => Sort::Oldest,
                Sort::Oldest => Sort::State,
                Sort::State => Sort::Newest,
            }
        }
        Action::Up => app.selected = app.selected.saturating_sub(1),
        Action::Down => {
            let n = app.rows_in_view();
            if n > 0 {
                app.selected = (app.selected + 1).min(n - 1);
            }
        }
        Action::Open => {
            if app.view == View::Sagas {
                if let Some(row) = app.visible_sagas().get(app.selected) {
                    let id = row.order_id.clone();
                    app.back_to = View::Sagas;
                    app.view = View::Detail;
                    app.detail = Some((id.clone(), Load::Loading));
                    app.selected = 0;
                    effects.push(Effect::LoadDetail(id));
                    effects.push(Effect::LoadDlq);
                }
            } else if app.view == View::Dlq {
                let key = match &app.dlq {
                    Load::Loaded(items) => items.get(app.selected).and_then(|i| i.key.clone()),
                    _ => None,
                };
                if let Some(id) = key.filter(|k| !k.is_empty()) {
                    app.back_to = View::Dlq;
                    app.view = View::Detail;
                    app.detail = Some((id.clone(), Load::Loading));
                    app.selected = 0;
                    effects.push(Effect::LoadDetail(id));
                }
            }
        }
        Action::AskReplay => match app.selected_dlq_entry() {
            Some(entry) => {
                let already = match &app.dlq {
                    Load::Loaded(items) => items.iter().any(|i| i.id == entry && i.replayed),
                    _ => false,
                };
                if already {
                    app.message = Some(format!("{entry} was already replayed"));
                } else {
                    app.confirm = Some(Confirm {
                        what: format!("Replay {entry} to its origin topic?"),
                        effect: Effect::Replay(entry),
                    });
                }
            }
            None => app.message = Some("no dead letter selected".into()),
        },
        Action::Confirm(yes) => {
            if let Some(c) = app.confirm.take() {
                if yes {
                    app.message = Some(match &c.effect {
                        Effect::Replay(entry) => format!("replaying {entry} ..."),
                        Effect::Run(args) => format!("running omsctl {} ...", args.join(" ")),
                        _ => "...".into(),
                    });
                    effects.push(c.effect);
                } else {
                    app.message = Some("cancelled: nothing changed".into());
                }
            }
        }
        Action::First => app.selected = 0,
        Action::Last => app.selected = app.rows_in_view().saturating_sub(1),
        Action::PageUp => app.selected = app.selected.saturating_sub(PAGE),
        Action::PageDown => {
            app.selected = (app.selected + PAGE).min(app.rows_in_view().saturating_sub(1));
        }
        Action::StartCommand(text) => {
            app.help = false;
            app.command = Some(text);
        }
        Action::CommandChar(c) => {
            if let Some(line) = app.command.as_mut() {
                line.push(c);
            }
        }
        Action::CommandBackspace => {
            if let Some(line) = app.command.as_mut() {
                line.pop();
            }
        }
        Action::CommandDone => {
            if let Some(line) = app.command.take() {
                match command_args(&line, app) {
                    Ok(args) => {
                        app.confirm = Some(Confirm {
                            what: format!("Run `omsctl {}`?", args.join(" ")),
                            effect: Effect::Run(args),
                        });
                    }
                    Err(e) => app.message = Some(e),
                }
            }
        }
        Action::ToggleRaw => {
            if app.raw.is_some() {
                app.raw = None;
            } else {
                match app.selected_json() {
                    Some(v) => {
                        app.raw = Some(serde_json::to_string_pretty(&v).unwrap_or_default());
                    }
                    None => app.message = Some("no row selected to show".into()),
                }
            }
        }
        Action::CopyRaw => {
            if let Some(text) = &app.raw {
                effects.push(Effect::Copy(text.clone()));
                app.message = Some("copied to the clipboard (OSC 52)".into());
            }
        }
        Action::NextLog => {
            if app.view == View::Logs {
                app.logs = ((app.logs.0 + 1) % log_services().count(), Load::Loading);
                effects.push(Effect::LoadLogs(log_service(app.logs.0).to_owned()));
            }
        }
        Action::Logs(service, result) => {
            if log_service(app.logs.0) == service {
                app.logs.1 = match result {
                    Ok(lines) => Load::Loaded(lines),
                    Err(e) => Load::Error(e),
                };
            }
        }
        Action::Ran(result) => {
            app.message = Some(match result {
                Ok(m) => m,
                Err(e) => format!("failed: {e}"),
            });
            if app.view == View::Dlq {
                effects.push(Effect::LoadDlq);
            }
        }
        Action::Data(snapshot) => {
            if app.frozen {
                return effects;
            }
            app.polls += 1;
            let previous = app.snapshot().cloned();
            if let Some(prev) = &previous {
                let dt = (snapshot.fetched_at - prev.fetched_at).max(0.001);
                let rate =
                    |now: i64, before: i64| ((now - before).max(0) as f64 / dt).round() as u64;
                let rates = (
                    rate(snapshot.total(), prev.total()),
                    rate(snapshot.count("CONFIRMED"), prev.count("CONFIRMED")),
                    rate(snapshot.count("CANCELLED"), prev.count("CANCELLED")),
                );
                push_bounded(&mut app.rates, rates, HISTORY);
            }
            record_trends(app, &snapshot);
            // Rows already there at the first poll are not news (0 = never changed while shown).
            let first = app.polls == 1;
            for row in &snapshot.sagas {
                let at = if first { 0 } else { app.polls };
                let entry = app
                    .changed
                    .entry(row.order_id.clone())
                    .or_insert_with(|| (row.state.clone(), at));
                if entry.0 != row.state {
                    *entry = (row.state.clone(), at);
                }
            }
            let shown: std::collections::HashSet<&str> =
                snapshot.sagas.iter().map(|r| r.order_id.as_str()).collect();
            app.changed.retain(|id, _| shown.contains(id.as_str()));
            let mut snapshot = *snapshot;
            // The broker is asked less often; keep the last known DLQ depths in between.
            // So is the lag: the last reading stays, with its time, until the broker answers.
            if let Some(prev) = previous {
                if snapshot.dlq_depth.is_none() {
                    snapshot.dlq_depth = prev.dlq_depth;
                }
                if snapshot.lag.is_none() {
                    snapshot.lag = prev.lag;
                }
            }
            app.data = Load::Loaded(snapshot);
            if app.view == View::Logs {
                effects.push(Effect::LoadLogs(log_service(app.logs.0).to_owned()));
            }
            let n = app.rows_in_view();
            if n > 0 && app.selected >= n {
                app.selected = n - 1;
            }
        }
        Action::Detail(id, result) => {
            if let Some((current, load)) = app.detail.as_mut() {
                if *current == id {
                    *load = match result {
                        Ok(v) => Load::Loaded(v),
                        Err(e) => Load::Error(e),
                    };
                }
            }
        }
        Action::Dlq(result) => {
            app.dlq = match result {
                Ok(items) => Load::Loaded(items),
                Err(e) => Load::Error(e),
            }
        }
        Action::Replayed(result) => {
            app.message = Some(match result {
                Ok(m) => m,
                Err(e) => format!("replay failed: {e}"),
            });
            effects.push(Effect::LoadDlq);
            if let Some((id, _)) = &app.detail {
                effects.push(Effect::LoadDetail(id.clone()));
            }
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::super::input::key_action;
    use super::*;
    use oms_ops::dlq::Item;
    use std::collections::VecDeque;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn press(app: &mut App, k: KeyEvent) -> Vec<Effect> {
        match key_action(app, k) {
            Some(a) => update(app, a),
            None => Vec::new(),
        }
    }

    pub(crate) fn row(id: &str, state: &str, created: &str) -> SagaRow {
        SagaRow {
            order_id: id.into(),
            state: state.into(),
            created_at: created.into(),
            age_secs: 5,
            last_step: format!("note of {id}"),
            customer: "alice".into(),
            total: "24.99 EUR".into(),
            stuck: false,
            shipment: String::new(),
        }
    }

    pub(crate) fn snapshot(at: f64, confirmed: i64, sagas: Vec<SagaRow>) -> Snapshot {
        Snapshot {
            by_state: vec![
                ("AUTHORIZING".into(), 2),
                ("CANCELLED".into(), 3),
                ("CONFIRMED".into(), confirmed),
                ("RELEASING".into(), 0),
                ("RESERVING".into(), 1),
            ],
            by_fulfillment_state: Vec::new(),
            stuck: 0,
            sagas,
            services: Vec::new(),
            dlq_depth: Some(vec![("oms.payment.commands.dlq".into(), 1)]),
            brokers: Vec::new(),
            faults: Vec::new(),
            latency_ms: Some((70.0, 300.0)),
            lag: None,
            broker_error: None,
            fetched_at: at,
            errors: Vec::new(),
        }
    }

    #[test]
    fn keys_switch_views_and_help_and_quit() {
        let mut app = App::new(Duration::from_secs(1));
        press(&mut app, key('?'));
        assert!(app.help);
        press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert!(!app.help);
        press(&mut app, key('2'));
        assert_eq!(app.view, View::Sagas);
        let effects = press(&mut app, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!((app.view, effects), (View::Dlq, vec![Effect::LoadDlq]));
        let effects = press(&mut app, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(
            (app.view, effects),
            (View::Logs, vec![Effect::LoadLogs("order".into())])
        );
        assert!(press(&mut app, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)).is_empty());
        assert_eq!(app.view, View::Lag);
        press(&mut app, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(app.view, View::Overview);
        press(&mut app, key('5'));
        assert_eq!(app.view, View::Lag);
        press(&mut app, key('q'));
        assert!(app.quit);
    }

    fn topic_row(topic: &str, lag: &[(&str, i64)]) -> TopicRow {
        TopicRow {
            topic: topic.into(),
            partitions: 3,
            messages: 100,
            end_offsets: vec![40, 30, 30],
            lag: lag.iter().map(|(g, n)| ((*g).to_owned(), *n)).collect(),
        }
    }

    fn groups(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(g, reads)| {
                (
                    (*g).to_owned(),
                    reads.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn lag_is_summed_per_group_over_the_topics_it_reads() {
        let rows = [
            topic_row(
                "dev.oms.order.events",
                &[("dev.oms-saga", 7), ("dev.oms-notification", 1)],
            ),
            topic_row("dev.oms.payment.events", &[("dev.oms-saga", 5)]),
            topic_row("dev.oms.payment.commands", &[("dev.oms-payment", 0)]),
            // A DLQ nobody reads.
            topic_row("dev.oms.payment.commands.dlq", &[]),
        ];
        let asked = groups(&[
            ("dev.oms-payment", &["dev.oms.payment.commands"]),
            (
                "dev.oms-saga",
                &[
                    "dev.oms.payment.events",
                    "dev.oms.order.events",
                    "dev.oms.gone",
                ],
            ),
            ("dev.oms-notification", &["dev.oms.order.events"]),
            ("dev.oms-silent", &[]),
        ]);
        let lag = lag_by_group(&rows, &asked, "dev.");
        // Group, total, and each topic with its lag.
        type Shown<'a> = (&'a str, i64, Vec<(&'a str, i64)>);
        let shown: Vec<Shown<'_>> = lag
            .iter()
            .map(|g| {
                (
                    g.group.as_str(),
                    g.total(),
                    g.topics.iter().map(|(t, n)| (t.as_str(), *n)).collect(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("dev.oms-payment", 0, vec![("oms.payment.commands", 0)]),
                (
                    "dev.oms-saga",
                    12,
                    // In the order the group reads them; a topic the broker lacks is left out.
                    vec![("oms.payment.events", 5), ("oms.order.events", 7)]
                ),
                ("dev.oms-notification", 1, vec![("oms.order.events", 1)]),
            ]
        );
    }

    fn with_lag(mut s: Snapshot, at: f64, saga: i64) -> Box<Snapshot> {
        s.lag = Some(LagReading {
            at,
            groups: vec![
                GroupLag {
                    group: "oms-saga".into(),
                    topics: vec![("oms.order.events".into(), saga)],
                },
                GroupLag {
                    group: "oms-payment".into(),
                    topics: vec![("oms.payment.commands".into(), 1)],
                },
            ],
        });
        Box::new(s)
    }

    #[test]
    fn the_latency_history_keeps_the_last_readings_only() {
        let mut app = App::new(Duration::from_secs(1));
        let n = TREND + 30;
        for i in 0..n {
            let mut s = snapshot(i as f64, 1, vec![]);
            s.latency_ms = Some((i as f64, 10.0 * i as f64));
            update(&mut app, Action::Data(Box::new(s)));
        }
        assert_eq!(app.latency.len(), TREND);
        assert_eq!(app.latency.front(), Some(&(30.0, 30.0, 300.0)));
        let last = (n - 1) as f64;
        assert_eq!(app.latency.back(), Some(&(last, last, 10.0 * last)));
        // A poll without finished orders adds nothing.
        let mut s = snapshot(n as f64, 1, vec![]);
        s.latency_ms = None;
        update(&mut app, Action::Data(Box::new(s)));
        assert_eq!(app.latency.back().map(|p| p.0), Some(last));
        // Frozen: nothing is recorded.
        update(&mut app, Action::ToggleFreeze);
        update(&mut app, Action::Data(Box::new(snapshot(9e9, 1, vec![]))));
        assert_eq!(app.latency.back().map(|p| p.0), Some(last));
    }

    #[test]
    fn each_read_of_the_lag_counts_once_in_its_trend_and_the_trend_is_bounded() {
        let mut app = App::new(Duration::from_secs(1));
        // Three polls of the services see the same read of the broker.
        for t in [1.0, 2.0, 3.0] {
            update(
                &mut app,
                Action::Data(with_lag(snapshot(t, 1, vec![]), 0.5, 40)),
            );
        }
        assert_eq!(
            app.lag_trend
                .get("oms-saga")
                .map(|t| t.iter().copied().collect::<Vec<_>>()),
            Some(vec![40])
        );
        update(
            &mut app,
            Action::Data(with_lag(snapshot(4.0, 1, vec![]), 3.5, 25)),
        );
        assert_eq!(
            app.lag_trend
                .get("oms-saga")
                .map(|t| t.iter().copied().collect::<Vec<_>>()),
            Some(vec![40, 25])
        );
        assert_eq!(app.lag_trend.get("oms-payment").map(VecDeque::len), Some(2));
        // The broker fails: its error shows and the last reading stays, not counted again.
        let mut failed = snapshot(5.0, 1, vec![]);
        failed.broker_error = Some("broker unreachable".into());
        update(&mut app, Action::Data(Box::new(failed)));
        let s = app.snapshot().expect("data");
        assert_eq!(s.broker_error.as_deref(), Some("broker unreachable"));
        assert_eq!(s.lag.as_ref().map(|r| r.at), Some(3.5));
        assert_eq!(app.lag_trend.get("oms-saga").map(VecDeque::len), Some(2));
        for i in 0..TREND + 5 {
            update(
                &mut app,
                Action::Data(with_lag(
                    snapshot(10.0 + i as f64, 1, vec![]),
                    10.0 + i as f64,
                    i as i64,
                )),
            );
        }
        let saga = app.lag_trend.get("oms-saga").expect("trend");
        assert_eq!(saga.len(), TREND);
        assert_eq!(saga.front(), Some(&5));
        assert_eq!(saga.back(), Some(&(TREND as i64 + 4)));
    }

    #[test]
    fn data_updates_rates_and_freeze_holds_them() {
        let mut app = App::new(Duration::from_secs(1));
        update(
            &mut app,
            Action::Data(Box::new(snapshot(100.0, 10, vec![]))),
        );
        update(
            &mut app,
            Action::Data(Box::new(snapshot(102.0, 20, vec![]))),
        );
        // 10 more confirmed (and 10 more in total) over 2 s.
        assert_eq!(app.rates.back(), Some(&(5, 5, 0)));
        press(&mut app, key('f'));
        update(
            &mut app,
            Action::Data(Box::new(snapshot(104.0, 90, vec![]))),
        );
        assert_eq!(
            app.snapshot().map(|s| s.count("CONFIRMED")),
            Some(20),
            "frozen data changed"
        );
        press(&mut app, key('f'));
        update(
            &mut app,
            Action::Data(Box::new(snapshot(106.0, 90, vec![]))),
        );
        assert_eq!(app.snapshot().map(|s| s.count("CONFIRMED")), Some(90));
    }

    #[test]
    fn filter_state_filter_and_sort_shape_the_table() {
        let mut app = App::new(Duration::from_secs(1));
        let rows = vec![
            row("a-1", "CONFIRMED", "2026-11-23T10:00:01Z"),
            row("b-2", "CANCELLED", "2026-11-23T10:00:02Z"),
            row("c-3", "CONFIRMED", "2026-11-23T10:00:03Z"),
        ];
        update(&mut app, Action::Data(Box::new(snapshot(1.0, 2, rows))));
        press(&mut app, key('2'));
        let ids = |app: &App| -> Vec<String> {
            app.visible_sagas()
                .iter()
                .map(|r| r.order_id.clone())
                .collect()
        };
        assert_eq!(ids(&app), ["c-3", "b-2", "a-1"]);
        press(&mut app, key('o'));
        assert_eq!(ids(&app), ["a-1", "b-2", "c-3"]);
        press(&mut app, key('/'));
        for c in "b-".chars() {
            press(&mut app, key(c));
        }
        assert!(app.editing);
        press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(ids(&app), ["b-2"]);
        press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert_eq!(ids(&app).len(), 3, "Esc clears the filter");
        for _ in 0..4 {
            press(&mut app, key('s'));
        }
        assert_eq!(STATE_FILTERS[app.state_filter], Some("CONFIRMED"));
        assert_eq!(ids(&app), ["a-1", "c-3"]);
    }

    #[test]
    fn enter_opens_the_detail_and_esc_goes_back() {
        let mut app = App::new(Duration::from_secs(1));
        update(
            &mut app,
            Action::Data(Box::new(snapshot(
                1.0,
                1,
                vec![row("a-1", "CONFIRMED", "x")],
            ))),
        );
        press(&mut app, key('2'));
        let effects = press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.view, View::Detail);
        assert!(effects.contains(&Effect::LoadDetail("a-1".into())));
        update(
            &mut app,
            Action::Detail(
                "a-1".into(),
                Ok(Box::new(crate::tui::example_trace("CONFIRMED", None))),
            ),
        );
        assert!(matches!(app.detail, Some((_, Load::Loaded(_)))));
        press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert_eq!(app.view, View::Sagas);
        assert!(app.detail.is_none());
    }

    #[test]
    fn replay_asks_first_and_refuses_what_was_replayed() {
        let mut app = App::new(Duration::from_secs(1));
        press(&mut app, key('3'));
        let item = |id: &str, replayed: bool| Item {
            id: id.into(),
            origin_topic: "oms.payment.commands".into(),
            message_type: "payment.authorize".into(),
            key: Some("o-1".into()),
            error_class: "handler.exhausted".into(),
            error: "gateway unavailable".into(),
            service: "payment".into(),
            failed_at: "t".into(),
            replayed,
        };
        update(
            &mut app,
            Action::Dlq(Ok(vec![item("d:0:1", false), item("d:0:2", true)])),
        );
        assert!(press(&mut app, key('r')).is_empty());
        assert_eq!(
            app.confirm.as_ref().map(|c| &c.effect),
            Some(&Effect::Replay("d:0:1".into()))
        );
        assert_eq!(press(&mut app, key('n')), Vec::<Effect>::new());
        assert!(app.confirm.is_none());
        press(&mut app, key('r'));
        assert_eq!(
            press(&mut app, key('y')),
            vec![Effect::Replay("d:0:1".into())]
        );
        press(&mut app, key('j'));
        press(&mut app, key('r'));
        assert!(app.confirm.is_none());
        assert!(app
            .message
            .as_deref()
            .is_some_and(|m| m.contains("already replayed")));
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, key(c));
        }
    }

    fn enter(app: &mut App) -> Vec<Effect> {
        press(app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
    }

    const ID: &str = "01a208f8-0186-74f7-9d14-5485ac29c81b";

    fn with_sagas() -> App {
        let mut app = App::new(Duration::from_secs(1));
        let rows: Vec<SagaRow> = (0..25)
            .map(|i| {
                row(
                    &format!("0190aaaa-0000-7000-8000-{i:012}"),
                    "AUTHORIZING",
                    &format!("t{i:02}"),
                )
            })
            .chain([row(ID, "AUTHORIZING", "t99")])
            .collect();
        update(&mut app, Action::Data(Box::new(snapshot(1.0, 1, rows))));
        press(&mut app, key('2'));
        app
    }

    #[test]
    fn jumps_and_pages_stay_inside_the_table() {
        let mut app = with_sagas();
        press(&mut app, key('G'));
        assert_eq!(app.selected, 25);
        press(&mut app, key('g'));
        assert_eq!(app.selected, 0);
        let page = |app: &mut App, code| press(app, KeyEvent::new(code, KeyModifiers::NONE));
        page(&mut app, KeyCode::PageDown);
        assert_eq!(app.selected, PAGE);
        page(&mut app, KeyCode::PageDown);
        page(&mut app, KeyCode::PageDown);
        assert_eq!(app.selected, 25);
        page(&mut app, KeyCode::PageUp);
        assert_eq!(app.selected, 25 - PAGE);
        page(&mut app, KeyCode::End);
        page(&mut app, KeyCode::Home);
        assert_eq!(app.selected, 0);
    }

    #[test]
    fn commands_are_checked_then_confirmed_then_run() {
        let mut app = with_sagas();
        // Newest first: the selected saga is ID. `c` fills in the command for it.
        press(&mut app, key('c'));
        assert_eq!(
            app.command.as_deref(),
            Some(format!("saga cancel {ID} ").as_str())
        );
        type_text(&mut app, "customer called");
        assert!(
            enter(&mut app).is_empty(),
            "nothing runs before the confirmation"
        );
        let confirm = app.confirm.clone().expect("asked");
        assert!(
            confirm.what.contains("omsctl saga cancel"),
            "{}",
            confirm.what
        );
        assert_eq!(
            press(&mut app, key('y')),
            vec![Effect::Run(
                ["saga", "cancel", ID, "--reason", "customer called", "--yes"]
                    .map(String::from)
                    .to_vec()
            )]
        );
        // Refused by the parser: a message, no confirmation, nothing run.
        press(&mut app, key(':'));
        type_text(&mut app, "chaos brokr stop");
        assert!(enter(&mut app).is_empty());
        assert!(app.confirm.is_none());
        assert!(
            app.message.as_deref().is_some_and(|m| m.contains("brokr")),
            "{:?}",
            app.message
        );
        // A trailing duration is --for; Esc drops a half-typed command.
        assert_eq!(
            command_args("chaos broker stop 30s", &app),
            Ok(["chaos", "broker", "stop", "--for", "30s"]
                .map(String::from)
                .to_vec())
        );
        press(&mut app, key(':'));
        type_text(&mut app, "saga");
        press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert!(app.command.is_none() && app.confirm.is_none());
        assert!(command_args("saga cancel", &App::new(Duration::from_secs(1))).is_err());
        assert!(command_args("saga cancel x", &app).is_ok_and(|a| a.contains(&ID.to_owned())));
        assert!(command_args("rm -rf /", &app).is_err());
        assert!(
            command_args("replay", &app).is_err(),
            "no dead letter selected"
        );
        // Saying no changes nothing.
        press(&mut app, key('t'));
        enter(&mut app);
        assert_eq!(press(&mut app, key('n')), Vec::<Effect>::new());
        assert!(app
            .message
            .as_deref()
            .is_some_and(|m| m.contains("nothing changed")));
    }

    #[test]
    fn the_raw_view_shows_the_selected_row_and_copies_it() {
        let mut app = with_sagas();
        press(&mut app, key('v'));
        let raw = app.raw.clone().expect("raw shown");
        assert!(raw.contains(&format!("\"orderId\": \"{ID}\"")), "{raw}");
        assert_eq!(press(&mut app, key('y')), vec![Effect::Copy(raw)]);
        press(&mut app, key('v'));
        assert!(app.raw.is_none());
    }

    #[test]
    fn the_logs_view_cycles_services_and_keeps_the_latest_answer() {
        let all: Vec<String> = log_services().map(|s| s.name().to_owned()).collect();
        assert_eq!(all.len(), oms_contracts::ServiceId::all().count());
        let mut app = App::new(Duration::from_secs(1));
        assert_eq!(
            press(&mut app, key('4')),
            vec![Effect::LoadLogs(all[0].clone())]
        );
        assert_eq!(
            press(&mut app, key(']')),
            vec![Effect::LoadLogs(all[1].clone())]
        );
        // A late answer for the previous service is dropped.
        update(
            &mut app,
            Action::Logs(all[0].clone(), Ok(vec!["old".into()])),
        );
        assert_eq!(app.logs.1, Load::Loading);
        update(
            &mut app,
            Action::Logs(all[1].clone(), Ok(vec!["line".into()])),
        );
        assert_eq!(app.logs.1, Load::Loaded(vec!["line".into()]));
        // Every service of the topology in turn (fulfillment too), then the first again.
        let mut seen = all[..2].to_vec();
        loop {
            match press(&mut app, key(']')).as_slice() {
                [Effect::LoadLogs(s)] if *s == all[0] => break,
                [Effect::LoadLogs(s)] => seen.push(s.clone()),
                other => panic!("{other:?}"),
            }
            assert!(seen.len() <= all.len(), "{seen:?}");
        }
        assert_eq!(seen, all);
        assert!(seen.iter().any(|s| s == "fulfillment"));
    }

    #[test]
    fn changed_rows_are_marked_fresh_for_a_few_polls() {
        let mut app = App::new(Duration::from_secs(1));
        update(
            &mut app,
            Action::Data(Box::new(snapshot(1.0, 1, vec![row("a", "RESERVING", "x")]))),
        );
        update(
            &mut app,
            Action::Data(Box::new(snapshot(2.0, 1, vec![row("a", "RESERVING", "x")]))),
        );
        assert!(!app.is_fresh("a"));
        update(
            &mut app,
            Action::Data(Box::new(snapshot(3.0, 1, vec![row("a", "CONFIRMED", "x")]))),
        );
        assert!(app.is_fresh("a"));
        for t in 4..8 {
            update(
                &mut app,
                Action::Data(Box::new(snapshot(
                    t as f64,
                    1,
                    vec![row("a", "CONFIRMED", "x")],
                ))),
            );
        }
        assert!(!app.is_fresh("a"));
    }
}
