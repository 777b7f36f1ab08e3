//! The cost-vs-quality chart: one point per candidate and the baseline, the 95% interval as an
//! error bar, the Pareto frontier drawn and named. Rendered on the server as SVG, so it reads
//! with JavaScript off and needs no asset from anywhere.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::Report;

/// One point of the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChartPoint {
    /// Candidate name, or `baseline`.
    pub name: String,
    /// Model behind it.
    pub model: String,
    /// USD per 1,000 requests.
    pub cost_per_1k_usd: f64,
    /// Mean quality on the rubric, normalized to [0, 1].
    pub quality: f64,
    /// Lower end of the 95% interval: the baseline's mean plus the lower end of the paired
    /// difference's interval (the interval that decides the verdict). `None` for the baseline,
    /// the level every interval is placed against.
    pub quality_low: Option<f64>,
    /// Upper end of the interval.
    pub quality_high: Option<f64>,
    /// The verdict (`better`, `worse`, `non-inferior`, `inconclusive`); `None` for the baseline.
    pub verdict: Option<String>,
    /// Whether no other point is both cheaper-or-equal and better-or-equal (one strictly).
    pub on_frontier: bool,
}

/// The chart of one rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chart {
    /// Rubric shown.
    pub rubric: String,
    /// The points, baseline first.
    pub points: Vec<ChartPoint>,
    /// Candidates left out because their cost is unknown (no priced successful call).
    pub unpriced: Vec<String>,
    /// Candidates left out because none of their pairs is scored yet on this rubric.
    #[serde(default)]
    pub no_pairs: Vec<String>,
    /// Why nothing is plotted, when nothing is: no point is ever invented.
    #[serde(default)]
    pub empty: Option<String>,
}

/// Indices of the points on the Pareto frontier of (cost, quality): lower cost and higher
/// quality are better, and a point is on the frontier when no other point is at least as good
/// on both and strictly better on one. Returned by increasing cost.
pub fn pareto_frontier(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> =
        (0..points.len()).filter(|&i| points[i].0.is_finite() && points[i].1.is_finite()).collect();
    // By cost, and at equal cost the best quality first: only it can be on the frontier.
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(points[b].1.total_cmp(&points[a].1)));
    let mut frontier = Vec::new();
    let mut best_quality = f64::NEG_INFINITY;
    for i in order {
        let (cost, quality) = points[i];
        let same_as_last = frontier.last().is_some_and(|&j: &usize| points[j] == (cost, quality));
        if quality > best_quality || same_as_last {
            frontier.push(i);
            best_quality = best_quality.max(quality);
        }
    }
    frontier
}

