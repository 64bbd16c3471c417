//! The incidents S1–S9 (engine half) as named tests: each runs the real
//! engine through the simulated incident and asserts on states, plans,
//! alerts and timing. Timings are asserted against the configured
//! thresholds, so breaking the grace, the hold or the change bound in the
//! engine breaks these tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use gnomon_core::{
    alert::{AlertKind, AlertPhase},
    engine::{Action, DecisionKind, EngineState, FallbackMode, OperatorCommand},
    source::{SourcePlan, SourceRole},
    time::MonoTime,
};
use gnomon_lab::{
    scenarios::{self, ip, Scenario, GPS1, PUB},
    sim::{ScriptEvent, Sim},
};

/// An alert opens once its condition has held for `ALERT_SETTLE`; the
/// simulator passes once a second, so by this many seconds after.
const SETTLED: f64 = 2.0;

fn secs(t: MonoTime) -> f64 {
    t.as_duration().as_secs_f64()
}

fn run(mut s: Scenario) -> Sim {
    s.sim.run_until(s.duration);
    s.sim
}

fn grace(sim: &Sim) -> f64 {
    sim.engine().config().thresholds.grace.as_secs_f64()
}

fn hold(sim: &Sim) -> f64 {
    sim.engine().config().thresholds.hold.as_secs_f64()
}

fn decision_at(sim: &Sim, kind: DecisionKind) -> f64 {
    secs(
        sim.first_decision(kind)
            .unwrap_or_else(|| panic!("no {kind:?} decision; timeline:\n{}", sim.render_timeline()))
            .at,
    )
}

fn fallbacks_selectable(plan: &SourcePlan) -> bool {
    plan.fallbacks().all(|f| f.selectable) && plan.fallbacks().count() > 0
}

fn last_plan(sim: &Sim) -> SourcePlan {
    sim.plans()
        .last()
        .map(|(_, p)| p.clone())
        .expect("a plan was applied")
}

fn alert_opened(sim: &Sim, kind: AlertKind) -> f64 {
    secs(
        sim.alert_at(kind, AlertPhase::Opened)
            .unwrap_or_else(|| panic!("{kind} never opened; timeline:\n{}", sim.render_timeline())),
    )
}

fn alert_message(sim: &Sim, kind: AlertKind) -> String {
    sim.alert_events()
        .find(|(_, e)| e.alert.kind == kind && e.phase == AlertPhase::Opened)
        .map(|(_, e)| e.alert.message.clone())
        .unwrap_or_default()
}

fn gate_actions(sim: &Sim) -> Vec<(f64, bool)> {
    sim.actions()
        .iter()
        .filter_map(|(t, a)| match a {
            Action::SetGpsGate { open, .. } => Some((secs(*t), *open)),
            _ => None,
        })
        .collect()
}

/// Runs in steps, returning the largest |clock error| seen from `from` on.
fn run_tracking_clock(s: &mut Scenario, from: u64) -> Duration {
    let mut worst = Duration::ZERO;
    for t in (0..=s.duration.as_secs()).step_by(1) {
        s.sim.run_until(Duration::from_secs(t));
        if t >= from {
            worst = worst.max(s.sim.world().clock_error.abs());
        }
    }
    worst
}

