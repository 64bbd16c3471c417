#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use gnomon_core::engine::EngineState;

use super::{
    fixtures::day_report,
    scale::{ScaleChoice, YScale},
    svg, terminal,
};
use crate::render::{strip_ansi, Style};

/// With GNOMON_PLOT_OUT=DIR, the fixture's plots are also written there
/// for a person to look at (`rsvg-convert` turns the SVG into a PNG).
fn keep(name: &str, text: &str) {
    if let Some(dir) = std::env::var_os("GNOMON_PLOT_OUT") {
        std::fs::write(std::path::Path::new(&dir).join(name), text).unwrap();
    }
}

#[test]
fn terminal_plot_of_a_day() {
    let report = day_report(88);
    let y = YScale::choose(&report.data, ScaleChoice::Auto);
    let text = terminal::render(&report, &y, 100, 20, Style::plain());
    keep("day.txt", &text);
    assert!(
        text.starts_with("gnomon on gps1 (gps): offsets, last 24h"),
        "{text}"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    // Every series in the legend, with its glyph and latest value.
    for name in [
        "* GPS at pulse",
        "~ chrony tracking",
        "o 192.168.1.11",
        "x 206.108.0.131",
        "# PPS",
    ] {
        assert!(text.contains(name), "legend lacks {name}:\n{text}");
    }
    // The state strip shows the outage: primary, fallback, primary again,
    // and the restart's gap as blanks.
    let strip = text
        .lines()
        .find(|l| l.trim_start().starts_with("state "))
        .unwrap();
    let strip = strip.trim_start().trim_start_matches("state").trim();
    assert!(strip.starts_with('P') && strip.ends_with('P'), "{strip:?}");
    assert!(strip.contains("PFFF"), "{strip:?}");
    assert!(
        strip.contains("P  ") || strip.contains("P a"),
        "the gap: {strip:?}"
    );
    assert!(text.contains("state: P primary"), "{text}");
    assert!(text.contains("F fallback"), "{text}");
    // The time axis is labelled with round hours and says UTC.
    assert!(
        text.contains("09-22 00:00") && text.contains("UTC"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when plain");
}

#[test]
fn terminal_plot_colours_only_when_asked_and_keeps_its_width() {
    let report = day_report(88);
    let y = YScale::choose(&report.data, ScaleChoice::Linear);
    let text = terminal::render(&report, &y, 100, 12, Style::coloured());
    assert!(text.contains("\x1b[34m*"), "PPS in blue");
    for line in strip_ansi(&text).lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
}

#[test]
fn svg_plot_of_a_day_is_well_formed_and_complete() {
    let mut report = day_report(600);
    report.host = "pi<&>\"1".into();
    let y = YScale::choose(&report.data, ScaleChoice::Auto);
    let text = svg::render(&report, &y);
    keep("day.svg", &text);
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            n.descendants()
                .filter(roxmltree::Node::is_text)
                .filter_map(|d| d.text())
                .collect::<String>()
        })
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t == "gnomon on pi<&>\"1 (gps): offsets, last 24h"),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t == "time (UTC)"));
    assert!(texts
        .iter()
        .any(|t| t.starts_with("offset: reference − system clock")));
    for name in [
        "GPS at pulse",
        "chrony tracking",
        "192.168.1.11",
        "206.108.0.131",
        "PPS",
    ] {
        assert!(
            doc.descendants()
                .any(|n| n.attribute("data-series") == Some(name)),
            "no trace for {name}"
        );
        assert!(
            texts.iter().any(|t| t.starts_with(&format!("{name} "))),
            "no legend for {name}"
        );
    }
    for state in ["primary", "fallback", "degraded", "recovering"] {
        assert!(
            texts.iter().any(|t| t == state),
            "no legend entry for {state}"
        );
        assert!(
            doc.descendants()
                .any(|n| n.attribute("data-state") == Some(state)),
            "no band for {state}"
        );
    }
    // Round hours on the time axis, offsets with units on the other.
    let x_ticks: Vec<&String> = texts.iter().filter(|t| t.ends_with(":00")).collect();
    assert!(x_ticks.len() >= 6, "{x_ticks:?}");
    assert!(
        texts.iter().any(|t| t.ends_with("ms") || t.ends_with("us")),
        "{texts:?}"
    );
    // The restart's gap breaks the traces: GPS (PPS) is drawn in two or
    // more runs, not one line across the gap.
    let pps_runs = doc
        .descendants()
        .find(|n| n.attribute("data-series") == Some("GPS at pulse"))
        .unwrap()
        .children()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(pps_runs >= 3, "outage and restart gaps: {pps_runs} runs");
    // Every coordinate is a finite number inside the canvas.
    for n in doc.descendants().filter(|n| n.has_tag_name("polyline")) {
        for pair in n.attribute("points").unwrap().split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (0.0..=1200.0).contains(&x) && (0.0..=640.0).contains(&y),
                "{pair}"
            );
        }
    }
}

