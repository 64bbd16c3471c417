//! gnomond's logging: the one global tracing subscriber (journald or
//! stderr), and the engine's alerts and decisions as structured journal
//! entries. Every alert kind has a stable MESSAGE_ID explained in
//! `deploy/gnomon.catalog`, so `journalctl -x` shows the remedy.
//!
//! # Two writers into journald
//!
//! Ordinary logs (`tracing::info!` and friends, anywhere in gnomond) go
//! through `tracing-journald`. That layer cannot carry alerts: tracing
//! field names are `'static` while evidence keys are data; its PRIORITY
//! comes only from the tracing level, and no level maps to syslog `crit`
//! (2) without also making every ordinary `error!` critical; and a
//! `priority` or `message_id` field would be sent *beside* the layer's own
//! PRIORITY, not instead of it. So alerts are written by [`AlertWriter`], a
//! few lines of journald's native protocol ("KEY=VALUE\n" datagrams, the
//! length-prefixed form for values with newlines) on its own socket to the
//! same journald. Each field is then sent exactly once, with the names the
//! catalog and operators filter on: MESSAGE, MESSAGE_ID, PRIORITY,
//! SYSLOG_IDENTIFIER, GNOMON_ALERT, GNOMON_PHASE, GNOMON_STATE,
//! GNOMON_SUBJECT (when there is one), GNOMON_ACTIVE_FOR_S, GNOMON_RESOLUTION
//! (a resolution: what is true now) and
//! GNOMON_<KEY> per evidence pair.
//!
//! The tracing layer's field prefix is `GNOMON` instead of its default
//! `F`: a field `decision` in a tracing event becomes GNOMON_DECISION, in
//! the same namespace as the alert fields, and no tracing field can
//! collide with journald's own (PRIORITY, MESSAGE_ID, ...). Levels keep
//! tracing-journald's default mapping: ERROR 3, WARN 4, INFO 5 (notice),
//! DEBUG 6, TRACE 7.
//!
//! Without journald everything, alerts included, is one line per event on
//! stderr through the tracing fmt layer (colours only on a terminal, no
//! timestamp when stderr is itself a journal stream).

use std::{
    fmt,
    io::{self, IsTerminal, Write},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    str::FromStr,
    sync::OnceLock,
};

use gnomon_core::{
    alert::{AlertEvent, AlertPhase, Priority},
    engine::{Decision, EngineState},
    time::human_duration,
};
use tracing::Level;
use tracing_subscriber::{
    filter::{LevelFilter, Targets},
    layer::SubscriberExt,
    Layer,
};

/// journald's native socket. tracing-journald has the same path built in,
/// so both writers always reach the same journald.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// SYSLOG_IDENTIFIER of every entry, whatever the binary is called, so
/// `journalctl -t gnomond` finds logs and alerts alike.
pub const SYSLOG_IDENTIFIER: &str = "gnomond";

/// Prefix the tracing layer puts before every tracing field name (plus `_`).
const TRACING_FIELD_PREFIX: &str = "GNOMON";

/// tracing targets of the structured events, for filtering on stderr and
/// in the journal's TARGET field.
const ALERT_TARGET: &str = "gnomond::alert";
const DECISION_TARGET: &str = "gnomond::decision";

/// journald refuses longer field names.
const MAX_FIELD_NAME: usize = 64;

/// Alert fields an evidence key must not replace; such a key is written as
/// GNOMON_EVIDENCE_<KEY> instead (e.g. `primary-unusable` carries the state
/// it saw as evidence STATE).
const RESERVED_ALERT_KEYS: [&str; 6] = [
    "ALERT",
    "PHASE",
    "STATE",
    "SUBJECT",
    "ACTIVE_FOR_S",
    "EVIDENCE",
];

/// Where logs should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// journald when its native socket accepts a datagram, else stderr.
    /// This holds under systemd too (`JOURNAL_STREAM` set): the native
    /// socket keeps MESSAGE_ID, priorities and fields that a stream loses.
    #[default]
    Auto,
    /// journald, or fail.
    Journald,
    /// Always stderr.
    Stderr,
}

