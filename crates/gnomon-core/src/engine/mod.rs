//! The decision engine: observes the GPS, chrony and the system clock,
//! decides which sources chrony may select, when the GPS may feed chrony,
//! when to step the clock, and what to alert on. Sans-IO: time is always an
//! argument and every effect is an [`Action`] for the IO layer.
//!
//! Level-triggered: each call to [`Engine::handle`] recomputes what should be
//! from what is observed, and re-issues whatever chrony does not yet match.

mod budget;
mod gps_watch;
mod status;
#[cfg(test)]
mod tests;
mod trust;
#[cfg(test)]
mod trust_tests;
mod types;

use std::{collections::BTreeMap, time::Duration};

pub use gps_watch::{GpsFault, GpsInsanity, GpsObservation, GpsVerdict};
pub use status::{ChronyStatus, ClockStatus, FallbackStatus, GpsStatus, PrimaryStatus, Status};
pub use trust::{CheckedSource, CrossCheck, Disagreement, MIN_INDEPENDENT};
pub use types::{
    Action, Decision, DecisionKind, EngineState, FallbackMode, FreezeRecord, Input,
    OperatorCommand, PersistedState,
};

use crate::{
    alert::{Alert, AlertBook, AlertKey, AlertKind},
    chrony::{ChronySnapshot, ChronySourceId, SelectionState, SourceReport},
    config::{Config, NtpServerConfig, PpsKind, Role, Thresholds},
    source::{
        plan_disagreement, AssociationKind, FallbackTier, NtpSource, PlannedSource, SourceAddress,
        SourcePlan, SourceRole,
    },
    time::{human_duration, MonoTime, Offset, TimeFloor, WallTime},
};
use budget::ChangeBudget;
use gps_watch::GpsWatch;
use trust::Candidate;

/// A failed apply is retried this often (and an unanswered one re-sent).
pub const APPLY_RETRY: Duration = Duration::from_secs(5);
/// chrony's view is compared with the plan only this long after an apply,
/// so a snapshot taken before the reload is not mistaken for disagreement.
pub const RECONCILE_SETTLE: Duration = Duration::from_secs(5);
/// A step request is repeated at most this often while still needed.
pub const STEP_RETRY: Duration = Duration::from_secs(30);
/// A failed state write is retried this often.
pub const PERSIST_RETRY: Duration = Duration::from_secs(30);
/// A wall-clock reading this far from the extrapolated previous one means
/// the clock was stepped.
pub const STEP_DETECT: Duration = Duration::from_secs(1);
/// Margin below the time floor before a clock or source is called insane.
pub const FLOOR_MARGIN: Duration = Duration::from_secs(60);
/// A clock this far from its trusted sources breaks Kerberos, TOTP and
/// freshly issued TLS certificates: critical even above the floor.
pub const CLOCK_FAR_OFF: Duration = Duration::from_secs(300);

/// What the engine concluded about the primary reference on one pass.
#[derive(Debug, Clone, PartialEq)]
struct PrimaryHealth {
    /// `None` when it cannot be judged (a client without word from chrony).
    healthy: Option<bool>,
    detail: String,
    /// It answers but the independent sources say it is wrong (a client's
    /// primary; the GPS's insanity is in its verdict).
    lying: Option<Disagreement>,
    /// Healthy by every other measure, but too few independent sources
    /// answer to cross-check it: why, in words.
    unchecked: Option<String>,
}

