//! The control socket over real Unix sockets in temp dirs: framing, limits,
//! timeouts, the connection cap, binding over stale and live sockets, and
//! SO_PEERCRED access checks with clients running as temporary
//! unprivileged users. These tests need root (to create users and groups)
//! and `setpriv`, `useradd`, `groupadd`; they fail, never skip, without them.
//!
//! The unprivileged client is this test binary re-executed as another user
//! (`control_client_role`), so nothing beyond Rust is needed.

// Helpers outside #[test] functions are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::{
    io::{Read, Write},
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use gnomon_core::{
    config::ControlConfig,
    engine::OperatorCommand,
    ipc::{
        encode_frame, frame_header, frame_len, ErrorKind, ErrorReply, HistoryReport, Request,
        RequestFrame, Response, FRAME_HEADER, MAX_FRAME,
    },
};
use gnomond::control::{
    parse_group_file, AccessPolicy, ControlCall, ControlError, ControlLimits, ControlServer, Peer,
};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    sync::{mpsc, watch},
    task::JoinHandle,
    time::timeout,
};

/// Set (to the socket path) when this binary runs as the unprivileged client.
const ROLE_ENV: &str = "GNOMON_CONTROL_CLIENT_ROLE";
/// The requests the client role sends on one connection, as a JSON array.
const REQUESTS_ENV: &str = "GNOMON_CONTROL_CLIENT_REQUESTS";
/// Prefixes the client role's JSON array of responses on stdout.
const RESPONSES_MARKER: &str = "CONTROL-RESPONSES:";

/// Longest a test waits for anything that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- a fake engine and a served socket ----

/// Every call the fake engine was handed.
type Seen = Arc<Mutex<Vec<(Request, Peer)>>>;

/// Answers like the engine loop would, naming the peer so tests can see
/// what was forwarded.
fn answer(request: &Request, peer: &Peer) -> Response {
    match request {
        Request::History { .. } => Response::History(HistoryReport {
            decisions: vec![],
            kept: 0,
        }),
        other => Response::Done {
            message: format!("{} for uid {}", other.name(), peer.uid),
        },
    }
}

fn spawn_engine(mut calls: mpsc::Receiver<ControlCall>) -> Seen {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(call) = calls.recv().await {
            let response = answer(&call.request, &call.peer);
            log.lock().unwrap().push((call.request, call.peer));
            let _ = call.reply.send(response);
        }
    });
    seen
}

/// A control server serving in a temp dir, with a fake engine.
struct Served {
    _dir: TempDir,
    path: PathBuf,
    policy: watch::Sender<AccessPolicy>,
    shutdown: watch::Sender<bool>,
    seen: Seen,
    task: JoinHandle<()>,
}

fn temp_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    // Other users must reach the socket (and the copied test binary).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn serve_with(limits: ControlLimits, policy: AccessPolicy) -> Served {
    let dir = temp_dir();
    let path = dir.path().join("run").join("gnomon.sock");
    let server = ControlServer::bind(&path).unwrap().with_limits(limits);
    assert_eq!(server.path(), path);
    let (calls_tx, calls_rx) = mpsc::channel(8);
    let seen = spawn_engine(calls_rx);
    let (policy_tx, policy_rx) = watch::channel(policy);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(server.serve(policy_rx, calls_tx, shutdown_rx));
    Served {
        _dir: dir,
        path,
        policy: policy_tx,
        shutdown: shutdown_tx,
        seen,
        task,
    }
}

fn serve_default() -> Served {
    serve_with(ControlLimits::default(), AccessPolicy::root_only(0))
}

// ---- the client side, async ----

async fn connect(path: &Path) -> UnixStream {
    UnixStream::connect(path)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()))
}

async fn send_request(stream: &mut UnixStream, request: Request) {
    let frame = encode_frame(&RequestFrame::new(request)).unwrap();
    stream.write_all(&frame).await.unwrap();
}

