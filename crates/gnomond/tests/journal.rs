//! gnomond's logging against a real systemd-journald (a private one in a
//! mount namespace, from gnomon-lab) and without any journald, plus the
//! message catalog in deploy/.
//!
//! `journal::init` installs a process-wide subscriber, so each scenario
//! runs in a child: this test binary re-runs the same test (`--exact`)
//! with GNOMON_JOURNAL_TEST_CHILD set, inside the namespace, and the child
//! does the logging half. Needs root, journald, unshare and nsenter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use gnomon_core::{
    alert::{Alert, AlertEvent, AlertKind, AlertPhase},
    engine::{Decision, DecisionKind, EngineState},
    time::MonoTime,
};
use gnomon_lab::journald::{self, JournalEntry, PrivateJournal};
use gnomond::journal::{self as log, AlertWriter, LogTarget};

const CHILD: &str = "GNOMON_JOURNAL_TEST_CHILD";
const WAIT: Duration = Duration::from_secs(10);

fn catalog_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gnomon.catalog")
}

/// The role this process plays, when it is a child of one of the tests.
fn child_role() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// This test binary, to re-run as a child.
fn me() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// `cmd` (this binary, wrapped in nsenter or unshare) runs the test `test`
/// alone as a child playing `role`.
fn child(mut cmd: Command, test: &str, role: &str) -> Command {
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD, role)
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    cmd
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child {cmd:?} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn event(phase: AlertPhase, alert: &Alert, secs: u64) -> AlertEvent {
    AlertEvent {
        phase,
        alert: alert.clone(),
        active_for: Duration::from_secs(secs),
        resolution: None,
    }
}

fn clock_before_floor() -> Alert {
    Alert::new(
        AlertKind::ClockBeforeFloor,
        "system clock 1970-01-01T00:00:05Z is 55.8 years before the time floor",
    )
    .with("clock", "1970-01-01T00:00:05Z")
    .with("floor", "2025-11-01T00:00:00Z")
    .with("floor_source", "last synchronised")
}

fn dead_fallback() -> Alert {
    Alert::new(
        AlertKind::FallbackUnreachable,
        "fallback 192.0.2.7 (public) has not answered for 10m",
    )
    .about("192.0.2.7")
    .with("source", "192.0.2.7")
}

fn primary_unusable() -> Alert {
    Alert::new(
        AlertKind::PrimaryUnusable,
        "primary reference unusable: no fix\nPPS still pulses",
    )
    .with("state", "degraded")
}

fn engage_decision() -> Decision {
    Decision {
        at: MonoTime::from_nanos(0),
        wall: None,
        kind: DecisionKind::EngageFallbacks,
        state: EngineState::Fallback,
        reason: "primary unusable for 60s".to_owned(),
    }
}

/// What every logging child logs once `init` has chosen its sink.
fn log_the_sequence() {
    let floor = clock_before_floor();
    log::alert(
        &event(AlertPhase::Opened, &floor, 0),
        EngineState::Acquiring,
    );
    log::alert(
        &event(AlertPhase::Repeated, &floor, 600),
        EngineState::Fallback,
    );
    log::alert(
        &event(AlertPhase::Resolved, &floor, 900),
        EngineState::Primary,
    );
    log::alert(
        &event(AlertPhase::Opened, &dead_fallback(), 0),
        EngineState::Primary,
    );
    log::alert(
        &event(AlertPhase::Opened, &primary_unusable(), 0),
        EngineState::Degraded,
    );
    log::decision(&engage_decision());
    tracing::info!(path = "/var/lib/gnomon/state.json", "an ordinary line");
    tracing::error!("an ordinary error");
}

fn is_gnomond(e: &JournalEntry) -> bool {
    e.values("SYSLOG_IDENTIFIER").iter().any(|v| v == "gnomond")
}

fn field<'a>(e: &'a JournalEntry, name: &str) -> &'a str {
    e.field(name)
        .unwrap_or_else(|| panic!("field {name} missing or not single in {:?}", e.as_map()))
}

/// Every field the sender gave (not journald's `_` ones) appears once,
/// and none has tracing-journald's default `F_` prefix.
fn assert_fields_once(e: &JournalEntry) {
    for name in e.names().filter(|n| !n.starts_with('_')) {
        assert_eq!(
            e.values(name).len(),
            1,
            "{name} sent more than once: {:?}",
            e.as_map()
        );
        assert!(
            !name.starts_with("F_"),
            "prefixed field {name}: {:?}",
            e.as_map()
        );
    }
}

