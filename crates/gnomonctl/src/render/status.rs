//! `gnomonctl status`: the engine's state and why, the primary's health,
//! the GPS and PPS, chrony's reference, the clock against the time floor,
//! the fallbacks' readiness, active alerts and the last decisions.

use gnomon_core::{
    alert::Priority,
    engine::{FallbackMode, FallbackStatus, GpsStatus, Status, MIN_INDEPENDENT},
    ipc::StatusReport,
    source::FallbackTier,
    time::human_duration,
};

use crate::{
    render::{
        ago, history::decisions_table, magnitude, offset, state_paint, time, yes_no, Fields, Paint,
        Style,
    },
    table::{Align, Cell, Table},
};

pub(crate) fn render(report: &StatusReport, style: Style) -> String {
    let s = &report.status;
    let d = &report.daemon;
    let mut f = Fields::default();
    f.add(
        "gnomond",
        format!(
            "{}, pid {}, up {}, {} passes",
            d.version,
            d.pid,
            human_duration(d.uptime),
            d.passes
        ),
    );
    f.add("Config", d.config_path.as_str());
    f.add("Role", s.role.to_string());
    f.add("State", state_line(s, style));
    f.add("Why", s.reason.as_str());
    f.add(
        "Frozen",
        match &s.frozen {
            None => "no".to_owned(),
            Some(r) => style.paint(
                &match r.since {
                    Some(t) => format!("yes, since {}: {}", time(t), r.reason),
                    None => format!("yes: {}", r.reason),
                },
                Paint::Note,
            ),
        },
    );
    f.add("Fallbacks", fallback_line(s, style));
    f.add(
        "Changes",
        format!(
            "{} in the last hour (at most {})",
            s.changes_last_hour, s.max_changes_per_hour
        ),
    );
    f.add("Primary", primary_line(s, style));
    f.add("Cross-check", cross_check_line(s, style));
    if let Some(g) = &s.gps {
        gps_fields(&mut f, g, style);
    }
    chrony_fields(&mut f, s, style);
    clock_fields(&mut f, s, style);

    let mut out = f.render();
    out.push('\n');
    if s.fallbacks.is_empty() {
        out.push_str("No fallbacks configured: gnomon can alert but never fall back.\n");
    } else {
        out.push_str(&fallbacks_table(&s.fallbacks).render(style));
    }
    let excluded: Vec<String> = s
        .cross_check
        .sources
        .iter()
        .filter_map(|c| Some(format!("  {}: {}\n", c.address, c.excluded.as_deref()?)))
        .collect();
    if !excluded.is_empty() {
        out.push_str("Not counted as independent:\n");
        out.push_str(&excluded.concat());
    }
    if !s.alerts.is_empty() {
        out.push('\n');
        out.push_str(&alerts_table(s).render(style));
    }
    if !report.recent_decisions.is_empty() {
        out.push('\n');
        out.push_str(&decisions_table(&report.recent_decisions).render(style));
    }
    out
}

fn state_line(s: &Status, style: Style) -> String {
    let state = style.paint(s.state.name(), state_paint(s.state));
    if s.state == s.underlying_state {
        state
    } else {
        format!(
            "{state} (otherwise {})",
            style.paint(s.underlying_state.name(), state_paint(s.underlying_state))
        )
    }
}

fn fallback_line(s: &Status, style: Style) -> String {
    let answering = s.fallbacks.iter().filter(|f| f.answering).count();
    let usable = s.fallbacks.iter().filter(|f| f.usable).count();
    let engaged = if s.fallbacks_engaged {
        style.paint("engaged", Paint::Warn)
    } else {
        "standby (noselect)".to_owned()
    };
    let mode = match s.fallback_mode {
        FallbackMode::Auto => "decided by gnomon".to_owned(),
        m => style.paint(&format!("{m} by the operator"), Paint::Note),
    };
    format!(
        "{engaged}, {mode}; {answering}/{} answering, {usable} usable",
        s.fallbacks.len()
    )
}