impl LogTarget {
    pub const fn name(self) -> &'static str {
        match self {
            LogTarget::Auto => "auto",
            LogTarget::Journald => "journald",
            LogTarget::Stderr => "stderr",
        }
    }
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LogTarget {
    type Err = UnknownLogTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [LogTarget::Auto, LogTarget::Journald, LogTarget::Stderr]
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownLogTarget(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown log target '{0}': expected auto, journald or stderr")]
pub struct UnknownLogTarget(pub String);

#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("logging to journald: its socket {socket} does not accept datagrams: {source}")]
    Journald {
        socket: &'static str,
        source: io::Error,
    },
    #[error("installing the log subscriber: {0}")]
    AlreadyInstalled(#[from] tracing::subscriber::SetGlobalDefaultError),
}

/// What [`init`] chose, for the daemon's first log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSink {
    journald: bool,
    /// Why `Auto` did not pick journald.
    journald_error: Option<String>,
}

impl LogSink {
    /// `"journald"` or `"stderr"`.
    pub fn kind(&self) -> &'static str {
        if self.journald {
            "journald"
        } else {
            "stderr"
        }
    }

    /// Why journald was not used, when `Auto` fell back to stderr.
    pub fn journald_error(&self) -> Option<&str> {
        self.journald_error.as_deref()
    }
}

impl fmt::Display for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.journald, &self.journald_error) {
            (true, _) => write!(f, "journald ({JOURNALD_SOCKET})"),
            (false, None) => f.write_str("stderr"),
            (false, Some(e)) => write!(f, "stderr (journald unavailable: {e})"),
        }
    }
}

/// How alerts leave the process; set once by [`init`]. Unset (tests, the
/// lab) means alerts are plain tracing events like in stderr mode.
static ALERT_ROUTE: OnceLock<AlertRoute> = OnceLock::new();

#[derive(Debug)]
enum AlertRoute {
    Journald(AlertWriter),
    Tracing,
}

/// Installs the global tracing subscriber (once per process). `verbose`
/// lowers gnomon's own level from info to debug; other crates stay at info.
pub fn init(target: LogTarget, verbose: bool) -> Result<LogSink, LogInitError> {
    let own_level = if verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    // Targets match by prefix: "gnomon" covers gnomond, gnomon_core, ...
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("gnomon", own_level);

    let journald = match target {
        LogTarget::Stderr => Err(None),
        LogTarget::Journald => Ok(open_journald().map_err(|source| LogInitError::Journald {
            socket: JOURNALD_SOCKET,
            source,
        })?),
        LogTarget::Auto => open_journald().map_err(|e| Some(e.to_string())),
    };
    match journald {
        Ok((layer, writer)) => {
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(filter).with(layer),
            )?;
            // Only the call that installed the subscriber gets here.
            let _ = ALERT_ROUTE.set(AlertRoute::Journald(writer));
            Ok(LogSink {
                journald: true,
                journald_error: None,
            })
        }
        Err(journald_error) => {
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry()
                    .with(filter)
                    .with(stderr_layer()),
            )?;
            let _ = ALERT_ROUTE.set(AlertRoute::Tracing);
            Ok(LogSink {
                journald: false,
                journald_error,
            })
        }
    }
}

fn open_journald() -> io::Result<(tracing_journald::Layer, AlertWriter)> {
    let layer = tracing_journald::layer()?
        .with_field_prefix(Some(TRACING_FIELD_PREFIX.to_owned()))
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned());
    let writer = AlertWriter::connect(Path::new(JOURNALD_SOCKET))?;
    Ok((layer, writer))
}

fn stderr_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    if stderr_is_journal_stream() {
        // journald stamps every line itself.
        layer.without_time().boxed()
    } else {
        layer.boxed()
    }
}

/// systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected;
/// it only counts if stderr is still that stream (not redirected since).
fn stderr_is_journal_stream() -> bool {
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    match rustix::fs::fstat(io::stderr()) {
        Ok(st) => expected.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino)),
        Err(_) => false,
    }
}

