//! Property tests that drive gnomon's decision engine directly (not through
//! the lab's simulator) with long random input sequences, for both roles
//! (srv1's `client` configuration and gps1's `gps` configuration from
//! `gnomon_lab::scenarios`), and check the promises the engine makes:
//!
//! 1. `never_drops_the_primary`: every plan keeps each primary selectable.
//! 2. `engaged_when_needed`: a primary down for longer than grace (with
//!    chrony answering and a fallback up) gets the fallbacks engaged.
//! 3. `change_bound`: at most `max_changes_per_hour` automatic engage or
//!    release decisions in any hour without operator overrides, and every
//!    automatic release leaves room for the engage that may follow.
//! 4. `freeze_means_hands_off`: while frozen, no plan, no step, no gate.
//! 5. `released_only_after_hold`: no release before the primary has been
//!    seen healthy for `hold`; `no_release_on_stale_evidence`: none while
//!    it is down on a chrony snapshot older than `chrony-max-age`.
//! 6. `no_panic_and_consistent`: garbage in never panics, and the status,
//!    the persisted state and every record always serialize.
//! 7. `gate_closed_on_insane_gps`: a GPS date before the time floor (a
//!    week-number rollover) closes the gate to chrony at once (unless
//!    frozen: property 4 wins).
//!
//! Each property runs 256 cases of 50 to 400 steps (at most 3 simulated
//! hours), half of them with shorter thresholds than the shipped ones so
//! that the bound and the hold are reached often. Every property was
//! checked to fail against a deliberately broken engine (comments say
//! which breakage each one guards against). The `regression_*` tests at the
//! end replay, as short fixed sequences, the engine bugs these properties
//! found (all fixed).
//!
//! The harness keeps a ground truth (primary up or down, each fallback up or
//! down, the GPS healthy or broken in one of several ways, chrony answering
//! or not, the system clock's error) that the generated steps change now and
//! then. It renders that truth the way chrony and the GPS hat would: a PPS
//! edge at every true whole second and its epoch 300 ms later, a chrony
//! snapshot every poll (paused during long stalls), plus each step's own
//! input (a tick, an extra snapshot, a plan or state-save answer, an
//! operator command, a clock jump). It also plays chrony: the plan the
//! engine had acknowledged decides which fallbacks chrony may select, a
//! `StepClock` puts the clock right, `SetGpsGate` lets the refclock through.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{net::IpAddr, time::Duration};

use gnomon_core::{
    chrony::{
        ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        Tracking,
    },
    engine::{
        Action, Decision, DecisionKind, Engine, EngineState, FallbackMode, Input, OperatorCommand,
        PersistedState, FLOOR_MARGIN,
    },
    gps::{FixMode, GpsEpoch, PpsEdge},
    source::{AssociationKind, SourceAddress, SourcePlan, SourceRole},
    time::{MonoTime, Offset, TimeFloor, WallTime, GPS_ROLLOVER},
};
use gnomon_lab::scenarios::{
    boot_1970_error, build_time, client_config, gps_config, ip, scenario_start, GPS1, PUB, SRV2,
};
use proptest::{prelude::*, test_runner::TestCaseError};

// ---------------------------------------------------------------------------
// What a test case is made of
// ---------------------------------------------------------------------------

/// A structured case never simulates more than this.
const MAX_SIM: Duration = Duration::from_secs(3 * 3600);
/// A step longer than this is a stall: the chrony poller is paused.
const STALL: Duration = Duration::from_secs(10);
/// How soon, and how recently, chrony must have shown an outage (property 2).
const DENSE: Duration = Duration::from_secs(5);
/// Where the monotonic clock stands when the engine starts.
const MONO0: Duration = Duration::from_secs(20);
/// An epoch arrives this long after its pulse.
const SENTENCE_DELAY: Duration = Duration::from_millis(300);
/// chrony's refid for the NMEA refclock ("NMEA").
const NMEA_REFID: u32 = 0x4E4D_4541;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Client,
    Gps,
}

/// Shorter thresholds than the shipped ones, so that a case of a few
/// minutes goes through several engage/release cycles and hits the bound.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    grace_s: u64,
    hold_s: u64,
    max_changes: u32,
}

/// What the GPS hat is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GpsTruth {
    /// PPS every second, a 3D fix 300 ms after it with the right date.
    Healthy,
    /// PPS, and sentences saying there is no fix.
    NoFix,
    /// PPS but no sentences.
    NoNmea,
    /// PPS and a good-looking fix exactly 1024 weeks in the past.
    Rollover,
    /// Nothing at all.
    Silent,
}

impl GpsTruth {
    fn pulses(self) -> bool {
        self != GpsTruth::Silent
    }

    fn sentences(self) -> bool {
        matches!(
            self,
            GpsTruth::Healthy | GpsTruth::NoFix | GpsTruth::Rollover
        )
    }
}

/// A change of the ground truth, applied at the start of a step.
#[derive(Debug, Clone)]
enum TruthChange {
    /// The client's primary server (gps1) goes up or down.
    Primary(bool),
    /// The gps host's receiver changes behaviour.
    Gps(GpsTruth),
    /// Fallback number `.0` (in plan order) goes up or down.
    Fallback(usize, bool),
    /// chrony's socket refuses for a while: every poll is an error.
    ChronyOutage { secs: u64 },
    /// The chrony poll hangs for a while: no snapshot and no error either.
    ChronyHang { secs: u64 },
}

/// What a step hands the engine after the time advance.
#[derive(Debug, Clone)]
enum Event {
    Tick,
    /// An extra chrony snapshot (or the error, during an outage).
    Chrony,
    ChronyUnreachable,
    /// Answer the last `ApplyPlan` the engine emitted.
    PlanFeedback {
        ok: bool,
    },
    StateSaved {
        ok: bool,
    },
    /// Someone moves the system clock by this much; then a tick.
    ClockJump {
        ms: i64,
    },
    Command(OperatorCommand),
    /// Any input at all (property 6 only).
    Garbage(Box<Input>),
}

#[derive(Debug, Clone)]
struct Step {
    dt_ms: u64,
    truth: Option<TruthChange>,
    event: Event,
}

#[derive(Debug, Clone)]
struct Case {
    which: Which,
    /// Garbage cases have no simulated-time cap and break the truth model.
    garbage: bool,
    tuning: Option<Tuning>,
    primary_up: bool,
    fallbacks_up: Vec<bool>,
    gps: GpsTruth,
    clock_error_ms: i64,
    /// chrony polled this often; `None`: snapshots only from steps.
    chrony_poll_ms: Option<u64>,
    /// The IO layer answers every `ApplyPlan` with success at once.
    auto_ack: bool,
    steps: Vec<Step>,
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

fn dt_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        80 => 800u64..=2_000,
        12 => 100u64..800,
        6 => 2_000u64..=15_000,
        2 => 15_000u64..=120_000,
    ]
}

fn garbage_dt_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => dt_ms(),
        1 => Just(0u64),
        1 => 0u64..=10_000_000_000,
    ]
}

fn tuning() -> impl Strategy<Value = Option<Tuning>> {
    prop_oneof![
        1 => Just(None),
        2 => (5u64..=30, 10u64..=60, 1u32..=6).prop_map(|(grace_s, hold_s, max_changes)| {
            Some(Tuning {
                grace_s,
                hold_s,
                max_changes,
            })
        }),
    ]
}

