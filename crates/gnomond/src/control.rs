//! The control socket gnomonctl talks to: binding it (without stealing a live
//! daemon's socket), reading length-prefixed JSON requests under a size cap
//! and timeouts, deciding per request from the peer's SO_PEERCRED
//! credentials whether it is allowed, and handing allowed requests to the
//! engine loop as [`ControlCall`]s.
//!
//! Who may do what ([`AccessPolicy::check`]):
//! - root (uid 0) may do everything;
//! - members of `control.admin-group` may do everything;
//! - gnomond's own user and members of `control.read-group` may read
//!   (an empty read group lets every local user read);
//! - nobody else may do anything. gnomond's own user may not mutate: the
//!   daemon never needs to ask itself, and a compromised reader of its state
//!   must not be able to freeze it.
//!
//! Connections: a malformed, oversized, truncated or wrong-version request
//! gets an error reply and the connection is closed. A forbidden request
//! gets a `Forbidden` reply and the connection stays open (the request was
//! well formed; the client may go on with what it is allowed to do).
//! A connection that sends nothing for the frame timeout is closed quietly.

use std::{
    fs, io,
    os::unix::{fs::FileTypeExt, fs::PermissionsExt, net::UnixListener as StdUnixListener},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use gnomon_core::{
    config::ControlConfig,
    ipc::{
        encode_frame, frame_len, ErrorKind, ErrorReply, FrameError, Request, RequestFrame,
        Response, FRAME_HEADER, MAX_FRAME, PROTOCOL_VERSION,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::{timeout, timeout_at, Instant},
};
use tracing::{debug, error, info, warn};

/// Where group names are resolved.
pub const GROUP_FILE: &str = "/etc/group";

/// How long a refused client gets to take its `Unavailable` reply when
/// every connection slot is taken (the accept loop waits for it).
const BUSY_REPLY_TIMEOUT: Duration = Duration::from_millis(100);

/// Back-off after a failed `accept` (e.g. out of file descriptors), so the
/// accept loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// ---- peers ----

/// Who is on the other end of a connection, from SO_PEERCRED and
/// `/proc/<pid>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    /// Supplementary groups and the primary group.
    pub groups: Vec<u32>,
}

impl Peer {
    /// The peer with its groups read from `/proc/<pid>/status`. When they
    /// cannot be read (no pid, the process is gone, `hidepid`), or the
    /// process there is no longer the peer's (pid reused), only the primary
    /// group counts.
    pub fn from_credentials(uid: u32, gid: u32, pid: Option<u32>) -> Peer {
        let supplementary = pid.and_then(|pid| {
            let path = format!("/proc/{pid}/status");
            match fs::read_to_string(&path) {
                Ok(status) => {
                    let groups = status_groups(&status, uid);
                    if groups.is_none() {
                        debug!(
                            uid,
                            pid, "{path} is not the peer's any more; primary group only"
                        );
                    }
                    groups
                }
                Err(e) => {
                    debug!(uid, pid, "reading {path}: {e}; primary group only");
                    None
                }
            }
        });
        let mut groups = supplementary.unwrap_or_default();
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        Peer {
            uid,
            gid,
            pid,
            groups,
        }
    }

    /// Whether the peer is in group `gid`, as primary or supplementary.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The `Groups:` of a `/proc/<pid>/status`, or `None` when its effective
/// uid (second field of `Uid:`) is not `euid`: SO_PEERCRED reports the
/// effective uid, and a mismatch means the pid now names another process.
pub fn status_groups(status: &str, euid: u32) -> Option<Vec<u32>> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
    };
    let effective = field("Uid")?
        .split_whitespace()
        .nth(1)?
        .parse::<u32>()
        .ok()?;
    if effective != euid {
        return None;
    }
    field("Groups")?
        .split_whitespace()
        .map(|g| g.parse::<u32>().ok())
        .collect()
}

// ---- /etc/group ----

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The groups of an `/etc/group` text (`name:password:gid:members`). Lines
/// that do not have that shape (comments, NIS `+`/`-` entries, a bad gid)
/// are skipped.
pub fn parse_group_file(text: &str) -> Vec<GroupEntry> {
    text.lines().filter_map(parse_group_line).collect()
}