#[test]
fn s1_power_outage() {
    let sim = run(scenarios::power_outage());
    let (g, h) = (grace(&sim), hold(&sim));
    // The 1970 clock is a critical alert once it has held for the settle
    // time (an alert never opens and resolves within a second).
    assert!(alert_opened(&sim, AlertKind::ClockBeforeFloor) <= SETTLED);
    assert!(alert_message(&sim, AlertKind::ClockBeforeFloor).contains("not yet valid"));
    // Fallbacks engaged when the grace ran out, not before, not much after.
    let engaged = decision_at(&sim, DecisionKind::EngageFallbacks);
    assert!(
        (g..g + 3.0).contains(&engaged),
        "engaged at {engaged}, grace {g}"
    );
    let (t, plan) = sim.plans().find(|(_, p)| fallbacks_selectable(p)).unwrap();
    assert!((secs(t) - engaged).abs() < 0.01);
    assert!(plan
        .sources
        .iter()
        .any(|s| s.role == SourceRole::Primary && s.selectable));
    // chrony selects a fallback and gnomon has the clock stepped.
    let first_sel = sim.selections().iter().find(|(_, s)| s != "-").unwrap();
    assert!(PUB.contains(&first_sel.1.as_str()), "{first_sel:?}");
    assert!(
        secs(first_sel.0) < g + 10.0,
        "selected at {}",
        secs(first_sel.0)
    );
    let step = decision_at(&sim, DecisionKind::StepClock);
    assert!(step >= engaged && step < engaged + 10.0, "step at {step}");
    assert!(sim
        .alert_at(AlertKind::ClockBeforeFloor, AlertPhase::Resolved)
        .is_some());
    // gps1 returns at 600 s; fallbacks released only after the hold.
    let released = decision_at(&sim, DecisionKind::ReleaseFallbacks);
    assert!(
        released >= 600.0 + h && released < 600.0 + h + 30.0,
        "released at {released}, hold {h}"
    );
    assert!(!fallbacks_selectable(&last_plan(&sim)));
    assert!(last_plan(&sim).fallbacks().all(|f| !f.selectable));
    let resolved = sim
        .alert_at(AlertKind::FallbackEngaged, AlertPhase::Resolved)
        .unwrap();
    // Resolved once the release has stood for the settle time.
    assert!(secs(resolved) >= released && secs(resolved) <= released + SETTLED);
    assert_eq!(sim.engine().state(), EngineState::Primary);
    assert_eq!(sim.world().selected_name(), GPS1);
    assert!(sim.world().clock_error.abs() < Duration::from_secs(1));
    // The floor was saved once chrony was synchronised.
    assert!(sim.disk().last_synchronised.is_some());
    assert!(!sim.disk().fallbacks_engaged);
}

#[test]
fn s1_power_outage_gps_host() {
    let sim = run(scenarios::power_outage_gps_host());
    let (g, h) = (grace(&sim), hold(&sim));
    let engaged = decision_at(&sim, DecisionKind::EngageFallbacks);
    assert!((g..g + 2.0).contains(&engaged), "engaged at {engaged}");
    assert!(alert_message(&sim, AlertKind::PrimaryUnusable).contains("no NMEA"));
    let settle = sim.engine().config().thresholds.gps_settle.as_secs_f64();
    let gates = gate_actions(&sim);
    assert_eq!(gates.len(), 1, "{gates:?}");
    assert!(gates[0].1 && gates[0].0 >= 300.0 + settle && gates[0].0 < 302.0 + settle);
    let released = decision_at(&sim, DecisionKind::ReleaseFallbacks);
    assert!(released >= gates[0].0 + h && released < gates[0].0 + h + 2.0);
    assert_eq!(sim.world().selected_name(), "NMEA");
}

#[test]
fn s2_clock_in_the_past_1970() {
    let sim = run(scenarios::clock_in_the_past_1970());
    assert!(alert_opened(&sim, AlertKind::ClockBeforeFloor) <= SETTLED);
    let msg = alert_message(&sim, AlertKind::ClockBeforeFloor);
    for consequence in ["TLS", "DNSSEC", "WireGuard"] {
        assert!(msg.contains(consequence), "{msg}");
    }
    let step = decision_at(&sim, DecisionKind::StepClock);
    assert!(step < 10.0, "step at {step}");
    let reason = &sim.first_decision(DecisionKind::StepClock).unwrap().reason;
    assert!(reason.contains(GPS1), "{reason}");
    assert!(sim
        .alert_at(AlertKind::ClockBeforeFloor, AlertPhase::Resolved)
        .is_some());
    assert!(sim.world().clock_error.abs() < Duration::from_secs(1));
    // The primary was fine: no fallback change.
    assert!(sim.first_decision(DecisionKind::EngageFallbacks).is_none());
    assert_eq!(sim.engine().state(), EngineState::Primary);
}