async fn send_body(stream: &mut UnixStream, body: &[u8]) {
    stream
        .write_all(&frame_header(body.len()).unwrap())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
}

/// The next response, or `None` when the server closed the connection.
async fn read_response(stream: &mut UnixStream) -> Option<Response> {
    let mut header = [0u8; FRAME_HEADER];
    match timeout(PATIENCE, stream.read_exact(&mut header))
        .await
        .expect("no reply in time")
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("reading a reply header: {e}"),
    }
    let mut body = vec![0u8; frame_len(header, MAX_FRAME).unwrap()];
    timeout(PATIENCE, stream.read_exact(&mut body))
        .await
        .expect("no reply body in time")
        .unwrap();
    Some(serde_json::from_slice(&body).unwrap())
}

async fn round_trip(stream: &mut UnixStream, request: Request) -> Response {
    send_request(stream, request).await;
    read_response(stream).await.expect("connection closed")
}

async fn assert_closed(stream: &mut UnixStream) {
    let mut byte = [0u8; 1];
    let n = timeout(PATIENCE, stream.read(&mut byte))
        .await
        .expect("connection still open")
        .unwrap();
    assert_eq!(n, 0, "expected the server to close the connection");
}

fn error_kind(response: &Response) -> (ErrorKind, &str) {
    match response {
        Response::Error(ErrorReply { kind, message }) => (*kind, message.as_str()),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn done(message: &str) -> Response {
    Response::Done {
        message: message.to_owned(),
    }
}

fn freeze() -> Request {
    Request::Command(OperatorCommand::Freeze {
        reason: "control test".into(),
    })
}

// ---- protocol ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_forwarded_to_the_engine_and_answered() {
    let served = serve_default();
    let mut stream = connect(&served.path).await;
    // Several requests on one connection, each answered in turn.
    assert_eq!(
        round_trip(&mut stream, Request::Status).await,
        done("status for uid 0")
    );
    assert_eq!(
        round_trip(&mut stream, Request::History { limit: Some(2) }).await,
        Response::History(HistoryReport {
            decisions: vec![],
            kept: 0
        })
    );
    assert_eq!(
        round_trip(&mut stream, freeze()).await,
        done("freeze for uid 0")
    );
    drop(stream);

    let seen = served.seen.lock().unwrap().clone();
    let requests: Vec<&Request> = seen.iter().map(|(r, _)| r).collect();
    assert_eq!(
        requests,
        [
            &Request::Status,
            &Request::History { limit: Some(2) },
            &freeze()
        ]
    );
    // SO_PEERCRED: this very process, as root.
    let peer = &seen[0].1;
    assert_eq!(peer.uid, 0);
    assert_eq!(peer.pid, Some(std::process::id()));
    assert!(peer.groups.contains(&peer.gid), "{peer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_and_close_but_the_server_carries_on() {
    let served = serve_default();
    let cases: [(&[u8], ErrorKind, &str); 5] = [
        (b"{this is not json", ErrorKind::Malformed, "not JSON"),
        (
            br#"{"version":1,"request":"rm-rf"}"#,
            ErrorKind::Malformed,
            "not a request",
        ),
        (br#"{"request":"status"}"#, ErrorKind::Malformed, "version"),
        (
            br#"{"version":99,"request":"status"}"#,
            ErrorKind::Version,
            "version 99",
        ),
        (b"\xff\xfe binary", ErrorKind::Malformed, "not JSON"),
    ];
    for (body, kind, words) in cases {
        let mut stream = connect(&served.path).await;
        send_body(&mut stream, body).await;
        let reply = read_response(&mut stream).await.expect("an error reply");
        let (got, message) = error_kind(&reply);
        assert_eq!(got, kind, "{message}");
        assert!(message.contains(words), "{message}");
        assert_closed(&mut stream).await;
    }

    // An empty frame breaks the framing.
    let mut stream = connect(&served.path).await;
    stream.write_all(&[0, 0, 0, 0]).await.unwrap();
    let reply = read_response(&mut stream).await.unwrap();
    assert_eq!(error_kind(&reply).0, ErrorKind::Malformed);
    assert_closed(&mut stream).await;

    // Cut short: the client closes its side mid-frame.
    let mut stream = connect(&served.path).await;
    stream.write_all(&[0, 0, 0, 50, b'{']).await.unwrap();
    stream.shutdown().await.unwrap();
    let reply = read_response(&mut stream).await.unwrap();
    assert!(error_kind(&reply).1.contains("cut short"), "{reply:?}");

    // Nothing malformed reached the engine, and the daemon still answers.
    assert!(served.seen.lock().unwrap().is_empty());
    let mut stream = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut stream, Request::Check).await,
        done("check for uid 0")
    );
    assert!(!served.task.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_from_the_header_alone() {
    let served = serve_default();
    let too_large = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
    for header in [[0xFF; 4], too_large] {
        let mut stream = connect(&served.path).await;
        // Only the header: the reply cannot wait for a body that never comes
        // (nor allocate 4 GiB for it).
        stream.write_all(&header).await.unwrap();
        let started = Instant::now();
        let reply = read_response(&mut stream).await.expect("a TooLarge reply");
        let (kind, message) = error_kind(&reply);
        assert_eq!(kind, ErrorKind::TooLarge, "{message}");
        assert!(message.contains("exceeds"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_closed(&mut stream).await;
    }
    let mut stream = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut stream, Request::Pps).await,
        done("pps for uid 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_clients_are_closed_after_the_frame_timeout() {
    let frame_timeout = Duration::from_millis(1500);
    let limits = ControlLimits {
        frame_timeout,
        ..ControlLimits::default()
    };
    let served = serve_with(limits, AccessPolicy::root_only(0));

    // Half a frame, then nothing.
    let mut stalled = connect(&served.path).await;
    let frame = encode_frame(&RequestFrame::new(Request::Status)).unwrap();
    let started = Instant::now();
    stalled.write_all(&frame[..frame.len() / 2]).await.unwrap();
    // Connected, sending nothing at all.
    let mut idle = connect(&served.path).await;

    // Meanwhile others are served.
    let mut other = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut other, Request::Sources).await,
        done("sources for uid 0")
    );
    assert!(
        started.elapsed() < frame_timeout,
        "test too slow to prove concurrency"
    );

    let reply = read_response(&mut stalled).await.expect("a timeout reply");
    let (kind, message) = error_kind(&reply);
    assert_eq!(kind, ErrorKind::Malformed);
    assert!(message.contains("no complete request frame"), "{message}");
    assert_closed(&mut stalled).await;
    let waited = started.elapsed();
    assert!(
        waited >= frame_timeout && waited < frame_timeout * 4,
        "{waited:?}"
    );

    // The idle one is closed without a word.
    assert!(read_response(&mut idle).await.is_none());
    assert!(started.elapsed() >= frame_timeout);

    let mut after = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut after, Request::Gps).await,
        done("gps for uid 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_does_not_answer_gives_unavailable() {
    let dir = temp_dir();
    let path = dir.path().join("gnomon.sock");
    let reply_timeout = Duration::from_millis(300);
    let server = ControlServer::bind(&path)
        .unwrap()
        .with_limits(ControlLimits {
            reply_timeout,
            ..ControlLimits::default()
        });
    let (calls_tx, mut calls_rx) = mpsc::channel::<ControlCall>(8);
    let (_policy, policy_rx) = watch::channel(AccessPolicy::root_only(0));
    let (_shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(server.serve(policy_rx, calls_tx, shutdown_rx));

    // The engine takes the call and sits on it.
    let held = tokio::spawn(async move {
        let call = calls_rx.recv().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(call);
        drop(calls_rx);
    });
    let mut stream = connect(&path).await;
    let started = Instant::now();
    send_request(&mut stream, Request::Status).await;
    let reply = read_response(&mut stream).await.unwrap();
    let (kind, message) = error_kind(&reply);
    assert_eq!(kind, ErrorKind::Unavailable);
    assert!(message.contains("did not answer status"), "{message}");
    assert!(started.elapsed() >= reply_timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_closed(&mut stream).await;

    // Once the engine loop is gone, requests are refused at once.
    held.await.unwrap();
    let mut stream = connect(&path).await;
    let reply = round_trip(&mut stream, Request::Status).await;
    let (kind, message) = error_kind(&reply);
    assert_eq!(kind, ErrorKind::Unavailable);
    assert!(message.contains("shutting down"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_turned_away() {
    let limits = ControlLimits {
        max_connections: 1,
        ..ControlLimits::default()
    };
    let served = serve_with(limits, AccessPolicy::root_only(0));
    let mut first = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut first, Request::Status).await,
        done("status for uid 0")
    );

    let mut second = connect(&served.path).await;
    let reply = read_response(&mut second).await.expect("a busy reply");
    let (kind, message) = error_kind(&reply);
    assert_eq!(kind, ErrorKind::Unavailable);
    assert!(message.contains("1 control connections"), "{message}");
    assert_closed(&mut second).await;

    // The first is unaffected; once it goes, its slot is free again.
    assert_eq!(
        round_trip(&mut first, Request::Check).await,
        done("check for uid 0")
    );
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut next = connect(&served.path).await;
        // While the slot is still taken, the server may have replied and
        // closed before the request is written.
        let frame = encode_frame(&RequestFrame::new(Request::Status)).unwrap();
        let _ = next.write_all(&frame).await;
        match read_response(&mut next).await {
            Some(Response::Done { .. }) => break,
            other => {
                assert!(Instant::now() < deadline, "slot never freed: {other:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_serving_and_removes_the_socket() {
    let served = serve_default();
    let mut open = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut open, Request::Status).await,
        done("status for uid 0")
    );
    served.shutdown.send(true).unwrap();
    timeout(PATIENCE, served.task)
        .await
        .expect("serve did not stop")
        .unwrap();
    assert!(!served.path.exists(), "socket file left behind");
    assert_closed(&mut open).await;
    let err = UnixStream::connect(&served.path).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

// ---- binding ----

#[test]
fn bind_creates_the_directory_and_opens_the_socket_to_everyone() {
    let dir = temp_dir();
    let path = dir.path().join("a").join("b").join("gnomon.sock");
    let server = ControlServer::bind(&path).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    // Dropped without serving: the file goes with it.
    drop(server);
    assert!(!path.exists());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = temp_dir();
    let path = dir.path().join("gnomon.sock");
    // A daemon that died without cleaning up.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = ControlServer::bind(&path).unwrap();
    // The new socket answers.
    std::os::unix::net::UnixStream::connect(&path).unwrap();
    drop(server);
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let dir = temp_dir();
    let path = dir.path().join("gnomon.sock");
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = ControlServer::bind(&path).unwrap_err();
    assert!(matches!(err, ControlError::InUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("another gnomond"),
        "{message}"
    );
    // Still the first listener's: a new client reaches it (after the probe).
    let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    live.accept().unwrap();
    live.accept().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gnomond_does_not_steal_a_serving_socket() {
    let served = serve_default();
    let err = ControlServer::bind(&served.path).unwrap_err();
    assert!(matches!(err, ControlError::InUse { .. }), "{err:?}");
    let mut stream = connect(&served.path).await;
    assert_eq!(
        round_trip(&mut stream, Request::Status).await,
        done("status for uid 0")
    );
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = temp_dir();
    let path = dir.path().join("gnomon.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = ControlServer::bind(&path).unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

// ---- SO_PEERCRED with unprivileged users ----

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh name for a temporary user or group (at most 32 characters).
fn temp_name(kind: char) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "gnomon-c{kind}{:x}",
        (nanos ^ std::process::id().rotate_left(12)) % 0xFFFFF * 16 + n % 16
    )
}

/// Runs a user/group tool, retrying while another holds /etc/passwd's lock.
fn run_admin_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} (tests run as root): {e}"));
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{program} {args:?}: {last}"))
}

/// A system group for one test, removed when dropped (even on failure).
struct TestGroup {
    name: String,
}

impl TestGroup {
    fn create() -> TestGroup {
        let name = temp_name('g');
        run_admin_tool("groupadd", &["--system", &name]).unwrap();
        TestGroup { name }
    }

    fn gid(&self) -> u32 {
        let text = std::fs::read_to_string("/etc/group").unwrap();
        parse_group_file(&text)
            .into_iter()
            .find(|g| g.name == self.name)
            .unwrap()
            .gid
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if let Err(e) = run_admin_tool("groupdel", &[&self.name]) {
            eprintln!("could not remove test group {}: {e}", self.name);
        }
    }
}

/// A system user for one test, removed when dropped (even on failure).
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create(groups: &[&TestGroup]) -> TestUser {
        let name = temp_name('u');
        let groups: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let mut args = vec![
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
        ];
        let joined = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &joined]);
        }
        args.push(&name);
        run_admin_tool("useradd", &args).unwrap();
        // The guard first, so the user goes even if looking it up fails.
        let mut user = TestUser { name, uid: 0 };
        let out = Command::new("id")
            .args(["-u", &user.name])
            .output()
            .unwrap();
        user.uid = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Err(e) = run_admin_tool("userdel", &[&self.name]) {
            eprintln!("could not remove test user {}: {e}", self.name);
        }
    }
}

/// This test binary, copied where any user can run it (the build tree may
/// be private).
fn client_binary(dir: &Path) -> PathBuf {
    let target = dir.join("control-client");
    std::fs::copy(std::env::current_exe().unwrap(), &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    target
}

/// Sends `requests` on one connection from a process running as `user`
/// with its groups; returns the responses and the client's pid.
fn requests_as(
    user: &str,
    binary: &Path,
    socket: &Path,
    requests: &[Request],
) -> (Vec<Response>, u32) {
    let child = Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .arg("--init-groups")
        .arg(binary)
        .args(["--exact", "control_client_role", "--nocapture"])
        .env(ROLE_ENV, socket)
        .env(REQUESTS_ENV, serde_json::to_string(requests).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running setpriv (util-linux)");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client as {user}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESPONSES_MARKER))
        .unwrap_or_else(|| panic!("no responses from the client role: {stdout}"));
    (serde_json::from_str(line).unwrap(), pid)
}

/// The client side, blocking std only: what gnomonctl does.
fn blocking_requests(socket: &Path, requests: &[Request]) -> Vec<Response> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", socket.display()));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut responses = Vec::new();
    for request in requests {
        let frame = encode_frame(&RequestFrame::new(request.clone())).unwrap();
        stream.write_all(&frame).unwrap();
        let mut header = [0u8; FRAME_HEADER];
        stream.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; frame_len(header, MAX_FRAME).unwrap()];
        stream.read_exact(&mut body).unwrap();
        responses.push(serde_json::from_slice(&body).unwrap());
    }
    responses
}

/// The unprivileged client when re-executed with [`ROLE_ENV`]; otherwise,
/// the same client as root, who may do everything even under a root-only
/// policy.
#[test]
fn control_client_role() {
    if let Ok(socket) = std::env::var(ROLE_ENV) {
        let requests: Vec<Request> =
            serde_json::from_str(&std::env::var(REQUESTS_ENV).unwrap()).unwrap();
        let responses = blocking_requests(Path::new(&socket), &requests);
        println!(
            "{RESPONSES_MARKER}{}",
            serde_json::to_string(&responses).unwrap()
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let served = runtime.block_on(async { serve_default() });
    let responses = blocking_requests(
        &served.path,
        &[
            Request::Status,
            freeze(),
            Request::Command(OperatorCommand::Thaw),
        ],
    );
    assert_eq!(
        responses,
        [
            done("status for uid 0"),
            done("freeze for uid 0"),
            done("thaw for uid 0")
        ]
    );
}

fn forbidden(response: &Response, words: &str) {
    let (kind, message) = error_kind(response);
    assert_eq!(kind, ErrorKind::Forbidden, "{message}");
    assert!(message.contains(words), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_credentials_decide_who_may_read_and_who_may_mutate() {
    // Declared before the users, so dropped after them.
    let readers = TestGroup::create();
    let admins = TestGroup::create();
    let outsider = TestUser::create(&[]);
    let reader = TestUser::create(&[&readers]);
    let admin = TestUser::create(&[&admins]);

    let control = ControlConfig {
        read_group: readers.name.clone(),
        admin_group: Some(admins.name.clone()),
    };
    let (policy, warnings) = AccessPolicy::resolve(&control, 0);
    assert!(warnings.is_empty(), "{warnings:?}");
    let served = serve_with(ControlLimits::default(), policy);
    let bin_dir = temp_dir();
    let binary = client_binary(bin_dir.path());
    let socket = served.path.clone();
    let run = move |user: &TestUser, requests: Vec<Request>| {
        let (binary, socket, user) = (binary.clone(), socket.clone(), user.name.clone());
        tokio::task::spawn_blocking(move || requests_as(&user, &binary, &socket, &requests))
    };

    // Outside both groups: nothing, but the connection survives a refusal.
    let (responses, _) = run(&outsider, vec![Request::Status, freeze()])
        .await
        .unwrap();
    forbidden(&responses[0], &format!("group `{}`", readers.name));
    forbidden(&responses[1], &format!("group `{}`", admins.name));

    // In the read group: reads, but may not freeze; the connection stays
    // open after the refusal.
    let (responses, reader_pid) = run(&reader, vec![freeze(), Request::Status]).await.unwrap();
    forbidden(&responses[0], "freeze needs root or membership");
    assert_eq!(
        responses[1],
        done(&format!("status for uid {}", reader.uid))
    );

    // In the admin group: freeze reaches the engine.
    let (responses, admin_pid) = run(&admin, vec![freeze(), Request::Sources]).await.unwrap();
    assert_eq!(responses[0], done(&format!("freeze for uid {}", admin.uid)));
    assert_eq!(
        responses[1],
        done(&format!("sources for uid {}", admin.uid))
    );

    {
        let seen = served.seen.lock().unwrap();
        let calls: Vec<(&str, u32)> = seen.iter().map(|(r, p)| (r.name(), p.uid)).collect();
        assert_eq!(
            calls,
            [
                ("status", reader.uid),
                ("freeze", admin.uid),
                ("sources", admin.uid)
            ],
            "refused requests must not reach the engine"
        );
        let reader_peer = &seen[0].1;
        assert_eq!(reader_peer.pid, Some(reader_pid));
        assert!(reader_peer.in_group(readers.gid()), "{reader_peer:?}");
        let admin_peer = &seen[1].1;
        assert_eq!(admin_peer.pid, Some(admin_pid));
        assert!(admin_peer.in_group(admins.gid()), "{admin_peer:?}");
        assert!(!admin_peer.in_group(readers.gid()), "{admin_peer:?}");
    }

    // A reload that opens reading to everyone and takes the admin group
    // away applies to the next request.
    let everyone_reads = ControlConfig {
        read_group: String::new(),
        admin_group: None,
    };
    let (open, warnings) = AccessPolicy::resolve(&everyone_reads, 0);
    assert!(warnings.is_empty(), "{warnings:?}");
    served.policy.send(open).unwrap();
    let (responses, _) = run(&outsider, vec![Request::Status]).await.unwrap();
    assert_eq!(
        responses[0],
        done(&format!("status for uid {}", outsider.uid))
    );
    let (responses, _) = run(&admin, vec![freeze()]).await.unwrap();
    forbidden(&responses[0], "freeze needs root");
}