fn parse_group_line(line: &str) -> Option<GroupEntry> {
    let line = line.trim_end_matches('\r');
    if line.starts_with(['#', '+', '-']) {
        return None;
    }
    let mut fields = line.split(':');
    let (name, _password, gid, members) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    if fields.next().is_some() || name.trim().is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(GroupEntry {
        name: name.to_owned(),
        gid: gid.trim().parse().ok()?,
        members: members
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

// ---- access policy ----

/// A configured group name and what it resolved to (`None`: no such group,
/// so it grants nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NamedGroup {
    name: String,
    gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadAccess {
    Everyone,
    Group(NamedGroup),
}

/// Who may read and who may mutate, with group names resolved to gids.
/// Swapped whole on a configuration reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    daemon_uid: u32,
    read: ReadAccess,
    /// `None`: root only.
    admin: Option<NamedGroup>,
}

impl AccessPolicy {
    /// The policy for `[control]`, group names resolved through
    /// `/etc/group`. The warnings name groups that do not exist (they then
    /// grant nothing) or a group file that cannot be read.
    pub fn resolve(control: &ControlConfig, daemon_uid: u32) -> (AccessPolicy, Vec<String>) {
        Self::resolve_with(control, daemon_uid, Path::new(GROUP_FILE))
    }

    /// [`AccessPolicy::resolve`] with another group file.
    pub fn resolve_with(
        control: &ControlConfig,
        daemon_uid: u32,
        group_file: &Path,
    ) -> (AccessPolicy, Vec<String>) {
        match fs::read_to_string(group_file) {
            Ok(text) => Self::from_groups(
                control,
                daemon_uid,
                &parse_group_file(&text),
                &group_file.display().to_string(),
            ),
            Err(e) => {
                let (policy, mut warnings) =
                    Self::from_groups(control, daemon_uid, &[], &group_file.display().to_string());
                warnings.insert(
                    0,
                    format!(
                        "cannot read {}: {e}; control groups grant nothing",
                        group_file.display()
                    ),
                );
                (policy, warnings)
            }
        }
    }

    /// The policy for `[control]` against already parsed groups; `source`
    /// names where they came from, for the warnings.
    pub fn from_groups(
        control: &ControlConfig,
        daemon_uid: u32,
        groups: &[GroupEntry],
        source: &str,
    ) -> (AccessPolicy, Vec<String>) {
        let mut warnings = Vec::new();
        let mut lookup = |key: &str, name: &str, consequence: &str| {
            let gid = groups.iter().find(|g| g.name == name).map(|g| g.gid);
            if gid.is_none() {
                warnings.push(format!(
                    "control.{key} `{name}` is not a group in {source}: {consequence}"
                ));
            }
            NamedGroup {
                name: name.to_owned(),
                gid,
            }
        };
        let read = if control.read_group.is_empty() {
            ReadAccess::Everyone
        } else {
            ReadAccess::Group(lookup(
                "read-group",
                &control.read_group,
                "only root, gnomond's own user and the admin group can read",
            ))
        };
        let admin = match control.admin_group.as_deref() {
            None => None,
            Some("") => {
                warnings.push(
                    "control.admin-group is empty: only root can freeze, thaw, override \
                     fallbacks or reassess"
                        .to_owned(),
                );
                None
            }
            Some(name) => Some(lookup(
                "admin-group",
                name,
                "only root can freeze, thaw, override fallbacks or reassess",
            )),
        };
        (
            AccessPolicy {
                daemon_uid,
                read,
                admin,
            },
            warnings,
        )
    }

    /// Root only (and reads by gnomond's own user): what applies before the
    /// configuration is known.
    pub fn root_only(daemon_uid: u32) -> AccessPolicy {
        AccessPolicy {
            daemon_uid,
            read: ReadAccess::Group(NamedGroup {
                name: String::new(),
                gid: None,
            }),
            admin: None,
        }
    }

    /// Whether `peer` may make `request`; the error says why not and what
    /// would allow it.
    pub fn check(&self, peer: &Peer, request: &Request) -> Result<(), String> {
        if peer.uid == 0 {
            return Ok(());
        }
        let admin = self
            .admin
            .as_ref()
            .is_some_and(|g| g.gid.is_some_and(|gid| peer.in_group(gid)));
        let name = request.name();
        if request.is_mutating() {
            if admin {
                return Ok(());
            }
            return Err(match &self.admin {
                None => format!("{name} needs root (control.admin-group is not set)"),
                Some(NamedGroup {
                    name: group,
                    gid: None,
                }) => format!("{name} needs root (control.admin-group `{group}` does not exist)"),
                Some(NamedGroup { name: group, .. }) => {
                    format!("{name} needs root or membership of group `{group}`")
                }
            });
        }
        if admin || peer.uid == self.daemon_uid {
            return Ok(());
        }
        match &self.read {
            ReadAccess::Everyone => Ok(()),
            ReadAccess::Group(NamedGroup {
                gid: Some(gid),
                name: group,
            }) => {
                if peer.in_group(*gid) {
                    Ok(())
                } else {
                    Err(format!(
                        "{name} needs membership of group `{group}` (control.read-group)"
                    ))
                }
            }
            ReadAccess::Group(NamedGroup {
                gid: None,
                name: group,
            }) if group.is_empty() => Err(format!(
                "{name} needs root: gnomond's control groups are not configured yet"
            )),
            ReadAccess::Group(NamedGroup {
                gid: None,
                name: group,
            }) => Err(format!(
                "{name} needs root (control.read-group `{group}` does not exist)"
            )),
        }
    }
}

// ---- the server ----

/// One allowed request, for the engine loop to answer on `reply`.
#[derive(Debug)]
pub struct ControlCall {
    pub request: Request,
    pub peer: Peer,
    pub reply: oneshot::Sender<Response>,
}

/// Timeouts and the connection cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// For one whole request frame, from its first byte; also the idle time
    /// after which a connection that sends nothing is closed, and the time a
    /// client gets to take a reply.
    pub frame_timeout: Duration,
    /// For the engine loop to answer a call.
    pub reply_timeout: Duration,
    /// Connections served at once; more get `Unavailable` and are closed.
    pub max_connections: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        Self {
            frame_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(5),
            max_connections: 32,
        }
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("creating the control socket's directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "another gnomond answers on the control socket {path}; not taking it over (stop that \
         daemon, or set paths.control-socket to another path)"
    )]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; not replacing it with the control socket")]
    NotASocket { path: PathBuf },
    #[error("checking whether the control socket {path} is in use: {source}")]
    Probe { path: PathBuf, source: io::Error },
    #[error("removing the stale control socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("binding the control socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("setting the mode of the control socket {path}: {source}")]
    Permissions { path: PathBuf, source: io::Error },
}

