//! A discrete-event simulator that drives the real decision engine in
//! simulated time: PPS pulses, NMEA epochs, chrony polls, ticks, the
//! engine's own wake-ups and a script of faults, merged in time order.
//! A simulated day runs in well under a second.

pub mod world;

use std::{cmp::Reverse, collections::BinaryHeap, fmt::Write as _, net::IpAddr, time::Duration};

use gnomon_core::{
    alert::{AlertEvent, AlertPhase},
    config::Config,
    engine::{
        Action, Decision, DecisionKind, Engine, EngineState, Input, OperatorCommand,
        PersistedState, Status,
    },
    source::SourcePlan,
    time::{MonoTime, Offset, TimeFloor, WallTime},
};
pub use world::{GpsBehaviour, SimServer, World};

/// Something the scenario does to the world at a given time.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptEvent {
    /// An NTP server starts or stops answering.
    Server {
        address: IpAddr,
        up: bool,
    },
    /// An NTP server's clock error changes (source time − true time).
    ServerError {
        address: IpAddr,
        error: Offset,
    },
    /// An NTP server's stratum changes (16 = unsynchronised).
    ServerStratum {
        address: IpAddr,
        stratum: u8,
    },
    /// The GPS receiver changes behaviour.
    Gps(GpsBehaviour),
    ChronydStop,
    ChronydStart,
    /// An operator runs a gnomonctl command.
    Command(OperatorCommand),
    /// gnomond restarts: a new engine from what was persisted.
    RestartGnomond,
    /// The state directory's disk fills up or frees.
    DiskFull(bool),
    /// An arbitrary engine input (for bad-input scenarios).
    Raw(Input),
}

/// How a simulated host starts.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub config: Config,
    /// True UTC when the simulation starts.
    pub start: WallTime,
    /// Build time of gnomond (part of the floor).
    pub build_time: WallTime,
    /// System clock minus true time at start.
    pub clock_error: Offset,
    pub servers: Vec<SimServer>,
    pub gps: GpsBehaviour,
    /// What is on disk from the previous run.
    pub persisted: PersistedState,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub at: MonoTime,
    pub host: String,
    pub state: EngineState,
    /// chrony's selected source at that moment.
    pub selected: String,
    pub event: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A PPS pulse at a true whole second.
    Pulse,
    /// The NMEA epoch for the pulse at the given instant.
    Epoch(MonoTime),
    ChronyTick,
    ChronyPoll,
    Tick,
    Wake,
    Feedback(usize),
    Script(usize),
}

/// The simulator for one host.
#[derive(Debug)]
pub struct Sim {
    spec: HostSpec,
    world: World,
    engine: Engine,
    now: MonoTime,
    seq: u64,
    queue: BinaryHeap<Reverse<(MonoTime, u64, Event)>>,
    script: Vec<(Duration, ScriptEvent)>,
    feedback: Vec<Option<Input>>,
    disk: PersistedState,
    disk_full: bool,
    timeline: Vec<TimelineEntry>,
    actions: Vec<(MonoTime, Action)>,
    states: Vec<(MonoTime, EngineState)>,
    selections: Vec<(MonoTime, String)>,
    last_status: Option<Status>,
    inputs: u64,
}

const FEEDBACK_DELAY: Duration = Duration::from_millis(20);
const CHRONY_POLL: Duration = Duration::from_secs(2);

impl Sim {
    pub fn new(spec: HostSpec) -> Self {
        let has_refclock = spec.config.gps.is_some();
        let mut world = World::new(
            spec.start,
            spec.clock_error,
            spec.servers.clone(),
            has_refclock,
        );
        world.gps = spec.gps;
        let engine = Self::make_engine(&spec, spec.persisted.clone());
        let mut sim = Sim {
            disk: spec.persisted.clone(),
            spec,
            world,
            engine,
            now: MonoTime::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            script: Vec::new(),
            feedback: Vec::new(),
            disk_full: false,
            timeline: Vec::new(),
            actions: Vec::new(),
            states: vec![(MonoTime::ZERO, EngineState::Starting)],
            selections: Vec::new(),
            last_status: None,
            inputs: 0,
        };
        sim.push(MonoTime::ZERO, Event::ChronyTick);
        sim.push(
            MonoTime::from_duration(Duration::from_millis(500)),
            Event::Tick,
        );
        sim.push(
            MonoTime::from_duration(Duration::from_millis(900)),
            Event::ChronyPoll,
        );
        if has_refclock {
            sim.push(MonoTime::ZERO, Event::Pulse);
        }
        sim
    }