#[test]
fn alerts_reach_journald_with_their_fields() {
    if let Some(role) = child_role() {
        assert_eq!(role, "journald");
        let sink = log::init(LogTarget::Journald, false).unwrap();
        assert_eq!(sink.kind(), "journald");
        log_the_sequence();
        return;
    }

    let journal = PrivateJournal::start().unwrap();
    let out = run_ok(child(
        journal.command(me()),
        "alerts_reach_journald_with_their_fields",
        "journald",
    ));
    // Alerts went to journald only, not also to stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("clock-before-floor"),
        "alert on stderr too: {stderr}"
    );

    let entries = journal
        .wait_until(WAIT, |es| es.iter().filter(|e| is_gnomond(e)).count() >= 8)
        .unwrap();
    let ours: Vec<&JournalEntry> = entries.iter().filter(|e| is_gnomond(e)).collect();
    assert_eq!(ours.len(), 8, "{ours:#?}");
    for e in &ours {
        assert_fields_once(e);
        assert_eq!(
            field(e, "_TRANSPORT"),
            "journal",
            "not the native protocol: {e:?}"
        );
    }
    let alerts: Vec<&JournalEntry> = ours
        .iter()
        .copied()
        .filter(|e| e.field("GNOMON_ALERT").is_some())
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:#?}");

    let floor_id = AlertKind::ClockBeforeFloor.message_id();
    let opened = alerts[0];
    assert_eq!(field(opened, "MESSAGE_ID"), floor_id);
    assert_eq!(field(opened, "PRIORITY"), "2");
    assert_eq!(field(opened, "GNOMON_ALERT"), "clock-before-floor");
    assert_eq!(field(opened, "GNOMON_PHASE"), "opened");
    assert_eq!(field(opened, "GNOMON_STATE"), "acquiring");
    assert_eq!(field(opened, "GNOMON_ACTIVE_FOR_S"), "0");
    assert_eq!(field(opened, "GNOMON_CLOCK"), "1970-01-01T00:00:05Z");
    assert_eq!(field(opened, "GNOMON_FLOOR"), "2025-11-01T00:00:00Z");
    assert_eq!(field(opened, "GNOMON_FLOOR_SOURCE"), "last synchronised");
    assert_eq!(field(opened, "MESSAGE"), clock_before_floor().message);
    assert_eq!(opened.field("GNOMON_SUBJECT"), None);

    let repeated = alerts[1];
    assert_eq!(field(repeated, "MESSAGE_ID"), floor_id);
    assert_eq!(field(repeated, "PRIORITY"), "2");
    assert_eq!(field(repeated, "GNOMON_PHASE"), "repeated");
    assert_eq!(field(repeated, "GNOMON_STATE"), "fallback");
    assert_eq!(field(repeated, "GNOMON_ACTIVE_FOR_S"), "600");
    assert!(field(repeated, "MESSAGE").ends_with("(active for 10m)"));

    let resolved = alerts[2];
    assert_eq!(field(resolved, "MESSAGE_ID"), floor_id);
    assert_eq!(field(resolved, "PRIORITY"), "5");
    assert_eq!(field(resolved, "GNOMON_PHASE"), "resolved");
    assert_eq!(field(resolved, "GNOMON_STATE"), "primary");
    assert!(field(resolved, "MESSAGE").starts_with("resolved after 15m: system clock"));
    assert_eq!(field(resolved, "GNOMON_CLOCK"), "1970-01-01T00:00:05Z");

    let dead = alerts[3];
    assert_eq!(
        field(dead, "MESSAGE_ID"),
        AlertKind::FallbackUnreachable.message_id()
    );
    assert_eq!(field(dead, "PRIORITY"), "4");
    assert_eq!(field(dead, "GNOMON_SUBJECT"), "192.0.2.7");
    assert_eq!(field(dead, "GNOMON_SOURCE"), "192.0.2.7");

    // A newline survives (length-prefixed form); evidence STATE does not
    // overwrite the engine's state.
    let primary = alerts[4];
    assert_eq!(field(primary, "MESSAGE"), primary_unusable().message);
    assert_eq!(field(primary, "GNOMON_STATE"), "degraded");
    assert_eq!(field(primary, "GNOMON_EVIDENCE_STATE"), "degraded");

    let decision = ours[5];
    assert_eq!(field(decision, "GNOMON_DECISION"), "engage-fallbacks");
    assert_eq!(field(decision, "GNOMON_STATE"), "fallback");
    assert_eq!(field(decision, "PRIORITY"), "5");
    assert_eq!(field(decision, "MESSAGE"), "primary unusable for 60s");

    let ordinary = ours[6];
    assert_eq!(field(ordinary, "MESSAGE"), "an ordinary line");
    assert_eq!(field(ordinary, "GNOMON_PATH"), "/var/lib/gnomon/state.json");
    assert_eq!(field(ordinary, "PRIORITY"), "5");
    assert_eq!(field(ours[7], "PRIORITY"), "3");
}

