//! `bench --plot`: a picture of a run, as SVG: the latency distribution by percentile (saga and
//! delivery) above, orders per second over the run below; a previous run can be drawn beside it.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{nines, Latency, Report};

/// Width and height of the picture, in pixels.
const SIZE: (u32, u32) = (1000, 900);
/// Where the latency panel ends and the throughput panel starts, below the title.
const LATENCY_PANEL_HEIGHT: u32 = 430;

const SAGA: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
const DELIVERY: RGBColor = RGBColor(0xD6, 0x27, 0x28);
const ACCEPTED: RGBColor = RGBColor(0x94, 0x67, 0xBD);
const FINISHED: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);
const DELIVERED: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const LOAD_STOPS: RGBColor = RGBColor(0x80, 0x80, 0x80);
/// A baseline's lines: the same colours, fainter and thinner.
const BASELINE_OPACITY: f64 = 0.45;

/// Tick labels and legend entries; axis descriptions; panel captions; the title.
const LABELS: (&str, u32) = ("sans-serif", 15);
const AXES: (&str, u32) = ("sans-serif", 17);
const CAPTIONS: (&str, u32) = ("sans-serif", 21);
const TITLE: (&str, u32) = ("sans-serif", 25);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A previous run drawn in the same picture as a second series of each line.
#[derive(Debug, Clone, Copy)]
pub struct Baseline<'a> {
    /// How the legend names it (e.g. the report's file name).
    pub label: &'a str,
    /// Its report (`bench -o json`); one without the curves or the per-second counts of newer
    /// reports is drawn from its p50, p90, p99, p99.9 and max, without throughput.
    pub report: &'a Report,
}

/// One line of a panel.
struct Line {
    label: String,
    style: ShapeStyle,
    points: Vec<(f64, f64)>,
    /// Dots at its points (the percentiles a latency curve was taken at).
    dots: bool,
}

/// Where a latency's points go on the percentile panel: (log scale of 1 - p, ms), the report's
/// curve (or, from an older report, its p50, p90, p99 and p99.9) and then the max, where the
/// samples end (1 - p = 1 / count).
pub(super) fn latency_points(l: &Latency) -> Vec<(f64, f64)> {
    let end = (l.count.max(1) as f64).log10();
    let known = if l.curve.is_empty() {
        vec![(50.0, l.p50), (90.0, l.p90), (99.0, l.p99), (99.9, l.p999)]
    } else {
        l.curve.clone()
    };
    let mut points: Vec<(f64, f64)> = known
        .into_iter()
        .filter(|(p, _)| nines(*p) + 1e-9 < end)
        .map(|(p, ms)| (nines(p), ms))
        .collect();
    points.push((end, l.max));
    points
}

/// Counts per one-second bucket as a step line: each bucket flat over its second.
fn steps(counts: impl Iterator<Item = u64>) -> Vec<(f64, f64)> {
    counts
        .enumerate()
        .flat_map(|(i, n)| [(i as f64, n as f64), (i as f64 + 1.0, n as f64)])
        .collect()
}

/// The label of a tick on the log scale of 1 - p: 0 → 0 %, 1 → 90 %, 3 → 99.9 %.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as i64 - 2).clamp(0, 6) as usize;
    format!("{p:.decimals$}%")
}