#[test]
fn s2_clock_in_the_past_day_behind() {
    let sim = run(scenarios::clock_in_the_past_day_behind());
    // The floor is as old as the clock: only the sources can tell.
    assert!(sim
        .alert_at(AlertKind::ClockBeforeFloor, AlertPhase::Opened)
        .is_none());
    assert!(alert_opened(&sim, AlertKind::ClockFarOff) < 10.0);
    assert!(alert_message(&sim, AlertKind::ClockFarOff).contains("behind"));
    let step = decision_at(&sim, DecisionKind::StepClock);
    assert!(step < 10.0);
    assert!(sim.world().clock_error.abs() < Duration::from_secs(1));
    assert!(sim
        .alert_at(AlertKind::ClockFarOff, AlertPhase::Resolved)
        .is_some());
}

#[test]
fn s3_gps_rollover() {
    let mut sc = scenarios::gps_rollover();
    let worst = run_tracking_clock(&mut sc, 0);
    let sim = sc.sim;
    // chrony never followed the GPS: the gate closed on the first bad epoch.
    assert!(
        worst < Duration::from_secs(1),
        "clock error reached {worst:?}"
    );
    let gates = gate_actions(&sim);
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert!(gates[0].1 && !gates[1].1);
    assert!(
        gates[1].0 >= 300.0 && gates[1].0 < 301.0,
        "closed at {}",
        gates[1].0
    );
    let opened = alert_opened(&sim, AlertKind::GpsInsane);
    assert!(opened >= gates[1].0 && opened <= gates[1].0 + SETTLED);
    let msg = alert_message(&sim, AlertKind::GpsInsane);
    assert!(msg.contains("1024 weeks") && msg.contains("floor"), "{msg}");
    // A GPS that is confidently wrong gets no grace: the fallbacks engage
    // on the same epoch the gate closes on.
    let engaged = decision_at(&sim, DecisionKind::EngageFallbacks);
    assert!((engaged - gates[1].0).abs() < 0.01, "engaged at {engaged}");
    assert!(PUB.contains(&sim.world().selected_name().as_str()));
    assert_eq!(sim.engine().state(), EngineState::Fallback);
}

#[test]
fn s3_gps_rollover_at_boot_without_network() {
    let sim = run(scenarios::gps_rollover_at_boot());
    assert!(alert_opened(&sim, AlertKind::GpsInsane) <= SETTLED);
    assert!(alert_message(&sim, AlertKind::GpsInsane).contains("rollover"));
    assert!(gate_actions(&sim).is_empty(), "the gate must never open");
    assert!(!sim.engine().gate_open());
    // Nothing else answers: the operator is told the clock is free-running.
    assert!(sim
        .alert_at(AlertKind::NoUsableReference, AlertPhase::Opened)
        .is_some());
    assert_eq!(sim.world().selected_name(), "-");
}

#[test]
fn s3_gps_second_jump() {
    let mut sc = scenarios::gps_second_jump();
    let worst = run_tracking_clock(&mut sc, 0);
    let sim = sc.sim;
    assert!(
        worst < Duration::from_millis(500),
        "clock error reached {worst:?}"
    );
    let gates = gate_actions(&sim);
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert!(!gates[1].1 && gates[1].0 < 301.0);
    assert!(alert_message(&sim, AlertKind::GpsInsane).contains("jumped by +2.000 s"));
    // Still wrong after the jump suspicion expired: the independent
    // sources keep the gate closed.
    let status = sim.status();
    let gps = status.gps.unwrap();
    assert!(!gps.gate_open);
    let insanity = gps
        .verdict
        .insanity
        .map(|i| i.to_string())
        .unwrap_or_default();
    assert!(insanity.contains("disagrees"), "{insanity}");
}