/// Removes the socket file when the server goes away, however it does.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("removing the control socket {}: {e}", self.path.display()),
        }
    }
}

/// A bound control socket, ready to [`serve`](ControlServer::serve).
#[derive(Debug)]
pub struct ControlServer {
    listener: StdUnixListener,
    limits: ControlLimits,
    // Declared after the listener so the socket closes before its file goes.
    socket_file: SocketFile,
}

impl ControlServer {
    /// Binds the stream socket at `path`. A stale socket file (nobody
    /// answers on it) is replaced; a live one is left alone and refused.
    /// The parent directory is created when missing. The socket is mode
    /// 0666: access is decided per request from the peer's credentials.
    /// Needs no async runtime.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| ControlError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        remove_stale_socket(path)?;
        let listener = StdUnixListener::bind(path).map_err(|source| ControlError::Bind {
            path: path.to_owned(),
            source,
        })?;
        // From here on the file is ours: removed again if anything fails.
        let socket_file = SocketFile {
            path: path.to_owned(),
        };
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(|source| {
            ControlError::Permissions {
                path: path.to_owned(),
                source,
            }
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ControlError::Bind {
                path: path.to_owned(),
                source,
            })?;
        Ok(ControlServer {
            listener,
            limits: ControlLimits::default(),
            socket_file,
        })
    }

    /// Other timeouts and connection cap (tests use short ones).
    #[must_use]
    pub fn with_limits(mut self, limits: ControlLimits) -> ControlServer {
        self.limits = limits;
        self
    }

    pub fn path(&self) -> &Path {
        &self.socket_file.path
    }

