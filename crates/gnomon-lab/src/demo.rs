//! The demo: the power-outage story (S1) told step by step for someone who
//! has never seen gnomon, with status snapshots and the alerts as they
//! would reach the journal.

use std::{fmt::Write as _, time::Duration};

use gnomon_core::{
    alert::{AlertKind, AlertPhase},
    engine::{DecisionKind, Status},
    time::{human_duration, MonoTime},
};

use crate::scenarios;

struct Chapter {
    until: u64,
    title: &'static str,
    text: &'static str,
}

const CHAPTERS: [Chapter; 5] = [
    Chapter {
        until: 10,
        title: "Power returns",
        text: "srv1, a Raspberry Pi serving DNS and NTP to the LAN, boots without a real-time clock: its clock says 1970. Its only time source is gps1, the Stratum 1 with the GPS hat, and gps1 hangs at boot. With a 1970 clock srv1's TLS certificates are \"not yet valid\", so its DNS is down, so no pool hostname could help either.",
    },
    Chapter {
        until: 70,
        title: "The grace period runs out",
        text: "gnomon gives the primary a grace period (60 s by default). The fallbacks, srv2 as a LAN peer and three public servers by IP literal (no DNS needed), have been in chrony's configuration all along as `noselect`, so chrony has already measured them. When grace ends gnomon makes them selectable, chrony selects one, and gnomon asks chrony to step the clock out of 1970.",
    },
    Chapter {
        until: 610,
        title: "Living on fallbacks",
        text: "srv1 now keeps time from a public server. gps1 stays down for ten minutes; the warning that fallbacks are engaged repeats so nobody forgets.",
    },
    Chapter {
        until: 905,
        title: "gps1 comes back",
        text: "gps1 answers again. gnomon does not switch back at once: the primary must stay healthy for the hold time (5 min) so a flapping primary cannot make chrony flap with it.",
    },
    Chapter {
        until: 1200,
        title: "Back to normal",
        text: "After the hold, gnomon puts the fallbacks back to `noselect` (still measured, ready for the next outage) and says so at notice level.",
    },
];

fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + word.len() + 1 > width {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
    out
}

/// A `gnomonctl status`-like block.
pub fn status_block(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "    State     : {} — {}", s.state, s.reason);
    let _ = writeln!(
        out,
        "    Clock     : {}{}",
        s.clock.wall.map_or("unknown".to_owned(), |w| w.to_string()),
        if s.clock.before_floor {
            format!("  (BEFORE the time floor {})", s.clock.floor)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "    chrony    : {}",
        match (&s.chrony.reference, s.chrony.synchronised) {
            (Some(r), true) => format!("synchronised to {r}"),
            _ => "not synchronised".to_owned(),
        }
    );
    let answering = s.fallbacks.iter().filter(|f| f.answering).count();
    let _ = writeln!(
        out,
        "    Fallbacks : {} ({answering}/{} answering)",
        if s.fallbacks_engaged {
            "engaged"
        } else {
            "standby (noselect)"
        },
        s.fallbacks.len()
    );
    out
}

/// The whole demo as text.
pub fn narrate() -> String {
    let mut sc = scenarios::power_outage();
    let mut out = String::new();
    let _ = writeln!(out, "gnomon lab demo — {} ({})", sc.title, sc.name);
    let _ = writeln!(
        out,
        "The real decision engine, driven in simulated time by a model of chrony and the network.\n"
    );
    let mut shown = 0;
    for (i, ch) in CHAPTERS.iter().enumerate() {
        sc.sim.run_until(Duration::from_secs(ch.until));
        let _ = writeln!(out, "{}. {} (until T+{}s)", i + 1, ch.title, ch.until);
        out.push_str(&wrap(ch.text, 78, "   "));
        let _ = writeln!(out);
        for e in sc.sim.timeline().iter().skip(shown) {
            if e.event.starts_with("ALERT")
                || e.event.starts_with("STEP")
                || e.event.starts_with("SCRIPT")
                || e.event.starts_with("chrony selects")
                || (e.event.starts_with("DECISION") && !e.event.contains("state-change"))
            {
                let _ = writeln!(out, "   {}  {}", e.at, e.event);
            }
        }
        shown = sc.sim.timeline().len();
        let _ = writeln!(out, "\n   gnomonctl status on srv1:");
        out.push_str(&status_block(&sc.sim.status()));
        let _ = writeln!(out);
    }
    out.push_str(&summary(&sc.sim));
    out
}

fn secs(t: Option<MonoTime>) -> String {
    t.map_or("never".to_owned(), |t| human_duration(t.as_duration()))
}

fn summary(sim: &crate::sim::Sim) -> String {
    let engaged = sim
        .first_decision(DecisionKind::EngageFallbacks)
        .map(|d| d.at);
    let step = sim.first_decision(DecisionKind::StepClock).map(|d| d.at);
    let released = sim
        .first_decision(DecisionKind::ReleaseFallbacks)
        .map(|d| d.at);
    let first_sel = sim
        .selections()
        .iter()
        .find(|(_, s)| s != "-")
        .map(|(t, _)| *t);
    let crit = sim.alert_at(AlertKind::ClockBeforeFloor, AlertPhase::Opened);
    let mut out = String::new();
    let _ = writeln!(out, "Summary");
    out.push_str(&wrap(
        &format!(
            "Without gnomon, srv1 would have stayed in 1970 with DNS down until someone came with a keyboard. With gnomon: a critical alert at {} said the clock was before the time floor and what that breaks; fallbacks were engaged at {}; chrony selected a source at {}; the clock was stepped at {}; when gps1 returned and stayed healthy for the hold, fallbacks were released at {}. Figures: time to first selected source {}, source changes {}.",
            secs(crit),
            secs(engaged),
            secs(first_sel),
            secs(step),
            secs(released),
            secs(first_sel),
            sim.decisions()
                .filter(|d| matches!(d.kind, DecisionKind::EngageFallbacks | DecisionKind::ReleaseFallbacks))
                .count()
        ),
        78,
        "   ",
    ));
    out
}