/// The fault starts at 300 s; it must be noticed within `detect` seconds.
fn assert_s4(sim: &Sim, words: &str, detect: f64) {
    let gates = gate_actions(sim);
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert!(
        !gates[1].1 && gates[1].0 >= 300.0 && gates[1].0 < 300.0 + detect,
        "{gates:?}"
    );
    let msg = alert_message(sim, AlertKind::PrimaryUnusable);
    assert!(msg.contains(words), "{msg}");
    assert!(
        sim.alert_at(AlertKind::GpsInsane, AlertPhase::Opened)
            .is_none(),
        "a missing part is not insanity"
    );
    let engaged = decision_at(sim, DecisionKind::EngageFallbacks);
    assert!(
        (engaged - gates[1].0 - grace(sim)).abs() < 1.0,
        "engaged at {engaged}"
    );
    assert!(PUB.contains(&sim.world().selected_name().as_str()));
}

#[test]
fn s4_pps_without_fix() {
    assert_s4(
        &run(scenarios::build("pps-without-fix").unwrap()),
        "PPS pulses arrive but the receiver has no fix",
        1.0,
    );
}

#[test]
fn s4_pps_without_nmea() {
    assert_s4(
        &run(scenarios::build("pps-without-nmea").unwrap()),
        "PPS pulses arrive but NMEA has stopped",
        // The silence is only news after the NMEA timeout.
        1.0 + scenarios::gps_config()
            .thresholds
            .nmea_timeout
            .as_secs_f64(),
    );
}

#[test]
fn s4_nmea_second_misaligned_with_pulse() {
    assert_s4(
        &run(scenarios::build("pps-misaligned").unwrap()),
        "does not line up with the pulse",
        1.0,
    );
}

#[test]
fn s5_primary_returns_without_flapping() {
    let sim = run(scenarios::primary_returns());
    let h = hold(&sim);
    let engages: Vec<f64> = sim
        .decisions()
        .filter(|d| d.kind == DecisionKind::EngageFallbacks)
        .map(|d| secs(d.at))
        .collect();
    let releases: Vec<f64> = sim
        .decisions()
        .filter(|d| d.kind == DecisionKind::ReleaseFallbacks)
        .map(|d| secs(d.at))
        .collect();
    assert_eq!(engages.len(), 1, "one outage, one engage: {engages:?}");
    assert_eq!(releases.len(), 1, "{releases:?}");
    // The hold restarts after the second failure: release counts from the
    // final return at 500 s, not the first at 400 s.
    assert!(releases[0] >= 500.0 + h, "released at {}", releases[0]);
    assert!(releases[0] < 500.0 + h + 30.0);
    for d in sim.decisions() {
        assert!(!d.reason.is_empty(), "{d:?}");
    }
    assert!(sim.status().changes_last_hour <= sim.status().max_changes_per_hour);
}

#[test]
fn s5_flapping_primary_is_bounded() {
    let mut sim = Sim::new(scenarios::healthy_client());
    let g = ip(GPS1);
    // Down 150 s, up 400 s, for four hours: more changes than allowed.
    let mut outages = Vec::new();
    let mut t = 100;
    while t < 4 * 3600 {
        sim.at(
            Duration::from_secs(t),
            ScriptEvent::Server {
                address: g,
                up: false,
            },
        );
        sim.at(
            Duration::from_secs(t + 150),
            ScriptEvent::Server {
                address: g,
                up: true,
            },
        );
        outages.push(t);
        t += 550;
    }
    // Every outage, noticed (three missed 16 s polls) and past grace, finds
    // the fallbacks engaged: the bound never holds back an engage.
    for t in &outages {
        sim.run_until(Duration::from_secs(t + 145));
        assert!(
            sim.engine().fallbacks_engaged(),
            "outage at {t} s: fallbacks not engaged\n{}",
            sim.render_timeline()
        );
    }
    sim.run_until(Duration::from_secs(4 * 3600));
    let max = sim.engine().config().thresholds.max_changes_per_hour as usize;
    let changes: Vec<f64> = sim
        .decisions()
        .filter(|d| {
            matches!(
                d.kind,
                DecisionKind::EngageFallbacks | DecisionKind::ReleaseFallbacks
            )
        })
        .map(|d| secs(d.at))
        .collect();
    for (i, start) in changes.iter().enumerate() {
        let in_window = changes[i..].iter().filter(|t| **t < start + 3600.0).count();
        assert!(
            in_window <= max,
            "{in_window} changes in an hour from {start}"
        );
    }
    assert!(changes.len() >= 4, "the primary did flap: {changes:?}");
    assert!(sim.first_decision(DecisionKind::ReleaseDeferred).is_some());
    assert!(sim
        .alert_at(AlertKind::ChangeBudgetExhausted, AlertPhase::Opened)
        .is_some());
}