fn primary_line(s: &Status, style: Style) -> String {
    let p = &s.primary;
    let (word, paint) = match p.healthy {
        Some(true) => ("healthy", Paint::Good),
        Some(false) => ("unhealthy", Paint::Bad),
        None => ("not judged yet", Paint::Warn),
    };
    let mut line = style.paint(word, paint);
    if let Some(d) = p.for_ {
        line.push_str(&format!(" for {}", human_duration(d)));
    }
    if !p.detail.is_empty() {
        line.push_str(&format!(": {}", p.detail));
    }
    line
}

/// How the reference in use stands against the independent sources.
fn cross_check_line(s: &Status, style: Style) -> String {
    let c = &s.cross_check;
    let counted = c.counted();
    let mut line = if let Some(median) = c.judging_median() {
        format!(
            "{counted} independent sources ({}), median {}",
            c.counted_names(),
            offset(median)
        )
    } else {
        style.paint(
            &format!(
                "cannot cross-check: {counted} independent source{} answering, {MIN_INDEPENDENT} needed",
                if counted == 1 { "" } else { "s" }
            ),
            Paint::Warn,
        )
    };
    if s.primary.distrusted {
        line.push_str("; ");
        line.push_str(&style.paint("primary kept out of selection (it disagreed)", Paint::Bad));
    }
    line
}

fn gps_fields(f: &mut Fields, g: &GpsStatus, style: Style) {
    let verdict = g.verdict.describe();
    f.add(
        "GPS",
        if g.verdict.healthy() {
            style.paint(&verdict, Paint::Good)
        } else {
            style.paint(&verdict, Paint::Bad)
        },
    );
    let o = &g.observation;
    f.add(
        "GPS fix",
        match &o.last_epoch {
            None => "no NMEA epoch yet".to_owned(),
            Some(e) => format!(
                "{}, {} sats, HDOP {}, last epoch {}{}",
                e.fix,
                e.sats_used
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                e.hdop.map_or_else(|| "?".to_owned(), |h| format!("{h:.1}")),
                ago(o.last_epoch_age),
                e.utc
                    .map(|t| format!(" (says {})", time(t)))
                    .unwrap_or_default(),
            ),
        },
    );
    f.add(
        "PPS",
        if o.pulses == 0 {
            "no pulse yet".to_owned()
        } else {
            format!(
                "last pulse {}, jitter {}, {} pulses, {} missed",
                ago(o.last_pulse_age),
                o.pps_jitter.map_or_else(|| "-".to_owned(), magnitude),
                o.pulses,
                o.missed_pulses
            )
        },
    );
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
    let gate = if g.gate_open { "open" } else { "closed" };
    f.add(
        "GPS gate",
        if g.gate_open == g.gate_wanted {
            format!(
                "{gate} (NMEA samples {} chrony)",
                if g.gate_open { "fed to" } else { "kept from" }
            )
        } else {
            style.paint(
                &format!(
                    "{gate}, held by the freeze (would be {})",
                    if g.gate_wanted { "open" } else { "closed" }
                ),
                Paint::Note,
            )
        },
    );
}

