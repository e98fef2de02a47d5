//! Drawing: reads the [`App`], never changes it.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::{self, Marker};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, LegendPosition, Paragraph, Row,
    Sparkline, Table, Tabs, Wrap,
};
use ratatui::Frame;

use super::app::{App, GroupLag, Load, View, STATE_FILTERS};
use oms_ops::dlq::Item as DlqItem;

/// Every key, for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("?", "show or hide this help"),
    ("Tab / 1-5", "switch view: overview, sagas, DLQ, logs, lag"),
    ("/", "filter sagas by text (Enter keeps it, Esc clears it)"),
    ("s", "cycle the saga-state filter"),
    ("o", "cycle the sort: newest, oldest, state"),
    ("j k / ↓ ↑", "move the selection"),
    ("g G / Home End", "first / last row"),
    ("PgUp PgDn", "a page up / down"),
    (
        "Enter",
        "open the timeline of the selected saga (or dead letter's order)",
    ),
    ("r", "replay the selected dead letter (asks first)"),
    (
        ":",
        "a command: replay, saga retry, saga cancel REASON, chaos … (asks first)",
    ),
    (
        "c / t",
        "cancel / retry the selected saga (fills in the command)",
    ),
    (
        "v",
        "raw JSON of the selected row (y copies it, v or Esc closes)",
    ),
    ("]", "logs view: the next service's log"),
    ("f", "freeze / resume updates"),
    ("Esc", "back: close help, filter, detail"),
    ("q / Ctrl-C", "quit"),
];

/// Draws the whole screen. `now` is seconds since the epoch (for staleness).
pub fn draw(frame: &mut Frame<'_>, app: &App, now: f64) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_tabs(frame, app, tabs);
    match app.view {
        View::Overview => draw_overview(frame, app, body),
        View::Sagas => draw_sagas(frame, app, body),
        View::Dlq => draw_dlq(frame, app, body),
        View::Detail => draw_detail(frame, app, body),
        View::Logs => draw_logs(frame, app, body),
        View::Lag => draw_lag(frame, app, body, now),
    }
    match &app.command {
        Some(line) => frame.render_widget(Paragraph::new(format!(":{line}▏")), status),
        None => draw_status(frame, app, status, now),
    }
    if app.help {
        draw_help(frame);
    }
    if let Some(raw) = &app.raw {
        let area = centered(frame.area(), 100, 30);
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(raw.as_str())
                .wrap(Wrap { trim: false })
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" raw JSON (y copies, v or Esc closes) "),
                ),
            area,
        );
    }
    if let Some(c) = &app.confirm {
        let area = centered(frame.area(), 100, 5);
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(c.what.clone()),
                Line::from("y: yes   n / Esc: cancel"),
            ])
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" confirm ")),
            area,
        );
    }
}

fn draw_logs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let service = super::app::log_service(app.logs.0);
    let title = format!(" {service} log (] next service) ");
    let lines: Vec<Line<'_>> = match &app.logs.1 {
        Load::Loaded(lines) => {
            // The newest lines that fit.
            let fit = usize::from(area.height.saturating_sub(2));
            lines[lines.len().saturating_sub(fit)..]
                .iter()
                .map(|l| Line::from(l.as_str()))
                .collect()
        }
        Load::Error(e) => vec![Line::from(format!("cannot read the log: {e}"))],
        Load::Loading | Load::Idle => vec![Line::from("loading ...")],
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_tabs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let titles: Vec<&str> = View::TABS.iter().map(|v| v.title()).collect();
    let selected = View::TABS.iter().position(|v| *v == app.view);
    let mut tabs =
        Tabs::new(titles).highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    if let Some(i) = selected {
        tabs = tabs.select(i);
    }
    frame.render_widget(tabs, area);
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect, now: f64) {
    let refresh = humantime::format_duration(app.refresh).to_string();
    let mut parts: Vec<Span<'_>> = Vec::new();
    match (&app.data, app.frozen) {
        (_, true) => parts.push(Span::raw("FROZEN (f resumes)").bold()),
        (Load::Loaded(s), false) => {
            let age = (now - s.fetched_at).max(0.0);
            let stale = age > 3.0 * app.refresh.as_secs_f64().max(1.0);
            let text = format!(
                "{} · refresh {refresh} · updated {age:.1}s ago",
                if stale { "STALE" } else { "LIVE" }
            );
            parts.push(if stale {
                Span::raw(text).bold()
            } else {
                Span::raw(text)
            });
            if !s.errors.is_empty() {
                parts.push(Span::raw(format!(
                    " · unreachable: {}",
                    s.errors.join(", ")
                )));
            }
        }
        (Load::Error(e), false) => parts.push(Span::raw(format!("ERROR: {e}"))),
        _ => parts.push(Span::raw(format!("loading · refresh {refresh}"))),
    }
    if let Some(m) = &app.message {
        parts.push(Span::raw(format!(" · {m}")));
    }
    parts.push(Span::raw(" · ? help · q quit"));
    frame.render_widget(Paragraph::new(Line::from(parts)), area);
}