    fn make_engine(spec: &HostSpec, restored: PersistedState) -> Engine {
        Engine::new(
            spec.config.clone(),
            TimeFloor::new(spec.build_time),
            restored,
        )
    }

    /// Adds a scripted event at `at` after the start.
    pub fn at(&mut self, at: Duration, event: ScriptEvent) -> &mut Self {
        let idx = self.script.len();
        self.script.push((at, event));
        self.push(MonoTime::from_duration(at), Event::Script(idx));
        self
    }

    fn push(&mut self, at: MonoTime, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    /// Runs until `until` after the start.
    pub fn run_until(&mut self, until: Duration) {
        let until = MonoTime::from_duration(until);
        while let Some(Reverse((at, _, ev))) = self.queue.peek().cloned() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            self.dispatch(ev);
        }
        self.now = until;
    }

    fn dispatch(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Pulse => {
                self.push(now.plus(Duration::from_secs(1)), Event::Pulse);
                if let Some(edge) = self.world.pps_edge(now) {
                    self.feed(Input::PpsEdge(edge));
                }
                if let Some(d) = self.world.sentence_delay() {
                    self.push(now.plus(d), Event::Epoch(now));
                }
            }
            Event::Epoch(pulse_at) => {
                let epoch = self.world.gps_epoch(pulse_at, now);
                self.feed(Input::GpsEpoch(epoch));
                // The IO layer feeds chrony only through an open gate, and
                // only after the engine has judged this very epoch.
                if self.world.gate_open {
                    self.world.refclock_sample(now);
                }
            }
            Event::ChronyTick => {
                self.push(now.plus(Duration::from_secs(1)), Event::ChronyTick);
                self.world.chrony_tick(now);
                let sel = self.world.selected_name();
                match self.selections.last() {
                    None => self.selections.push((now, sel)),
                    Some((_, s)) if *s != sel => {
                        self.selections.push((now, sel.clone()));
                        self.note(format!("chrony selects {sel}"));
                    }
                    Some(_) => {}
                }
            }
            Event::ChronyPoll => {
                self.push(now.plus(CHRONY_POLL), Event::ChronyPoll);
                let input = match self.world.snapshot(now) {
                    Ok(s) => Input::Chrony(s),
                    Err(error) => Input::ChronyUnreachable { error },
                };
                self.feed(input);
            }
            Event::Tick => {
                self.push(now.plus(Duration::from_secs(1)), Event::Tick);
                let wall = self.world.system_time(now);
                self.feed(Input::Tick { wall });
            }
            Event::Wake => {
                let wall = self.world.system_time(now);
                self.feed(Input::Tick { wall });
            }
            Event::Feedback(i) => {
                if let Some(input) = self.feedback.get_mut(i).and_then(Option::take) {
                    self.feed(input);
                }
            }
            Event::Script(i) => {
                if let Some((_, e)) = self.script.get(i).cloned() {
                    self.script_event(e);
                }
            }
        }
    }

    fn script_event(&mut self, e: ScriptEvent) {
        let now = self.now;
        self.note(format!("SCRIPT {}", describe_script(&e)));
        match e {
            ScriptEvent::Server { address, up } => {
                if let Some(s) = self.world.server_mut(address) {
                    s.up = up;
                }
            }
            ScriptEvent::ServerError { address, error } => {
                if let Some(s) = self.world.server_mut(address) {
                    s.error = error;
                }
            }
            ScriptEvent::ServerStratum { address, stratum } => {
                if let Some(s) = self.world.server_mut(address) {
                    s.stratum = stratum;
                }
            }
            ScriptEvent::Gps(b) => self.world.gps = b,
            ScriptEvent::ChronydStop => self.world.chronyd_stop(),
            ScriptEvent::ChronydStart => self.world.chronyd_start(now),
            ScriptEvent::Command(c) => self.feed(Input::Command(c)),
            ScriptEvent::RestartGnomond => {
                // The gate closes with the process (nothing feeds chrony).
                self.world.gate_open = false;
                self.engine = Self::make_engine(&self.spec, self.disk.clone());
                let wall = self.world.system_time(now);
                self.feed(Input::Tick { wall });
            }
            ScriptEvent::DiskFull(full) => self.disk_full = full,
            ScriptEvent::Raw(input) => self.feed(input),
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.now;
        self.inputs += 1;
        let actions = self.engine.handle(now, input);
        for a in actions {
            self.perform(&a);
            self.actions.push((now, a));
        }
    }

    fn later(&mut self, input: Input) {
        let idx = self.feedback.len();
        self.feedback.push(Some(input));
        self.push(self.now.plus(FEEDBACK_DELAY), Event::Feedback(idx));
    }

    fn perform(&mut self, a: &Action) {
        let now = self.now;
        match a {
            Action::ApplyPlan(plan) => {
                let outcome = self.world.apply_plan(now, plan);
                let what = match &outcome {
                    Ok(()) => format!("APPLY plan: {}", plan_summary(plan)),
                    Err(e) => format!("APPLY plan failed: {e}"),
                };
                self.note(what);
                self.later(Input::PlanApplied {
                    plan: plan.clone(),
                    outcome,
                });
            }
            Action::StepClock { reason } => {
                let before = self.world.clock_error;
                let ok = self.world.step();
                self.note(if ok {
                    format!(
                        "STEP requested ({reason}); chrony stepped the clock by {}",
                        self.world.clock_error - before
                    )
                } else {
                    format!("STEP requested ({reason}); chrony had nothing to step to")
                });
            }
            Action::SetGpsGate { open, reason } => {
                self.world.gate_open = *open;
                self.note(format!(
                    "GATE {} ({reason})",
                    if *open { "open" } else { "closed" }
                ));
            }
            Action::Alert(ev) => self.note(alert_line(ev)),
            Action::Persist(state) => {
                let outcome = if self.disk_full {
                    Err("writing /var/lib/gnomon/state.json.tmp: No space left on device (os error 28)".to_owned())
                } else {
                    self.disk = state.clone();
                    Ok(())
                };
                self.later(Input::StateSaved { outcome });
            }
            Action::Record(d) => {
                if d.kind == DecisionKind::StateChange {
                    if let Some(to) = state_after(d) {
                        self.states.push((now, to));
                    }
                }
                self.note(format!("DECISION {}: {}", kind_name(d.kind), d.reason));
            }
            Action::Publish(status) => self.last_status = Some((**status).clone()),
            Action::WakeAt(at) => self.push(*at, Event::Wake),
        }
    }

    fn note(&mut self, event: String) {
        self.timeline.push(TimelineEntry {
            at: self.now,
            host: self.spec.name.clone(),
            state: self.engine.state(),
            selected: self.world.selected_name(),
            event,
        });
    }

    /// How many inputs the engine has handled.
    pub fn inputs_handled(&self) -> u64 {
        self.inputs
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    pub fn now(&self) -> MonoTime {
        self.now
    }

    /// What the daemon would have on disk.
    pub fn disk(&self) -> &PersistedState {
        &self.disk
    }

    pub fn timeline(&self) -> &[TimelineEntry] {
        &self.timeline
    }

    /// Every action the engine issued, with when.
    pub fn actions(&self) -> &[(MonoTime, Action)] {
        &self.actions
    }

    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.actions.iter().filter_map(|(_, a)| match a {
            Action::Record(d) => Some(d),
            _ => None,
        })
    }

    /// The first decision of a kind, if any.
    pub fn first_decision(&self, kind: DecisionKind) -> Option<&Decision> {
        self.decisions().find(|d| d.kind == kind)
    }

    pub fn alert_events(&self) -> impl Iterator<Item = (MonoTime, &AlertEvent)> {
        self.actions.iter().filter_map(|(t, a)| match a {
            Action::Alert(ev) => Some((*t, ev)),
            _ => None,
        })
    }

    /// When an alert of `kind` was first in `phase`.
    pub fn alert_at(
        &self,
        kind: gnomon_core::alert::AlertKind,
        phase: AlertPhase,
    ) -> Option<MonoTime> {
        self.alert_events()
            .find(|(_, e)| e.alert.kind == kind && e.phase == phase)
            .map(|(t, _)| t)
    }

    /// Every plan applied, with when.
    pub fn plans(&self) -> impl Iterator<Item = (MonoTime, &SourcePlan)> {
        self.actions.iter().filter_map(|(t, a)| match a {
            Action::ApplyPlan(p) => Some((*t, p)),
            _ => None,
        })
    }

    /// State transitions, with when.
    pub fn states(&self) -> &[(MonoTime, EngineState)] {
        &self.states
    }

    /// chrony's selection changes, with when.
    pub fn selections(&self) -> &[(MonoTime, String)] {
        &self.selections
    }

    pub fn status(&self) -> Status {
        self.engine.status(self.now)
    }

    pub fn last_published(&self) -> Option<&Status> {
        self.last_status.as_ref()
    }

    /// The timeline as text, one line an entry.
    pub fn render_timeline(&self) -> String {
        let mut out = String::new();
        for e in &self.timeline {
            let _ = writeln!(
                out,
                "{}  {:<5} {:<12} sel={:<14} {}",
                e.at,
                e.host,
                e.state.to_string(),
                e.selected,
                e.event
            );
        }
        out
    }
}

