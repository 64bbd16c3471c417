//! `deploy/chrony/gnomon-chrony-helper`, which chrony.service runs through
//! gnomon's drop-in, against a real chronyd (`-x`, private paths): a PPS
//! refclock on a missing device no longer keeps chronyd from starting, the
//! fail-safe sources are in place before chronyd starts when gnomond wrote
//! none, and the SOCK refclock socket chronyd creates as root gets group
//! `_chrony`. The helper works on a directory standing for `/`
//! (`GNOMON_HELPER_ROOT`); on the booted systems it runs as installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use gnomon_chrony::sources_file;
use gnomon_core::config::Config;
use gnomon_lab::chronyd::{Chronyd, ChronydSpec};

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/chrony/gnomon-chrony-helper")
}

/// A directory standing for `/`, searchable by everyone (chronyd reads
/// through it).
fn fake_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [
        "etc/chrony",
        "run/chrony",
        "run/gnomon/chrony",
        "var/lib/gnomon",
    ] {
        fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    root
}

fn run_helper(root: &Path, step: &str) -> String {
    let out = Command::new("sh")
        .arg(helper())
        .arg(step)
        .env("GNOMON_HELPER_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chrony-helper {step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const MISSING_PPS: &str = "/dev/pps-gnomon-test-missing";

#[test]
fn chronyd_starts_when_the_pps_device_is_missing() {
    let root = fake_root();
    let pps_line = format!("refclock PPS {MISSING_PPS} lock NMEA refid PPS prefer trust");
    // As shipped before: the PPS refclock in chrony's own configuration.
    // chronyd refuses to start, and the host has no time service at all.
    let mut old = ChronydSpec::client("pps-direct");
    old.extra_conf = vec![pps_line.clone()];
    let refused = Chronyd::start(old).expect_err("chronyd started with a missing PPS device");
    assert!(
        refused
            .to_string()
            .contains(&format!("Could not open {MISSING_PPS}")),
        "chronyd failed for another reason: {refused}"
    );

    // Now: the line lives in gnomon-pps.conf; the helper leaves it out.
    fs::write(
        root.path().join("etc/chrony/gnomon-pps.conf"),
        format!("# the operator's\n{pps_line}\n"),
    )
    .unwrap();
    let said = run_helper(root.path(), "pre");
    assert!(said.contains(MISSING_PPS), "{said}");
    let included = fs::read_to_string(root.path().join("run/chrony/gnomon-pps.conf")).unwrap();
    assert!(!included.contains("refclock"), "{included}");
    let mut spec = ChronydSpec::client("pps-helper");
    spec.extra_conf = vec![format!(
        "include {}/run/chrony/gnomon-pps*.conf",
        root.path().display()
    )];
    Chronyd::start(spec).expect("chronyd with the PPS refclock left out");

    // A device that exists is kept (any character device stands for one:
    // only the file is checked).
    fs::write(
        root.path().join("etc/chrony/gnomon-pps.conf"),
        "refclock PPS /dev/null lock NMEA refid PPS\n",
    )
    .unwrap();
    run_helper(root.path(), "pre");
    let included = fs::read_to_string(root.path().join("run/chrony/gnomon-pps.conf")).unwrap();
    assert_eq!(included, "refclock PPS /dev/null lock NMEA refid PPS\n");
}

/// The GPS snippet's include fails chronyd's start when its directory is
/// missing ("Could not search for files matching"): the helper makes it.
#[test]
fn the_included_directory_exists_before_chronyd_starts() {
    let root = fake_root();
    fs::remove_dir(root.path().join("run/chrony")).unwrap();
    let include = format!(
        "include {}/run/chrony/gnomon-pps*.conf",
        root.path().display()
    );
    let mut bare = ChronydSpec::client("include-missing");
    bare.extra_conf = vec![include.clone()];
    let refused = Chronyd::start(bare).expect_err("chronyd started with a missing include dir");
    assert!(
        refused.to_string().contains("Could not search for files"),
        "chronyd failed for another reason: {refused}"
    );
    run_helper(root.path(), "pre");
    assert!(root.path().join("run/chrony").is_dir());
    let mut spec = ChronydSpec::client("include-made");
    spec.extra_conf = vec![include];
    Chronyd::start(spec).expect("chronyd with the include's directory made by the helper");
}

#[test]
fn failsafe_sources_go_in_place_only_when_gnomond_wrote_none() {
    let root = fake_root();
    let config = Config::example_client();
    let failsafe = gnomond::failsafe::render(&config).unwrap();
    fs::write(
        root.path().join("var/lib/gnomon/failsafe.sources"),
        &failsafe,
    )
    .unwrap();
    let sources = root.path().join("run/gnomon/chrony/gnomon.sources");

    // Boot: nothing from gnomond yet.
    run_helper(root.path(), "pre");
    assert_eq!(fs::read_to_string(&sources).unwrap(), failsafe);
    assert!(sources_file::is_failsafe(&failsafe));
    assert!(!failsafe.contains("noselect"), "{failsafe}");

    // A chronyd restart while gnomond runs: gnomond's plan stays.
    let plan = sources_file::render(&gnomon_core::engine::failsafe_plan(&config));
    fs::write(&sources, &plan).unwrap();
    run_helper(root.path(), "pre");
    assert_eq!(fs::read_to_string(&sources).unwrap(), plan);

    // A stored file that is not a fail-safe file is never used.
    fs::remove_file(&sources).unwrap();
    fs::write(
        root.path().join("var/lib/gnomon/failsafe.sources"),
        "server 192.0.2.1\n",
    )
    .unwrap();
    let said = run_helper(root.path(), "pre");
    assert!(!sources.exists());
    assert!(said.contains("not a gnomon fail-safe file"), "{said}");
}

/// chronyd under the drop-in's `UMask=0007` creates the SOCK refclock
/// socket as root, `root:root 0770`: gnomond (user gnomon, group _chrony)
/// could not send a sample. After `post` it is `root:_chrony 0660`.
#[test]
fn refclock_socket_is_given_to_group_chrony() {
    let root = fake_root();
    let socket = root.path().join("run/chrony/gnomon-nmea.sock");
    let mut spec = ChronydSpec::client("sock-group");
    spec.umask = 0o007;
    spec.extra_conf = vec![format!(
        "refclock SOCK {} refid NMEA noselect",
        socket.display()
    )];
    let _chronyd = Chronyd::start(spec).unwrap();
    let before = fs::metadata(&socket).unwrap();
    assert_eq!((before.uid(), before.gid()), (0, 0));
    assert_eq!(before.mode() & 0o777, 0o770);

    run_helper(root.path(), "post");
    let chrony_gid = group_id("_chrony");
    let after = fs::metadata(&socket).unwrap();
    assert_eq!(after.gid(), chrony_gid, "group of {}", socket.display());
    assert_eq!(after.mode() & 0o777, 0o660);
}

fn group_id(name: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no group {name}: install chrony (the test command does)"
    );
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