/// Logs one alert event (opened, repeated or resolved) with `state`, the
/// engine's state when it was raised. See the module docs for the fields.
pub fn alert(event: &AlertEvent, state: EngineState) {
    match ALERT_ROUTE.get() {
        Some(AlertRoute::Journald(writer)) => {
            if let Err(e) = writer.send(&alert_fields(event, state)) {
                // Lose no alert: under systemd stderr reaches the journal
                // too, just without the fields.
                let _ = writeln!(
                    io::stderr().lock(),
                    "{SYSLOG_IDENTIFIER}: {e}; the alert: {}",
                    AlertLine { event, state }
                );
            }
        }
        Some(AlertRoute::Tracing) | None => alert_to_tracing(event, state),
    }
}

fn alert_to_tracing(event: &AlertEvent, state: EngineState) {
    // A tracing level must be a constant, hence one event per level.
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: ALERT_TARGET,
                $level,
                alert = %event.alert.kind,
                phase = %event.phase,
                priority = %event.priority(),
                state = %state,
                subject = event.alert.subject.as_deref().map(tracing::field::display),
                active_for_s = event.active_for.as_secs(),
                evidence = %Evidence(&event.alert.evidence),
                "{}",
                OneLine(&alert_message(event)),
            )
        };
    }
    match event.priority() {
        Priority::Critical => emit!(Level::ERROR),
        Priority::Warning => emit!(Level::WARN),
        Priority::Notice => emit!(Level::INFO),
    }
}

/// Logs one decision of the engine at info (journald: notice), with fields
/// GNOMON_DECISION and GNOMON_STATE.
pub fn decision(d: &Decision) {
    tracing::info!(
        target: DECISION_TARGET,
        decision = %d.kind.name(),
        state = %d.state,
        "{}",
        OneLine(&d.reason),
    );
}

/// MESSAGE of an alert event: the alert's own words, with how long it has
/// lasted once it is not new.
pub fn alert_message(event: &AlertEvent) -> String {
    let message = &event.alert.message;
    match event.phase {
        AlertPhase::Opened => message.clone(),
        AlertPhase::Repeated => format!(
            "{message} (active for {})",
            human_duration(event.active_for)
        ),
        AlertPhase::Resolved => match &event.resolution {
            Some(now) => format!(
                "resolved after {}: {now} (was: {message})",
                human_duration(event.active_for)
            ),
            None => format!(
                "resolved after {}: {message}",
                human_duration(event.active_for)
            ),
        },
    }
}

/// Every journald field of an alert event, in order, each name once.
pub fn alert_fields(event: &AlertEvent, state: EngineState) -> Vec<(String, String)> {
    let alert = &event.alert;
    let mut fields: Vec<(String, String)> = vec![
        ("MESSAGE".into(), alert_message(event)),
        ("MESSAGE_ID".into(), alert.kind.message_id().into()),
        ("PRIORITY".into(), event.priority().syslog().to_string()),
        ("SYSLOG_IDENTIFIER".into(), SYSLOG_IDENTIFIER.into()),
        ("GNOMON_ALERT".into(), alert.kind.name().into()),
        ("GNOMON_PHASE".into(), event.phase.to_string()),
        ("GNOMON_STATE".into(), state.name().into()),
    ];
    if let Some(subject) = &alert.subject {
        fields.push(("GNOMON_SUBJECT".into(), subject.clone()));
    }
    fields.push((
        "GNOMON_ACTIVE_FOR_S".into(),
        event.active_for.as_secs().to_string(),
    ));
    if let Some(now) = &event.resolution {
        fields.push(("GNOMON_RESOLUTION".into(), now.clone()));
    }
    let fixed = fields.len();
    for (key, value) in &alert.evidence {
        let name = evidence_field_name(key);
        // A key given twice keeps its last value, as a map would.
        match fields.iter_mut().skip(fixed).find(|(n, _)| *n == name) {
            Some(existing) => existing.1.clone_from(value),
            None => fields.push((name, value.clone())),
        }
    }
    fields
}

/// GNOMON_<KEY> with the key reduced to what journald accepts (A-Z, 0-9,
/// `_`; at most 64 characters); reserved or empty keys go under
/// GNOMON_EVIDENCE.
fn evidence_field_name(key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = if key.is_empty() {
        "GNOMON_EVIDENCE".to_owned()
    } else if RESERVED_ALERT_KEYS.contains(&key.as_str()) {
        format!("GNOMON_EVIDENCE_{key}")
    } else {
        format!("GNOMON_{key}")
    };
    name.truncate(MAX_FIELD_NAME);
    name
}

