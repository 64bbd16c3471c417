//! The scenarios: each starts a lab, acts on it (a hung host, a cable, a
//! receiver's mode, a faked clock, an operator's command), waits for what
//! gnomon and chrony should do, and checks it.
//!
//! Times are the lab's (grace 5 s, hold 15 s, GPS settle 3 s, fallback
//! silence 8 s, every source polled every 0.25 s; see
//! [`super::lab::lab_thresholds`]). A wait's timeout is generous; a check
//! on a time states its bound.

use std::{io, time::Duration};

use gnomon_core::time::Offset;

use super::{
    lab::{lab_thresholds, LabOptions, GPS1, PUBS, SERVERS, SRV1, SRV2},
    lies,
    run::{HostView, Run},
    Scenario,
};
use crate::gps_hat::HatMode;

/// Every scenario, in `gnomon-lab list` order.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "power-outage",
        incident: "S1",
        title: "gps1 hangs at boot; the LAN servers fall back, then return to gps1",
        options: power_outage_options,
        play: power_outage,
    },
    Scenario {
        name: "baseline-stock",
        incident: "S1",
        title: "the same outage with the incident's stock configuration and no gnomond",
        options: baseline_options,
        play: baseline_stock,
    },
    Scenario {
        name: "clock-in-the-past",
        incident: "S2",
        title: "srv1 boots at 1970, then one day behind: critical alert, step asked, chrony's correction",
        options: clock_in_the_past_options,
        play: clock_in_the_past,
    },
    Scenario {
        name: "gps-rollover",
        incident: "S3",
        title: "gps1's receiver jumps 1024 weeks back: gate closed, gps1 on pub*, srv1/srv2 stay sane",
        options: LabOptions::default,
        play: gps_rollover,
    },
    Scenario {
        name: "pps-without-fix",
        incident: "S4",
        title: "pulses but no fix, then pulses and no NMEA: the GPS is not trusted, gps1 falls back",
        options: pps_without_fix_options,
        play: pps_without_fix,
    },
    Scenario {
        name: "primary-returns",
        incident: "S5",
        title: "gps1 comes back, goes away before the hold, comes back: one release, after the hold",
        options: LabOptions::default,
        play: primary_returns,
    },
    Scenario {
        name: "fallback-rot",
        incident: "S6",
        title: "pub2 stops answering while gps1 is healthy: a warning, nothing else changes",
        options: LabOptions::default,
        play: fallback_rot,
    },
    Scenario {
        name: "chronyd-restart",
        incident: "S7",
        title: "srv1's chronyd restarts and loses gnomon's sources file: alert, plan re-applied",
        options: LabOptions::default,
        play: chronyd_restart,
    },
    Scenario {
        name: "freeze",
        incident: "S8",
        title: "srv1 frozen for maintenance: gps1 lost, srv1 changes nothing until thawed",
        options: LabOptions::default,
        play: freeze,
    },
    Scenario {
        name: "primary-lies",
        incident: "S10",
        title: "gps1 serves a clock 1 s ahead: srv1/srv2 keep it out at once, engage, never step to it",
        options: lies::primary_lies_options,
        play: lies::primary_lies,
    },
    Scenario {
        name: "gps-wrong-second",
        incident: "S10",
        title: "gps1's receiver names a second 1 s, then 18 s off, pulses true: no sample reaches chrony",
        options: LabOptions::default,
        play: lies::gps_wrong_second,
    },
    Scenario {
        name: "gps-leap-offset-at-boot",
        incident: "S10",
        title: "gps1's receiver cold-starts 18 s off: the gate never opens until it is right",
        options: lies::gps_leap_offset_at_boot_options,
        play: lies::gps_leap_offset_at_boot,
    },
    Scenario {
        name: "gps-own-echo",
        incident: "S10",
        title: "Internet down, gps1's only other sources are its own clients: the echo vouches for nothing",
        options: lies::gps_own_echo_options,
        play: lies::gps_own_echo,
    },
];

/// How long the outage lasts before gps1 boots (both power-outage and
/// baseline-stock watch this long).
pub const OUTAGE: Duration = Duration::from_secs(30);

pub(super) fn grace() -> Duration {
    lab_thresholds().grace
}

pub(super) fn hold() -> Duration {
    lab_thresholds().hold
}

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// chrony selects one of the fallbacks: a pub or the LAN peer.
pub(super) fn on_fallback(v: &HostView) -> bool {
    v.selected
        .as_deref()
        .is_some_and(|s| PUBS.contains(&s) || SERVERS.contains(&s))
}