fn draw_overview(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(s) = app.snapshot() else {
        frame.render_widget(
            Paragraph::new("waiting for the first data ...")
                .block(Block::default().borders(Borders::ALL).title(" overview ")),
            area,
        );
        return;
    };
    // Taller terminals give the top row (and its chart) more lines.
    let top_height = (area.height * 2 / 5).clamp(12, 16);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_height), Constraint::Min(4)]).areas(area);
    // Wide: counts, fulfillment, orders/s and the latency chart side by side. Narrow (an 80
    // column terminal): the boxes shrink to their text and the chart takes the orders/s panel's
    // place; its rates are a line of the counts box instead.
    let wide = top.width >= 118;
    let [counts, shipments, rest] = Layout::horizontal([
        Constraint::Length(if wide { 32 } else { 27 }),
        Constraint::Length(if wide { 26 } else { 25 }),
        Constraint::Min(20),
    ])
    .areas(top);
    let (throughput, latency) = if wide {
        let [t, l] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(rest);
        (Some(t), l)
    } else {
        (None, rest)
    };
    draw_latency(frame, app, latency);
    let fulfillment: Vec<Line<'_>> = oms_contracts::api::FulfillmentState::ALL
        .iter()
        .map(|state| {
            let n = s
                .by_fulfillment_state
                .iter()
                .find(|(st, _)| st == state.as_str())
                .map(|(_, n)| *n)
                .unwrap_or(0);
            Line::from(format!("{:<12} {n:>10}", state.as_str()))
        })
        .collect();
    frame.render_widget(
        Paragraph::new(fulfillment).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" fulfillment "),
        ),
        shipments,
    );

    let mut lines: Vec<Line<'_>> = STATE_FILTERS
        .iter()
        .flatten()
        .map(|state| {
            let n = s
                .by_state
                .iter()
                .find(|(st, _)| st == state)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            Line::from(format!("{state:<12} {n:>10}"))
        })
        .collect();
    lines.push(Line::from(format!("{:<12} {:>10}", "total", s.total())));
    lines.push(Line::from(format!("{:<12} {:>10}", "STUCK", s.stuck)).bold());
    if let Some((p50, p99)) = s.latency_ms {
        lines.push(Line::from(format!("p50 {p50:.0} ms · p99 {p99:.0} ms")));
    }
    if throughput.is_none() {
        let (created, confirmed, cancelled) = app.rates.back().copied().unwrap_or_default();
        lines.push(Line::from(format!(
            "orders/s {created} ✓{confirmed} ✗{cancelled}"
        )));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" sagas by state "),
        ),
        counts,
    );

    if let Some(throughput) = throughput {
        draw_throughput(frame, app, throughput);
    }

    // Narrow: the side panel as wide as its lines, the table's last column what is left.
    let [services, side] = Layout::horizontal([
        Constraint::Min(40),
        Constraint::Length(if wide { 44 } else { 34 }),
    ])
    .areas(bottom);
    let rows: Vec<Row<'_>> = s
        .services
        .iter()
        .map(|h| {
            Row::new(vec![
                Cell::from(h.name.clone()),
                Cell::from(match h.ready {
                    Some(true) => "ready".to_owned(),
                    Some(false) => "NOT READY".to_owned(),
                    None => "DOWN".to_owned(),
                }),
                Cell::from(
                    h.backlog
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(h.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into())),
                Cell::from(h.error.clone().unwrap_or_default()),
            ])
        })
        .collect();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(13),
                Constraint::Length(10),
                Constraint::Length(7),
                Constraint::Length(6),
                if wide {
                    Constraint::Min(10)
                } else {
                    Constraint::Fill(1)
                },
            ],
        )
        .header(Row::new(vec!["SERVICE", "HEALTH", "OUTBOX", "LAG", ""]).bold())
        .block(Block::default().borders(Borders::ALL).title(" services ")),
        services,
    );
    let mut side_lines: Vec<Line<'_>> = vec![Line::from("dead letters").bold()];
    match &s.dlq_depth {
        Some(depths) if depths.iter().any(|(_, n)| *n > 0) => {
            for (topic, n) in depths.iter().filter(|(_, n)| *n > 0) {
                side_lines.push(Line::from(format!("  {topic} {n}")));
            }
        }
        Some(_) => side_lines.push(Line::from("  none")),
        None => side_lines.push(Line::from("  unknown (broker)")),
    }
    if !s.brokers.is_empty() {
        side_lines.push(Line::from("brokers").bold());
        for b in &s.brokers {
            side_lines.push(Line::from(match b.up {
                Some(true) => format!("  {} up, leads {}", b.name, b.leads),
                Some(false) => format!("  {} DOWN", b.name),
                None => format!("  {} unknown", b.name),
            }));
        }
    }
    side_lines.push(Line::from("active faults").bold());
    if s.faults.is_empty() {
        side_lines.push(Line::from("  none"));
    }
    for f in &s.faults {
        side_lines.push(Line::from(format!("  {f}")));
    }
    frame.render_widget(
        Paragraph::new(side_lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" dlq · chaos "),
        ),
        side,
    );
}