#[test]
fn auto_prefers_journald_even_when_stderr_is_a_journal_stream() {
    if let Some(role) = child_role() {
        assert_eq!(role, "auto");
        let sink = log::init(LogTarget::Auto, false).unwrap();
        assert_eq!(sink.kind(), "journald");
        assert_eq!(sink.journald_error(), None);
        log::alert(
            &event(AlertPhase::Opened, &dead_fallback(), 0),
            EngineState::Primary,
        );
        return;
    }

    let journal = PrivateJournal::start().unwrap();
    // What systemd does: stderr is a stream it names in JOURNAL_STREAM.
    let dir = tempfile::tempdir().unwrap();
    let stream = fs::File::create(dir.path().join("stream")).unwrap();
    let meta = stream.metadata().unwrap();
    let mut cmd = child(
        journal.command(me()),
        "auto_prefers_journald_even_when_stderr_is_a_journal_stream",
        "auto",
    );
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stream);
    run_ok(cmd);

    let entries = journal
        .wait_until(WAIT, |es| {
            es.iter().any(|e| e.field("GNOMON_ALERT").is_some())
        })
        .unwrap();
    let alert = entries
        .iter()
        .find(|e| e.field("GNOMON_ALERT").is_some())
        .unwrap();
    assert_eq!(field(alert, "_TRANSPORT"), "journal");
    assert_eq!(field(alert, "GNOMON_ALERT"), "fallback-unreachable");
    assert_fields_once(alert);
    let stderr = fs::read_to_string(dir.path().join("stream")).unwrap();
    assert!(!stderr.contains("fallback-unreachable"), "{stderr}");
}

