//! gnomond's state directory on real filesystems: round trips, damaged
//! files (reported, kept aside, never fatal), a full disk and a read-only
//! filesystem (tmpfs mounts: these tests need root and fail, never skip,
//! without it), and the operator's floor file.

// Helpers outside #[test] fns count as non-test code for clippy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use gnomon_core::{
    engine::{Decision, DecisionKind, EngineState, FallbackMode, FreezeRecord, PersistedState},
    time::{MonoTime, WallTime},
};
use gnomon_lab::tmpfs::Tmpfs;
use gnomond::persist::{
    read_floor_file, DecisionHistory, FloorFileError, PersistOperation, StateStore,
    HISTORY_CAPACITY,
};

fn decision(i: u64) -> Decision {
    Decision {
        at: MonoTime::from_nanos(i * 1_000_000_000),
        wall: Some(WallTime::from_unix_secs(
            1_795_315_675 + i64::try_from(i).unwrap(),
        )),
        kind: if i % 2 == 0 {
            DecisionKind::EngageFallbacks
        } else {
            DecisionKind::ReleaseFallbacks
        },
        state: EngineState::Fallback,
        reason: format!("decision {i}: primary unreachable for 120 s"),
    }
}

fn some_state() -> PersistedState {
    PersistedState {
        last_synchronised: Some(WallTime::from_utc(2026, 11, 22, 2, 47, 55, 123_000_000).unwrap()),
        freeze: Some(FreezeRecord {
            reason: "maintenance on the GPS antenna".to_owned(),
            since: Some(WallTime::from_unix_secs(1_795_300_000)),
        }),
        fallback_mode: FallbackMode::Engaged,
        fallbacks_engaged: true,
        gate_open: true,
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn history_of(h: &DecisionHistory) -> Vec<Decision> {
    h.iter().cloned().collect()
}

fn json_line(d: &Decision) -> String {
    format!("{}\n", serde_json::to_string(d).unwrap())
}

// ---------------------------------------------------------------------------
// Round trips.

#[test]
fn a_missing_directory_is_a_clean_first_start_and_is_created_on_save() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("var/lib/gnomon");
    let mut store = StateStore::new(&dir);
    assert_eq!(store.dir(), dir);

    let restored = store.load();
    assert_eq!(restored.state, PersistedState::default());
    assert!(restored.history.is_empty());
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert!(!dir.exists(), "loading must not create anything");

    store.save_state(&some_state()).unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o750
    );
    store.append_decision(&decision(1)).unwrap();
    assert_eq!(names_in(&dir), vec!["history.jsonl", "state.json"]);
    for name in ["history.jsonl", "state.json"] {
        let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "{name}");
    }
}

#[test]
fn state_and_history_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = StateStore::new(tmp.path());
    store.save_state(&PersistedState::default()).unwrap();
    store.save_state(&some_state()).unwrap();
    for i in 0..5 {
        store.append_decision(&decision(i)).unwrap();
    }

    let restored = StateStore::new(tmp.path()).load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(restored.state, some_state());
    assert_eq!(
        history_of(&restored.history),
        (0..5).map(decision).collect::<Vec<_>>()
    );
    assert_eq!(restored.history.newest(2), vec![decision(3), decision(4)]);

    // The file says what it is to an operator who opens it.
    let text = fs::read_to_string(tmp.path().join("state.json")).unwrap();
    assert!(text.contains("\"format\": 1"), "{text}");
    assert!(text.contains("maintenance on the GPS antenna"), "{text}");
    assert!(text.ends_with("}\n"), "{text}");
    // One decision per line, each a JSON object.
    let history = fs::read_to_string(tmp.path().join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 5);
    assert!(history
        .lines()
        .all(|l| l.starts_with('{') && l.ends_with('}')));
}

