//! The certificate watch end to end: certificates made in the test with
//! chosen validity windows, a real gnomond (against a private real chronyd
//! with a loopback primary) writing its alerts into a standalone journald,
//! `gnomonctl certs` reading them, a renewal picked up on SIGHUP; then a
//! gnomond whose clock libfaketime sets two years back, which must blame
//! the clock, not the certificate: with only the time floor to go by, and
//! with NTP servers on loopback that tell the real time.
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
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gnomon_core::config::Config;
use gnomon_lab::{
    chronyd::{Chronyd, ChronydSpec},
    gnomond::{Gnomond, GnomondSpec},
    journald::{JournalEntry, PrivateJournal},
    outage::lab::faketime_env,
};
use rustix::process::Signal;
use serde_json::Value;

mod common;

use common::{fast, ntp_server, output, text, wait_for, wait_ready, LoopbackClient};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 8);
const FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);
/// The real-time servers of the faked host.
const TRUE_PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const TRUE_FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const DAY: i64 = 86_400;

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A self-signed certificate for `name`, valid from `from` to `to` days
/// from now, written (with its key, as a combined file would have it) to
/// `path`.
fn write_cert(path: &Path, name: &str, from: i64, to: i64) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now() + from * DAY).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(now() + to * DAY).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    fs::write(path, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
}

/// path → (state, whole report entry), from `gnomonctl certs --json`.
fn states(d: &Gnomond) -> (Value, Vec<(String, String)>) {
    let out = d.gnomonctl(&["certs", "--json"]).unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)));
    let list = report["certs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (report, list)
}

#[test]
fn certificates_are_judged_listed_alerted_and_renewals_seen() {
    let lab = LoopbackClient::start("certs", PRIMARY, FALLBACK);
    let journal = PrivateJournal::start().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    write_cert(Path::new(&p("dot.pem")), "dns.lan", -30, 335);
    write_cert(Path::new(&p("doh.pem")), "doh.lan", -300, 5);
    write_cert(Path::new(&p("future.pem")), "new.lan", 2, 90);
    fs::write(p("garbage.pem"), "not a certificate\n").unwrap();

    let mut config = lab.config.clone();
    config.certs.files = vec![
        p("dot.pem"),
        p("doh.pem"),
        p("future.pem"),
        p("garbage.pem"),
        p("missing.pem"),
    ];
    let mut spec = GnomondSpec::new(config);
    spec.log = "journald".to_owned();
    spec.wrapper = journal.wrapper();
    let d = Gnomond::start(spec).unwrap();
    wait_ready(&d);

    let (report, list) = wait_for("the certificates read", Duration::from_secs(20), || {
        let (r, l) = states(&d);
        (l.len() == 5)
            .then_some((r, l.clone()))
            .ok_or(format!("{l:?}"))
    });
    assert_eq!(
        list,
        [
            (p("dot.pem"), "valid".to_owned()),
            (p("doh.pem"), "expiring".to_owned()),
            (p("future.pem"), "not-yet-valid".to_owned()),
            (p("garbage.pem"), "unreadable".to_owned()),
            (p("missing.pem"), "unreadable".to_owned()),
        ],
        "{report}"
    );
    let doh = &report["certs"][1];
    assert_eq!(doh["info"]["subject"], "CN=doh.lan");
    assert!(
        (4..=5).contains(&doh["days_left"].as_i64().unwrap()),
        "{doh}"
    );
    assert!(report["certs"][4]["detail"]
        .as_str()
        .unwrap()
        .contains("missing.pem"));

    // The table: one row each; exit 1 while one is critical.
    let out = d.gnomonctl(&["certs"]).unwrap();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("CN=dns.lan") && shown.contains("expiring"),
        "{shown}"
    );
    assert!(
        shown.contains("not a certificate") || shown.contains("holds no PEM certificate"),
        "{shown}"
    );

    // The alerts reached journald, with their kinds and the path.
    journal
        .wait_until(Duration::from_secs(10), |entries| {
            [
                "certificate-expiring",
                "certificate-not-yet-valid",
                "certificate-unreadable",
            ]
            .iter()
            .all(|kind| {
                entries
                    .iter()
                    .any(|e| e.field("GNOMON_ALERT") == Some(kind))
            })
        })
        .unwrap();
    let entries = journal.entries().unwrap();
    let expiring = entries
        .iter()
        .find(|e| e.field("GNOMON_ALERT") == Some("certificate-expiring"))
        .unwrap();
    assert_eq!(expiring.field("PRIORITY"), Some("4"));
    assert_eq!(
        expiring.field("GNOMON_SUBJECT"),
        Some(p("doh.pem").as_str())
    );
    let future = entries
        .iter()
        .find(|e| e.field("GNOMON_ALERT") == Some("certificate-not-yet-valid"))
        .unwrap();
    assert_eq!(future.field("PRIORITY"), Some("2"));

    // Renew doh.pem and reload: valid, marked renewed, a notice in the journal.
    write_cert(Path::new(&p("doh.pem")), "doh.lan", -1, 90);
    d.signal(Signal::HUP).unwrap();
    wait_for("the renewal seen", Duration::from_secs(20), || {
        let (r, l) = states(&d);
        let renewed = !r["certs"][1]["renewed"].is_null();
        (l[1].1 == "valid" && renewed)
            .then_some(())
            .ok_or(format!("{}", r["certs"][1]))
    });
    journal
        .wait_for(Duration::from_secs(10), |e| {
            e.field("GNOMON_ALERT") == Some("certificate-renewed")
                && e.field("PRIORITY") == Some("5")
        })
        .unwrap_or_else(|| panic!("no certificate-renewed notice{}", output(&d)));
    journal
        .wait_for(Duration::from_secs(10), |e| {
            e.field("GNOMON_ALERT") == Some("certificate-expiring")
                && e.field("GNOMON_PHASE") == Some("resolved")
        })
        .unwrap_or_else(|| panic!("the expiring alert did not resolve{}", output(&d)));
}