/// Created, confirmed and cancelled orders per second, each with its sparkline.
fn draw_throughput(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default().borders(Borders::ALL).title(" orders/s ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(inner);
    let series: [(&str, Vec<u64>); 3] = [
        ("created", app.rates.iter().map(|r| r.0).collect()),
        ("confirmed", app.rates.iter().map(|r| r.1).collect()),
        ("cancelled", app.rates.iter().map(|r| r.2).collect()),
    ];
    for (i, (name, data)) in series.iter().enumerate() {
        let Some(area) = rows.get(i).copied() else {
            continue;
        };
        let [label, spark] =
            Layout::horizontal([Constraint::Length(16), Constraint::Min(4)]).areas(area);
        frame.render_widget(
            Paragraph::new(format!("{name} {}/s", data.last().copied().unwrap_or(0))),
            label,
        );
        let width = spark.width as usize;
        let tail = &data[data.len().saturating_sub(width)..];
        frame.render_widget(Sparkline::default().data(tail), spark);
    }
}

/// The latency chart: p50 and p99 of each poll over the last [`super::app::TREND`] polls,
/// milliseconds up, seconds before now across.
fn draw_latency(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" order latency ");
    let Some(&(last, _, _)) = app.latency.back() else {
        frame.render_widget(
            Paragraph::new("no finished orders yet")
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    };
    let first = app.latency.front().map_or(last, |p| p.0);
    let span = (last - first).max(app.refresh.as_secs_f64());
    let p50: Vec<(f64, f64)> = app.latency.iter().map(|p| (p.0 - last, p.1)).collect();
    let p99: Vec<(f64, f64)> = app.latency.iter().map(|p| (p.0 - last, p.2)).collect();
    let highest = app.latency.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max);
    let top = nice_ceiling(highest * 1.1);
    let datasets = vec![
        Dataset::default()
            .name("• p50")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&p50),
        Dataset::default()
            .name("⠒ p99")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Yellow))
            .data(&p99),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([-span, 0.0])
                .labels([format!("-{}", ago(span)), "now".to_owned()]),
        )
        .y_axis(
            Axis::default()
                .title("ms")
                .bounds([0.0, top])
                .labels([0.0, top / 2.0, top].map(ms_label)),
        )
        // The legend where the oldest points are, shown whenever it fits.
        .legend_position(Some(LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Percentage(50), Constraint::Percentage(100)));
    frame.render_widget(chart, area);
}

/// The smallest of 1, 1.5, 2, 2.5 ... 9.5 times a power of ten that is at least `v` (at least 1):
/// a round top for the y axis.
pub(super) fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let step = 10f64.powf(v.log10().floor());
    (v / step * 2.0).ceil() / 2.0 * step
}

fn ms_label(v: f64) -> String {
    if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A span of seconds as the x axis shows it: `45s`, `4m`, `2h`.
pub(super) fn ago(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", (s + 30) / 60),
        _ => format!("{}h", (s + 1800) / 3600),
    }
}

/// A bar `width` cells long for `value` out of `max`, in eighths of a cell; a value above zero
/// shows at least an eighth.
pub(super) fn bar(value: i64, max: i64, width: usize) -> String {
    if value <= 0 || max <= 0 || width == 0 {
        return String::new();
    }
    let eighths = (value.min(max) as f64 / max as f64 * (width * 8) as f64).round() as usize;
    let eighths = eighths.max(1);
    let partial = [
        "",
        symbols::block::ONE_EIGHTH,
        symbols::block::ONE_QUARTER,
        symbols::block::THREE_EIGHTHS,
        symbols::block::HALF,
        symbols::block::FIVE_EIGHTHS,
        symbols::block::THREE_QUARTERS,
        symbols::block::SEVEN_EIGHTHS,
    ];
    let mut out = symbols::block::FULL.repeat(eighths / 8);
    out.push_str(partial[eighths % 8]);
    out
}

/// The last `width` values as a one-line sparkline scaled to the largest of them: `▁` is no lag,
/// anything above zero is `▂` or higher.
pub(super) fn spark<'a>(values: impl DoubleEndedIterator<Item = &'a i64>, width: usize) -> String {
    let mut shown: Vec<i64> = values.rev().take(width).map(|v| (*v).max(0)).collect();
    shown.reverse();
    let max = shown.iter().copied().max().unwrap_or(0);
    let levels = [
        symbols::bar::ONE_EIGHTH,
        symbols::bar::ONE_QUARTER,
        symbols::bar::THREE_EIGHTHS,
        symbols::bar::HALF,
        symbols::bar::FIVE_EIGHTHS,
        symbols::bar::THREE_QUARTERS,
        symbols::bar::SEVEN_EIGHTHS,
        symbols::bar::FULL,
    ];
    shown
        .iter()
        .map(|v| {
            if *v == 0 || max == 0 {
                levels[0]
            } else {
                levels[((*v as f64 / max as f64 * 7.0).ceil() as usize).clamp(1, 7)]
            }
        })
        .collect()
}

/// A row of the lag table: a group or one topic it reads.
enum LagRow<'a> {
    Group(&'a GroupLag),
    Topic(&'a str, i64),
}

/// The rows of the lag table that fit `height`: every group with its topics; when that is too
/// long, the topics without lag go first, then every topic.
fn lag_rows(groups: &[GroupLag], height: usize) -> Vec<LagRow<'_>> {
    let rows = |keep: &dyn Fn(i64) -> bool| -> Vec<LagRow<'_>> {
        groups
            .iter()
            .flat_map(|g| {
                std::iter::once(LagRow::Group(g)).chain(
                    g.topics
                        .iter()
                        .filter(|(_, n)| keep(*n))
                        .map(|(t, n)| LagRow::Topic(t.as_str(), *n)),
                )
            })
            .collect()
    };
    let all = rows(&|_| true);
    if all.len() <= height {
        return all;
    }
    let lagging = rows(&|n| n > 0);
    if lagging.len() <= height {
        return lagging;
    }
    rows(&|_| false)
}