fn gps_truth() -> impl Strategy<Value = GpsTruth> {
    prop_oneof![
        4 => Just(GpsTruth::Healthy),
        1 => Just(GpsTruth::NoFix),
        1 => Just(GpsTruth::NoNmea),
        1 => Just(GpsTruth::Rollover),
        1 => Just(GpsTruth::Silent),
    ]
}

fn truth_change(which: Which, fallbacks: usize) -> impl Strategy<Value = TruthChange> {
    let primary = match which {
        Which::Client => any::<bool>().prop_map(TruthChange::Primary).boxed(),
        Which::Gps => gps_truth().prop_map(TruthChange::Gps).boxed(),
    };
    prop_oneof![
        5 => primary,
        3 => (0..fallbacks, prop::bool::weighted(0.6))
            .prop_map(|(i, up)| TruthChange::Fallback(i, up)),
        1 => (5u64..=120).prop_map(|secs| TruthChange::ChronyOutage { secs }),
        2 => (5u64..=300).prop_map(|secs| TruthChange::ChronyHang { secs }),
    ]
}

fn command() -> impl Strategy<Value = OperatorCommand> {
    prop_oneof![
        1 => Just(OperatorCommand::Freeze {
            reason: "maintenance".to_owned()
        }),
        4 => Just(OperatorCommand::Thaw),
        2 => prop_oneof![
            2 => Just(FallbackMode::Auto),
            1 => Just(FallbackMode::Engaged),
            1 => Just(FallbackMode::Released),
        ]
        .prop_map(|mode| OperatorCommand::Fallback { mode }),
        1 => Just(OperatorCommand::Reassess),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        30 => Just(Event::Tick),
        25 => Just(Event::Chrony),
        1 => Just(Event::ChronyUnreachable),
        12 => prop::bool::weighted(0.85).prop_map(|ok| Event::PlanFeedback { ok }),
        5 => prop::bool::weighted(0.8).prop_map(|ok| Event::StateSaved { ok }),
        2 => prop_oneof![
            4 => -3_000i64..=3_000,
            1 => prop_oneof![Just(-86_400_000i64), Just(3_600_000i64)],
        ]
        .prop_map(|ms| Event::ClockJump { ms }),
        3 => command().prop_map(Event::Command),
    ]
}

fn step(which: Which, fallbacks: usize) -> impl Strategy<Value = Step> {
    (
        dt_ms(),
        prop::option::weighted(0.05, truth_change(which, fallbacks)),
        event(),
    )
        .prop_map(|(dt_ms, truth, event)| Step {
            dt_ms,
            truth,
            event,
        })
}

fn garbage_step(which: Which, fallbacks: usize) -> impl Strategy<Value = Step> {
    (
        garbage_dt_ms(),
        prop::option::weighted(0.05, truth_change(which, fallbacks)),
        prop_oneof![
            1 => event(),
            1 => garbage_input().prop_map(|i| Event::Garbage(Box::new(i))),
        ],
    )
        .prop_map(|(dt_ms, truth, event)| Step {
            dt_ms,
            truth,
            event,
        })
}

fn clock_error_ms() -> impl Strategy<Value = i64> {
    let boot_1970 = boot_1970_error().as_nanos() / 1_000_000;
    prop_oneof![
        8 => -50i64..=50,
        1 => -5_000i64..=5_000,
        1 => Just(boot_1970),
        1 => -40 * 86_400_000i64..=2 * 86_400_000,
    ]
}

fn case(which: Which, garbage: bool) -> impl Strategy<Value = Case> {
    let fallbacks = match which {
        Which::Client => 4, // srv2 (LAN peer) and three public servers
        Which::Gps => 3,    // three public servers
    };
    let steps = if garbage {
        prop::collection::vec(garbage_step(which, fallbacks), 50..=400).boxed()
    } else {
        prop::collection::vec(step(which, fallbacks), 50..=400).boxed()
    };
    (
        tuning(),
        prop::bool::weighted(0.7),
        prop::collection::vec(prop::bool::weighted(0.8), fallbacks),
        prop_oneof![3 => Just(GpsTruth::Healthy), 1 => gps_truth()],
        clock_error_ms(),
        prop::option::weighted(0.75, 1_000u64..=5_000),
        prop::bool::weighted(0.6),
        steps,
    )
        .prop_map(
            move |(
                tuning,
                primary_up,
                fallbacks_up,
                gps,
                clock_error_ms,
                chrony_poll_ms,
                auto_ack,
                steps,
            )| Case {
                which,
                garbage,
                tuning,
                primary_up,
                fallbacks_up,
                gps,
                clock_error_ms,
                chrony_poll_ms,
                auto_ack,
                steps,
            },
        )
}

// --- garbage ---------------------------------------------------------------

fn any_wall() -> impl Strategy<Value = WallTime> {
    let start = scenario_start().unix_nanos();
    let year = 366 * 86_400 * 1_000_000_000i64;
    prop_oneof![
        2 => any::<i64>(),
        2 => (start - 30 * year)..=(start + year),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(-1i64)],
    ]
    .prop_map(WallTime::from_unix_nanos)
}

fn any_offset() -> impl Strategy<Value = Offset> {
    prop_oneof![
        2 => any::<i64>(),
        2 => -10_000_000_000i64..=10_000_000_000,
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64)],
    ]
    .prop_map(Offset::from_nanos)
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        2 => any::<u64>().prop_map(Duration::from_nanos),
        2 => (0u64..=10_000_000_000).prop_map(Duration::from_nanos),
        1 => Just(Duration::MAX),
    ]
}

fn any_mono() -> impl Strategy<Value = MonoTime> {
    prop_oneof![
        1 => any::<u64>(),
        3 => 0u64..=4 * 3_600_000_000_000,
    ]
    .prop_map(MonoTime::from_nanos)
}

fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter)
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => prop::sample::select(vec![GPS1, SRV2, PUB[0], PUB[1], PUB[2]]).prop_map(ip),
        1 => any::<[u8; 4]>().prop_map(IpAddr::from),
        1 => any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

fn any_state() -> impl Strategy<Value = SelectionState> {
    prop::sample::select(vec![
        SelectionState::Selected,
        SelectionState::Combined,
        SelectionState::NotCombined,
        SelectionState::Unusable,
        SelectionState::Falseticker,
        SelectionState::Jittery,
    ])
}

fn any_mode() -> impl Strategy<Value = ChronySourceMode> {
    prop::sample::select(vec![
        ChronySourceMode::Server,
        ChronySourceMode::Peer,
        ChronySourceMode::Refclock,
    ])
}

fn any_report() -> impl Strategy<Value = SourceReport> {
    (
        prop_oneof![
            4 => any_ip().prop_map(ChronySourceId::Address),
            1 => any_text().prop_map(ChronySourceId::Refclock),
        ],
        prop::option::of(any_text()),
        any_mode(),
        any_state(),
        any::<u8>(),
        any::<i8>(),
        any::<u8>(),
        prop::option::of(any_duration()),
        prop::option::of(any_offset()),
        any_duration(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                id,
                name,
                mode,
                state,
                stratum,
                poll,
                reach,
                last_sample_ago,
                offset,
                error,
                noselect,
            )| {
                SourceReport {
                    id,
                    name,
                    mode,
                    state,
                    stratum,
                    poll,
                    reach,
                    last_sample_ago,
                    offset,
                    error,
                    noselect,
                    remote: None,
                }
            },
        )
}