    /// Serves until `shutdown` is true (or its sender is gone), then stops
    /// accepting, drops the connections still open (the engine loop that
    /// would answer them is stopping too) and removes the socket file.
    /// Requests may be sent while the policy is swapped: each request is
    /// checked against the policy current when it arrives.
    pub async fn serve(
        self,
        policy: watch::Receiver<AccessPolicy>,
        calls: mpsc::Sender<ControlCall>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let ControlServer {
            listener,
            limits,
            socket_file,
        } = self;
        let listener = match UnixListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                error!(
                    "serving the control socket {}: {e}",
                    socket_file.path.display()
                );
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = JoinSet::new();
        info!("control socket listening on {}", socket_file.path.display());
        while !*shutdown.borrow_and_update() {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            error!("a control connection task panicked: {e}");
                        }
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => {
                            let connection = Connection {
                                policy: policy.clone(),
                                calls: calls.clone(),
                                limits,
                                _slot: slot,
                            };
                            connections.spawn(connection.serve(stream));
                        }
                        Err(_) => refuse_busy(stream, limits.max_connections).await,
                    },
                    Err(e) => {
                        warn!("accepting on the control socket {}: {e}", socket_file.path.display());
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(listener);
        connections.shutdown().await;
        info!("control socket {} closed", socket_file.path.display());
        drop(socket_file);
    }
}