/// Each consumer group's lag and the topics it is made of, with a bar against the largest and
/// the group's trend over the last reads of the broker.
fn draw_lag(frame: &mut Frame<'_>, app: &App, area: Rect, now: f64) {
    let snapshot = app.snapshot();
    let reading = snapshot.and_then(|s| s.lag.as_ref());
    let error = snapshot.and_then(|s| s.broker_error.as_deref());
    let title = match reading {
        Some(r) => format!(
            " consumer lag · read {} ago · broker read every {} ",
            ago((now - r.at).max(0.0)),
            humantime::format_duration(app.refresh * 3)
        ),
        None => " consumer lag ".to_owned(),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let Some(reading) = reading else {
        let text = match (snapshot, error) {
            (None, _) => "waiting for the first data ...".to_owned(),
            (Some(_), Some(e)) => format!("cannot read the consumer lag: {e}"),
            (Some(_), None) => "reading the consumer groups ...".to_owned(),
        };
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [note, table] = Layout::vertical([
        Constraint::Length(u16::from(error.is_some()) * 2),
        Constraint::Min(1),
    ])
    .areas(inner);
    if let Some(e) = error {
        frame.render_widget(
            Paragraph::new(format!("broker: {e} (the lag below is its last answer)"))
                .wrap(Wrap { trim: true })
                .bold(),
            note,
        );
    }
    if reading.groups.is_empty() {
        frame.render_widget(Paragraph::new("no consumer group reads a topic"), table);
        return;
    }
    let widths = [
        Constraint::Length(26),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    // The columns' widths as the table will lay them out (one space between columns).
    let [_, _, bar_area, trend_area] = Layout::horizontal(widths).spacing(1).areas(table);
    let max = reading
        .groups
        .iter()
        .map(GroupLag::total)
        .max()
        .unwrap_or(0);
    let rows: Vec<Row<'_>> = lag_rows(&reading.groups, usize::from(table.height.saturating_sub(1)))
        .into_iter()
        .map(|row| match row {
            LagRow::Group(g) => Row::new(vec![
                Cell::from(g.group.clone()),
                Cell::from(Line::from(g.total().to_string()).right_aligned()),
                Cell::from(bar(g.total(), max, bar_area.width.into())),
                Cell::from(spark(
                    app.lag_trend.get(&g.group).into_iter().flatten(),
                    trend_area.width.into(),
                )),
            ])
            .bold(),
            LagRow::Topic(topic, n) => Row::new(vec![
                Cell::from(format!("  {topic}")),
                Cell::from(Line::from(n.to_string()).right_aligned()),
                Cell::from(bar(n, max, bar_area.width.into())),
                Cell::from(""),
            ]),
        })
        .collect();
    let reads = app.lag_trend.values().map(|t| t.len()).max().unwrap_or(0);
    frame.render_widget(
        Table::new(rows, widths).header(
            Row::new(vec![
                Cell::from("GROUP / TOPIC"),
                Cell::from(Line::from("LAG").right_aligned()),
                Cell::from(""),
                Cell::from(format!("TREND ({reads} reads)")),
            ])
            .bold(),
        ),
        table,
    );
}

fn draw_sagas(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let visible = app.visible_sagas();
    let total = app.snapshot().map(|s| s.sagas.len()).unwrap_or(0);
    let state = STATE_FILTERS
        .get(app.state_filter)
        .copied()
        .flatten()
        .unwrap_or("ALL");
    let filter = if app.editing {
        format!("/{}_", app.filter)
    } else if app.filter.is_empty() {
        "-".into()
    } else {
        app.filter.clone()
    };
    let title = format!(
        " recent sagas · state {state} · filter {filter} · sort {:?} · {} of {total} ",
        app.sort,
        visible.len()
    );
    let rows: Vec<Row<'_>> = visible
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mark = if app.is_fresh(&r.order_id) { "*" } else { " " };
            let mut row = Row::new(vec![
                Cell::from(format!("{mark}{}", r.order_id)),
                Cell::from(if r.stuck {
                    format!("{} STUCK", r.state)
                } else {
                    r.state.clone()
                }),
                Cell::from(r.shipment.clone()),
                Cell::from(format!("{}s", r.age_secs)),
                Cell::from(r.last_step.clone()),
                Cell::from(r.customer.clone()),
                Cell::from(r.total.clone()),
            ]);
            if i == app.selected {
                row = row.style(Style::default().add_modifier(Modifier::REVERSED));
            } else if mark == "*" {
                row = row.style(Style::default().add_modifier(Modifier::BOLD));
            }
            row
        })
        .collect();
    let skip = app
        .selected
        .saturating_sub(area.height.saturating_sub(4) as usize);
    frame.render_widget(
        Table::new(
            rows.into_iter().skip(skip),
            [
                Constraint::Length(38),
                Constraint::Length(17),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Min(20),
                Constraint::Length(12),
                Constraint::Length(12),
            ],
        )
        .header(
            Row::new(vec![
                "ORDER",
                "STATE",
                "SHIPMENT",
                "AGE",
                "LAST STEP",
                "CUSTOMER",
                "TOTAL",
            ])
            .bold(),
        )
        .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_dlq(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" dead letters (Enter: order timeline, r: replay) ");
    let items = match &app.dlq {
        Load::Loaded(items) => items,
        Load::Error(e) => {
            frame.render_widget(
                Paragraph::new(format!("cannot read the DLQs: {e}")).block(block),
                area,
            );
            return;
        }
        _ => {
            frame.render_widget(
                Paragraph::new("reading the DLQ topics ...").block(block),
                area,
            );
            return;
        }
    };
    let [groups, table] = Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let mut by_class: std::collections::BTreeMap<(&str, &str), usize> =
        std::collections::BTreeMap::new();
    for i in items {
        *by_class
            .entry((i.error_class.as_str(), i.origin_topic.as_str()))
            .or_default() += 1;
    }
    let summary: Vec<String> = by_class
        .iter()
        .map(|((class, origin), n)| format!("{class} @ {origin}: {n}"))
        .collect();
    frame.render_widget(
        Paragraph::new(if summary.is_empty() {
            "no dead letters".to_owned()
        } else {
            summary.join("  ·  ")
        })
        .wrap(Wrap { trim: true })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" by error and origin "),
        ),
        groups,
    );
    let rows = dead_letter_rows(items, app.selected, |d| {
        vec![
            d.id.clone(),
            d.message_type.clone(),
            d.key.clone().unwrap_or_default(),
            d.error_class.clone(),
            d.error.clone(),
            if d.replayed { "yes" } else { "no" }.into(),
        ]
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(34),
                Constraint::Length(19),
                Constraint::Length(37),
                Constraint::Length(18),
                Constraint::Min(10),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(vec!["ENTRY", "TYPE", "KEY", "CLASS", "ERROR", "REPLAYED"]).bold())
        .block(block),
        table,
    );
}