fn any_tracking() -> impl Strategy<Value = Tracking> {
    (
        any::<u32>(),
        prop::option::of(any_ip()),
        any::<u8>(),
        prop::sample::select(vec![
            LeapStatus::Normal,
            LeapStatus::InsertSecond,
            LeapStatus::DeleteSecond,
            LeapStatus::Unsynchronised,
        ]),
        any_offset(),
        any_offset(),
        any_duration(),
        any::<f64>(),
        any_duration(),
        any_duration(),
    )
        .prop_map(
            |(
                ref_id,
                ref_address,
                stratum,
                leap,
                system_offset,
                last_offset,
                rms_offset,
                frequency_ppm,
                root_delay,
                root_dispersion,
            )| Tracking {
                ref_id,
                ref_address,
                stratum,
                leap,
                system_offset,
                last_offset,
                rms_offset,
                frequency_ppm,
                root_delay,
                root_dispersion,
            },
        )
}

fn any_snapshot() -> impl Strategy<Value = ChronySnapshot> {
    (
        any_wall(),
        any_tracking(),
        prop::collection::vec(any_report(), 0..8),
    )
        .prop_map(|(taken_wall, tracking, sources)| ChronySnapshot {
            taken_wall,
            tracking,
            sources,
        })
}

fn any_epoch() -> impl Strategy<Value = GpsEpoch> {
    (
        prop::option::of(any_wall()),
        prop::sample::select(vec![FixMode::NoFix, FixMode::Fix2D, FixMode::Fix3D]),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<u8>()),
        prop::option::of(any::<u8>()),
        prop::option::of(any::<f32>()),
        any_wall(),
        any_mono(),
    )
        .prop_map(
            |(utc, fix, rmc_valid, gga_quality, sats_used, hdop, received_wall, received_mono)| {
                GpsEpoch {
                    utc,
                    fix,
                    rmc_valid,
                    gga_quality,
                    sats_used,
                    hdop,
                    received_wall,
                    received_mono,
                }
            },
        )
}

fn any_outcome() -> impl Strategy<Value = Result<(), String>> {
    prop_oneof![Just(Ok(())), any_text().prop_map(Err)]
}

fn garbage_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        any_wall().prop_map(|wall| Input::Tick { wall }),
        any_snapshot().prop_map(Input::Chrony),
        any_text().prop_map(|error| Input::ChronyUnreachable { error }),
        any_epoch().prop_map(Input::GpsEpoch),
        (any_wall(), any_mono(), any::<u64>()).prop_map(|(wall, mono, sequence)| {
            Input::PpsEdge(PpsEdge {
                wall,
                mono,
                sequence,
            })
        }),
        any_outcome().prop_map(|outcome| Input::PlanApplied {
            plan: SourcePlan::default(),
            outcome,
        }),
        any_outcome().prop_map(|outcome| Input::StateSaved { outcome }),
        prop_oneof![
            any_text().prop_map(|reason| OperatorCommand::Freeze { reason }),
            Just(OperatorCommand::Thaw),
            prop::sample::select(vec![
                FallbackMode::Auto,
                FallbackMode::Engaged,
                FallbackMode::Released
            ])
            .prop_map(|mode| OperatorCommand::Fallback { mode }),
            Just(OperatorCommand::Reassess),
        ]
        .prop_map(Input::Command),
    ]
}

// ---------------------------------------------------------------------------
// The world around the engine
// ---------------------------------------------------------------------------

/// One NTP association as chrony sees it.
#[derive(Debug, Clone)]
struct Line {
    address: SourceAddress,
    mode: ChronySourceMode,
}

/// The engine, the ground truth, chrony and the GPS hat, and what the
/// properties need to know about the past.
struct World {
    which: Which,
    garbage: bool,
    /// The input being handled is a step's garbage.
    garbage_now: bool,
    engine: Engine,
    now: MonoTime,
    auto_ack: bool,
    poll: Option<Duration>,
    next_poll: Option<MonoTime>,
    /// Next true whole second whose pulse / sentence is due.
    next_pulse_sec: u64,
    next_sentence_sec: u64,
    pps_sequence: u64,

    // Ground truth.
    primary_up: bool,
    fallbacks_up: Vec<bool>,
    gps: GpsTruth,
    chrony_down_until: Option<MonoTime>,
    chrony_hung_until: Option<MonoTime>,
    /// System clock − true time.
    clock_error: Offset,

    // chrony as the harness plays it.
    primaries: Vec<Line>,
    fallbacks: Vec<Line>,
    /// The last plan acknowledged as applied: what chrony has.
    chrony_plan: Option<SourcePlan>,
    /// The gate to the NMEA refclock, as the engine last set it.
    gate_open_seen: bool,

    // What the properties look at.
    last_apply: Option<SourcePlan>,
    frozen: bool,
    mode: FallbackMode,
    /// Since when the ground-truth primary (gps1, or the GPS hat) has been
    /// continuously bad; `None` while it is good.
    truth_bad_since: Option<MonoTime>,
    /// The latest moment the engine was shown evidence that the primary is
    /// bad: a snapshot with gps1 down, a bad GPS sentence, sentences
    /// missing for longer than the NMEA timeout. Starts at the start: until
    /// then nothing said it was good.
    observed_bad_at: MonoTime,
    last_snapshot_at: Option<MonoTime>,
    /// When the engine was first shown that evidence since the primary
    /// last went bad in truth.
    bad_first_shown_at: Option<MonoTime>,
    /// No "chrony unreachable" since the last snapshot.
    chrony_answering: bool,
    last_sentence_at: Option<MonoTime>,
    /// The floor the engine judged by when the current input arrived.
    judging_floor_before: WallTime,
}

/// A property, checked after every call to [`Engine::handle`].
trait Check {
    fn after(&mut self, w: &World, input: &Input, out: &[Action]) -> Result<(), TestCaseError>;
}

impl<A: Check, B: Check> Check for (A, B) {
    fn after(&mut self, w: &World, input: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        self.0.after(w, input, out)?;
        self.1.after(w, input, out)
    }
}

impl World {
    fn new(case: &Case) -> World {
        let mut config = match case.which {
            Which::Client => client_config(),
            Which::Gps => gps_config(),
        };
        if let Some(t) = case.tuning {
            config.thresholds.grace = Duration::from_secs(t.grace_s);
            config.thresholds.hold = Duration::from_secs(t.hold_s);
            config.thresholds.max_changes_per_hour = t.max_changes;
        }
        let engine = Engine::new(
            config,
            TimeFloor::new(build_time()),
            PersistedState::default(),
        );
        let line = |s: &gnomon_core::source::PlannedSource| Line {
            address: s.source.address.clone(),
            mode: match s.source.kind {
                AssociationKind::Server => ChronySourceMode::Server,
                AssociationKind::Peer => ChronySourceMode::Peer,
            },
        };
        let plan = engine.desired_plan();
        let primaries: Vec<Line> = plan
            .sources
            .iter()
            .filter(|s| s.role == SourceRole::Primary)
            .map(line)
            .collect();
        let fallbacks: Vec<Line> = plan.fallbacks().map(line).collect();
        assert_eq!(fallbacks.len(), case.fallbacks_up.len());
        let mono0 = MonoTime::from_duration(MONO0);
        let poll = case.chrony_poll_ms.map(Duration::from_millis);
        let mut w = World {
            which: case.which,
            garbage: case.garbage,
            garbage_now: false,
            judging_floor_before: engine.floor().value(),
            engine,
            now: mono0,
            auto_ack: case.auto_ack,
            poll,
            next_poll: poll.map(|p| mono0.plus(p)),
            next_pulse_sec: 1,
            next_sentence_sec: 1,
            pps_sequence: 1,
            primary_up: case.primary_up,
            fallbacks_up: case.fallbacks_up.clone(),
            gps: case.gps,
            chrony_down_until: None,
            chrony_hung_until: None,
            clock_error: Offset::from_millis(case.clock_error_ms),
            primaries,
            fallbacks,
            chrony_plan: None,
            gate_open_seen: false,
            last_apply: None,
            frozen: false,
            mode: FallbackMode::Auto,
            truth_bad_since: None,
            observed_bad_at: mono0,
            last_snapshot_at: None,
            bad_first_shown_at: None,
            chrony_answering: false,
            last_sentence_at: None,
        };
        if !w.truth_ok() {
            w.truth_bad_since = Some(mono0);
        }
        w
    }

