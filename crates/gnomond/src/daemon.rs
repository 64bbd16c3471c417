//! The daemon's wiring: start-up (config, directories, restored state,
//! sockets), the engine loop that turns inputs into the engine's actions
//! and carries them out, and shutdown. Tasks for chrony, the GPS and the
//! control socket talk to the loop over channels; only the loop touches the
//! engine.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use gnomon_core::{
    chrony::ChronySnapshot,
    config::{Config, Role},
    engine::{Action, Engine, FallbackMode, Input, OperatorCommand, Status},
    ipc::{
        CertsReport, DaemonInfo, ErrorKind, ErrorReply, HistoryReport, PlotReport, Request,
        Response, SourcesReport, StatusReport,
    },
    samples::{self, Sample},
    time::{MonoTime, TimeFloor, WallTime},
};
use gnomon_gps::pps::read_clocks;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    check,
    chrony_link::{self, ChronyJob, ChronyLinkConfig, ChronyNote},
    config_file,
    control::{AccessPolicy, ControlCall, ControlServer},
    exit, failsafe,
    gps_feed::{self, GateWord, GpsFeed, SharedFeedState},
    journal,
    notify::Notifier,
    persist::{self, DecisionHistory, StateStore},
    samples::{SampleLog, SampleRing},
    state_writer::{self, StateJob},
};

/// The engine is ticked this often with a fresh wall-clock reading; finer
/// than any timer the engine asks for (grace, hold, timeouts are seconds).
const TICK: Duration = Duration::from_secs(1);
/// STATUS= is refreshed every this many ticks, for its offsets.
const STATUS_REFRESH_TICKS: u64 = 10;
/// Decisions shown by `gnomonctl status`.
const STATUS_DECISIONS: usize = 5;
/// How long a `sources` request waits for chrony's sourcestats.
const SOURCESTATS_TIMEOUT: Duration = Duration::from_secs(3);
/// Depth of the engine's input channel (GPS epochs, edges, chrony).
const INPUT_DEPTH: usize = 256;

/// When the binary was built (the time floor's first part).
pub fn build_time() -> WallTime {
    let secs: i64 = env!("GNOMON_BUILD_UNIX_SECONDS").parse().unwrap_or(0);
    WallTime::from_unix_nanos(secs.saturating_mul(1_000_000_000))
}

/// How gnomond was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub log: journal::LogTarget,
    pub verbose: bool,
}

/// A start-up failure with the exit code it maps to.
#[derive(Debug)]
pub struct StartError {
    pub code: u8,
    pub message: String,
}

impl StartError {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Permission problems are 77, other OS failures 71.
    fn io(what: &str, error: &io::Error) -> Self {
        let code = if error.kind() == io::ErrorKind::PermissionDenied {
            exit::NOPERM
        } else {
            exit::OSERR
        };
        Self::new(code, format!("{what}: {error}"))
    }
}

/// Runs the daemon to completion; returns the process exit code.
pub fn run(options: Options) -> u8 {
    let sink = match journal::init(options.log, options.verbose) {
        Ok(sink) => sink,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("gnomond: cannot set up logging: {e}");
            }
            return exit::OSERR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return exit::OSERR;
        }
    };
    tracing::info!(
        log = sink.kind(),
        version = env!("CARGO_PKG_VERSION"),
        "gnomond starting"
    );
    match runtime.block_on(run_async(options)) {
        Ok(()) => exit::OK,
        Err(e) => {
            tracing::error!("{}", e.message);
            e.code
        }
    }
}

async fn run_async(options: Options) -> Result<(), StartError> {
    let (config, problems) = config_file::load(&options.config_path)
        .map_err(|e| StartError::new(exit::CONFIG, e.to_string()))?;
    for p in &problems {
        tracing::warn!("{}: {p}", options.config_path.display());
    }
    let mut daemon = Daemon::start(config, options.config_path).await?;
    daemon.run().await;
    daemon.shutdown().await;
    Ok(())
}

fn make_dir(path: &Path, mode: u32) -> Result<(), StartError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| StartError::io(&format!("creating directory {}", path.display()), &e))?;
    // chronyd reads the sources file and answers into the runtime directory
    // as its own user: the directories must stay searchable whatever the umask.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| StartError::io(&format!("setting the mode of {}", path.display()), &e))
}

