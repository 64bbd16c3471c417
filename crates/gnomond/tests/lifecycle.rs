//! gnomond's life as systemd and an operator see it, against the real
//! binary: `--check-config` and its exit codes, refusing a bad config at
//! start, starting without chronyd, SIGHUP with a broken and a good file,
//! state that survives a restart or is damaged or cannot be written,
//! SIGINT, and watchdog pings that stop when the loop stops.
//!
//! Everything lives in temporary directories; chronyd, when chrony
//! matters, is a private one from `gnomon_lab::chronyd`; NTP addresses are
//! loopback ports nothing answers on. The full-disk test mounts a tmpfs
//! and so needs root (it fails, never skips, without it).

// Helpers outside #[test] fns count as non-test code for clippy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    fs,
    net::Ipv4Addr,
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use gnomon_core::config::{Config, NtpServerConfig};
use gnomon_lab::{
    chronyd::{free_loopback_udp_port, Chronyd, ChronydSpec},
    gnomond::{workspace_binary, Gnomond, GnomondSpec},
    tmpfs::Tmpfs,
};
use rustix::process::Signal;
use serde_json::Value;
use tempfile::TempDir;

mod common;

use common::{json, status, text, wait_for, wait_ready};

// ---------------------------------------------------------------------------
// Helpers.

/// Waits until gnomond's output (stderr, `--log stderr`) has a line
/// containing every one of `words`; returns that line.
fn wait_output(d: &Gnomond, words: &[&str], timeout: Duration) -> String {
    wait_for(&format!("a log line with {words:?}"), timeout, || {
        let out = d.output();
        out.lines()
            .find(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_owned)
            .ok_or_else(|| format!("\n--- gnomond output ---\n{out}"))
    })
}

/// An address on 127.0.0.0/8 and a port nothing listens on: chronyd's
/// packets to it go nowhere, which is all a planned source needs here.
fn silent_server(last_octet: u8) -> NtpServerConfig {
    NtpServerConfig {
        port: Some(free_loopback_udp_port().unwrap()),
        minpoll: Some(-4),
        maxpoll: Some(-4),
        ..NtpServerConfig::new(Ipv4Addr::new(127, 0, 0, last_octet).to_string())
    }
}

/// A client-role config whose primary and fallback never answer, with
/// chrony's socket and sources directory given by the caller.
fn client_config(chrony_socket: &Path, sources_dir: &Path) -> Config {
    let mut config = Config::example_client();
    config.primary.servers = vec![silent_server(31)];
    config.fallback.servers = vec![silent_server(32)];
    config.fallback.peers = Vec::new();
    // Long enough that nothing engages during a test: the plan stays put.
    config.thresholds.grace = Duration::from_secs(60);
    config.thresholds.hold = Duration::from_secs(60);
    config.paths.chrony_socket = chrony_socket.display().to_string();
    config.paths.sources_dir = sources_dir.display().to_string();
    config.control.read_group = String::new();
    config
}

/// A config whose chrony socket names a path in `dir` where no chronyd is.
fn config_without_chronyd(dir: &TempDir) -> Config {
    client_config(
        &dir.path().join("no-chronyd/chronyd.sock"),
        &dir.path().join("sources"),
    )
}

/// A private chronyd with a `sourcedir`, for gnomond to drive.
fn host_chronyd(name: &str) -> Chronyd {
    let mut spec = ChronydSpec::client(name);
    spec.with_sourcedir = true;
    Chronyd::start(spec).unwrap()
}

fn spec_with_state(config: Config, state_dir: &Path) -> GnomondSpec {
    let mut spec = GnomondSpec::new(config);
    spec.state_dir = Some(state_dir.to_owned());
    spec
}

fn stop(d: &mut Gnomond, signal: Signal) {
    d.signal(signal).unwrap();
    let status = d.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "gnomond exited with {status} after {signal:?}\n--- gnomond output ---\n{}",
        d.output()
    );
}