    fn elapsed(&self) -> Duration {
        self.now.since(MonoTime::from_duration(MONO0))
    }

    fn true_wall(&self) -> WallTime {
        scenario_start().plus(self.elapsed())
    }

    fn system_wall(&self) -> WallTime {
        self.true_wall().offset_by(self.clock_error)
    }

    /// The primary reference is good in truth: gps1 up, or the GPS healthy.
    fn truth_ok(&self) -> bool {
        match self.which {
            Which::Client => self.primary_up,
            Which::Gps => self.gps == GpsTruth::Healthy,
        }
    }

    fn any_fallback_up(&self) -> bool {
        self.fallbacks_up.iter().any(|up| *up)
    }

    fn chrony_up(&self) -> bool {
        self.chrony_down_until.is_none_or(|until| self.now >= until)
    }

    fn chrony_hung(&self) -> bool {
        self.chrony_hung_until.is_some_and(|until| self.now < until)
    }

    fn thresholds(&self) -> &gnomon_core::config::Thresholds {
        &self.engine.config().thresholds
    }

    fn apply_truth(&mut self, change: &TruthChange) {
        let was_ok = self.truth_ok();
        match change {
            TruthChange::Primary(up) => self.primary_up = *up,
            TruthChange::Gps(g) => self.gps = *g,
            TruthChange::Fallback(i, up) => {
                if let Some(f) = self.fallbacks_up.get_mut(*i) {
                    *f = *up;
                }
            }
            TruthChange::ChronyOutage { secs } => {
                self.chrony_down_until = Some(self.now.plus(Duration::from_secs(*secs)));
            }
            TruthChange::ChronyHang { secs } => {
                self.chrony_hung_until = Some(self.now.plus(Duration::from_secs(*secs)));
            }
        }
        match (was_ok, self.truth_ok()) {
            (true, false) => self.truth_bad_since = Some(self.now),
            (_, true) => {
                self.truth_bad_since = None;
                self.bad_first_shown_at = None;
            }
            (false, false) => {}
        }
    }

    /// chrony's view of the truth right now.
    fn snapshot(&self) -> ChronySnapshot {
        // A source telling true time, measured against a clock that is
        // `clock_error` ahead: source − system.
        let correction = -self.clock_error;
        let planned = |a: &SourceAddress| self.chrony_plan.as_ref().and_then(|p| p.find(a));
        let mut lines: Vec<(&Line, bool, bool)> = Vec::new(); // (line, up, selectable)
        for p in &self.primaries {
            lines.push((p, self.primary_up, true));
        }
        for (f, up) in self.fallbacks.iter().zip(&self.fallbacks_up) {
            let selectable = planned(&f.address).is_some_and(|s| s.selectable);
            lines.push((f, *up, selectable));
        }
        let refclock_live =
            self.which == Which::Gps && self.gate_open_seen && self.gps == GpsTruth::Healthy;
        let reference: Option<usize> = if refclock_live {
            None
        } else {
            lines.iter().position(|(_, up, sel)| *up && *sel)
        };
        let synchronised = refclock_live || reference.is_some();
        let mut sources = Vec::new();
        if self.which == Which::Gps {
            sources.push(SourceReport {
                id: ChronySourceId::Refclock("NMEA".to_owned()),
                name: None,
                mode: ChronySourceMode::Refclock,
                state: if refclock_live {
                    SelectionState::Selected
                } else {
                    SelectionState::Unusable
                },
                stratum: 0,
                poll: 4,
                reach: if refclock_live { 0xff } else { 0 },
                last_sample_ago: refclock_live.then_some(Duration::from_secs(1)),
                offset: refclock_live.then_some(correction),
                error: Duration::from_millis(1),
                noselect: Some(false),
                remote: None,
            });
        }
        for (i, (line, up, selectable)) in lines.iter().enumerate() {
            let SourceAddress::Ip(addr) = line.address else {
                continue;
            };
            let noselect = planned(&line.address).map(|s| !s.selectable);
            let jitter = Offset::from_nanos(200_000 * (i64::try_from(i).unwrap() + 1));
            sources.push(if *up {
                SourceReport {
                    id: ChronySourceId::Address(addr),
                    name: None,
                    mode: line.mode,
                    state: if reference == Some(i) {
                        SelectionState::Selected
                    } else if *selectable {
                        SelectionState::Combined
                    } else {
                        SelectionState::NotCombined
                    },
                    stratum: 1,
                    poll: 6,
                    reach: 0xff,
                    last_sample_ago: Some(Duration::from_secs(20)),
                    offset: Some(correction + jitter),
                    error: Duration::from_millis(1),
                    noselect,
                    remote: None,
                }
            } else {
                SourceReport {
                    id: ChronySourceId::Address(addr),
                    name: None,
                    mode: line.mode,
                    state: SelectionState::Unusable,
                    stratum: 0,
                    poll: 6,
                    reach: 0,
                    last_sample_ago: None,
                    offset: None,
                    error: Duration::ZERO,
                    noselect,
                    remote: None,
                }
            });
        }
        let ref_address = reference.and_then(|i| lines[i].0.address.ip());
        ChronySnapshot {
            taken_wall: self.system_wall(),
            tracking: Tracking {
                ref_id: match ref_address {
                    Some(IpAddr::V4(v4)) => u32::from(v4),
                    Some(IpAddr::V6(_)) => 0x0102_0304,
                    None if refclock_live => NMEA_REFID,
                    None => 0,
                },
                ref_address,
                stratum: if synchronised { 2 } else { 16 },
                leap: if synchronised {
                    LeapStatus::Normal
                } else {
                    LeapStatus::Unsynchronised
                },
                system_offset: if synchronised {
                    correction
                } else {
                    Offset::ZERO
                },
                last_offset: Offset::ZERO,
                rms_offset: Duration::from_micros(50),
                frequency_ppm: 0.0,
                root_delay: Duration::from_millis(1),
                root_dispersion: Duration::from_millis(1),
            },
            sources,
        }
    }

    /// Hands one input to the engine, plays the IO layer's part with what
    /// comes out, and checks the property.
    fn deliver(&mut self, input: Input, check: &mut dyn Check) -> Result<(), TestCaseError> {
        let mut queue = vec![input];
        let mut calls = 0;
        while let Some(input) = queue.pop() {
            calls += 1;
            prop_assert!(
                calls <= 8,
                "the engine keeps asking for plans at {}",
                self.now
            );
            self.before(&input);
            let out = self.engine.handle(self.now, input.clone());
            self.after(&out);
            check.after(self, &input, &out)?;
            if self.auto_ack {
                if let Some(plan) = plans(&out).last() {
                    queue.push(Input::PlanApplied {
                        plan: (*plan).clone(),
                        outcome: Ok(()),
                    });
                }
            }
        }
        Ok(())
    }