/// Clears the way for binding at `path`: nothing there, or a socket nobody
/// answers on (removed). A live socket or another kind of file is refused.
fn remove_stale_socket(path: &Path) -> Result<(), ControlError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlError::Probe {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ControlError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            info!("removing the stale control socket {}", path.display());
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ControlError::RemoveStale {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ControlError::Probe {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Tells a client beyond the connection cap to come back later.
async fn refuse_busy(mut stream: UnixStream, max: usize) {
    let (uid, pid) = match stream.peer_cred() {
        Ok(c) => (Some(c.uid()), c.pid()),
        Err(_) => (None, None),
    };
    warn!(
        ?uid,
        ?pid,
        "control socket: all {max} connection slots taken; refusing a connection"
    );
    let reply = error_response(
        ErrorKind::Unavailable,
        format!("gnomond is serving {max} control connections already; try again"),
    );
    let _ = write_response(&mut stream, &reply, BUSY_REPLY_TIMEOUT).await;
}

/// One client connection and what it needs.
struct Connection {
    policy: watch::Receiver<AccessPolicy>,
    calls: mpsc::Sender<ControlCall>,
    limits: ControlLimits,
    /// Held while the connection lives.
    _slot: OwnedSemaphorePermit,
}

/// How reading one frame ended.
enum FrameRead {
    Body(Vec<u8>),
    /// End of stream, or nothing sent for the frame timeout, between frames.
    Closed,
    /// The frame broke the rules; the client is told and the connection closed.
    Refused(ErrorKind, String),
    Failed(io::Error),
}

impl Connection {
    async fn serve(self, mut stream: UnixStream) {
        let peer = match stream.peer_cred() {
            Ok(c) => Peer::from_credentials(
                c.uid(),
                c.gid(),
                c.pid().and_then(|p| u32::try_from(p).ok()),
            ),
            Err(e) => {
                warn!("control socket: reading the peer's credentials: {e}; closing");
                return;
            }
        };
        let limits = self.limits;
        loop {
            let body = match read_frame(&mut stream, limits.frame_timeout).await {
                FrameRead::Body(body) => body,
                FrameRead::Closed => return,
                FrameRead::Failed(e) => {
                    debug!(uid = peer.uid, pid = ?peer.pid, "control connection: {e}");
                    return;
                }
                FrameRead::Refused(kind, why) => {
                    warn!(uid = peer.uid, pid = ?peer.pid, "control request refused: {why}");
                    let reply = error_response(kind, why);
                    let _ = write_response(&mut stream, &reply, limits.frame_timeout).await;
                    return;
                }
            };
            let request = match decode_request(&body) {
                Ok(request) => request,
                Err((kind, why)) => {
                    warn!(uid = peer.uid, pid = ?peer.pid, "control request refused: {why}");
                    let reply = error_response(kind, why);
                    let _ = write_response(&mut stream, &reply, limits.frame_timeout).await;
                    return;
                }
            };
            let allowed = self.policy.borrow().check(&peer, &request);
            let (reply, close) = match allowed {
                Err(why) => {
                    warn!(
                        uid = peer.uid,
                        pid = ?peer.pid,
                        request = request.name(),
                        "control request forbidden: {why}"
                    );
                    (error_response(ErrorKind::Forbidden, why), false)
                }
                Ok(()) => {
                    if request.is_mutating() {
                        info!(
                            uid = peer.uid,
                            pid = ?peer.pid,
                            request = request.name(),
                            "operator command over the control socket"
                        );
                    }
                    self.forward(request, &peer).await
                }
            };
            if let Err(e) = write_response(&mut stream, &reply, limits.frame_timeout).await {
                debug!(uid = peer.uid, pid = ?peer.pid, "writing a control reply: {e}");
                return;
            }
            if close {
                return;
            }
        }
    }

    /// Hands the request to the engine loop and waits for its answer; the
    /// flag says whether to close the connection afterwards.
    async fn forward(&self, request: Request, peer: &Peer) -> (Response, bool) {
        let name = request.name();
        let (reply, answer) = oneshot::channel();
        let call = ControlCall {
            request,
            peer: peer.clone(),
            reply,
        };
        let unavailable = |why: String| {
            warn!(uid = peer.uid, pid = ?peer.pid, request = name, "control request: {why}");
            (error_response(ErrorKind::Unavailable, why), true)
        };
        let exchange = async {
            self.calls
                .send(call)
                .await
                .map_err(|_| "gnomond is shutting down".to_owned())?;
            answer
                .await
                .map_err(|_| "gnomond dropped the request (shutting down?)".to_owned())
        };
        match timeout(self.limits.reply_timeout, exchange).await {
            Ok(Ok(response)) => (response, false),
            Ok(Err(why)) => unavailable(why),
            Err(_) => unavailable(format!(
                "gnomond's engine did not answer {name} within {:?}",
                self.limits.reply_timeout
            )),
        }
    }
}

/// Reads one frame: the header, checked against [`MAX_FRAME`] before
/// anything is allocated, then the body, all within `limit` from its first
/// byte.
async fn read_frame(stream: &mut UnixStream, limit: Duration) -> FrameRead {
    let deadline = Instant::now() + limit;
    let mut first = [0u8; 1];
    match timeout_at(deadline, stream.read(&mut first)).await {
        Err(_) | Ok(Ok(0)) => return FrameRead::Closed,
        Ok(Err(e)) => return FrameRead::Failed(e),
        Ok(Ok(_)) => {}
    }
    let incomplete = |e: Option<io::Error>| match e {
        None => FrameRead::Refused(
            ErrorKind::Malformed,
            format!("no complete request frame within {limit:?}"),
        ),
        Some(e) if e.kind() == io::ErrorKind::UnexpectedEof => FrameRead::Refused(
            ErrorKind::Malformed,
            "request frame cut short by the end of the stream".to_owned(),
        ),
        Some(e) => FrameRead::Failed(e),
    };
    let mut rest = [0u8; FRAME_HEADER - 1];
    match timeout_at(deadline, stream.read_exact(&mut rest)).await {
        Err(_) => return incomplete(None),
        Ok(Err(e)) => return incomplete(Some(e)),
        Ok(Ok(_)) => {}
    }
    let [b0] = first;
    let [b1, b2, b3] = rest;
    let len = match frame_len([b0, b1, b2, b3], MAX_FRAME) {
        Ok(len) => len,
        Err(e @ FrameError::TooLarge { .. }) => {
            return FrameRead::Refused(ErrorKind::TooLarge, format!("request {e}"))
        }
        Err(FrameError::Empty) => {
            return FrameRead::Refused(ErrorKind::Malformed, "empty request frame".to_owned())
        }
    };
    let mut body = vec![0u8; len];
    match timeout_at(deadline, stream.read_exact(&mut body)).await {
        Err(_) => incomplete(None),
        Ok(Err(e)) => incomplete(Some(e)),
        Ok(Ok(_)) => FrameRead::Body(body),
    }
}

/// The request in a frame body; the version is checked before the request
/// so that another protocol version is reported as such.
fn decode_request(body: &[u8]) -> Result<Request, (ErrorKind, String)> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| (ErrorKind::Malformed, format!("request is not JSON: {e}")))?;
    match value.get("version").map(serde_json::Value::as_u64) {
        None => {
            return Err((
                ErrorKind::Malformed,
                "request has no protocol version".to_owned(),
            ))
        }
        Some(Some(v)) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            let v = v.map_or_else(|| "(not a number)".to_owned(), |v| v.to_string());
            return Err((
                ErrorKind::Version,
                format!(
                    "request speaks protocol version {v}; this gnomond speaks \
                     {PROTOCOL_VERSION} (use the gnomonctl that came with it)"
                ),
            ));
        }
    }
    let frame: RequestFrame = serde_json::from_value(value).map_err(|e| {
        (
            ErrorKind::Malformed,
            format!("not a request gnomond knows: {e}"),
        )
    })?;
    Ok(frame.request)
}