#[test]
fn a_clock_two_years_behind_is_blamed_not_the_certificate() {
    let journal = PrivateJournal::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("dot.pem");
    // Valid since a month ago, for a year: a good certificate.
    write_cert(&cert, "dns.lan", -30, 335);

    // No chrony here (its socket does not exist): the only trusted time is
    // the time floor, which the clock is years before.
    let mut config = Config::example_client();
    config.paths.chrony_socket = dir.path().join("no-chronyd.sock").display().to_string();
    config.paths.sources_dir = dir.path().join("sources").display().to_string();
    config.control.read_group = String::new();
    config.certs.files = vec![cert.display().to_string()];
    let mut spec = GnomondSpec::new(config);
    spec.log = "journald".to_owned();
    spec.wrapper = journal.wrapper();
    spec.wrapper.extend(faketime_env("-730d").unwrap());
    let d = Gnomond::start(spec).unwrap();
    wait_ready(&d);

    let alert = not_yet_valid_alert(&journal, &d, Duration::from_secs(20));
    let message = alert.field("MESSAGE").unwrap();
    assert!(
        message.contains("not yet valid because the system clock is at least")
            && message.contains("behind (time floor"),
        "{message}"
    );
    let error_ns: i64 = alert
        .field("GNOMON_CLOCK_ERROR_NS")
        .unwrap()
        .parse()
        .unwrap();
    // At least ~2 years less the time since this test binary was built.
    assert!(error_ns > 700 * DAY * 1_000_000_000, "{error_ns} ns");

    let (report, list) = states(&d);
    assert_eq!(list[0].1, "not-yet-valid-by-clock", "{report}");
    assert_eq!(report["trusted"]["lower_bound"], true, "{report}");
}

/// The host's chronyd and gnomond both run two years behind (libfaketime);
/// its primary and fallback serve the real time. The certificate is judged
/// by what the servers measure, not by the floor: the error is the real
/// two years, not a lower bound.
#[test]
fn a_clock_two_years_behind_is_measured_by_ntp_servers_telling_the_real_time() {
    let journal = PrivateJournal::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("dot.pem");
    write_cert(&cert, "dns.lan", -30, 335);

    let (_primary, primary_port) = ntp_server("certs-true-primary", TRUE_PRIMARY);
    let (_fallback, fallback_port) = ntp_server("certs-true-fallback", TRUE_FALLBACK);
    let mut host = ChronydSpec::client("certs-behind");
    host.with_sourcedir = true;
    host.wrapper = faketime_env("-730d").unwrap();
    let host = Chronyd::start(host).unwrap();

    let mut config = Config::example_client();
    config.primary.servers = vec![fast(TRUE_PRIMARY, primary_port)];
    config.fallback.servers = vec![fast(TRUE_FALLBACK, fallback_port)];
    config.fallback.peers = Vec::new();
    config.paths.chrony_socket = host.socket().display().to_string();
    config.paths.sources_dir = host.sources_dir().display().to_string();
    config.control.read_group = String::new();
    config.certs.files = vec![cert.display().to_string()];
    let mut spec = GnomondSpec::new(config);
    spec.log = "journald".to_owned();
    spec.wrapper = journal.wrapper();
    spec.wrapper.extend(faketime_env("-730d").unwrap());
    let d = Gnomond::start(spec).unwrap();
    wait_ready(&d);

    // The report follows the best basis at each pass: the servers once
    // chrony measures them, not the floor it starts with.
    let report = wait_for("the servers' measure", Duration::from_secs(30), || {
        let (r, l) = states(&d);
        let basis = r["trusted"]["basis"].as_str().unwrap_or("").to_owned();
        (l.first().map(|(_, s)| s.as_str()) == Some("not-yet-valid-by-clock")
            && r["trusted"]["lower_bound"] == false
            && (basis.contains("127.0.0.10") || basis.contains("127.0.0.11")))
        .then_some(r.clone())
        .ok_or(format!("{r}"))
    });
    let cert = &report["certs"][0];
    let detail = cert["detail"].as_str().unwrap();
    assert!(
        detail.contains("not yet valid because the system clock is 2.0 years behind (")
            && !detail.contains("at least"),
        "{report}"
    );
    // The servers measure the faked two years to well within a second.
    let error_ns = cert["clock_error"].as_i64().unwrap();
    let two_years_ns = 730 * DAY * 1_000_000_000;
    assert!(
        (error_ns - two_years_ns).abs() < 1_000_000_000,
        "{error_ns} ns, not 730 days: {report}"
    );

    // The critical alert reached journald.
    not_yet_valid_alert(&journal, &d, Duration::from_secs(10));
}

/// The critical certificate-not-yet-valid alert, blaming the clock, once
/// it is in the journal.
fn not_yet_valid_alert(journal: &PrivateJournal, d: &Gnomond, within: Duration) -> JournalEntry {
    let entries = journal
        .wait_until(within, |entries| {
            entries
                .iter()
                .any(|e| e.field("GNOMON_ALERT") == Some("certificate-not-yet-valid"))
        })
        .unwrap_or_else(|e| panic!("{e}{}", output(d)));
    let alert = entries
        .into_iter()
        .find(|e| e.field("GNOMON_ALERT") == Some("certificate-not-yet-valid"))
        .unwrap();
    assert_eq!(alert.field("PRIORITY"), Some("2"), "{alert:?}");
    assert_eq!(
        alert.field("GNOMON_CERT_STATE"),
        Some("not-yet-valid-by-clock")
    );
    alert
}
