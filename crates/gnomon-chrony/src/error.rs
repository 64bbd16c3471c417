//! What can go wrong between gnomon and chrony's command socket. Every
//! message names the request, the socket and what the operator can do
//! about it, because these errors end up in alerts and in `gnomonctl`.

use std::{fmt, io, path::PathBuf, time::Duration};

/// A failed exchange with chronyd over its command socket.
#[derive(Debug, thiserror::Error)]
pub enum ChronyError {
    /// The server socket does not exist (chronyd stopped, or another path).
    #[error(
        "{request}: chronyd's command socket {path} does not exist: is chronyd \
         running, and started with `bindcmdaddress {path}`?",
        path = .path.display()
    )]
    SocketNotFound {
        request: &'static str,
        path: PathBuf,
    },

    /// The socket file exists but nobody reads it (chronyd died or restarts).
    #[error(
        "{request}: chronyd is not running or not listening on {path} (connection \
         refused): is chronyd started with bindcmdaddress {path}?",
        path = .path.display()
    )]
    NotListening {
        request: &'static str,
        path: PathBuf,
    },

    /// We may not write to the socket (or may not enter its directory).
    #[error(
        "{request}: permission denied on {path}: {advice}",
        path = .path.display(),
        advice = permission_advice(.group, *.in_group, *.socket_mode)
    )]
    PermissionDenied {
        request: &'static str,
        path: PathBuf,
        /// The group owning the socket's directory, chrony's group.
        group: String,
        /// Whether this process already has that group, when known.
        in_group: Option<bool>,
        /// The socket's mode when we could read it.
        socket_mode: Option<u32>,
    },

    /// No matching reply after every attempt.
    #[error(
        "{request}: no reply from chronyd on {path} after {attempts} attempt(s) of \
         {timeout:?}: is chronyd hung or overloaded? When chronyd runs as its own \
         user it must be able to reach gnomon's client socket in {client_dir} \
         (that directory must be searchable by chrony's user)",
        path = .path.display(),
        client_dir = .client_dir.display()
    )]
    Timeout {
        request: &'static str,
        path: PathBuf,
        attempts: u32,
        timeout: Duration,
        client_dir: PathBuf,
    },

    /// chronyd answered with a status other than success.
    #[error(
        "{request}: chronyd on {path} answered {status}: {hint}",
        path = .path.display(),
        hint = .status.hint()
    )]
    Status {
        request: &'static str,
        path: PathBuf,
        status: ChronyStatus,
    },

    /// A reply with our sequence number that does not decode, or of the
    /// wrong kind.
    #[error(
        "{request}: malformed reply from {path}: {detail} (is this chronyd 4.x, with \
         the same protocol version as gnomon's?)",
        path = .path.display()
    )]
    MalformedReply {
        request: &'static str,
        path: PathBuf,
        detail: String,
    },

    /// Any other IO failure, with what we were doing.
    #[error(
        "{request}: {action} {path}: {source}: {fix}",
        path = .path.display()
    )]
    Io {
        request: &'static str,
        action: &'static str,
        path: PathBuf,
        fix: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ChronyError {
    /// The request that failed, as named in the message.
    pub fn request(&self) -> &'static str {
        match self {
            ChronyError::SocketNotFound { request, .. }
            | ChronyError::NotListening { request, .. }
            | ChronyError::PermissionDenied { request, .. }
            | ChronyError::Timeout { request, .. }
            | ChronyError::Status { request, .. }
            | ChronyError::MalformedReply { request, .. }
            | ChronyError::Io { request, .. } => request,
        }
    }

    /// True when chronyd is simply not there (stopped, restarting): the
    /// caller retries on its next pass.
    pub fn is_chronyd_down(&self) -> bool {
        matches!(
            self,
            ChronyError::SocketNotFound { .. }
                | ChronyError::NotListening { .. }
                | ChronyError::Timeout { .. }
        )
    }

    /// chrony's status, when chronyd answered with one.
    pub fn status(&self) -> Option<ChronyStatus> {
        match self {
            ChronyError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn permission_advice(group: &str, in_group: Option<bool>, socket_mode: Option<u32>) -> String {
    let closed_socket = socket_mode.filter(|mode| mode & 0o020 == 0);
    let umask_fix = "have chronyd create it group-writable (UMask=0007 in a systemd drop-in \
                     for chrony.service) or run gnomond as root";
    match (in_group, closed_socket) {
        (Some(true), Some(mode)) => format!(
            "gnomon is already in group {group}, but chronyd created the socket with mode \
             {:04o}, without group write: {umask_fix}",
            mode & 0o7777
        ),
        (_, Some(mode)) => format!(
            "add the gnomon user to group {group} (or run gnomond as a member of chrony's \
             group); the socket itself is mode {:04o}, so chrony's group cannot write it \
             either: {umask_fix}",
            mode & 0o7777
        ),
        (_, None) => format!(
            "add the gnomon user to group {group} (or run gnomond as a member of chrony's group)"
        ),
    }
}

/// A status code of chrony's command protocol (`STT_*` in chrony's
/// `candm.h`). Kept as the raw number: chrony adds codes over time, and an
/// unknown one must still be reported, not fail to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChronyStatus(pub u16);

impl ChronyStatus {
    pub const SUCCESS: ChronyStatus = ChronyStatus(0);
    pub const FAILED: ChronyStatus = ChronyStatus(1);
    pub const UNAUTH: ChronyStatus = ChronyStatus(2);
    pub const INVALID: ChronyStatus = ChronyStatus(3);
    pub const NO_SUCH_SOURCE: ChronyStatus = ChronyStatus(4);
    pub const NOT_ENABLED: ChronyStatus = ChronyStatus(6);
    pub const SOURCE_ALREADY_KNOWN: ChronyStatus = ChronyStatus(11);
    pub const TOO_MANY_SOURCES: ChronyStatus = ChronyStatus(12);
    pub const BAD_PKT_VERSION: ChronyStatus = ChronyStatus(18);
    pub const BAD_PKT_LENGTH: ChronyStatus = ChronyStatus(19);
    pub const INVALID_NAME: ChronyStatus = ChronyStatus(21);

    /// chronyc's wording for the status.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "OK",
            1 => "failure",
            2 => "not authorised",
            3 => "invalid command",
            4 => "no such source",
            5 => "duplicate or stale logon",
            6 => "facility not enabled in daemon",
            7 => "bad subnet",
            8 => "access allowed",
            9 => "access denied",
            10 => "no command access from this host",
            11 => "source already present",
            12 => "too many sources present",
            13 => "RTC driver not running",
            14 => "cannot write RTC parameters",
            15 => "client logging is not active in the daemon",
            16 => "sample index out of range",
            17 => "invalid address family",
            18 => "protocol version mismatch",
            19 => "packet length mismatch",
            21 => "invalid name",
            _ => "unknown status",
        }
    }

    /// What to check, per status.
    pub fn hint(self) -> &'static str {
        match self.0 {
            3 => "this chronyd does not know the request (older than chrony 4.2?)",
            4 => "chronyd has no source with that address or index",
            6 => "the feature is not enabled in chronyd's configuration",
            11 => "chronyd already has this source",
            12 => "chronyd's source limit is reached",
            18 | 19 => "gnomon and chronyd speak different protocol versions: use chrony 4.x",
            21 => "chronyd rejected the source name",
            2 | 10 => "commands over the Unix socket are always authorised: check the socket path",
            _ => "see chronyd's log",
        }
    }
}

