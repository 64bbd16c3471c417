//! The control protocol between gnomonctl and gnomond: the messages, and the
//! frame that carries them over the control socket (a 4-byte big-endian
//! length, then that many bytes of JSON, capped at [`MAX_FRAME`]).
//!
//! One request per connection is typical, but a connection may carry
//! several; every request gets exactly one response.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    chrony::{ChronySnapshot, SourceStatistics},
    config::Role,
    engine::{Decision, GpsStatus, OperatorCommand, Status},
    gps::PpsEdge,
    samples::PlotData,
    source::SourcePlan,
    time::WallTime,
};

/// Protocol version; a response from a daemon speaking another version is
/// reported as such instead of being half-understood.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts. A status with every decision of
/// the history fits comfortably; anything larger is an error.
pub const MAX_FRAME: usize = 1024 * 1024;

/// Bytes of the length prefix.
pub const FRAME_HEADER: usize = 4;

/// What gnomonctl can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "request")]
pub enum Request {
    /// The engine's status plus the daemon's own facts.
    Status,
    /// chrony's sources joined with gnomon's plan.
    Sources,
    /// The GPS side: receiver, decoder, gate (role `gps`).
    Gps,
    /// The pulse-per-second side (role `gps`).
    Pps,
    /// The newest `limit` decisions, oldest first.
    History { limit: Option<usize> },
    /// Live preflight checks.
    Check,
    /// The offset history of the last `since`, reduced to at most `points`
    /// points per series.
    Plot { since: Duration, points: usize },
    /// The `[certs]` files' standing.
    Certs,
    /// A mutating operator command: root or the admin group only.
    Command(OperatorCommand),
}

impl Request {
    /// Whether the request changes what gnomond does (and so needs an admin).
    pub fn is_mutating(&self) -> bool {
        matches!(self, Request::Command(_))
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Sources => "sources",
            Request::Gps => "gps",
            Request::Pps => "pps",
            Request::History { .. } => "history",
            Request::Check => "check",
            Request::Plot { .. } => "plot",
            Request::Certs => "certs",
            Request::Command(OperatorCommand::Freeze { .. }) => "freeze",
            Request::Command(OperatorCommand::Thaw) => "thaw",
            Request::Command(OperatorCommand::Fallback { .. }) => "fallback",
            Request::Command(OperatorCommand::Reassess) => "reassess",
        }
    }
}

/// The envelope every request is sent in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RequestFrame {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

impl RequestFrame {
    pub fn new(request: Request) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            request,
        }
    }
}

/// What gnomond answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "response")]
pub enum Response {
    Status(Box<StatusReport>),
    Sources(Box<SourcesReport>),
    Gps(Box<GpsReport>),
    Pps(Box<PpsReport>),
    History(HistoryReport),
    Check(CheckReport),
    Plot(Box<PlotReport>),
    Certs(Box<CertsReport>),
    /// A command was accepted; the words say what it changed.
    Done {
        message: String,
    },
    Error(ErrorReply),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Not JSON, not a known request, or a frame that breaks the framing.
    Malformed,
    /// Larger than [`MAX_FRAME`].
    TooLarge,
    /// The peer may not do this.
    Forbidden,
    /// Another protocol version.
    Version,
    /// Not applicable here (e.g. `gps` on a client-role host).
    Unsupported,
    /// gnomond could not do it now (e.g. shutting down).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

/// Facts about the running daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub config_path: String,
    /// System clock when the daemon started.
    pub started: WallTime,
    pub uptime: Duration,
    /// Engine passes so far (progress, as the watchdog sees it).
    pub passes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub daemon: DaemonInfo,
    pub status: Status,
    /// The newest decisions, oldest first (a few, for the status page).
    pub recent_decisions: Vec<Decision>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcesReport {
    /// What gnomon wants chrony's sources file to say.
    pub plan: SourcePlan,
    pub plan_applied: bool,
    /// chrony's view, if chrony answered recently.
    pub chrony: Option<ChronySnapshot>,
    pub sourcestats: Vec<SourceStatistics>,
    /// The file gnomon writes for chrony's `sourcedir`.
    pub sources_file: String,
}

/// Where NMEA comes from and how reading it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsReport {
    /// `uart`, `serial` or `gpsd`.
    pub source: String,
    /// Device path or gpsd address.
    pub device: String,
    /// Whether the device or gpsd is currently open.
    pub connected: bool,
    /// The last reason reading failed, if it did.
    pub last_error: Option<String>,
    pub bytes_read: u64,
    pub epochs: u64,
    /// Epochs read several at once after a stall, not used for timing.
    #[serde(default)]
    pub backlog_dropped: u64,
    /// Samples sent into chrony's SOCK refclock.
    pub samples_sent: u64,
    /// Samples withheld by the closed gate or without a pairing pulse.
    pub samples_withheld: u64,
    pub sock_refclock: String,
    pub status: Option<GpsStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpsReport {
    /// `kernel`, `gpio`, `socket` or `none`.
    pub kind: String,
    pub device: String,
    pub last_error: Option<String>,
    /// The newest edges, oldest first.
    pub recent_edges: Vec<PpsEdge>,
    pub status: Option<GpsStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryReport {
    pub decisions: Vec<Decision>,
    /// Decisions kept in all (the ring's fill).
    pub kept: usize,
}

/// The offset history for `gnomonctl plot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotReport {
    /// The host's name, for the plot's title.
    pub host: String,
    pub role: Role,
    /// `[history]` as running.
    pub interval: Duration,
    pub keep: Duration,
    /// Samples held in all, and the oldest one's time.
    pub kept: usize,
    pub oldest: Option<WallTime>,
    /// The window asked for, reduced.
    pub data: PlotData,
}

/// The `[certs]` files for `gnomonctl certs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsReport {
    /// The system clock when judged.
    pub system: Option<WallTime>,
    /// What the certificates were judged against besides the system clock.
    pub trusted: Option<crate::certs::TrustedTime>,
    pub warn_before: Duration,
    pub check_every: Duration,
    pub certs: Vec<crate::certs::CertStatus>,
}