/// Encodes fields in journald's native protocol: `NAME=value\n`, or for a
/// value containing a newline `NAME\n`, its length as 64-bit little
/// endian, the value, `\n`.
pub fn encode_native(fields: &[(String, String)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    for (name, value) in fields {
        buf.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            buf.push(b'\n');
            buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            buf.push(b'=');
        }
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// Sends alert entries to journald's native socket.
#[derive(Debug)]
pub struct AlertWriter {
    socket: UnixDatagram,
    path: PathBuf,
}

impl AlertWriter {
    /// Opens an unbound datagram socket and checks that `path` accepts an
    /// empty datagram (which journald ignores).
    pub fn connect(path: &Path) -> io::Result<AlertWriter> {
        let socket = UnixDatagram::unbound()?;
        let writer = AlertWriter {
            socket,
            path: path.to_owned(),
        };
        writer.send_raw(&[])?;
        Ok(writer)
    }

    pub fn send(&self, fields: &[(String, String)]) -> io::Result<()> {
        self.send_raw(&encode_native(fields))
    }

    fn send_raw(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket
            .send_to(datagram, &self.path)
            .map(drop)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("sending to journald at {}: {e}", self.path.display()),
                )
            })
    }
}

/// Evidence as `[KEY=value KEY="two words"]`.
struct Evidence<'a>(&'a [(String, String)]);

impl fmt::Display for Evidence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if value.is_empty()
                || value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == ']')
            {
                write!(f, "{key}={value:?}")?;
            } else {
                write!(f, "{key}={value}")?;
            }
        }
        f.write_str("]")
    }
}

/// Text with line breaks escaped, so an event stays one line on stderr.
struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// An alert as one stderr line when journald refused it.
struct AlertLine<'a> {
    event: &'a AlertEvent,
    state: EngineState,
}