impl fmt::Display for ChronyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" (status {})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_request_path_and_fix() {
        let e = ChronyError::PermissionDenied {
            request: "tracking",
            path: PathBuf::from("/run/chrony/chronyd.sock"),
            group: "_chrony".into(),
            in_group: Some(false),
            socket_mode: Some(0o140_770),
        };
        assert_eq!(
            e.to_string(),
            "tracking: permission denied on /run/chrony/chronyd.sock: add the gnomon user \
             to group _chrony (or run gnomond as a member of chrony's group)"
        );
        let e = ChronyError::PermissionDenied {
            request: "tracking",
            path: PathBuf::from("/run/chrony/chronyd.sock"),
            group: "_chrony".into(),
            in_group: None,
            socket_mode: Some(0o140_755),
        };
        assert!(
            e.to_string()
                .contains("add the gnomon user to group _chrony"),
            "{e}"
        );
        assert!(e.to_string().contains("mode 0755"), "{e}");
        assert!(e.to_string().contains("UMask=0007"), "{e}");
        let e = ChronyError::PermissionDenied {
            request: "tracking",
            path: PathBuf::from("/run/chrony/chronyd.sock"),
            group: "_chrony".into(),
            in_group: Some(true),
            socket_mode: Some(0o140_755),
        };
        assert!(e.to_string().contains("already in group _chrony"), "{e}");
        assert!(!e.to_string().contains("add the gnomon user"), "{e}");

        let e = ChronyError::NotListening {
            request: "sources",
            path: PathBuf::from("/x/chronyd.sock"),
        };
        assert_eq!(
            e.to_string(),
            "sources: chronyd is not running or not listening on /x/chronyd.sock \
             (connection refused): is chronyd started with bindcmdaddress /x/chronyd.sock?"
        );
        assert!(e.is_chronyd_down());

        let e = ChronyError::Status {
            request: "delete source",
            path: PathBuf::from("/x/chronyd.sock"),
            status: ChronyStatus::NO_SUCH_SOURCE,
        };
        assert!(
            e.to_string().contains("\"no such source\" (status 4)"),
            "{e}"
        );
        assert_eq!(e.status(), Some(ChronyStatus::NO_SUCH_SOURCE));
        assert_eq!(ChronyStatus(99).name(), "unknown status");
    }
}
