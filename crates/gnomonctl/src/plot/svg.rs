//! `gnomonctl plot --svg`: the same plot as a self-contained SVG — state
//! bands behind the traces, each series as its mean line over a shaded
//! min–max band (broken at gaps), labelled axes with units, a legend with
//! each series' latest value, and a state legend.

use std::fmt::Write as _;

use gnomon_core::{
    engine::EngineState,
    ipc::PlotReport,
    samples::{PlotSeries, SeriesKind},
    time::{human_duration, WallTime},
};

use super::scale::{time_position, time_ticks, window_words, YScale};
use crate::render;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 640.0;
const LEFT: f64 = 96.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 110.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;
/// The strip under the time axis that shows the state on its own.
const STRIP_H: f64 = 12.0;

/// Source colours, in order (PPS, NMEA and chrony have their own).
const SOURCE_COLOURS: [&str; 9] = [
    "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
    "#8c6d31",
];

pub(crate) fn series_colour(series: &[PlotSeries], index: usize) -> &'static str {
    let Some(s) = series.get(index) else {
        return "#000000";
    };
    match s.kind {
        SeriesKind::Pps => "#1f77b4",
        SeriesKind::Nmea => "#ff7f0e",
        SeriesKind::Chrony => "#2ca02c",
        SeriesKind::Source => {
            let nth = super::source_rank(series, index);
            SOURCE_COLOURS
                .get(nth % SOURCE_COLOURS.len())
                .copied()
                .unwrap_or("#000000")
        }
    }
}

pub(crate) fn state_colour(state: EngineState) -> &'static str {
    match state {
        EngineState::Primary => "#2ca02c",
        EngineState::Starting | EngineState::Acquiring => "#a0a0a0",
        EngineState::Recovering => "#17becf",
        EngineState::Degraded => "#e6b800",
        EngineState::Fallback => "#ff7f0e",
        EngineState::Frozen => "#9467bd",
        EngineState::NoReference => "#d62728",
    }
}

/// Text safe inside an SVG element or attribute.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn x_of(t: WallTime, report: &PlotReport) -> f64 {
    LEFT + time_position(t, report.data.from, report.data.to) * PLOT_W
}

fn y_of(nanos: i64, y: &YScale) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let f = y.position(nanos as f64);
    TOP + (1.0 - f) * PLOT_H
}

