//! A LAN server whose primary answers but serves a wrong time, with chrony
//! played by hand: the primary is judged against the independent
//! fallbacks, never against sources that follow it or this host.

use std::{net::IpAddr, time::Duration};

use super::{Action, DecisionKind, Engine, Input, PersistedState};
use crate::{
    alert::{AlertEvent, AlertKind, AlertPhase},
    chrony::{
        refid_of, ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, RemoteReference,
        SelectionState, SourceReport, Tracking,
    },
    config::Config,
    source::{SourcePlan, SourceRole},
    time::{MonoTime, Offset, TimeFloor, WallTime},
};

const START: WallTime = WallTime::from_unix_secs(1_717_200_000);
const PRIMARY: &str = "192.0.2.10";
const PEER: &str = "192.0.2.12";
const THIS_HOST: &str = "192.0.2.11";
const PUBS: [&str; 3] = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];

/// srv1 with a correct clock; what each source says of it is set by hand.
struct Lan {
    engine: Engine,
    now: MonoTime,
    /// What the primary says of the clock (source − system).
    primary_says: Offset,
    /// Public servers answering.
    pubs_answering: usize,
    /// The peer takes its time from this host rather than the primary.
    peer_follows_us: bool,
    plan: Option<SourcePlan>,
    alerts: Vec<AlertEvent>,
    decisions: Vec<(MonoTime, DecisionKind, String)>,
    steps: Vec<String>,
}

impl Lan {
    fn new() -> Self {
        let floor = TimeFloor::new(START.minus(Duration::from_secs(86_400)));
        Lan {
            engine: Engine::new(Config::example_client(), floor, PersistedState::default()),
            now: MonoTime::ZERO,
            primary_says: Offset::ZERO,
            pubs_answering: 3,
            peer_follows_us: false,
            plan: None,
            alerts: Vec::new(),
            decisions: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn selectable(&self, addr: &str) -> bool {
        self.plan.as_ref().is_none_or(|p| {
            p.sources
                .iter()
                .find(|s| s.source.address.to_string() == addr)
                .is_none_or(|s| s.selectable)
        })
    }

    fn primary_selectable(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| {
            p.sources
                .iter()
                .any(|s| s.role == SourceRole::Primary && s.selectable)
        })
    }

    fn snapshot(&self) -> ChronySnapshot {
        // chrony follows the primary while it may select it; otherwise
        // the first public server.
        let on_primary = self.selectable(PRIMARY);
        let reference = if on_primary { PRIMARY } else { PUBS[0] };
        let correction = if on_primary {
            self.primary_says
        } else {
            Offset::ZERO
        };
        let mut sources = vec![source(
            PRIMARY,
            ChronySourceMode::Server,
            Some(self.primary_says),
            !self.selectable(PRIMARY),
            Some(refid_of(ip("192.0.2.1"))),
        )];
        let peer_ref = if self.peer_follows_us {
            refid_of(ip(THIS_HOST))
        } else {
            refid_of(ip(PRIMARY))
        };
        // The peer follows the primary: it says what the primary says.
        sources.push(source(
            PEER,
            ChronySourceMode::Peer,
            Some(self.primary_says),
            !self.selectable(PEER),
            Some(peer_ref),
        ));
        for (i, p) in PUBS.iter().enumerate() {
            let answering = i < self.pubs_answering;
            let offset = Offset::from_nanos(i64::try_from(i).unwrap_or(0) * 1_000_000);
            let mut s = source(
                p,
                ChronySourceMode::Server,
                answering.then_some(offset),
                !self.selectable(p),
                answering.then(|| refid_of(ip("198.51.100.1"))),
            );
            if !answering {
                s.reach = 0;
            }
            sources.push(s);
        }
        for s in &mut sources {
            if s.matches(&crate::source::SourceAddress::parse(reference)) {
                s.state = SelectionState::Selected;
            }
        }
        ChronySnapshot {
            taken_wall: self.wall(),
            tracking: Tracking {
                ref_id: refid_of(ip(reference)),
                ref_address: Some(ip(reference)),
                stratum: 2,
                leap: LeapStatus::Normal,
                system_offset: correction,
                last_offset: Offset::ZERO,
                rms_offset: Duration::from_micros(50),
                frequency_ppm: 0.0,
                root_delay: Duration::from_millis(10),
                root_dispersion: Duration::from_millis(1),
            },
            sources,
        }
    }

    fn wall(&self) -> WallTime {
        START.plus(self.now.as_duration())
    }

    fn run_for(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now = self.now.plus(Duration::from_secs(1));
            self.feed(Input::Tick { wall: self.wall() });
            let snap = self.snapshot();
            self.feed(Input::Chrony(snap));
        }
    }

    fn feed(&mut self, input: Input) {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            for action in self.engine.handle(self.now, input) {
                match action {
                    Action::Alert(ev) => self.alerts.push(ev),
                    Action::ApplyPlan(plan) => {
                        self.plan = Some(plan.clone());
                        pending.push(Input::PlanApplied {
                            plan,
                            outcome: Ok(()),
                        });
                    }
                    Action::Record(d) => self.decisions.push((d.at, d.kind, d.reason)),
                    Action::StepClock { reason } => self.steps.push(reason),
                    _ => {}
                }
            }
        }
    }

    fn opened(&self, kind: AlertKind) -> Vec<&AlertEvent> {
        self.alerts
            .iter()
            .filter(|e| e.alert.kind == kind && e.phase == AlertPhase::Opened)
            .collect()
    }

    fn decided(&self, kind: DecisionKind) -> Option<MonoTime> {
        self.decisions
            .iter()
            .find(|(_, k, _)| *k == kind)
            .map(|(at, _, _)| *at)
    }
}

