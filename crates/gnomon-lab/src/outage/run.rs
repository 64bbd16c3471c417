//! One scenario run: the lab, an observer that polls every host's chronyd
//! (selected source, remaining correction) and gnomond (state, plan, gate)
//! four times a second and reads the alerts back from journald, the
//! timeline it builds, the figures and the pass/fail checks.
//!
//! The observer runs on the scenario's own thread: every wait in a
//! scenario is [`Run::wait_for`] or [`Run::settle`], which keep polling.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{self, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use gnomon_chrony::client::{ChronyClient, ClientConfig};
use gnomon_core::{
    chrony::{ChronySourceId, SelectionState, SourceReport},
    engine::Decision,
    ipc::{self, Request, RequestFrame, Response, StatusReport},
    time::Offset,
};

use super::lab::{host_of, Lab, LabOptions, GPS1, PUBS, SERVERS, SRV1, SRV2};

/// How often the observer looks.
const TICK: Duration = Duration::from_millis(250);
/// How often journald is read for alerts.
const JOURNAL_EVERY: Duration = Duration::from_millis(1000);
/// Hosts the observer watches (the pubs are only ever acted on).
const WATCHED: [&str; 3] = [GPS1, SRV1, SRV2];

/// What the observer last saw on one host.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// gnomond's status, when it answered.
    pub status: Option<StatusReport>,
    /// chronyd answered the last poll.
    pub chrony_up: bool,
    /// chrony's selected source: a lab host name, a refclock's refid, or
    /// the address when it is none of the lab's.
    pub selected: Option<String>,
    /// chrony's sources as of the last poll.
    pub sources: Vec<SourceReport>,
    /// chrony's remaining correction (positive: the clock is behind).
    pub correction: Option<Offset>,
}

impl HostView {
    /// gnomond's engine state name, `-` when it did not answer.
    pub fn state(&self) -> &str {
        self.status.as_ref().map_or("-", |s| s.status.state.name())
    }

    pub fn fallbacks_engaged(&self) -> Option<bool> {
        self.status.as_ref().map(|s| s.status.fallbacks_engaged)
    }

    pub fn gate_open(&self) -> Option<bool> {
        self.status
            .as_ref()
            .and_then(|s| s.status.gps.as_ref())
            .map(|g| g.gate_open)
    }

    /// Whether chrony has the source of `host` as `noselect`.
    pub fn noselect(&self, host: &str) -> Option<bool> {
        self.sources
            .iter()
            .find(|s| source_name(s).as_deref() == Some(host))
            .and_then(|s| s.noselect)
    }