fn draw_detail(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some((id, load)) = &app.detail else {
        return;
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" order {id} (Esc back) "));
    let trace = match load {
        Load::Loaded(trace) => trace,
        Load::Error(e) => {
            frame.render_widget(
                Paragraph::new(format!("cannot trace: {e}")).block(block),
                area,
            );
            return;
        }
        _ => {
            frame.render_widget(Paragraph::new("tracing ...").block(block), area);
            return;
        }
    };
    let dead = app.dlq_of(id);
    let dlq_height = if dead.is_empty() {
        0
    } else {
        dead.len() as u16 + 2
    };
    let [verdict, timeline, dlq] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(3),
        Constraint::Length(dlq_height),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(format!("{}\n{}", trace.verdict, trace.trace_line()))
            .wrap(Wrap { trim: true })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" order {id} (Esc back) ")),
            ),
        verdict,
    );
    let rows: Vec<Row<'_>> = trace
        .timeline
        .iter()
        .map(|e| {
            Row::new(vec![
                e.at.get(11..23).unwrap_or(&e.at).to_owned(),
                e.source.clone(),
                e.what.clone(),
            ])
        })
        .collect();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(13),
                Constraint::Length(13),
                Constraint::Min(20),
            ],
        )
        .header(Row::new(vec!["TIME", "SOURCE", "EVENT"]).bold())
        .block(Block::default().borders(Borders::ALL).title(" timeline ")),
        timeline,
    );
    if !dead.is_empty() {
        let rows = dead_letter_rows(dead.iter().copied(), app.selected, |d| {
            vec![
                d.id.clone(),
                d.error_class.clone(),
                d.error.clone(),
                if d.replayed { "replayed" } else { "r: replay" }.into(),
            ]
        });
        frame.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(34),
                    Constraint::Length(18),
                    Constraint::Min(10),
                    Constraint::Length(10),
                ],
            )
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" dead letters of this order "),
            ),
            dlq,
        );
    }
}

/// Rows of a dead-letter table (the DLQ view and an order's dead letters), the selected one
/// reversed; `cells` gives each entry's columns.
fn dead_letter_rows<'a>(
    items: impl IntoIterator<Item = &'a DlqItem>,
    selected: usize,
    cells: impl Fn(&'a DlqItem) -> Vec<String>,
) -> Vec<Row<'a>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let row = Row::new(cells(d));
            if i == selected {
                row.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect()
}