/// A tick label on an axis that goes up to about `top`: no decimals a reader does not need.
fn number(v: f64, top: f64) -> String {
    match top {
        t if t >= 20.0 => format!("{v:.0}"),
        t if t >= 2.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn style(color: RGBColor, baseline: bool) -> ShapeStyle {
    if baseline {
        color.mix(BASELINE_OPACITY).stroke_width(1)
    } else {
        color.stroke_width(2)
    }
}

fn latency_lines(r: &Report, baseline: Option<Baseline>) -> Vec<Line> {
    let mut lines = Vec::new();
    let runs = std::iter::once((r, None)).chain(baseline.map(|b| (b.report, Some(b.label))));
    for (report, of) in runs {
        for (name, color, l) in [
            ("saga: accepted → outcome seen", SAGA, &report.saga_ms),
            (
                "delivery: CONFIRMED → DELIVERED seen",
                DELIVERY,
                &report.delivered_ms,
            ),
        ] {
            let Some(l) = l else { continue };
            lines.push(Line {
                label: match of {
                    None => name.to_owned(),
                    Some(b) => format!("{name}, baseline {b}"),
                },
                style: style(color, of.is_some()),
                points: latency_points(l),
                dots: true,
            });
        }
    }
    lines
}

fn throughput_lines(r: &Report, baseline: Option<Baseline>) -> Vec<Line> {
    let mut lines = Vec::new();
    let runs = std::iter::once((r, None)).chain(baseline.map(|b| (b.report, Some(b.label))));
    for (report, of) in runs {
        let s = &report.per_second;
        let delivered = s.iter().any(|s| s.delivered > 0);
        for (name, color, counts, shown) in [
            (
                "accepted",
                ACCEPTED,
                s.iter().map(|s| s.accepted).collect::<Vec<_>>(),
                true,
            ),
            (
                "finished (outcome seen)",
                FINISHED,
                s.iter().map(|s| s.finished).collect(),
                true,
            ),
            (
                "delivered",
                DELIVERED,
                s.iter().map(|s| s.delivered).collect(),
                delivered,
            ),
        ] {
            if !shown || counts.is_empty() {
                continue;
            }
            lines.push(Line {
                label: match of {
                    None => name.to_owned(),
                    Some(b) => format!("{name}, baseline {b}"),
                },
                style: style(color, of.is_some()),
                points: steps(counts.into_iter()),
                dots: false,
            });
        }
    }
    lines
}

fn title(r: &Report) -> String {
    let mode = match (r.offered_rate, r.concurrency) {
        (Some(rate), _) => format!("open loop, {rate:.1} orders/s offered"),
        (_, Some(c)) => format!("closed loop, {c} customers"),
        _ => r.mode.clone(),
    };
    format!(
        "omsctl bench: {mode}, {:.0} s measured, {} accepted, {} finished",
        r.duration_seconds, r.accepted, r.finished
    )
}

/// How far above the highest line a panel goes, for a legend of `entries` above the lines.
fn headroom(entries: usize) -> f64 {
    // About 300 px of plot; a legend takes 20 px a row and 20 more.
    let legend = (20 * entries + 20) as f64;
    (300.0 / (300.0 - legend).max(100.0)).max(1.08)
}

/// The largest y of `lines`, or 1 when there is none.
fn top(lines: &[Line]) -> f64 {
    let most = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max);
    if most > 0.0 {
        most
    } else {
        1.0
    }
}

fn draw_lines<'a>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    lines: &[Line],
) -> Drawn {
    for line in lines {
        let style = line.style;
        let series = LineSeries::new(line.points.iter().copied(), style).point_size(if line.dots {
            2
        } else {
            0
        });
        chart
            .draw_series(series)?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    Ok(())
}

fn latency_panel(area: &Area, r: &Report, baseline: Option<Baseline>) -> Drawn {
    let lines = latency_lines(r, baseline);
    // To the last max, and at least to 90 %.
    let x_end = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(x, _)| *x))
        .fold(1.0, f64::max)
        * 1.02;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Latency by percentile (the last point of a line is its max)",
            CAPTIONS,
        )
        .margin(12)
        .margin_right(36)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_end, 0.0..top(&lines) * headroom(lines.len()))?;
    let y_top = top(&lines);
    chart
        .configure_mesh()
        .x_labels(x_end as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| number(*y, y_top))
        .x_desc("percentile (log scale of 1 - p)")
        .y_desc("latency (ms)")
        .label_style(LABELS)
        .axis_desc_style(AXES)
        .draw()?;
    draw_lines(&mut chart, &lines)?;
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            // Curves are low on the left and rise to the right.
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(LABELS)
            .draw()?;
    }
    Ok(())
}

fn throughput_panel(area: &Area, r: &Report, baseline: Option<Baseline>) -> Drawn {
    let lines = throughput_lines(r, baseline);
    let x_end = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(x, _)| *x))
        .fold(r.duration_seconds.max(1.0), f64::max)
        .ceil();
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Throughput: orders per one-second bucket of the measured window",
            CAPTIONS,
        )
        .margin(12)
        .margin_right(36)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_end, 0.0..top(&lines) * headroom(lines.len() + 1))?;
    let y_top = top(&lines);
    chart
        .configure_mesh()
        .x_label_formatter(&|x| number(*x, x_end))
        .y_label_formatter(&|y| number(*y, y_top))
        .x_desc("seconds since the measured window began")
        .y_desc("orders per second")
        .label_style(LABELS)
        .axis_desc_style(AXES)
        .draw()?;
    if !lines.is_empty() && r.duration_seconds > 0.0 {
        // Behind the lines: past it are the outcomes of the last orders.
        let stop = LOAD_STOPS.stroke_width(1);
        let at = r.duration_seconds;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(at, 0.0), (at, top(&lines) * headroom(lines.len() + 1))],
                stop,
            )))?
            .label("load stops (end of the window)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], stop));
    }
    draw_lines(&mut chart, &lines)?;
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(LABELS)
            .draw()?;
    }
    Ok(())
}