fn error_response(kind: ErrorKind, message: String) -> Response {
    Response::Error(ErrorReply { kind, message })
}

/// Writes one response frame within `limit` (a client that does not read
/// its reply does not hold the connection forever).
async fn write_response(
    stream: &mut UnixStream,
    response: &Response,
    limit: Duration,
) -> io::Result<()> {
    let frame = match encode_frame(response) {
        Ok(frame) => frame,
        Err(e) => {
            error!("encoding a control reply: {e}");
            let fallback = error_response(
                ErrorKind::Unavailable,
                format!("gnomond could not encode its reply: {e}"),
            );
            encode_frame(&fallback).map_err(io::Error::other)?
        }
    };
    match timeout(limit, stream.write_all(&frame)).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client did not take its reply within {limit:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use gnomon_core::engine::{FallbackMode, OperatorCommand};

    use super::*;

    const GROUPS: &str = "\
root:x:0:
# a comment
wheel:x:10:alice, bob,
gnomon:x:990:carol
gnomon-admin:x:991:dave
+nisgroup::0:
broken line
toomany:x:5:a:b
badgid:x:notanumber:
:x:7:
users:x:100:
";

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            pid: Some(4242),
            groups: groups.to_vec(),
        }
    }

    fn freeze() -> Request {
        Request::Command(OperatorCommand::Freeze {
            reason: "test".into(),
        })
    }

    fn config(read: &str, admin: Option<&str>) -> ControlConfig {
        ControlConfig {
            read_group: read.to_owned(),
            admin_group: admin.map(str::to_owned),
        }
    }

    #[test]
    fn group_file_lines_members_and_bad_lines() {
        let groups = parse_group_file(GROUPS);
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["root", "wheel", "gnomon", "gnomon-admin", "users"]);
        assert_eq!(groups[0].members, Vec::<String>::new());
        assert_eq!(groups[1].gid, 10);
        assert_eq!(groups[1].members, ["alice", "bob"]);
        assert_eq!(groups[2].gid, 990);
        assert_eq!(groups[2].members, ["carol"]);
        assert!(parse_group_file("").is_empty());
        assert_eq!(parse_group_file("crlf:x:3:a\r\n")[0].members, ["a"]);
    }

    #[test]
    fn proc_status_groups_and_pid_reuse() {
        let status = "Name:\tgnomonctl\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t24 990 1000 \n";
        assert_eq!(status_groups(status, 1000), Some(vec![24, 990, 1000]));
        // Another process's status now sits at that pid.
        assert_eq!(status_groups(status, 0), None);
        let none = "Uid:\t5\t5\t5\t5\nGroups:\t\n";
        assert_eq!(status_groups(none, 5), Some(vec![]));
        assert_eq!(status_groups("Uid:\t5\t5\t5\t5\n", 5), None);
        assert_eq!(status_groups("Uid:\t5\t5\t5\t5\nGroups:\tx\n", 5), None);
    }

    #[test]
    fn own_process_groups_include_the_primary_group() {
        let me = Peer::from_credentials(
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
            Some(std::process::id()),
        );
        assert!(me.groups.contains(&me.gid), "{me:?}");
        let gone = Peer::from_credentials(1234, 5678, None);
        assert_eq!(gone.groups, [5678]);
    }

    #[test]
    fn policy_decides_per_request_kind() {
        let groups = parse_group_file(GROUPS);
        let (policy, warnings) =
            AccessPolicy::from_groups(&config("gnomon", Some("gnomon-admin")), 995, &groups, "g");
        assert!(warnings.is_empty(), "{warnings:?}");

        let root = peer(0, 0, &[0]);
        let daemon = peer(995, 995, &[995]);
        let reader = peer(1000, 1000, &[1000, 990]);
        let reader_by_primary = peer(1001, 990, &[]);
        let admin = peer(1002, 1002, &[1002, 991]);
        let outsider = peer(1003, 1003, &[1003, 100]);

        for p in [&root, &daemon, &reader, &reader_by_primary, &admin] {
            assert_eq!(policy.check(p, &Request::Status), Ok(()), "{p:?}");
            assert_eq!(policy.check(p, &Request::History { limit: None }), Ok(()));
        }
        let denied = policy.check(&outsider, &Request::Status).unwrap_err();
        assert!(
            denied.contains("status") && denied.contains("`gnomon`"),
            "{denied}"
        );

        for p in [&root, &admin] {
            assert_eq!(policy.check(p, &freeze()), Ok(()), "{p:?}");
            assert_eq!(
                policy.check(p, &Request::Command(OperatorCommand::Reassess)),
                Ok(())
            );
        }
        for p in [&daemon, &reader, &reader_by_primary, &outsider] {
            let denied = policy.check(p, &freeze()).unwrap_err();
            assert!(
                denied.contains("freeze needs root or membership of group `gnomon-admin`"),
                "{denied}"
            );
        }
        let fallback = Request::Command(OperatorCommand::Fallback {
            mode: FallbackMode::Engaged,
        });
        assert!(policy.check(&reader, &fallback).is_err());
        assert!(policy.check(&admin, &fallback).is_ok());
    }

    #[test]
    fn no_admin_group_means_root_only_and_empty_read_group_means_everyone() {
        let groups = parse_group_file(GROUPS);
        let (policy, warnings) = AccessPolicy::from_groups(&config("", None), 995, &groups, "g");
        assert!(warnings.is_empty());
        let outsider = peer(1003, 1003, &[]);
        assert_eq!(policy.check(&outsider, &Request::Sources), Ok(()));
        assert_eq!(
            policy.check(&outsider, &freeze()),
            Err("freeze needs root (control.admin-group is not set)".to_owned())
        );
        assert_eq!(policy.check(&peer(0, 0, &[]), &freeze()), Ok(()));
    }

    #[test]
    fn unknown_groups_warn_and_grant_nothing() {
        let groups = parse_group_file(GROUPS);
        let (policy, warnings) =
            AccessPolicy::from_groups(&config("nosuch", Some("noadmin")), 995, &groups, "/g");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("control.read-group `nosuch` is not a group in /g"));
        assert!(warnings[1].contains("control.admin-group `noadmin`"));
        let anyone = peer(1000, 1000, &[990, 991]);
        assert!(policy
            .check(&anyone, &Request::Status)
            .unwrap_err()
            .contains("does not exist"));
        assert!(policy.check(&anyone, &freeze()).is_err());
        // Root and the daemon's own user still read.
        assert!(policy.check(&peer(995, 995, &[]), &Request::Status).is_ok());
        assert!(policy.check(&peer(0, 0, &[]), &freeze()).is_ok());

        let root_only = AccessPolicy::root_only(995);
        assert!(root_only.check(&anyone, &Request::Status).is_err());
        assert!(root_only
            .check(&peer(995, 995, &[]), &Request::Status)
            .is_ok());
    }

    #[test]
    fn resolve_reads_an_injected_group_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("group");
        fs::write(&file, GROUPS).unwrap();
        let (policy, warnings) =
            AccessPolicy::resolve_with(&config("gnomon", Some("wheel")), 995, &file);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(policy.check(&peer(7, 7, &[10]), &freeze()).is_ok());
        assert!(policy.check(&peer(7, 7, &[990]), &Request::Gps).is_ok());
        assert!(policy.check(&peer(7, 7, &[990]), &freeze()).is_err());

        let missing = dir.path().join("nope");
        let (policy, warnings) =
            AccessPolicy::resolve_with(&config("gnomon", Some("wheel")), 995, &missing);
        assert!(
            warnings[0].starts_with(&format!("cannot read {}", missing.display())),
            "{warnings:?}"
        );
        assert!(policy
            .check(&peer(7, 7, &[10, 990]), &Request::Gps)
            .is_err());
    }

    #[test]
    fn request_decoding_names_the_problem() {
        let ok = br#"{"version":1,"request":"history","limit":3}"#;
        assert_eq!(decode_request(ok), Ok(Request::History { limit: Some(3) }));
        let kind = |body: &[u8]| decode_request(body).unwrap_err().0;
        assert_eq!(kind(b"{not json"), ErrorKind::Malformed);
        assert_eq!(kind(br#"{"request":"status"}"#), ErrorKind::Malformed);
        assert_eq!(
            kind(br#"{"version":2,"request":"status"}"#),
            ErrorKind::Version
        );
        assert_eq!(
            kind(br#"{"version":"1","request":"status"}"#),
            ErrorKind::Version
        );
        assert_eq!(
            kind(br#"{"version":1,"request":"rm-rf"}"#),
            ErrorKind::Malformed
        );
        assert_eq!(kind(b"[1,2]"), ErrorKind::Malformed);
    }
}
