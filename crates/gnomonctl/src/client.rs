//! gnomonctl's side of the control socket: one connection per call, one
//! length-prefixed JSON request out, one response back, all within a
//! deadline. Failures are told in words that say what to do, and carry a
//! sysexits code for scripts.

use std::{
    fmt, io,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use gnomon_core::ipc::{
    encode_frame, frame_len, Request, RequestFrame, Response, FRAME_HEADER, MAX_FRAME,
};

/// Where gnomond listens unless its configuration says otherwise.
pub(crate) const DEFAULT_SOCKET: &str = "/run/gnomon/gnomon.sock";

/// Why a call to gnomond failed before it could answer.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// No socket file, or nobody answers on it.
    NotRunning {
        path: PathBuf,
    },
    /// The socket (or its directory) is closed to this user.
    PermissionDenied {
        path: PathBuf,
    },
    Timeout {
        path: PathBuf,
        after: Duration,
    },
    /// A reply that is not a frame or not a response this gnomonctl knows.
    Protocol {
        path: PathBuf,
        detail: String,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl ClientError {
    /// The sysexits(3) code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotRunning { .. } => 69,       // EX_UNAVAILABLE
            ClientError::PermissionDenied { .. } => 77, // EX_NOPERM
            ClientError::Timeout { .. } => 75,          // EX_TEMPFAIL
            ClientError::Protocol { .. } => 76,         // EX_PROTOCOL
            ClientError::Io { .. } => 74,               // EX_IOERR
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotRunning { path } => write!(
                f,
                "gnomond is not running (no socket answering at {}): start it with \
                 `systemctl start gnomond`, or point --socket at its control socket",
                path.display()
            ),
            ClientError::PermissionDenied { path } => write!(
                f,
                "permission denied connecting to {}: run as root, or add your user to \
                 gnomond's read group (control.read-group, `gnomon` by default) and log in again",
                path.display()
            ),
            ClientError::Timeout { path, after } => write!(
                f,
                "gnomond did not answer on {} within {after:?}: it may be busy or stuck \
                 (see `journalctl -u gnomond`), or raise --timeout",
                path.display()
            ),
            ClientError::Protocol { path, detail } => write!(
                f,
                "unexpected reply from gnomond on {}: {detail} (are gnomonctl and gnomond \
                 the same version?)",
                path.display()
            ),
            ClientError::Io { path, error } => {
                write!(f, "talking to gnomond on {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Sends `request` to the gnomond at `socket` and returns its response,
/// all within `timeout`. A refusal by gnomond (`Response::Error`) is a
/// response like any other; the caller decides what it means.
pub(crate) fn call(
    socket: &Path,
    request: Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let exchange = Exchange {
        path: socket,
        deadline: Instant::now() + timeout,
        timeout,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| exchange.connect_error(e))?;
    let frame = encode_frame(&RequestFrame::new(request)).map_err(|e| ClientError::Protocol {
        path: socket.to_owned(),
        detail: format!("cannot encode the request: {e}"),
    })?;
    exchange.arm(&stream)?;
    match stream.write_all(&frame) {
        Ok(()) => exchange.read_response(&mut stream),
        // gnomond may have answered and closed before reading (e.g. all
        // its connection slots taken): its reply says more than EPIPE.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            exchange
                .read_response(&mut stream)
                .map_err(|_| exchange.io_error(e, "sending the request"))
        }
        Err(e) => Err(exchange.io_error(e, "sending the request")),
    }
}

/// One call's socket path and deadline, for timeouts and error wording.
struct Exchange<'a> {
    path: &'a Path,
    deadline: Instant,
    timeout: Duration,
}

impl Exchange<'_> {
    /// Reads one response frame, the deadline holding for all of it.
    fn read_response(&self, stream: &mut UnixStream) -> Result<Response, ClientError> {
        let mut header = [0u8; FRAME_HEADER];
        self.arm(stream)?;
        stream
            .read_exact(&mut header)
            .map_err(|e| self.io_error(e, "reading the reply"))?;
        let len = frame_len(header, MAX_FRAME).map_err(|e| self.protocol(format!("reply {e}")))?;
        let mut body = vec![0u8; len];
        let mut filled = 0;
        // The read timeout is per read; re-arm it so the deadline holds for
        // the whole body however it trickles in.
        while filled < len {
            self.arm(stream)?;
            let rest = body.get_mut(filled..).unwrap_or_default();
            match stream.read(rest) {
                Ok(0) => {
                    return Err(self.protocol(format!(
                        "the connection closed after {filled} of {len} reply bytes"
                    )))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e, "reading the reply")),
            }
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.protocol(format!("the reply is not a response gnomonctl knows: {e}")))
    }

    /// Sets the socket's timeouts to what is left of the deadline.
    fn arm(&self, stream: &UnixStream) -> Result<(), ClientError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.set_write_timeout(Some(left)))
            .map_err(|error| ClientError::Io {
                path: self.path.to_owned(),
                error,
            })
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Timeout {
            path: self.path.to_owned(),
            after: self.timeout,
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.to_owned(),
            detail,
        }
    }

    fn connect_error(&self, error: io::Error) -> ClientError {
        let path = self.path.to_owned();
        match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { path }
            }
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
            _ => ClientError::Io { path, error },
        }
    }

    fn io_error(&self, error: io::Error, doing: &str) -> ClientError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
            io::ErrorKind::UnexpectedEof => {
                self.protocol(format!("the connection closed while {doing}"))
            }
            _ => ClientError::Io {
                path: self.path.to_owned(),
                error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::net::UnixListener, thread};

    use gnomon_core::{
        engine::OperatorCommand,
        ipc::{frame_header, ErrorKind, ErrorReply},
    };

    use super::*;

    /// A private temp directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "gnomonctl-client-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn socket(&self) -> PathBuf {
            self.0.join("gnomon.sock")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A one-connection server: reads the request frame, hands it to
    /// `reply`, writes back whatever bytes that returns.
    fn one_shot_server(
        path: &Path,
        reply: impl FnOnce(RequestFrame) -> Vec<u8> + Send + 'static,
    ) -> thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut header = [0u8; FRAME_HEADER];
            stream.read_exact(&mut header).unwrap();
            let mut body = vec![0u8; frame_len(header, MAX_FRAME).unwrap()];
            stream.read_exact(&mut body).unwrap();
            let request: RequestFrame = serde_json::from_slice(&body).unwrap();
            let bytes = reply(request);
            let _ = stream.write_all(&bytes);
            // Hold the connection a moment so a short reply is not an EOF race.
            thread::sleep(Duration::from_millis(300));
        })
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn a_response_comes_back() {
        let dir = TempDir::new("ok");
        let server = one_shot_server(&dir.socket(), |request| {
            assert_eq!(
                request,
                RequestFrame::new(Request::History { limit: Some(3) })
            );
            encode_frame(&Response::Done {
                message: "fine".into(),
            })
            .unwrap()
        });
        let response = call(&dir.socket(), Request::History { limit: Some(3) }, TIMEOUT).unwrap();
        assert_eq!(
            response,
            Response::Done {
                message: "fine".into()
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn a_refusal_is_a_response() {
        let dir = TempDir::new("refused");
        let refusal = Response::Error(ErrorReply {
            kind: ErrorKind::Forbidden,
            message: "freeze needs root".into(),
        });
        let sent = refusal.clone();
        let server = one_shot_server(&dir.socket(), move |_| encode_frame(&sent).unwrap());
        let freeze = Request::Command(OperatorCommand::Freeze { reason: "x".into() });
        assert_eq!(call(&dir.socket(), freeze, TIMEOUT).unwrap(), refusal);
        server.join().unwrap();
    }

    #[test]
    fn a_reply_sent_without_reading_the_request_is_read() {
        // What gnomond does when all its connection slots are taken.
        let dir = TempDir::new("busy");
        let listener = UnixListener::bind(dir.socket()).unwrap();
        let busy = Response::Error(ErrorReply {
            kind: ErrorKind::Unavailable,
            message: "busy".into(),
        });
        let sent = busy.clone();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(&encode_frame(&sent).unwrap()).unwrap();
        });
        thread::sleep(Duration::from_millis(50));
        assert_eq!(call(&dir.socket(), Request::Status, TIMEOUT).unwrap(), busy);
        server.join().unwrap();
    }

    #[test]
    fn no_daemon_is_not_running() {
        let dir = TempDir::new("absent");
        let err = call(&dir.socket(), Request::Status, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 69);
        let message = err.to_string();
        assert!(
            message.contains("gnomond is not running")
                && message.contains(&dir.socket().display().to_string()),
            "{message}"
        );

        // A socket file left by a daemon that died: nobody answers.
        drop(UnixListener::bind(dir.socket()).unwrap());
        let err = call(&dir.socket(), Request::Status, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = TempDir::new("silent");
        let _listener = UnixListener::bind(dir.socket()).unwrap();
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = call(&dir.socket(), Request::Status, timeout).unwrap_err();
        assert!(
            matches!(err, ClientError::Timeout { after, .. } if after == timeout),
            "{err:?}"
        );
        assert!(started.elapsed() >= timeout);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(err.exit_code(), 75);
        assert!(err.to_string().contains("did not answer"), "{err}");
    }

    #[test]
    fn bad_replies_are_protocol_errors() {
        let oversized: Vec<u8> = vec![0xFF, 0xFF, 0xFF, 0xFF];
        let mut not_json = frame_header(5).unwrap().to_vec();
        not_json.extend_from_slice(b"hello");
        let mut unknown = Vec::new();
        let body = br#"{"response":"from-the-future"}"#;
        unknown.extend_from_slice(&frame_header(body.len()).unwrap());
        unknown.extend_from_slice(body);
        let mut cut = frame_header(100).unwrap().to_vec();
        cut.extend_from_slice(b"{\"resp");
        let cases = [
            ("oversized", oversized, "exceeds"),
            ("not-json", not_json, "not a response"),
            ("unknown", unknown, "not a response"),
            ("cut", cut, "closed after 6 of 100"),
            ("nothing", Vec::new(), "closed while reading the reply"),
        ];
        for (name, bytes, words) in cases {
            let dir = TempDir::new(name);
            let server = one_shot_server(&dir.socket(), move |_| bytes);
            let err = call(&dir.socket(), Request::Status, TIMEOUT).unwrap_err();
            assert!(
                matches!(err, ClientError::Protocol { .. }),
                "{name}: {err:?}"
            );
            assert_eq!(err.exit_code(), 76);
            assert!(err.to_string().contains(words), "{name}: {err}");
            server.join().unwrap();
        }
    }

    #[test]
    fn connect_errors_map_to_what_the_user_can_do() {
        let path = Path::new("/run/gnomon/gnomon.sock");
        let exchange = Exchange {
            path,
            deadline: Instant::now(),
            timeout: TIMEOUT,
        };
        let denied = exchange.connect_error(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(denied, ClientError::PermissionDenied { .. }));
        assert_eq!(denied.exit_code(), 77);
        assert!(
            denied.to_string().contains("control.read-group"),
            "{denied}"
        );
        let other = exchange.connect_error(io::Error::from(io::ErrorKind::InvalidInput));
        assert_eq!(other.exit_code(), 74);
        assert!(
            other.to_string().contains("/run/gnomon/gnomon.sock"),
            "{other}"
        );
        assert_eq!(DEFAULT_SOCKET, "/run/gnomon/gnomon.sock");
    }
}