fn draw(root: &Area, r: &Report, baseline: Option<Baseline>) -> Drawn {
    root.fill(&WHITE)?;
    let body = root.titled(&title(r), TITLE)?;
    let (upper, lower) = body.split_vertically(LATENCY_PANEL_HEIGHT);
    latency_panel(&upper, r, baseline)?;
    throughput_panel(&lower, r, baseline)?;
    root.present()
}

/// The picture of a run as an SVG document: the saga and delivery latencies by percentile (on
/// a log scale of 1 - p, in ms) and the orders accepted, finished and delivered per second, with
/// `baseline`'s lines beside them when given.
pub fn svg(report: &Report, baseline: Option<Baseline>) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, report, baseline).map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::report::{histogram, record, sample, Second};
    use super::*;

    /// A polyline of an SVG: stroke, opacity, points in pixels.
    type Polyline = (String, String, Vec<(f64, f64)>);

    fn polylines(svg: &str) -> Vec<Polyline> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| {
                let attr = |name: &str| {
                    let key = format!(" {name}=\"");
                    let from = l.find(&key).expect("the attribute") + key.len();
                    let to = from + l[from..].find('"').expect("its end");
                    l[from..to].to_owned()
                };
                let points = attr("points")
                    .split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect();
                (attr("stroke"), attr("opacity"), points)
            })
            .collect()
    }

    /// The points of the one line (not a legend's two-point sample) drawn in `stroke`.
    fn line(svg: &str, stroke: &str, opacity: &str) -> Vec<(f64, f64)> {
        let mut found: Vec<_> = polylines(svg)
            .into_iter()
            .filter(|(s, o, p)| s == stroke && o == opacity && p.len() > 2)
            .map(|(_, _, p)| p)
            .collect();
        assert_eq!(found.len(), 1, "one {stroke} line at opacity {opacity}");
        found.remove(0)
    }

    /// Whether `text` is one of the picture's texts, whole.
    fn shows(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    fn close(got: f64, want: f64, tolerance: f64) -> bool {
        (got - want).abs() <= tolerance
    }

    fn run() -> Report {
        let (mut saga, mut delivery) = (histogram(), histogram());
        for ms in 1..=1000u64 {
            record(&mut saga, Duration::from_millis(ms));
        }
        for i in 1..=100u64 {
            record(&mut delivery, Duration::from_millis(5 * i));
        }
        let s = |accepted, finished, delivered| Second {
            accepted,
            finished,
            delivered,
        };
        sample(
            &saga,
            &delivery,
            vec![s(10, 5, 0), s(20, 25, 4), s(30, 30, 6), s(0, 0, 0)],
        )
    }

    #[test]
    fn the_latency_curve_is_drawn_where_the_samples_percentiles_are() {
        let r = run();
        let saga = r.saga_ms.as_ref().expect("saga latency");
        let points = latency_points(saga);
        // 0 to 99.8 % (13 percentiles of the curve), then the max where 1 - p = 1 / 1000.
        assert_eq!(points.len(), 14, "{points:?}");
        let at = |p: f64| {
            points
                .iter()
                .find(|(x, _)| close(*x, nines(p), 1e-9))
                .map(|(_, ms)| *ms)
                .expect("a point at that percentile")
        };
        for (p, ms) in [(0.0, 1.0), (50.0, 500.0), (90.0, 900.0), (99.0, 990.0)] {
            assert!(close(at(p), ms, ms * 0.002), "p{p}: {} ms", at(p));
        }
        assert_eq!(points.last().copied(), Some((3.0, saga.max)));
        assert!(close(saga.max, 1000.0, 1.0));

        let svg = svg(&r, None).expect("drawn");
        // On the page: x by percentile on a log scale of 1 - p, y linear in ms. The ratios of
        // pixel distances are the ratios of the values, whatever the margins.
        let drawn = line(&svg, "#1F77B4", "1");
        assert_eq!(drawn.len(), points.len());
        let (x0, y0) = drawn[0];
        let pixel = |p: f64| {
            let i = points
                .iter()
                .position(|(x, _)| close(*x, nines(p), 1e-9))
                .expect("plotted");
            drawn[i]
        };
        let (x90, y90) = pixel(90.0);
        let (x99, _) = pixel(99.0);
        let (_, y50) = pixel(50.0);
        let (x_max, y_max) = drawn[drawn.len() - 1];
        assert!(close((x99 - x0) / (x90 - x0), 2.0, 0.02), "{drawn:?}");
        assert!(close((x_max - x0) / (x90 - x0), 3.0, 0.03), "{drawn:?}");
        assert!(
            close((y0 - y50) / (y0 - y90), 499.0 / 899.0, 0.01),
            "{drawn:?}"
        );
        assert!(
            close((y0 - y_max) / (y0 - y90), 999.0 / 899.0, 0.01),
            "{drawn:?}"
        );
        // The delivery line: 100 samples, so it ends at 99 % (x = 2) with its max, 500 ms.
        let delivery = line(&svg, "#D62728", "1");
        let (dx_max, dy_max) = delivery[delivery.len() - 1];
        assert!(close((dx_max - x0) / (x90 - x0), 2.0, 0.02), "{delivery:?}");
        assert!(
            close((y0 - dy_max) / (y0 - y_max), 0.5, 0.01),
            "{delivery:?}"
        );

        for text in [
            "Latency by percentile (the last point of a line is its max)",
            "latency (ms)",
            "percentile (log scale of 1 - p)",
            "saga: accepted → outcome seen",
            "delivery: CONFIRMED → DELIVERED seen",
            "90%",
            "99%",
            "99.9%",
            "omsctl bench: closed loop, 4 customers, 3 s measured, 60 accepted, 60 finished",
        ] {
            assert!(shows(&svg, text), "no {text:?} in the picture");
        }
        assert!(!svg.contains("baseline"));
    }

    #[test]
    fn throughput_is_drawn_per_second() {
        let svg = svg(&run(), None).expect("drawn");
        for text in [
            "Throughput: orders per one-second bucket of the measured window",
            "orders per second",
            "seconds since the measured window began",
            "accepted",
            "finished (outcome seen)",
            "delivered",
            "load stops (end of the window)",
        ] {
            assert!(shows(&svg, text), "no {text:?} in the picture");
        }
        // finished: 5, 25, 30, 0 orders in seconds 0 to 3, each a flat step.
        let finished = line(&svg, "#FF7F0E", "1");
        assert_eq!(finished.len(), 8);
        let y = |second: usize| finished[2 * second].1;
        assert!(finished.chunks(2).all(|step| step[0].1 == step[1].1));
        let zero = y(3);
        assert!(close((zero - y(0)) / (zero - y(2)), 5.0 / 30.0, 0.01));
        assert!(close((zero - y(1)) / (zero - y(2)), 25.0 / 30.0, 0.01));
        let x = |i: usize| finished[i].0;
        assert!(
            close((x(7) - x(0)) / (x(2) - x(0)), 4.0, 0.02),
            "{finished:?}"
        );
        // accepted: 10, 20, 30, 0.
        let accepted = line(&svg, "#9467BD", "1");
        let ya = |second: usize| accepted[2 * second].1;
        assert!(close((zero - ya(0)) / (zero - ya(2)), 10.0 / 30.0, 0.01));
    }

    #[test]
    fn a_baseline_is_drawn_beside_the_run_even_from_an_older_report() {
        let r = run();
        // An older report: no curves, no seconds; its saga was twice as slow.
        let mut old = r.clone();
        old.per_second.clear();
        for l in [&mut old.saga_ms, &mut old.delivered_ms]
            .into_iter()
            .flatten()
        {
            l.curve.clear();
            for v in [&mut l.p50, &mut l.p90, &mut l.p99, &mut l.p999, &mut l.max] {
                *v *= 2.0;
            }
        }
        let baseline = Baseline {
            label: "before.json",
            report: &old,
        };
        let svg = svg(&r, Some(baseline)).expect("drawn");
        assert!(shows(
            &svg,
            "saga: accepted → outcome seen, baseline before.json"
        ));
        assert!(
            !svg.contains("accepted, baseline"),
            "the old report has no seconds"
        );
        let now = line(&svg, "#1F77B4", "1");
        let before = line(&svg, "#1F77B4", "0.45");
        // p50, p90, p99 (p99.9 has a single sample above it) and the max.
        assert_eq!(before.len(), 4, "{before:?}");
        let y0 = now[0].1;
        let (_, y90) = now[5];
        let (_, b90) = before[1];
        assert_eq!(now[5].0, before[1].0, "p90 at the same x");
        // y0 is 1 ms above the axis: close enough for a 2-to-1 ratio.
        assert!(
            close((y0 - b90) / (y0 - y90), 2.0, 0.02),
            "{now:?} {before:?}"
        );
        // With the baseline's max (2000 ms) the scale changed, and both still fit.
        let top = before[3].1;
        assert!(now.iter().all(|(_, y)| *y >= top));
    }

    #[test]
    fn an_empty_run_is_drawn_without_lines() {
        let r = sample(&histogram(), &histogram(), Vec::new());
        let svg = svg(&r, None).expect("drawn");
        assert!(svg.contains("Latency by percentile") && svg.contains("Throughput"));
        assert!(polylines(&svg).iter().all(|(_, _, p)| p.len() <= 2));
    }
}