    fn before(&mut self, input: &Input) {
        let now = self.now;
        match input {
            Input::Command(OperatorCommand::Freeze { .. }) => self.frozen = true,
            Input::Command(OperatorCommand::Thaw) => self.frozen = false,
            Input::Command(OperatorCommand::Fallback { mode }) => self.mode = *mode,
            Input::Chrony(_) => {
                self.chrony_answering = true;
                self.last_snapshot_at = Some(now);
                if self.which == Which::Client && !self.primary_up {
                    self.shown_bad();
                }
            }
            Input::ChronyUnreachable { .. } => self.chrony_answering = false,
            Input::PlanApplied {
                plan,
                outcome: Ok(()),
            } => self.chrony_plan = Some(plan.clone()),
            Input::GpsEpoch(_) => {
                self.last_sentence_at = Some(now);
                if self.gps != GpsTruth::Healthy {
                    self.shown_bad();
                }
            }
            _ => {}
        }
        self.judging_floor_before = self.engine.floor().value().minus(FLOOR_MARGIN);
    }

    fn after(&mut self, out: &[Action]) {
        for a in out {
            match a {
                Action::ApplyPlan(p) => self.last_apply = Some(p.clone()),
                // chrony steps the clock to its estimate: true time.
                Action::StepClock { .. } => self.clock_error = Offset::ZERO,
                Action::SetGpsGate { open, .. } => self.gate_open_seen = *open,
                _ => {}
            }
        }
        if self.which == Which::Gps {
            let timeout = self.thresholds().nmea_timeout;
            if self
                .last_sentence_at
                .is_none_or(|at| self.now.since(at) > timeout)
            {
                self.shown_bad();
            }
        }
    }

    /// The input being handled shows the engine that the primary is bad.
    fn shown_bad(&mut self) {
        self.observed_bad_at = self.now;
        if self.truth_bad_since.is_some() && self.bad_first_shown_at.is_none() {
            self.bad_first_shown_at = Some(self.now);
        }
    }

    /// Lets `dt` pass, delivering the pulses, sentences and chrony polls
    /// due meanwhile at their own instants.
    fn advance(&mut self, dt: Duration, check: &mut dyn Check) -> Result<(), TestCaseError> {
        let end = self.now.plus(dt);
        let mono0 = MonoTime::from_duration(MONO0);
        if self.which == Which::Gps && (dt > MAX_SIM || (self.garbage && dt > STALL)) {
            // A garbage-sized gap: skip the receiver's output rather than
            // deliver years of it (in garbage cases, any long gap).
            let next = end.since(mono0).as_secs() + 1;
            self.next_pulse_sec = next;
            self.next_sentence_sec = next;
        }
        if dt > STALL {
            // The poller stalls with the step; it resumes a period after.
            if let Some(p) = self.poll {
                self.next_poll = Some(end.plus(p));
            }
        }
        loop {
            let mut due: Option<(MonoTime, u8)> = None;
            let mut consider = |at: MonoTime, what: u8| {
                if at <= end && due.is_none_or(|(t, _)| at < t) {
                    due = Some((at, what));
                }
            };
            if self.which == Which::Gps {
                consider(mono0.plus(Duration::from_secs(self.next_pulse_sec)), 0);
                consider(
                    mono0
                        .plus(Duration::from_secs(self.next_sentence_sec))
                        .plus(SENTENCE_DELAY),
                    1,
                );
            }
            if let Some(at) = self.next_poll {
                consider(at, 2);
            }
            let Some((at, what)) = due else { break };
            self.now = at;
            match what {
                0 => {
                    self.next_pulse_sec += 1;
                    if self.gps.pulses() {
                        let edge = PpsEdge {
                            wall: self.system_wall(),
                            mono: self.now,
                            sequence: self.pps_sequence,
                        };
                        self.pps_sequence += 1;
                        self.deliver(Input::PpsEdge(edge), check)?;
                    }
                }
                1 => {
                    self.next_sentence_sec += 1;
                    if self.gps.sentences() {
                        let epoch = self.epoch();
                        self.deliver(Input::GpsEpoch(epoch), check)?;
                    }
                }
                _ => {
                    self.next_poll = self.poll.map(|p| at.plus(p));
                    self.poll_chrony(check)?;
                }
            }
        }
        self.now = end;
        Ok(())
    }

    /// The receiver's epoch for the second that started 300 ms ago.
    fn epoch(&self) -> GpsEpoch {
        let second = self.true_wall().minus(SENTENCE_DELAY);
        let (utc, fix) = match self.gps {
            GpsTruth::Rollover => (second.minus(GPS_ROLLOVER), true),
            GpsTruth::NoFix => (second, false),
            _ => (second, true),
        };
        GpsEpoch {
            utc: Some(utc),
            fix: if fix { FixMode::Fix3D } else { FixMode::NoFix },
            rmc_valid: Some(fix),
            gga_quality: Some(u8::from(fix)),
            sats_used: Some(if fix { 9 } else { 0 }),
            hdop: fix.then_some(0.9),
            received_wall: self.system_wall(),
            received_mono: self.now,
        }
    }

    fn poll_chrony(&mut self, check: &mut dyn Check) -> Result<(), TestCaseError> {
        let input = if self.chrony_hung() {
            return Ok(());
        } else if self.chrony_up() {
            Input::Chrony(self.snapshot())
        } else {
            Input::ChronyUnreachable {
                error: "chronyd is not answering".to_owned(),
            }
        };
        self.deliver(input, check)
    }

    fn event(&mut self, event: &Event, check: &mut dyn Check) -> Result<(), TestCaseError> {
        let input = match event {
            Event::Chrony if !self.chrony_hung() => return self.poll_chrony(check),
            // A hung poll hands over nothing; the daemon's tick goes on.
            Event::Tick | Event::Chrony => Input::Tick {
                wall: self.system_wall(),
            },
            Event::ChronyUnreachable => Input::ChronyUnreachable {
                error: "timed out".to_owned(),
            },
            Event::PlanFeedback { ok } => match &self.last_apply {
                Some(plan) => Input::PlanApplied {
                    plan: plan.clone(),
                    outcome: if *ok {
                        Ok(())
                    } else {
                        Err("reload sources failed".to_owned())
                    },
                },
                None => Input::Tick {
                    wall: self.system_wall(),
                },
            },
            Event::StateSaved { ok } => Input::StateSaved {
                outcome: if *ok {
                    Ok(())
                } else {
                    Err("read-only file system".to_owned())
                },
            },
            Event::ClockJump { ms } => {
                self.clock_error = self.clock_error + Offset::from_millis(*ms);
                Input::Tick {
                    wall: self.system_wall(),
                }
            }
            Event::Command(c) => Input::Command(c.clone()),
            Event::Garbage(input) => (**input).clone(),
        };
        self.garbage_now = matches!(event, Event::Garbage(_));
        let result = self.deliver(input, check);
        self.garbage_now = false;
        result
    }
}

/// Runs a whole case against one property.
fn run(case: &Case, check: &mut dyn Check) -> Result<(), TestCaseError> {
    let mut w = World::new(case);
    let tick = Input::Tick {
        wall: w.system_wall(),
    };
    w.deliver(tick, check)?;
    for step in &case.steps {
        if !case.garbage && w.elapsed() >= MAX_SIM {
            break;
        }
        if let Some(change) = &step.truth {
            w.apply_truth(change);
        }
        w.advance(Duration::from_millis(step.dt_ms), check)?;
        w.event(&step.event, check)?;
    }
    Ok(())
}

