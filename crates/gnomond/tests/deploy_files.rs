//! The configuration files gnomon ships in `deploy/` are valid and agree
//! with each other and with gnomond's defaults: every example gnomon.toml
//! passes `gnomond --check-config` and reproduces the incident's topology,
//! and every chrony snippet parses (`chronyd -p`, which opens nothing and
//! sends nothing) and points where gnomond writes. Nothing here starts a
//! chronyd with these files: they name real public servers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use gnomon_core::config::{Config, GpsConfig, Paths, Role};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(deploy().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *.{ext} in deploy/{dir}");
    found
}

fn load(path: &Path) -> Config {
    let text = fs::read_to_string(path).unwrap();
    let (config, warnings) =
        Config::load(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
    config
}

const TORIX: [&str; 3] = ["206.108.0.131", "206.108.0.132", "206.108.0.133"];
const GPS1: &str = "192.168.1.10";

#[test]
fn every_shipped_gnomon_toml_passes_check_config() {
    for path in files("gnomon", "toml") {
        let out = Command::new(env!("CARGO_BIN_EXE_gnomond"))
            .arg("--check-config")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("valid"),
            "gnomond --check-config {}: {}\n{stdout}{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_examples_reproduce_the_incident_topology() {
    let gps1 = load(&deploy().join("gnomon/gps1.toml"));
    assert_eq!(gps1.role, Role::Gps);
    let servers = |c: &Config| -> Vec<String> {
        c.fallback
            .servers
            .iter()
            .map(|s| s.address.clone())
            .collect()
    };
    let peers = |c: &Config| -> Vec<String> {
        c.fallback.peers.iter().map(|s| s.address.clone()).collect()
    };
    assert_eq!(servers(&gps1), TORIX);
    assert_eq!(peers(&gps1), ["192.168.1.11", "192.168.1.12"]);
    // srv1 and srv2 follow gps1: never counted when the GPS is cross-checked.
    assert!(gps1.fallback.peers.iter().all(|p| p.follows_this_host));
    for (name, peer) in [("srv1", "192.168.1.12"), ("srv2", "192.168.1.11")] {
        let c = load(&deploy().join(format!("gnomon/{name}.toml")));
        assert_eq!(c.role, Role::Client, "{name}");
        assert_eq!(c.primary.servers.len(), 1, "{name}");
        assert_eq!(c.primary.servers[0].address, GPS1, "{name}");
        assert_eq!(peers(&c), [peer], "{name}");
        assert_eq!(servers(&c), TORIX, "{name}");
        assert!(!c.allow_dns_fallbacks, "{name}: fallbacks must need no DNS");
    }
}

#[test]
fn every_chrony_snippet_parses_and_points_where_gnomond_writes() {
    let chronyd = gnomon_lab::programs::find(
        "chronyd",
        Some("GNOMON_CHRONYD"),
        &["/usr/sbin", "/sbin"],
        "install chrony",
    )
    .unwrap();
    let sources_dir = Paths::default().sources_dir;
    let refclock = GpsConfig::default().sock_refclock;
    for path in files("chrony", "conf") {
        let text = fs::read_to_string(&path).unwrap();
        if text.contains("[Service]") {
            continue; // the chrony.service drop-in, a systemd file
        }
        // The GPS snippet includes what the helper writes in /run/chrony,
        // which chrony.service creates at its start: parsed here with the
        // include pointed at a directory of the test's own.
        let run_dir = tempfile::tempdir().unwrap();
        let parsed = run_dir.path().join("snippet.conf");
        fs::write(
            &parsed,
            text.replace("/run/chrony/", &format!("{}/", run_dir.path().display())),
        )
        .unwrap();
        let out = Command::new(&chronyd)
            .args(["-p", "-f"])
            .arg(&parsed)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chronyd -p -f {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "gnomon-pps.conf" {
            // Not a conf.d snippet: the drop-in's helper copies its PPS
            // refclock to /run/chrony/gnomon-pps.conf when the device exists.
            assert_eq!(
                lines
                    .iter()
                    .copied()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>(),
                ["refclock PPS /dev/pps0 lock NMEA refid PPS prefer trust"],
                "{name}: only the PPS refclock"
            );
            continue;
        }
        assert!(
            lines.contains(&format!("sourcedir {sources_dir}").as_str()),
            "{}: no `sourcedir {sources_dir}`",
            path.display()
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("pool ") || l.starts_with("server ")),
            "{}: sources belong in gnomond's sources file",
            path.display()
        );
        if name.contains("gps") {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("refclock SOCK {refclock} refid NMEA"))),
                "{name}: no SOCK refclock at {refclock}"
            );
            // Never the PPS refclock itself: chronyd would not start
            // without /dev/pps0 (tests/chrony_helper.rs).
            assert!(
                !lines.iter().any(|l| l.starts_with("refclock PPS")),
                "{name}: a PPS refclock belongs in gnomon-pps.conf"
            );
            assert!(
                lines.contains(&"include /run/chrony/gnomon-pps*.conf"),
                "{name}: does not include the PPS refclock the helper writes"
            );
        }
    }
}