/// Keeps the fail-safe file of a configuration that loaded in the state
/// directory, for `gnomond --fail-safe` after a stop with a broken one and
/// for chrony's start at boot.
fn keep_failsafe(config: &Config) {
    match failsafe::store(config) {
        Ok(true) => tracing::debug!(state_dir = %config.paths.state_dir, "fail-safe sources kept"),
        Ok(false) => {}
        Err(e) => tracing::warn!(state_dir = %config.paths.state_dir, "{e}"),
    }
}

/// Everything the engine loop owns.
struct Daemon {
    config: Config,
    config_path: PathBuf,
    engine: Engine,
    state_jobs: mpsc::UnboundedSender<StateJob>,
    history: DecisionHistory,
    notifier: Notifier,
    chrony_jobs: mpsc::UnboundedSender<ChronyJob>,
    inputs_rx: mpsc::Receiver<Input>,
    notes_rx: mpsc::Receiver<ChronyNote>,
    calls_rx: mpsc::Receiver<ControlCall>,
    /// Scrape requests from the metrics endpoint (none when it is off).
    metrics_rx: mpsc::Receiver<crate::metrics::ScrapeCall>,
    gate_tx: watch::Sender<GateWord>,
    policy_tx: watch::Sender<AccessPolicy>,
    shutdown_tx: watch::Sender<bool>,
    control_task: JoinHandle<()>,
    feed_state: Option<SharedFeedState>,
    snapshot: Option<ChronySnapshot>,
    /// The last write to the state directory that failed, until one works.
    last_save_error: Option<String>,
    started: Instant,
    started_wall: WallTime,
    passes: u64,
    /// Inputs produced while carrying out actions (e.g. a save's outcome).
    pending: Vec<Input>,
    /// The offset history behind `gnomonctl plot`, and when the next
    /// sample is due.
    samples: SampleRing,
    next_sample: Instant,
    /// `[certs]` as running, for the certificate watch.
    certs_tx: watch::Sender<gnomon_core::certs::CertsConfig>,
}

impl Daemon {
    async fn start(config: Config, config_path: PathBuf) -> Result<Daemon, StartError> {
        let paths = config.paths.clone();
        make_dir(Path::new(&paths.runtime_dir), 0o755)?;
        make_dir(Path::new(&paths.sources_dir), 0o755)?;

        let store = StateStore::new(&paths.state_dir);
        let restored = store.load();
        for problem in &restored.problems {
            tracing::warn!(state_dir = %paths.state_dir, "restoring state: {problem}");
        }
        let mut floor = TimeFloor::new(build_time());
        if let Some(t) = restored.state.last_synchronised {
            floor.raise_last_synchronised(t);
        }
        if let Some(file) = &paths.floor_file {
            match persist::read_floor_file(Path::new(file)) {
                Ok(t) => floor.operator = Some(t),
                Err(e) => tracing::warn!("time floor file ignored: {e}"),
            }
        }
        let gate_open = restored.state.gate_open;
        let mut engine = Engine::new(config.clone(), floor, restored.state);
        if failsafe::in_place(Path::new(&paths.sources_dir)) {
            tracing::info!(
                sources_dir = %paths.sources_dir,
                "taking over from the fail-safe sources: every source stays selectable until the primary has been healthy for the hold time"
            );
            engine.take_over_failsafe();
        }
        keep_failsafe(&config);

        let server = ControlServer::bind(Path::new(&paths.control_socket)).map_err(|e| {
            let code = if e.to_string().contains("ermission") {
                exit::NOPERM
            } else {
                exit::OSERR
            };
            StartError::new(code, e.to_string())
        })?;
        let (policy, warnings) =
            AccessPolicy::resolve(&config.control, rustix::process::getuid().as_raw());
        for w in warnings {
            tracing::warn!("control socket: {w}");
        }
        let (policy_tx, policy_rx) = watch::channel(policy);
        let (calls_tx, calls_rx) = mpsc::channel(32);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics_rx = start_metrics(&config.metrics, shutdown_rx.clone())?;
        let control_task = tokio::spawn(server.serve(policy_rx, calls_tx, shutdown_rx));

        let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_DEPTH);
        let mut sample_log = SampleLog::new(&paths.state_dir, config.history.capacity());
        let loaded = sample_log.load();
        for problem in &loaded.problems {
            tracing::warn!("restoring the offset history: {problem}");
        }
        let state_jobs = state_writer::spawn(store, sample_log, inputs_tx.clone())
            .map_err(|e| StartError::io("starting the state writer thread", &e))?;
        let (notes_tx, notes_rx) = mpsc::channel(16);
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let link = ChronyLinkConfig {
            server_socket: PathBuf::from(&paths.chrony_socket),
            client_dir: PathBuf::from(&paths.runtime_dir),
            sources_dir: PathBuf::from(&paths.sources_dir),
        };
        tokio::spawn(chrony_link::run(link, jobs_rx, inputs_tx.clone(), notes_tx));

