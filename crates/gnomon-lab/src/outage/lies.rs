//! S10 `source-lies`: references that answer every poll and serve a wrong
//! time. gnomon must compare them with the independent sources it keeps
//! measured (never with hosts that take their time from it), keep the liar
//! out before its first sample is used, engage the fallbacks at once, never
//! ask for a step towards it, and say who disagrees with whom.
//!
//! How far a LAN server is led is chrony's remaining correction on srv1
//! and srv2: every chronyd runs `-x` on the machine's true clock, so the
//! correction is how far the time it serves is from the truth.
//!
//! - A GPS that lies never reaches chrony (the gate judges the epoch it
//!   passes): no host's correction leaves [`LED_AWAY_BOUND`] (gps1's
//!   [`GPS_HOST_BOUND`]).
//! - A primary NTP server that lies is measured by chrony before gnomon
//!   sees it: with its fallbacks `noselect`, a LAN server's chrony follows
//!   the first wrong sample, and `-x` applies each correction at once, so
//!   it is led the whole lie for a moment. gnomon bounds how long: the
//!   correction is back within [`LED_AWAY_BOUND`] after at most
//!   [`ACTION_BOUND`]. (On a Pi, chrony slews at most 83 ms/s, so in that
//!   time the real clock moves a fraction of the lie.)

use std::{io, time::Duration};

use super::{
    lab::{LabOptions, GPS1, PUBS, SERVERS},
    run::Run,
    stories::{both, healthy_start, hold, on_fallback, on_primary, opened_since, secs},
};
use crate::gps_hat::HatMode;

/// How far a LAN server's clock may be led away by a lying GPS, and how
/// far counts as "led away" for the time a lying primary may lead it.
pub const LED_AWAY_BOUND: Duration = Duration::from_millis(100);
/// How long gnomon may take from the fault to its action.
pub const ACTION_BOUND: Duration = Duration::from_secs(5);
/// How far gps1's own chrony may move while its GPS lies: nothing of the
/// wrong second may reach it, so no more than the lab's jitter.
const GPS_HOST_BOUND: Duration = Duration::from_millis(50);

pub(super) fn primary_lies_options() -> LabOptions {
    LabOptions {
        gps1_plain_server: true,
        ..LabOptions::default()
    }
}

pub(super) fn gps_own_echo_options() -> LabOptions {
    LabOptions {
        gps1_peers_servers: true,
        ..LabOptions::default()
    }
}

pub(super) fn gps_leap_offset_at_boot_options() -> LabOptions {
    LabOptions {
        hat_mode: HatMode::WrongSecond(18),
        ..LabOptions::default()
    }
}

/// The largest |correction| `host` reported since the last reset, checked
/// against `bound`.
fn led_away_check(run: &mut Run, host: &str, bound: Duration, while_: &str) {
    let max = run.max_correction(host);
    run.check(
        &format!(
            "{host}: clock not led away by more than {} {while_}",
            secs(bound)
        ),
        max.is_some_and(|m| m.abs() <= bound),
        format!(
            "largest remaining correction {}",
            max.map_or_else(|| "- (chrony silent)".to_owned(), |m| m.to_string())
        ),
    );
}

/// A lying GPS never reaches chrony: gps1's correction stays within the
/// lab's jitter, srv1's and srv2's within [`LED_AWAY_BOUND`].
fn nobody_led_by_the_gps(run: &mut Run) {
    led_away_check(
        run,
        GPS1,
        GPS_HOST_BOUND,
        "(no wrong sample reached chrony)",
    );
    for host in SERVERS {
        led_away_check(run, host, LED_AWAY_BOUND, "while the GPS lies");
    }
}