impl PrimaryHealth {
    fn new(healthy: Option<bool>, detail: String) -> Self {
        PrimaryHealth {
            healthy,
            detail,
            lying: None,
            unchecked: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FallbackWatch {
    last_answering: Option<MonoTime>,
    watched_since: Option<MonoTime>,
    last_usable: Option<MonoTime>,
}

#[derive(Debug, Clone, PartialEq)]
struct FallbackAssessment {
    answering: bool,
    usable: bool,
    offset: Option<Offset>,
    silent_for: Option<Duration>,
}

/// The decision engine. One per daemon; all state lives here.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
    floor: TimeFloor,
    primaries: Vec<NtpSource>,
    fallbacks: Vec<(NtpSource, FallbackTier)>,
    /// Configured as following this host: never independent.
    followers: Vec<SourceAddress>,
    started: Option<MonoTime>,

    // Observations.
    wall: Option<(WallTime, MonoTime)>,
    snapshot: Option<(ChronySnapshot, MonoTime)>,
    /// When chrony last answered with a snapshot (kept when one is dropped).
    last_snapshot_at: Option<MonoTime>,
    chrony_error: Option<String>,
    chrony_heard: bool,
    gps: Option<GpsWatch>,

    // Health over time.
    primary: PrimaryHealth,
    primary_healthy_since: Option<MonoTime>,
    primary_unhealthy_since: Option<MonoTime>,
    primary_ever_healthy: bool,
    /// When the primary was last judged healthy.
    primary_last_healthy: Option<MonoTime>,
    /// When the plan last flipped the primary's `noselect` (chrony
    /// re-adds it then, without samples).
    primary_flipped_at: Option<MonoTime>,
    gps_verdict: GpsVerdict,
    gps_healthy_since: Option<MonoTime>,
    fallback_watch: Vec<FallbackWatch>,
    /// Addresses `fallback_watch` is aligned with.
    fallback_sources_before: Vec<SourceAddress>,
    fallback_now: Vec<FallbackAssessment>,
    /// The last cross-check of the primary (or the GPS) against the
    /// independent sources.
    cross_check: CrossCheck,
    /// Since when the reference in use could not be cross-checked.
    unchecked_since: Option<MonoTime>,

    // Decisions.
    engaged: bool,
    engage_reason: String,
    /// The primary disagreed with the independent sources: kept `noselect`
    /// until it has agreed again for `hold`.
    distrusted: bool,
    mode: FallbackMode,
    freeze: Option<FreezeRecord>,
    budget: ChangeBudget,
    /// A release is due but held back by the change bound.
    deferred: bool,
    gate_open: bool,
    /// Under a restored freeze: the gate position to put back once.
    gate_restore: Option<bool>,
    applied: Option<(SourcePlan, MonoTime)>,
    in_flight: Option<(SourcePlan, MonoTime)>,
    apply_error: Option<String>,
    last_step: Option<MonoTime>,
    /// The last offset of the system clock that trusted sources agreed on,
    /// and when: evidence for `clock-far-off` while the sources answer
    /// again after chrony re-added them (engage, release, reload).
    clock_offset_seen: Option<(MonoTime, Offset)>,

    // Persistence.
    persist_wanted: bool,
    last_persist: Option<MonoTime>,
    /// Latest wall time at which chrony was seen synchronised to a trusted source.
    sync_seen: Option<WallTime>,
    persist_error: Option<String>,

    /// The `[certs]` files as last read.
    certs: crate::certs::CertWatch,

    // Reporting.
    state: EngineState,
    alerts: AlertBook,
    last_headline: Option<String>,
    last_wake: Option<MonoTime>,
}

impl Engine {
    /// An engine for a checked configuration, with the time floor's fixed
    /// parts and whatever state the last run persisted.
    pub fn new(config: Config, floor: TimeFloor, restored: PersistedState) -> Self {
        let budget = ChangeBudget::new(config.thresholds.max_changes_per_hour);
        let gate_restore = (restored.freeze.is_some() && restored.gate_open).then_some(true);
        let mut engine = Engine {
            floor,
            primaries: Vec::new(),
            fallbacks: Vec::new(),
            followers: Vec::new(),
            started: None,
            wall: None,
            snapshot: None,
            last_snapshot_at: None,
            chrony_error: None,
            chrony_heard: false,
            gps: None,
            primary: PrimaryHealth::new(None, "not assessed yet".to_owned()),
            primary_healthy_since: None,
            primary_unhealthy_since: None,
            primary_ever_healthy: false,
            primary_last_healthy: None,
            primary_flipped_at: None,
            gps_verdict: GpsVerdict::default(),
            gps_healthy_since: None,
            fallback_watch: Vec::new(),
            fallback_sources_before: Vec::new(),
            fallback_now: Vec::new(),
            cross_check: CrossCheck::default(),
            unchecked_since: None,
            engaged: restored.fallbacks_engaged,
            engage_reason: if restored.fallbacks_engaged {
                "fallbacks were engaged when gnomond last stopped".to_owned()
            } else {
                String::new()
            },
            distrusted: false,
            mode: restored.fallback_mode,
            freeze: restored.freeze,
            budget,
            deferred: false,
            gate_open: false,
            gate_restore,
            applied: None,
            in_flight: None,
            apply_error: None,
            last_step: None,
            clock_offset_seen: None,
            persist_wanted: false,
            last_persist: None,
            sync_seen: None,
            persist_error: None,
            state: EngineState::Starting,
            certs: crate::certs::CertWatch::default(),
            alerts: AlertBook::default(),
            last_headline: None,
            last_wake: None,
            config,
        };
        if let Some(t) = restored.last_synchronised {
            engine.floor.raise_last_synchronised(t);
        }
        engine.apply_config();
        engine
    }

    /// Takes a new (checked) configuration without losing what was observed
    /// or decided; the next pass re-plans with it.
    pub fn reconfigure(&mut self, config: Config) {
        self.config = config;
        self.apply_config();
    }

    /// Starts from chrony's fail-safe plan (every source selectable, left by
    /// `gnomond --fail-safe` while gnomond was not running): the fallbacks
    /// count as engaged, so taking over drops nothing chrony may be using;
    /// they are released like any engagement, once the primary has been
    /// healthy for `hold`. Call before the first input.
    pub fn take_over_failsafe(&mut self) {
        if !self.engaged {
            self.engaged = true;
            self.engage_reason =
                "taken over from the fail-safe sources (every source selectable while gnomond was not running)"
                    .to_owned();
        }
    }

    fn apply_config(&mut self) {
        let c = &self.config;
        self.primaries = configured_primaries(c);
        self.fallbacks = configured_fallbacks(c);
        self.followers = c
            .primary
            .servers
            .iter()
            .chain(&c.fallback.peers)
            .chain(&c.fallback.servers)
            .filter(|s| s.follows_this_host)
            .map(|s| SourceAddress::parse(&s.address))
            .collect();
        // Keep what was learnt about fallbacks that are still configured,
        // matched by address: a reload may reorder, add or drop some.
        let previous: Vec<(SourceAddress, FallbackWatch)> = self
            .fallback_sources_before
            .drain(..)
            .zip(self.fallback_watch.drain(..))
            .collect();
        self.fallback_watch = self
            .fallbacks
            .iter()
            .map(|(s, _)| {
                previous
                    .iter()
                    .find(|(a, _)| *a == s.address)
                    .map(|(_, w)| w.clone())
                    .unwrap_or_default()
            })
            .collect();
        self.fallback_sources_before = self
            .fallbacks
            .iter()
            .map(|(s, _)| s.address.clone())
            .collect();
        self.fallback_now.clear();
        self.budget.set_max(c.thresholds.max_changes_per_hour);
        let pps_required = c.gps.as_ref().is_some_and(|g| g.pps != PpsKind::None);
        match (c.role, &mut self.gps) {
            (Role::Gps, Some(g)) => g.set_pps_required(pps_required),
            (Role::Gps, None) => self.gps = Some(GpsWatch::new(pps_required)),
            (Role::Client, _) => self.gps = None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> EngineState {
        self.state
    }

    pub fn fallbacks_engaged(&self) -> bool {
        self.engaged
    }

    pub fn gate_open(&self) -> bool {
        self.gate_open
    }

    pub fn floor(&self) -> &TimeFloor {
        &self.floor
    }

    /// What to write at shutdown (and what the last pass wanted written).
    pub fn persisted_state(&self) -> PersistedState {
        PersistedState {
            last_synchronised: self.floor.last_synchronised.max(self.sync_seen),
            freeze: self.freeze.clone(),
            fallback_mode: self.mode,
            fallbacks_engaged: self.engaged,
            gate_open: self.gate_open,
        }
    }

    /// The plan the engine wants chrony to have right now.
    pub fn desired_plan(&self) -> SourcePlan {
        plan_of(
            &self.primaries,
            &self.fallbacks,
            self.engaged,
            !self.distrusted,
        )
    }

    /// Handles one input at monotonic time `now` and returns what to do.
    pub fn handle(&mut self, now: MonoTime, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        self.started.get_or_insert(now);
        let t = self.config.thresholds.clone();
        match input {
            Input::Tick { wall } => {
                // A wall clock that moved differently from the monotonic
                // clock was stepped: chrony's figures from before the step
                // are relative to the old clock and no longer evidence.
                if let Some(expected) = self.wall_now(now) {
                    if wall.since(expected).abs() > STEP_DETECT {
                        self.snapshot = None;
                    }
                }
                self.wall = Some((wall, now));
            }
            Input::GpsEpoch(mut e) => {
                // An arrival "in the future" is a bug upstream; never let it
                // keep a stale epoch looking fresh.
                e.received_mono = e.received_mono.min(now);
                if let Some(g) = &mut self.gps {
                    g.epoch(e, &t);
                }
            }
            Input::PpsEdge(mut p) => {
                p.mono = p.mono.min(now);
                if let Some(g) = &mut self.gps {
                    g.pulse(p);
                }
            }
            Input::Chrony(s) => {
                if self.chrony_error.is_some() {
                    // chronyd came back (perhaps restarted): make sure it
                    // has the plan rather than trusting what it had before.
                    self.applied = None;
                    self.in_flight = None;
                }
                if self.wall.is_none_or(|(_, at)| at < now) {
                    self.wall = Some((s.taken_wall, now));
                }
                self.chrony_error = None;
                self.chrony_heard = true;
                self.snapshot = Some((s, now));
                self.last_snapshot_at = Some(now);
            }
            Input::ChronyUnreachable { error } => {
                self.chrony_error = Some(error);
                self.chrony_heard = true;
                self.snapshot = None;
            }
            Input::PlanApplied { plan, outcome } => {
                if self.in_flight.as_ref().is_some_and(|(p, _)| *p == plan) {
                    self.in_flight = None;
                }
                match outcome {
                    Ok(()) => {
                        self.applied = Some((plan, now));
                        self.apply_error = None;
                    }
                    Err(e) => self.apply_error = Some(e),
                }
            }
            Input::StateSaved { outcome } => match outcome {
                Ok(()) => self.persist_error = None,
                Err(e) => {
                    self.persist_error = Some(e);
                    self.persist_wanted = true;
                }
            },
            Input::Command(c) => self.command(now, c, &mut out),
            Input::Certificates(read) => {
                let wall = self.wall_now(now);
                self.certs.observe(now, wall, read);
            }
        }
        self.pass(now, &t, &mut out);
        out
    }

    fn command(&mut self, now: MonoTime, c: OperatorCommand, out: &mut Vec<Action>) {
        match c {
            OperatorCommand::Freeze { reason } => {
                let wall = self.wall_now(now);
                self.record(
                    now,
                    DecisionKind::Freeze,
                    format!("frozen by operator: {reason}"),
                    out,
                );
                self.freeze = Some(FreezeRecord {
                    reason,
                    since: wall,
                });
                self.persist_wanted = true;
            }
            OperatorCommand::Thaw => {
                if let Some(f) = self.freeze.take() {
                    self.record(
                        now,
                        DecisionKind::Thaw,
                        format!("thawed by operator (was frozen: {})", f.reason),
                        out,
                    );
                    // Whatever happened meanwhile, make chrony match the plan.
                    self.applied = None;
                    self.persist_wanted = true;
                }
            }
            OperatorCommand::Fallback { mode } => {
                if mode != self.mode {
                    self.mode = mode;
                    self.record(
                        now,
                        DecisionKind::FallbackOverride,
                        format!("operator set fallback mode to {mode}"),
                        out,
                    );
                    self.persist_wanted = true;
                }
            }
            OperatorCommand::Reassess => {
                self.applied = None;
                self.in_flight = None;
                self.last_headline = None;
                self.last_wake = None;
            }
        }
    }

    fn wall_now(&self, now: MonoTime) -> Option<WallTime> {
        self.wall.map(|(w, at)| w.plus(now.since(at)))
    }

    /// No usable snapshot right now only because one was dropped after a
    /// clock step: chrony answered within `chrony-max-age` and reported no
    /// error, so the last judgements may stand until the next poll.
    fn in_snapshot_gap(&self, now: MonoTime, t: &Thresholds) -> bool {
        self.chrony_error.is_none()
            && self
                .last_snapshot_at
                .is_some_and(|at| now.since(at) <= t.chrony_max_age)
    }

    fn fresh_snapshot(&self, now: MonoTime, t: &Thresholds) -> Option<&ChronySnapshot> {
        self.snapshot
            .as_ref()
            .filter(|(_, at)| now.since(*at) <= t.chrony_max_age)
            .map(|(s, _)| s)
    }

    fn record(&self, now: MonoTime, kind: DecisionKind, reason: String, out: &mut Vec<Action>) {
        out.push(Action::Record(Decision {
            at: now,
            wall: self.wall_now(now),
            kind,
            state: self.state,
            reason,
        }));
    }

    fn pass(&mut self, now: MonoTime, t: &Thresholds, out: &mut Vec<Action>) {
        let wall = self.wall_now(now);
        let floor = self.judging_floor();
        self.assess_fallbacks(now, t, wall, floor);
        self.assess_primary(now, t, floor);
        if let Some(open) = self.gate_restore.take() {
            if self.freeze.is_some() && self.config.role == Role::Gps {
                // A restart closed the gate with the old process; the freeze
                // means "leave things as they were", so put it back.
                let reason =
                    "frozen: the gate is put back as it was before gnomond restarted".to_owned();
                self.record(now, DecisionKind::GateOpen, reason.clone(), out);
                out.push(Action::SetGpsGate { open, reason });
                self.gate_open = open;
            }
        }
        if self.freeze.is_none() {
            self.decide_distrust(now, t, out);
            self.decide_engagement(now, t, out);
            self.drive_gate(now, out);
            self.drive_plan(now, t, out);
            self.drive_step(now, t, wall, floor, out);
        }
        self.track_floor(now, t, wall, out);
        self.update_state(now, t, out);
        if let Some(off) = self.measured_clock_offset(now, t) {
            self.clock_offset_seen = Some((now, off));
        }
        let holding = self.holding_alerts(now, t, wall);
        let holding_keys: Vec<AlertKey> = holding.iter().map(Alert::key).collect();
        let resolutions: BTreeMap<AlertKey, String> = self
            .alerts
            .active_keys()
            .filter(|k| !holding_keys.contains(k))
            .map(|k| (k.clone(), self.resolution_text(now, t, wall, k)))
            .collect();
        for ev in self
            .alerts
            .reconcile(now, holding, t.realert_interval, |k| {
                resolutions.get(k).cloned()
            })
        {
            out.push(Action::Alert(ev));
        }
        self.publish(now, out);
        self.schedule(now, t, out);
    }

    fn assess_fallbacks(
        &mut self,
        now: MonoTime,
        t: &Thresholds,
        wall: Option<WallTime>,
        floor: WallTime,
    ) {
        let snap = self
            .snapshot
            .as_ref()
            .filter(|(_, at)| now.since(*at) <= t.chrony_max_age)
            .map(|(s, _)| s);
        if snap.is_none() && self.in_snapshot_gap(now, t) && !self.fallback_now.is_empty() {
            // Same gap as for the primary: keep the last assessment.
            return;
        }
        let before_floor = wall.is_some_and(|w| w < floor);
        let mut now_state = Vec::with_capacity(self.fallbacks.len());
        for ((src, _), watch) in self.fallbacks.iter().zip(self.fallback_watch.iter_mut()) {
            let report = snap.and_then(|s| s.source(&src.address));
            if snap.is_some() {
                watch.watched_since.get_or_insert(now);
            } else {
                // Without chrony there is no evidence either way.
                watch.watched_since = None;
            }
            let answering = report.is_some_and(SourceReport::answering);
            if answering {
                watch.last_answering = Some(now);
            }
            let hostname_unreliable =
                before_floor && matches!(src.address, SourceAddress::Hostname(_));
            let usable_now = report.is_some_and(|r| {
                source_usable(r, snap.map(|s| s.taken_wall), floor, t) && !hostname_unreliable
            });
            if usable_now {
                watch.last_usable = Some(now);
            }
            // chrony replaces a source whose options change (noselect on or
            // off): the new one has no sample yet. One that was usable a
            // moment ago is still the same server, not a dead one.
            let just_readded = report.is_some_and(|r| r.reach == 0 && r.last_sample_ago.is_none())
                && watch
                    .last_usable
                    .is_some_and(|at| now.since(at) <= t.chrony_max_age);
            let usable = usable_now || just_readded;
            let silent_for = match (answering, watch.watched_since) {
                (false, Some(since)) => {
                    let from = watch.last_answering.map_or(since, |a| a.max(since));
                    Some(now.since(from))
                }
                _ => None,
            };
            now_state.push(FallbackAssessment {
                answering,
                usable,
                offset: report.and_then(|r| r.offset),
                silent_for,
            });
        }
        self.fallback_now = now_state;
    }

    fn assess_primary(&mut self, now: MonoTime, t: &Thresholds, floor: WallTime) {
        let health = match self.config.role {
            Role::Gps => {
                let check = self.fresh_snapshot(now, t).map(|snap| {
                    let check = trust::cross_check(self.candidates(false), snap, &[], |r| {
                        source_problem(r, Some(snap.taken_wall), floor, t)
                    });
                    // chrony measures its sources against its own clock,
                    // which is ahead of the system clock by the correction
                    // it has yet to make; the GPS offset is against the
                    // system clock.
                    let independent = check
                        .judging_median()
                        .map(|m| (m + snap.tracking.system_offset, check.counted()));
                    (check, independent)
                });
                let (check, independent) = check.unwrap_or_default();
                let correction = self
                    .fresh_snapshot(now, t)
                    .map(|s| s.tracking.system_offset);
                let verdict = self
                    .gps
                    .as_ref()
                    .map(|g| g.verdict(now, t, floor, independent, correction))
                    .unwrap_or_default();
                if verdict.healthy() {
                    self.gps_healthy_since.get_or_insert(now);
                } else {
                    self.gps_healthy_since = None;
                }
                // The independent sources get the settle time too: a GPS
                // a whole number of seconds off (18 s after a cold start)
                // must meet them before its first sample reaches chrony.
                let independents_heard = check.judging_median().is_some()
                    || self.fallbacks.is_empty()
                    || self
                        .fallback_watch
                        .iter()
                        .filter_map(|w| w.watched_since)
                        .min()
                        .is_some_and(|s| now.since(s) >= t.gps_settle);
                let settled = independents_heard
                    && self
                        .gps_healthy_since
                        .is_some_and(|s| now.since(s) >= t.gps_settle);
                let detail = match self.gps_healthy_since {
                    Some(s) if !settled && independents_heard => format!(
                        "GPS healthy for {}, trusted after {}",
                        human_duration(now.since(s)),
                        human_duration(t.gps_settle)
                    ),
                    Some(s) if !settled => format!(
                        "GPS healthy for {}, waiting for independent sources to cross-check it",
                        human_duration(now.since(s))
                    ),
                    _ => gps_detail(&verdict, self.gps.as_ref().map(|g| g.observation(now))),
                };
                let unchecked = verdict.healthy().then(|| check.too_few()).flatten();
                self.gps_verdict = verdict;
                self.cross_check = check;
                PrimaryHealth {
                    unchecked,
                    ..PrimaryHealth::new(Some(settled), detail)
                }
            }
            Role::Client => match self.fresh_snapshot(now, t) {
                // chrony replaces a source whose options change (a
                // distrusted primary made selectable again): the new one
                // has no sample yet. One healthy a moment ago is the same
                // server, not a dead one.
                Some(snap)
                    if self.primary.healthy == Some(true)
                        && self
                            .primary_last_healthy
                            .is_some_and(|at| now.since(at) <= t.chrony_max_age)
                        && self
                            .primary_flipped_at
                            .is_some_and(|at| now.since(at) <= t.chrony_max_age)
                        && self.primaries.iter().all(|p| {
                            snap.source(&p.address)
                                .is_some_and(|r| r.reach == 0 && r.last_sample_ago.is_none())
                        }) =>
                {
                    self.primary.clone()
                }
                Some(snap) => {
                    let (health, check) = judge_client_primary(
                        &self.primaries,
                        self.candidates(false),
                        snap,
                        floor,
                        t,
                    );
                    self.cross_check = check;
                    if health.healthy == Some(true) {
                        self.primary_last_healthy = Some(now);
                    }
                    health
                }
                // A snapshot dropped because the clock was just stepped is
                // a gap, not news: the last judgement stands until the next.
                None if self.in_snapshot_gap(now, t) && self.primary.healthy.is_some() => {
                    self.primary.clone()
                }
                None => PrimaryHealth::new(
                    None,
                    match &self.chrony_error {
                        Some(e) => format!("cannot judge: chrony unreachable ({e})"),
                        None => "cannot judge: no recent word from chrony".to_owned(),
                    },
                ),
            },
        };
        match (&health.unchecked, health.healthy) {
            (Some(_), Some(true)) => {
                self.unchecked_since.get_or_insert(now);
            }
            (Some(_), _) => {}
            (None, _) => self.unchecked_since = None,
        }
        match health.healthy {
            Some(true) => {
                self.primary_healthy_since.get_or_insert(now);
                self.primary_unhealthy_since = None;
                self.primary_ever_healthy = true;
            }
            Some(false) => {
                self.primary_unhealthy_since.get_or_insert(now);
                self.primary_healthy_since = None;
            }
            None => {
                // No evidence either way (chrony silent, or its figures
                // predate a clock step): timers stand, decisions wait.
            }
        }
        self.primary = health;
    }

    fn decide_engagement(&mut self, now: MonoTime, t: &Thresholds, out: &mut Vec<Action>) {
        let want = match self.mode {
            FallbackMode::Engaged => Some(true),
            FallbackMode::Released => Some(false),
            FallbackMode::Auto => None,
        };
        if let Some(want) = want {
            self.deferred = false;
            if want != self.engaged {
                // Obeyed at once, but it is churn for chrony all the same:
                // it counts against the bound for later automatic releases.
                self.budget.record(now);
                self.set_engaged(
                    now,
                    want,
                    format!("operator override: fallbacks {}", self.mode),
                    out,
                );
            }
            return;
        }
        if self.primary.healthy.is_none() {
            return;
        }
        let mut deferred = false;
        if !self.engaged {
            if let Some(why) = self.reference_lying() {
                // A reference that answers with a wrong time is not coming
                // back on its own: the grace is for a missing one.
                self.budget.record(now);
                self.set_engaged(now, true, format!("primary not trusted: {why}"), out);
            } else if let Some(since) = self.primary_unhealthy_since {
                let bad_for = now.since(since);
                // Engaging is the safety action: the change bound never
                // holds it back (releases keep room for it instead).
                if bad_for >= t.grace {
                    self.budget.record(now);
                    let reason = format!(
                        "primary unusable for {}: {}",
                        human_duration(bad_for),
                        self.primary.detail
                    );
                    self.set_engaged(now, true, reason, out);
                }
            }
        } else if let Some(since) = self.primary_healthy_since {
            let good_for = now.since(since);
            if good_for >= t.hold {
                if self.budget.may_release(now) {
                    self.budget.record(now);
                    let reason = format!(
                        "primary healthy for {} (hold {}): {}",
                        human_duration(good_for),
                        human_duration(t.hold),
                        self.primary.detail
                    );
                    self.set_engaged(now, false, reason, out);
                } else {
                    deferred = true;
                }
            }
        }
        if deferred && !self.deferred {
            let used = self.budget.used(now);
            self.record(
                now,
                DecisionKind::ReleaseDeferred,
                format!(
                    "releasing fallbacks held back: {used} of {} changes used in the last hour, and a release must leave room for the engage that may follow",
                    t.max_changes_per_hour
                ),
                out,
            );
        }
        self.deferred = deferred;
    }

    fn set_engaged(&mut self, now: MonoTime, engaged: bool, reason: String, out: &mut Vec<Action>) {
        let kind = if engaged {
            DecisionKind::EngageFallbacks
        } else {
            DecisionKind::ReleaseFallbacks
        };
        self.record(now, kind, reason.clone(), out);
        self.engaged = engaged;
        self.engage_reason = if engaged { reason } else { String::new() };
        self.persist_wanted = true;
    }

    fn drive_gate(&mut self, now: MonoTime, out: &mut Vec<Action>) {
        if self.config.role != Role::Gps {
            return;
        }
        let want = self.primary.healthy == Some(true);
        if want != self.gate_open {
            let reason = if want {
                format!("GPS trusted: {}", self.primary.detail)
            } else {
                format!("GPS not trusted: {}", self.primary.detail)
            };
            self.record(
                now,
                if want {
                    DecisionKind::GateOpen
                } else {
                    DecisionKind::GateClose
                },
                reason.clone(),
                out,
            );
            out.push(Action::SetGpsGate { open: want, reason });
            self.gate_open = want;
            self.persist_wanted = true;
        }
    }

    fn drive_plan(&mut self, now: MonoTime, t: &Thresholds, out: &mut Vec<Action>) {
        let desired = self.desired_plan();
        // Does chrony still have what we applied? (chronyd restarted with
        // another sourcedir, the file was removed, an operator edited it.)
        let mut mismatch = None;
        if let (Some((plan, applied_at)), Some(snap)) = (&self.applied, self.fresh_snapshot(now, t))
        {
            let snap_at = self.snapshot.as_ref().map_or(now, |(_, at)| *at);
            if *plan == desired && snap_at.since(*applied_at) >= RECONCILE_SETTLE {
                mismatch = plan_disagreement(plan, &snap.sources);
            }
        }
        if let Some(why) = mismatch {
            self.record(now, DecisionKind::Reapply, why, out);
            self.applied = None;
        }
        let confirmed = self.applied.as_ref().is_some_and(|(p, _)| *p == desired);
        let superseded_in_flight = self.in_flight.as_ref().is_some_and(|(p, _)| *p != desired);
        if confirmed && !superseded_in_flight {
            // chrony has what we want; an error about an older plan is moot.
            self.apply_error = None;
            return;
        }
        // Either chrony lacks the plan, or a different plan is on its way
        // and would land after the one we want: (re)send what we want.
        let due = match &self.in_flight {
            Some((p, at)) => *p != desired || now.since(*at) >= APPLY_RETRY,
            None => true,
        };
        if due {
            self.in_flight = Some((desired.clone(), now));
            out.push(Action::ApplyPlan(desired));
        }
    }

    fn trusted_reference(&self, snap: &ChronySnapshot) -> Option<String> {
        let tr = &snap.tracking;
        if !tr.synchronised() {
            return None;
        }
        match tr.ref_address {
            Some(ip) => {
                let addr = SourceAddress::Ip(ip);
                let primary = self.primaries.iter().any(|s| s.address == addr);
                let planned = primary || self.fallbacks.iter().any(|(s, _)| s.address == addr);
                // A primary that disagrees with the independent sources is
                // not trusted, whatever chrony selects.
                let distrusted = primary && (self.distrusted || self.primary.lying.is_some());
                (planned && !distrusted).then(|| ip.to_string())
            }
            None if self.config.role == Role::Gps && self.gate_open => Some(tr.ref_id_text()),
            None => None,
        }
    }

    fn drive_step(
        &mut self,
        now: MonoTime,
        t: &Thresholds,
        wall: Option<WallTime>,
        floor: WallTime,
        out: &mut Vec<Action>,
    ) {
        let Some(snap) = self.fresh_snapshot(now, t) else {
            return;
        };
        let Some(reference) = self.trusted_reference(snap) else {
            return;
        };
        // The step follows chrony's reference: never one the independent
        // sources contradict, and always saying what it relies on.
        let Some(basis) = self.step_basis(snap, &reference, floor, t) else {
            return;
        };
        let correction = snap.tracking.system_offset;
        let corrected = snap.taken_wall.offset_by(correction);
        let before_floor = wall.is_some_and(|w| w < floor);
        let needs = before_floor || correction.abs() >= t.step_threshold;
        // A trusted source must agree that the stepped clock is sane.
        let agrees = corrected >= floor;
        if !(needs && agrees) {
            return;
        }
        if self.last_step.is_some_and(|at| now.since(at) < STEP_RETRY) {
            return;
        }
        self.last_step = Some(now);
        let reason = if before_floor {
            format!(
                "clock before the time floor; {reference} says it is {correction} off (true time about {corrected}); {basis}"
            )
        } else {
            format!("chrony's remaining correction {correction} exceeds the step threshold; reference {reference}; {basis}")
        };
        self.record(now, DecisionKind::StepClock, reason.clone(), out);
        out.push(Action::StepClock { reason });
    }

    /// What a step towards chrony's `reference` relies on, in words, or
    /// `None` when the independent sources contradict the reference.
    fn step_basis(
        &self,
        snap: &ChronySnapshot,
        reference: &str,
        floor: WallTime,
        t: &Thresholds,
    ) -> Option<String> {
        let Some(ip) = snap.tracking.ref_address else {
            // The GPS: the gate is open only while its verdict is healthy,
            // which includes the cross-check.
            return Some(match self.cross_check.too_few() {
                Some(why) => format!("relies on the GPS alone: {why}"),
                None => format!(
                    "relies on the GPS, which agrees with {}",
                    self.cross_check.counted_names()
                ),
            });
        };
        let report = snap.source(&SourceAddress::Ip(ip))?;
        let check = trust::cross_check(self.candidates(true), snap, &[ip], |r| {
            source_problem(r, Some(snap.taken_wall), floor, t)
        });
        let offset = report.offset?;
        if trust::disagreement(reference, offset, &check, t.max_primary_disagreement).is_some() {
            return None;
        }
        Some(match check.judging_median() {
            Some(m) => format!(
                "relies on {reference}, which agrees with {} (median {m})",
                check.counted_names()
            ),
            None => format!(
                "relies on {reference} alone: {}",
                check.too_few().unwrap_or_default()
            ),
        })
    }

    fn track_floor(
        &mut self,
        now: MonoTime,
        t: &Thresholds,
        wall: Option<WallTime>,
        out: &mut Vec<Action>,
    ) {
        if let (Some(w), Some(snap)) = (wall, self.fresh_snapshot(now, t)) {
            let synced = self.trusted_reference(snap).is_some()
                && snap.tracking.system_offset.abs() < t.step_threshold
                && w >= self.judging_floor();
            if synced {
                self.sync_seen = Some(w);
            }
        }
        // The floor moves only when it is saved, so it is always a time the
        // disk also knows, and it lags the clock by up to the save interval.
        let sync_due = self
            .sync_seen
            .is_some_and(|s| self.floor.last_synchronised.is_none_or(|f| s > f))
            && self
                .last_persist
                .is_none_or(|at| now.since(at) >= t.floor_save_interval);
        let retry_ok = self.persist_error.is_none()
            || self
                .last_persist
                .is_none_or(|at| now.since(at) >= PERSIST_RETRY);
        if (self.persist_wanted || sync_due) && retry_ok {
            if let Some(s) = self.sync_seen {
                self.floor.raise_last_synchronised(s);
            }
            self.persist_wanted = false;
            self.last_persist = Some(now);
            out.push(Action::Persist(self.persisted_state()));
        }
    }

    /// The floor clocks and sources are judged against: a minute of margin
    /// so that a clock slewed back by milliseconds right after the floor was
    /// raised is not called insane.
    fn judging_floor(&self) -> WallTime {
        self.floor.value().minus(FLOOR_MARGIN)
    }

    /// The sources a cross-check may count: the fallbacks, and the
    /// primaries too when `with_primaries` (checking a fallback).
    fn candidates(&self, with_primaries: bool) -> Vec<Candidate<'_>> {
        let primaries = self.primaries.iter().filter(|_| with_primaries);
        primaries
            .chain(self.fallbacks.iter().map(|(s, _)| s))
            .map(|s| Candidate {
                address: &s.address,
                follows_this_host: self.followers.contains(&s.address),
            })
            .collect()
    }

    /// Why the reference must not lead the clock now although it answers:
    /// the GPS is insane, or the primary disagrees with the independent
    /// sources. Such a reference gets no grace.
    fn reference_lying(&self) -> Option<String> {
        match self.config.role {
            Role::Gps => self.gps_verdict.insanity.as_ref().map(ToString::to_string),
            Role::Client => self.primary.lying.as_ref().map(ToString::to_string),
        }
    }

    /// A primary that disagreed is kept `noselect` until it has agreed for
    /// `hold`; a decision, so not taken under a freeze.
    fn decide_distrust(&mut self, now: MonoTime, t: &Thresholds, out: &mut Vec<Action>) {
        if self.config.role != Role::Client {
            return;
        }
        if let Some(d) = &self.primary.lying {
            if !self.distrusted {
                let reason = format!("primary kept out of selection: {d}");
                self.record(now, DecisionKind::DistrustPrimary, reason, out);
                self.distrusted = true;
                self.primary_flipped_at = Some(now);
            }
        } else if self.distrusted {
            let agreed_for = self
                .primary_healthy_since
                .map_or(Duration::ZERO, |s| now.since(s));
            if agreed_for >= t.hold {
                let reason = format!(
                    "primary agrees with the independent sources again for {} (hold {}): selectable again",
                    human_duration(agreed_for),
                    human_duration(t.hold)
                );
                self.record(now, DecisionKind::TrustPrimary, reason, out);
                self.distrusted = false;
                self.primary_flipped_at = Some(now);
            }
        }
    }

    fn any_fallback_usable(&self) -> bool {
        self.fallback_now.iter().any(|f| f.usable)
    }

    fn compute_state(&self, now: MonoTime, t: &Thresholds) -> (EngineState, String) {
        if !self.chrony_heard || self.wall.is_none() {
            return (
                EngineState::Starting,
                "waiting for the first word from chrony".to_owned(),
            );
        }
        let p = &self.primary;
        let healthy = p.healthy == Some(true);
        let chrony_synced = self
            .fresh_snapshot(now, t)
            .is_some_and(|s| s.tracking.synchronised());
        match (self.engaged, healthy) {
            (false, true) => (EngineState::Primary, format!("primary {}", p.detail)),
            (true, true) => {
                let good = self
                    .primary_healthy_since
                    .map_or(Duration::ZERO, |s| now.since(s));
                (
                    EngineState::Recovering,
                    format!(
                        "primary healthy for {} of the {} hold; fallbacks still engaged",
                        human_duration(good),
                        human_duration(t.hold)
                    ),
                )
            }
            (true, false) => {
                if self.any_fallback_usable() || chrony_synced {
                    (
                        EngineState::Fallback,
                        format!("on fallbacks: {}", self.engage_reason),
                    )
                } else {
                    (
                        EngineState::NoReference,
                        format!(
                            "no usable reference: primary {}; no fallback answering",
                            p.detail
                        ),
                    )
                }
            }
            (false, false) => {
                let bad = self
                    .primary_unhealthy_since
                    .map_or(Duration::ZERO, |s| now.since(s));
                let within_grace = bad < t.grace || p.healthy.is_none();
                if within_grace && self.mode == FallbackMode::Auto {
                    let left = t.grace.saturating_sub(bad);
                    let st = if self.primary_ever_healthy {
                        EngineState::Degraded
                    } else {
                        EngineState::Acquiring
                    };
                    (
                        st,
                        format!(
                            "primary {}; fallbacks engage in {}",
                            p.detail,
                            human_duration(left)
                        ),
                    )
                } else if chrony_synced {
                    (
                        EngineState::Degraded,
                        format!("primary {}; fallbacks not engaged", p.detail),
                    )
                } else {
                    (
                        EngineState::NoReference,
                        format!("no usable reference: primary {}", p.detail),
                    )
                }
            }
        }
    }

    fn update_state(&mut self, now: MonoTime, t: &Thresholds, out: &mut Vec<Action>) {
        let (underlying, reason) = self.compute_state(now, t);
        let state = if self.freeze.is_some() {
            EngineState::Frozen
        } else {
            underlying
        };
        if state != self.state {
            let old = self.state;
            self.state = state;
            self.record(
                now,
                DecisionKind::StateChange,
                format!("{old} -> {state}: {reason}"),
                out,
            );
        }
    }

    fn holding_alerts(&self, now: MonoTime, t: &Thresholds, wall: Option<WallTime>) -> Vec<Alert> {
        let mut v = Vec::new();
        if let Some(w) = wall {
            let trusted = self.trusted_time(now, t);
            v.extend(
                self.certs
                    .alerts(now, w, trusted.as_ref(), self.config.certs.warn_before),
            );
        }
        let (floor, floor_src) = self.floor.floor();
        if let Some(w) = wall {
            if w < self.judging_floor() {
                v.push(
                    Alert::new(
                        AlertKind::ClockBeforeFloor,
                        format!(
                            "system clock {w} is {} before the time floor {floor} ({floor_src}): TLS certificates are \"not yet valid\", DNSSEC signatures fail to validate, WireGuard handshakes are refused",
                            human_duration(floor.since(w).abs())
                        ),
                    )
                    .with("clock", w)
                    .with("floor", floor)
                    .with("floor_source", floor_src),
                );
            } else if let Some(off) = self.trusted_clock_offset(now, t) {
                if off.abs() >= CLOCK_FAR_OFF {
                    v.push(
                        Alert::new(
                            AlertKind::ClockFarOff,
                            format!(
                                "system clock {w} is {} {} trusted sources: TLS certificates may be \"not yet valid\" or wrongly expired, DNSSEC and WireGuard fail",
                                human_duration(off.abs()),
                                if off > Offset::ZERO { "behind" } else { "ahead of" }
                            ),
                        )
                        .with("clock", w)
                        .with("offset", off),
                    );
                }
            }
        }
        if let Some(ins) = &self.gps_verdict.insanity {
            let mut a = Alert::new(
                AlertKind::GpsInsane,
                format!(
                    "GPS is confidently wrong: {ins}; {}",
                    if self.gate_open {
                        "the gate to chrony is held OPEN by the operator's freeze"
                    } else {
                        "gate to chrony closed"
                    }
                ),
            )
            .with("floor", floor);
            if let Some(off) = self
                .gps
                .as_ref()
                .and_then(|g| g.observation(now).gps_offset)
            {
                a = a.with("gps_offset", off);
            }
            v.push(a);
        }
        if let Some(d) = &self.primary.lying {
            v.push(
                Alert::new(
                    AlertKind::PrimaryDisagrees,
                    format!(
                        "{d}; kept out of selection, fallbacks {}",
                        if self.engaged {
                            "engaged"
                        } else {
                            "not engaged (frozen or forced)"
                        }
                    ),
                )
                .about(d.reference.clone())
                .with("primary_offset", d.reference_offset)
                .with("independent_offset", d.independent_offset)
                .with(
                    "sources",
                    d.sources
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            );
        }
        if let (Some(why), Some(since)) = (&self.primary.unchecked, self.unchecked_since) {
            if now.since(since) >= t.fallback_unreachable_after {
                let what = match self.config.role {
                    Role::Gps => "the GPS",
                    Role::Client => "the primary",
                };
                v.push(
                    Alert::new(
                        AlertKind::CrossCheckUnavailable,
                        format!(
                            "{what} is in use but cannot be cross-checked for {}: {why}; a wrong time it serves would not be caught",
                            human_duration(now.since(since))
                        ),
                    )
                    .with("independent", self.cross_check.counted()),
                );
            }
        }
        // Not while acquiring: right after a start chrony has not polled
        // the primary yet; the state says so, and the grace decides.
        if !matches!(self.state, EngineState::Starting | EngineState::Acquiring)
            && self.primary.healthy == Some(false)
            && self.primary.lying.is_none()
            && self.gps_verdict.insanity.is_none()
            && (self.config.role == Role::Client || !self.gps_verdict.healthy())
        {
            v.push(
                Alert::new(
                    AlertKind::PrimaryUnusable,
                    format!("primary reference unusable: {}", self.primary.detail),
                )
                .with("state", self.state),
            );
        }
        if self.engaged {
            v.push(
                Alert::new(
                    AlertKind::FallbackEngaged,
                    format!("fallbacks engaged: {}", self.engage_reason),
                )
                .with("mode", self.mode),
            );
        }
        if self.state == EngineState::NoReference
            || (self.state == EngineState::Frozen
                && self.compute_state(now, t).0 == EngineState::NoReference)
        {
            v.push(Alert::new(
                AlertKind::NoUsableReference,
                format!(
                    "no usable time reference, the clock is free-running: primary {}",
                    self.primary.detail
                ),
            ));
        }
        for ((src, tier), fb) in self.fallbacks.iter().zip(&self.fallback_now) {
            if let Some(silent) = fb.silent_for {
                if silent >= t.fallback_unreachable_after {
                    v.push(
                        Alert::new(
                            AlertKind::FallbackUnreachable,
                            format!(
                                "fallback {} ({tier}) has not answered for {}: the disaster configuration is broken (renumbered? firewalled?)",
                                src.address,
                                human_duration(silent)
                            ),
                        )
                        .about(src.address.to_string())
                        .with("source", &src.address),
                    );
                }
            }
        }
        if let Some(e) = &self.chrony_error {
            v.push(Alert::new(
                AlertKind::ChronyUnreachable,
                format!("chrony's command socket does not answer: {e}"),
            ));
        }
        if let Some(e) = &self.apply_error {
            v.push(Alert::new(
                AlertKind::PlanNotApplied,
                format!("could not bring chrony's sources in line with the plan: {e}"),
            ));
        }
        if let Some(e) = &self.persist_error {
            v.push(Alert::new(
                AlertKind::StateNotSaved,
                format!("gnomon's state could not be saved: {e}"),
            ));
        }
        if let Some(f) = &self.freeze {
            let mut a = Alert::new(
                AlertKind::Frozen,
                format!(
                    "automation frozen by operator: {}; gnomon observes and alerts but does not touch chrony",
                    f.reason
                ),
            );
            if let Some(since) = f.since {
                a = a.with("since", since);
            }
            v.push(a);
        }
        if self.deferred {
            v.push(Alert::new(
                AlertKind::ChangeBudgetExhausted,
                format!(
                    "releasing fallbacks is held back by the bound of {} changes per hour; the primary is healthy but chrony stays on fallbacks for now",
                    t.max_changes_per_hour
                ),
            ));
        }
        v
    }

    /// What is true now of an alert's subject that no longer holds: the
    /// words of its resolution.
    fn resolution_text(
        &self,
        now: MonoTime,
        t: &Thresholds,
        wall: Option<WallTime>,
        key: &AlertKey,
    ) -> String {
        let subject = key.subject.as_deref().unwrap_or("");
        match key.kind {
            AlertKind::NoUsableReference => {
                format!("a usable reference again: {}", self.compute_state(now, t).1)
            }
            AlertKind::ClockBeforeFloor => match wall {
                Some(w) => format!(
                    "system clock {w} is after the time floor {} again",
                    self.floor.value()
                ),
                None => "the system clock is not read yet".to_owned(),
            },
            AlertKind::ClockFarOff => match self.trusted_clock_offset(now, t) {
                Some(off) => format!(
                    "system clock within {} of its trusted sources again (offset {off})",
                    human_duration(CLOCK_FAR_OFF)
                ),
                None => "no trusted source measures the clock now".to_owned(),
            },
            AlertKind::GpsInsane => {
                format!("GPS time no longer contradicted: {}", self.primary.detail)
            }
            AlertKind::PrimaryUnusable => format!("primary: {}", self.primary.detail),
            AlertKind::PrimaryDisagrees => match self.cross_check.judging_median() {
                Some(m) => format!(
                    "{subject} no longer disagrees with the independent sources (median {m}): {}",
                    self.primary.detail
                ),
                None => format!(
                    "{subject} can no longer be judged against the independent sources: {}",
                    self.cross_check.too_few().unwrap_or_default()
                ),
            },
            AlertKind::CrossCheckUnavailable => match self.cross_check.too_few() {
                None => format!(
                    "{} independent sources answer again ({})",
                    self.cross_check.counted(),
                    self.cross_check.counted_names()
                ),
                Some(_) => format!("the reference is no longer in use: {}", self.primary.detail),
            },
            AlertKind::FallbackEngaged => format!(
                "fallbacks back on standby (noselect): {}",
                self.primary.detail
            ),
            AlertKind::FallbackUnreachable => {
                let now_state = self
                    .fallbacks
                    .iter()
                    .zip(&self.fallback_now)
                    .find(|((s, _), _)| s.address.to_string() == subject);
                match now_state {
                    Some((_, a)) if a.answering => match a.offset {
                        Some(off) => format!("fallback {subject} answers again (offset {off})"),
                        None => format!("fallback {subject} answers again"),
                    },
                    Some(_) => {
                        format!("fallback {subject} is not watched now (no word from chrony)")
                    }
                    None => format!("fallback {subject} is no longer configured"),
                }
            }
            AlertKind::ChronyUnreachable => "chrony's command socket answers again".to_owned(),
            AlertKind::PlanNotApplied => "chrony has gnomon's sources as planned".to_owned(),
            AlertKind::StateNotSaved => "gnomon's state is saved again".to_owned(),
            AlertKind::Frozen => "thawed: gnomon decides again".to_owned(),
            AlertKind::ChangeBudgetExhausted => {
                "the change bound no longer holds a release back".to_owned()
            }
            AlertKind::CertificateNotYetValid
            | AlertKind::CertificateExpired
            | AlertKind::CertificateExpiring
            | AlertKind::CertificateUnreadable
            | AlertKind::CertificateRenewed => {
                let state = wall.and_then(|w| {
                    let trusted = self.trusted_time(now, t);
                    self.certs
                        .statuses(w, trusted.as_ref(), self.config.certs.warn_before)
                        .into_iter()
                        .find(|c| c.path == subject)
                        .map(|c| c.state)
                });
                match state {
                    Some(st) => format!("certificate {subject} is {}", st.name()),
                    None => format!("certificate {subject} is no longer watched"),
                }
            }
        }
    }

    /// The best estimate of true time gnomon has, as a correction to the
    /// system clock: the GPS while its verdict is healthy, chrony while it
    /// is synchronised, the median of the answering NTP sources, and, when
    /// the clock is before the time floor, the floor as a lower bound.
    pub fn trusted_time(&self, now: MonoTime, t: &Thresholds) -> Option<crate::certs::TrustedTime> {
        use crate::certs::TrustedTime;
        let wall = self.wall_now(now)?;
        if let Some(g) = &self.gps {
            if self.gps_verdict.healthy() {
                if let Some(offset) = g.observation(now).gps_offset {
                    return Some(TrustedTime {
                        offset,
                        basis: "GPS".to_owned(),
                        lower_bound: false,
                    });
                }
            }
        }
        if let Some(s) = self.fresh_snapshot(now, t) {
            if s.tracking.synchronised() {
                let reference = match s.tracking.ref_address {
                    Some(ip) => ip.to_string(),
                    None => s.tracking.ref_id_text(),
                };
                return Some(TrustedTime {
                    offset: s.tracking.system_offset,
                    basis: format!("chrony, synchronised to {reference}"),
                    lower_bound: false,
                });
            }
        }
        let measuring = self.measuring_sources(now, t);
        if let Some(offset) = median(measuring.iter().map(|(_, o)| *o).collect()) {
            let names: Vec<String> = measuring.iter().map(|(a, _)| a.to_string()).collect();
            let basis = match names.as_slice() {
                [one] => format!("NTP source {one}"),
                many => format!("NTP sources {} (median)", many.join(", ")),
            };
            return Some(TrustedTime {
                offset,
                basis,
                lower_bound: false,
            });
        }
        let (floor, source) = self.floor.floor();
        (wall < floor).then(|| TrustedTime {
            offset: floor.since(wall),
            basis: format!("time floor, {source}"),
            lower_bound: true,
        })
    }

    /// What trusted sources say of the system clock now or, while they are
    /// silent (chrony re-adds a source when its options change, and its
    /// reachability starts again), what they said within `chrony-max-age`:
    /// an alert on it does not resolve and reopen at each plan change.
    fn trusted_clock_offset(&self, now: MonoTime, t: &Thresholds) -> Option<Offset> {
        self.measured_clock_offset(now, t).or_else(|| {
            self.clock_offset_seen
                .filter(|(at, _)| now.since(*at) <= t.chrony_max_age)
                .map(|(_, off)| off)
        })
    }

    /// The clock's offset as measured by trusted sources (the median of
    /// answering planned sources), when chrony has such measurements.
    fn measured_clock_offset(&self, now: MonoTime, t: &Thresholds) -> Option<Offset> {
        median(
            self.measuring_sources(now, t)
                .into_iter()
                .map(|(_, o)| o)
                .collect(),
        )
    }

    /// The planned sources chrony measures the clock against, with what
    /// each says of it (source − system); a primary that disagrees with the
    /// independent sources is no evidence.
    fn measuring_sources(&self, now: MonoTime, t: &Thresholds) -> Vec<(&SourceAddress, Offset)> {
        let Some(snap) = self.fresh_snapshot(now, t) else {
            return Vec::new();
        };
        let primary_trusted = !self.distrusted && self.primary.lying.is_none();
        self.primaries
            .iter()
            .filter(|_| primary_trusted)
            .chain(self.fallbacks.iter().map(|(s, _)| s))
            .filter_map(|s| snap.source(&s.address).map(|r| (&s.address, r)))
            .filter(|(_, r)| {
                r.answering() && r.state != SelectionState::Falseticker && r.stratum < 16
            })
            .filter_map(|(a, r)| r.offset.map(|o| (a, o)))
            .collect()
    }

    /// The full status snapshot, for `gnomonctl status`.
    pub fn status(&self, now: MonoTime) -> Status {
        let t = &self.config.thresholds;
        let (underlying, reason) = self.compute_state(now, t);
        let reason = match &self.freeze {
            Some(f) => format!(
                "frozen by operator: {} (would be {underlying}: {reason})",
                f.reason
            ),
            None => reason,
        };
        let (floor, floor_source) = self.floor.floor();
        let wall = self.wall_now(now);
        let snap = self.fresh_snapshot(now, t);
        let for_ = self
            .primary_healthy_since
            .or(self.primary_unhealthy_since)
            .map(|s| now.since(s));
        Status {
            role: self.config.role,
            state: self.state,
            underlying_state: underlying,
            reason,
            frozen: self.freeze.clone(),
            fallback_mode: self.mode,
            fallbacks_engaged: self.engaged,
            primary: PrimaryStatus {
                healthy: self.primary.healthy,
                detail: self.primary.detail.clone(),
                for_,
                distrusted: self.distrusted,
                unchecked: self.primary.unchecked.clone(),
            },
            gps: self.gps.as_ref().map(|g| GpsStatus {
                verdict: self.gps_verdict.clone(),
                observation: g.observation(now),
                gate_open: self.gate_open,
                gate_wanted: self.primary.healthy == Some(true),
            }),
            clock: ClockStatus {
                wall,
                floor,
                floor_source,
                before_floor: wall.is_some_and(|w| w < self.judging_floor()),
            },
            chrony: ChronyStatus {
                reachable: self.chrony_error.is_none() && snap.is_some(),
                error: self.chrony_error.clone(),
                synchronised: snap.is_some_and(|s| s.tracking.synchronised()),
                reference: snap.and_then(|s| {
                    s.tracking
                        .synchronised()
                        .then(|| match s.tracking.ref_address {
                            Some(ip) => ip.to_string(),
                            None => s.tracking.ref_id_text(),
                        })
                }),
                system_offset: snap.map(|s| s.tracking.system_offset),
                plan_applied: self
                    .applied
                    .as_ref()
                    .is_some_and(|(p, _)| *p == self.desired_plan()),
            },
            fallbacks: self
                .fallbacks
                .iter()
                .zip(&self.fallback_now)
                .map(|((s, tier), a)| FallbackStatus {
                    address: s.address.clone(),
                    tier: *tier,
                    selectable: self.engaged,
                    answering: a.answering,
                    usable: a.usable,
                    offset: a.offset,
                    silent_for: a.silent_for,
                })
                .collect(),
            cross_check: self.cross_check.clone(),
            changes_last_hour: self.budget.clone().used(now),
            max_changes_per_hour: t.max_changes_per_hour,
            alerts: self.alerts.active().cloned().collect(),
            certs: wall.map_or_else(Vec::new, |w| {
                self.certs.statuses(
                    w,
                    self.trusted_time(now, t).as_ref(),
                    self.config.certs.warn_before,
                )
            }),
            trusted_time: self.trusted_time(now, t),
        }
    }

    fn publish(&mut self, now: MonoTime, out: &mut Vec<Action>) {
        // Publish on what an operator would call a change, not on every
        // new offset figure.
        let alerts: Vec<String> = self
            .alerts
            .active()
            .map(|a| format!("{}:{}", a.kind, a.subject.as_deref().unwrap_or("")))
            .collect();
        let headline = format!(
            "{}|{}|{}|{}|{:?}|{}|{}",
            self.state,
            self.distrusted,
            self.engaged,
            self.gate_open,
            self.primary.healthy,
            self.fallback_now.iter().filter(|f| f.answering).count(),
            alerts.join(",")
        );
        if self.last_headline.as_deref() != Some(headline.as_str()) {
            self.last_headline = Some(headline);
            out.push(Action::Publish(Box::new(self.status(now))));
        }
    }

    fn schedule(&mut self, now: MonoTime, t: &Thresholds, out: &mut Vec<Action>) {
        let mut next: Vec<MonoTime> = Vec::new();
        if self.freeze.is_none() && self.mode == FallbackMode::Auto {
            if let (false, Some(s)) = (self.engaged, self.primary_unhealthy_since) {
                next.push(s.plus(t.grace));
            }
            if let (true, Some(s)) = (self.engaged, self.primary_healthy_since) {
                next.push(s.plus(t.hold));
            }
            if self.deferred {
                next.extend(self.budget.next_expiry());
            }
        }
        if let Some(s) = self.gps_healthy_since {
            next.push(s.plus(t.gps_settle));
        }
        if let Some(g) = &self.gps {
            next.extend(g.jump_expiry(t.hold));
        }
        next.extend(self.alerts.next_repeat(t.realert_interval));
        if let Some(since) = self.unchecked_since {
            next.push(since.plus(t.fallback_unreachable_after));
        }
        for fb in &self.fallback_now {
            if let Some(silent) = fb.silent_for {
                if silent < t.fallback_unreachable_after {
                    next.push(now.plus(t.fallback_unreachable_after - silent));
                }
            }
        }
        if self.in_flight.is_some() || self.apply_error.is_some() {
            next.push(now.plus(APPLY_RETRY));
        }
        let next = next.into_iter().filter(|at| *at > now).min();
        if let Some(at) = next {
            if self.last_wake != Some(at) {
                self.last_wake = Some(at);
                out.push(Action::WakeAt(at));
            }
        }
    }
}

/// What chrony is left with while gnomond is not running: every
/// configured source selectable, as when the fallbacks are engaged, so that
/// chrony keeps a usable source whatever fails while nobody watches
/// (`gnomond --fail-safe`, run by systemd whenever gnomond stops).
pub fn failsafe_plan(config: &Config) -> SourcePlan {
    plan_of(
        &configured_primaries(config),
        &configured_fallbacks(config),
        true,
        true,
    )
}

fn plan_of(
    primaries: &[NtpSource],
    fallbacks: &[(NtpSource, FallbackTier)],
    engaged: bool,
    primaries_selectable: bool,
) -> SourcePlan {
    let mut sources: Vec<PlannedSource> = primaries
        .iter()
        .map(|s| PlannedSource {
            source: s.clone(),
            role: SourceRole::Primary,
            selectable: primaries_selectable,
        })
        .collect();
    sources.extend(fallbacks.iter().map(|(s, tier)| PlannedSource {
        source: s.clone(),
        role: SourceRole::Fallback(*tier),
        selectable: engaged,
    }));
    SourcePlan { sources }
}

fn configured_primaries(c: &Config) -> Vec<NtpSource> {
    c.primary
        .servers
        .iter()
        .map(|s| ntp_source(s, AssociationKind::Server))
        .collect()
}

/// LAN peers first, then the IP-literal public servers.
fn configured_fallbacks(c: &Config) -> Vec<(NtpSource, FallbackTier)> {
    c.fallback
        .peers
        .iter()
        .map(|s| (ntp_source(s, AssociationKind::Peer), FallbackTier::LanPeer))
        .chain(c.fallback.servers.iter().map(|s| {
            (
                ntp_source(s, AssociationKind::Server),
                FallbackTier::PublicIpLiteral,
            )
        }))
        .collect()
}

fn ntp_source(s: &NtpServerConfig, kind: AssociationKind) -> NtpSource {
    NtpSource {
        address: SourceAddress::parse(&s.address),
        kind,
        port: s.port,
        minpoll: s.minpoll,
        maxpoll: s.maxpoll,
        key: s.key,
        // chrony accepts iburst only on server lines.
        iburst: s.iburst && kind == AssociationKind::Server,
    }
}

/// Whether a measured source could be used as a reference: answering,
/// not rejected by chrony, synchronised itself, within the distance bound,
/// and not telling a time before the floor.
fn source_usable(
    r: &SourceReport,
    taken: Option<WallTime>,
    floor: WallTime,
    t: &Thresholds,
) -> bool {
    source_problem(r, taken, floor, t).is_none()
}

fn source_problem(
    r: &SourceReport,
    taken: Option<WallTime>,
    floor: WallTime,
    t: &Thresholds,
) -> Option<String> {
    if !r.answering() {
        return Some(format!("not answering (reach {:03o})", r.reach));
    }
    if r.stratum >= 16 {
        return Some("unsynchronised (stratum 16)".to_owned());
    }
    match r.state {
        SelectionState::Falseticker => return Some("a falseticker to chrony".to_owned()),
        SelectionState::Jittery => return Some("too variable for chrony".to_owned()),
        _ => {}
    }
    let Some(off) = r.offset else {
        return Some("no sample yet".to_owned());
    };
    if r.error > t.max_distance {
        return Some(format!(
            "error bound {} above {}",
            human_duration(r.error),
            human_duration(t.max_distance)
        ));
    }
    if let Some(taken) = taken {
        let its_time = taken.offset_by(off);
        if its_time < floor {
            return Some(format!("its time {its_time} is before the time floor"));
        }
    }
    None
}

/// Judges a client's primaries: the first that answers well and agrees
/// with the independent fallbacks is healthy. Returns the cross-check too.
fn judge_client_primary<'a>(
    primaries: &[NtpSource],
    candidates: impl IntoIterator<Item = Candidate<'a>>,
    snap: &ChronySnapshot,
    floor: WallTime,
    t: &Thresholds,
) -> (PrimaryHealth, CrossCheck) {
    // The primaries' addresses as chrony has them (a hostname resolved):
    // a fallback that takes its time from one of them is not independent.
    let under_check: Vec<std::net::IpAddr> = primaries
        .iter()
        .filter_map(|p| snap.source(&p.address))
        .filter_map(|r| match r.id {
            ChronySourceId::Address(ip) => Some(ip),
            ChronySourceId::Refclock(_) => None,
        })
        .collect();
    let check = trust::cross_check(candidates, snap, &under_check, |r| {
        source_problem(r, Some(snap.taken_wall), floor, t)
    });
    let mut problems = Vec::new();
    let mut lying = None;
    for p in primaries {
        let Some(r) = snap.source(&p.address) else {
            problems.push(format!("{}: not in chrony's sources", p.address));
            continue;
        };
        let problem = source_problem(r, Some(snap.taken_wall), floor, t).or_else(|| {
            if r.stratum > t.max_primary_stratum {
                Some(format!(
                    "stratum {} above {}",
                    r.stratum, t.max_primary_stratum
                ))
            } else if r.state == SelectionState::Unusable && r.noselect != Some(true) {
                // `noselect` (gnomon keeps a distrusted primary so) is
                // reported as unusable however well it answers.
                Some("unusable to chrony".to_owned())
            } else {
                None
            }
        });
        let offset = r.offset.unwrap_or_default();
        if problem.is_none() {
            let name = p.address.to_string();
            if let Some(d) = trust::disagreement(&name, offset, &check, t.max_primary_disagreement)
            {
                problems.push(d.to_string());
                lying.get_or_insert(d);
                continue;
            }
        }
        match problem {
            Some(why) => problems.push(format!("{}: {why}", p.address)),
            None => {
                let detail = format!(
                    "{} healthy: stratum {}, offset {}{}{}",
                    p.address,
                    r.stratum,
                    offset,
                    if r.state == SelectionState::Selected {
                        ", selected"
                    } else {
                        ""
                    },
                    match check.judging_median() {
                        Some(m) => format!(
                            ", agrees with {} independent sources (median {m})",
                            check.counted()
                        ),
                        None => String::new(),
                    }
                );
                let health = PrimaryHealth {
                    unchecked: check.too_few(),
                    ..PrimaryHealth::new(Some(true), detail)
                };
                return (health, check);
            }
        }
    }
    let detail = if problems.is_empty() {
        "no primary server configured".to_owned()
    } else {
        problems.join("; ")
    };
    let health = PrimaryHealth {
        lying,
        ..PrimaryHealth::new(Some(false), detail)
    };
    (health, check)
}

fn gps_detail(verdict: &GpsVerdict, obs: Option<GpsObservation>) -> String {
    if !verdict.healthy() {
        return verdict.describe();
    }
    let Some(obs) = obs else {
        return verdict.describe();
    };
    let mut s = String::from("GPS healthy");
    if let Some(e) = &obs.last_epoch {
        s.push_str(&format!(", {} fix", e.fix));
        if let Some(n) = e.sats_used {
            s.push_str(&format!(", {n} satellites"));
        }
    }
    if obs.offset_from_pps {
        s.push_str(", PPS aligned");
    }
    s
}

fn median(v: Vec<Offset>) -> Option<Offset> {
    trust::median(v)
}
