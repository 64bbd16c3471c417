//! The offset history end to end: gnomond (role client) against a private
//! real chronyd with a loopback primary, sampling every second; `gnomonctl
//! plot` as JSON, in the terminal and as an SVG; the history surviving a
//! restart, and a damaged samples file costing only its bad lines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{fs, io::Write as _, net::Ipv4Addr, time::Duration};

use gnomon_lab::gnomond::{Gnomond, GnomondSpec};
use rustix::process::Signal;
use serde_json::Value;

mod common;

use common::{json, output, text, wait_for, wait_ready, LoopbackClient};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);

fn plot_json(d: &Gnomond) -> Value {
    json(&d.gnomonctl(&["plot", "--since", "10m", "--json"]).unwrap())
}

fn series_names(plot: &Value) -> Vec<String> {
    plot["data"]["series"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn offset_history_is_sampled_plotted_and_kept_across_restarts() {
    let lab = LoopbackClient::start("plot", PRIMARY, FALLBACK);
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = lab.config.clone();
    config.history.interval = Duration::from_secs(1);
    config.history.keep = Duration::from_secs(3600);
    let spec = || {
        let mut s = GnomondSpec::new(config.clone());
        s.state_dir = Some(state_dir.path().to_owned());
        s
    };
    let mut d = Gnomond::start(spec()).unwrap();
    wait_ready(&d);

    // Samples arrive once a second, with chrony's tracking and the primary
    // as a source once chrony has measured it.
    let plot = wait_for(
        "samples with the primary's offset",
        Duration::from_secs(40),
        || {
            let p = plot_json(&d);
            let names = series_names(&p);
            let samples = p["data"]["samples"].as_u64().unwrap_or(0);
            if samples >= 5 && names.iter().any(|n| n == &PRIMARY.to_string()) {
                Ok(p)
            } else {
                Err(format!("{samples} samples, series {names:?}"))
            }
        },
    );
    assert_eq!(plot["role"], "client");
    assert_eq!(plot["interval"]["secs"], 1);
    assert!(
        series_names(&plot).contains(&"chrony tracking".to_owned()),
        "{plot}"
    );
    let states = plot["data"]["states"].as_array().unwrap();
    assert!(!states.is_empty(), "{plot}");
    // Loopback chronyds agree with the client to well within a second.
    let primary = plot["data"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == PRIMARY.to_string())
        .unwrap();
    for p in primary["points"].as_array().unwrap() {
        let mean = p["mean"].as_i64().unwrap();
        assert!(mean.abs() < 100_000_000, "offset {mean} ns: {p}");
    }

    // In the terminal: the title, a state strip, the legend.
    let out = d
        .gnomonctl(&[
            "plot", "--since", "10m", "--width", "90", "--color", "never",
        ])
        .unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(
        shown.contains("gnomon on ") && shown.contains("(client): offsets, last 10m"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(" {PRIMARY} ")),
        "legend lacks the primary:\n{shown}"
    );
    assert!(
        shown.lines().any(|l| l.trim_start().starts_with("state ")),
        "{shown}"
    );
    assert!(shown.lines().all(|l| l.chars().count() <= 90), "{shown}");

    // As an SVG file.
    let svg_path = d.dir().join("plots/last-10m.svg");
    fs::create_dir_all(svg_path.parent().unwrap()).unwrap();
    let out = d
        .gnomonctl(&[
            "plot",
            "--since",
            "10m",
            "--svg",
            svg_path.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("wrote "),
        "{}",
        text(&out.stdout)
    );
    let svg = fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains(&format!(r#"data-series="{PRIMARY}""#)),
        "no trace of the primary"
    );
    assert!(svg.contains("time (UTC)"));
    // An unwritable place is an error that names it, exit 74.
    let out = d
        .gnomonctl(&["plot", "--svg", "/proc/gnomon-plot.svg"])
        .unwrap();
    assert_eq!(out.status.code(), Some(74), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/proc/gnomon-plot.svg"));

    // Stop: the samples are on disk, one per line.
    d.signal(Signal::TERM).unwrap();
    d.wait_exit(Duration::from_secs(10)).unwrap();
    let file = state_dir.path().join("samples.jsonl");
    let lines = fs::read_to_string(&file).unwrap().lines().count();
    assert!(lines >= 5, "{lines} lines in {}", file.display());

    // Damage: a torn line and garbage. The daemon starts, says so, keeps
    // every good sample.
    let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(b"{\"at\":17,\"state\":\"prim\ngarbage\n")
        .unwrap();
    drop(f);
    let d = Gnomond::start(spec()).unwrap();
    wait_ready(&d);
    let kept = plot_json(&d)["kept"].as_u64().unwrap();
    assert!(
        kept >= u64::try_from(lines).unwrap(),
        "kept {kept} of {lines} samples{}",
        output(&d)
    );
    wait_for("the damage reported", Duration::from_secs(5), || {
        let out = d.output();
        out.contains("restoring the offset history")
            .then_some(())
            .ok_or(out)
    });
    let out = d.output();
    assert!(out.contains("skipped"), "{out}");
}