        let (gate_tx, gate_rx) = watch::channel(GateWord {
            open: gate_open,
            judged: 0,
        });
        let feed_state = match (&config.role, &config.gps) {
            (Role::Gps, Some(gps)) => {
                let state = SharedFeedState::default();
                let feed = GpsFeed {
                    config: gps.clone(),
                    floor: engine.floor().value(),
                    gate: gate_rx,
                    inputs: inputs_tx.clone(),
                    state: state.clone(),
                };
                tokio::spawn(async move {
                    if let Err(e) = feed.run().await {
                        tracing::error!("the GPS feed stopped: {e}");
                    }
                });
                Some(state)
            }
            _ => None,
        };
        let (certs_tx, certs_rx) = watch::channel(config.certs.clone());
        tokio::spawn(crate::certs::watch(certs_rx, inputs_tx.clone()));
        drop(inputs_tx);

        let (started_wall, _) = read_clocks();
        let config_interval = config.history.interval;
        tracing::info!(
            role = %config.role,
            config = %config_path.display(),
            floor = %engine.floor().value().rfc3339_millis(),
            "gnomond started"
        );
        Ok(Daemon {
            config,
            config_path,
            engine,
            state_jobs,
            history: restored.history,
            notifier: Notifier::from_env(),
            chrony_jobs: jobs_tx,
            inputs_rx,
            notes_rx,
            calls_rx,
            metrics_rx,
            gate_tx,
            policy_tx,
            shutdown_tx,
            control_task,
            feed_state,
            snapshot: None,
            last_save_error: None,
            started: Instant::now(),
            started_wall,
            passes: 0,
            pending: Vec::new(),
            samples: loaded.ring,
            next_sample: Instant::now() + config_interval,
            certs_tx,
        })
    }

    /// The engine loop; returns on SIGTERM or SIGINT.
    async fn run(&mut self) {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return;
        };
        let mut tick = tokio::time::interval(TICK);
        let mut ticks: u64 = 0;
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // WATCHDOG=1 on a timer of this loop's own, so a stalled loop still
        // stops the pings, but at half the watchdog interval: the 1 s tick
        // alone would ping a 1 s watchdog just as it expires. (A zero
        // period would make `interval` panic: WATCHDOG_USEC=0 pings nothing.)
        let watchdog_every = self
            .notifier
            .watchdog_interval()
            .filter(|d| !d.is_zero())
            .unwrap_or(TICK);
        let mut watchdog = tokio::time::interval(watchdog_every);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let (wall, mono) = read_clocks();
                    self.handle(mono, Input::Tick { wall });
                    self.take_sample(wall, mono);
                    // The engine publishes when its headline changes; the
                    // offsets in the line move on their own, so refresh it
                    // now and then (sent only if it changed).
                    ticks = ticks.wrapping_add(1);
                    if ticks % STATUS_REFRESH_TICKS == 0 && self.notifier.is_ready() {
                        let summary = self.engine.status(mono).summary();
                        self.notifier.status(&summary);
                    }
                }
                _ = watchdog.tick() => self.notifier.progress(Instant::now()),
                Some(input) = self.inputs_rx.recv() => {
                    let first_assessment = matches!(
                        input,
                        Input::Chrony(_) | Input::ChronyUnreachable { .. }
                    );
                    match &input {
                        Input::Chrony(s) => self.snapshot = Some(s.clone()),
                        Input::StateSaved { outcome } => {
                            self.last_save_error = outcome.as_ref().err().cloned();
                        }
                        _ => {}
                    }
                    let epoch = matches!(input, Input::GpsEpoch(_));
                    let (_, mono) = read_clocks();
                    self.handle(mono, input);
                    if epoch {
                        // Judged, and the gate set on that judgement: the
                        // feed may now pass the epoch or withhold it.
                        self.gate_tx.send_modify(|w| w.judged = w.judged.wrapping_add(1));
                    }
                    if first_assessment && !self.notifier.is_ready() {
                        let summary = self.engine.status(mono).summary();
                        tracing::info!("first assessment done: {summary}");
                        self.notifier.ready(&summary);
                    }
                }
                Some(note) = self.notes_rx.recv() => match note {
                    ChronyNote::Stepped(Ok(())) => tracing::info!("chrony stepped the clock"),
                    ChronyNote::Stepped(Err(e)) => tracing::warn!("chrony did not step the clock: {e}"),
                    ChronyNote::Repaired(why) => tracing::info!("chrony needed a second reload: {why}"),
                },
                Some(call) = self.calls_rx.recv() => self.answer(call),
                Some(call) = self.metrics_rx.recv() => self.answer_scrape(call),
                _ = hup.recv() => self.reload(),
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return; }
            }
        }
    }

    /// Feeds one input to the engine and carries out what it asks, until
    /// no follow-up input is left.
    fn handle(&mut self, now: MonoTime, input: Input) {
        self.pending.push(input);
        while let Some(input) = self.pending.pop() {
            self.passes = self.passes.saturating_add(1);
            let actions = self.engine.handle(now, input);
            for action in actions {
                self.act(action);
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::ApplyPlan(plan) => {
                let _ = self.chrony_jobs.send(ChronyJob::Apply(plan));
            }
            Action::StepClock { reason } => {
                tracing::warn!("asking chrony to step the clock: {reason}");
                let _ = self.chrony_jobs.send(ChronyJob::Step);
            }
            Action::SetGpsGate { open, reason } => {
                tracing::info!(
                    gate = if open { "open" } else { "closed" },
                    "GPS gate {}: {reason}",
                    if open { "opened" } else { "closed" }
                );
                self.gate_tx.send_modify(|w| w.open = open);
            }
            Action::Alert(event) => journal::alert(&event, self.engine.state()),
            Action::Persist(state) => {
                let _ = self.state_jobs.send(StateJob::State(state));
            }
            Action::Record(decision) => {
                journal::decision(&decision);
                let _ = self
                    .state_jobs
                    .send(StateJob::Decision(Box::new(decision.clone())));
                self.history.push(decision);
            }
            Action::Publish(status) => self.notifier.status(&status.summary()),
            // The loop ticks every second, finer than any timer asked for.
            Action::WakeAt(_) => {}
        }
    }

    /// Every `[history] interval`: one sample into the ring and the file.
    fn take_sample(&mut self, wall: WallTime, mono: MonoTime) {
        let now = Instant::now();
        if now < self.next_sample {
            return;
        }
        let interval = self.config.history.interval;
        // On schedule, but never a burst after the loop was held up.
        self.next_sample = (self.next_sample + interval).max(now + interval / 2);
        let status = self.engine.status(mono);
        let sample = Sample::observe(
            wall,
            &status,
            self.snapshot.as_ref(),
            self.config.thresholds.chrony_max_age,
        );
        self.samples.push(sample.clone());
        let _ = self.state_jobs.send(StateJob::Sample(Box::new(sample)));
    }

    fn plot_report(&self, since: Duration, points: usize) -> PlotReport {
        let (wall, _) = read_clocks();
        PlotReport {
            host: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            role: self.config.role,
            interval: self.config.history.interval,
            keep: self.config.history.keep,
            kept: self.samples.len(),
            oldest: self.samples.oldest().map(|s| s.at),
            data: samples::reduce(self.samples.iter(), wall, since, points),
        }
    }

    fn status_now(&self) -> (MonoTime, Status) {
        let (_, mono) = read_clocks();
        (mono, self.engine.status(mono))
    }

    fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            config_path: self.config_path.display().to_string(),
            started: self.started_wall,
            uptime: self.started.elapsed(),
            passes: self.passes,
        }
    }

    fn gps_reports(
        &self,
        status: &Status,
    ) -> Option<(gnomon_core::ipc::GpsReport, gnomon_core::ipc::PpsReport)> {
        let (Some(state), Some(gps)) = (&self.feed_state, &self.config.gps) else {
            return None;
        };
        Some(gps_feed::reports(gps, state, status.gps.clone()))
    }

    /// Hands the metrics endpoint everything one scrape shows; it renders
    /// on its own task.
    fn answer_scrape(&self, call: crate::metrics::ScrapeCall) {
        let (taken, mono) = read_clocks();
        let status = self.engine.status(mono);
        let (gps, pps) = self.gps_reports(&status).unzip();
        let scrape = crate::metrics::Scrape {
            taken,
            daemon: self.daemon_info(),
            status,
            gps,
            pps,
            chrony: self.snapshot.clone(),
            primary: self
                .config
                .primary
                .servers
                .iter()
                .map(|s| gnomon_core::source::SourceAddress::parse(&s.address))
                .collect(),
        };
        let _ = call.reply.send(Box::new(scrape));
    }

    /// Answers one control request. Only `sources` waits for chrony, on a
    /// task of its own, so the loop never blocks on a client.
    fn answer(&mut self, call: ControlCall) {
        let ControlCall {
            request,
            peer,
            reply,
        } = call;
        let response = match request {
            Request::Status => {
                let (_, status) = self.status_now();
                Response::Status(Box::new(StatusReport {
                    daemon: self.daemon_info(),
                    status,
                    recent_decisions: self.history.newest(STATUS_DECISIONS),
                }))
            }
            Request::Sources => {
                self.answer_sources(reply);
                return;
            }
            Request::Gps | Request::Pps => {
                let (_, status) = self.status_now();
                match self.gps_reports(&status) {
                    Some((gps, _)) if request == Request::Gps => Response::Gps(Box::new(gps)),
                    Some((_, pps)) => Response::Pps(Box::new(pps)),
                    None => Response::Error(ErrorReply {
                        kind: ErrorKind::Unsupported,
                        message: format!(
                            "this gnomond has role {}: it reads no GPS",
                            self.config.role
                        ),
                    }),
                }
            }
            Request::History { limit } => Response::History(HistoryReport {
                decisions: self.history.newest(limit.unwrap_or(usize::MAX)),
                kept: self.history.len(),
            }),
            Request::Certs => {
                let (_, status) = self.status_now();
                Response::Certs(Box::new(CertsReport {
                    system: status.clock.wall,
                    trusted: status.trusted_time,
                    warn_before: self.config.certs.warn_before,
                    check_every: self.config.certs.check_every,
                    certs: status.certs,
                }))
            }
            Request::Plot { since, points } => {
                Response::Plot(Box::new(self.plot_report(since, points)))
            }
            Request::Check => {
                let (_, status) = self.status_now();
                let plan = self.engine.desired_plan();
                let gps = self.gps_reports(&status).map(|(g, _)| g);
                Response::Check(check::report(&check::CheckInputs {
                    config: &self.config,
                    status: &status,
                    plan: &plan,
                    snapshot: self.snapshot.as_ref(),
                    gps: gps.as_ref(),
                    last_save_error: self.last_save_error.as_deref(),
                }))
            }
            Request::Command(command) => {
                tracing::info!(
                    uid = peer.uid,
                    pid = peer.pid.unwrap_or(0),
                    command = request_name(&command),
                    "operator command"
                );
                let message = describe(&command);
                if command == OperatorCommand::Reassess {
                    let _ = self.chrony_jobs.send(ChronyJob::Poll);
                }
                let (_, mono) = read_clocks();
                self.handle(mono, Input::Command(command));
                let state = self.engine.state();
                Response::Done {
                    message: format!("{message}; state now {state}"),
                }
            }
        };
        let _ = reply.send(response);
    }

    fn answer_sources(&self, reply: oneshot::Sender<Response>) {
        let (_, status) = self.status_now();
        let mut report = SourcesReport {
            plan: self.engine.desired_plan(),
            plan_applied: status.chrony.plan_applied,
            chrony: self.snapshot.clone(),
            sourcestats: Vec::new(),
            sources_file: Path::new(&self.config.paths.sources_dir)
                .join(gnomon_chrony::sources_file::DEFAULT_FILE_NAME)
                .display()
                .to_string(),
        };
        let (tx, rx) = oneshot::channel();
        let _ = self.chrony_jobs.send(ChronyJob::SourceStats(tx));
        tokio::spawn(async move {
            if let Ok(Ok(Ok(stats))) = tokio::time::timeout(SOURCESTATS_TIMEOUT, rx).await {
                report.sourcestats = stats;
            }
            let _ = reply.send(Response::Sources(Box::new(report)));
        });
    }

    /// SIGHUP: read the config again; a bad one is reported and the running
    /// one stays. `[paths]` and `[gps]` are opened once at start, so
    /// changes there wait for a restart.
    fn reload(&mut self) {
        self.notifier.reloading();
        match config_file::load(&self.config_path) {
            Err(e) => tracing::error!("SIGHUP: {e}; the running configuration stays in force"),
            Ok((mut new, problems)) => {
                for p in &problems {
                    tracing::warn!("{}: {p}", self.config_path.display());
                }
                if new.paths != self.config.paths
                    || new.gps != self.config.gps
                    || new.role != self.config.role
                {
                    tracing::warn!(
                        "SIGHUP: changes to role, [paths] and [gps] take effect at the next restart"
                    );
                    new.paths = self.config.paths.clone();
                    new.gps = self.config.gps.clone();
                    new.role = self.config.role;
                }
                if new.metrics != self.config.metrics {
                    tracing::warn!("SIGHUP: changes to [metrics] take effect at the next restart");
                    new.metrics = self.config.metrics.clone();
                }
                if new.history != self.config.history {
                    tracing::warn!("SIGHUP: changes to [history] take effect at the next restart");
                    new.history = self.config.history.clone();
                }
                let (policy, warnings) =
                    AccessPolicy::resolve(&new.control, rustix::process::getuid().as_raw());
                for w in warnings {
                    tracing::warn!("control socket: {w}");
                }
                self.policy_tx.send_replace(policy);
                // The certificate watch reads the (new) list at once: a
                // SIGHUP after renewing a certificate shows it right away.
                self.certs_tx.send_replace(new.certs.clone());
                self.engine.reconfigure(new.clone());
                keep_failsafe(&new);
                self.config = new;
                tracing::info!(config = %self.config_path.display(), "configuration reloaded");
                let _ = self.chrony_jobs.send(ChronyJob::Poll);
            }
        }
        self.notifier.reloaded();
    }

    async fn shutdown(&mut self) {
        self.notifier.stopping();
        let (done_tx, done_rx) = oneshot::channel();
        let state = self.engine.persisted_state();
        let _ = self.state_jobs.send(StateJob::Final(state, done_tx));
        match tokio::time::timeout(Duration::from_secs(5), done_rx).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!(state_dir = %self.config.paths.state_dir, "state saved");
            }
            Ok(Ok(Err(e))) => tracing::error!("saving state at shutdown: {e}"),
            Ok(Err(_)) | Err(_) => {
                tracing::error!(
                    state_dir = %self.config.paths.state_dir,
                    "saving state at shutdown: the state writer did not answer within 5 s"
                );
            }
        }
        self.shutdown_tx.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.control_task).await;
        tracing::info!("gnomond stopped");
    }
}