impl fmt::Display for AlertLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let AlertLine { event, state } = self;
        write!(
            f,
            "{} {} {}: {} state={state}",
            event.priority(),
            event.alert.kind,
            event.phase,
            OneLine(&alert_message(event))
        )?;
        if let Some(subject) = &event.alert.subject {
            write!(f, " subject={}", OneLine(subject))?;
        }
        write!(
            f,
            " active_for_s={} evidence={}",
            event.active_for.as_secs(),
            Evidence(&event.alert.evidence)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gnomon_core::alert::{Alert, AlertKind};

    use super::*;

    fn event(phase: AlertPhase, alert: Alert, secs: u64) -> AlertEvent {
        AlertEvent {
            phase,
            alert,
            active_for: Duration::from_secs(secs),
            resolution: None,
        }
    }

    fn names(fields: &[(String, String)]) -> Vec<&str> {
        fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn critical_alert_fields() {
        let a = Alert::new(AlertKind::ClockBeforeFloor, "clock before floor")
            .with("clock", "1970-01-01T00:00:05Z")
            .with("floor_source", "build time");
        let f = alert_fields(&event(AlertPhase::Opened, a, 0), EngineState::Acquiring);
        assert_eq!(
            names(&f),
            [
                "MESSAGE",
                "MESSAGE_ID",
                "PRIORITY",
                "SYSLOG_IDENTIFIER",
                "GNOMON_ALERT",
                "GNOMON_PHASE",
                "GNOMON_STATE",
                "GNOMON_ACTIVE_FOR_S",
                "GNOMON_CLOCK",
                "GNOMON_FLOOR_SOURCE"
            ]
        );
        assert_eq!(
            value(&f, "MESSAGE_ID"),
            Some("26dcca6b148d4490a08a0293b5e1730b")
        );
        assert_eq!(value(&f, "PRIORITY"), Some("2"));
        assert_eq!(value(&f, "GNOMON_ALERT"), Some("clock-before-floor"));
        assert_eq!(value(&f, "GNOMON_STATE"), Some("acquiring"));
        assert_eq!(value(&f, "GNOMON_FLOOR_SOURCE"), Some("build time"));
        assert_eq!(value(&f, "MESSAGE"), Some("clock before floor"));
    }

    #[test]
    fn resolution_is_notice_and_says_how_long() {
        let a = Alert::new(AlertKind::FallbackUnreachable, "fallback silent").about("192.0.2.1");
        let f = alert_fields(
            &event(AlertPhase::Resolved, a.clone(), 300),
            EngineState::Primary,
        );
        assert_eq!(value(&f, "PRIORITY"), Some("5"));
        assert_eq!(value(&f, "GNOMON_PHASE"), Some("resolved"));
        assert_eq!(value(&f, "GNOMON_SUBJECT"), Some("192.0.2.1"));
        assert_eq!(value(&f, "GNOMON_ACTIVE_FOR_S"), Some("300"));
        assert_eq!(
            value(&f, "MESSAGE"),
            Some("resolved after 5m: fallback silent")
        );
        // What is true now leads; the alert's last words follow.
        let mut ev = event(AlertPhase::Resolved, a, 300);
        ev.resolution = Some("fallback 192.0.2.1 answers again".into());
        let f = alert_fields(&ev, EngineState::Primary);
        assert_eq!(
            value(&f, "MESSAGE"),
            Some("resolved after 5m: fallback 192.0.2.1 answers again (was: fallback silent)")
        );
        assert_eq!(
            value(&f, "GNOMON_RESOLUTION"),
            Some("fallback 192.0.2.1 answers again")
        );
    }

    #[test]
    fn repeated_message_says_how_long() {
        let a = Alert::new(AlertKind::FallbackEngaged, "fallbacks engaged: x");
        let e = event(AlertPhase::Repeated, a, 600);
        assert_eq!(alert_message(&e), "fallbacks engaged: x (active for 10m)");
        assert_eq!(
            value(&alert_fields(&e, EngineState::Fallback), "PRIORITY"),
            Some("4")
        );
    }

    #[test]
    fn evidence_keys_never_replace_alert_fields() {
        let a = Alert::new(AlertKind::PrimaryUnusable, "x")
            .with("state", "degraded")
            .with("gps.offset", "1s")
            .with("mode", "auto")
            .with("mode", "forced engaged")
            .with("", "anonymous");
        let f = alert_fields(&event(AlertPhase::Opened, a, 0), EngineState::Fallback);
        assert_eq!(value(&f, "GNOMON_STATE"), Some("fallback"));
        assert_eq!(value(&f, "GNOMON_EVIDENCE_STATE"), Some("degraded"));
        assert_eq!(value(&f, "GNOMON_GPS_OFFSET"), Some("1s"));
        assert_eq!(value(&f, "GNOMON_MODE"), Some("forced engaged"));
        assert_eq!(value(&f, "GNOMON_EVIDENCE"), Some("anonymous"));
        let mut n = names(&f);
        let total = n.len();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), total, "a field name appears twice: {f:?}");
        assert_eq!(evidence_field_name(&"K".repeat(100)).len(), MAX_FIELD_NAME);
    }

    #[test]
    fn native_encoding_uses_length_form_only_for_newlines() {
        let buf = encode_native(&[
            ("A".into(), "one".into()),
            ("B".into(), "two\nlines".into()),
            ("C".into(), String::new()),
        ]);
        let mut want = b"A=one\nB\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\nC=\n");
        assert_eq!(buf, want);
    }

    #[test]
    fn stderr_line_has_everything_on_one_line() {
        let a = Alert::new(AlertKind::GpsInsane, "gps wrong\nreally")
            .about("gps0")
            .with("floor", "2025-01-01T00:00:00Z")
            .with("why", "two words");
        let line = AlertLine {
            event: &event(AlertPhase::Opened, a, 0),
            state: EngineState::Fallback,
        }
        .to_string();
        assert_eq!(
            line,
            "crit gps-insane opened: gps wrong\\nreally state=fallback subject=gps0 active_for_s=0 \
             evidence=[FLOOR=2025-01-01T00:00:00Z WHY=\"two words\"]"
        );
    }

    #[test]
    fn log_targets_parse_by_name() {
        for t in [LogTarget::Auto, LogTarget::Journald, LogTarget::Stderr] {
            assert_eq!(t.name().parse::<LogTarget>().ok(), Some(t));
        }
        assert!("syslog".parse::<LogTarget>().is_err());
    }
}
