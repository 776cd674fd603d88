//! Line charts as plain SVG, drawn the same on the server and in the
//! browser (so a page hydrates onto identical markup), growing as points
//! arrive: a job's loss and learning-rate curves.

use crate::format;
use leptos::prelude::*;

/// The drawing's size in SVG units; the page scales it to its column.
const W: f64 = 360.0;
const H: f64 = 220.0;
/// The plot area inside it: room for tick labels left and below.
const LEFT: f64 = 66.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 42.0;
/// Points drawn as dots as well as a line up to this many.
const DOTS: usize = 80;

/// `1`, `2` or `5` × a power of ten, near `span / target`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    // Exact powers of ten: the server and the browser must agree to the
    // last bit, or the hydrated chart would differ from the rendered one.
    let magnitude = format::pow10(format::decade(raw));
    let n = raw / magnitude;
    let nice = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// An axis: its ends (rounded out to whole ticks) and the ticks.
#[derive(Clone, Debug, PartialEq)]
struct Axis {
    low: f64,
    high: f64,
    step: f64,
    ticks: Vec<f64>,
}

fn axis(min: f64, max: f64, target: f64, integer: bool) -> Axis {
    let (mut min, mut max) = (min, max);
    if max - min <= f64::EPSILON * max.abs().max(1.0) {
        // One value: a band around it.
        let pad = if min == 0.0 { 1.0 } else { min.abs() * 0.1 };
        min -= pad;
        max += pad;
    }
    let mut step = nice_step(max - min, target);
    if integer {
        step = step.max(1.0).round();
    }
    let low = (min / step).floor() * step;
    let high = (max / step).ceil() * step;
    let n = ((high - low) / step).round() as usize;
    let ticks = (0..=n).map(|i| low + i as f64 * step).collect();
    Axis {
        low,
        high,
        step,
        ticks,
    }
}

/// Where each point lies on the drawing, and the axes' ticks.
#[derive(Clone, Debug, PartialEq)]
struct Plot {
    points: Vec<(f64, f64)>,
    x: Axis,
    y: Axis,
}

/// Lays out `points` (`(step, value)`, non-finite values left out); the x
/// axis reaches at least `x_max` (the run's last step) so the line grows
/// across the chart as training goes on.
fn plot(points: &[(f64, f64)], x_max: Option<f64>, from_zero: bool) -> Plot {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let xs = finite.iter().map(|p| p.0);
    let x_high = xs.fold(x_max.unwrap_or(1.0).max(1.0), f64::max);
    let x = axis(0.0, x_high, 4.0, true);
    let (y_min, y_max) = if finite.is_empty() {
        (0.0, 1.0)
    } else {
        finite.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        })
    };
    // Losses and rates are never negative: start at zero when the values
    // come near it rather than below.
    let y_min = if y_min >= 0.0 && (from_zero || y_min < (y_max - y_min)) {
        0.0
    } else {
        y_min
    };
    let y = axis(y_min, y_max, 4.0, false);
    let to_x = |v: f64| LEFT + (v - x.low) / (x.high - x.low) * (W - LEFT - RIGHT);
    let to_y = |v: f64| TOP + (y.high - v) / (y.high - y.low) * (H - TOP - BOTTOM);
    let points = finite.iter().map(|&(a, b)| (to_x(a), to_y(b))).collect();
    Plot { points, x, y }
}