/// chrony selects gps1 and gnomon has the fallbacks on standby.
pub(super) fn on_primary(v: &HostView) -> bool {
    v.selected.as_deref() == Some(GPS1) && v.fallbacks_engaged() == Some(false)
}

/// Every fallback of a LAN server is `noselect` in chrony.
fn fallbacks_noselect(v: &HostView, host: &str) -> bool {
    let peer = if host == SRV1 { SRV2 } else { SRV1 };
    PUBS.iter()
        .chain(std::iter::once(&peer))
        .all(|f| v.noselect(f) == Some(true))
}

pub(super) fn both(run: &Run, pred: impl Fn(&HostView) -> bool) -> bool {
    SERVERS.iter().all(|h| pred(&run.view(h)))
}

fn power_outage_options() -> LabOptions {
    LabOptions {
        gps1_hung: true,
        ..LabOptions::default()
    }
}

fn baseline_options() -> LabOptions {
    LabOptions {
        stock: true,
        gps1_hung: true,
        ..LabOptions::default()
    }
}

/// S1: gps1 hangs at boot, srv1/srv2 fall back within grace + 10 s; gps1
/// boots, and after the hold they return to it, fallbacks `noselect`.
fn power_outage(run: &mut Run) -> io::Result<()> {
    run.mark("primary-lost");
    run.say(
        "1. Power is back. srv1, srv2 and the public stand-ins boot; gps1 hangs. gnomond on \
         srv1 and srv2 has written chrony's sources: gps1 as the primary, the LAN peer and \
         pub1-pub3 as fallbacks marked noselect. chrony measures them all but may only use \
         gps1, which does not answer.",
    );
    run.event(
        "lab",
        "power is back: gps1 hangs at boot (no chronyd, no gnomond); srv1, srv2, pub1-3 are up",
    );
    run.settle(Duration::from_secs(2))?;
    run.snapshot(SRV1);
    run.say(&format!(
        "2. gnomond gives the primary a grace period ({} s here). When it runs out, it makes \
         the fallbacks selectable and tells chrony to reload its sources; chrony, which has \
         been measuring them all along, selects one at once. No DNS is needed: the \
         fallbacks are IP addresses.",
        grace().as_secs()
    ));
    let bound = grace() + Duration::from_secs(10);
    run.wait_for(bound + Duration::from_secs(20), |r| both(r, on_fallback))?;
    // An alert opens once its condition has held for a second, and the
    // journal is read every few ticks.
    run.wait_for(Duration::from_secs(5), |r| {
        SERVERS
            .iter()
            .all(|h| !r.opened(h, "fallback-engaged").is_empty())
    })?;
    for host in SERVERS {
        let first = run.figures().first_selected.get(host).copied();
        run.check(
            &format!(
                "{host}: chrony selected a source within grace + 10 s ({})",
                secs(bound)
            ),
            first.is_some_and(|t| t <= bound),
            format!(
                "first selected at {}",
                super::run::seconds_or_never(first.as_ref())
            ),
        );
        run.check(
            &format!("{host}: a fallback-engaged alert said why"),
            !run.opened(host, "fallback-engaged").is_empty(),
            run.opened(host, "fallback-engaged")
                .first()
                .map(|a| a.message.clone())
                .unwrap_or_default(),
        );
    }
    run.settle(Duration::from_secs(3))?;
    for host in SERVERS {
        // chrony re-adds the fallbacks when they become selectable: they
        // have no sample for a moment, which is not "nothing usable".
        let dips = count_events(run, host, "→ no-reference", "start");
        let critical = run.opened(host, "no-usable-reference").len();
        run.check(
            &format!("{host}: engaging did not pass through no-reference"),
            dips == 0 && critical == 0,
            format!("{dips} no-reference state(s), {critical} no-usable-reference alert(s)"),
        );
    }
    run.snapshot(SRV1);
    let outage_left = OUTAGE.saturating_sub(run.elapsed());
    run.say(&format!(
        "3. srv1 and srv2 have time again and keep it while gps1 is down ({:.0} s more here; \
         hours in the real incident).",
        outage_left.as_secs_f64()
    ));
    run.settle(outage_left)?;

    run.say(
        "4. gps1 finishes booting. Its gnomond reads the GPS hat (NMEA on the UART, PPS \
         pulses), and only once the receiver has been healthy for the settle time does it \
         open the gate that feeds NMEA samples into gps1's chrony. Then gps1 serves \
         Stratum 1 again.",
    );
    run.event(
        "gps1",
        "gps1 finishes booting: GPS hat healthy, chronyd and gnomond start",
    );
    run.lab.boot_gps1()?;
    run.mark("gps1-booted");
    let up = run.wait_for(Duration::from_secs(40), |r| {
        let g = r.view(GPS1);
        g.gate_open() == Some(true) && g.selected.as_deref() == Some("NMEA")
    })?;
    run.check(
        "gps1: the GPS gate opened and chrony on gps1 selected NMEA",
        up.is_some(),
        up.map(|t| format!("at {}", secs(t))).unwrap_or_default(),
    );
    run.say(&format!(
        "5. On srv1 and srv2, gps1 is a healthy primary again, but gnomond does not trust a \
         reference that has just come back: it keeps the fallbacks selectable until gps1 has \
         been healthy for the hold time ({} s here, 5 minutes by default).",
        hold().as_secs()
    ));
    run.wait_for(Duration::from_secs(20), |r| {
        r.view(SRV1).state() == "recovering"
    })?;
    run.snapshot(SRV1);
    let back = run.wait_for(hold() + Duration::from_secs(45), |r| both(r, on_primary))?;
    for host in SERVERS {
        let recovering = run.first_event_since(host, "→ recovering", "gps1-booted");
        let released = run.first_event_since(host, "released the fallbacks", "gps1-booted");
        let held = match (recovering, released) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        run.check(
            &format!(
                "{host}: returned to gps1 only after the hold ({})",
                secs(hold())
            ),
            held.is_some_and(|h| h + Duration::from_millis(500) >= hold()),
            match held {
                Some(h) => format!("primary healthy → released: {}", secs(h)),
                None => "no recovery seen".to_owned(),
            },
        );
        let view = run.view(host);
        run.check(
            &format!("{host}: chrony selects gps1 and every fallback is noselect again"),
            back.is_some() && on_primary(&view) && fallbacks_noselect(&view, host),
            format!("selected {}", view.selected.as_deref().unwrap_or("-")),
        );
    }
    // The NMEA samples gps1's gnomond feeds chrony are timed by the pulse:
    // gps1's clock agrees with the public servers to well under a
    // millisecond (a sample timed by the sentence's arrival would be
    // ~160 ms late).
    let worst = PUBS
        .iter()
        .filter_map(|p| {
            run.view(GPS1)
                .sources
                .iter()
                .find(|s| super::run::source_name(s).as_deref() == Some(*p))
                .and_then(|s| s.offset)
        })
        .map(Offset::abs)
        .max();
    run.check(
        "gps1: on GPS time, gps1 agrees with pub1-3 within 1 ms",
        worst.is_some_and(|w| w < Duration::from_millis(1)),
        worst.map_or_else(
            || "no offsets from pub1-3".to_owned(),
            |w| format!("largest |offset| {w:?}"),
        ),
    );
    run.say(
        "6. gnomond on srv1 and srv2 puts the fallbacks back to noselect, still measured, \
         ready for the next outage, and chrony returns to gps1. Every step above is in \
         `gnomonctl history` with its reason, and each alert is in the journal with its \
         own MESSAGE_ID.",
    );
    run.snapshot(SRV1);
    run.say(
        "7. The whole outage as srv1's gnomond recorded it (`gnomonctl plot`, here one \
         sample a second; on a Pi one a minute, kept for 7 days; `--svg FILE` draws the \
         same as an image): each source's offset from srv1's clock and, in the strip \
         under the time axis, the state gnomond was in.",
    );
    run.plot(SRV1);
    Ok(())
}

