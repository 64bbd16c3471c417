//! The files that make gnomond a systemd service (`systemd/`) against
//! systemd's own tools: the unit verifies cleanly with the real binary,
//! `systemd-analyze security` scores it 2.0 or better ("OK"), sysusers and
//! tmpfiles create the user and directories in a scratch root, and the
//! paths and exit codes the unit names are the ones gnomond uses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

use gnomon_core::config::Paths;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unit_path() -> PathBuf {
    repo().join("systemd/gnomond.service")
}

fn unit() -> String {
    fs::read_to_string(unit_path()).unwrap()
}

/// Every value of `Key=` in the unit, in order.
fn values(key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn systemd_analyze() -> Command {
    Command::new("systemd-analyze")
}

#[test]
fn the_unit_verifies_with_the_real_binary() {
    // The unit names /usr/bin/gnomond; verify it with this build's binary
    // in its place (verify checks the ExecStart= program exists).
    let dir = tempfile::tempdir().unwrap();
    let text = unit().replace("/usr/bin/gnomond", env!("CARGO_BIN_EXE_gnomond"));
    assert_ne!(text, unit(), "ExecStart no longer names /usr/bin/gnomond");
    let copy = dir.path().join("gnomond.service");
    fs::write(&copy, text).unwrap();
    let out = systemd_analyze()
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn the_security_score_is_2_or_better() {
    let out = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall level in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    println!("{line}");
    assert!(score <= 2.0, "{line}\n{text}");
    assert!(line.contains("OK"), "{line}");
}

#[test]
fn sysusers_and_tmpfiles_make_the_user_and_directories() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    fs::create_dir(&etc).unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        fs::write(etc.join(f), "").unwrap();
    }
    let sysusers = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(
            repo()
                .join("systemd/gnomon.sysusers")
                .canonicalize()
                .unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        sysusers.status.success(),
        "{}",
        String::from_utf8_lossy(&sysusers.stderr)
    );
    let passwd = fs::read_to_string(etc.join("passwd")).unwrap();
    let group = fs::read_to_string(etc.join("group")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("gnomon:"))
        .unwrap_or_else(|| panic!("no gnomon user:\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[5], "/var/lib/gnomon", "{user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    assert!(group.lines().any(|l| l.starts_with("gpio:")), "{group}");
    assert!(group.lines().any(|l| l.starts_with("gnomon:")), "{group}");
    let uid: u32 = fields[2].parse().unwrap();

    let tmpfiles = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(
            repo()
                .join("systemd/gnomon.tmpfiles")
                .canonicalize()
                .unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        tmpfiles.status.success(),
        "{}",
        String::from_utf8_lossy(&tmpfiles.stderr)
    );
    let defaults = Paths::default();
    for (dir, mode) in [
        (defaults.runtime_dir.as_str(), 0o755),
        (defaults.sources_dir.as_str(), 0o755),
        (defaults.state_dir.as_str(), 0o750),
    ] {
        let path = root.path().join(dir.trim_start_matches('/'));
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.mode() & 0o777, mode, "{dir}");
        assert_eq!(meta.uid(), uid, "{dir} owner");
    }
}

#[test]
fn the_unit_names_gnomonds_own_paths_and_exit_codes() {
    let defaults = Paths::default();
    let run = defaults.runtime_dir.strip_prefix("/run/").unwrap();
    let sources = defaults.sources_dir.strip_prefix("/run/").unwrap();
    let runtime: Vec<String> = values("RuntimeDirectory")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert!(runtime.iter().any(|d| d == run), "{runtime:?}");
    assert!(runtime.iter().any(|d| d == sources), "{runtime:?}");
    assert!(
        defaults.control_socket.starts_with(&defaults.runtime_dir),
        "the control socket must live in the runtime directory"
    );
    assert_eq!(
        values("StateDirectory"),
        [defaults.state_dir.strip_prefix("/var/lib/").unwrap()]
    );
    assert_eq!(values("RuntimeDirectoryPreserve"), ["yes"]);
    assert_eq!(
        values("RestartPreventExitStatus"),
        [gnomond::exit::CONFIG.to_string()]
    );
    assert_eq!(values("Type"), ["notify"]);
    assert_eq!(values("User"), ["gnomon"]);
    assert!(values("WatchdogSec").len() == 1);
    let exec = values("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].contains("--config /etc/gnomon/gnomon.toml"),
        "{exec:?}"
    );
    // Whenever gnomond stops, chrony is left with the fail-safe sources,
    // read from the same configuration.
    assert_eq!(values("ExecStopPost"), [format!("{} --fail-safe", exec[0])]);
    // gnomond needs no capability: chrony sets the clock.
    assert_eq!(values("CapabilityBoundingSet"), [""]);
}