/// A line chart of `points` (x: the step): a title, both axes labelled
/// with tick values, and `empty` said inside it while there are no points.
/// The `<svg>` carries `id` and `data-points` (how many are drawn).
#[component]
pub fn LineChart(
    id: &'static str,
    title: &'static str,
    /// The quantity on the y axis.
    y_label: &'static str,
    #[prop(into)] points: Signal<Vec<(f64, f64)>>,
    /// The last step of the run, when known.
    #[prop(into)]
    x_max: Signal<Option<f64>>,
    /// The y axis starts at zero (a learning rate's schedule reads
    /// against it); otherwise only when the values come near it.
    #[prop(optional)]
    from_zero: bool,
    /// What to say while there is nothing to draw.
    #[prop(into)]
    empty: Signal<String>,
) -> impl IntoView {
    let layout = Memo::new(move |_| plot(&points.get(), x_max.get(), from_zero));
    let count = move || layout.with(|p| p.points.len());
    let title_id = format!("{id}-title");
    let plot_bottom = H - BOTTOM;
    view! {
        <figure class="chart">
            <figcaption id=title_id.clone()>{title}</figcaption>
            <svg
                id=id
                viewBox=format!("0 0 {W} {H}")
                role="img"
                aria-labelledby=title_id
                data-points=move || count().to_string()
            >
                {move || {
                    let p = layout.get();
                    let x_ticks = p.x.ticks.iter().map(|&t| {
                        let x = LEFT + (t - p.x.low) / (p.x.high - p.x.low) * (W - LEFT - RIGHT);
                        view! {
                            <g class="tick">
                                <line x1=x x2=x y1=plot_bottom y2=plot_bottom + 4.0/>
                                <text x=x y=plot_bottom + 16.0 text-anchor="middle">{format::tick(t, p.x.step)}</text>
                            </g>
                        }
                    }).collect_view();
                    let y_ticks = p.y.ticks.iter().map(|&t| {
                        let y = TOP + (p.y.high - t) / (p.y.high - p.y.low) * (H - TOP - BOTTOM);
                        view! {
                            <g class="tick">
                                <line class="grid" x1=LEFT x2=W - RIGHT y1=y y2=y/>
                                <text x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{format::tick(t, p.y.step)}</text>
                            </g>
                        }
                    }).collect_view();
                    let line = p
                        .points
                        .iter()
                        .map(|(x, y)| format!("{x:.1},{y:.1}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let dots = (p.points.len() <= DOTS).then(|| {
                        p.points.iter().map(|&(x, y)| view! {
                            <circle class="point" cx=format!("{x:.1}") cy=format!("{y:.1}") r="2.5"/>
                        }).collect_view()
                    });
                    // Without points the ticks would be made up.
                    let drawn = !p.points.is_empty();
                    view! {
                        {drawn.then_some(y_ticks)}
                        {drawn.then_some(x_ticks)}
                        <line class="axis" x1=LEFT x2=LEFT y1=TOP y2=plot_bottom/>
                        <line class="axis" x1=LEFT x2=W - RIGHT y1=plot_bottom y2=plot_bottom/>
                        <text class="axis-label" x=LEFT + (W - LEFT - RIGHT) / 2.0 y=H - 6.0 text-anchor="middle">"Step"</text>
                        <text class="axis-label" transform=format!("translate(12 {}) rotate(-90)", TOP + (H - TOP - BOTTOM) / 2.0) text-anchor="middle">{y_label}</text>
                        {(!p.points.is_empty()).then(|| view! { <polyline class="line" points=line/> })}
                        {dots}
                    }
                }}
                {move || (count() == 0).then(|| view! {
                    <text class="chart-empty" x=LEFT + (W - LEFT - RIGHT) / 2.0 y=TOP + (H - TOP - BOTTOM) / 2.0 text-anchor="middle">{move || empty.get()}</text>
                })}
            </svg>
        </figure>
    }
}

/// One line of a [`UsageChart`]: a team's value per day, and its limit
/// (drawn dashed) when it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub values: Vec<f64>,
    pub limit: Option<f64>,
}