/// Binds and serves the metrics endpoint when `[metrics]` enables it; the
/// receiver gets its scrape requests (never any when it is off).
fn start_metrics(
    config: &gnomon_core::config::MetricsConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<crate::metrics::ScrapeCall>, StartError> {
    let (tx, rx) = mpsc::channel(4);
    if !config.enabled {
        return Ok(rx);
    }
    let addr = config.listen_addr().ok_or_else(|| {
        StartError::new(
            exit::CONFIG,
            format!("metrics.listen {:?} is not IP:port", config.listen),
        )
    })?;
    let server = crate::metrics::http::MetricsServer::bind(addr).map_err(|e| {
        let crate::metrics::http::MetricsError::Bind { source, .. } = &e;
        // The exit code by the OS error; the message names the address.
        StartError::new(StartError::io("", source).code, e.to_string())
    })?;
    tokio::spawn(server.serve(tx, shutdown));
    Ok(rx)
}

fn request_name(command: &OperatorCommand) -> &'static str {
    Request::Command(command.clone()).name()
}

fn describe(command: &OperatorCommand) -> String {
    match command {
        OperatorCommand::Freeze { reason } => format!("frozen ({reason})"),
        OperatorCommand::Thaw => "thawed".to_owned(),
        OperatorCommand::Fallback { mode } => match mode {
            FallbackMode::Auto => "fallbacks back under automatic control".to_owned(),
            FallbackMode::Engaged => "fallbacks forced engaged".to_owned(),
            FallbackMode::Released => "fallbacks forced released".to_owned(),
        },
        OperatorCommand::Reassess => "reassessing".to_owned(),
    }
}