fn run_gnomond(args: &[&str]) -> Output {
    Command::new(workspace_binary("gnomond").unwrap())
        .args(args)
        .env_remove("GNOMON_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------
// --check-config and the command line.

const VALID: &str = r#"role = "client"

[[primary.servers]]
address = "192.0.2.10"

[[fallback.servers]]
address = "203.0.113.1"

[[fallback.servers]]
address = "203.0.113.2"

[paths]
state-dir = "/var/lib/gnomon"
"#;

/// Valid, with one warning: no fallback at all.
const WARNED: &str = r#"role = "client"

[[primary.servers]]
address = "192.0.2.10"
"#;

/// Not the schema: a misspelt key on line 6.
const SYNTAX_ERROR: &str = r#"role = "client"

[[primary.servers]]
address = "192.0.2.10"
[thresholds]
gracee = "60s"
"#;

/// Well-formed, but a client without a primary.
const SEMANTIC_ERROR: &str = r#"role = "client"

[[fallback.servers]]
address = "203.0.113.1"
"#;

#[test]
fn check_config_reports_and_exits_like_sysexits() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let valid = write("valid.toml", VALID);
    let warned = write("warned.toml", WARNED);
    let syntax = write("syntax.toml", SYNTAX_ERROR);
    let semantic = write("semantic.toml", SEMANTIC_ERROR);
    let missing = dir.path().join("missing.toml").display().to_string();

    let out = run_gnomond(&["--check-config", &valid]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&valid) && stdout.contains("valid (role client"),
        "{stdout}"
    );
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    let out = run_gnomond(&["--check-config", &warned]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning is not an error: {out:?}"
    );
    assert!(text(&out.stdout).contains("valid"), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{warned}: warning: fallback:")),
        "{stderr}"
    );

    let out = run_gnomond(&["--check-config", &syntax]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&syntax)
            && stderr.contains("line 6, column 1")
            && stderr.contains("gracee"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("valid"), "{out:?}");

    let out = run_gnomond(&["--check-config", &semantic]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&semantic) && stderr.contains("error: primary.servers"),
        "{stderr}"
    );

    let out = run_gnomond(&["--check-config", &missing]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&missing) && stderr.contains("No such file"),
        "{stderr}"
    );

    // Without PATH, --check-config checks --config, in either order.
    let out = run_gnomond(&["--config", &valid, "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains(&valid), "{out:?}");
    let out = run_gnomond(&["--check-config", "--config", &semantic]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(text(&out.stderr).contains(&semantic), "{out:?}");
    // ... and GNOMON_CONFIG stands in for --config.
    let out = Command::new(workspace_binary("gnomond").unwrap())
        .arg("--check-config")
        .env("GNOMON_CONFIG", &syntax)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(text(&out.stderr).contains(&syntax), "{out:?}");

    let out = run_gnomond(&["--bogus"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(text(&out.stderr).contains("--bogus"), "{out:?}");
}

// ---------------------------------------------------------------------------
// Start-up.

#[test]
fn an_invalid_config_stops_the_daemon_at_once_with_78() {
    let dir = tempfile::tempdir().unwrap();
    for (what, bad) in [("syntax", SYNTAX_ERROR), ("semantic", SEMANTIC_ERROR)] {
        let mut spec = GnomondSpec::new(config_without_chronyd(&dir));
        spec.config_text = Some(bad.to_owned());
        let started = Instant::now();
        let mut d = Gnomond::start(spec).unwrap();
        let status = d.wait_exit(Duration::from_secs(5)).unwrap();
        assert_eq!(
            status.code(),
            Some(78),
            "{what} error: {status}\n{}",
            d.output()
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what} error: took {:?} to give up",
            started.elapsed()
        );
        let out = d.output();
        assert!(
            out.contains(&d.config_path().display().to_string()),
            "{what} error: the message must name the file\n{out}"
        );
        assert!(
            d.notify().values("READY").is_empty(),
            "{what} error: READY=1 from a daemon that refused its config"
        );
        assert!(
            !d.control_socket().exists(),
            "{what} error: control socket left behind"
        );
    }
}

#[test]
fn without_chronyd_gnomond_gets_ready_alerts_and_recovers() {
    // Learn a private chronyd's socket path, then stop it: the path now
    // points nowhere, as when chronyd is down at boot.
    let mut chronyd = host_chronyd("lc-late");
    let socket = chronyd.socket().to_owned();
    chronyd.stop().unwrap();
    assert!(
        !socket.exists(),
        "a stopped chronyd left {}",
        socket.display()
    );

    let config = client_config(&socket, chronyd.sources_dir());
    let d = Gnomond::start(GnomondSpec::new(config)).unwrap();
    // It must alert, not hang waiting for chrony.
    wait_ready(&d);
    let s = status(&d);
    assert_eq!(s["status"]["chrony"]["reachable"], false, "{s}");
    let state = s["status"]["state"].as_str().unwrap();
    assert!(
        ["starting", "acquiring", "no-reference"].contains(&state),
        "state {state} with no chronyd: {s}"
    );
    let socket_name = socket.display().to_string();
    let line = wait_output(
        &d,
        &["chrony-unreachable", "opened", &socket_name],
        Duration::from_secs(10),
    );
    assert!(line.contains("does not exist"), "{line}");
    // Opened once the condition held for a second: the status now lists it.
    let s = status(&d);
    assert!(
        s["status"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.to_string().contains("chrony-unreachable")),
        "status lists no chrony-unreachable alert: {s}"
    );

    // chronyd comes up at that path: gnomond finds it and gives it the plan.
    chronyd.start_again().unwrap();
    wait_for("chrony reachable", Duration::from_secs(10), || {
        let s = status(&d);
        (s["status"]["chrony"]["reachable"] == true)
            .then_some(())
            .ok_or_else(|| s["status"]["chrony"].to_string())
    });
    wait_output(
        &d,
        &["chrony-unreachable", "resolved"],
        Duration::from_secs(10),
    );
    wait_for("plan applied", Duration::from_secs(10), || {
        let s = status(&d);
        (s["status"]["chrony"]["plan_applied"] == true)
            .then_some(())
            .ok_or_else(|| s["status"]["chrony"].to_string())
    });
    let file = fs::read_to_string(chronyd.sources_dir().join("gnomon.sources")).unwrap();
    assert!(file.contains("127.0.0.32"), "{file}");
}

// ---------------------------------------------------------------------------
// SIGHUP.

#[test]
fn sighup_keeps_the_running_config_when_the_file_is_broken_and_applies_a_good_one() {
    let chronyd = host_chronyd("lc-hup");
    let sources_file = chronyd.sources_dir().join("gnomon.sources");
    let config = client_config(chronyd.socket(), chronyd.sources_dir());
    let first_fallback = config.fallback.servers[0].address.clone();
    let mut d = Gnomond::start(GnomondSpec::new(config.clone())).unwrap();
    wait_ready(&d);
    wait_for("the first plan in chrony", Duration::from_secs(10), || {
        let file = fs::read_to_string(&sources_file).unwrap_or_default();
        file.contains(&first_fallback).then_some(()).ok_or(file)
    });
    let readies = |d: &Gnomond| d.notify().values("READY").len();
    let before = readies(&d);

    // A broken file: reported, and the daemon carries on as it was.
    d.write_config_text(SYNTAX_ERROR).unwrap();
    d.signal(Signal::HUP).unwrap();
    let line = wait_output(
        &d,
        &["SIGHUP", "the running configuration stays in force"],
        Duration::from_secs(5),
    );
    assert!(
        line.contains(&d.config_path().display().to_string()) && line.contains("line 6"),
        "{line}"
    );
    wait_for(
        "READY=1 after the failed reload",
        Duration::from_secs(5),
        || {
            (readies(&d) > before)
                .then_some(())
                .ok_or_else(|| format!("{:?}", d.notify().all()))
        },
    );
    assert!(d.is_running(), "{}", d.output());
    let s = status(&d);
    assert_eq!(s["status"]["role"], "client", "{s}");
    assert_eq!(s["daemon"]["pid"], d.pid().unwrap());

    // A good file with a second fallback: planned and written into chrony.
    let mut changed = config.clone();
    let second = silent_server(33);
    let second_address = second.address.clone();
    changed.fallback.servers.push(second);
    changed.thresholds.grace = Duration::from_secs(45);
    d.write_config(&changed).unwrap();
    let before = d.notify().all().len();
    d.signal(Signal::HUP).unwrap();
    wait_output(&d, &["configuration reloaded"], Duration::from_secs(5));
    wait_for(
        "the new fallback in the plan",
        Duration::from_secs(10),
        || {
            let src = json(&d.gnomonctl(&["sources", "--json"]).unwrap());
            let planned = src["plan"]["sources"].to_string();
            planned
                .contains(&second_address)
                .then_some(())
                .ok_or(planned)
        },
    );
    wait_for(
        "the new fallback in chrony's sources file",
        Duration::from_secs(10),
        || {
            let file = fs::read_to_string(&sources_file).unwrap_or_default();
            (file.contains(&second_address) && file.contains(&first_fallback))
                .then_some(())
                .ok_or(file)
        },
    );
    // systemd saw RELOADING=1 (with the monotonic stamp), then READY=1.
    let after: Vec<String> = d.notify().all()[before..]
        .iter()
        .map(|n| n.text.clone())
        .collect();
    let reloading = after
        .iter()
        .position(|t| t.lines().any(|l| l == "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 after SIGHUP: {after:?}"));
    assert!(
        after[reloading]
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{after:?}"
    );
    assert!(
        after[reloading + 1..]
            .iter()
            .any(|t| t.lines().any(|l| l == "READY=1")),
        "no READY=1 after RELOADING=1: {after:?}"
    );
    stop(&mut d, Signal::TERM);
}

// ---------------------------------------------------------------------------
// The state directory.

#[test]
fn a_freeze_survives_a_restart() {
    let chronyd = host_chronyd("lc-restart");
    let state = tempfile::tempdir().unwrap();
    let config = client_config(chronyd.socket(), chronyd.sources_dir());
    let reason = "lifecycle test: restart under freeze";

    let mut d = Gnomond::start(spec_with_state(config.clone(), state.path())).unwrap();
    wait_ready(&d);
    let out = d.gnomonctl(&["freeze", "--reason", reason]).unwrap();
    assert!(out.status.success(), "{out:?}");
    stop(&mut d, Signal::TERM);
    assert!(!d.control_socket().exists());
    drop(d);

    let d = Gnomond::start(spec_with_state(config, state.path())).unwrap();
    wait_ready(&d);
    let s = wait_for("state frozen", Duration::from_secs(10), || {
        let s = status(&d);
        (s["status"]["state"] == "frozen")
            .then_some(s.clone())
            .ok_or_else(|| s["status"].to_string())
    });
    assert_eq!(s["status"]["frozen"]["reason"], reason, "{s}");
    let history = json(&d.gnomonctl(&["history", "--json"]).unwrap());
    let decisions = history["decisions"].as_array().unwrap();
    assert!(
        decisions
            .iter()
            .any(|x| x["kind"] == "freeze" && x["reason"].as_str().unwrap().contains(reason)),
        "the freeze is not in the history after a restart: {history}"
    );
}

#[test]
fn a_corrupt_state_file_is_kept_aside_and_gnomond_starts() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("state.json");
    let garbage = b"{\"format\": 1, \"freeze\": {\"rea";
    fs::write(&state_file, garbage).unwrap();

    let mut d =
        Gnomond::start(spec_with_state(config_without_chronyd(&dir), state.path())).unwrap();
    wait_ready(&d);
    let line = wait_output(
        &d,
        &["WARN", &state_file.display().to_string()],
        Duration::from_secs(5),
    );
    assert!(line.contains("state.json.corrupt"), "{line}");
    assert_eq!(
        fs::read(state.path().join("state.json.corrupt")).unwrap(),
        garbage,
        "the damaged file must be kept as it was"
    );
    let s = status(&d);
    assert!(s["status"]["frozen"].is_null(), "{s}");
    stop(&mut d, Signal::TERM);
    // The clean state written at shutdown sits beside the kept damage.
    assert!(state_file.is_file());
    assert!(state.path().join("state.json.corrupt").is_file());
}

#[test]
fn a_full_state_disk_raises_state_not_saved_and_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    // Declared before gnomond so that it is unmounted after gnomond is gone.
    let disk = Tmpfs::mount("size=16k,mode=0755").unwrap();
    let state = disk.path().join("state");
    fs::create_dir(&state).unwrap();
    disk.fill().unwrap();

    let mut d = Gnomond::start(spec_with_state(config_without_chronyd(&dir), &state)).unwrap();
    wait_ready(&d);
    // A freeze is recorded and persisted at once: both writes hit the full disk.
    let out = d
        .gnomonctl(&["freeze", "--reason", "full disk test"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = wait_output(&d, &["state-not-saved", "opened"], Duration::from_secs(10));
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        line.contains(&state.display().to_string()),
        "the alert must name the file: {line}"
    );
    assert!(d.is_running(), "{}", d.output());
    let s = status(&d);
    assert_eq!(s["status"]["state"], "frozen", "{s}");

    let out = d.gnomonctl(&["check", "--json"]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed check exits 1: {out:?}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "state-dir")
        .unwrap_or_else(|| panic!("no state-dir item: {report}"));
    assert_eq!(item["outcome"], "fail", "{report}");
    assert!(
        item["detail"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{report}"
    );
    let out = d.gnomonctl(&["check"]).unwrap();
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains("state-dir") && l.contains("FAIL")),
        "{table}"
    );
    // Stopping cannot save either, but is still a clean stop.
    stop(&mut d, Signal::TERM);
}

// ---------------------------------------------------------------------------
// Signals and systemd.

#[test]
fn sigint_stops_gnomond_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Gnomond::start(GnomondSpec::new(config_without_chronyd(&dir))).unwrap();
    wait_ready(&d);
    assert!(d.control_socket().exists());
    stop(&mut d, Signal::INT);
    let out = d.output();
    assert!(out.contains("SIGINT: shutting down"), "{out}");
    assert!(out.contains("gnomond stopped"), "{out}");
    assert!(
        !d.control_socket().exists(),
        "control socket {} left behind",
        d.control_socket().display()
    );
    assert!(d.state_dir().join("state.json").is_file(), "{out}");
    assert!(
        d.notify().values("STOPPING").contains(&"1".to_owned()),
        "{:?}",
        d.notify().all()
    );
}