#[test]
fn history_keeps_the_newest_thousand_and_the_file_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.jsonl");
    // A long-running daemon's file: 1999 decisions already on disk.
    let text: String = (0..1999).map(|i| json_line(&decision(i))).collect();
    fs::write(&path, text).unwrap();

    let restored = StateStore::new(tmp.path()).load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(restored.history.len(), HISTORY_CAPACITY);
    assert_eq!(restored.history.iter().next(), Some(&decision(999)));
    assert_eq!(restored.history.iter().last(), Some(&decision(1998)));

    // A store that never loaded learns the file's size on its first append.
    let mut store = StateStore::new(tmp.path());
    store.append_decision(&decision(1999)).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2000);
    // Beyond 2000 lines the file is rewritten to the newest 1000.
    store.append_decision(&decision(2000)).unwrap();
    let lines = fs::read_to_string(&path).unwrap();
    assert_eq!(lines.lines().count(), HISTORY_CAPACITY);
    assert_eq!(
        lines.lines().next().unwrap(),
        json_line(&decision(1001)).trim_end()
    );
    store.append_decision(&decision(2001)).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap().lines().count(),
        HISTORY_CAPACITY + 1
    );
    assert_eq!(names_in(tmp.path()), vec!["history.jsonl"]);

    let restored = StateStore::new(tmp.path()).load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(
        history_of(&restored.history),
        (1002..=2001).map(decision).collect::<Vec<_>>(),
        "the oldest are dropped first"
    );
}

// ---------------------------------------------------------------------------
// Damaged state files: reported, kept aside, defaults used.

#[test]
fn a_truncated_state_file_is_kept_aside_and_defaults_used() {
    let tmp = tempfile::tempdir().unwrap();
    let store = StateStore::new(tmp.path());
    store.save_state(&some_state()).unwrap();
    let path = tmp.path().join("state.json");
    let whole = fs::read(&path).unwrap();
    let half = &whole[..whole.len() / 2];
    fs::write(&path, half).unwrap();

    let restored = store.load();
    assert_eq!(restored.state, PersistedState::default());
    assert_eq!(restored.problems.len(), 1, "{:?}", restored.problems);
    let problem = &restored.problems[0];
    let aside = tmp.path().join("state.json.corrupt");
    assert!(
        problem.starts_with(&path.display().to_string()),
        "{problem}"
    );
    assert!(problem.contains("is cut short"), "{problem}");
    assert!(
        problem.contains(&format!("kept as {}", aside.display())),
        "{problem}"
    );
    assert!(
        problem.ends_with("starting from the default state"),
        "{problem}"
    );
    assert_eq!(
        fs::read(&aside).unwrap(),
        half,
        "the bad file is kept as it was"
    );
    assert!(!path.exists());

    // Saving works again, and a second incident does not erase the first.
    store.save_state(&some_state()).unwrap();
    assert_eq!(store.load().state, some_state());
    fs::write(&path, b"{").unwrap();
    let restored = store.load();
    assert_eq!(restored.state, PersistedState::default());
    assert!(
        restored.problems[0].contains("state.json.corrupt.1"),
        "{:?}",
        restored.problems
    );
    assert_eq!(fs::read(&aside).unwrap(), half);
    assert_eq!(
        fs::read(tmp.path().join("state.json.corrupt.1")).unwrap(),
        b"{"
    );
}

#[test]
fn garbage_empty_and_foreign_state_files_are_reported_never_fatal() {
    for (content, says) in [
        (&b""[..], "is empty"),
        (b"\n\n", "is empty"),
        (b"\x7fELF\x02\x01\x01\0\0\0", "is not valid JSON"),
        (b"last-synchronised = 12", "is not valid JSON"),
        (b"[true]", "does not hold a JSON object"),
        (b"{\"format\": -1}", "invalid format field -1"),
        (b"{\"gate-open\": \"wide\"}", "does not hold gnomon's state"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        fs::write(&path, content).unwrap();
        let restored = StateStore::new(tmp.path()).load();
        assert_eq!(restored.state, PersistedState::default());
        assert_eq!(restored.problems.len(), 1, "{:?}", restored.problems);
        assert!(
            restored.problems[0].contains(says),
            "{says}: {:?}",
            restored.problems
        );
        assert_eq!(
            fs::read(tmp.path().join("state.json.corrupt")).unwrap(),
            content
        );
    }
}

#[test]
fn unknown_fields_are_ignored_and_missing_ones_default() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("state.json"),
        r#"{
  "format": 1,
  "last-synchronised": 1795315675123000000,
  "gate-open": true,
  "written-by": "gnomond 9.9",
  "leap-smear": {"enabled": true}
}
"#,
    )
    .unwrap();
    let restored = StateStore::new(tmp.path()).load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(
        restored.state,
        PersistedState {
            last_synchronised: Some(WallTime::from_unix_nanos(1_795_315_675_123_000_000)),
            gate_open: true,
            ..PersistedState::default()
        }
    );
    assert_eq!(names_in(tmp.path()), vec!["state.json"]);
}