#[test]
fn s6_fallback_rot_warns_without_changing_selection() {
    let sim = run(scenarios::fallback_rot());
    let after = sim
        .engine()
        .config()
        .thresholds
        .fallback_unreachable_after
        .as_secs_f64();
    let ev = sim
        .alert_events()
        .find(|(_, e)| e.alert.kind == AlertKind::FallbackUnreachable)
        .unwrap();
    assert_eq!(ev.1.alert.subject.as_deref(), Some(PUB[1]));
    let at = secs(ev.0);
    assert!(
        at >= 120.0 + after && at < 120.0 + after + 60.0,
        "warned at {at}"
    );
    assert!(ev.1.alert.message.contains(PUB[1]));
    // Only the first plan was ever applied; nothing was engaged.
    assert_eq!(sim.plans().count(), 1);
    assert!(sim.first_decision(DecisionKind::EngageFallbacks).is_none());
    assert_eq!(sim.engine().state(), EngineState::Primary);
    let status = sim.status();
    let dead = status
        .fallbacks
        .iter()
        .find(|f| f.address.to_string() == PUB[1])
        .unwrap();
    assert!(!dead.answering && dead.silent_for.is_some());
    assert_eq!(status.fallbacks.iter().filter(|f| f.answering).count(), 3);
}

#[test]
fn s8_freeze_survives_restart_and_thaw_reconciles() {
    let sim = run(scenarios::freeze());
    let touching: Vec<f64> = sim
        .actions()
        .iter()
        .filter(|(t, a)| {
            (60.0..600.0).contains(&secs(*t))
                && matches!(
                    a,
                    Action::ApplyPlan(_) | Action::StepClock { .. } | Action::SetGpsGate { .. }
                )
        })
        .map(|(t, _)| secs(*t))
        .collect();
    assert!(
        touching.is_empty(),
        "touched chrony while frozen at {touching:?}"
    );
    // Still observing and alerting while frozen.
    let nur = alert_opened(&sim, AlertKind::NoUsableReference);
    assert!(nur > 120.0 && nur < 400.0);
    assert!(alert_opened(&sim, AlertKind::Frozen) <= 60.0 + SETTLED);
    // The restart at 400 s came back frozen, from disk.
    assert!(sim
        .states()
        .iter()
        .any(|(t, s)| secs(*t) >= 400.0 && secs(*t) < 401.0 && *s == EngineState::Frozen));
    // Thaw: fallbacks engaged and applied at once.
    let (t, plan) = sim.plans().find(|(t, _)| secs(*t) >= 600.0).unwrap();
    assert!(secs(t) < 601.0);
    assert!(fallbacks_selectable(plan));
    assert!(sim.disk().freeze.is_none());
    assert!(sim.disk().fallbacks_engaged);
    assert!(PUB.contains(&sim.world().selected_name().as_str()));
}