fn chrony_fields(f: &mut Fields, s: &Status, style: Style) {
    let c = &s.chrony;
    let line = if !c.reachable {
        style.paint(
            &format!(
                "unreachable{}",
                c.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            Paint::Bad,
        )
    } else if c.synchronised {
        format!(
            "{} to {}",
            style.paint("synchronised", Paint::Good),
            c.reference.as_deref().unwrap_or("?")
        )
    } else {
        style.paint("not synchronised", Paint::Warn)
    };
    f.add("chrony", line);
    if let Some(o) = c.system_offset {
        let words = match o.as_nanos() {
            0 => "",
            n if n > 0 => " (system clock behind)",
            _ => " (system clock ahead)",
        };
        f.add("System offset", format!("{}{words}", offset(o)));
    }
    f.add(
        "Plan",
        if c.plan_applied {
            "applied to chrony".to_owned()
        } else {
            style.paint("not applied to chrony yet", Paint::Warn)
        },
    );
}

fn clock_fields(f: &mut Fields, s: &Status, style: Style) {
    let c = &s.clock;
    f.add(
        "Clock",
        match c.wall {
            None => "not read yet".to_owned(),
            Some(w) => {
                let diff = w.since(c.floor);
                let verdict = if c.before_floor {
                    style.paint(
                        &format!("BEFORE THE TIME FLOOR by {}", human_duration(diff.abs())),
                        Paint::Bad,
                    )
                } else if diff.as_nanos() >= 0 {
                    format!("{} after the floor", human_duration(diff.abs()))
                } else {
                    style.paint(
                        &format!(
                            "{} before the floor, within the margin",
                            human_duration(diff.abs())
                        ),
                        Paint::Warn,
                    )
                };
                format!("{}, {verdict}", time(w))
            }
        },
    );
    f.add(
        "Time floor",
        format!("{} ({})", time(c.floor), c.floor_source),
    );
}

/// The operator's words for a tier, shared with `sources`' plan column.
pub(crate) fn tier_name(tier: FallbackTier) -> &'static str {
    match tier {
        FallbackTier::LanPeer => "peer",
        FallbackTier::PublicIpLiteral => "public",
    }
}

fn fallbacks_table(fallbacks: &[FallbackStatus]) -> Table {
    let mut t = Table::new(&[
        ("Fallback", Align::Left),
        ("Tier", Align::Left),
        ("Selectable", Align::Left),
        ("Answering", Align::Left),
        ("Usable", Align::Left),
        ("Offset", Align::Right),
        ("Silent for", Align::Left),
    ]);
    for fb in fallbacks {
        t.row(vec![
            fb.address.to_string().into(),
            tier_name(fb.tier).into(),
            Cell::painted(
                yes_no(fb.selectable),
                if fb.selectable {
                    Paint::Warn
                } else {
                    Paint::Plain
                },
            ),
            Cell::painted(
                yes_no(fb.answering),
                if fb.answering {
                    Paint::Good
                } else {
                    Paint::Bad
                },
            ),
            Cell::painted(
                yes_no(fb.usable),
                if fb.usable { Paint::Good } else { Paint::Warn },
            ),
            fb.offset.map_or_else(|| "-".to_owned(), offset).into(),
            fb.silent_for
                .map_or_else(|| "-".to_owned(), human_duration)
                .into(),
        ]);
    }
    t
}

