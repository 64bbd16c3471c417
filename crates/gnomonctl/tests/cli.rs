//! gnomonctl's exit codes and output, run as a process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use fake::FakeGnomond;
use gnomon_core::{
    engine::{FallbackMode, OperatorCommand},
    ipc::{
        CheckItem, CheckOutcome, CheckReport, ErrorKind, ErrorReply, Request, Response,
        StatusReport,
    },
};

const RMC: &str = "$GPRMC,193221.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A*2D\r\n";

fn gnomonctl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gnomonctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A gnomonctl that exits before reading (bad usage, missing file)
    // closes the pipe: that is not the test's failure.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("writing to gnomonctl: {e}"),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn decode_stdin_json() {
    let out = gnomonctl(&["decode", "-", "--json"], RMC);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"time\":\"2007-12-23T19:32:21.000Z\",\"mode\":2,\"sats_used\":null,\"hdop\":null,\"status\":\"A\"}\n"
    );
}

#[test]
fn exit_codes_follow_sysexits() {
    assert_eq!(
        gnomonctl(&["decode", "/nonexistent/capture.log"], "")
            .status
            .code(),
        Some(66)
    );
    assert_eq!(
        gnomonctl(&["decode", "-"], "no nmea here\n").status.code(),
        Some(65)
    );
    assert_eq!(
        gnomonctl(&["decode", "--floor", "soon", "-"], RMC)
            .status
            .code(),
        Some(64)
    );
    assert_eq!(gnomonctl(&["frobnicate"], "").status.code(), Some(64));
}

#[test]
fn rollover_is_reported_on_stderr() {
    let out = gnomonctl(
        &["decode", "--floor", "2019-04-01", "-"],
        &RMC.replace("231207", "220899").replace("*2D", "*20"),
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("1 of them 1024/2048 weeks back"), "{err}");
}

// ---------------------------------------------------------------------------
// Against gnomond: a fake one on a Unix socket in a temp dir, speaking the
// control protocol's framing (4-byte big-endian length, then JSON).