fn state_after(d: &Decision) -> Option<EngineState> {
    // "old -> new: reason"
    let arrow = d.reason.split_once(" -> ")?.1;
    let name = arrow.split(':').next()?;
    [
        EngineState::Starting,
        EngineState::Acquiring,
        EngineState::Primary,
        EngineState::Degraded,
        EngineState::Fallback,
        EngineState::Recovering,
        EngineState::NoReference,
        EngineState::Frozen,
    ]
    .into_iter()
    .find(|s| s.name() == name)
}

fn kind_name(k: DecisionKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{k:?}"))
}

fn plan_summary(plan: &SourcePlan) -> String {
    let sel: Vec<String> = plan
        .selectable()
        .map(|s| s.source.address.to_string())
        .collect();
    let nosel: Vec<String> = plan
        .sources
        .iter()
        .filter(|s| !s.selectable)
        .map(|s| s.source.address.to_string())
        .collect();
    format!(
        "selectable [{}], noselect [{}]",
        sel.join(" "),
        nosel.join(" ")
    )
}

fn alert_line(ev: &AlertEvent) -> String {
    format!(
        "ALERT {} {} {}: {}",
        ev.priority(),
        ev.alert.kind,
        ev.phase,
        ev.alert.message
    )
}

fn describe_script(e: &ScriptEvent) -> String {
    match e {
        ScriptEvent::Server { address, up: true } => format!("{address} answers again"),
        ScriptEvent::Server { address, up: false } => format!("{address} stops answering"),
        ScriptEvent::ServerError { address, error } => {
            format!("{address}'s clock is now {error} off")
        }
        ScriptEvent::ServerStratum { address, stratum } => {
            format!("{address} now stratum {stratum}")
        }
        ScriptEvent::Gps(b) => format!("GPS receiver: {b:?}"),
        ScriptEvent::ChronydStop => "chronyd stops".to_owned(),
        ScriptEvent::ChronydStart => "chronyd starts".to_owned(),
        ScriptEvent::Command(c) => format!("operator: {c:?}"),
        ScriptEvent::RestartGnomond => "gnomond restarts".to_owned(),
        ScriptEvent::DiskFull(true) => "state disk full".to_owned(),
        ScriptEvent::DiskFull(false) => "state disk has room again".to_owned(),
        ScriptEvent::Raw(i) => format!("raw input {}", raw_name(i)),
    }
}

fn raw_name(i: &Input) -> &'static str {
    match i {
        Input::Tick { .. } => "tick",
        Input::GpsEpoch(_) => "GPS epoch",
        Input::PpsEdge(_) => "PPS edge",
        Input::Chrony(_) => "chrony snapshot",
        Input::ChronyUnreachable { .. } => "chrony unreachable",
        Input::PlanApplied { .. } => "plan applied",
        Input::StateSaved { .. } => "state saved",
        Input::Command(_) => "command",
        Input::Certificates(_) => "certificates",
    }
}
