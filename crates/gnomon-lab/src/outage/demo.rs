//! `gnomon-lab demo`: the power outage (S1) on the real lab, told for
//! someone who has never seen gnomon; `gnomon-lab compare`: the same
//! outage with gnomond and with the incident's stock configuration, side
//! by side.

use std::{fmt::Write as _, io};

use super::{
    find,
    lab::{lab_thresholds, SERVERS},
    play,
    run::{print_block, seconds_or_never, wrap, Output, Report},
    stories::OUTAGE,
};

const INTRO: &str = "A home lab after a power cut. gps1 is a Raspberry Pi with a GPS hat: \
the Stratum 1 of the house. srv1 and srv2 are two Pis serving DNS and NTP to the LAN; they \
have no real-time clock, and the only time source their chrony knew was gps1. After the \
power cut gps1 hangs at boot. In the real incident srv1 and srv2 never got the time: their \
TLS certificates were \"not yet valid\", DNS stayed down, so not even a pool hostname could \
have helped.\n\nHere each of those hosts is a Linux network namespace on this machine, with \
a real chronyd (which never touches this machine's clock) and, on gps1, srv1 and srv2, \
gnomond. pub1-pub3 stand in for public NTP servers configured by IP address. gnomond keeps \
them in chrony's sources as `noselect` (measured, never used) until the primary is missing \
for longer than the grace period.";

fn lab_times() -> String {
    let t = lab_thresholds();
    format!(
        "Times are shortened for the lab: grace {} s (60 s by default), hold {} s (5 min by \
         default), every source polled 4 times a second.",
        t.grace.as_secs(),
        t.hold.as_secs()
    )
}

/// Plays the power outage with narration; `Ok(true)` when every check
/// passed.
pub fn run() -> io::Result<bool> {
    super::require_root()?;
    let scenario = find("power-outage")
        .ok_or_else(|| io::Error::other("the power-outage scenario is missing"))?;
    print_block(&format!(
        "gnomon lab demo: the power outage (S1)\n\n{}\n\n{}\n",
        wrap_paragraphs(INTRO),
        wrap(&lab_times(), 76)
    ));
    let report = play(scenario, Output::Demo)?;
    print_block(&format!("\n{}", report.summary()));
    print_block(&format!("\n{}\n", wrap(&summary_paragraph(&report), 76)));
    Ok(report.passed())
}

/// What happened, in one paragraph, with the figures of this run.
fn summary_paragraph(report: &Report) -> String {
    let f = &report.figures;
    let first: Vec<String> = SERVERS
        .iter()
        .map(|h| format!("{h} after {}", seconds_or_never(f.first_selected.get(*h))))
        .collect();
    let changes: u32 = SERVERS
        .iter()
        .map(|h| f.source_changes.get(*h).copied().unwrap_or(0))
        .sum();
    if report.passed() {
        format!(
            "In short: with gps1 hung, gnomond on srv1 and srv2 waited out the grace period, \
             made the IP-literal fallbacks and the LAN peer selectable, and chrony had a \
             source ({}), no DNS needed; the journal said why, with alerts an operator can \
             filter on. When gps1 came back and stayed healthy for the hold time, gnomond \
             put the fallbacks back to noselect and chrony returned to gps1: {changes} \
             changes of the selected source in all. Without gnomond (gnomon-lab run \
             baseline-stock) the same outage leaves both servers without time for as long \
             as gps1 is down.",
            first.join(", ")
        )
    } else {
        "In short: this run did not go as it should: the failed checks above say where, and \
         the diagnostics show what each host's gnomond and chronyd reported."
            .to_owned()
    }
}

fn wrap_paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| wrap(p, 76))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `gnomon-lab compare`: power-outage vs baseline-stock.
pub fn compare() -> io::Result<bool> {
    super::require_root()?;
    let mut reports = Vec::new();
    for name in ["power-outage", "baseline-stock"] {
        let scenario = find(name).ok_or_else(|| io::Error::other(format!("no scenario {name}")))?;
        print_block(&format!("running {name} (about a minute)..."));
        reports.push(play(scenario, Output::Quiet)?);
    }
    let [with, stock] = reports.as_slice() else {
        return Err(io::Error::other("compare needs both runs"));
    };
    print_block(&compare_table(with, stock));
    Ok(with.passed() && stock.passed())
}

/// The side-by-side table of two runs' figures.
pub fn compare_table(with: &Report, stock: &Report) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nthe power outage, gps1 down for the first {:.0} s:\n",
        OUTAGE.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "{:<38} {:<22} {:<22}",
        "", "with gnomond", "stock (no gnomond)"
    );
    let row = |text: &mut String, what: &str, a: String, b: String| {
        let _ = writeln!(text, "{what:<38} {a:<22} {b:<22}");
    };
    for host in SERVERS {
        row(
            &mut text,
            &format!("{host}: start → first selected source"),
            seconds_or_never(with.figures.first_selected.get(host)),
            seconds_or_never(stock.figures.first_selected.get(host)),
        );
        row(
            &mut text,
            &format!("{host}: primary loss → fallback selected"),
            seconds_or_never(with.figures.loss_to_fallback.get(host)),
            seconds_or_never(stock.figures.loss_to_fallback.get(host)),
        );
        row(
            &mut text,
            &format!("{host}: changes of selected source"),
            with.figures
                .source_changes
                .get(host)
                .copied()
                .unwrap_or(0)
                .to_string(),
            stock
                .figures
                .source_changes
                .get(host)
                .copied()
                .unwrap_or(0)
                .to_string(),
        );
    }
    row(
        &mut text,
        "watched",
        format!("{:.1} s", with.figures.watched.as_secs_f64()),
        format!("{:.1} s", stock.figures.watched.as_secs_f64()),
    );
    let verdict = |r: &Report| {
        format!(
            "{} {}/{}",
            if r.passed() { "PASS" } else { "FAIL" },
            r.checks.iter().filter(|c| c.passed).count(),
            r.checks.len()
        )
    };
    row(&mut text, "checks", verdict(with), verdict(stock));
    text
}