#[test]
fn a_short_window_with_more_points_than_samples_still_draws_lines() {
    // One sample a second, a minute shown as 600 buckets of 100 ms:
    // consecutive samples are 10 buckets apart, which is not a gap.
    let mut report = day_report(600);
    let samples = super::fixtures::day_samples();
    let second: Vec<gnomon_core::samples::Sample> = samples
        .iter()
        .take(60)
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            s.at = report
                .data
                .to
                .minus(std::time::Duration::from_secs(60 - i as u64));
            s
        })
        .collect();
    report.interval = std::time::Duration::from_secs(1);
    report.data = gnomon_core::samples::reduce(
        &second,
        report.data.to,
        std::time::Duration::from_secs(61),
        600,
    );
    let y = YScale::choose(&report.data, ScaleChoice::Auto);
    let text = svg::render(&report, &y);
    let doc = roxmltree::Document::parse(&text).unwrap();
    let trace = doc
        .descendants()
        .find(|n| n.attribute("data-series") == Some("GPS at pulse"))
        .unwrap();
    let lines = trace
        .children()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    let dots = trace
        .children()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!((lines, dots), (1, 0), "one line through 60 samples");
}

#[test]
fn an_empty_window_says_why() {
    let mut report = day_report(100);
    report.data = gnomon_core::samples::reduce(
        &[],
        report.data.to,
        std::time::Duration::from_secs(3600),
        100,
    );
    report.kept = 0;
    report.oldest = None;
    let y = YScale::choose(&report.data, ScaleChoice::Auto);
    let text = terminal::render(&report, &y, 80, 10, Style::plain());
    assert!(
        text.contains("No samples yet: gnomond takes one every 1m"),
        "{text}"
    );
    let svg_text = svg::render(&report, &y);
    roxmltree::Document::parse(&svg_text).unwrap();
    assert!(svg_text.contains("No samples yet"));
}

#[test]
fn a_wrong_clock_gets_a_log_axis_and_still_shows_the_small_offsets() {
    let mut report = day_report(200);
    // 20 years behind for the first points of one series.
    let series = report
        .data
        .series
        .iter_mut()
        .find(|s| s.name == "192.168.1.11")
        .unwrap();
    for p in series.points.iter_mut().take(3) {
        p.mean = gnomon_core::time::Offset::from_secs(631_152_000);
        p.max = p.mean;
    }
    let y = YScale::choose(&report.data, ScaleChoice::Auto);
    assert!(y.is_log());
    let text = terminal::render(&report, &y, 100, 20, Style::plain());
    assert!(text.contains("symmetric log"), "{text}");
    // A label in years at the top of the axis.
    assert!(text.lines().any(|l| l.contains("y ┤")), "{text}");
    assert_eq!(
        report.data.states.first().map(|s| s.state),
        Some(EngineState::Primary)
    );
}