fn draw_help(frame: &mut Frame<'_>) {
    let area = centered(frame.area(), 92, KEYS.len() as u16 + 5);
    frame.render_widget(Clear, area);
    let mut lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(k, what)| Line::from(format!("  {k:<14} {what}")))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(
        "  data: polled, never more than one request in flight per source",
    ));
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (? or Esc closes) "),
        ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::super::app::{
        Action, App, BrokerNode, GroupLag, Health, LagReading, SagaRow, Snapshot,
    };
    use super::super::update::update;
    use super::*;

    fn render(app: &App) -> String {
        render_at(app, 140, 40)
    }

    fn render_at(app: &App, width: u16, height: u16) -> String {
        let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
            Ok(t) => t,
            Err(e) => panic!("test terminal: {e}"),
        };
        if let Err(e) = terminal.draw(|f| draw(f, app, 1_000.5)) {
            panic!("draw: {e}");
        }
        let buffer = terminal.backend().buffer();
        let width = buffer.area.width as usize;
        buffer
            .content()
            .chunks(width)
            .map(|line| line.iter().map(|c| c.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The fixture's data as a poll at `at` brings it, with `confirmed` sagas and this latency.
    fn fixed_snapshot(at: f64, confirmed: i64, latency_ms: (f64, f64)) -> Snapshot {
        Snapshot {
            by_state: vec![
                ("AUTHORIZING".into(), 4),
                ("CANCELLED".into(), 17),
                ("CONFIRMED".into(), confirmed),
                ("RELEASING".into(), 2),
                ("RESERVING".into(), 3),
            ],
            by_fulfillment_state: vec![("DELIVERED".into(), 1200), ("PICKED".into(), 7)],
            stuck: 1,
            sagas: vec![SagaRow {
                order_id: "01a208f8-0186-74f7-9d14-5485ac29c81b".into(),
                state: "CANCELLED".into(),
                created_at: "2026-11-23T15:13:20Z".into(),
                age_secs: 12,
                last_step: "stock released; order cancelled".into(),
                customer: "alice".into(),
                total: "39.99 EUR".into(),
                stuck: false,
                shipment: "REFUNDING".into(),
            }],
            services: vec![
                Health {
                    name: "order".into(),
                    ready: Some(true),
                    backlog: Some(0),
                    lag: Some(2),
                    error: None,
                },
                Health {
                    name: "payment".into(),
                    ready: None,
                    backlog: None,
                    lag: None,
                    error: Some("unreachable".into()),
                },
            ],
            dlq_depth: Some(vec![("oms.payment.commands.dlq".into(), 3)]),
            brokers: vec![
                BrokerNode {
                    name: "broker-1".into(),
                    up: Some(true),
                    leads: 21,
                },
                BrokerNode {
                    name: "broker-2".into(),
                    up: Some(false),
                    leads: 0,
                },
            ],
            faults: vec!["payment gateway: errorRate 1".into()],
            latency_ms: Some(latency_ms),
            lag: None,
            broker_error: None,
            fetched_at: at,
            errors: vec!["payment".into()],
        }
    }

    fn fixed() -> App {
        let mut app = App::new(Duration::from_secs(1));
        let snapshot = fixed_snapshot(1_000.0, 1234, (71.0, 310.0));
        update(&mut app, Action::Data(Box::new(snapshot)));
        app
    }

    /// Every consumer group of the OMS and the topics it reads, with `k` scaling the lag.
    fn lag_reading(at: f64, k: i64) -> LagReading {
        let group = |name: &str, topics: &[(&str, i64)]| GroupLag {
            group: name.into(),
            topics: topics.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
        };
        LagReading {
            at,
            groups: vec![
                group("oms-inventory", &[("oms.inventory.commands", 25 * k)]),
                group("oms-payment", &[("oms.payment.commands", 0)]),
                group("oms-fulfillment", &[("oms.fulfillment.commands", 3)]),
                group("oms-order", &[("oms.order.events", 0)]),
                group(
                    "oms-saga",
                    &[
                        ("oms.order.events", 7),
                        ("oms.inventory.events", 0),
                        ("oms.payment.events", 5),
                        ("oms.fulfillment.events", 0),
                    ],
                ),
                group(
                    "oms-notification",
                    &[("oms.order.events", 1), ("oms.fulfillment.events", 0)],
                ),
            ],
        }
    }

    /// The fixture after a minute of polls a second apart: orders confirmed at an uneven pace,
    /// latency rising to the fixture's p50 71 ms and p99 310 ms, and a read of the broker every
    /// third poll with the inventory group falling behind (to 250) and catching up a little.
    fn charted() -> App {
        let mut app = App::new(Duration::from_secs(1));
        for i in 0..60_i64 {
            let left = 59 - i;
            let confirmed = 1234 - left * 4 - left % 3;
            let x = i as f64 / 59.0;
            let latency = (50.0 + 21.0 * x, 150.0 + 160.0 * x * x);
            let mut s = fixed_snapshot(941.0 + i as f64, confirmed, latency);
            let read = 941.0 + (i - i % 3) as f64 - 0.5;
            let k = if i < 45 { i / 3 + 1 } else { 10 };
            s.lag = Some(lag_reading(read, k));
            update(&mut app, Action::Data(Box::new(s)));
        }
        app
    }

    #[test]
    fn overview_shows_counts_health_dlq_and_faults() {
        let text = render(&fixed());
        for needle in [
            "CONFIRMED          1234",
            "CANCELLED            17",
            "total              1260",
            "STUCK                 1",
            "p50 71 ms · p99 310 ms",
            "DELIVERED          1200",
            "PICKED                7",
            "CANCELLING            0",
            "oms.payment.commands.dlq 3",
            "broker-1 up, leads 21",
            "broker-2 DOWN",
            "payment gateway: errorRate 1",
            "LIVE · refresh 1s · updated 0.5s ago",
            "unreachable: payment",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.contains("payment") && l.contains("DOWN") && l.contains("unreachable")),
            "payment not shown as down:\n{text}"
        );
    }

    /// The README's picture of the TUI is the Overview of this fixture as it renders: a layout
    /// change that is not shown there fails here (`OMS_BLESS=1` redraws it).
    #[test]
    fn the_readme_shows_the_overview_as_it_renders() {
        let picture: String = render_at(&charted(), 118, 30)
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap_or_default();
        let (start, end) = ("<!-- tui:start -->\n```text\n", "```\n<!-- tui:end -->");
        let (Some(a), Some(b)) = (readme.find(start), readme.find(end)) else {
            panic!("README.md lacks the {start:?} ... {end:?} block");
        };
        let shown = &readme[a + start.len()..b];
        if std::env::var_os("OMS_BLESS").is_some() && shown != picture {
            let redrawn = format!("{}{picture}{}", &readme[..a + start.len()], &readme[b..]);
            if let Err(e) = std::fs::write(&path, redrawn) {
                panic!("writing README.md: {e}");
            }
            return;
        }
        assert!(
            shown == picture,
            "README.md's TUI picture is stale; `OMS_BLESS=1 cargo test -p omsctl readme` redraws it:\n{picture}"
        );
    }

    /// The lines of `text` between the first line containing `from` and the first after it
    /// containing `to`, from the column `from` starts at (one panel of the screen).
    fn panel(text: &str, from: &str, width: usize) -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let Some((row, col)) = lines
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.find(from).map(|c| (i, l[..c].chars().count())))
        else {
            panic!("no {from:?} in\n{text}");
        };
        lines[row..]
            .iter()
            .take_while(|l| l.chars().nth(col.saturating_sub(2)).is_some())
            .map(|l| l.chars().skip(col).take(width).collect())
            .collect()
    }

    #[test]
    fn the_overview_charts_p50_and_p99_at_80x24_and_larger() {
        for (width, height) in [(80, 24), (120, 40), (140, 40)] {
            let text = render_at(&charted(), width, height);
            let at = format!("at {width}x{height}:\n{text}");
            for needle in [
                // The chart: its title, legend, y axis (0 to a round figure above the highest
                // p99 of 310) with its unit, and x axis (the minute of polls up to now).
                "order latency",
                "• p50",
                "⠒ p99",
                "350│ms",
                "175│",
                "0  │",
                "-59s",
                "now│",
                // The text the tests and the tmux test read stays.
                "p50 71 ms · p99 310 ms",
                "total              1260",
                "CONFIRMED          1234",
                "DELIVERED          1200",
                "payment       DOWN",
                "oms.payment.commands.dlq 3",
                "broker-2 DOWN",
                "payment gateway: errorRate 1",
            ] {
                assert!(text.contains(needle), "missing {needle:?} {at}");
            }
            // Both series are drawn: p50 in dots, p99 in braille, inside the chart's box.
            let chart = panel(&text, "order latency", 30).join("\n");
            assert!(chart.matches('•').count() > 10, "no p50 line {at}");
            assert!(
                chart
                    .chars()
                    .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
                    .count()
                    > 10,
                "no p99 line {at}"
            );
            // The rates: sparklines beside the chart when wide, one line of the counts when not.
            if width >= 118 {
                assert!(text.contains("confirmed 5/s"), "{at}");
            } else {
                assert!(text.contains("orders/s 5 ✓5 ✗0"), "{at}");
            }
        }
    }

    #[test]
    fn the_chart_waits_for_finished_orders_and_keeps_its_axes_round() {
        let mut app = App::new(Duration::from_secs(1));
        let mut s = fixed_snapshot(1_000.0, 1, (0.0, 0.0));
        s.latency_ms = None;
        update(&mut app, Action::Data(Box::new(s)));
        let text = render_at(&app, 80, 24);
        assert!(text.contains("no finished orders yet"), "{text}");
        assert!(!text.contains("• p50"), "{text}");
        assert_eq!(nice_ceiling(341.0), 350.0);
        assert_eq!(nice_ceiling(1_001.0), 1_500.0);
        assert_eq!(nice_ceiling(95.0), 95.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(ago(59.4), "59s");
        assert_eq!(ago(239.0), "4m");
        assert_eq!(ago(7_200.0), "2h");
    }

    #[test]
    fn the_lag_view_lists_groups_topics_bars_and_trends() {
        let mut app = charted();
        update(&mut app, Action::Show(View::Lag));
        for (width, height) in [(80, 24), (120, 40)] {
            let text = render_at(&app, width, height);
            let at = format!("at {width}x{height}:\n{text}");
            assert!(text.contains("5 Lag"), "{at}");
            assert!(
                text.contains("consumer lag · read 3s ago · broker read every 3s"),
                "{at}"
            );
            assert!(text.contains("GROUP / TOPIC"), "{at}");
            assert!(text.contains("TREND (20 reads)"), "{at}");
            let line = |start: &str| {
                text.lines()
                    .find(|l| l.trim_start_matches('│').starts_with(start))
                    .unwrap_or_else(|| panic!("no line {start:?} {at}"))
                    .trim_start_matches('│')
                    .trim_end_matches(['│', ' '])
                    .to_owned()
            };
            // Groups with their totals; topics indented under them.
            let inventory = line("oms-inventory ");
            assert!(inventory.contains(" 250 "), "{inventory}");
            assert!(line("oms-saga ").contains(" 12 "), "{at}");
            assert!(line("  oms.payment.events ").contains(" 5 "), "{at}");
            assert!(line("  oms.fulfillment.commands ").contains(" 3 "), "{at}");
            let groups: Vec<String> = text
                .lines()
                .map(|l| l.trim_start_matches('│'))
                .filter(|l| l.starts_with("oms-"))
                .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(
                groups,
                [
                    "oms-inventory",
                    "oms-payment",
                    "oms-fulfillment",
                    "oms-order",
                    "oms-saga",
                    "oms-notification"
                ],
                "{at}"
            );
            // The group furthest behind has the full bar; no lag, no bar.
            assert!(inventory.contains(&"█".repeat(20)), "{inventory}");
            assert!(!line("oms-payment ").contains('█'), "{at}");
            // Its trend: it fell behind for 15 reads, then caught up a little.
            assert!(inventory.ends_with("▂▂▃▃▄▄▅▅▆▆▇▇███▆▆▆▆▆"), "{inventory}");
            assert!(line("oms-payment ").ends_with(&"▁".repeat(20)), "{at}");
        }
    }

    #[test]
    fn a_broker_that_cannot_be_read_is_a_message_in_the_lag_view() {
        // Never read: the error alone.
        let mut app = fixed();
        let mut s = fixed_snapshot(1_000.0, 1234, (71.0, 310.0));
        s.broker_error = Some("brokers unreachable: localhost:9092".into());
        update(&mut app, Action::Data(Box::new(s.clone())));
        update(&mut app, Action::Show(View::Lag));
        let text = render_at(&app, 80, 24);
        assert!(
            text.contains("cannot read the consumer lag: brokers unreachable: localhost:9092"),
            "{text}"
        );
        // Read once, then failing: the error in bold above the last answer.
        let mut app = charted();
        update(&mut app, Action::Data(Box::new(s)));
        update(&mut app, Action::Show(View::Lag));
        let text = render_at(&app, 80, 24);
        assert!(
            text.contains("broker: brokers unreachable: localhost:9092"),
            "{text}"
        );
        assert!(text.contains("read 3s ago"), "{text}");
        assert!(text.contains("oms-inventory"), "{text}");
        // Not read yet, no error: it says it is reading.
        let text = render_at(&fixed(), 80, 24);
        assert!(!text.contains("consumer lag"), "{text}");
        let mut app = fixed();
        update(&mut app, Action::Show(View::Lag));
        assert!(render_at(&app, 80, 24).contains("reading the consumer groups"));
    }

    #[test]
    fn a_short_lag_view_drops_the_topics_without_lag_first() {
        let reading = lag_reading(1.0, 1);
        let count = |rows: &[LagRow<'_>]| {
            let topics = rows
                .iter()
                .filter(|r| matches!(r, LagRow::Topic(..)))
                .count();
            (rows.len() - topics, topics)
        };
        assert_eq!(count(&lag_rows(&reading.groups, 16)), (6, 10));
        // Inventory, fulfillment, saga twice and notification lag.
        assert_eq!(count(&lag_rows(&reading.groups, 15)), (6, 5));
        assert_eq!(count(&lag_rows(&reading.groups, 10)), (6, 0));
        let text = render_at(
            &{
                let mut app = charted();
                update(&mut app, Action::Show(View::Lag));
                app
            },
            80,
            16,
        );
        assert!(text.contains("  oms.order.events"), "{text}");
        assert!(!text.contains("  oms.payment.commands"), "{text}");
    }

    #[test]
    fn bars_and_sparklines_scale_to_their_largest() {
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(5, 10, 4), "██");
        assert_eq!(bar(1, 16, 2), "▏");
        assert_eq!(bar(1, 1_000_000, 10), "▏", "any lag shows");
        assert_eq!(bar(0, 10, 4), "");
        assert_eq!(bar(3, 0, 4), "");
        assert_eq!(bar(9, 8, 3), "███", "never longer than the column");
        let v = [0_i64, 3, 6, 0, 12];
        assert_eq!(spark(v.iter(), 10), "▁▃▅▁█");
        assert_eq!(spark(v.iter(), 2), "▁█", "the newest that fit");
        assert_eq!(spark([0_i64, 0].iter(), 5), "▁▁");
        assert_eq!(
            spark([1_i64, 1000].iter(), 5),
            "▂█",
            "above zero is above the floor"
        );
    }

    #[test]
    fn every_view_draws_in_a_tiny_terminal() {
        for view in [
            View::Overview,
            View::Sagas,
            View::Dlq,
            View::Logs,
            View::Lag,
        ] {
            let mut app = charted();
            update(&mut app, Action::Show(view));
            for (w, h) in [(1, 1), (10, 4), (30, 8), (60, 12)] {
                render_at(&app, w, h);
            }
        }
    }

    #[test]
    fn sagas_view_lists_rows_with_filter_state() {
        let mut app = fixed();
        update(&mut app, Action::Show(View::Sagas));
        let text = render(&app);
        assert!(
            text.contains("01a208f8-0186-74f7-9d14-5485ac29c81b"),
            "{text}"
        );
        assert!(text.contains("stock released; order cancelled"));
        assert!(text.contains("REFUNDING"), "{text}");
        assert!(
            text.contains("state ALL · filter - · sort Newest · 1 of 1"),
            "{text}"
        );
        update(&mut app, Action::StartFilter);
        update(&mut app, Action::FilterChar('z'));
        let text = render(&app);
        assert!(text.contains("filter /z_"), "{text}");
        assert!(text.contains("0 of 1"));
    }

    #[test]
    fn help_overlay_lists_every_key() {
        let mut app = fixed();
        update(&mut app, Action::ToggleHelp);
        let text = render(&app);
        for (key, what) in KEYS {
            assert!(
                text.contains(key) && text.contains(what),
                "help lacks {key}: {what}\n{text}"
            );
        }
    }

    #[test]
    fn detail_and_frozen_status_render() {
        let mut app = fixed();
        update(&mut app, Action::Show(View::Sagas));
        update(&mut app, Action::Open);
        let id = "01a208f8-0186-74f7-9d14-5485ac29c81b".to_owned();
        update(
            &mut app,
            Action::Detail(
                id.clone(),
                Ok(Box::new(crate::tui::example_trace(
                    "CANCELLED (PAYMENT_DECLINED): payment declined: INSUFFICIENT_FUNDS",
                    Some("0af7651916cd43dd8448eb211c80319c"),
                ))),
            ),
        );
        update(&mut app, Action::ToggleFreeze);
        let text = render(&app);
        assert!(text.contains(&format!("order {id}")), "{text}");
        assert!(text.contains("POST /orders accepted (PENDING)"));
        assert!(text.contains("15:13:20.774"));
        assert!(text.contains("CANCELLED (PAYMENT_DECLINED)"));
        assert!(
            text.contains("trace: 0af7651916cd43dd8448eb211c80319c"),
            "{text}"
        );
        assert!(text.contains("FROZEN (f resumes)"));
    }
}