/// The incident as it happened: srv1/srv2 pointed only at gps1, no
/// gnomond. They never synchronise while gps1 is down.
fn baseline_stock(run: &mut Run) -> io::Result<()> {
    run.mark("primary-lost");
    run.event(
        "lab",
        "power is back: gps1 hangs at boot; srv1 and srv2 run chrony's stock config \
         (server gps1 only), no gnomond",
    );
    run.settle(OUTAGE)?;
    for host in SERVERS {
        let first = run.figures().first_selected.get(host).copied();
        run.check(
            &format!(
                "{host}: never selected a source in {} of outage",
                secs(OUTAGE)
            ),
            first.is_none() && run.view(host).chrony_up,
            format!(
                "first selected {}",
                super::run::seconds_or_never(first.as_ref())
            ),
        );
    }
    Ok(())
}

/// Waits for the healthy steady state: gps1's gate open and chrony on
/// NMEA, srv1 and srv2 on gps1 with their fallbacks on standby (they
/// engage them at first, while gps1 settles, and release them after the
/// hold). Marks `healthy`.
pub(super) fn healthy_start(run: &mut Run) -> io::Result<()> {
    run.event(
        "lab",
        "every host boots normally; waiting for the steady state",
    );
    let reached = run.wait_for(hold() + Duration::from_secs(60), |r| {
        let g = r.view(GPS1);
        g.gate_open() == Some(true) && g.selected.as_deref() == Some("NMEA") && both(r, on_primary)
    })?;
    run.check(
        "steady state: gps1 on NMEA, srv1 and srv2 on gps1, fallbacks on standby",
        reached.is_some(),
        reached
            .map(|t| format!("at {}", secs(t)))
            .unwrap_or_default(),
    );
    if reached.is_none() {
        return Err(io::Error::other("the lab never reached its steady state"));
    }
    run.event("lab", "steady state reached");
    run.mark("healthy");
    Ok(())
}