    /// Active alert kinds (by name) in gnomond's status.
    pub fn active_alerts(&self) -> Vec<String> {
        self.status
            .as_ref()
            .map(|s| {
                s.status
                    .alerts
                    .iter()
                    .map(|a| a.kind.name().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Duration,
    pub host: String,
    pub text: String,
    /// The host's gnomon state at the time (`-`: none or not answering).
    pub gnomon: String,
    /// The host's chrony-selected source at the time (`-`: none).
    pub selected: String,
}

/// An alert as journald has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSeen {
    pub at: Duration,
    pub host: String,
    pub kind: String,
    pub phase: String,
    /// syslog priority: 2 critical, 4 warning, 5 notice.
    pub priority: u8,
    pub message: String,
    /// GNOMON_SUBJECT, for alerts about one thing (a fallback, a file).
    pub subject: Option<String>,
    /// GNOMON_ACTIVE_FOR_S: whole seconds the condition lasted.
    pub active_for_s: Option<u64>,
}

/// A pass/fail assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

/// What a run measured on srv1/srv2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Start to the first selected source, per LAN server.
    pub first_selected: BTreeMap<String, Duration>,
    /// Primary loss (the scenario's mark) to a fallback selected.
    pub loss_to_fallback: BTreeMap<String, Duration>,
    /// Changes of chrony's selected source after the first selection
    /// (losing it counts), per server.
    pub source_changes: BTreeMap<String, u32>,
    /// How long the run watched.
    pub watched: Duration,
    /// Alert events per host: (opened, resolved).
    pub alert_events: BTreeMap<String, (usize, usize)>,
}

/// How a run prints as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Nothing until the report.
    Quiet,
    /// Each timeline line as it happens (`gnomon-lab run`).
    Timeline,
    /// The story for a newcomer: narration, status snapshots, alerts
    /// (`gnomon-lab demo`).
    Demo,
}

/// A scenario in progress.
#[derive(Debug)]
pub struct Run {
    pub lab: Lab,
    start: Instant,
    output: Output,
    runtime: tokio::runtime::Runtime,
    interrupted: Arc<AtomicBool>,
    chrony: BTreeMap<&'static str, (PathBuf, ChronyClient)>,
    views: BTreeMap<&'static str, HostView>,
    pids: BTreeMap<u32, &'static str>,
    journal_cursor: Option<String>,
    last_journal: Option<Instant>,
    events: Vec<Event>,
    alerts: Vec<AlertSeen>,
    checks: Vec<Check>,
    marks: BTreeMap<String, Duration>,
    figures: Figures,
    /// Last non-empty selection per server (for counting changes).
    last_selected: BTreeMap<&'static str, Option<String>>,
    /// Every decision gnomond reported, per host, oldest first (from the
    /// status' recent decisions, so none is missed between two looks).
    decisions: BTreeMap<&'static str, Vec<(Duration, Decision)>>,
    /// Largest |remaining correction| per host since the last
    /// [`Run::reset_max_correction`].
    max_correction: BTreeMap<&'static str, Offset>,
    /// Every remaining correction seen per host since the last reset, with
    /// when: how long a clock was led away, not only how far.
    corrections: BTreeMap<&'static str, Vec<(Duration, Offset)>>,
}

impl Run {
    /// Starts the lab with `options` and takes the first look.
    pub fn start(options: &LabOptions, output: Output) -> io::Result<Run> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io::Error::other(format!("starting the lab's tokio runtime: {e}")))?;
        let interrupted = Arc::new(AtomicBool::new(false));
        watch_signals(&runtime, &interrupted)?;
        let lab = Lab::start(options)?;
        let mut run = Run {
            lab,
            start: Instant::now(),
            output,
            runtime,
            interrupted,
            chrony: BTreeMap::new(),
            views: BTreeMap::new(),
            pids: BTreeMap::new(),
            journal_cursor: None,
            last_journal: None,
            events: Vec::new(),
            alerts: Vec::new(),
            checks: Vec::new(),
            marks: BTreeMap::new(),
            figures: Figures::default(),
            last_selected: BTreeMap::new(),
            decisions: BTreeMap::new(),
            max_correction: BTreeMap::new(),
            corrections: BTreeMap::new(),
        };
        run.event("lab", "lab up: 6 hosts, every chronyd started");
        run.tick()?;
        Ok(run)
    }

    /// Time since the lab came up.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The latest view of `host`.
    pub fn view(&self, host: &str) -> HostView {
        self.views.get(host).cloned().unwrap_or_default()
    }

    /// Adds a line to the timeline (an action of the scenario).
    pub fn event(&mut self, host: &str, text: &str) {
        let view = self.view(host);
        let event = Event {
            at: self.elapsed(),
            host: host.to_owned(),
            text: text.to_owned(),
            gnomon: view.state().to_owned(),
            selected: view.selected.clone().unwrap_or_else(|| "-".to_owned()),
        };
        match self.output {
            Output::Timeline => print_line(&render_event(&event)),
            Output::Demo => print_line(&render_demo_event(&event)),
            Output::Quiet => {}
        }
        self.events.push(event);
    }

    /// Narration for the demo (printed only there), wrapped at 76 columns.
    pub fn say(&self, text: &str) {
        if self.output == Output::Demo {
            print_line(&format!("\n{}\n", wrap(text, 76)));
        }
    }

    /// In the demo, `gnomonctl status` on `host` as an operator would see it.
    pub fn snapshot(&self, host: &str) {
        if self.output != Output::Demo {
            return;
        }
        match self.lab.gnomonctl(host, &["status"]) {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let mut block = format!("    {host}# gnomonctl status\n");
                for line in text.lines() {
                    block.push_str("    ");
                    block.push_str(line);
                    block.push('\n');
                }
                print_line(&block);
            }
            Err(e) => print_line(&format!("    ({host}: gnomonctl status failed: {e})")),
        }
    }

    /// In the demo, `gnomonctl plot` on `host` over the whole run: the
    /// offsets and the state bands of everything above, one sample a second.
    pub fn plot(&self, host: &str) {
        if self.output != Output::Demo {
            return;
        }
        let since = format!("{}s", self.start.elapsed().as_secs().max(10) + 5);
        let args = [
            "plot", "--since", &since, "--width", "76", "--height", "14", "--color", "never",
        ];
        match self.lab.gnomonctl(host, &args) {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let mut block = format!("    {host}# gnomonctl plot --since {since}\n");
                for line in text.lines() {
                    block.push_str("    ");
                    block.push_str(line);
                    block.push('\n');
                }
                print_line(&block);
            }
            Err(e) => print_line(&format!("    ({host}: gnomonctl plot failed: {e})")),
        }
        // The same as an image, beside the build (scripts/demo runs from
        // the repository root), when there is a target/ to put it in.
        let dir = Path::new("target/gnomon-demo");
        if Path::new("target").is_dir() && std::fs::create_dir_all(dir).is_ok() {
            let svg = dir.join(format!("{host}-plot.svg"));
            let svg_arg = svg.display().to_string();
            let args = ["plot", "--since", &since, "--svg", &svg_arg];
            match self.lab.gnomonctl(host, &args) {
                Ok(out) if out.status.success() => print_line(&format!(
                    "    (the same plot as an SVG image: {})",
                    std::fs::canonicalize(&svg).unwrap_or(svg).display()
                )),
                Ok(out) => print_line(&format!(
                    "    ({host}: gnomonctl plot --svg failed: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => print_line(&format!("    ({host}: gnomonctl plot --svg failed: {e})")),
            }
        }
    }

    pub fn output(&self) -> Output {
        self.output
    }

    /// Remembers "now" under `name` (e.g. `primary-lost`).
    pub fn mark(&mut self, name: &str) {
        let at = self.elapsed();
        self.marks.insert(name.to_owned(), at);
    }

    pub fn marked(&self, name: &str) -> Option<Duration> {
        self.marks.get(name).copied()
    }

    /// Records an assertion.
    pub fn check(&mut self, what: &str, passed: bool, detail: impl Into<String>) {
        let check = Check {
            what: what.to_owned(),
            passed,
            detail: detail.into(),
        };
        if self.output == Output::Timeline {
            print_line(&format!("         check: {}", render_check(&check)));
        }
        self.checks.push(check);
    }

    /// Keeps observing until `done` holds for the views (returns the
    /// elapsed time then) or `timeout` passes (returns `None`).
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Run) -> bool,
    ) -> io::Result<Option<Duration>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.tick()?;
            if done(self) {
                return Ok(Some(self.elapsed()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(TICK);
        }
    }

    /// Keeps observing for `duration`.
    pub fn settle(&mut self, duration: Duration) -> io::Result<()> {
        self.wait_for(duration, |_| false).map(drop)
    }

    /// The figures so far.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// When the first event on `host` containing `text` happened at or
    /// after the mark `since` (from the start when it is not set).
    pub fn first_event_since(&self, host: &str, text: &str, since: &str) -> Option<Duration> {
        let from = self.marked(since).unwrap_or_default();
        self.events
            .iter()
            .find(|e| e.host == host && e.at >= from && e.text.contains(text))
            .map(|e| e.at)
    }

    /// Alerts seen so far.
    pub fn alerts(&self) -> &[AlertSeen] {
        &self.alerts
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Every alert of `kind` opened on `host`.
    pub fn opened(&self, host: &str, kind: &str) -> Vec<&AlertSeen> {
        self.alerts
            .iter()
            .filter(|a| a.host == host && a.kind == kind && a.phase == "opened")
            .collect()
    }

    /// One look at every watched host, and at journald once a second.
    pub fn tick(&mut self) -> io::Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted (Ctrl-C or SIGTERM): the lab is being taken down",
            ));
        }
        for (pid, host) in self.lab.gnomond_pids() {
            self.pids.insert(pid, host);
        }
        for host in WATCHED {
            let view = self.look(host);
            self.compare(host, view);
        }
        if self
            .last_journal
            .is_none_or(|at| at.elapsed() >= JOURNAL_EVERY)
        {
            self.last_journal = Some(Instant::now());
            self.read_alerts()?;
        }
        // Let the signal watcher run.
        self.runtime.block_on(tokio::task::yield_now());
        Ok(())
    }

    fn look(&mut self, host: &'static str) -> HostView {
        let mut view = HostView::default();
        if let Some(socket) = self.lab.control_socket(host) {
            view.status = gnomond_status(&socket).ok();
        }
        let Some((socket, client_dir)) = self.lab.chrony_endpoint(host) else {
            self.chrony.remove(host);
            return view;
        };
        if self.chrony.get(host).is_none_or(|(s, _)| *s != socket) {
            let mut config = ClientConfig::new(&socket, client_dir);
            config.timeout = Duration::from_millis(300);
            config.attempts = 1;
            self.chrony
                .insert(host, (socket.clone(), ChronyClient::new(config)));
        }
        let Some((_, client)) = self.chrony.get_mut(host) else {
            return view;
        };
        let answer = self.runtime.block_on(async {
            let sources = client.sources().await?;
            let tracking = client.tracking().await?;
            Ok::<_, gnomon_chrony::error::ChronyError>((sources, tracking))
        });
        if let Ok((sources, tracking)) = answer {
            view.chrony_up = true;
            view.selected = sources
                .iter()
                .find(|s| s.state == SelectionState::Selected)
                .and_then(source_name);
            view.sources = sources;
            view.correction = Some(tracking.system_offset);
        }
        view
    }

    /// Decisions of `host` first seen at or after the mark `since` (from
    /// the start when it is not set), by kind name (`step-clock`,
    /// `engage-fallbacks`, ...).
    pub fn decisions(&self, host: &str, kind: &str, since: &str) -> Vec<&Decision> {
        let from = self.marked(since).unwrap_or_default();
        self.decisions
            .get(host)
            .map(|d| {
                d.iter()
                    .filter(|(at, d)| *at >= from && d.kind.name() == kind)
                    .map(|(_, d)| d)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When (run time, to the observer's look) `host` first took a
    /// decision of `kind` since the mark `since`.
    pub fn decided_at(&self, host: &str, kind: &str, since: &str) -> Option<Duration> {
        let from = self.marked(since).unwrap_or_default();
        self.decisions
            .get(host)?
            .iter()
            .find(|(at, d)| *at >= from && d.kind.name() == kind)
            .map(|(at, _)| *at)
    }

    /// Every decision of `host` seen so far.
    pub fn all_decisions(&self, host: &str) -> Vec<&Decision> {
        self.decisions
            .get(host)
            .map(|d| d.iter().map(|(_, d)| d).collect())
            .unwrap_or_default()
    }

    /// Starts measuring the largest remaining correction afresh.
    pub fn reset_max_correction(&mut self) {
        self.max_correction.clear();
        self.corrections.clear();
    }

    /// How long, since the last reset, `host`'s remaining correction was
    /// more than `threshold` away from zero (from each look to the next).
    pub fn led_away_for(&self, host: &str, threshold: Duration) -> Duration {
        let Some(seen) = self.corrections.get(host) else {
            return Duration::ZERO;
        };
        seen.windows(2)
            .filter_map(|w| match w {
                [(at, off), (next, _)] if off.abs() > threshold => Some(next.saturating_sub(*at)),
                _ => None,
            })
            .sum()
    }

    /// The largest |remaining correction| chrony reported on `host` since
    /// the last reset.
    pub fn max_correction(&self, host: &str) -> Option<Offset> {
        self.max_correction.get(host).copied()
    }

    fn remember(&mut self, host: &'static str, view: &HostView) {
        if let Some(status) = &view.status {
            let now = self.elapsed();
            let seen = self.decisions.entry(host).or_default();
            for decision in &status.recent_decisions {
                let known = seen.iter().any(|(_, d)| {
                    d.at == decision.at && d.kind == decision.kind && d.reason == decision.reason
                });
                if !known {
                    seen.push((now, decision.clone()));
                }
            }
        }
        if let Some(correction) = view.correction {
            let now = self.elapsed();
            self.corrections
                .entry(host)
                .or_default()
                .push((now, correction));
            let max = self.max_correction.entry(host).or_insert(Offset::ZERO);
            if correction.abs() > max.abs() {
                *max = correction;
            }
        }
    }

    fn compare(&mut self, host: &'static str, view: HostView) {
        self.remember(host, &view);
        let old = self.views.insert(host, view).unwrap_or_default();
        let view = self.view(host);
        let mut lines = Vec::new();
        if old.chrony_up != view.chrony_up {
            lines.push(if view.chrony_up {
                "chronyd answers".to_owned()
            } else {
                "chronyd does not answer".to_owned()
            });
        }
        if old.status.is_some() != view.status.is_some() {
            lines.push(if view.status.is_some() {
                "gnomond answers".to_owned()
            } else {
                "gnomond does not answer".to_owned()
            });
        }
        if view.status.is_some() && old.state() != view.state() && old.status.is_some() {
            lines.push(format!("gnomon: {} → {}", old.state(), view.state()));
        }
        if let (Some(was), Some(is)) = (old.fallbacks_engaged(), view.fallbacks_engaged()) {
            if was != is {
                lines.push(if is {
                    "gnomon engaged the fallbacks (selectable in chrony)".to_owned()
                } else {
                    "gnomon released the fallbacks (back to noselect)".to_owned()
                });
            }
        }
        if let (Some(was), Some(is)) = (old.gate_open(), view.gate_open()) {
            if was != is {
                lines.push(if is {
                    "GPS gate to chrony opened".to_owned()
                } else {
                    "GPS gate to chrony closed".to_owned()
                });
            }
        }
        if view.chrony_up && old.selected != view.selected {
            lines.push(match &view.selected {
                Some(s) => format!("chrony selects {s}"),
                None => "chrony has no selected source".to_owned(),
            });
            self.count_selection(host, &view);
        }
        for line in lines {
            self.event(host, &line);
        }
    }

    fn count_selection(&mut self, host: &'static str, view: &HostView) {
        if !SERVERS.contains(&host) {
            return;
        }
        let at = self.elapsed();
        let previous = self.last_selected.insert(host, view.selected.clone());
        if previous.is_some() {
            *self
                .figures
                .source_changes
                .entry(host.to_owned())
                .or_default() += 1;
        }
        if let Some(selected) = &view.selected {
            self.figures
                .first_selected
                .entry(host.to_owned())
                .or_insert(at);
            let is_fallback =
                PUBS.contains(&selected.as_str()) || SERVERS.contains(&selected.as_str());
            if let (true, Some(lost)) = (is_fallback, self.marked("primary-lost")) {
                if at >= lost {
                    self.figures
                        .loss_to_fallback
                        .entry(host.to_owned())
                        .or_insert(at.saturating_sub(lost));
                }
            }
        }
    }

    fn read_alerts(&mut self) -> io::Result<()> {
        let mut cmd = self.lab.journal().journalctl();
        // journalctl cannot match on a field's presence: every entry is
        // read and those without GNOMON_ALERT skipped; the cursor keeps
        // each read to what is new.
        cmd.args([
            "-o",
            "json",
            "--all",
            "--output-fields=GNOMON_ALERT,GNOMON_PHASE,GNOMON_SUBJECT,GNOMON_ACTIVE_FOR_S,PRIORITY,MESSAGE,_PID",
        ]);
        if let Some(cursor) = &self.journal_cursor {
            cmd.arg(format!("--after-cursor={cursor}"));
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "reading the lab's journal: journalctl {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(line) else {
                continue;
            };
            let get = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            if let Some(cursor) = get("__CURSOR") {
                self.journal_cursor = Some(cursor);
            }
            let host = get("_PID")
                .and_then(|p| p.parse::<u32>().ok())
                .and_then(|p| self.pids.get(&p).copied())
                .unwrap_or("?");
            let Some(kind) = get("GNOMON_ALERT") else {
                // Besides alerts, the timeline shows the step requests and
                // chrony's answers, which gnomond logs.
                if let Some(message) = get("MESSAGE").filter(|m| m.contains("step the clock")) {
                    self.event(host, &format!("journal: {message}"));
                }
                continue;
            };
            let alert = AlertSeen {
                at: self.elapsed(),
                host: host.to_owned(),
                kind,
                phase: get("GNOMON_PHASE").unwrap_or_default(),
                priority: get("PRIORITY").and_then(|p| p.parse().ok()).unwrap_or(6),
                message: get("MESSAGE").unwrap_or_default(),
                subject: get("GNOMON_SUBJECT"),
                active_for_s: get("GNOMON_ACTIVE_FOR_S").and_then(|s| s.parse().ok()),
            };
            let line = format!(
                "journal: {} {} {}: {}",
                priority_name(alert.priority),
                alert.kind,
                alert.phase,
                alert.message
            );
            self.alerts.push(alert);
            self.event(host, &line);
        }
        Ok(())
    }

    /// Ends the run: the figures, the checks, the timeline.
    pub fn finish(mut self, name: &str, title: &str) -> Report {
        self.figures.watched = self.elapsed();
        // Every scenario: alerts counted per host, and none opened and
        // resolved within a second (a condition that flickers is no alert).
        let _ = self.read_alerts();
        for a in &self.alerts {
            let counts = self.figures.alert_events.entry(a.host.clone()).or_default();
            match a.phase.as_str() {
                "opened" => counts.0 += 1,
                "resolved" => counts.1 += 1,
                _ => {}
            }
        }
        let flapped: Vec<String> = self
            .alerts
            .iter()
            .filter(|a| a.phase == "resolved" && a.active_for_s == Some(0))
            .map(|a| {
                format!(
                    "{} {}{} at {:.1} s",
                    a.host,
                    a.kind,
                    a.subject
                        .as_deref()
                        .map_or_else(String::new, |s| format!(" ({s})")),
                    a.at.as_secs_f64()
                )
            })
            .collect();
        self.check(
            "no alert opened and resolved within a second",
            flapped.is_empty(),
            if flapped.is_empty() {
                format!("{} alert events", self.alerts.len())
            } else {
                flapped.join("; ")
            },
        );
        for host in SERVERS {
            self.figures
                .source_changes
                .entry(host.to_owned())
                .or_insert(0);
        }
        let diagnostics = if self.checks.iter().all(|c| c.passed) {
            String::new()
        } else {
            self.diagnostics()
        };
        Report {
            name: name.to_owned(),
            title: title.to_owned(),
            events: self.events,
            checks: self.checks,
            figures: self.figures,
            diagnostics,
        }
    }

    /// What a failed run leaves for whoever reads the CI log.
    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for host in WATCHED {
            if let Ok(out) = self.lab.gnomonctl(host, &["status"]) {
                let _ = writeln!(
                    text,
                    "--- {host}: gnomonctl status ---\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if let Ok(out) = self.lab.gnomonctl(host, &["sources"]) {
                let _ = writeln!(
                    text,
                    "--- {host}: gnomonctl sources ---\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            let log = self.lab.chronyd_log(host);
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let _ = writeln!(
                text,
                "--- {host}: chronyd log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        text
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub title: String,
    pub events: Vec<Event>,
    pub checks: Vec<Check>,
    pub figures: Figures,
    /// gnomonctl and chronyd output of a failed run.
    pub diagnostics: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The whole timeline as a table.
    pub fn timeline(&self) -> String {
        let mut text = format!("{}\n", timeline_header());
        for event in &self.events {
            text.push_str(&render_event(event));
            text.push('\n');
        }
        text
    }

    /// The figures and the checks, ending with PASS or FAIL.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "figures ({}):", self.name);
        for host in SERVERS {
            let f = &self.figures;
            let _ = writeln!(
                text,
                "  {host}: first selected source {}, primary loss → fallback selected {}, \
                 source changes {}",
                seconds_or_never(f.first_selected.get(host)),
                seconds_or_never(f.loss_to_fallback.get(host)),
                f.source_changes.get(host).copied().unwrap_or(0)
            );
        }
        let alerts: Vec<String> = self
            .figures
            .alert_events
            .iter()
            .map(|(host, (opened, resolved))| {
                format!("{host} {opened} opened, {resolved} resolved")
            })
            .collect();
        if !alerts.is_empty() {
            let _ = writeln!(text, "  alerts: {}", alerts.join("; "));
        }
        let _ = writeln!(text, "checks:");
        for check in &self.checks {
            let _ = writeln!(text, "  {}", render_check(check));
        }
        let passed = self.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(
            text,
            "{} {}: {passed}/{} checks passed",
            if self.passed() { "PASS" } else { "FAIL" },
            self.name,
            self.checks.len()
        );
        if !self.diagnostics.is_empty() {
            let _ = write!(text, "diagnostics:\n{}", self.diagnostics);
        }
        text
    }
}

/// `12.3 s`, or `never`.
pub fn seconds_or_never(d: Option<&Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}

pub fn timeline_header() -> String {
    format!(
        "{:>7}  {:<5} {:<12} {:<8} event",
        "time", "host", "gnomon", "chrony"
    )
}

fn render_event(e: &Event) -> String {
    format!(
        "{:>6.1}s  {:<5} {:<12} {:<8} {}",
        e.at.as_secs_f64(),
        e.host,
        e.gnomon,
        e.selected,
        e.text
    )
}

fn render_demo_event(e: &Event) -> String {
    match e.text.strip_prefix("journal: ") {
        Some(alert) => format!(
            "  [{:>5.1} s] {} journald ▸ {alert}",
            e.at.as_secs_f64(),
            e.host
        ),
        None => format!("  [{:>5.1} s] {}: {}", e.at.as_secs_f64(), e.host, e.text),
    }
}

/// Greedy word wrap.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        if line_len > 0 && line_len + 1 + word.chars().count() > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.chars().count();
    }
    out
}

fn render_check(c: &Check) -> String {
    format!(
        "[{}] {}{}",
        if c.passed { "pass" } else { "FAIL" },
        c.what,
        if c.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.detail)
        }
    )
}

fn priority_name(priority: u8) -> &'static str {
    match priority {
        0..=2 => "CRITICAL",
        3 | 4 => "warning",
        5 => "notice",
        _ => "info",
    }
}

/// Prints a block of text as it is (the demo's and compare's prose).
#[allow(clippy::print_stdout)]
pub fn print_block(text: &str) {
    println!("{text}");
    let _ = io::stdout().flush();
}

#[allow(clippy::print_stdout)]
fn print_line(line: &str) {
    println!("{line}");
    let _ = io::stdout().flush();
}

/// A lab host's name for a chrony source (`NMEA` for the refclock).
pub fn source_name(source: &SourceReport) -> Option<String> {
    match &source.id {
        ChronySourceId::Address(ip) => Some(
            host_of(*ip)
                .map(str::to_owned)
                .unwrap_or_else(|| ip.to_string()),
        ),
        ChronySourceId::Refclock(refid) => Some(refid.clone()),
    }
}

/// Asks gnomond for its status over the control socket.
fn gnomond_status(socket: &Path) -> io::Result<StatusReport> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let frame = ipc::encode_frame(&RequestFrame::new(Request::Status))
        .map_err(|e| io::Error::other(e.to_string()))?;
    stream.write_all(&frame)?;
    let mut header = [0u8; ipc::FRAME_HEADER];
    stream.read_exact(&mut header)?;
    let len =
        ipc::frame_len(header, ipc::MAX_FRAME).map_err(|e| io::Error::other(e.to_string()))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    match serde_json::from_slice::<Response>(&body) {
        Ok(Response::Status(report)) => Ok(*report),
        Ok(other) => Err(io::Error::other(format!(
            "gnomond at {} answered status with {other:?}",
            socket.display()
        ))),
        Err(e) => Err(io::Error::other(format!(
            "gnomond at {} answered with bad JSON: {e}",
            socket.display()
        ))),
    }
}

/// SIGINT/SIGTERM set `interrupted`, so the next tick returns an error and
/// the lab is dropped (every process stopped, every namespace removed).
fn watch_signals(
    runtime: &tokio::runtime::Runtime,
    interrupted: &Arc<AtomicBool>,
) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = runtime.enter();
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let mut stream = signal(kind)?;
        let flag = Arc::clone(interrupted);
        runtime.spawn(async move {
            if stream.recv().await.is_some() {
                flag.store(true, Ordering::Relaxed);
            }
        });
    }
    Ok(())
}