#[test]
fn without_journald_auto_logs_one_line_per_event_on_stderr() {
    if let Some(role) = child_role() {
        let err = log::init(LogTarget::Journald, false).unwrap_err();
        assert!(
            err.to_string().contains("/run/systemd/journal/socket"),
            "{err}"
        );
        let sink = log::init(LogTarget::Auto, false).unwrap();
        assert_eq!(sink.kind(), "stderr", "{role}");
        assert!(sink.journald_error().is_some());
        log_the_sequence();
        return;
    }

    let test = "without_journald_auto_logs_one_line_per_event_on_stderr";
    let out = run_ok(child(
        journald::without_journald(me()).unwrap(),
        test,
        "plain",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\u{1b}'), "colours on a pipe: {stderr}");
    let line = |needle: &str| -> &str {
        let found: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(found.len(), 1, "{needle} in {stderr}");
        found[0]
    };

    let opened = line("phase=opened priority=crit");
    for part in [
        "ERROR",
        "alert=clock-before-floor",
        "state=acquiring",
        "system clock 1970-01-01T00:00:05Z is 55.8 years before the time floor",
        "CLOCK=1970-01-01T00:00:05Z",
        "FLOOR=2025-11-01T00:00:00Z",
        "FLOOR_SOURCE=\"last synchronised\"",
    ] {
        assert!(opened.contains(part), "{part} not in: {opened}");
    }
    assert!(
        opened.starts_with(|c: char| c.is_ascii_digit()),
        "no timestamp: {opened}"
    );
    let resolved = line("phase=resolved");
    for part in ["INFO", "priority=notice", "resolved after 15m"] {
        assert!(resolved.contains(part), "{part} not in: {resolved}");
    }
    let dead = line("alert=fallback-unreachable");
    for part in ["WARN", "subject=192.0.2.7", "SOURCE=192.0.2.7"] {
        assert!(dead.contains(part), "{part} not in: {dead}");
    }
    // The message's newline is escaped: the event stays one line.
    assert!(line("alert=primary-unusable").contains("no fix\\nPPS still pulses"));
    assert!(line("decision=engage-fallbacks").contains("state=fallback"));
    assert!(line("an ordinary line").contains("path=\"/var/lib/gnomon/state.json\""));

    // Under systemd (stderr is the journal stream) journald stamps the
    // time, so the line does not.
    let dir = tempfile::tempdir().unwrap();
    let stream = fs::File::create(dir.path().join("stream")).unwrap();
    let meta = stream.metadata().unwrap();
    let mut cmd = child(journald::without_journald(me()).unwrap(), test, "stream");
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stream);
    run_ok(cmd);
    let stream = fs::read_to_string(dir.path().join("stream")).unwrap();
    let opened = stream
        .lines()
        .find(|l| l.contains("alert=clock-before-floor"))
        .unwrap_or_else(|| panic!("no alert line in {stream}"));
    assert!(opened.trim_start().starts_with("ERROR"), "{opened}");
}

/// The catalog's entries: (message id, header lines, text). A header runs
/// from the `-- <id>` line to the first empty line.
fn catalog_entries(text: &str) -> Vec<(String, Vec<String>, String)> {
    let mut entries: Vec<(String, Vec<String>, String)> = Vec::new();
    let mut in_header = false;
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("-- ") {
            entries.push((id.trim().to_owned(), Vec::new(), String::new()));
            in_header = true;
        } else if let Some((_, header, body)) = entries.last_mut() {
            if line.is_empty() {
                in_header = false;
            }
            if in_header {
                header.push(line.to_owned());
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    entries
}

#[test]
fn catalog_explains_every_alert_kind_once() {
    let text = fs::read_to_string(catalog_path()).unwrap();
    let entries = catalog_entries(&text);
    assert_eq!(entries.len(), AlertKind::ALL.len());
    for kind in AlertKind::ALL {
        let mine: Vec<_> = entries
            .iter()
            .filter(|(id, _, _)| id == kind.message_id())
            .collect();
        assert_eq!(mine.len(), 1, "{kind}: {} catalog entries", mine.len());
        let (_, header, body) = mine[0];
        for key in [
            "Subject: ",
            "Defined-By: gnomon",
            "Support: ",
            "Documentation: ",
        ] {
            assert!(
                header.iter().any(|h| h.starts_with(key)),
                "{kind}: no {key:?} in {header:?}"
            );
        }
        let priority = match kind.priority() {
            gnomon_core::alert::Priority::Critical => "critical",
            gnomon_core::alert::Priority::Warning => "warning",
            gnomon_core::alert::Priority::Notice => "notice",
        };
        assert!(
            body.contains(&format!("Alert {kind} ({priority})")),
            "{kind}: text does not name the alert and its priority: {body}"
        );
        assert!(body.contains("What to do"), "{kind}: no remedy");
    }

    // journalctl itself accepts the file (in a private root).
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("usr/lib/systemd/catalog");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(catalog_path(), dir.join("gnomon.catalog")).unwrap();
    let mut update = Command::new("journalctl");
    update.arg(format!("--root={}", root.path().display()));
    update.arg("--update-catalog");
    let out = run_ok(update);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut list = Command::new("journalctl");
    list.arg(format!("--root={}", root.path().display()));
    list.arg("--list-catalog");
    let listed = String::from_utf8(run_ok(list).stdout).unwrap();
    assert_eq!(listed.lines().count(), AlertKind::ALL.len(), "{listed}");
    for (id, header, _) in &entries {
        let subject = header
            .iter()
            .find_map(|h| h.strip_prefix("Subject: "))
            .unwrap();
        assert!(
            listed.contains(&format!("{id} gnomon: {subject}")),
            "{id} not listed: {listed}"
        );
    }
}

#[test]
fn journalctl_x_shows_the_catalog_text_for_an_alert() {
    let journal = PrivateJournal::start().unwrap();
    journal.install_catalog(&catalog_path()).unwrap();
    let writer = AlertWriter::connect(&journal.native_socket()).unwrap();
    writer
        .send(&log::alert_fields(
            &event(AlertPhase::Opened, &clock_before_floor(), 0),
            EngineState::Acquiring,
        ))
        .unwrap();
    journal
        .wait_until(WAIT, |es| es.iter().any(is_gnomond))
        .unwrap();

    let id = AlertKind::ClockBeforeFloor.message_id();
    let mut cmd = journal.journalctl();
    cmd.args(["-x", "-o", "short", &format!("MESSAGE_ID={id}")]);
    let shown = String::from_utf8(run_ok(cmd).stdout).unwrap();
    for part in [
        "Subject: System clock is before the time floor",
        "Defined-By: gnomon",
        // Fields of the entry substituted into the text.
        "Alert clock-before-floor (critical), opened, gnomon state",
        "System clock 1970-01-01T00:00:05Z, time floor 2025-11-01T00:00:00Z",
        "(from last synchronised)",
        "What to do",
    ] {
        let flat = shown.replace("\n░░ ", " ");
        assert!(flat.contains(part), "{part:?} not in:\n{shown}");
    }
}