/// Events on `host` since the mark `since` whose text contains `text`.
fn count_events(run: &Run, host: &str, text: &str, since: &str) -> usize {
    let from = run.marked(since).unwrap_or_default();
    run.events()
        .iter()
        .filter(|e| e.host == host && e.at >= from && e.text.contains(text))
        .count()
}

/// Alerts of `kind` opened on `host` at or after the mark `since`.
pub(super) fn opened_since<'a>(
    run: &'a Run,
    host: &str,
    kind: &str,
    since: &str,
) -> Vec<&'a super::run::AlertSeen> {
    let from = run.marked(since).unwrap_or_default();
    run.opened(host, kind)
        .into_iter()
        .filter(|a| a.at >= from)
        .collect()
}

fn clock_in_the_past_options() -> LabOptions {
    let mut options = LabOptions::default();
    options
        .faketime
        .insert(SRV1.to_owned(), "@1970-01-01 00:00:00".to_owned());
    options
}

/// How far behind chrony says srv1 is, against what faketime set.
fn correction_check(run: &mut Run, what: &str, expected: Duration, tolerance: Duration) {
    let correction = run.view(SRV1).correction;
    let ok = correction.is_some_and(|c| {
        let behind = c.as_secs_f64();
        (behind - expected.as_secs_f64()).abs() <= tolerance.as_secs_f64()
    });
    run.check(
        what,
        ok,
        match correction {
            Some(c) => format!(
                "chrony: the clock is {:.0} s behind ({:.2} days); chronyd runs -x, so it cannot step and keeps reporting it",
                c.as_secs_f64(),
                c.as_secs_f64() / 86_400.0
            ),
            None => "chrony gave no correction".to_owned(),
        },
    );
}

