//! gnomon's chrony client against real chronyd 4.x processes from the lab
//! harness: private configs, `-x` (the host clock is never touched), only
//! loopback NTP and Unix sockets. These tests need `chronyd` and `chronyc`
//! and fail, never skip, without them; the permission tests need root
//! (to create users) and `setpriv`.

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
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use gnomon_chrony::{
    client::{ChronyClient, ClientConfig},
    error::{ChronyError, ChronyStatus},
};
use gnomon_core::{
    chrony::{ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport},
    time::{Offset, WallTime},
};
use gnomon_lab::chronyd::{free_loopback_udp_port, Chronyd, ChronydSpec};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

fn start(spec: ChronydSpec) -> Chronyd {
    let name = spec.name.clone();
    Chronyd::start(spec).unwrap_or_else(|e| panic!("starting chronyd '{name}': {e}"))
}

/// A stratum 1 chronyd on a free loopback port.
fn ntp_server(name: &str) -> (Chronyd, u16) {
    let port = free_loopback_udp_port().unwrap();
    (start(ChronydSpec::ntp_server(name, port)), port)
}

fn server_line(port: u16, options: &str) -> String {
    format!("server 127.0.0.1 port {port} minpoll -4 maxpoll -4 iburst {options}")
}

fn client_for(chronyd: &Chronyd) -> ChronyClient {
    ChronyClient::new(ClientConfig::new(chronyd.socket(), chronyd.client_dir()))
}

fn now() -> WallTime {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    WallTime::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap())
}

fn source(sources: &[SourceReport], ip: IpAddr) -> Option<&SourceReport> {
    sources.iter().find(|s| s.id == ChronySourceId::Address(ip))
}