/// The chart of `rubric` from a report.
pub fn chart(report: &Report, rubric: &str) -> Chart {
    let comparisons: Vec<_> = report
        .candidates
        .iter()
        .filter_map(|c| c.rubrics.iter().find(|r| r.rubric == rubric).map(|r| (c, r)))
        .collect();
    let mut points = Vec::new();
    // Every candidate's pairs share the baseline; the largest set says its level best. A
    // baseline of reference answers has no price: it is the level, not a point to buy.
    let scored = comparisons.iter().filter(|(_, r)| r.stats.n > 0).max_by_key(|(_, r)| r.stats.n);
    if let Some((_, largest)) = scored
        && !report.baseline.is_reference
    {
        points.push(ChartPoint {
            name: "baseline".into(),
            model: report.baseline.describe(),
            cost_per_1k_usd: report.baseline.cost_per_request_usd * 1000.0,
            quality: largest.stats.baseline_mean,
            quality_low: None,
            quality_high: None,
            verdict: None,
            on_frontier: false,
        });
    }
    let mut unpriced = Vec::new();
    let mut no_pairs = Vec::new();
    for (candidate, result) in comparisons {
        if result.stats.n == 0 {
            no_pairs.push(candidate.name.clone());
            continue;
        }
        let Some(cost) = candidate.cost_per_request_usd else {
            unpriced.push(candidate.name.clone());
            continue;
        };
        let stats = &result.stats;
        points.push(ChartPoint {
            name: candidate.name.clone(),
            model: candidate.model.clone(),
            cost_per_1k_usd: cost * 1000.0,
            quality: stats.candidate_mean,
            quality_low: Some(stats.baseline_mean + stats.ci_low),
            quality_high: Some(stats.baseline_mean + stats.ci_high),
            verdict: Some(stats.verdict.as_str().to_string()),
            on_frontier: false,
        });
    }
    let coordinates: Vec<(f64, f64)> = points.iter().map(|p| (p.cost_per_1k_usd, p.quality)).collect();
    for i in pareto_frontier(&coordinates) {
        points[i].on_frontier = true;
    }
    let empty = points.is_empty().then(|| {
        let why = if report.spend_cap_reached {
            "the spend cap was reached before any pair was complete"
        } else if report.status != "done" {
            "results are still landing"
        } else if report.candidates.iter().all(|c| c.n == 0) {
            "no candidate answered: every replay failed or was skipped"
        } else {
            "no item has both sides scored on this rubric"
        };
        format!("no pairs yet: {why}")
    });
    Chart { rubric: rubric.to_string(), points, unpriced, no_pairs, empty }
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 44.0;

/// A "nice" step for about `target` ticks over `span`.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A range padded around `values` and rounded out to ticks.
fn axis_range(values: impl Iterator<Item = f64>, at_least_zero: bool) -> (f64, f64, f64) {
    let (mut low, mut high) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    if at_least_zero {
        low = low.min(0.0);
    }
    if high - low < 1e-12 {
        high = low + low.abs().max(1e-3);
    }
    let step = tick_step(high - low, 5.0);
    ((low / step).floor() * step, (high / step).ceil() * step, step)
}

/// Where a point's label sits: right of the point, or left of it when it would run past the
/// chart's right edge and be clipped.
fn label_anchor(px: f64, name: &str) -> &'static str {
    // 12 px text averages under 7.5 px a character.
    let width = name.chars().count() as f64 * 7.5;
    if px + 9.0 + width > WIDTH - 2.0 { "end" } else { "start" }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn format_tick(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{value:.decimals$}")
}

/// The chart as an SVG element. Points carry `class="point <verdict>"`, error bars
/// `class="error-bar"`, the frontier `class="frontier"`, so pages style them and tests find them.
pub fn render_svg(chart: &Chart) -> String {
    if let Some(why) = &chart.empty {
        return format!(
            r##"<svg class="cost-quality empty" viewBox="0 0 {WIDTH} 80" role="img" xmlns="http://www.w3.org/2000/svg"><title>Cost against quality on {rubric}: nothing to plot</title><text x="{cx}" y="44" text-anchor="middle" font-size="14" fill="#6b7280">{why}</text></svg>"##,
            rubric = escape(&chart.rubric),
            cx = WIDTH / 2.0,
            why = escape(why),
        );
    }
    let (x_min, x_max, x_step) = axis_range(chart.points.iter().map(|p| p.cost_per_1k_usd), true);
    let (y_min, y_max, y_step) = axis_range(
        chart.points.iter().flat_map(|p| [Some(p.quality), p.quality_low, p.quality_high]).flatten(),
        false,
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v - x_min) / (x_max - x_min) * plot_w;
    let y = |v: f64| TOP + (1.0 - (v - y_min) / (y_max - y_min)) * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="cost-quality" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Cost per 1,000 requests against quality on {rubric}, with 95% intervals and the Pareto frontier</title>"#,
        rubric = escape(&chart.rubric)
    );
    // Grid and ticks.
    let mut tick = x_min;
    while tick <= x_max + x_step / 2.0 {
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom:.1}" stroke="#e3e6eb"/><text x="{px:.1}" y="{label:.1}" text-anchor="middle" font-size="11" fill="#6b7280">${t}</text>"##,
            px = x(tick),
            bottom = TOP + plot_h,
            label = TOP + plot_h + 16.0,
            t = format_tick(tick, x_step)
        );
        tick += x_step;
    }
    let mut tick = y_min;
    while tick <= y_max + y_step / 2.0 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{right:.1}" y2="{py:.1}" stroke="#e3e6eb"/><text x="{label:.1}" y="{ty:.1}" text-anchor="end" font-size="11" fill="#6b7280">{t}</text>"##,
            py = y(tick),
            right = LEFT + plot_w,
            label = LEFT - 6.0,
            ty = y(tick) + 4.0,
            t = format_tick(tick, y_step)
        );
        tick += y_step;
    }
    let _ = write!(
        svg,
        r##"<text x="{cx:.1}" y="{by:.1}" text-anchor="middle" font-size="12" fill="#1d2330">cost per 1,000 requests (USD)</text><text transform="translate(14 {cy:.1}) rotate(-90)" text-anchor="middle" font-size="12" fill="#1d2330">quality: {rubric}</text>"##,
        cx = LEFT + plot_w / 2.0,
        by = HEIGHT - 6.0,
        cy = TOP + plot_h / 2.0,
        rubric = escape(&chart.rubric)
    );
    // The frontier, by increasing cost.
    let mut frontier: Vec<&ChartPoint> = chart.points.iter().filter(|p| p.on_frontier).collect();
    frontier.sort_by(|a, b| a.cost_per_1k_usd.total_cmp(&b.cost_per_1k_usd));
    if !frontier.is_empty() {
        let path: Vec<String> =
            frontier.iter().map(|p| format!("{:.1},{:.1}", x(p.cost_per_1k_usd), y(p.quality))).collect();
        // The name sits beside the frontier's first segment, away from the points' own labels.
        let (first, second) = (frontier[0], frontier.get(1).copied().unwrap_or(frontier[0]));
        let (mx, my) = (
            (x(first.cost_per_1k_usd) + x(second.cost_per_1k_usd)) / 2.0,
            (y(first.quality) + y(second.quality)) / 2.0,
        );
        let _ = write!(
            svg,
            r##"<polyline class="frontier" points="{points}" fill="none" stroke="#7c3aed" stroke-width="2" stroke-dasharray="6,4"><title>Pareto frontier</title></polyline><text class="frontier-label" x="{lx:.1}" y="{ly:.1}" font-size="11" fill="#7c3aed">Pareto frontier</text>"##,
            points = path.join(" "),
            lx = (mx + 10.0).min(WIDTH - RIGHT - 90.0),
            ly = (my + 18.0).min(TOP + plot_h - 4.0),
        );
    }
    for point in &chart.points {
        let (px, py) = (x(point.cost_per_1k_usd), y(point.quality));
        if let (Some(low), Some(high)) = (point.quality_low, point.quality_high) {
            let (y_low, y_high) = (y(low), y(high));
            let _ = write!(
                svg,
                r##"<g class="error-bar" data-candidate="{name}"><line x1="{px:.1}" y1="{y_low:.1}" x2="{px:.1}" y2="{y_high:.1}" stroke="#1d2330" stroke-width="1.5"/><line x1="{a:.1}" y1="{y_low:.1}" x2="{b:.1}" y2="{y_low:.1}" stroke="#1d2330"/><line x1="{a:.1}" y1="{y_high:.1}" x2="{b:.1}" y2="{y_high:.1}" stroke="#1d2330"/></g>"##,
                name = escape(&point.name),
                a = px - 5.0,
                b = px + 5.0,
            );
        }
        let verdict = point.verdict.as_deref().unwrap_or("baseline");
        let interval = match (point.quality_low, point.quality_high) {
            (Some(l), Some(h)) => format!(", 95% interval [{l:.3}, {h:.3}]"),
            _ => String::new(),
        };
        let _ = write!(
            svg,
            r##"<circle class="point {verdict}" data-candidate="{name}" cx="{px:.1}" cy="{py:.1}" r="6"><title>{name} ({model}): ${cost:.4} per 1,000 requests, quality {q:.3}{interval}; {verdict}{frontier}</title></circle><text class="point-label" x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-size="12" fill="#1d2330">{name}</text>"##,
            name = escape(&point.name),
            model = escape(&point.model),
            cost = point.cost_per_1k_usd,
            q = point.quality,
            frontier = if point.on_frontier { "; on the Pareto frontier" } else { "" },
            anchor = label_anchor(px, &point.name),
            tx = if label_anchor(px, &point.name) == "end" { px - 9.0 } else { px + 9.0 },
            ty = py - 8.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_keeps_exactly_the_undominated_points() {
        // (cost, quality)
        let points = [
            (1.0, 0.60), // 0: cheapest → frontier
            (2.0, 0.70), // 1: better for more → frontier
            (2.5, 0.65), // 2: dominated by 1 (cheaper and better)
            (3.0, 0.70), // 3: same quality as 1, dearer → dominated
            (4.0, 0.90), // 4: best → frontier
            (5.0, 0.85), // 5: dominated by 4
            (0.5, 0.40), // 6: cheapest of all → frontier
            (1.0, 0.55), // 7: same cost as 0, worse → dominated
        ];
        assert_eq!(pareto_frontier(&points), vec![6, 0, 1, 4]);
    }

    #[test]
    fn identical_points_are_both_on_the_frontier_and_nan_is_never() {
        let points = [(1.0, 0.5), (1.0, 0.5), (f64::NAN, 0.9), (2.0, 0.4)];
        assert_eq!(pareto_frontier(&points), vec![0, 1]);
        assert!(pareto_frontier(&[]).is_empty());
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(1.0, 5.0), 0.2);
        assert_eq!(tick_step(0.37, 5.0), 0.1);
        assert_eq!(tick_step(30.0, 5.0), 10.0);
        let (low, high, step) = axis_range([0.42, 0.81].into_iter(), false);
        assert!((step - 0.1).abs() < 1e-12 && (low - 0.4).abs() < 1e-9 && (high - 0.9).abs() < 1e-9);
    }

    #[test]
    fn the_svg_has_a_point_per_entry_bars_for_candidates_and_escapes_names() {
        let point = |name: &str, cost: f64, q: f64, bar: bool, frontier: bool| ChartPoint {
            name: name.into(),
            model: "m".into(),
            cost_per_1k_usd: cost,
            quality: q,
            quality_low: bar.then_some(q - 0.05),
            quality_high: bar.then_some(q + 0.05),
            verdict: bar.then(|| "better".to_string()),
            on_frontier: frontier,
        };
        let chart = Chart {
            rubric: "helpful<ness>".into(),
            points: vec![point("baseline", 2.0, 0.7, false, true), point("a&b", 1.0, 0.6, true, true)],
            unpriced: vec![],
            no_pairs: vec![],
            empty: None,
        };
        let svg = render_svg(&chart);
        assert_eq!(svg.matches("<circle class=\"point").count(), 2);
        assert_eq!(svg.matches("class=\"error-bar\"").count(), 1);
        assert_eq!(svg.matches("class=\"frontier\"").count(), 1);
        assert!(svg.contains("a&amp;b") && svg.contains("helpful&lt;ness&gt;") && !svg.contains("a&b"));
        // The rightmost point's label is drawn to its left, inside the chart.
        let right = Chart {
            points: vec![point("baseline", 0.0, 0.7, false, true), point("medium", 10.0, 0.6, true, true)],
            ..chart.clone()
        };
        let right_svg = render_svg(&right);
        assert!(
            right_svg.contains(r##"text-anchor="end" font-size="12" fill="#1d2330">medium<"##),
            "{right_svg}"
        );
        // Nothing to plot: says why, invents no point.
        let empty = Chart {
            points: vec![],
            empty: Some("no pairs yet: results are still landing".into()),
            ..chart.clone()
        };
        let empty_svg = render_svg(&empty);
        assert!(empty_svg.contains("no pairs yet") && !empty_svg.contains("<circle"), "{empty_svg}");
        // Well-formed XML: the page embeds it inline.
        let doc = roxmltree::Document::parse(&svg).expect("the chart is well-formed SVG");
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("circle")).count(), 2);
    }
}
