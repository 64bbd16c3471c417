//! `gnomonctl gps` and `gnomonctl pps`: the receiver and the pulse line on
//! the `gps` host — where they come from, how reading goes, what the engine
//! makes of them, and what reaches chrony.

use gnomon_core::{
    engine::GpsStatus,
    gps::PpsEdge,
    ipc::{GpsReport, PpsReport},
    time::WallTime,
};

use crate::{
    render::{ago, magnitude, offset, time, Fields, Paint, Style},
    table::{Align, Table},
};

pub(crate) fn render_gps(report: &GpsReport, style: Style) -> String {
    let mut f = Fields::default();
    f.add(
        "Receiver",
        format!(
            "{} {} ({})",
            report.source,
            report.device,
            if report.connected {
                style.paint("connected", Paint::Good)
            } else {
                style.paint("not connected", Paint::Bad)
            }
        ),
    );
    last_error(&mut f, report.last_error.as_deref(), style);
    f.add(
        "Read",
        if report.backlog_dropped == 0 {
            format!("{} bytes, {} epochs", report.bytes_read, report.epochs)
        } else {
            format!(
                "{} bytes, {} epochs, {} dropped as a backlog",
                report.bytes_read, report.epochs, report.backlog_dropped
            )
        },
    );
    f.add(
        "Into chrony",
        format!(
            "{} samples sent, {} withheld, via {}",
            report.samples_sent, report.samples_withheld, report.sock_refclock
        ),
    );
    match &report.status {
        None => f.add("Verdict", "not judged yet"),
        Some(g) => {
            verdict(&mut f, g, style);
            let o = &g.observation;
            match &o.last_epoch {
                None => f.add("Last epoch", "none yet"),
                Some(e) => {
                    f.add(
                        "Last epoch",
                        format!(
                            "{}, received {}",
                            e.utc.map_or_else(|| "no date and time".to_owned(), time),
                            ago(o.last_epoch_age)
                        ),
                    );
                    f.add(
                        "Fix",
                        format!(
                            "{}, RMC {}, GGA quality {}, {} sats, HDOP {}",
                            e.fix,
                            match e.rmc_valid {
                                Some(true) => "A",
                                Some(false) => "V",
                                None => "-",
                            },
                            e.gga_quality
                                .map_or_else(|| "-".to_owned(), |q| q.to_string()),
                            e.sats_used
                                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                            e.hdop.map_or_else(|| "-".to_owned(), |h| format!("{h:.1}")),
                        ),
                    );
                }
            }
            f.add(
                "Alignment",
                o.alignment.map_or_else(
                    || "unknown (no pulse before the sentence)".to_owned(),
                    |d| format!("sentence {} after the pulse", magnitude(d)),
                ),
            );
            gps_offset(&mut f, g);
            gate(&mut f, g, style);
        }
    }
    f.render()
}

pub(crate) fn render_pps(report: &PpsReport, style: Style) -> String {
    let mut f = Fields::default();
    f.add("PPS", format!("{} {}", report.kind, report.device));
    last_error(&mut f, report.last_error.as_deref(), style);
    match &report.status {
        None => f.add("Verdict", "not judged yet"),
        Some(g) => {
            verdict(&mut f, g, style);
            let o = &g.observation;
            f.add("Last pulse", ago(o.last_pulse_age));
            f.add(
                "Last interval",
                o.last_interval
                    .map_or_else(|| "-".to_owned(), |d| format!("{:.6}s", d.as_secs_f64())),
            );
            f.add(
                "Jitter",
                o.pps_jitter.map_or_else(|| "-".to_owned(), magnitude),
            );
            f.add(
                "Pulses",
                format!("{} seen, {} missed", o.pulses, o.missed_pulses),
            );
            gps_offset(&mut f, g);
        }
    }
    let mut out = f.render();
    if !report.recent_edges.is_empty() {
        let mut t = Table::new(&[
            ("Sequence", Align::Right),
            ("System clock at edge", Align::Left),
            ("Interval", Align::Right),
        ]);
        let mut previous: Option<&PpsEdge> = None;
        for e in &report.recent_edges {
            t.row(vec![
                e.sequence.to_string().into(),
                time_micros(e.wall).into(),
                previous
                    .map_or_else(
                        || "-".to_owned(),
                        |p| format!("{:.6}s", e.mono.since(p.mono).as_secs_f64()),
                    )
                    .into(),
            ]);
            previous = Some(e);
        }
        out.push('\n');
        out.push_str(&t.render(style));
    }
    out
}

/// An edge's timestamp to the microsecond: milliseconds say nothing about
/// a pulse.
fn time_micros(t: WallTime) -> String {
    let (y, mo, d, h, mi, s) = t.to_utc();
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
        t.subsec_nanos() / 1000
    )
}

fn last_error(f: &mut Fields, e: Option<&str>, style: Style) {
    if let Some(e) = e {
        f.add("Last error", style.paint(e, Paint::Bad));
    }
}

fn verdict(f: &mut Fields, g: &GpsStatus, style: Style) {
    let text = g.verdict.describe();
    f.add(
        "Verdict",
        style.paint(
            &text,
            if g.verdict.healthy() {
                Paint::Good
            } else {
                Paint::Bad
            },
        ),
    );
}

fn gps_offset(f: &mut Fields, g: &GpsStatus) {
    let o = &g.observation;
    if let Some(off) = o.gps_offset {
        f.add(
            "GPS offset",
            format!(
                "{} (GPS - system clock, from {})",
                offset(off),
                if o.offset_from_pps {
                    "the pulse"
                } else {
                    "NMEA arrival"
                }
            ),
        );
    }
}

fn gate(f: &mut Fields, g: &GpsStatus, style: Style) {
    let word = |open| if open { "open" } else { "closed" };
    f.add(
        "Gate",
        if g.gate_open == g.gate_wanted {
            word(g.gate_open).to_owned()
        } else {
            style.paint(
                &format!(
                    "{}, held by the freeze (would be {})",
                    word(g.gate_open),
                    word(g.gate_wanted)
                ),
                Paint::Note,
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn gps_report_names_receiver_counts_and_verdict() {
        let out = render_gps(&fixtures::gps_report(), Style::plain());
        for want in [
            "Receiver    : uart /dev/ttyAMA0 (connected)\n",
            "Read        : 1234567 bytes, 3600 epochs\n",
            "Into chrony : 3500 samples sent, 100 withheld, via /run/gnomon/nmea.sock\n",
            "Verdict     : GPS healthy\n",
            "Last epoch  : 2026-05-01T11:59:59.000Z, received 300ms ago\n",
            "Fix         : 3D, RMC A, GGA quality 1, 9 sats, HDOP 0.9\n",
            "Alignment   : sentence 120ms after the pulse\n",
            "GPS offset  : +12ns (GPS - system clock, from the pulse)\n",
            "Gate        : open\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(!out.contains("Last error"), "{out}");
    }

    #[test]
    fn pps_report_lists_edges_with_intervals() {
        let out = render_pps(&fixtures::pps_report(), Style::plain());
        for want in [
            "PPS           : kernel /dev/pps0\n",
            "Last error    : fetch timed out\n",
            "Last interval : 1.000001s\n",
            "Jitter        : 1.2us\n",
            "Pulses        : 3456 seen, 2 missed\n",
            "Sequence  System clock at edge          Interval\n",
            "   12345  2026-05-01T11:59:58.000000Z          -\n",
            "   12346  2026-05-01T11:59:59.000001Z  1.000001s\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