/// `chronyc -h SOCKET -n -c COMMAND`, CSV lines split into fields.
fn chronyc_csv(chronyd: &Chronyd, command: &str) -> Vec<Vec<String>> {
    let out = Command::new("chronyc")
        .arg("-h")
        .arg(chronyd.socket())
        .args(["-n", "-c", command])
        .output()
        .expect("running chronyc (install chrony 4.x)");
    assert!(
        out.status.success(),
        "chronyc {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn near(a: Offset, b: Offset, tolerance: Duration) -> bool {
    (a - b).abs() <= tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_and_sources_round_trip_against_a_loopback_server() {
    let (_server, port) = ntp_server("rt-server");
    let mut spec = ChronydSpec::client("rt-client");
    spec.extra_conf.push(server_line(port, ""));
    let chronyd = start(spec);
    let mut client = client_for(&chronyd);

    let deadline = Instant::now() + SYNC_TIMEOUT;
    let (tracking, sources) = loop {
        let tracking = client.tracking().await.unwrap();
        let sources = client.sources().await.unwrap();
        let answering = source(&sources, LOCALHOST).is_some_and(|s| s.reach != 0);
        if answering && tracking.synchronised() && tracking.ref_address == Some(LOCALHOST) {
            break (tracking, sources);
        }
        assert!(
            Instant::now() < deadline,
            "not synchronised to 127.0.0.1 within {SYNC_TIMEOUT:?}: {tracking:?} {sources:?}\n{}",
            chronyd.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(tracking.ref_id, 0x7F00_0001);
    assert_eq!(tracking.stratum, 2);
    assert_eq!(tracking.leap, LeapStatus::Normal);
    let s = source(&sources, LOCALHOST).unwrap();
    assert_eq!(s.mode, ChronySourceMode::Server);
    assert_eq!((s.stratum, s.poll), (1, -4));
    assert_eq!(s.name.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.noselect, Some(false));
    // Same host clock on both sides.
    assert!(
        near(s.offset.unwrap(), Offset::ZERO, Duration::from_millis(50)),
        "{s:?}"
    );

    // chronyc, asked in the same run, agrees.
    let csv = chronyc_csv(&chronyd, "tracking");
    let line = &csv[0];
    assert_eq!(line[0], format!("{:08X}", tracking.ref_id), "{line:?}");
    assert_eq!(line[1], "127.0.0.1");
    assert_eq!(line[2], tracking.stratum.to_string());
    assert_eq!(line[13], "Normal");
    let ours = client.sources().await.unwrap();
    let csv = chronyc_csv(&chronyd, "sources");
    let line = csv.iter().find(|l| l[2] == "127.0.0.1").unwrap();
    let s = source(&ours, LOCALHOST).unwrap();
    assert_eq!(line[0], "^");
    assert_eq!(line[1], s.state.symbol().to_string(), "{line:?} vs {s:?}");
    assert_eq!(line[3], s.stratum.to_string());
    assert_eq!(line[4], s.poll.to_string());

    // The snapshot carries both.
    let taken = now();
    let snapshot = client.snapshot(taken).await.unwrap();
    assert_eq!(snapshot.taken_wall, taken);
    assert_eq!(
        snapshot.selected().map(|s| &s.id),
        Some(&ChronySourceId::Address(LOCALHOST))
    );

    // How long one tracking query takes (informational).
    let n = 50u32;
    let started = Instant::now();
    for _ in 0..n {
        client.tracking().await.unwrap();
    }
    println!(
        "one tracking query: {:?} (mean of {n})",
        started.elapsed() / n
    );
}

/// Two selectable sources at the host clock (A, C) and a `noselect` one
/// configured half a second ahead (B, `offset 0.5`): the signs of the
/// reports, the state of a noselect source, and every state symbol, checked
/// against chronyc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_source_minus_system_and_noselect_is_reported() {
    let (_a, port_a) = ntp_server("sign-a");
    // chrony keys sources by address, so B gets its own loopback address.
    let b_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let port_b = free_loopback_udp_port().unwrap();
    let mut b_spec = ChronydSpec::ntp_server("sign-b", port_b);
    b_spec.bind_address = Some(b_ip);
    let _b = start(b_spec);
    let c_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let port_c = free_loopback_udp_port().unwrap();
    let mut c_spec = ChronydSpec::ntp_server("sign-c", port_c);
    c_spec.bind_address = Some(c_ip);
    let _c = start(c_spec);

    let mut spec = ChronydSpec::client("sign-client");
    spec.extra_conf.push(server_line(port_a, ""));
    spec.extra_conf.push(format!(
        "server {c_ip} port {port_c} minpoll -4 maxpoll -4 iburst"
    ));
    // chrony adds `offset` to the measured offset (remote − local): B reads
    // as 0.5 s ahead of the system clock.
    spec.extra_conf.push(format!(
        "server {b_ip} port {port_b} minpoll -4 maxpoll -4 iburst noselect offset 0.5"
    ));
    let chronyd = start(spec);
    let mut client = client_for(&chronyd);

    let deadline = Instant::now() + SYNC_TIMEOUT;
    let sources = loop {
        let sources = client.sources().await.unwrap();
        let selected = sources.iter().any(|s| s.state == SelectionState::Selected);
        let b_measured = source(&sources, b_ip).is_some_and(|s| s.offset.is_some() && s.reach != 0);
        if selected && b_measured {
            break sources;
        }
        assert!(
            Instant::now() < deadline,
            "sources not ready within {SYNC_TIMEOUT:?}: {sources:?}\n{}",
            chronyd.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let b = source(&sources, b_ip).unwrap();
    // gnomon: source − system = +0.5 s.
    assert!(
        near(
            b.offset.unwrap(),
            Offset::from_millis(500),
            Duration::from_millis(50)
        ),
        "{b:?}"
    );
    assert_eq!(b.noselect, Some(true));
    // sourcestats' estimate has the same sign as the sources report's
    // offset once chrony has a regression (two samples or more).
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let stats = client.sourcestats().await.unwrap();
        let b_stats = stats
            .iter()
            .find(|s| s.id == ChronySourceId::Address(b_ip))
            .cloned();
        if let Some(st) = b_stats.filter(|s| s.samples >= 2) {
            assert!(
                near(
                    st.estimated_offset,
                    Offset::from_millis(500),
                    Duration::from_millis(50)
                ),
                "{st:?}"
            );
            assert_eq!(stats.len(), 3, "{stats:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no sourcestats for B: {stats:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // chrony 4.3 reports a noselect source as NONSELECTABLE, printed '?'.
    assert_eq!(b.state, SelectionState::Unusable, "{b:?}");
    assert_eq!(source(&sources, LOCALHOST).unwrap().noselect, Some(false));

    // chronyc prints the opposite sign ("positive: local clock ahead").
    let csv = chronyc_csv(&chronyd, "sources");
    let line = csv.iter().find(|l| l[2] == "127.0.0.2").unwrap();
    let chronyc_offset: f64 = line[7].parse().unwrap();
    assert!((chronyc_offset + 0.5).abs() < 0.05, "{line:?}");
    assert_eq!(line[1], "?");

    // chronyc and we agree on every state symbol, including the one of
    // the selectable source that is not the reference ('+' or '-', which
    // chrony-candm's names would swap). States can move between two
    // reads, so agreement is awaited, not assumed.
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let ours = client.sources().await.unwrap();
        let theirs = chronyc_csv(&chronyd, "sources");
        let agree = theirs.iter().all(|line| {
            let ip: IpAddr = line[2].parse().unwrap();
            source(&ours, ip).is_some_and(|s| line[1] == s.state.symbol().to_string())
        });
        let other_selectable = ours.iter().any(|s| {
            matches!(
                s.state,
                SelectionState::Combined | SelectionState::NotCombined
            )
        });
        if agree && other_selectable && theirs.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "states never agreed: ours {ours:?}, chronyc {theirs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Tracking follows A or C, both at the host clock.
    let t = client.tracking().await.unwrap();
    assert!(
        t.ref_address == Some(LOCALHOST) || t.ref_address == Some(c_ip),
        "{t:?}"
    );
    assert!(
        near(t.system_offset, Offset::ZERO, Duration::from_millis(50)),
        "{t:?}"
    );
}

/// The system clock half a second behind the only source: chronyd with
/// `-x` never corrects it, so tracking keeps reporting it, and gnomon's
/// sign (positive = behind) matches chronyc's "slow of NTP time".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_offset_is_positive_when_the_clock_is_behind() {
    let (_server, port) = ntp_server("slow-server");
    let mut spec = ChronydSpec::client("slow-client");
    spec.extra_conf.push(server_line(port, "offset 0.5"));
    let chronyd = start(spec);
    let mut client = client_for(&chronyd);

    let deadline = Instant::now() + SYNC_TIMEOUT;
    let tracking = loop {
        let t = client.tracking().await.unwrap();
        if t.synchronised() && t.system_offset > Offset::from_millis(400) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "tracking never showed the 0.5 s correction: {t:?}\n{}",
            chronyd.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        near(
            tracking.system_offset,
            Offset::from_millis(500),
            Duration::from_millis(50)
        ),
        "{tracking:?}"
    );
    let csv = chronyc_csv(&chronyd, "tracking");
    let chronyc_system_time: f64 = csv[0][4].parse().unwrap();
    assert!((chronyc_system_time - 0.5).abs() < 0.05, "{:?}", csv[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_recovers_when_chronyd_restarts() {
    let mut chronyd = start(ChronydSpec::client("restart"));
    let mut client = ChronyClient::new(ClientConfig {
        timeout: Duration::from_millis(300),
        ..ClientConfig::new(chronyd.socket(), chronyd.client_dir())
    });
    client.tracking().await.unwrap();
    let socket = chronyd.socket().display().to_string();

    // Stopped cleanly: chronyd removes its socket.
    chronyd.stop().unwrap();
    let e = client.tracking().await.unwrap_err();
    println!("stopped: {e}");
    assert!(matches!(e, ChronyError::SocketNotFound { .. }), "{e}");
    assert!(e.to_string().contains(&socket), "{e}");
    assert!(e.is_chronyd_down());

    chronyd.start_again().unwrap();
    client.tracking().await.unwrap();

    // Killed: the socket file stays, nobody reads it.
    chronyd.kill();
    let e = client.tracking().await.unwrap_err();
    println!("killed: {e}");
    assert!(matches!(e, ChronyError::NotListening { .. }), "{e}");
    assert!(e.to_string().contains("connection refused"), "{e}");
    assert!(e.to_string().contains(&socket), "{e}");

    chronyd.start_again().unwrap();
    client.sources().await.unwrap();
    client.tracking().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_change_chronyds_sources() {
    let (_server, port) = ntp_server("cmd-server");
    let mut spec = ChronydSpec::client("cmd-client");
    spec.with_sourcedir = true;
    let chronyd = start(spec);
    let mut client = client_for(&chronyd);

    // chronyd -x runs chrony's null clock driver, whose step always fails
    // ("Could not step system clock"): the request reached chronyd, which
    // answered STT_FAILED. On a real clock the same call succeeds.
    let e = client.makestep().await.unwrap_err();
    assert_eq!(e.status(), Some(ChronyStatus::FAILED), "{e}");
    assert!(e.to_string().starts_with("makestep: chronyd on "), "{e}");
    assert!(
        chronyd.log().contains("Could not step system clock"),
        "{}",
        chronyd.log()
    );

    client.reload_sources().await.unwrap();
    assert!(client.sources().await.unwrap().is_empty());

    let ntp = gnomon_lab::chronyd::fast_loopback_source(port);
    client.add_source(&ntp).await.unwrap();
    let sources = client.sources().await.unwrap();
    let added = source(&sources, LOCALHOST).expect("added source listed");
    // chrony starts at poll max(minpoll, 0) until it sees a LAN-like delay.
    assert!((-4..=0).contains(&added.poll), "{added:?}");
    assert_eq!(added.noselect, Some(false));
    assert_eq!(added.name.as_deref(), Some("127.0.0.1"));
    let e = client.add_source(&ntp).await.unwrap_err();
    assert_eq!(e.status(), Some(ChronyStatus::SOURCE_ALREADY_KNOWN), "{e}");
    assert!(e.to_string().contains("source already present"), "{e}");

    client.burst(LOCALHOST).await.unwrap();
    assert!(
        client.activity().await.unwrap().online + client.activity().await.unwrap().burst_online
            >= 1
    );

    client.delete_source(LOCALHOST).await.unwrap();
    assert!(source(&client.sources().await.unwrap(), LOCALHOST).is_none());
    let e = client.delete_source(LOCALHOST).await.unwrap_err();
    assert_eq!(e.status(), Some(ChronyStatus::NO_SUCH_SOURCE), "{e}");
    let e = client.burst(LOCALHOST).await.unwrap_err();
    assert_eq!(e.status(), Some(ChronyStatus::NO_SUCH_SOURCE), "{e}");

    // A noselect source from the sources directory, picked up by reload.
    std::fs::write(
        chronyd.sources_dir().join("gnomon.sources"),
        format!("{}\n", server_line(port, "noselect")),
    )
    .unwrap();
    client.reload_sources().await.unwrap();
    let sources = client.sources().await.unwrap();
    let from_file = source(&sources, LOCALHOST).expect("source from the sources file");
    assert_eq!(from_file.noselect, Some(true));
    std::fs::remove_file(chronyd.sources_dir().join("gnomon.sources")).unwrap();
    client.reload_sources().await.unwrap();
    assert!(source(&client.sources().await.unwrap(), LOCALHOST).is_none());
}

// ---- permissions, as an unprivileged user ----

/// A system user for one test, removed when dropped (even on failure).
struct TestUser {
    name: String,
}

static USER_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestUser {
    fn create(groups: &[&str]) -> TestUser {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = USER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "gnomon-t{:x}",
            (nanos ^ std::process::id().rotate_left(12)) % 0xFFFFF * 16 + n % 16
        );
        let mut cmd = Command::new("useradd");
        cmd.args([
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if !groups.is_empty() {
            cmd.args(["--groups", &groups.join(",")]);
        }
        cmd.arg(&name);
        // useradd fails while another useradd holds /etc/passwd's lock.
        let mut last = None;
        for _ in 0..50 {
            let out = cmd.output().expect("running useradd (tests run as root)");
            if out.status.success() {
                return TestUser { name };
            }
            last = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name} failed: {last:?}");
    }

    /// Runs `program args` as this user with its groups.
    fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new("setpriv")
            .arg(format!("--reuid={}", self.name))
            .arg(format!("--regid={}", self.name))
            .arg("--init-groups")
            .arg(program)
            .args(args)
            .output()
            .expect("running setpriv (util-linux)")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            match Command::new("userdel").arg(&self.name).output() {
                Ok(out) if out.status.success() => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("could not remove test user {}", self.name);
    }
}

/// The query binary, copied where any user can run it (the build tree may
/// be private).
fn query_binary(chronyd: &Chronyd) -> std::path::PathBuf {
    let target = chronyd.dir().join("gnomon-chrony-query");
    std::fs::copy(env!("CARGO_BIN_EXE_gnomon-chrony-query"), &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    target
}

fn query_as(user: &TestUser, chronyd: &Chronyd) -> Output {
    let binary = query_binary(chronyd);
    let socket = chronyd.socket().to_str().unwrap().to_owned();
    let client_dir = chronyd.client_dir().to_str().unwrap().to_owned();
    user.run(
        &binary,
        &[
            "--socket",
            &socket,
            "--client-dir",
            &client_dir,
            "--timeout-ms",
            "500",
            "--attempts",
            "1",
            "tracking",
        ],
    )
}

fn chronyd_as_chrony_user(name: &str, umask: u32) -> Chronyd {
    let mut spec = ChronydSpec::client(name);
    spec.user = "_chrony".to_owned();
    spec.umask = umask;
    start(spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprivileged_users_get_permission_denied_with_the_fix() {
    // Debian's default: chronyd as _chrony with umask 022.
    let chronyd = chronyd_as_chrony_user("perm", 0o022);
    let socket = chronyd.socket().display().to_string();

    // Root can always talk to it.
    client_for(&chronyd).tracking().await.unwrap();

    // Outside chrony's group: the socket's directory is closed.
    let outsider = TestUser::create(&[]);
    let out = query_as(&outsider, &chronyd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("outsider: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "tracking: permission denied on {socket}: add the gnomon user to group _chrony"
        )),
        "{stderr}"
    );

    // In chrony's group, but chronyd made the socket 0755: still denied,
    // and the message says why.
    let member = TestUser::create(&["_chrony"]);
    let out = query_as(&member, &chronyd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    println!("member: {stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("already in group _chrony"), "{stderr}");
    assert!(stderr.contains("mode 0755"), "{stderr}");
    assert!(stderr.contains("UMask=0007"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chrony_group_member_can_query_a_group_writable_socket() {
    let chronyd = chronyd_as_chrony_user("group", 0o007);
    let member = TestUser::create(&["_chrony"]);
    let out = query_as(&member, &chronyd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", chronyd.log());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leap"], "unsynchronised", "{json}");
    assert!(json["stratum"].is_u64(), "{json}");

    // Someone outside the group still cannot.
    let outsider = TestUser::create(&[]);
    let out = query_as(&outsider, &chronyd);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
}

#[test]
fn a_chronyd_that_cannot_start_says_why() {
    let mut spec = ChronydSpec::client("broken");
    spec.extra_conf.push("no_such_directive 1".to_owned());
    let e = Chronyd::start(spec).unwrap_err().to_string();
    assert!(e.contains("chronyd 'broken'"), "{e}");
    assert!(e.contains("exited at start"), "{e}");
    assert!(e.contains("chrony.conf"), "{e}");
    // The log tail quotes chronyd's own complaint.
    assert!(e.contains("no_such_directive"), "{e}");
}