/// Lines, one per series, over days (x: the days' labels, `MM-DD`), each
/// series' limit as a dashed line of the same colour, and a legend.
#[component]
pub fn UsageChart(
    id: &'static str,
    title: &'static str,
    /// `YYYY-MM-DD` per point.
    days: Vec<String>,
    series: Vec<Series>,
) -> impl IntoView {
    let n = days.len().max(1);
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied().chain(s.limit))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let y = axis(0.0, top.max(1.0), 4.0, false);
    let to_x = |i: usize| {
        LEFT + if n == 1 {
            (W - LEFT - RIGHT) / 2.0
        } else {
            i as f64 / (n - 1) as f64 * (W - LEFT - RIGHT)
        }
    };
    let to_y = |v: f64| TOP + (y.high - v) / (y.high - y.low) * (H - TOP - BOTTOM);
    let plot_bottom = H - BOTTOM;
    // About five date labels whatever the period.
    let every = n.div_ceil(5).max(1);
    let x_ticks = days
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i == n - 1)
        .map(|(i, d)| {
            let x = to_x(i);
            let label = d.get(5..).unwrap_or(d).to_owned();
            view! {
                <g class="tick">
                    <line x1=x x2=x y1=plot_bottom y2=plot_bottom + 4.0/>
                    <text x=x y=plot_bottom + 16.0 text-anchor="middle">{label}</text>
                </g>
            }
        })
        .collect_view();
    let y_ticks = y
        .ticks
        .iter()
        .map(|&t| {
            let yy = to_y(t);
            view! {
                <g class="tick">
                    <line class="grid" x1=LEFT x2=W - RIGHT y1=yy y2=yy/>
                    <text x=LEFT - 6.0 y=yy + 4.0 text-anchor="end">{format::tick(t, y.step)}</text>
                </g>
            }
        })
        .collect_view();
    let lines = series
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let points = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", to_x(i), to_y(v.max(0.0))))
                .collect::<Vec<_>>()
                .join(" ");
            let limit = s.limit.filter(|l| l.is_finite()).map(|l| {
                let yy = to_y(l);
                view! { <line class=format!("limit series-{}", k % 6) x1=LEFT x2=W - RIGHT y1=yy y2=yy/> }
            });
            view! {
                <polyline class=format!("line series-{}", k % 6) points=points data-team=s.label.clone()/>
                {limit}
            }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(k, s)| {
            view! { <li><span class=format!("swatch series-{}", k % 6)></span>{s.label.clone()}</li> }
        })
        .collect_view();
    let title_id = format!("{id}-title");
    view! {
        <figure class="chart wide">
            <figcaption id=title_id.clone()>{title}</figcaption>
            <svg id=id viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby=title_id data-series=series.len().to_string()>
                {y_ticks}
                {x_ticks}
                <line class="axis" x1=LEFT x2=LEFT y1=TOP y2=plot_bottom/>
                <line class="axis" x1=LEFT x2=W - RIGHT y1=plot_bottom y2=plot_bottom/>
                <text class="axis-label" x=LEFT + (W - LEFT - RIGHT) / 2.0 y=H - 6.0 text-anchor="middle">"Day (UTC)"</text>
                <text class="axis-label" transform=format!("translate(12 {}) rotate(-90)", TOP + (H - TOP - BOTTOM) / 2.0) text-anchor="middle">"Device-hours"</text>
                {lines}
            </svg>
            <ul class="legend">{legend}</ul>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_covering_the_values() {
        let a = axis(0.0, 37.0, 4.0, true);
        assert_eq!(a.step, 10.0);
        assert_eq!(a.ticks, [0.0, 10.0, 20.0, 30.0, 40.0]);
        let a = axis(1.23, 2.61, 4.0, false);
        assert_eq!(a.step, 0.5);
        assert_eq!((a.low, a.high), (1.0, 3.0));
        // A constant learning rate still gets an axis around it.
        let a = axis(2e-4, 2e-4, 4.0, false);
        assert!(a.low < 2e-4 && a.high > 2e-4, "{a:?}");
        // Few steps: ticks stay whole.
        assert_eq!(axis(0.0, 3.0, 4.0, true).step, 1.0);
    }

    #[test]
    fn points_land_inside_the_plot_and_the_run_spans_the_x_axis() {
        let p = plot(
            &[(1.0, 2.0), (2.0, f64::NAN), (10.0, 1.0)],
            Some(100.0),
            false,
        );
        assert_eq!(p.points.len(), 2, "the NaN is left out");
        assert_eq!(p.x.high, 100.0);
        for (x, y) in &p.points {
            assert!((LEFT..=W - RIGHT).contains(x) && (TOP..=H - BOTTOM).contains(y));
        }
        // The first point (step 1 of 100) sits near the left edge.
        assert!(p.points[0].0 < LEFT + 5.0);
        assert!(plot(&[], None, false).points.is_empty());
        // A nearly constant rate still reads against zero when asked to.
        let rates = [(1.0, 2e-4), (2.0, 1.9996e-4)];
        assert_eq!(plot(&rates, None, true).y.low, 0.0);
        assert!(plot(&rates, None, false).y.low > 1e-4);
    }
}
