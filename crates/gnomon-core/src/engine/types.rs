//! The engine's vocabulary: what comes in, what goes out, what it
//! remembers across restarts, and the states it reports.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    alert::AlertEvent,
    chrony::ChronySnapshot,
    engine::status::Status,
    gps::{GpsEpoch, PpsEdge},
    source::SourcePlan,
    time::{MonoTime, WallTime},
};

/// Something the engine learns. Every input comes with the monotonic time
/// it is handled at, given to [`crate::engine::Engine::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Periodic tick carrying a reading of the system wall clock.
    Tick { wall: WallTime },
    /// One second of receiver output (role `gps`).
    GpsEpoch(GpsEpoch),
    /// One PPS edge (role `gps`).
    PpsEdge(PpsEdge),
    /// A fresh read of chrony's tracking and sources.
    Chrony(ChronySnapshot),
    /// chrony's command socket did not answer; the words say why.
    ChronyUnreachable { error: String },
    /// Outcome of an [`Action::ApplyPlan`].
    PlanApplied {
        plan: SourcePlan,
        outcome: Result<(), String>,
    },
    /// Outcome of an [`Action::Persist`].
    StateSaved { outcome: Result<(), String> },
    /// An operator's command from gnomonctl.
    Command(OperatorCommand),
    /// A fresh read of the `[certs]` files.
    Certificates(Vec<crate::certs::CertObservation>),
}

/// What an operator can tell the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub enum OperatorCommand {
    /// Stop touching chrony; keep observing and alerting.
    Freeze {
        reason: String,
    },
    Thaw,
    /// Override (or give back) the fallback decision.
    Fallback {
        mode: FallbackMode,
    },
    /// Re-apply the plan now and re-evaluate everything.
    Reassess,
}

/// Who decides whether fallbacks are selectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackMode {
    /// The engine decides (grace, hold, change bound).
    #[default]
    Auto,
    /// The operator forced fallbacks selectable.
    Engaged,
    /// The operator forced fallbacks to `noselect`.
    Released,
}

impl fmt::Display for FallbackMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FallbackMode::Auto => "auto",
            FallbackMode::Engaged => "forced engaged",
            FallbackMode::Released => "forced released",
        })
    }
}

/// Something the IO layer must do. The engine never does IO itself.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make chrony's gnomon sources file say this, then `reload sources`;
    /// report back with [`Input::PlanApplied`].
    ApplyPlan(SourcePlan),
    /// Ask chrony to step the clock now (`makestep`).
    StepClock { reason: String },
    /// Open (feed NMEA samples to chrony's SOCK refclock) or close the GPS gate.
    SetGpsGate { open: bool, reason: String },
    /// Log this alert event.
    Alert(AlertEvent),
    /// Write this state atomically; report back with [`Input::StateSaved`].
    Persist(PersistedState),
    /// Append this decision to the history.
    Record(Decision),
    /// The status headline changed: update STATUS= and anything watching.
    Publish(Box<Status>),
    /// Hand the engine a tick no later than this.
    WakeAt(MonoTime),
}

/// The operator's freeze, with why and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeRecord {
    pub reason: String,
    /// System clock when the freeze was asked for, if known.
    pub since: Option<WallTime>,
}

/// What survives a daemon restart. Missing fields in an older file take
/// their defaults, so the format can grow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PersistedState {
    /// The last time gnomon saw chrony synchronised to a trusted source:
    /// part of the time floor.
    pub last_synchronised: Option<WallTime>,
    pub freeze: Option<FreezeRecord>,
    pub fallback_mode: FallbackMode,
    /// Whether fallbacks were engaged, so that a restart during an outage
    /// does not drop working sources for a grace period.
    pub fallbacks_engaged: bool,
    /// Whether the GPS gate was open, so that a daemon restarted under a
    /// freeze keeps feeding chrony as before instead of silently closing.
    pub gate_open: bool,
}

/// The engine's state as reported to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineState {
    /// No full assessment yet (no word from chrony).
    Starting,
    /// The primary has not been healthy yet since start; within grace.
    Acquiring,
    /// The primary is healthy and in use; fallbacks stand by as `noselect`.
    Primary,
    /// The primary failed; within grace, fallbacks not yet engaged.
    Degraded,
    /// Fallbacks are engaged and usable.
    Fallback,
    /// Fallbacks are engaged and the primary is healthy again: holding.
    Recovering,
    /// Nothing usable: the clock is free-running.
    NoReference,
    /// The operator froze the automation.
    Frozen,
}

impl EngineState {
    pub const fn name(self) -> &'static str {
        match self {
            EngineState::Starting => "starting",
            EngineState::Acquiring => "acquiring",
            EngineState::Primary => "primary",
            EngineState::Degraded => "degraded",
            EngineState::Fallback => "fallback",
            EngineState::Recovering => "recovering",
            EngineState::NoReference => "no-reference",
            EngineState::Frozen => "frozen",
        }
    }
}

impl fmt::Display for EngineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of decision a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// The engine's state changed.
    StateChange,
    /// Fallbacks made selectable.
    EngageFallbacks,
    /// Fallbacks back to `noselect`.
    ReleaseFallbacks,
    /// A release was due but held back by the change bound.
    ReleaseDeferred,
    GateOpen,
    GateClose,
    StepClock,
    Freeze,
    Thaw,
    FallbackOverride,
    /// chrony's sources disagree with the plan: applying again.
    Reapply,
    /// The primary disagrees with the independent sources: `noselect`.
    DistrustPrimary,
    /// The primary has agreed again for `hold`: selectable again.
    TrustPrimary,
}

impl DecisionKind {
    /// The kebab-case name, as in JSON, `gnomonctl history` and the
    /// journal's GNOMON_DECISION field.
    pub const fn name(self) -> &'static str {
        match self {
            DecisionKind::StateChange => "state-change",
            DecisionKind::EngageFallbacks => "engage-fallbacks",
            DecisionKind::ReleaseFallbacks => "release-fallbacks",
            DecisionKind::ReleaseDeferred => "release-deferred",
            DecisionKind::GateOpen => "gate-open",
            DecisionKind::GateClose => "gate-close",
            DecisionKind::StepClock => "step-clock",
            DecisionKind::Freeze => "freeze",
            DecisionKind::Thaw => "thaw",
            DecisionKind::FallbackOverride => "fallback-override",
            DecisionKind::Reapply => "reapply",
            DecisionKind::DistrustPrimary => "distrust-primary",
            DecisionKind::TrustPrimary => "trust-primary",
        }
    }
}

/// One entry of the decision history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at: MonoTime,
    /// System clock at the last tick, when known.
    pub wall: Option<WallTime>,
    pub kind: DecisionKind,
    pub state: EngineState,
    /// In words, for `gnomonctl history`.
    pub reason: String,
}