#[test]
fn s9_bad_input_engine_half() {
    let sim = run(scenarios::bad_input());
    // The full disk was an alert, then resolved once there was room.
    let full = alert_opened(&sim, AlertKind::StateNotSaved);
    assert!(full >= 227.0);
    let resolved: Vec<f64> = sim
        .alert_events()
        .filter(|(_, e)| {
            e.alert.kind == AlertKind::StateNotSaved && e.phase == AlertPhase::Resolved
        })
        .map(|(t, _)| secs(t))
        .collect();
    assert!(resolved.iter().any(|t| *t >= 400.0), "{resolved:?}");
    // What is on disk is the last good state, never garbage.
    let disk = sim.disk();
    let last = disk.last_synchronised.unwrap();
    assert!(
        last >= scenarios::build_time()
            && last <= scenarios::scenario_start().plus(Duration::from_secs(900))
    );
    assert_eq!(disk.fallback_mode, FallbackMode::Engaged);
    // Garbage GPS made the GPS untrusted (never the other way round).
    assert!(sim
        .alert_at(AlertKind::GpsInsane, AlertPhase::Opened)
        .is_some());
    let gates = gate_actions(&sim);
    assert!(
        !gates[1].1 && gates[1].0 >= 200.0 && gates[1].0 < 210.0,
        "{gates:?}"
    );
    // After the barrage the engine is working normally again.
    assert!(sim.engine().gate_open());
    assert!(serde_json::to_string(&sim.status()).is_ok());
    assert_eq!(sim.world().selected_name(), "NMEA");
}

#[test]
fn every_named_scenario_builds_and_runs() {
    for name in scenarios::NAMES {
        let s = scenarios::build(name).unwrap();
        assert_eq!(s.name, name);
        let sim = run(s);
        assert!(!sim.timeline().is_empty());
    }
    assert!(scenarios::build("no-such-scenario").is_none());
}

#[test]
fn operator_can_force_and_return_to_auto() {
    let mut sim = Sim::new(scenarios::healthy_client());
    sim.at(
        Duration::from_secs(30),
        ScriptEvent::Command(OperatorCommand::Fallback {
            mode: FallbackMode::Engaged,
        }),
    )
    .at(
        Duration::from_secs(90),
        ScriptEvent::Command(OperatorCommand::Fallback {
            mode: FallbackMode::Auto,
        }),
    );
    sim.run_until(Duration::from_secs(80));
    assert!(sim.engine().fallbacks_engaged());
    assert!(fallbacks_selectable(&last_plan(&sim)));
    // Back in auto with a primary healthy since the start: released once
    // it has been healthy for the hold, counted from its first good poll.
    sim.run_until(Duration::from_secs(600));
    assert!(!sim.engine().fallbacks_engaged());
    let released = decision_at(&sim, DecisionKind::ReleaseFallbacks);
    let h = hold(&sim);
    assert!(released >= h && released < h + 5.0, "{released}");
}

#[test]
fn s8_freeze_on_the_gps_host_keeps_the_gate_across_a_restart() {
    let mut sim = Sim::new(scenarios::gps_host_for_bench());
    sim.at(
        Duration::from_secs(60),
        ScriptEvent::Command(OperatorCommand::Freeze {
            reason: "moving the antenna".to_owned(),
        }),
    )
    .at(Duration::from_secs(120), ScriptEvent::RestartGnomond)
    .at(
        Duration::from_secs(300),
        ScriptEvent::Command(OperatorCommand::Thaw),
    );
    sim.run_until(Duration::from_secs(400));
    let gates = gate_actions(&sim);
    // Opened at boot, put back (open) right after the frozen restart, and
    // nothing else: chrony kept its GPS throughout.
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert!(gates[0].1 && gates[0].0 < 12.0);
    assert!(
        gates[1].1 && (120.0..121.0).contains(&gates[1].0),
        "{gates:?}"
    );
    assert!(sim.disk().gate_open);
    assert_eq!(sim.world().selected_name(), "NMEA");
    let plans_while_frozen = sim
        .plans()
        .filter(|(t, _)| (60.0..300.0).contains(&secs(*t)))
        .count();
    assert_eq!(plans_while_frozen, 0);
}