/// The LAN peer is in the cross-check but not counted, for `why`.
fn assert_peer_left_out(status: &super::Status, why: &str) {
    let peer = status
        .cross_check
        .sources
        .iter()
        .find(|s| s.address.to_string() == PEER)
        .unwrap();
    assert!(
        peer.excluded.as_deref().is_some_and(|w| w.contains(why)),
        "{peer:?}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn source(
    addr: &str,
    mode: ChronySourceMode,
    offset: Option<Offset>,
    noselect: bool,
    ref_id: Option<u32>,
) -> SourceReport {
    SourceReport {
        id: ChronySourceId::Address(ip(addr)),
        name: None,
        mode,
        state: if noselect {
            SelectionState::Unusable
        } else {
            SelectionState::Combined
        },
        stratum: 2,
        poll: 6,
        reach: 0xff,
        last_sample_ago: Some(Duration::from_secs(1)),
        offset,
        error: Duration::from_millis(5),
        noselect: Some(noselect),
        remote: ref_id.map(|ref_id| RemoteReference {
            ref_id,
            local_address: Some(ip(THIS_HOST)),
        }),
    }
}

#[test]
fn a_primary_a_second_off_is_kept_out_at_once_and_never_stepped_to() {
    let mut lan = Lan::new();
    lan.run_for(10);
    assert!(!lan.engine.fallbacks_engaged());
    assert!(lan.primary_selectable());
    assert!(lan.opened(AlertKind::PrimaryDisagrees).is_empty());

    // The primary starts serving a time one second ahead.
    lan.primary_says = Offset::from_secs(1);
    let fault = lan.now;
    lan.run_for(3);
    let engaged = lan.decided(DecisionKind::EngageFallbacks).unwrap();
    assert_eq!(engaged.since(fault), Duration::from_secs(1), "no grace");
    assert!(lan.decided(DecisionKind::DistrustPrimary).is_some());
    assert!(lan.engine.fallbacks_engaged());
    assert!(!lan.primary_selectable(), "{:?}", lan.plan);
    assert!(
        lan.steps.is_empty(),
        "stepped towards a liar: {:?}",
        lan.steps
    );

    // The alert names both sides and leaves the peer (which follows the
    // primary) out of the count.
    let opened = lan.opened(AlertKind::PrimaryDisagrees);
    assert_eq!(opened.len(), 1, "{:?}", lan.alerts);
    let ev = |k: &str| {
        opened[0]
            .alert
            .evidence
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(ev("PRIMARY_OFFSET").as_deref(), Some("+1.000 s"));
    assert_eq!(
        ev("SOURCES").as_deref(),
        Some("203.0.113.1 203.0.113.2 203.0.113.3")
    );
    let status = lan.engine.status(lan.now);
    assert!(status.primary.distrusted);
    assert_peer_left_out(&status, "takes its time from 192.0.2.10");

    // Still lying a while later: still out, still no step.
    lan.run_for(30);
    assert!(!lan.primary_selectable());
    assert!(lan.steps.is_empty());

    // It is fixed: selectable again and released together, after the hold.
    lan.primary_says = Offset::ZERO;
    let fixed = lan.now;
    let hold = lan.engine.config().thresholds.hold;
    lan.run_for(hold.as_secs() + 3);
    let trusted = lan.decided(DecisionKind::TrustPrimary).unwrap();
    let released = lan.decided(DecisionKind::ReleaseFallbacks).unwrap();
    assert_eq!(trusted, released);
    assert!(trusted.since(fixed) >= hold);
    assert!(lan.primary_selectable());
    assert!(!lan.engine.fallbacks_engaged());
    let resolved: Vec<&AlertEvent> = lan
        .alerts
        .iter()
        .filter(|e| e.alert.kind == AlertKind::PrimaryDisagrees && e.phase == AlertPhase::Resolved)
        .collect();
    assert_eq!(resolved.len(), 1);
    assert!(
        resolved[0]
            .resolution
            .as_deref()
            .is_some_and(|r| r.contains("no longer disagrees")),
        "{:?}",
        resolved[0]
    );
}

#[test]
fn a_small_offset_within_the_bound_is_no_disagreement() {
    let mut lan = Lan::new();
    lan.primary_says = Offset::from_nanos(40_000_000);
    lan.run_for(20);
    assert!(lan.opened(AlertKind::PrimaryDisagrees).is_empty());
    assert!(!lan.engine.fallbacks_engaged());
    assert_eq!(lan.engine.status(lan.now).primary.healthy, Some(true));
}

#[test]
fn with_one_independent_source_gnomon_says_it_cannot_judge() {
    let mut lan = Lan::new();
    lan.pubs_answering = 1;
    // The peer takes its time from this host: not independent either.
    lan.peer_follows_us = true;
    lan.primary_says = Offset::from_secs(1);
    let wait = lan.engine.config().thresholds.fallback_unreachable_after;
    lan.run_for(wait.as_secs() + 3);
    // Nothing to judge by: the primary is used, and gnomon says so.
    assert!(lan.opened(AlertKind::PrimaryDisagrees).is_empty());
    let status = lan.engine.status(lan.now);
    assert_eq!(status.primary.healthy, Some(true));
    assert!(
        status
            .primary
            .unchecked
            .as_deref()
            .is_some_and(|u| u.contains("1 independent source answering")),
        "{:?}",
        status.primary
    );
    assert_peer_left_out(&status, "takes its time from this host");
    assert_eq!(lan.opened(AlertKind::CrossCheckUnavailable).len(), 1);
    // chrony follows the primary a second away: the step says it relies
    // on the primary alone.
    assert!(!lan.steps.is_empty());
    for s in &lan.steps {
        assert!(s.contains("alone"), "{s}");
    }
}