/// The `cross-check` item of `gnomonctl check --json` on `host`, checked
/// to have `outcome` (`pass`, `warn`, `fail`).
fn check_item_check(run: &mut Run, host: &str, outcome: &str) {
    let item = run
        .lab
        .gnomonctl(host, &["check", "--json"])
        .ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .and_then(|report| {
            let text = |i: &serde_json::Value, k: &str| {
                i.get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            report
                .get("items")?
                .as_array()?
                .iter()
                .find(|i| text(i, "name") == "cross-check")
                .map(|i| (text(i, "outcome"), text(i, "detail")))
        });
    run.check(
        &format!("{host}: gnomonctl check says cross-check {outcome}"),
        item.as_ref().is_some_and(|(o, _)| o == outcome),
        item.map(|(o, d)| format!("{o}: {d}"))
            .unwrap_or_else(|| "no cross-check item".to_owned()),
    );
}

/// gnomon's first `kind` decision on `host` since `mark`, checked to come
/// within [`ACTION_BOUND`].
fn acted_check(run: &mut Run, host: &str, kind: &str, mark: &str, what: &str) {
    let acted = run
        .decided_at(host, kind, mark)
        .zip(run.marked(mark))
        .map(|(at, m)| at.saturating_sub(m));
    run.check(
        &format!("{host}: {what} within {}", secs(ACTION_BOUND)),
        acted.is_some_and(|d| d <= ACTION_BOUND),
        acted.map_or_else(
            || format!("no {kind} decision"),
            |d| format!("{kind} {} after the fault", secs(d)),
        ),
    );
}

/// S10: the LAN's primary server serves a clock one second ahead.
pub(super) fn primary_lies(run: &mut Run) -> io::Result<()> {
    run.event(
        "lab",
        "gps1 is a plain LAN NTP server on its own clock; waiting for srv1 and srv2 to follow it",
    );
    let reached = run.wait_for(hold() + Duration::from_secs(60), |r| {
        both(r, |v| v.state() == "primary" && on_primary(v))
    })?;
    run.check(
        "steady state: srv1 and srv2 on gps1, fallbacks on standby",
        reached.is_some(),
        reached.map(secs).unwrap_or_default(),
    );
    if reached.is_none() {
        return Err(io::Error::other("the lab never reached its steady state"));
    }
    // Long enough for chrony to have settled on gps1's (true) time.
    run.settle(Duration::from_secs(10))?;
    run.event(
        GPS1,
        "gps1's clock is set one second ahead (libfaketime +1)",
    );
    run.lab.set_faketime(GPS1, Some("+1"))?;
    run.mark("lie");
    run.reset_max_correction();
    let kept_out = run.wait_for(Duration::from_secs(30), |r| {
        both(r, |v| v.noselect(GPS1) == Some(true) && on_fallback(v))
    })?;
    run.check(
        "srv1 and srv2: gps1 noselect, a fallback selected",
        kept_out.is_some(),
        kept_out
            .zip(run.marked("lie"))
            .map(|(t, m)| format!("{} after the fault", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    // Let the liar go on lying a while: nothing may drift back to it.
    run.settle(Duration::from_secs(10))?;
    for host in SERVERS {
        acted_check(
            run,
            host,
            "distrust-primary",
            "lie",
            "gps1 kept out of selection",
        );
        acted_check(
            run,
            host,
            "engage-fallbacks",
            "lie",
            "fallbacks engaged at once",
        );
        let led_for = run.led_away_for(host, LED_AWAY_BOUND);
        let max = run.max_correction(host);
        run.check(
            &format!(
                "{host}: clock led more than {} away for at most {}",
                secs(LED_AWAY_BOUND),
                secs(ACTION_BOUND)
            ),
            led_for <= ACTION_BOUND,
            format!(
                "led away for {} (largest remaining correction {}; chronyd -x applies it at once)",
                secs(led_for),
                max.map_or_else(|| "-".to_owned(), |m| m.to_string())
            ),
        );
        let alert = opened_since(run, host, "primary-disagrees", "lie")
            .first()
            .map(|a| (*a).clone());
        run.check(
            &format!("{host}: a critical primary-disagrees alert names both sides"),
            alert.as_ref().is_some_and(|a| a.priority == 2),
            alert.map(|a| a.message).unwrap_or_default(),
        );
        check_item_check(run, host, "fail");
        let steps = run.decisions(host, "step-clock", "lie").len();
        run.check(
            &format!("{host}: no step asked for towards gps1"),
            steps == 0,
            format!("{steps} step request(s)"),
        );
        let counted = run.view(host).status.map(|s| {
            s.status
                .cross_check
                .sources
                .iter()
                .filter(|c| c.counted())
                .map(|c| c.address.to_string())
                .collect::<Vec<_>>()
        });
        run.check(
            &format!("{host}: the public servers are counted as independent"),
            counted.as_ref().is_some_and(|c| c.len() >= PUBS.len()),
            counted.map(|c| c.join(", ")).unwrap_or_default(),
        );
    }
    run.event(GPS1, "gps1's clock is put right");
    run.lab.set_faketime(GPS1, None)?;
    run.mark("fixed");
    let back = run.wait_for(hold() + Duration::from_secs(30), |r| {
        both(r, |v| on_primary(v) && v.noselect(GPS1) == Some(false))
    })?;
    for host in SERVERS {
        let trusted = run
            .decided_at(host, "trust-primary", "fixed")
            .zip(run.marked("fixed"))
            .map(|(t, m)| t.saturating_sub(m));
        run.check(
            &format!("{host}: gps1 selectable again after agreeing for the hold"),
            back.is_some() && trusted.is_some_and(|d| d >= hold()),
            trusted
                .map(|d| format!("trusted {} after the fix", secs(d)))
                .unwrap_or_else(|| "not trusted again".to_owned()),
        );
    }
    Ok(())
}

/// One wrong-second episode on gps1's receiver: the gate must close on the
/// first wrong epoch, gps1 engage at once, nobody be led away.
fn wrong_second_episode(run: &mut Run, seconds: i32) -> io::Result<()> {
    let mark = format!("wrong-{seconds}");
    run.event(
        GPS1,
        &format!(
            "gps1's receiver names a second {seconds} s off; its pulses stay on the true second"
        ),
    );
    run.lab.set_hat_mode(HatMode::WrongSecond(seconds));
    run.mark(&mark);
    run.reset_max_correction();
    let fell_back = run.wait_for(Duration::from_secs(30), |r| {
        let g = r.view(GPS1);
        g.gate_open() == Some(false)
            && g.fallbacks_engaged() == Some(true)
            && g.selected.as_deref().is_some_and(|s| PUBS.contains(&s))
    })?;
    run.check(
        &format!("gps1 ({seconds} s): gate closed, fallbacks engaged, a pub* selected"),
        fell_back.is_some(),
        fell_back
            .zip(run.marked(&mark))
            .map(|(t, m)| format!("{} after the fault", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    run.settle(Duration::from_secs(8))?;
    acted_check(run, GPS1, "gate-close", &mark, "gate closed");
    acted_check(
        run,
        GPS1,
        "engage-fallbacks",
        &mark,
        "fallbacks engaged at once",
    );
    nobody_led_by_the_gps(run);
    let insane = opened_since(run, GPS1, "gps-insane", &mark)
        .first()
        .map(|a| (*a).clone());
    run.check(
        &format!("gps1 ({seconds} s): a critical gps-insane alert"),
        insane.as_ref().is_some_and(|a| a.priority == 2),
        insane.map(|a| a.message).unwrap_or_default(),
    );
    Ok(())
}

/// S10: the GPS names the wrong second while its pulses stay true: one
/// second (a receiver bug), then 18 s (the GPS−UTC offset forgotten).
pub(super) fn gps_wrong_second(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    wrong_second_episode(run, 1)?;
    run.event(GPS1, "gps1's receiver names the right second again");
    run.lab.set_hat_mode(HatMode::Healthy);
    run.mark("right-again");
    // Back to the steady state: the GPS trusted once the independent
    // sources agree (after the jump's hold), the fallbacks released after
    // another hold.
    let back = run.wait_for(hold() * 3 + Duration::from_secs(40), |r| {
        let g = r.view(GPS1);
        g.gate_open() == Some(true)
            && g.selected.as_deref() == Some("NMEA")
            && g.fallbacks_engaged() == Some(false)
    })?;
    run.check(
        "gps1: the GPS trusted again once independent sources agree, fallbacks released",
        back.is_some(),
        back.zip(run.marked("right-again"))
            .map(|(t, m)| {
                format!(
                    "{} after the receiver was right again",
                    secs(t.saturating_sub(m))
                )
            })
            .unwrap_or_default(),
    );
    wrong_second_episode(run, 18)
}

/// S10: a receiver cold-starts with the GPS−UTC offset unknown (18 s);
/// gps1's gate must never open while it is wrong.
pub(super) fn gps_leap_offset_at_boot(run: &mut Run) -> io::Result<()> {
    run.event(
        "lab",
        "every host boots; gps1's receiver names times 18 s ahead (GPS−UTC offset not yet received)",
    );
    run.mark("boot");
    let mut gate_opened = false;
    let engaged = run.wait_for(Duration::from_secs(40), |r| {
        gate_opened |= r.view(GPS1).gate_open() == Some(true);
        r.view(GPS1).fallbacks_engaged() == Some(true)
            && !opened_since(r, GPS1, "gps-insane", "boot").is_empty()
    })?;
    // Then watch a while longer: the GPS stays wrong, the gate shut.
    run.wait_for(Duration::from_secs(15), |r| {
        gate_opened |= r.view(GPS1).gate_open() == Some(true);
        false
    })?;
    run.check(
        "gps1: the gate never opens while the receiver is 18 s off",
        engaged.is_some() && !gate_opened,
        format!(
            "gps-insane and fallbacks engaged at {}, gate {}",
            engaged.map_or_else(|| "never".to_owned(), secs),
            if gate_opened {
                "OPENED"
            } else {
                "closed throughout"
            }
        ),
    );
    nobody_led_by_the_gps(run);
    run.event(
        GPS1,
        "the receiver has the GPS−UTC offset now: right second",
    );
    run.lab.set_hat_mode(HatMode::Healthy);
    run.mark("offset-known");
    let open = run.wait_for(hold() * 2 + Duration::from_secs(40), |r| {
        let g = r.view(GPS1);
        g.gate_open() == Some(true) && g.selected.as_deref() == Some("NMEA")
    })?;
    run.check(
        "gps1: trusted once independent sources agree with the corrected second",
        open.is_some(),
        open.zip(run.marked("offset-known"))
            .map(|(t, m)| format!("{} after the correction", secs(t.saturating_sub(m))))
            .unwrap_or_default(),
    );
    Ok(())
}

/// S10: the Internet is down and gps1's only other answering sources are
/// srv1 and srv2, which take their time from it; then the GPS names the
/// wrong second. The echo must not vouch for it.
pub(super) fn gps_own_echo(run: &mut Run) -> io::Result<()> {
    healthy_start(run)?;
    run.event("lab", "the Internet goes down: pub1-pub3 unreachable");
    for p in PUBS {
        run.lab.set_link(p, false)?;
    }
    run.mark("offline");
    let excluded = run.wait_for(Duration::from_secs(20), |r| {
        r.view(GPS1).status.is_some_and(|s| {
            let c = &s.status.cross_check;
            SERVERS.iter().all(|h| {
                c.sources.iter().any(|x| {
                    super::lab::address(h).is_some_and(|a| x.address.to_string() == a.to_string())
                        && x.excluded
                            .as_deref()
                            .is_some_and(|w| w.contains("from this host"))
                })
            }) && c.sources.iter().all(|x| !x.counted())
        })
    })?;
    run.check(
        "gps1: srv1 and srv2 recognised as its own clients (reference ID), nothing counted",
        excluded.is_some(),
        run.view(GPS1)
            .status
            .map(|s| {
                s.status
                    .cross_check
                    .sources
                    .iter()
                    .map(|x| {
                        format!(
                            "{}: {}",
                            x.address,
                            x.excluded.as_deref().unwrap_or("counted")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
    );
    let said = run.wait_for(Duration::from_secs(20), |r| {
        !opened_since(r, GPS1, "cross-check-unavailable", "offline").is_empty()
    })?;
    check_item_check(run, GPS1, "warn");
    run.check(
        "gps1: says the GPS cannot be cross-checked (cross-check-unavailable)",
        said.is_some(),
        opened_since(run, GPS1, "cross-check-unavailable", "offline")
            .first()
            .map(|a| a.message.clone())
            .unwrap_or_default(),
    );
    run.event(
        GPS1,
        "gps1's receiver names a second 1 s off; pulses stay true",
    );
    run.lab.set_hat_mode(HatMode::WrongSecond(1));
    run.mark("echo-lie");
    run.reset_max_correction();
    // Past the jump suspicion's hold: with only the echo to ask, the GPS
    // must stay out.
    run.settle(hold() + Duration::from_secs(10))?;
    let gate = run.view(GPS1).gate_open();
    run.check(
        "gps1: the gate stays closed past the hold (the echo does not vouch for the GPS)",
        gate == Some(false) && run.decisions(GPS1, "gate-open", "echo-lie").is_empty(),
        format!("gate open: {gate:?}"),
    );
    acted_check(run, GPS1, "gate-close", "echo-lie", "gate closed");
    nobody_led_by_the_gps(run);
    Ok(())
}