mod fake {
    use std::{
        io::{Read, Write},
        os::unix::net::{UnixListener, UnixStream},
        path::{Path, PathBuf},
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc, Mutex,
        },
        thread,
    };

    use gnomon_core::ipc::{
        encode_frame, frame_len, Request, RequestFrame, Response, FRAME_HEADER, MAX_FRAME,
    };

    type Answer = dyn Fn(&Request, usize) -> Response + Send + Sync;

    /// A gnomond that answers every request with `answer(request, n)`,
    /// `n` counting requests from 0, and remembers what it was asked.
    pub(crate) struct FakeGnomond {
        socket: PathBuf,
        requests: Arc<Mutex<Vec<Request>>>,
        stop: Arc<AtomicBool>,
        thread: Option<thread::JoinHandle<()>>,
    }

    impl FakeGnomond {
        pub(crate) fn start(
            socket: &Path,
            answer: impl Fn(&Request, usize) -> Response + Send + Sync + 'static,
        ) -> FakeGnomond {
            let listener = UnixListener::bind(socket).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let answer: Arc<Answer> = Arc::new(answer);
            let thread = {
                let (requests, stop) = (requests.clone(), stop.clone());
                thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        serve(stream.unwrap(), &requests, &*answer);
                    }
                })
            };
            FakeGnomond {
                socket: socket.to_owned(),
                requests,
                stop,
                thread: Some(thread),
            }
        }

        pub(crate) fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Requests on one connection until the client closes it.
    fn serve(mut stream: UnixStream, requests: &Mutex<Vec<Request>>, answer: &Answer) {
        loop {
            let mut header = [0u8; FRAME_HEADER];
            if stream.read_exact(&mut header).is_err() {
                return;
            }
            let mut body = vec![0u8; frame_len(header, MAX_FRAME).unwrap()];
            stream.read_exact(&mut body).unwrap();
            let frame: RequestFrame = serde_json::from_slice(&body).unwrap();
            assert_eq!(frame.version, gnomon_core::ipc::PROTOCOL_VERSION);
            let n = {
                let mut r = requests.lock().unwrap();
                r.push(frame.request.clone());
                r.len() - 1
            };
            let reply = encode_frame(&answer(&frame.request, n)).unwrap();
            if stream.write_all(&reply).is_err() {
                return;
            }
        }
    }

    impl Drop for FakeGnomond {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wakes the accept loop so it sees the flag.
            let _ = UnixStream::connect(&self.socket);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

mod fixture {
    use std::time::Duration;

    use gnomon_core::{
        config::Role,
        engine::{
            ChronyStatus, ClockStatus, Decision, DecisionKind, EngineState, FallbackMode,
            FallbackStatus, PrimaryStatus, Status,
        },
        ipc::{DaemonInfo, SourcesReport, StatusReport},
        source::{
            AssociationKind, FallbackTier, NtpSource, PlannedSource, SourceAddress, SourcePlan,
            SourceRole,
        },
        time::{FloorSource, MonoTime, Offset, WallTime},
    };

    pub(crate) fn noon() -> WallTime {
        WallTime::from_utc(2026, 5, 1, 12, 0, 0, 0).unwrap()
    }

    /// A client-role gnomond serving from its primary, fallbacks standing by.
    pub(crate) fn status_report(synchronised: bool) -> StatusReport {
        let state = if synchronised {
            EngineState::Primary
        } else {
            EngineState::Acquiring
        };
        StatusReport {
            daemon: DaemonInfo {
                version: "0.1.0".into(),
                pid: 4242,
                config_path: "/etc/gnomon/gnomon.toml".into(),
                started: noon().minus(Duration::from_secs(90)),
                uptime: Duration::from_secs(90),
                passes: 90,
            },
            status: Status {
                role: Role::Client,
                state,
                underlying_state: state,
                reason: "primary 192.168.1.11 healthy".into(),
                frozen: None,
                fallback_mode: FallbackMode::Auto,
                fallbacks_engaged: false,
                primary: PrimaryStatus {
                    healthy: Some(synchronised),
                    detail: "192.168.1.11 selected by chrony".into(),
                    for_: Some(Duration::from_secs(60)),
                    distrusted: false,
                    unchecked: None,
                },
                gps: None,
                clock: ClockStatus {
                    wall: Some(noon()),
                    floor: WallTime::from_utc(2026, 4, 30, 0, 0, 0, 0).unwrap(),
                    floor_source: FloorSource::LastSynchronised,
                    before_floor: false,
                },
                chrony: ChronyStatus {
                    reachable: true,
                    error: None,
                    synchronised,
                    reference: synchronised.then(|| "192.168.1.11".to_owned()),
                    system_offset: Some(Offset::from_nanos(12_000)),
                    plan_applied: true,
                },
                fallbacks: vec![FallbackStatus {
                    address: SourceAddress::parse("206.108.0.131"),
                    tier: FallbackTier::PublicIpLiteral,
                    selectable: false,
                    answering: true,
                    usable: true,
                    offset: Some(Offset::from_nanos(-480_000)),
                    silent_for: None,
                }],
                cross_check: Default::default(),
                changes_last_hour: 0,
                max_changes_per_hour: 6,
                alerts: vec![],
                certs: Vec::new(),
                trusted_time: None,
            },
            recent_decisions: vec![Decision {
                at: MonoTime::from_duration(Duration::from_secs(30)),
                wall: Some(noon().minus(Duration::from_secs(60))),
                kind: DecisionKind::StateChange,
                state: EngineState::Primary,
                reason: "primary healthy".into(),
            }],
        }
    }

    pub(crate) fn sources_report() -> SourcesReport {
        let planned = |addr: &str, role, selectable| PlannedSource {
            source: NtpSource {
                address: SourceAddress::parse(addr),
                kind: AssociationKind::Server,
                port: None,
                minpoll: None,
                maxpoll: None,
                key: None,
                iburst: true,
            },
            role,
            selectable,
        };
        SourcesReport {
            plan: SourcePlan {
                sources: vec![
                    planned("192.168.1.11", SourceRole::Primary, true),
                    planned(
                        "206.108.0.131",
                        SourceRole::Fallback(FallbackTier::PublicIpLiteral),
                        false,
                    ),
                ],
            },
            plan_applied: false,
            chrony: None,
            sourcestats: vec![],
            sources_file: "/run/gnomon/chrony/gnomon.sources".into(),
        }
    }
}

/// gnomonctl with a clean environment for what it reads (socket, colour).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gnomonctl"));
    cmd.args(args)
        .env_remove("GNOMON_SOCKET")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn socket_in(dir: &tempfile::TempDir) -> String {
    dir.path().join("gnomon.sock").to_str().unwrap().to_owned()
}

fn answering(response: Response) -> impl Fn(&Request, usize) -> Response + Send + Sync {
    move |_, _| response.clone()
}

#[test]
fn nothing_listening_is_69_and_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    for args in [
        vec!["--socket", socket.as_str(), "status"],
        vec!["sources", "--json", "--socket", socket.as_str()],
        vec!["--socket", socket.as_str(), "freeze", "--reason", "test"],
    ] {
        let out = run(&args, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {err}");
        assert!(err.contains(&socket), "{args:?}: {err}");
        assert!(err.contains("not running"), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // The same through the environment.
    let out = run(&["status"], &[("GNOMON_SOCKET", socket.as_str())]);
    assert_eq!(out.status.code(), Some(69));
    assert!(text(&out.stderr).contains(&socket));
}

#[test]
fn status_as_text_and_as_the_exact_report_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let report = fixture::status_report(true);
    let gnomond = FakeGnomond::start(
        Path::new(&socket),
        answering(Response::Status(Box::new(report.clone()))),
    );

    let out = run(&["--socket", &socket, "status"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for want in [
        "State         : primary\n",
        "chrony        : synchronised to 192.168.1.11\n",
        "System offset : +12us (system clock behind)\n",
        "Clock         : 2026-05-01T12:00:00.000Z, 36h after the floor\n",
        "206.108.0.131  public  no          yes        yes     -480us  -\n",
        "2026-05-01T11:59:00.000Z  state-change  primary  primary healthy\n",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    assert!(!stdout.contains('\x1b'), "no colour into a pipe");

    let out = run(&["status", "--json"], &[("GNOMON_SOCKET", &socket)]);
    assert_eq!(out.status.code(), Some(0));
    let back: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, report);
    assert!(
        text(&out.stdout).contains("\n  \"daemon\": {\n"),
        "pretty JSON"
    );
    assert_eq!(gnomond.requests(), vec![Request::Status, Request::Status]);
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _gnomond = FakeGnomond::start(
        Path::new(&socket),
        answering(Response::Status(Box::new(fixture::status_report(true)))),
    );
    let always = run(&["--socket", &socket, "--color", "always", "status"], &[]);
    assert!(text(&always.stdout).contains("\x1b[32mprimary\x1b[0m"));
    // An explicit --color always beats NO_COLOR; auto into a pipe never colours.
    let forced = run(
        &["--socket", &socket, "--color=always", "status"],
        &[("NO_COLOR", "1")],
    );
    assert!(text(&forced.stdout).contains('\x1b'));
    let auto = run(&["--socket", &socket, "status"], &[]);
    assert!(!text(&auto.stdout).contains('\x1b'));
}

#[test]
fn sources_show_the_plan_column_even_without_chrony() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _gnomond = FakeGnomond::start(
        Path::new(&socket),
        answering(Response::Sources(Box::new(fixture::sources_report()))),
    );
    let out = run(&["--socket", &socket, "sources"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("MS Name/IP address Stratum Poll Reach LastRx Last sample Plan\n"),
        "{stdout}"
    );
    assert!(stdout.contains("^  192.168.1.11"), "{stdout}");
    assert!(stdout.contains(" primary\n"), "{stdout}");
    assert!(stdout.contains(" fallback:public noselect\n"), "{stdout}");
    assert!(stdout.contains("Plan: NOT applied yet"), "{stdout}");
}

#[test]
fn operator_commands_carry_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let gnomond = FakeGnomond::start(Path::new(&socket), |request, _| match request {
        Request::Command(OperatorCommand::Freeze { reason }) => Response::Done {
            message: format!("frozen: {reason}"),
        },
        _ => Response::Done {
            message: "ok".into(),
        },
    });
    let out = run(
        &[
            "--socket",
            &socket,
            "freeze",
            "--reason",
            "swapping the GPS hat",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "frozen: swapping the GPS hat\n");

    // No reason: a usage error, and nothing reaches gnomond.
    assert_eq!(
        run(&["--socket", &socket, "freeze"], &[]).status.code(),
        Some(64)
    );
    for args in [
        vec!["thaw"],
        vec!["fallback", "engage"],
        vec!["fallback", "release"],
        vec!["fallback", "auto"],
        vec!["reassess"],
        vec!["history", "-n", "3"],
    ] {
        let mut all = vec!["--socket", socket.as_str()];
        all.extend(args);
        run(&all, &[]);
    }
    let done = run(&["--socket", &socket, "--json", "thaw"], &[]);
    assert_eq!(
        serde_json::from_slice::<Response>(&done.stdout).unwrap(),
        Response::Done {
            message: "ok".into()
        }
    );
    let fallback = |mode| Request::Command(OperatorCommand::Fallback { mode });
    assert_eq!(
        gnomond.requests(),
        vec![
            Request::Command(OperatorCommand::Freeze {
                reason: "swapping the GPS hat".into()
            }),
            Request::Command(OperatorCommand::Thaw),
            fallback(FallbackMode::Engaged),
            fallback(FallbackMode::Released),
            fallback(FallbackMode::Auto),
            Request::Command(OperatorCommand::Reassess),
            Request::History { limit: Some(3) },
            Request::Command(OperatorCommand::Thaw),
        ]
    );
}

#[test]
fn refusals_and_wrong_answers_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _gnomond = FakeGnomond::start(Path::new(&socket), |request, _| {
        let refuse = |kind, message: &str| {
            Response::Error(ErrorReply {
                kind,
                message: message.into(),
            })
        };
        match request {
            Request::Command(_) => refuse(
                ErrorKind::Forbidden,
                "thaw needs root or group gnomon-admin",
            ),
            Request::Gps => refuse(ErrorKind::Unsupported, "no GPS on a client-role host"),
            Request::Pps => refuse(ErrorKind::Unavailable, "gnomond is shutting down"),
            // A status request answered with a history: a protocol mismatch.
            _ => Response::History(gnomon_core::ipc::HistoryReport {
                decisions: vec![],
                kept: 0,
            }),
        }
    });
    for (args, code, words) in [
        (vec!["thaw"], 77, "not allowed: thaw needs root"),
        (vec!["gps"], 64, "not applicable on this host: no GPS"),
        (vec!["pps"], 75, "shutting down"),
        (vec!["status"], 76, "answered with a history response"),
    ] {
        let mut all = vec!["--socket", socket.as_str()];
        all.extend(args.iter().copied());
        let out = run(&all, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

#[test]
fn check_exits_1_on_a_failure_only() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let item = |name: &str, outcome| CheckItem {
        name: name.into(),
        outcome,
        detail: format!("{name} detail"),
    };
    let _gnomond = FakeGnomond::start(Path::new(&socket), move |_, n| {
        Response::Check(CheckReport {
            items: if n < 2 {
                vec![
                    item("config", CheckOutcome::Pass),
                    item("sourcedir", CheckOutcome::Fail),
                ]
            } else {
                vec![
                    item("config", CheckOutcome::Pass),
                    item("pps", CheckOutcome::Warn),
                ]
            },
        })
    });
    let failed = run(&["--socket", &socket, "check"], &[]);
    assert_eq!(failed.status.code(), Some(1));
    let stdout = text(&failed.stdout);
    assert!(
        stdout.contains("PASS    config     config detail\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL    sourcedir  sourcedir detail\n"),
        "{stdout}"
    );
    let json = run(&["--socket", &socket, "check", "--json"], &[]);
    assert_eq!(json.status.code(), Some(1), "--json keeps the exit code");
    let report: CheckReport = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report.worst(), CheckOutcome::Fail);
    let warned = run(&["--socket", &socket, "check"], &[]);
    assert_eq!(warned.status.code(), Some(0));
    assert!(text(&warned.stdout).contains("WARN    pps"));
}

#[test]
fn wait_polls_until_synced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let gnomond = FakeGnomond::start(Path::new(&socket), |_, n| {
        Response::Status(Box::new(fixture::status_report(n >= 2)))
    });
    let out = run(
        &["--socket", &socket, "wait", "--synced", "--timeout", "20"],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("try: 1, state: acquiring, chrony: not synchronised"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(
            "try: 3, state: primary, chrony: synchronised to 192.168.1.11, offset: +12us"
        ),
        "{stdout}"
    );
    assert_eq!(gnomond.requests().len(), 3);
}

#[test]
fn wait_keeps_trying_while_gnomond_starts() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let late = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            FakeGnomond::start(Path::new(&socket), |_, _| {
                Response::Status(Box::new(fixture::status_report(true)))
            })
        })
    };
    let out = run(
        &[
            "--socket",
            &socket,
            "wait",
            "--synced",
            "--timeout",
            "20",
            "--json",
        ],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Progress goes to stderr with --json; the last report to stdout.
    assert!(err.starts_with("try: 1, gnomond is not running"), "{err}");
    assert!(err.contains(&socket), "{err}");
    let report: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.status.chrony.synchronised);
    drop(late.join().unwrap());
}

#[test]
fn wait_gives_up_at_the_timeout_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let started = Instant::now();
    let out = run(
        &["--socket", &socket, "wait", "--synced", "--timeout", "2s"],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().count() >= 2, "one try a second: {stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("try: ")), "{stdout}");
    assert!(
        text(&out.stderr).contains("not synchronised after 2"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );

    let quiet = run(
        &[
            "--socket",
            &socket,
            "wait",
            "--synced",
            "--timeout",
            "500ms",
            "-q",
        ],
        &[],
    );
    assert_eq!(quiet.status.code(), Some(1));
    assert!(quiet.stdout.is_empty());
}