#[test]
fn a_state_file_of_a_newer_format_is_kept_aside_not_misread() {
    let tmp = tempfile::tempdir().unwrap();
    let content = r#"{"format": 2, "gate-open": true}"#;
    fs::write(tmp.path().join("state.json"), content).unwrap();
    let restored = StateStore::new(tmp.path()).load();
    assert_eq!(restored.state, PersistedState::default());
    assert!(
        restored.problems[0].contains("format 2 by a newer gnomond"),
        "{:?}",
        restored.problems
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("state.json.newer")).unwrap(),
        content
    );
}

#[test]
fn an_unreadable_state_file_is_reported_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.json");
    fs::create_dir(&path).unwrap();
    let restored = StateStore::new(tmp.path()).load();
    assert_eq!(restored.state, PersistedState::default());
    assert!(
        restored.problems[0].starts_with(&format!("reading {}: ", path.display())),
        "{:?}",
        restored.problems
    );
    assert!(path.is_dir());
}

// ---------------------------------------------------------------------------
// Damaged history files.

#[test]
fn a_torn_last_history_line_loses_only_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = StateStore::new(tmp.path());
    for i in 0..3 {
        store.append_decision(&decision(i)).unwrap();
    }
    let path = tmp.path().join("history.jsonl");
    // Power cut in the middle of the fourth append.
    let torn = json_line(&decision(3));
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&torn.as_bytes()[..torn.len() / 2])
        .unwrap();

    let restored = StateStore::new(tmp.path()).load();
    assert_eq!(
        history_of(&restored.history),
        (0..3).map(decision).collect::<Vec<_>>()
    );
    assert_eq!(restored.problems.len(), 1, "{:?}", restored.problems);
    assert!(
        restored.problems[0].contains(&format!("{}: line 4 was cut short", path.display())),
        "{:?}",
        restored.problems
    );
    // The file was repaired: the fragment is gone, the next start is clean
    // and appends line up.
    let repaired: String = (0..3).map(|i| json_line(&decision(i))).collect();
    assert_eq!(fs::read_to_string(&path).unwrap(), repaired);
    let mut store = StateStore::new(tmp.path());
    store.append_decision(&decision(4)).unwrap();
    let restored = store.load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(
        history_of(&restored.history),
        vec![decision(0), decision(1), decision(2), decision(4)]
    );
}

#[test]
fn an_append_after_a_torn_line_is_not_glued_to_it() {
    // The daemon always loads first, but the store must not depend on it.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.jsonl");
    let torn = json_line(&decision(1));
    fs::write(
        &path,
        format!("{}{}", json_line(&decision(0)), &torn[..torn.len() - 5]),
    )
    .unwrap();
    let mut store = StateStore::new(tmp.path());
    store.append_decision(&decision(2)).unwrap();
    let restored = store.load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(
        history_of(&restored.history),
        vec![decision(0), decision(2)]
    );
}

#[test]
fn unreadable_history_lines_are_skipped_and_the_file_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.jsonl");
    let original = format!(
        "{}not json at all\n{}\n{{\"at\": 5}}\n{}",
        json_line(&decision(0)),
        json_line(&decision(1)),
        json_line(&decision(2)),
    );
    fs::write(&path, &original).unwrap();

    let restored = StateStore::new(tmp.path()).load();
    assert_eq!(
        history_of(&restored.history),
        (0..3).map(decision).collect::<Vec<_>>()
    );
    assert_eq!(restored.problems.len(), 1, "{:?}", restored.problems);
    let problem = &restored.problems[0];
    assert!(
        problem.contains("2 unreadable line(s) skipped (the first, line 2:"),
        "{problem}"
    );
    let aside = tmp.path().join("history.jsonl.corrupt");
    assert!(
        problem.ends_with(&format!("kept as {}", aside.display())),
        "{problem}"
    );
    assert_eq!(fs::read_to_string(&aside).unwrap(), original);

    // Reported once: the file in place now holds only what was readable.
    let again = StateStore::new(tmp.path()).load();
    assert!(again.problems.is_empty(), "{:?}", again.problems);
    assert_eq!(again.history, restored.history);
    assert_eq!(
        names_in(tmp.path()),
        vec!["history.jsonl", "history.jsonl.corrupt"]
    );
}