/// The whole document.
pub(crate) fn render(report: &PlotReport, y: &YScale) -> String {
    let data = &report.data;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="13">"#
    );
    let title = format!(
        "gnomon on {} ({}): offsets, last {}",
        report.host,
        report.role,
        window_words(data.to.since(data.from).abs())
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&title));
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="28" font-size="18" font-weight="bold" fill="#222">{}</text>"##,
        escape(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="50" fill="#555">{} to {} UTC · {} samples, one every {} · {} per point · {} scale</text>"##,
        escape(&short_time(data.from)),
        escape(&short_time(data.to)),
        data.samples,
        escape(&human_duration(report.interval)),
        escape(&human_duration(data.bucket)),
        if y.is_log() {
            "symmetric log"
        } else {
            "linear"
        },
    );

    // State bands behind everything, and the strip under the axis.
    let _ = writeln!(s, r#"<g class="states">"#);
    for span in &data.states {
        let (x0, x1) = (x_of(span.from, report), x_of(span.to, report));
        let w = (x1 - x0).max(0.5);
        let colour = state_colour(span.state);
        let _ = writeln!(
            s,
            r#"<rect class="state-band" data-state="{}" x="{x0:.1}" y="{TOP}" width="{w:.1}" height="{PLOT_H}" fill="{colour}" fill-opacity="0.12"/>"#,
            span.state.name()
        );
        let _ = writeln!(
            s,
            r#"<rect class="state-strip" x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{STRIP_H}" fill="{colour}"/>"#,
            TOP + PLOT_H + 30.0
        );
    }
    let _ = writeln!(s, "</g>");

    // Offset axis: grid, tick labels, title.
    let _ = writeln!(s, r#"<g class="y-axis">"#);
    for tick in y.ticks(10) {
        let yy = TOP + (1.0 - tick.at) * PLOT_H;
        let (stroke, width) = if tick.label == "0" {
            ("#444", 1.2)
        } else {
            ("#d0d0d0", 0.8)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}" stroke-width="{width}"/>"#,
            LEFT + PLOT_W
        );
        let _ = writeln!(
            s,
            r##"<text class="y-tick" x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 8.0,
            yy + 4.0,
            escape(&tick.label)
        );
    }
    let mid = TOP + PLOT_H / 2.0;
    let _ = writeln!(
        s,
        r##"<text class="axis-title" x="18" y="{mid:.1}" transform="rotate(-90 18 {mid:.1})" text-anchor="middle" fill="#333">offset: reference − system clock (+ = clock behind)</text>"##
    );
    let _ = writeln!(s, "</g>");

    // Time axis.
    let _ = writeln!(s, r#"<g class="x-axis">"#);
    let base = TOP + PLOT_H;
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{base}" x2="{:.1}" y2="{base}" stroke="#444"/>"##,
        LEFT + PLOT_W
    );
    for (t, label) in time_ticks(data.from, data.to, 10) {
        let x = x_of(t, report);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4" stroke-width="0.8"/>"##,
            base + 5.0
        );
        let _ = writeln!(
            s,
            r##"<text class="x-tick" x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
            base + 20.0,
            escape(&label)
        );
    }
    let _ = writeln!(
        s,
        r##"<text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">time (UTC)</text>"##,
        LEFT + PLOT_W / 2.0,
        base + 62.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555" font-size="11">state</text>"##,
        LEFT - 8.0,
        base + 40.0
    );
    let _ = writeln!(s, "</g>");

    // The traces: sources under chrony under GPS.
    let _ = writeln!(s, r#"<g class="series" clip-path="url(#plot)">"#);
    let _ = writeln!(
        s,
        r#"<clipPath id="plot"><rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}"/></clipPath>"#
    );
    let mut order: Vec<usize> = (0..data.series.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(data.series.get(i).map(|s| s.kind)));
    // A gap is a missing bucket when buckets are wider than the sampling
    // interval, and more than two missing samples when they are narrower.
    let gap = (data.bucket.as_secs_f64() * 1.5).max(report.interval.as_secs_f64() * 2.5);
    for i in order {
        let Some(series) = data.series.get(i) else {
            continue;
        };
        let colour = series_colour(&data.series, i);
        let _ = writeln!(
            s,
            r#"<g class="trace" data-series="{}">"#,
            escape(&series.name)
        );
        for run in runs(series, gap) {
            if run.len() == 1 {
                if let Some(p) = run.first() {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{colour}"/>"#,
                        x_of(p.at, report),
                        y_of(p.mean.as_nanos(), y)
                    );
                }
                continue;
            }
            if run.iter().any(|p| p.min != p.max) {
                let mut pts: Vec<String> = run
                    .iter()
                    .map(|p| format!("{:.1},{:.1}", x_of(p.at, report), y_of(p.max.as_nanos(), y)))
                    .collect();
                pts.extend(run.iter().rev().map(|p| {
                    format!("{:.1},{:.1}", x_of(p.at, report), y_of(p.min.as_nanos(), y))
                }));
                let _ = writeln!(
                    s,
                    r#"<polygon class="spread" points="{}" fill="{colour}" fill-opacity="0.18" stroke="none"/>"#,
                    pts.join(" ")
                );
            }
            let line: Vec<String> = run
                .iter()
                .map(|p| {
                    format!(
                        "{:.1},{:.1}",
                        x_of(p.at, report),
                        y_of(p.mean.as_nanos(), y)
                    )
                })
                .collect();
            // gnomon's own GPS measurement and chrony's estimate on top,
            // bold; the sources under them, lighter.
            let (width, opacity) = if series.kind == SeriesKind::Source {
                (1.0, 0.75)
            } else {
                (1.8, 1.0)
            };
            let _ = writeln!(
                s,
                r#"<polyline class="mean" points="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-opacity="{opacity}" stroke-linejoin="round"/>"#,
                line.join(" ")
            );
        }
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#888"/>"##
    );

    // Legends.
    let lx = LEFT + PLOT_W + 20.0;
    let mut ly = TOP + 8.0;
    let _ = writeln!(s, r#"<g class="legend">"#);
    let mut heading = None;
    for (i, series) in data.series.iter().enumerate() {
        let group = match series.kind {
            SeriesKind::Pps | SeriesKind::Nmea => "gnomon (latest)",
            SeriesKind::Chrony => "chrony (latest)",
            SeriesKind::Source => "chrony sources (latest)",
        };
        if heading != Some(group) {
            if heading.is_some() {
                ly += 8.0;
            }
            let _ = writeln!(
                s,
                r##"<text x="{lx:.1}" y="{ly:.1}" font-weight="bold" fill="#222">{group}</text>"##
            );
            ly += 22.0;
            heading = Some(group);
        }
        let colour = series_colour(&data.series, i);
        let last = series
            .points
            .last()
            .map(|p| render::offset(p.mean))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="18" height="4" fill="{colour}"/>"#,
            ly - 6.0
        );
        let _ = writeln!(
            s,
            r##"<text class="legend-series" x="{:.1}" y="{ly:.1}" fill="#222">{} <tspan fill="#555">{}</tspan></text>"##,
            lx + 26.0,
            escape(&series.name),
            escape(&last)
        );
        ly += 20.0;
    }
    if data.series.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{lx:.1}" y="{ly:.1}" fill="#555">no offsets in this window</text>"##
        );
        ly += 20.0;
    }
    ly += 16.0;
    let _ = writeln!(
        s,
        r##"<text x="{lx:.1}" y="{ly:.1}" font-weight="bold" fill="#222">state (bands)</text>"##
    );
    ly += 22.0;
    let mut seen: Vec<EngineState> = data.states.iter().map(|s| s.state).collect();
    seen.sort_by_key(|s| gnomon_core::samples::state_severity(*s));
    seen.dedup();
    for state in seen {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="18" height="12" fill="{}" fill-opacity="0.6"/>"#,
            ly - 10.0,
            state_colour(state)
        );
        let _ = writeln!(
            s,
            r##"<text class="legend-state" x="{:.1}" y="{ly:.1}" fill="#222">{}</text>"##,
            lx + 26.0,
            state.name()
        );
        ly += 20.0;
    }
    let _ = writeln!(s, "</g>");
    if data.samples == 0 {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{mid:.1}" text-anchor="middle" font-size="16" fill="#555">{}</text>"##,
            LEFT + PLOT_W / 2.0,
            escape(super::terminal::no_samples(report).trim())
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// Runs of consecutive points with no gap longer than `gap_secs`.
fn runs(series: &PlotSeries, gap_secs: f64) -> Vec<Vec<gnomon_core::samples::PlotPoint>> {
    let mut out: Vec<Vec<gnomon_core::samples::PlotPoint>> = Vec::new();
    for p in &series.points {
        let joined = out.last().and_then(|run| run.last()).is_some_and(|last| {
            #[allow(clippy::cast_precision_loss)]
            let dt = p.at.since(last.at).as_nanos() as f64 / 1e9;
            dt <= gap_secs
        });
        match out.last_mut() {
            Some(run) if joined => run.push(*p),
            _ => out.push(vec![*p]),
        }
    }
    out
}

fn short_time(t: WallTime) -> String {
    let (y, mo, d, h, m, _) = t.to_utc();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}
