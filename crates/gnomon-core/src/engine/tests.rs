//! The engine driven through one incident with chrony played by hand, for
//! what the lab's simulator does not model: chrony re-adds a source whose
//! options change, and the new one has no sample until it is polled again.

use std::{net::IpAddr, time::Duration};

use super::{Action, Engine, Input, PersistedState};
use crate::{
    alert::{AlertEvent, AlertKind, AlertPhase},
    chrony::{
        ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        Tracking,
    },
    config::Config,
    source::SourcePlan,
    time::{MonoTime, Offset, TimeFloor, WallTime},
};

/// What every answering source says of srv1's clock: a day behind.
const DAY_BEHIND: Offset = Offset::from_secs(86_400);
/// True UTC when the engine starts (2024-06-01T00:00:00Z).
const TRUE_START: WallTime = WallTime::from_unix_secs(1_717_200_000);
/// chrony is read this often, as gnomond does.
const POLL_EVERY_S: u64 = 2;

/// srv1 (the example client) restored a day behind: its primary is down,
/// its fallbacks answer, and chrony does not step (the step gnomon asks for
/// is left undone, so the clock stays a day off throughout).
#[derive(Debug)]
struct DayBehind {
    engine: Engine,
    now: MonoTime,
    /// How long the fallbacks have no sample after a plan flips them
    /// between `noselect` and selectable.
    silence: Duration,
    fallbacks_selectable: bool,
    readded_at: Option<MonoTime>,
    first_silent_snapshot: Option<MonoTime>,
    silent_snapshots: u32,
    alerts: Vec<(MonoTime, AlertEvent)>,
}

impl DayBehind {
    fn new(silence: Duration) -> Self {
        let clock = TRUE_START.offset_by(-DAY_BEHIND);
        // The floor is well below the clock: only the sources can tell.
        let floor = TimeFloor::new(clock.minus(Duration::from_secs(30 * 86_400)));
        Self {
            engine: Engine::new(Config::example_client(), floor, PersistedState::default()),
            now: MonoTime::ZERO,
            silence,
            fallbacks_selectable: false,
            readded_at: None,
            first_silent_snapshot: None,
            silent_snapshots: 0,
            alerts: Vec::new(),
        }
    }

    fn max_age(&self) -> Duration {
        self.engine.config().thresholds.chrony_max_age
    }

    fn wall(&self) -> WallTime {
        TRUE_START
            .offset_by(-DAY_BEHIND)
            .plus(self.now.as_duration())
    }

    /// A tick every second and a chrony read every two, until `secs`.
    fn run_until(&mut self, secs: u64) {
        let from = self.now.as_duration().as_secs();
        for s in from..=secs {
            self.now = MonoTime::from_duration(Duration::from_secs(s));
            self.feed(Input::Tick { wall: self.wall() });
            if s % POLL_EVERY_S == 0 {
                let snap = self.snapshot();
                self.feed(Input::Chrony(snap));
            }
        }
    }