/// S2: srv1's chronyd and gnomond see 1970, then one day behind.
fn clock_in_the_past(run: &mut Run) -> io::Result<()> {
    run.event(
        SRV1,
        "srv1 boots with no RTC and no saved time: its chronyd and gnomond see 1970-01-01 (libfaketime)",
    );
    let seen = run.wait_for(Duration::from_secs(30), |r| {
        !r.opened(SRV1, "clock-before-floor").is_empty()
            && !r.decisions(SRV1, "step-clock", "start").is_empty()
            && r.view(SRV1)
                .correction
                .is_some_and(|c| c > Offset::from_secs(86_400))
    })?;
    let alert = run
        .opened(SRV1, "clock-before-floor")
        .first()
        .map(|a| (*a).clone());
    run.check(
        "1970: a critical clock-before-floor alert naming the consequences",
        alert
            .as_ref()
            .is_some_and(|a| a.priority == 2 && a.message.contains("TLS")),
        alert.map(|a| a.message).unwrap_or_default(),
    );
    // Through the engagement of the fallbacks and a few passes more.
    run.settle(Duration::from_secs(5))?;
    steady_alert_check(run, "1970", "clock-before-floor", "start");
    let step = run
        .decisions(SRV1, "step-clock", "start")
        .first()
        .map(|d| d.reason.clone());
    run.check(
        "1970: gnomond asked chrony to step once a trusted source agreed",
        step.is_some(),
        step.unwrap_or_default(),
    );
    let since_1970 = real_now_unix();
    correction_check(
        run,
        "1970: chrony reports the correction (about 56 years)",
        since_1970,
        Duration::from_secs(2 * 86_400),
    );
    if seen.is_none() {
        run.event(SRV1, "(1970 phase: not everything was seen within 30 s)");
    }

    run.event(
        SRV1,
        "srv1 reboots; systemd restored the clock from a journal written a day ago: one day behind",
    );
    run.lab.set_faketime(SRV1, Some("-1d"))?;
    run.mark("day-behind");
    // The lab's floor is gnomond's build time, minutes old: one day behind
    // is before it (clock-before-floor). On a Pi whose floor is as old as
    // the clock, only the sources can tell (clock-far-off). Either is
    // critical and names the consequences.
    let critical = |r: &Run| {
        CLOCK_ALERTS
            .iter()
            .flat_map(|k| opened_since(r, SRV1, k, "day-behind"))
            .next()
            .cloned()
    };
    let seen = run.wait_for(Duration::from_secs(30), |r| {
        critical(r).is_some()
            && !r.decisions(SRV1, "step-clock", "day-behind").is_empty()
            && r.view(SRV1)
                .correction
                .is_some_and(|c| c > Offset::from_secs(80_000) && c < Offset::from_secs(90_000))
    })?;
    let alert = critical(run);
    run.check(
        "one day behind: a critical alert (clock-before-floor or clock-far-off)",
        alert
            .as_ref()
            .is_some_and(|a| a.priority == 2 && a.message.contains("TLS")),
        alert
            .as_ref()
            .map(|a| format!("{}: {}", a.kind, a.message))
            .unwrap_or_default(),
    );
    run.settle(Duration::from_secs(5))?;
    if let Some(kind) = alert.map(|a| a.kind) {
        steady_alert_check(run, "one day behind", &kind, "day-behind");
    }
    let step = run
        .decisions(SRV1, "step-clock", "day-behind")
        .first()
        .map(|d| d.reason.clone());
    run.check(
        "one day behind: gnomond asked chrony to step once a trusted source agreed",
        step.is_some(),
        step.unwrap_or_default(),
    );
    correction_check(
        run,
        "one day behind: chrony reports the correction (86400 s)",
        Duration::from_secs(86_400),
        Duration::from_secs(60),
    );
    if seen.is_none() {
        run.event(SRV1, "(one-day phase: not everything was seen within 30 s)");
    }
    Ok(())
}

/// The alerts a clock in the past raises.
const CLOCK_ALERTS: [&str; 2] = ["clock-before-floor", "clock-far-off"];

/// The clock stays wrong (chronyd -x cannot step it), so the alert must
/// stay open: opened once, never resolved, through every plan change.
fn steady_alert_check(run: &mut Run, phase: &str, kind: &str, since: &str) {
    let from = run.marked(since).unwrap_or_default();
    let phases: Vec<String> = run
        .alerts()
        .iter()
        .filter(|a| a.host == SRV1 && a.kind == kind && a.at >= from)
        .map(|a| a.phase.clone())
        .collect();
    let opened = phases.iter().filter(|p| *p == "opened").count();
    let resolved = phases.iter().filter(|p| *p == "resolved").count();
    run.check(
        &format!("{phase}: {kind} stays open while the clock is wrong (no flapping)"),
        opened == 1 && resolved == 0,
        format!("opened {opened} time(s), resolved {resolved} time(s)"),
    );
}