#[test]
fn an_empty_or_binary_history_file_starts_an_empty_history() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.jsonl");
    fs::write(&path, b"").unwrap();
    let restored = StateStore::new(tmp.path()).load();
    assert!(restored.history.is_empty());
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);

    fs::write(&path, b"\0\0\0\0\n\xff\xfe\n\0\0").unwrap();
    let restored = StateStore::new(tmp.path()).load();
    assert!(restored.history.is_empty());
    assert_eq!(restored.problems.len(), 2, "{:?}", restored.problems);
    assert!(
        restored.problems[0].contains("line 3 was cut short"),
        "{:?}",
        restored.problems
    );
    assert!(
        restored.problems[1].contains("2 unreadable line(s)"),
        "{:?}",
        restored.problems
    );
    let mut store = StateStore::new(tmp.path());
    store.append_decision(&decision(7)).unwrap();
    assert_eq!(history_of(&store.load().history), vec![decision(7)]);
}

// ---------------------------------------------------------------------------
// Filesystems that fail.

#[test]
fn a_full_disk_is_an_error_value_and_the_old_files_stay_intact() {
    let fs_ = Tmpfs::mount("size=16k,mode=0755").unwrap();
    let dir = fs_.path().join("state");
    let mut store = StateStore::new(&dir);
    store.save_state(&PersistedState::default()).unwrap();
    for i in 0..3 {
        store.append_decision(&decision(i)).unwrap();
    }
    let old_state = fs::read(dir.join("state.json")).unwrap();
    fs_.fill().unwrap();

    let err = store.save_state(&some_state()).unwrap_err();
    assert!(err.is_no_space(), "{err}");
    let temp = dir.join("state.json.tmp");
    assert_eq!(
        err.to_string(),
        format!(
            "writing {}: No space left on device (os error 28)",
            temp.display()
        )
    );
    assert_eq!(err.path(), temp);
    assert_eq!(fs::read(dir.join("state.json")).unwrap(), old_state);
    assert_eq!(names_in(&dir), vec!["history.jsonl", "state.json"]);

    // Appends fill the history file's last page, then fail; the decisions
    // written before are intact and no half line is left behind.
    let mut appended = 3;
    let err = loop {
        match store.append_decision(&decision(appended)) {
            Ok(()) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 100, "the disk never filled");
    };
    assert!(err.is_no_space(), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "appending to {}: ",
            dir.join("history.jsonl").display()
        )),
        "{err}"
    );
    let restored = store.load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(restored.state, PersistedState::default());
    assert_eq!(
        history_of(&restored.history),
        (0..appended).map(decision).collect::<Vec<_>>()
    );

    // Once space is freed, saving works again.
    fs::remove_file(fs_.path().join("filler")).unwrap();
    store.save_state(&some_state()).unwrap();
    store.append_decision(&decision(appended)).unwrap();
    let restored = store.load();
    assert_eq!(restored.state, some_state());
    assert_eq!(
        restored.history.len(),
        usize::try_from(appended).unwrap() + 1
    );
}

#[test]
fn a_read_only_filesystem_is_an_error_naming_the_path() {
    let fs_ = Tmpfs::mount("size=1m,mode=0755").unwrap();
    let dir = fs_.path();
    let mut store = StateStore::new(dir);
    store.save_state(&some_state()).unwrap();
    store.append_decision(&decision(0)).unwrap();
    let missing = StateStore::new(dir.join("absent"));
    fs_.remount_read_only().unwrap();

    let err = store.save_state(&PersistedState::default()).unwrap_err();
    assert!(!err.is_no_space());
    assert_eq!(
        err.to_string(),
        format!(
            "creating {}: Read-only file system (os error 30)",
            dir.join("state.json.tmp").display()
        )
    );
    let err = store.append_decision(&decision(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "opening {}: Read-only file system (os error 30)",
            dir.join("history.jsonl").display()
        )
    );
    let err = missing.save_state(&some_state()).unwrap_err();
    assert!(matches!(
        err,
        gnomond::persist::PersistError::Io {
            operation: PersistOperation::CreatingDirectory,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "creating directory {}: Read-only file system (os error 30)",
            dir.join("absent").display()
        )
    );

    let restored = store.load();
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);
    assert_eq!(restored.state, some_state());
    assert_eq!(history_of(&restored.history), vec![decision(0)]);
}