fn alerts_table(s: &Status) -> Table {
    let mut t = Table::new(&[
        ("Alert", Align::Left),
        ("Priority", Align::Left),
        ("Message", Align::Left),
    ]);
    for a in &s.alerts {
        let priority = a.kind.priority();
        let paint = match priority {
            Priority::Critical => Paint::Bad,
            Priority::Warning => Paint::Warn,
            Priority::Notice => Paint::Plain,
        };
        t.row(vec![
            match &a.subject {
                Some(subject) => format!("{} ({subject})", a.kind.name()).into(),
                None => a.kind.name().into(),
            },
            Cell::painted(priority.to_string(), paint),
            a.message.as_str().into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{fixtures, strip_ansi};

    #[test]
    fn status_shows_state_why_primary_chrony_clock_and_fallbacks() {
        let out = render(&fixtures::status_report(), Style::plain());
        for want in [
            "gnomond       : 0.1.0, pid 812, up 3h12m, 11520 passes\n",
            "State         : fallback\n",
            "Why           : GPS has no fix for 45s; fallbacks engaged\n",
            "Frozen        : no\n",
            "Fallbacks     : engaged, decided by gnomon; 2/3 answering, 2 usable\n",
            "Primary       : unhealthy for 5m: the receiver has no fix (0 satellites)\n",
            "GPS           : the receiver has no fix (0 satellites)\n",
            "GPS fix       : no fix, 0 sats, HDOP ?, last epoch 300ms ago\n",
            "PPS           : last pulse 200ms ago, jitter 1.2us, 3456 pulses, 2 missed\n",
            "GPS gate      : closed (NMEA samples kept from chrony)\n",
            "chrony        : synchronised to 192.168.1.11\n",
            "System offset : -3.2ms (system clock ahead)\n",
            "Plan          : applied to chrony\n",
            "Clock         : 2026-05-01T12:00:00.000Z, 3 days 2h after the floor\n",
            "Time floor    : 2026-04-28T10:00:00.000Z (last time chrony was seen synchronised)\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        // Fallback readiness, one aligned row per fallback.
        let lines: Vec<&str> = out.lines().collect();
        let head = lines
            .iter()
            .position(|l| l.starts_with("Fallback "))
            .unwrap();
        let offset_end = lines[head].find("Offset").unwrap() + "Offset".len();
        for row in &lines[head + 2..head + 5] {
            assert!(
                row[..offset_end].ends_with("us") || row[..offset_end].ends_with('-'),
                "offset column misaligned: {row:?}\n{out}"
            );
        }
        assert!(
            lines[head + 2].starts_with("192.168.1.12   peer    yes"),
            "{out}"
        );
        assert!(
            out.contains("fallback-unreachable (206.108.0.133)  warning"),
            "{out}"
        );
        assert!(out.contains("engage-fallbacks"), "{out}");
    }

    #[test]
    fn clock_before_floor_and_freeze_are_loud() {
        let mut r = fixtures::status_report();
        r.status.clock.wall = gnomon_core::time::WallTime::from_utc(1970, 1, 1, 0, 0, 30, 0);
        r.status.clock.before_floor = true;
        r.status.frozen = Some(gnomon_core::engine::FreezeRecord {
            reason: "maintenance".into(),
            since: None,
        });
        r.status.state = gnomon_core::engine::EngineState::Frozen;
        let plain = render(&r, Style::plain());
        assert!(
            plain.contains(
                "Clock         : 1970-01-01T00:00:30.000Z, BEFORE THE TIME FLOOR by 56.3 years\n"
            ),
            "{plain}"
        );
        assert!(
            plain.contains("State         : frozen (otherwise fallback)\n"),
            "{plain}"
        );
        assert!(
            plain.contains("Frozen        : yes: maintenance\n"),
            "{plain}"
        );
        assert!(!plain.contains('\x1b'), "no colour unless asked");
        let coloured = render(&r, Style::coloured());
        assert!(
            coloured.contains("\x1b[31mBEFORE THE TIME FLOOR"),
            "{coloured}"
        );
        assert_eq!(strip_ansi(&coloured), plain);
    }

    #[test]
    fn chrony_unreachable_and_client_role_without_gps() {
        let mut r = fixtures::status_report();
        r.status.gps = None;
        r.status.chrony.reachable = false;
        r.status.chrony.error = Some("connection refused (/run/chrony/chronyd.sock)".into());
        r.status.chrony.system_offset = None;
        let out = render(&r, Style::plain());
        assert!(!out.contains("GPS gate"), "{out}");
        // The keys' column narrows to the longest key shown.
        assert!(
            out.contains(
                "chrony      : unreachable: connection refused (/run/chrony/chronyd.sock)\n"
            ),
            "{out}"
        );
        assert!(!out.contains("System offset"), "{out}");
        // The fixture's peer follows this host: said, and not counted.
        assert!(
            out.contains(
                "Cross-check : cannot cross-check: 1 independent source answering, 2 needed\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "Not counted as independent:\n  192.168.1.12: takes its time from this host"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_distrusted_primary_is_said_on_the_cross_check_line() {
        let mut r = fixtures::status_report();
        r.status.primary.distrusted = true;
        r.status.cross_check.sources[0].excluded = None;
        let out = render(&r, Style::plain());
        assert!(
            out.contains("2 independent sources (192.168.1.12, 206.108.0.131), median +480us; primary kept out of selection (it disagreed)"),
            "{out}"
        );
    }
}