/// The outcome of one preflight check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckOutcome {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckItem {
    pub name: String,
    pub outcome: CheckOutcome,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// The worst outcome of all checks (`Pass` when there are none).
    pub fn worst(&self) -> CheckOutcome {
        self.items
            .iter()
            .map(|i| i.outcome)
            .max()
            .unwrap_or(CheckOutcome::Pass)
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
}

/// The 4-byte header for a body of `len` bytes.
pub fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER], FrameError> {
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    let len = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: MAX_FRAME,
    })?;
    Ok(len.to_be_bytes())
}

/// The body length a header announces, refused when over `max`.
pub fn frame_len(header: [u8; FRAME_HEADER], max: usize) -> Result<usize, FrameError> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// A whole frame (header and body) for `value`.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeFrameError> {
    let body = serde_json::to_vec(value).map_err(|e| EncodeFrameError::Json(e.to_string()))?;
    let header = frame_header(body.len()).map_err(EncodeFrameError::Frame)?;
    let mut out = Vec::with_capacity(FRAME_HEADER + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeFrameError {
    #[error("cannot encode message as JSON: {0}")]
    Json(String),
    #[error(transparent)]
    Frame(FrameError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FallbackMode;

    #[test]
    fn request_json_is_stable() {
        let f = RequestFrame::new(Request::Command(OperatorCommand::Freeze {
            reason: "maintenance".into(),
        }));
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"request":"command","command":"freeze","reason":"maintenance"}"#
        );
        let back: RequestFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        let h: RequestFrame =
            serde_json::from_str(r#"{"version":1,"request":"history","limit":5}"#).unwrap();
        assert_eq!(h.request, Request::History { limit: Some(5) });
        let fb = RequestFrame::new(Request::Command(OperatorCommand::Fallback {
            mode: FallbackMode::Engaged,
        }));
        let back: RequestFrame =
            serde_json::from_str(&serde_json::to_string(&fb).unwrap()).unwrap();
        assert_eq!(back, fb);
    }

    #[test]
    fn only_commands_mutate() {
        assert!(!Request::Status.is_mutating());
        assert!(!Request::Check.is_mutating());
        assert!(Request::Command(OperatorCommand::Thaw).is_mutating());
        assert!(Request::Command(OperatorCommand::Reassess).is_mutating());
    }

    #[test]
    fn unknown_request_is_an_error() {
        assert!(
            serde_json::from_str::<RequestFrame>(r#"{"version":1,"request":"rm-rf"}"#).is_err()
        );
        assert!(serde_json::from_str::<RequestFrame>(r#"{"request":"status"}"#).is_err());
    }

    #[test]
    fn frame_limits() {
        assert_eq!(frame_len(frame_header(10).unwrap(), MAX_FRAME), Ok(10));
        assert_eq!(frame_len([0, 0, 0, 0], MAX_FRAME), Err(FrameError::Empty));
        assert!(matches!(
            frame_len([0xff, 0xff, 0xff, 0xff], MAX_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(frame_header(MAX_FRAME + 1).is_err());
        let f = encode_frame(&RequestFrame::new(Request::Status)).unwrap();
        let len = frame_len([f[0], f[1], f[2], f[3]], MAX_FRAME).unwrap();
        assert_eq!(len, f.len() - FRAME_HEADER);
    }

    #[test]
    fn check_report_worst() {
        let item = |o| CheckItem {
            name: "x".into(),
            outcome: o,
            detail: String::new(),
        };
        assert_eq!(CheckReport { items: vec![] }.worst(), CheckOutcome::Pass);
        let r = CheckReport {
            items: vec![
                item(CheckOutcome::Pass),
                item(CheckOutcome::Fail),
                item(CheckOutcome::Warn),
            ],
        };
        assert_eq!(r.worst(), CheckOutcome::Fail);
    }
}