#[test]
fn damage_on_a_read_only_filesystem_is_reported_and_not_fatal() {
    let fs_ = Tmpfs::mount("size=1m,mode=0755").unwrap();
    let dir = fs_.path();
    fs::write(dir.join("state.json"), b"{\"format\": 1, \"gate-op").unwrap();
    fs::write(
        dir.join("history.jsonl"),
        format!("{}{{\"at\"", json_line(&decision(0))),
    )
    .unwrap();
    fs_.remount_read_only().unwrap();

    let restored = StateStore::new(dir).load();
    assert_eq!(restored.state, PersistedState::default());
    assert_eq!(history_of(&restored.history), vec![decision(0)]);
    assert_eq!(restored.problems.len(), 3, "{:?}", restored.problems);
    assert!(
        restored.problems[0].contains("could not be kept aside (Read-only file system"),
        "{:?}",
        restored.problems
    );
    assert!(
        restored.problems[1].contains("line 2 was cut short"),
        "{:?}",
        restored.problems
    );
    assert!(
        restored.problems[2]
            .starts_with("rewriting the decision history without its damage: creating "),
        "{:?}",
        restored.problems
    );
}

#[test]
fn a_state_directory_that_cannot_be_created_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    for dir in [file.clone(), file.join("state")] {
        let mut store = StateStore::new(&dir);
        let err = store.save_state(&some_state()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("creating directory {}: ", dir.display())),
            "{err}"
        );
        let err = store.append_decision(&decision(0)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("creating directory {}: ", dir.display())),
            "{err}"
        );
        // Loading reports the same trouble but still starts.
        let restored = store.load();
        assert_eq!(restored.state, PersistedState::default());
        assert!(!restored.problems.is_empty());
    }
}

// ---------------------------------------------------------------------------
// The operator's floor file.

fn floor_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("floor");
    fs::write(&path, content).unwrap();
    (tmp, path)
}

#[test]
fn floor_file_accepts_rfc3339_utc_or_unix_seconds_with_comments() {
    let nov = WallTime::from_utc(2026, 11, 1, 0, 0, 0, 0).unwrap();
    for (content, want) in [
        ("2026-11-01T00:00:00Z", nov),
        ("2026-11-01T00:00:00Z\n", nov),
        (
            "# set after the install of 2026-10\n\n   2026-11-01T00:00:00+00:00  \n# end\n",
            nov,
        ),
        ("\t1793491200\r\n", nov),
        (
            "2026-11-01T00:00:00.250Z",
            WallTime::from_unix_nanos(nov.unix_nanos() + 250_000_000),
        ),
        ("0", WallTime::UNIX_EPOCH),
    ] {
        let (_tmp, path) = floor_file(content.as_bytes());
        assert_eq!(read_floor_file(&path).unwrap(), want, "{content:?}");
    }
}

#[test]
fn floor_file_errors_name_the_path_and_the_problem() {
    for (content, says) in [
        (&b""[..], "holds no time"),
        (b"# only a comment\n\n", "holds no time"),
        (
            b"2026-11-01T00:00:00Z\n1793491200\n",
            "line 2: a second time (the first is on line 1)",
        ),
        (b"2026-11-01T02:00:00+02:00", "offset +02:00 is not UTC"),
        (
            b"2026-11-01 00:00:00",
            "line 1: \"2026-11-01 00:00:00\" is neither",
        ),
        (b"2026-11-01T00:00:00Z # install", "is neither"),
        (b"-5", "is neither"),
        (b"99999999999999999999", "too large for Unix seconds"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ] {
        let (_tmp, path) = floor_file(content);
        let err = read_floor_file(&path).unwrap_err();
        assert!(matches!(err, FloorFileError::Invalid { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("time floor file {}: ", path.display())),
            "{msg}"
        );
        assert!(msg.contains(says), "{says}: {msg}");
    }

    let (_tmp, path) = floor_file(&vec![b'#'; 5000]);
    assert!(read_floor_file(&path)
        .unwrap_err()
        .to_string()
        .contains("is larger than 4096 bytes"));

    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("floor");
    let err = read_floor_file(&missing).unwrap_err();
    assert!(matches!(err, FloorFileError::Read { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "reading time floor file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}