    fn feed(&mut self, input: Input) {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            for action in self.engine.handle(self.now, input) {
                match action {
                    Action::Alert(ev) => self.alerts.push((self.now, ev)),
                    Action::ApplyPlan(plan) => {
                        self.chrony_reloads(&plan);
                        pending.push(Input::PlanApplied {
                            plan,
                            outcome: Ok(()),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    fn chrony_reloads(&mut self, plan: &SourcePlan) {
        let selectable = plan.fallbacks_engaged();
        if selectable != self.fallbacks_selectable {
            self.fallbacks_selectable = selectable;
            self.readded_at = Some(self.now);
        }
    }

    fn fallbacks_silent(&self) -> bool {
        self.readded_at
            .is_some_and(|at| self.now.since(at) < self.silence)
    }

    fn snapshot(&mut self) -> ChronySnapshot {
        let silent = self.fallbacks_silent();
        if silent {
            self.silent_snapshots += 1;
            self.first_silent_snapshot.get_or_insert(self.now);
        }
        let synchronised = self.fallbacks_selectable && !silent;
        let mut sources = vec![report("192.0.2.10", ChronySourceMode::Server, None)];
        for (i, addr) in ["192.0.2.12", "203.0.113.1", "203.0.113.2", "203.0.113.3"]
            .into_iter()
            .enumerate()
        {
            let mode = if i == 0 {
                ChronySourceMode::Peer
            } else {
                ChronySourceMode::Server
            };
            let state = if silent || !self.fallbacks_selectable {
                SelectionState::Unusable
            } else if addr == "203.0.113.1" {
                SelectionState::Selected
            } else {
                SelectionState::Combined
            };
            let offset = (!silent).then_some(DAY_BEHIND);
            sources.push(SourceReport {
                state,
                noselect: Some(!self.fallbacks_selectable),
                remote: None,
                ..report(addr, mode, offset)
            });
        }
        ChronySnapshot {
            taken_wall: self.wall(),
            tracking: Tracking {
                ref_id: if synchronised { 0xCB00_7101 } else { 0 },
                ref_address: synchronised.then(|| ip("203.0.113.1")),
                stratum: if synchronised { 3 } else { 16 },
                leap: if synchronised {
                    LeapStatus::Normal
                } else {
                    LeapStatus::Unsynchronised
                },
                system_offset: if synchronised {
                    DAY_BEHIND
                } else {
                    Offset::ZERO
                },
                last_offset: Offset::ZERO,
                rms_offset: Duration::from_micros(50),
                frequency_ppm: 0.0,
                root_delay: Duration::from_millis(10),
                root_dispersion: Duration::from_millis(1),
            },
            sources,
        }
    }

    fn clock_far_off(&self, phase: AlertPhase) -> Vec<MonoTime> {
        self.alerts
            .iter()
            .filter(|(_, e)| e.alert.kind == AlertKind::ClockFarOff && e.phase == phase)
            .map(|(at, _)| *at)
            .collect()
    }

    fn alert_log(&self) -> String {
        self.alerts
            .iter()
            .map(|(at, e)| format!("{at} {} {}\n", e.alert.kind, e.phase))
            .collect()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A source as chrony reports it: answering with `offset`, or (None) just
/// added and not yet answered.
fn report(addr: &str, mode: ChronySourceMode, offset: Option<Offset>) -> SourceReport {
    let answered = offset.is_some();
    SourceReport {
        id: ChronySourceId::Address(ip(addr)),
        name: None,
        mode,
        state: SelectionState::Unusable,
        stratum: if answered { 2 } else { 0 },
        poll: 6,
        reach: if answered { 0xff } else { 0 },
        last_sample_ago: answered.then_some(Duration::from_secs(1)),
        offset,
        error: Duration::from_millis(2),
        noselect: Some(false),
        remote: None,
    }
}

/// Engaging the fallbacks makes chrony re-add them; for a little less than
/// `chrony-max-age` none has a sample. The clock is still a day off, so the
/// critical alert stays open instead of resolving and reopening.
#[test]
fn clock_far_off_stays_open_while_readded_fallbacks_have_no_sample() {
    let mut b = DayBehind::new(Duration::ZERO);
    b.silence = b.max_age() - Duration::from_secs(3);
    b.run_until(180);

    let readded = b.readded_at.expect("the fallbacks were engaged");
    let opened = b.clock_far_off(AlertPhase::Opened);
    assert_eq!(opened.len(), 1, "alerts:\n{}", b.alert_log());
    assert!(
        opened[0] < readded,
        "opened at {} after the engage",
        opened[0]
    );
    assert!(
        b.silent_snapshots >= 5,
        "chrony reported the re-added fallbacks without a sample only {} times",
        b.silent_snapshots
    );
    assert!(
        b.clock_far_off(AlertPhase::Resolved).is_empty(),
        "clock-far-off resolved while the clock is still a day off; alerts:\n{}",
        b.alert_log()
    );
}

/// What the sources said is evidence for `chrony-max-age` only: silent for
/// longer, the alert resolves then (not at the first silent snapshot) and
/// opens again once they answer.
#[test]
fn clock_far_off_remembered_for_chrony_max_age_only() {
    let mut b = DayBehind::new(Duration::ZERO);
    let max_age = b.max_age();
    b.silence = max_age + Duration::from_secs(10);
    b.run_until(180);

    let first_silent = b.first_silent_snapshot.expect("a silent snapshot");
    let resolved = b.clock_far_off(AlertPhase::Resolved);
    assert_eq!(resolved.len(), 1, "alerts:\n{}", b.alert_log());
    let held = resolved[0].since(first_silent);
    assert!(
        held >= max_age && held <= max_age + Duration::from_secs(2),
        "resolved {held:?} after the sources fell silent (chrony-max-age {max_age:?}); alerts:\n{}",
        b.alert_log()
    );
    let opened = b.clock_far_off(AlertPhase::Opened);
    assert_eq!(opened.len(), 2, "alerts:\n{}", b.alert_log());
    assert!(opened[1] > resolved[0]);
}

/// The four bases of trusted time, in the order the engine prefers them:
/// nothing to go by, the time floor as a lower bound, the NTP sources chrony
/// measures (named), chrony once synchronised (its reference named).
#[test]
fn trusted_time_names_its_basis() {
    let clock = TRUE_START.offset_by(-DAY_BEHIND);
    let floor_ahead = TimeFloor::new(clock.plus(Duration::from_secs(2 * 365 * 86_400)));
    let mut e = Engine::new(
        Config::example_client(),
        floor_ahead,
        PersistedState::default(),
    );
    let t = e.config().thresholds.clone();
    // No wall clock reading yet: nothing to judge against.
    assert_eq!(e.trusted_time(MonoTime::ZERO, &t), None);
    e.handle(MonoTime::ZERO, Input::Tick { wall: clock });
    let floor = e.trusted_time(MonoTime::ZERO, &t).unwrap();
    assert!(floor.lower_bound, "{floor:?}");
    assert_eq!(floor.offset, Offset::from_secs(2 * 365 * 86_400));
    assert!(floor.basis.starts_with("time floor"), "{floor:?}");

    // The floor well below the clock and no chrony: no trusted time.
    let mut b = DayBehind::new(Duration::ZERO);
    b.feed(Input::Tick { wall: b.wall() });
    assert_eq!(b.engine.trusted_time(b.now, &t), None);

    // chrony measures the fallbacks (noselect) but is not synchronised.
    b.run_until(0);
    let sources = b.engine.trusted_time(b.now, &t).unwrap();
    assert_eq!(sources.offset, DAY_BEHIND);
    assert!(!sources.lower_bound);
    assert_eq!(
        sources.basis,
        "NTP sources 192.0.2.12, 203.0.113.1, 203.0.113.2, 203.0.113.3 (median)"
    );

    // Fallbacks engaged, chrony synchronised to one of them.
    b.run_until(180);
    assert!(b.fallbacks_selectable, "alerts:\n{}", b.alert_log());
    let chrony = b.engine.trusted_time(b.now, &t).unwrap();
    assert_eq!(chrony.offset, DAY_BEHIND);
    assert_eq!(chrony.basis, "chrony, synchronised to 203.0.113.1");
    assert_eq!(b.engine.status(b.now).trusted_time, Some(chrony));
}

/// A certificate valid since an hour ago by true time, read by an engine
/// whose clock is a day behind: the clock is blamed (critical, with the
/// error); the renewed file (valid since two days) resolves it.
#[test]
fn a_certificate_not_yet_valid_by_a_clock_a_day_behind_is_blamed_on_the_clock() {
    use crate::certs::{CertInfo, CertObservation, CertState};

    let mut b = DayBehind::new(Duration::ZERO);
    b.run_until(0);
    let read = |from: WallTime, fp: &str| {
        vec![CertObservation {
            path: "/etc/unbound/dot.pem".into(),
            read: Ok(CertInfo {
                subject: "CN=dns.lan".into(),
                issuer: "CN=dns.lan".into(),
                serial: "01".into(),
                fingerprint: fp.into(),
                not_before: from,
                not_after: TRUE_START.plus(Duration::from_secs(90 * 86_400)),
                certificates: 1,
            }),
        }]
    };
    // Read twice a second apart: an alert opens once its condition has
    // held for a second.
    for _ in 0..2 {
        b.feed(Input::Certificates(read(
            TRUE_START.minus(Duration::from_secs(3600)),
            "a",
        )));
        b.now = b.now.plus(Duration::from_secs(1));
    }
    let opened: Vec<&AlertEvent> = b
        .alerts
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.alert.kind == AlertKind::CertificateNotYetValid)
        .collect();
    assert_eq!(opened.len(), 1, "alerts:\n{}", b.alert_log());
    assert_eq!(opened[0].phase, AlertPhase::Opened);
    let message = &opened[0].alert.message;
    assert!(
        message.contains("not yet valid because the system clock is")
            && message.contains("behind (NTP sources"),
        "{message}"
    );
    let status = &b.engine.status(b.now).certs[0];
    assert_eq!(status.state, CertState::NotYetValidByClock);
    assert_eq!(status.clock_error, Some(DAY_BEHIND));

    b.feed(Input::Certificates(read(
        TRUE_START.minus(Duration::from_secs(2 * 86_400)),
        "b",
    )));
    let after = b.now.as_duration().as_secs() + 2;
    b.run_until(after);
    let phases = |kind: AlertKind| -> Vec<AlertPhase> {
        b.alerts
            .iter()
            .filter(|(_, e)| e.alert.kind == kind)
            .map(|(_, e)| e.phase)
            .collect()
    };
    assert_eq!(
        phases(AlertKind::CertificateNotYetValid),
        [AlertPhase::Opened, AlertPhase::Resolved],
        "alerts:\n{}",
        b.alert_log()
    );
    assert_eq!(
        phases(AlertKind::CertificateRenewed),
        [AlertPhase::Opened],
        "alerts:\n{}",
        b.alert_log()
    );
    assert_eq!(b.engine.status(b.now).certs[0].state, CertState::Valid);
}

/// gnomond starting over the fail-safe file (every source selectable) with
/// its primary down: it takes over without ever making the fallbacks
/// `noselect`, so chrony never loses the sources it is using; without the
/// take-over it would drop them for the grace period.
#[test]
fn taking_over_the_failsafe_plan_drops_no_source() {
    let failsafe = super::failsafe_plan(&Config::example_client());
    assert!(
        failsafe.sources.iter().all(|s| s.selectable),
        "{failsafe:?}"
    );
    assert_eq!(failsafe.sources.len(), 5);

    let mut b = DayBehind::new(Duration::ZERO);
    b.fallbacks_selectable = true;
    b.engine.take_over_failsafe();
    assert_eq!(b.engine.desired_plan(), failsafe);
    b.run_until(120);
    assert_eq!(b.readded_at, None, "alerts:\n{}", b.alert_log());
    assert!(b.engine.fallbacks_engaged());
    assert!(b.engine.status(b.now).fallbacks_engaged);

    // The same start without the take-over: the fallbacks go `noselect`.
    let mut plain = DayBehind::new(Duration::ZERO);
    plain.fallbacks_selectable = true;
    plain.run_until(10);
    assert_eq!(plain.readded_at, Some(MonoTime::ZERO));
}