fn plans(out: &[Action]) -> Vec<&SourcePlan> {
    out.iter()
        .filter_map(|a| match a {
            Action::ApplyPlan(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn decisions(out: &[Action]) -> impl Iterator<Item = &Decision> {
    out.iter().filter_map(|a| match a {
        Action::Record(d) => Some(d),
        _ => None,
    })
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// Property 1: Every `ApplyPlan` keeps each configured primary server,
/// selectable.
///
/// Guards against: `desired_plan` marking the primary `noselect` while the
/// fallbacks are engaged (or leaving it out), which would make an outage
/// of the fallbacks or the primary's return invisible to chrony.
struct NeverDropsPrimary;

impl Check for NeverDropsPrimary {
    fn after(&mut self, w: &World, _: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        let servers = &w.engine.config().primary.servers;
        prop_assert!(servers.iter().any(|s| s.address == GPS1));
        for plan in plans(out) {
            for s in servers {
                let address = SourceAddress::parse(&s.address);
                let planned = plan.find(&address);
                prop_assert!(
                    planned.is_some_and(|p| p.selectable && p.role == SourceRole::Primary),
                    "at {} the plan has primary {} as {:?}: {:?}",
                    w.now,
                    s.address,
                    planned,
                    plan
                );
            }
        }
        Ok(())
    }
}

/// Property 2: In auto mode and not frozen, a primary that has been down in
/// truth for longer than grace + 10 s, with some fallback up, has the
/// fallbacks engaged and the last plan sent to chrony says so, provided
/// the engine was shown the outage within 5 s (a snapshot with gps1 down;
/// a GPS sentence without a fix or with a rollover date, or the first
/// input after sentences stopped for longer than the NMEA timeout) and
/// chrony answered at most 5 s ago with no "unreachable" since (gaps in
/// between are allowed: the engine's timers stand through them).
///
/// Guards against: never engaging (a wrong comparison with grace, the
/// unhealthy-since timer reset by every bad snapshot), engaging without
/// sending the plan, and the change bound holding back an engage (also
/// after operator overrides: see
/// [`regression_change_bound_never_blocks_engage_after_override`]).
///
/// The last `ApplyPlan` emitted must be the engaged plan: a plan still on
/// its way that is no longer wanted must have been countermanded
/// (see [`regression_superseded_plan_in_flight_is_countermanded`]).
struct EngagedWhenNeeded;

impl Check for EngagedWhenNeeded {
    fn after(&mut self, w: &World, _: &Input, _: &[Action]) -> Result<(), TestCaseError> {
        let (Some(bad), Some(shown), Some(last)) =
            (w.truth_bad_since, w.bad_first_shown_at, w.last_snapshot_at)
        else {
            return Ok(());
        };
        let due = w.thresholds().grace + Duration::from_secs(10);
        let seen = shown <= bad.plus(DENSE) && w.now.since(last) <= DENSE && w.chrony_answering;
        let applies = w.mode == FallbackMode::Auto
            && !w.frozen
            && w.any_fallback_up()
            && seen
            && w.now.since(bad) > due;
        if !applies {
            return Ok(());
        }
        prop_assert!(
            w.engine.fallbacks_engaged(),
            "at {}: primary down since {bad}, shown to the engine at {shown}, yet fallbacks not engaged (state {})",
            w.now,
            w.engine.state()
        );
        let engaged =
            |p: Option<&SourcePlan>| p.is_some_and(|p| p.fallbacks().all(|s| s.selectable));
        let sent = w.last_apply.as_ref();
        let ok = engaged(sent);
        prop_assert!(
            ok,
            "at {}: engaged but the last plan sent is {:?} (chrony has {:?})",
            w.now,
            sent,
            w.chrony_plan
        );
        Ok(())
    }
}

/// Property 3: The change bound. A change (engage or release) made while
/// the fallback mode is auto is automatic; one made outside it (in the
/// override's own call, or at the thaw when the override came while frozen)
/// is the operator's. Then:
///
/// - in any sliding hour without an operator override, the automatic
///   changes never exceed `max_changes_per_hour`;
/// - an automatic release leaves room in the hour, overrides included, for
///   the engage that may have to follow it (at most bound − 1 changes with
///   the release itself).
///
/// An hour with an override is exempt from the first rule on purpose: the
/// engine counts overrides against the bound but never holds back an
/// engage, so "force release, back to auto" with the primary down may take
/// one automatic engage over the bound (an engage held back there was the
/// bug [`regression_change_bound_never_blocks_engage_after_override`]).
///
/// Guards against: the budget not consulted or not recorded on one of the
/// paths, releases not keeping room for the engage, overrides not counted,
/// expiry measured on the wall clock, a window longer or shorter than an
/// hour.
#[derive(Default)]
struct ChangeBound {
    automatic: Vec<MonoTime>,
    all: Vec<MonoTime>,
    overrides: Vec<MonoTime>,
}

impl Check for ChangeBound {
    fn after(&mut self, w: &World, _: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        let max = usize::try_from(w.thresholds().max_changes_per_hour).unwrap();
        let hour = Duration::from_secs(3600);
        let within =
            |v: &[MonoTime], now: MonoTime| v.iter().filter(|t| now.since(**t) < hour).count();
        for d in decisions(out) {
            let release = match d.kind {
                DecisionKind::EngageFallbacks => false,
                DecisionKind::ReleaseFallbacks => true,
                _ => continue,
            };
            self.all.push(d.at);
            if w.mode != FallbackMode::Auto {
                self.overrides.push(d.at);
                continue;
            }
            self.automatic.push(d.at);
            if within(&self.overrides, d.at) == 0 {
                let n = within(&self.automatic, d.at);
                prop_assert!(
                    n <= max,
                    "at {}: {n} automatic changes within an hour, bound {max}: {:?}",
                    w.now,
                    self.automatic
                );
            }
            if release {
                let n = within(&self.all, d.at);
                prop_assert!(
                    n < max,
                    "at {}: automatic release makes {n} changes within an hour (overrides {:?}), bound {max}: no room left for an engage",
                    w.now,
                    self.overrides
                );
            }
        }
        Ok(())
    }
}

/// Property 4: From a freeze until the next thaw (the freeze's own call
/// included), the engine never asks to apply a plan, step the clock or move
/// the gate.
///
/// Guards against: any of `drive_plan`, `drive_step`, `drive_gate` running
/// while frozen, or a command (reassess, fallback override) bypassing the
/// freeze.
struct FreezeHandsOff;

impl Check for FreezeHandsOff {
    fn after(&mut self, w: &World, input: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        if !w.frozen {
            return Ok(());
        }
        prop_assert_eq!(w.engine.state(), EngineState::Frozen);
        for a in out {
            prop_assert!(
                !matches!(
                    a,
                    Action::ApplyPlan(_) | Action::StepClock { .. } | Action::SetGpsGate { .. }
                ),
                "at {}, frozen, handling {:?}, the engine emitted {:?}",
                w.now,
                input,
                a
            );
        }
        Ok(())
    }
}

/// The releases in `out` the engine made on its own: outside auto mode
/// every change is the operator's override (made in the command's call, or
/// at the thaw when the command came while frozen).
fn automatic_releases<'a>(w: &World, out: &'a [Action]) -> Vec<&'a Decision> {
    if w.mode != FallbackMode::Auto {
        return Vec::new();
    }
    decisions(out)
        .filter(|d| d.kind == DecisionKind::ReleaseFallbacks)
        .collect()
}

/// Property 5: An automatic release comes only once the primary has been
/// shown good for `hold` (plus `gps_settle` for the GPS) since the last
/// evidence the engine was given that it was bad (a snapshot with gps1
/// down, a GPS sentence without a fix or with a rollover date, sentences
/// missing for longer than the NMEA timeout), less 1 s of slack.
///
/// Guards against: releasing on grace instead of hold, the healthy-since
/// timer not reset by a bad snapshot or a bad GPS second, releasing as
/// soon as the primary looks good, the GPS trusted before it settled.
struct ReleasedOnlyAfterHold;

impl Check for ReleasedOnlyAfterHold {
    fn after(&mut self, w: &World, _: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        let t = w.thresholds();
        let mut required = t.hold;
        if w.which == Which::Gps {
            required += t.gps_settle;
        }
        let required = required.saturating_sub(Duration::from_secs(1));
        for d in automatic_releases(w, out) {
            let good_for = w.now.since(w.observed_bad_at);
            prop_assert!(
                good_for >= required,
                "at {}: released {:?} after the primary was shown good for only {:?} (last bad at {}), hold {:?}",
                w.now,
                d.reason,
                good_for,
                w.observed_bad_at,
                t.hold
            );
        }
        Ok(())
    }
}

/// Property 5b: (client) No automatic release while gps1 is down in truth,
/// unless the engine's last word from chrony (which still showed it up) is
/// at most `chrony_max_age` old: the thresholds say an older snapshot "is
/// not evidence", so it must not carry a release.
///
/// Guards against: the last judgement of the primary standing in for
/// fresh evidence when chrony goes quiet (a hung poll, or a clock step
/// that discarded the snapshot with nothing after it).
struct NoReleaseOnStaleEvidence;

impl Check for NoReleaseOnStaleEvidence {
    fn after(&mut self, w: &World, _: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        if w.truth_ok() {
            return Ok(());
        }
        let max_age = w.thresholds().chrony_max_age;
        for d in automatic_releases(w, out) {
            let age = w.last_snapshot_at.map(|at| w.now.since(at));
            prop_assert!(
                age.is_some_and(|a| a <= max_age),
                "at {}: released {:?} while the primary is down, on a chrony snapshot {:?} old (not evidence after {:?})",
                w.now,
                d.reason,
                age,
                max_age
            );
        }
        Ok(())
    }
}

/// Property 6: Whatever comes in, nothing panics (proptest reports a panic
/// as a failure), the status, the persisted state and every record, alert
/// and published status serialize, and the status agrees with the
/// accessors.
///
/// Guards against: overflow in time arithmetic (`WallTime`, `MonoTime`,
/// `Offset` near their ends), indexing on empty or duplicate source lists,
/// NaN or extreme values reaching formatting or serialization.
///
/// All this is checked after every garbage input and every eighth other
/// input (serializing costs far more than the engine's pass in a debug
/// build).
#[derive(Default)]
struct NoPanicConsistent {
    calls: u64,
}

impl Check for NoPanicConsistent {
    fn after(&mut self, w: &World, _: &Input, out: &[Action]) -> Result<(), TestCaseError> {
        self.calls += 1;
        if !w.garbage_now && self.calls % 8 != 0 {
            return Ok(());
        }
        let e = &w.engine;
        let status = e.status(w.now);
        prop_assert!(
            serializes(&status),
            "status does not serialize: {:?}",
            status
        );
        prop_assert!(serializes(&e.persisted_state()));
        prop_assert!(serializes(&e.desired_plan()));
        prop_assert_eq!(status.state, e.state());
        prop_assert_eq!(status.fallbacks_engaged, e.fallbacks_engaged());
        prop_assert_eq!(status.frozen.is_some(), e.state() == EngineState::Frozen);
        prop_assert_eq!(
            status.gps.as_ref().map(|g| g.gate_open),
            match w.which {
                Which::Gps => Some(e.gate_open()),
                Which::Client => None,
            }
        );
        for a in out {
            let ok = match a {
                Action::Publish(s) => serializes(s),
                Action::Persist(p) => serializes(p),
                Action::Record(d) => serializes(d),
                Action::Alert(ev) => serializes(ev),
                Action::ApplyPlan(p) => serializes(p),
                _ => true,
            };
            prop_assert!(ok, "{:?} does not serialize", a);
        }
        Ok(())
    }
}

/// Serializes to JSON into nowhere (building the string would only cost).
fn serializes(value: &impl serde::Serialize) -> bool {
    serde_json::to_writer(std::io::sink(), value).is_ok()
}

/// Property 7: After an epoch whose date is before the time floor the
/// engine judges by (a week-number rollover, or any absurd date), the gate
/// to chrony is closed, unless the operator froze the automation.
///
/// Guards against: judging the date only after `gps_settle`, the gate
/// following a verdict from before the epoch, a rollover mistaken for a
/// healthy fix, and the floor compared the wrong way round.
struct GateClosedOnInsaneGps;

impl Check for GateClosedOnInsaneGps {
    fn after(&mut self, w: &World, input: &Input, _: &[Action]) -> Result<(), TestCaseError> {
        let Input::GpsEpoch(e) = input else {
            return Ok(());
        };
        let before_floor = e.utc.is_some_and(|utc| utc < w.judging_floor_before);
        if before_floor && !w.frozen {
            prop_assert!(
                !w.engine.gate_open(),
                "at {}: GPS says {:?}, before the floor {}, yet the gate is open",
                w.now,
                e.utc,
                w.judging_floor_before
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn never_drops_the_primary(case in case(Which::Client, false)) {
        run(&case, &mut NeverDropsPrimary)?;
    }

    #[test]
    fn engaged_when_needed_client(case in case(Which::Client, false)) {
        run(&case, &mut EngagedWhenNeeded)?;
    }

    #[test]
    fn engaged_when_needed_gps(case in case(Which::Gps, false)) {
        run(&case, &mut EngagedWhenNeeded)?;
    }

    #[test]
    fn change_bound_client(case in case(Which::Client, false)) {
        run(&case, &mut ChangeBound::default())?;
    }

    #[test]
    fn change_bound_gps(case in case(Which::Gps, false)) {
        run(&case, &mut ChangeBound::default())?;
    }

    #[test]
    fn freeze_means_hands_off_client(case in case(Which::Client, false)) {
        run(&case, &mut FreezeHandsOff)?;
    }

    #[test]
    fn freeze_means_hands_off_gps(case in case(Which::Gps, false)) {
        run(&case, &mut FreezeHandsOff)?;
    }

    #[test]
    fn released_only_after_hold_client(case in case(Which::Client, false)) {
        run(&case, &mut ReleasedOnlyAfterHold)?;
    }

    #[test]
    fn released_only_after_hold_gps(case in case(Which::Gps, false)) {
        run(&case, &mut ReleasedOnlyAfterHold)?;
    }

    #[test]
    fn no_release_on_stale_evidence_client(case in case(Which::Client, false)) {
        run(&case, &mut NoReleaseOnStaleEvidence)?;
    }

    #[test]
    fn no_panic_and_consistent_client(case in case(Which::Client, true)) {
        run(&case, &mut NoPanicConsistent::default())?;
    }

    #[test]
    fn no_panic_and_consistent_gps(case in case(Which::Gps, true)) {
        run(&case, &mut (NoPanicConsistent::default(), GateClosedOnInsaneGps))?;
    }

    #[test]
    fn gate_closed_on_insane_gps(case in case(Which::Gps, false)) {
        run(&case, &mut GateClosedOnInsaneGps)?;
    }
}

// ---------------------------------------------------------------------------
// Engine bugs these properties found (fixed in 985ca55), as short fixed
// sequences
// ---------------------------------------------------------------------------

fn at(dt_ms: u64, event: Event) -> Step {
    Step {
        dt_ms,
        truth: None,
        event,
    }
}

/// One tick a second for `secs` seconds.
fn ticks(secs: u64) -> Vec<Step> {
    (0..secs).map(|_| at(1_000, Event::Tick)).collect()
}

fn fixed_case(tuning: Tuning, primary_up: bool, poll_ms: Option<u64>, steps: Vec<Step>) -> Case {
    Case {
        which: Which::Client,
        garbage: false,
        tuning: Some(tuning),
        primary_up,
        fallbacks_up: vec![true; 4],
        gps: GpsTruth::Healthy,
        clock_error_ms: 0,
        chrony_poll_ms: poll_ms,
        auto_ack: true,
        steps,
    }
}

fn fallback(mode: FallbackMode) -> Event {
    Event::Command(OperatorCommand::Fallback { mode })
}

/// srv1 with the shipped grace and hold and a bound of one change an hour
/// (the shipped six needs six changes first, same result); gps1 down from
/// the start, every fallback up, chrony polled every 2 s. The engine
/// engages after grace (one change of one). The operator forces a release
/// and gives the decision back to the engine: gps1 is still down. Before
/// 985ca55 the engine deferred the engage ("held back: 1 of 1 automatic
/// changes used") and srv1 stayed on a dead primary for the rest of the
/// hour, although budget.rs promises the bound "can never be what keeps a
/// broken primary in use": the forced release had not gone through the
/// budget, so it left no room for the engage that follows it.
#[test]
fn regression_change_bound_never_blocks_engage_after_override() {
    let tuning = Tuning {
        grace_s: 60,
        hold_s: 300,
        max_changes: 1,
    };
    let mut steps = ticks(70); // engaged at grace
    steps.push(at(1_000, fallback(FallbackMode::Released)));
    steps.push(at(1_000, fallback(FallbackMode::Auto)));
    steps.extend(ticks(120));
    let case = fixed_case(tuning, false, Some(2_000), steps);
    run(&case, &mut EngagedWhenNeeded).unwrap();
}

/// srv1 with the shipped thresholds: the operator forces the fallbacks
/// engaged, chrony reports gps1 healthy once, the operator hands back to
/// auto, then gps1 dies and chrony goes quiet (no snapshot, and no error
/// either: a hung poll). Before 985ca55, five minutes later the engine
/// released the fallbacks "primary healthy for 5m" on that single
/// five-minute-old snapshot, although `chrony-max-age` (15 s) says such a
/// snapshot "is not evidence": `assess_primary` kept the last judgement
/// whenever there was no fresh snapshot and no chrony error, meant for a
/// snapshot discarded by a clock step, but also covering a chrony that
/// simply stopped answering.
#[test]
fn regression_no_release_on_stale_snapshot() {
    let tuning = Tuning {
        grace_s: 60,
        hold_s: 300,
        max_changes: 6,
    };
    let mut steps = vec![
        at(1_000, fallback(FallbackMode::Engaged)),
        at(1_000, Event::Chrony), // gps1 up
        at(1_000, fallback(FallbackMode::Auto)),
    ];
    let mut quiet = ticks(320);
    quiet[0].truth = Some(TruthChange::Primary(false));
    steps.extend(quiet);
    let case = fixed_case(tuning, true, None, steps);
    run(&case, &mut NoReleaseOnStaleEvidence).unwrap();
}

// ---------------------------------------------------------------------------
// Engine bugs still open (found by the properties above), as fixed sequences
// ---------------------------------------------------------------------------

/// gps1 down from the start, chrony polled every second, plans answered
/// only by the steps below. The engine engages after grace and the engaged
/// plan is confirmed. The operator forces a release: `ApplyPlan(released)`
/// goes out. Before it is answered, the operator hands back to auto: the
/// engine engages again at once (gps1 is still down), but sends nothing,
/// because the engaged plan is the last *confirmed* one; the released plan
/// it no longer wants is still on its way to chrony. When it lands, chrony
/// runs without fallbacks while the engine reports "fallback", until the
/// `PlanApplied` for it comes back (then the engine re-sends), or, if that
/// answer is lost, until reconciliation notices. `drive_plan` should
/// countermand an in-flight plan that differs from the desired one even
/// when the desired one is the confirmed one.
#[test]
fn regression_superseded_plan_in_flight_is_countermanded() {
    let tuning = Tuning {
        grace_s: 60,
        hold_s: 300,
        max_changes: 6,
    };
    let mut steps = ticks(62); // engaged at grace...
    steps.push(at(100, Event::PlanFeedback { ok: true })); // ...and confirmed
    steps.push(at(1_000, fallback(FallbackMode::Released))); // ApplyPlan(released)
    steps.push(at(1_000, fallback(FallbackMode::Auto))); // engaged again, nothing sent
    steps.extend(ticks(10)); // still nothing sent, past APPLY_RETRY too
    let mut case = fixed_case(tuning, false, Some(1_000), steps);
    case.auto_ack = false;
    run(&case, &mut EngagedWhenNeeded).unwrap();
}

/// Alert that stays active with nothing wrong.
struct NoStickyApplyAlert;

impl Check for NoStickyApplyAlert {
    fn after(&mut self, w: &World, _: &Input, _: &[Action]) -> Result<(), TestCaseError> {
        let in_line = w.chrony_plan.as_ref() == Some(&w.engine.desired_plan());
        let alert = w
            .engine
            .status(w.now)
            .alerts
            .iter()
            .any(|a| a.kind == gnomon_core::alert::AlertKind::PlanNotApplied);
        prop_assert!(
            !(in_line && alert && w.elapsed() > Duration::from_secs(600)),
            "at {}: chrony has the desired plan, yet the plan-not-applied alert is active",
            w.now
        );
        Ok(())
    }
}

/// The same start, but the superseded released plan then fails to apply
/// (`PlanApplied { released, Err }`). chrony keeps the engaged plan, which
/// is what the engine wants, so nothing is re-sent, and nothing ever clears
/// `apply_error`: the "could not bring chrony's sources in line with the
/// plan" alert stays active, re-alerting every 10 minutes, although chrony
/// is in line. `apply_error` should be cleared when the confirmed plan is
/// the desired one (or the error dropped when its plan is no longer
/// wanted).
#[test]
fn regression_plan_not_applied_alert_clears_when_chrony_has_the_plan() {
    let tuning = Tuning {
        grace_s: 60,
        hold_s: 300,
        max_changes: 6,
    };
    let mut steps = ticks(62);
    steps.push(at(100, Event::PlanFeedback { ok: true })); // engaged plan confirmed
    steps.push(at(1_000, fallback(FallbackMode::Released))); // ApplyPlan(released)
    steps.push(at(1_000, fallback(FallbackMode::Auto))); // engaged again
    steps.push(at(1_000, Event::PlanFeedback { ok: false })); // released plan failed
    steps.extend((0..30).map(|_| at(60_000, Event::Tick))); // half an hour later...
    let mut case = fixed_case(tuning, false, Some(1_000), steps);
    case.auto_ack = false;
    run(&case, &mut NoStickyApplyAlert).unwrap();
}