/// Seconds since 1970 by this machine's (real, never faked) clock.
fn real_now_unix() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// S3: the receiver reports a valid fix 1024 weeks in the past.
fn gps_rollover(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    run.event(
        GPS1,
        "gps1's receiver jumps 1024 weeks back (week-number rollover), fix still 3D",
    );
    run.lab.set_hat_mode(HatMode::Rollover);
    run.mark("rollover");
    run.reset_max_correction();
    let closed = run.wait_for(Duration::from_secs(15), |r| {
        r.view(GPS1).gate_open() == Some(false)
    })?;
    run.check(
        "gps1: the GPS gate to chrony closed",
        closed.is_some(),
        closed
            .zip(run.marked("rollover"))
            .map(|(t, m)| format!("{} after the jump", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    let fell_back = run.wait_for(grace() + Duration::from_secs(20), |r| {
        let g = r.view(GPS1);
        g.selected.as_deref().is_some_and(|s| PUBS.contains(&s))
            && !opened_since(r, GPS1, "gps-insane", "rollover").is_empty()
    })?;
    let insane = opened_since(run, GPS1, "gps-insane", "rollover")
        .first()
        .map(|a| (*a).clone());
    run.check(
        "gps1: a critical gps-insane alert names the disagreement",
        insane.as_ref().is_some_and(|a| a.priority == 2),
        insane.map(|a| a.message).unwrap_or_default(),
    );
    run.check(
        "gps1: chrony on gps1 falls back to a pub*",
        fell_back.is_some(),
        format!(
            "selected {}",
            run.view(GPS1).selected.unwrap_or_else(|| "-".to_owned())
        ),
    );
    run.settle(Duration::from_secs(10))?;
    for host in SERVERS {
        let max = run.max_correction(host);
        let view = run.view(host);
        run.check(
            &format!("{host}: keeps a sane clock and a selected source"),
            max.is_some_and(|m| m.abs() < Duration::from_millis(100)) && view.selected.is_some(),
            format!(
                "largest remaining correction since the jump {}, selected {}",
                max.map_or_else(|| "-".to_owned(), |m| m.to_string()),
                view.selected.unwrap_or_else(|| "-".to_owned())
            ),
        );
    }
    Ok(())
}

fn pps_without_fix_options() -> LabOptions {
    LabOptions {
        hat_mode: HatMode::PulsesNoFix,
        ..LabOptions::default()
    }
}

/// The active alert on `host` whose message contains `word`.
fn active_alert_with(run: &Run, host: &str, word: &str) -> Option<String> {
    run.view(host).status.and_then(|s| {
        s.status
            .alerts
            .iter()
            .map(|a| a.message.clone())
            .find(|m| m.to_lowercase().contains(word))
    })
}

/// S4: pulses without a fix, then pulses without NMEA.
fn pps_without_fix(run: &mut Run) -> io::Result<()> {
    run.event(
        GPS1,
        "gps1's receiver pulses every second but its sentences say: no fix",
    );
    let fell_back = run.wait_for(grace() + Duration::from_secs(25), |r| {
        r.view(GPS1)
            .selected
            .as_deref()
            .is_some_and(|s| PUBS.contains(&s))
            && active_alert_with(r, GPS1, "fix").is_some()
    })?;
    run.check(
        "no fix: gps1 falls back to a pub*",
        fell_back.is_some(),
        format!(
            "selected {}",
            run.view(GPS1).selected.unwrap_or_else(|| "-".to_owned())
        ),
    );
    let alert = active_alert_with(run, GPS1, "fix");
    run.check(
        "no fix: gps1's alert says the fix is missing",
        alert.is_some(),
        alert.unwrap_or_default(),
    );
    run.event(
        GPS1,
        "gps1's UART goes quiet: pulses continue, no NMEA at all",
    );
    run.lab.set_hat_mode(HatMode::PulsesOnly);
    run.mark("no-nmea");
    let seen = run.wait_for(Duration::from_secs(20), |r| {
        active_alert_with(r, GPS1, "nmea").is_some()
    })?;
    let alert = active_alert_with(run, GPS1, "nmea");
    run.check(
        "no NMEA: gps1's alert says NMEA is missing",
        seen.is_some(),
        alert.unwrap_or_default(),
    );
    run.check(
        "the GPS gate never opened",
        count_events(run, GPS1, "gate to chrony opened", "start") == 0,
        "",
    );
    for host in SERVERS {
        let view = run.view(host);
        run.check(
            &format!("{host}: has a selected source"),
            view.selected.is_some(),
            format!(
                "selected {}",
                view.selected.unwrap_or_else(|| "-".to_owned())
            ),
        );
    }
    Ok(())
}

/// S5: recovery without flapping.
fn primary_returns(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    run.event(GPS1, "gps1's link goes down");
    run.lab.set_link(GPS1, false)?;
    run.mark("primary-lost");
    let fell = run.wait_for(grace() + Duration::from_secs(20), |r| both(r, on_fallback))?;
    run.check(
        "srv1 and srv2 select a fallback after the grace",
        fell.is_some(),
        fell.zip(run.marked("primary-lost"))
            .map(|(t, m)| format!("{} after the loss", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    run.event(GPS1, "gps1 comes back");
    run.lab.set_link(GPS1, true)?;
    let away_after = hold() * 2 / 3;
    run.settle(away_after)?;
    run.event(
        GPS1,
        &format!(
            "gps1 goes away again after {} (before the hold)",
            secs(away_after)
        ),
    );
    run.lab.set_link(GPS1, false)?;
    run.settle(Duration::from_secs(6))?;
    run.event(GPS1, "gps1 comes back for good");
    run.lab.set_link(GPS1, true)?;
    run.mark("last-return");
    let back = run.wait_for(hold() + Duration::from_secs(30), |r| both(r, on_primary))?;
    for host in SERVERS {
        let released = run.first_event_since(host, "released the fallbacks", "last-return");
        let since_return = released
            .zip(run.marked("last-return"))
            .map(|(r, m)| r.saturating_sub(m));
        run.check(
            &format!("{host}: released only after the hold of continuous health"),
            back.is_some() && since_return.is_some_and(|d| d >= hold()),
            since_return
                .map(|d| format!("released {} after the last return", secs(d)))
                .unwrap_or_else(|| "no release seen".to_owned()),
        );
        let engaged = count_events(run, host, "engaged the fallbacks", "healthy");
        let released = count_events(run, host, "released the fallbacks", "healthy");
        run.check(
            &format!("{host}: one engage and one release, no flapping"),
            engaged == 1 && released == 1,
            format!("{engaged} engage(s), {released} release(s)"),
        );
        let status = run.view(host).status;
        let within = status
            .as_ref()
            .is_some_and(|s| s.status.changes_last_hour <= s.status.max_changes_per_hour);
        run.check(
            &format!("{host}: source changes this hour within the bound"),
            within,
            status
                .map(|s| {
                    format!(
                        "{} of at most {}",
                        s.status.changes_last_hour, s.status.max_changes_per_hour
                    )
                })
                .unwrap_or_default(),
        );
        let decisions = run.all_decisions(host);
        run.check(
            &format!("{host}: every decision is in the history with its reason"),
            !decisions.is_empty() && decisions.iter().all(|d| !d.reason.trim().is_empty()),
            format!("{} decisions", decisions.len()),
        );
    }
    Ok(())
}

/// S6: one fallback dies while the primary is fine.
fn fallback_rot(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    run.event(
        "pub2",
        "pub2 stops answering (renumbered, firewalled): its link goes down",
    );
    run.lab.set_link("pub2", false)?;
    run.mark("rot");
    let after = lab_thresholds().fallback_unreachable_after;
    let warned = run.wait_for(after + Duration::from_secs(20), |r| {
        SERVERS
            .iter()
            .all(|h| !opened_since(r, h, "fallback-unreachable", "rot").is_empty())
    })?;
    for host in SERVERS {
        let alert = opened_since(run, host, "fallback-unreachable", "rot")
            .first()
            .map(|a| (*a).clone());
        run.check(
            &format!("{host}: a warning names the dead fallback"),
            warned.is_some()
                && alert
                    .as_ref()
                    .is_some_and(|a| a.priority == 4 && a.message.contains("10.199.0.22")),
            alert.map(|a| a.message).unwrap_or_default(),
        );
    }
    run.settle(Duration::from_secs(5))?;
    for host in SERVERS {
        let changes = count_events(run, host, "chrony selects", "rot")
            + count_events(run, host, "no selected source", "rot");
        let critical = run
            .alerts()
            .iter()
            .filter(|a| a.host == host && a.priority <= 2 && a.phase == "opened")
            .filter(|a| run.marked("rot").is_some_and(|m| a.at >= m))
            .count();
        run.check(
            &format!("{host}: nothing else changes (still on gps1, no critical alert)"),
            changes == 0 && critical == 0 && on_primary(&run.view(host)),
            format!("{changes} selection change(s), {critical} critical alert(s)"),
        );
    }
    run.event("pub2", "pub2 answers again");
    run.lab.set_link("pub2", true)?;
    let resolved = run.wait_for(Duration::from_secs(15), |r| {
        SERVERS.iter().all(|h| {
            r.alerts()
                .iter()
                .any(|a| a.host == *h && a.kind == "fallback-unreachable" && a.phase == "resolved")
        })
    })?;
    run.check(
        "the warning is resolved once pub2 answers",
        resolved.is_some(),
        "",
    );
    Ok(())
}

/// S7: chronyd goes away and comes back without gnomon's sources file.
fn chronyd_restart(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    run.event(SRV1, "srv1's chronyd is stopped (package upgrade)");
    run.lab.stop_chronyd(SRV1)?;
    run.mark("chronyd-down");
    let alerted = run.wait_for(Duration::from_secs(30), |r| {
        !opened_since(r, SRV1, "chrony-unreachable", "chronyd-down").is_empty()
    })?;
    run.check(
        "srv1: chrony-unreachable alert while chronyd is gone",
        alerted.is_some(),
        opened_since(run, SRV1, "chrony-unreachable", "chronyd-down")
            .first()
            .map(|a| a.message.clone())
            .unwrap_or_default(),
    );
    if let Some(dir) = run.lab.sources_dir(SRV1) {
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
        run.event(
            SRV1,
            &format!(
                "the upgrade also cleaned chrony's sources directory ({removed} file(s) removed)"
            ),
        );
    }
    run.lab.start_chronyd(SRV1)?;
    run.event(SRV1, "srv1's chronyd is back, with no sources at all");
    run.mark("chronyd-back");
    let reapplied = run.wait_for(Duration::from_secs(20), |r| {
        let v = r.view(SRV1);
        v.noselect(GPS1) == Some(false) && fallbacks_noselect(&v, SRV1)
    })?;
    run.check(
        "srv1: gnomond re-applied its plan within seconds of chronyd's return",
        reapplied.is_some(),
        reapplied
            .zip(run.marked("chronyd-back"))
            .map(|(t, m)| format!("{} after chronyd's return", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    let synced = run.wait_for(Duration::from_secs(20), |r| on_primary(&r.view(SRV1)))?;
    run.check(
        "srv1: chrony selects gps1 again",
        synced.is_some(),
        format!(
            "selected {}",
            run.view(SRV1).selected.unwrap_or_else(|| "-".to_owned())
        ),
    );
    run.check(
        "srv1: gnomond kept running throughout",
        count_events(run, SRV1, "gnomond does not answer", "start") == 0,
        "",
    );
    let resolved = run.wait_for(Duration::from_secs(10), |r| {
        r.alerts()
            .iter()
            .any(|a| a.host == SRV1 && a.kind == "chrony-unreachable" && a.phase == "resolved")
    })?;
    run.check("srv1: the alert is resolved", resolved.is_some(), "");
    Ok(())
}

/// S8: an operator freezes srv1's automation, then thaws it.
fn freeze(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    let out = run.lab.gnomonctl(
        SRV1,
        &["freeze", "--reason", "maintenance: replacing the SD card"],
    )?;
    run.event(
        SRV1,
        "operator: gnomonctl freeze --reason \"maintenance: replacing the SD card\"",
    );
    run.check(
        "srv1: gnomonctl freeze is accepted",
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    );
    run.event(GPS1, "gps1's link goes down during the maintenance");
    run.lab.set_link(GPS1, false)?;
    run.mark("primary-lost");
    let srv2_fell = run.wait_for(grace() + Duration::from_secs(20), |r| {
        on_fallback(&r.view(SRV2))
    })?;
    run.check(
        "srv2 (not frozen) falls back as usual",
        srv2_fell.is_some(),
        "",
    );
    run.settle(Duration::from_secs(5))?;
    let v1 = run.view(SRV1);
    run.check(
        "srv1: nothing written to chrony while frozen (fallbacks still noselect)",
        v1.fallbacks_engaged() == Some(false) && fallbacks_noselect(&v1, SRV1),
        format!(
            "state {}, selected {}",
            v1.state(),
            v1.selected.as_deref().unwrap_or("-")
        ),
    );
    let unusable = opened_since(run, SRV1, "primary-unusable", "primary-lost");
    run.check(
        "srv1: still observing and alerting (primary-unusable)",
        !unusable.is_empty(),
        unusable
            .first()
            .map(|a| a.message.clone())
            .unwrap_or_default(),
    );
    run.event(SRV1, "srv1's gnomond restarts (the maintenance reboots it)");
    run.lab.stop_gnomond(SRV1)?;
    run.lab.start_gnomond(SRV1)?;
    let still = run.wait_for(Duration::from_secs(15), |r| {
        r.view(SRV1)
            .status
            .is_some_and(|s| s.status.frozen.is_some())
    })?;
    run.check("srv1: the freeze survives the restart", still.is_some(), "");
    run.settle(Duration::from_secs(3))?;
    let v1 = run.view(SRV1);
    run.check(
        "srv1: still nothing written after the restart",
        fallbacks_noselect(&v1, SRV1),
        "",
    );
    let out = run.lab.gnomonctl(SRV1, &["thaw"])?;
    run.event(SRV1, "operator: gnomonctl thaw");
    run.mark("thawed");
    let engaged = run.wait_for(grace() + Duration::from_secs(15), |r| {
        on_fallback(&r.view(SRV1))
    })?;
    run.check(
        "srv1: after thaw gnomond reconciles: fallbacks engaged and selected",
        out.status.success() && engaged.is_some(),
        engaged
            .zip(run.marked("thawed"))
            .map(|(t, m)| format!("{} after thaw", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    Ok(())
}