/// When each WATCHDOG=1 arrived.
fn pings(d: &Gnomond) -> Vec<Duration> {
    d.notify()
        .all()
        .into_iter()
        .filter(|n| n.text.lines().any(|l| l == "WATCHDOG=1"))
        .map(|n| n.at)
        .collect()
}

#[test]
fn watchdog_pings_come_only_from_a_running_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = GnomondSpec::new(config_without_chronyd(&dir));
    spec.watchdog = Some(Duration::from_secs(1));
    let d = Gnomond::start(spec).unwrap();
    wait_ready(&d);

    // Running: a ping every half watchdog interval.
    thread::sleep(Duration::from_secs(3));
    let running = pings(&d);
    let steady: Vec<Duration> = running.iter().rev().take(6).rev().copied().collect();
    assert!(
        steady.len() >= 5,
        "only {} WATCHDOG=1 in all: {running:?}",
        running.len()
    );
    for pair in steady.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(300) && gap <= Duration::from_millis(800),
            "WATCHDOG=1 every {gap:?}, not about every 500 ms: {steady:?}"
        );
    }

    // Stopped: no pings at all.
    d.signal(Signal::STOP).unwrap();
    thread::sleep(Duration::from_millis(200));
    let at_stop = pings(&d).len();
    thread::sleep(Duration::from_secs(2));
    let while_stopped = pings(&d).len() - at_stop;
    d.signal(Signal::CONT).unwrap();
    assert_eq!(
        while_stopped,
        0,
        "WATCHDOG=1 from a stopped process: {:?}",
        pings(&d)
    );

    // Continued: the loop runs again, and so do the pings.
    thread::sleep(Duration::from_millis(1600));
    let resumed = pings(&d).len() - at_stop;
    assert!(
        resumed >= 2,
        "{resumed} WATCHDOG=1 in 1.6 s after SIGCONT: {:?}",
        pings(&d)
    );
    let s = status(&d);
    assert_eq!(s["daemon"]["pid"], d.pid().unwrap());
}
