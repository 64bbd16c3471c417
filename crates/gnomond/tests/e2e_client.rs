//! gnomond end to end on one machine, role `client`: a private real
//! chronyd as the host's chrony, a loopback chronyd as the primary and
//! another as the fallback, gnomond writing alerts into a standalone
//! journald, and gnomonctl asking it. Everything on 127.0.0.0/8 and Unix
//! sockets in temporary directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    net::Ipv4Addr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use gnomon_lab::{
    chronyd::Chronyd,
    gnomond::{gnomonctl, Gnomond, GnomondSpec},
    journald::PrivateJournal,
};
use rustix::process::Signal;
use serde_json::Value;

mod common;

use common::{json, output, wait_for, wait_ready, LoopbackClient};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn state(d: &Gnomond) -> String {
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    s["status"]["state"].as_str().unwrap_or_default().to_owned()
}

/// chrony's selection state and noselect flag for `address`, from
/// `gnomonctl sources --json`.
fn chrony_source(d: &Gnomond, address: Ipv4Addr) -> Option<(String, Option<bool>)> {
    let s = json(&d.gnomonctl(&["sources", "--json"]).unwrap());
    s["chrony"]["sources"].as_array()?.iter().find_map(|src| {
        (src["id"]["address"].as_str() == Some(&address.to_string())).then(|| {
            (
                src["state"].as_str().unwrap_or_default().to_owned(),
                src["noselect"].as_bool(),
            )
        })
    })
}

fn sources_file(client: &Chronyd) -> String {
    std::fs::read_to_string(client.sources_dir().join("gnomon.sources")).unwrap_or_default()
}

#[test]
fn client_role_end_to_end() {
    let LoopbackClient {
        mut primary,
        fallback: _fallback,
        client,
        mut config,
    } = LoopbackClient::start("e2e", PRIMARY, FALLBACK);
    let journal = PrivateJournal::start().unwrap();

    config.thresholds.grace = Duration::from_secs(3);
    config.thresholds.hold = Duration::from_secs(4);
    config.thresholds.max_changes_per_hour = 60;
    let mut spec = GnomondSpec::new(config);
    spec.watchdog = Some(Duration::from_secs(2));
    spec.log = "journald".to_owned();
    spec.wrapper = journal.wrapper();
    let mut d = Gnomond::start(spec).unwrap();

    // systemd's view: READY after the first assessment, a STATUS line,
    // and watchdog pings while the loop runs.
    wait_ready(&d);
    let first_status = d.notify().values("STATUS");
    assert!(
        !first_status.is_empty(),
        "no STATUS= with READY{}",
        output(&d)
    );
    thread::sleep(Duration::from_millis(2500));
    let pings = d.notify().values("WATCHDOG").len();
    assert!(pings >= 2, "only {pings} WATCHDOG=1 in 2.5 s{}", output(&d));

    // The primary is used; the fallback stands by, measured, as noselect.
    wait_for("state primary", Duration::from_secs(30), || {
        let s = state(&d);
        (s == "primary").then_some(()).ok_or(s)
    });
    wait_for(
        "primary selected by chrony",
        Duration::from_secs(20),
        || match chrony_source(&d, PRIMARY) {
            Some((s, _)) if s == "selected" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        chrony_source(&d, FALLBACK).map(|(_, noselect)| noselect),
        Some(Some(true)),
        "the fallback must be configured noselect while unused"
    );
    // Scripts can wait for a synchronised clock, like `chronyc waitsync`.
    let waited = d
        .gnomonctl(&["wait", "--synced", "--timeout", "20", "--quiet"])
        .unwrap();
    assert_eq!(waited.status.code(), Some(0), "{waited:?}");
    d.notify()
        .wait_for("STATUS", Duration::from_secs(10), |v| {
            v.starts_with("primary")
        })
        .unwrap_or_else(|| {
            panic!(
                "STATUS never said primary: {:?}",
                d.notify().values("STATUS")
            )
        });

    // status and sources in JSON.
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    assert_eq!(s["status"]["role"], "client");
    assert_eq!(s["status"]["chrony"]["reachable"], true);
    assert_eq!(s["status"]["fallbacks"][0]["selectable"], false);
    assert_eq!(s["daemon"]["pid"], d.pid().unwrap());
    let src = json(&d.gnomonctl(&["sources", "--json"]).unwrap());
    let plan = src["plan"]["sources"].as_array().unwrap();
    assert_eq!(plan.len(), 2, "{src}");
    assert!(src["plan_applied"].as_bool().unwrap(), "{src}");

    // The primary dies: the fallback is engaged and chrony selects it.
    let killed = Instant::now();
    primary.kill();
    wait_for("state fallback", Duration::from_secs(40), || {
        let s = state(&d);
        (s == "fallback").then_some(()).ok_or(s)
    });
    wait_for(
        "fallback selected by chrony",
        Duration::from_secs(20),
        || match chrony_source(&d, FALLBACK) {
            Some((s, Some(false))) if s == "selected" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let engaged_after = killed.elapsed();
    assert!(sources_file(&client).contains(&FALLBACK.to_string()));

    // The alert, read back from journald.
    let entries = journal
        .wait_for(Duration::from_secs(10), |e| {
            e.field("GNOMON_ALERT") == Some("fallback-engaged")
        })
        .unwrap_or_else(|| panic!("no fallback-engaged alert in the journal{}", output(&d)));
    let alert = entries
        .iter()
        .find(|e| e.field("GNOMON_ALERT") == Some("fallback-engaged"))
        .unwrap();
    assert_eq!(
        alert.field("MESSAGE_ID"),
        Some(gnomon_core::alert::AlertKind::FallbackEngaged.message_id())
    );
    assert_eq!(alert.field("PRIORITY"), Some("4"));
    assert_eq!(alert.field("GNOMON_PHASE"), Some("opened"));
    assert!(alert.field("GNOMON_STATE").is_some());
    assert!(entries.iter().any(|e| {
        e.field("GNOMON_ALERT") == Some("primary-unusable")
            && e.field("MESSAGE_ID")
                == Some(gnomon_core::alert::AlertKind::PrimaryUnusable.message_id())
    }));

    // The primary returns: after the hold, the fallback is noselect again.
    primary.start_again().unwrap();
    wait_for("back to primary", Duration::from_secs(60), || {
        let s = state(&d);
        (s == "primary").then_some(()).ok_or(s)
    });
    wait_for(
        "fallback noselect again",
        Duration::from_secs(20),
        || match chrony_source(&d, FALLBACK) {
            Some((_, Some(true))) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    journal
        .wait_for(Duration::from_secs(10), |e| {
            e.field("GNOMON_ALERT") == Some("fallback-engaged")
                && e.field("GNOMON_PHASE") == Some("resolved")
        })
        .unwrap_or_else(|| panic!("fallback-engaged never resolved{}", output(&d)));

    // Freeze: the primary dies again and nothing in chrony changes.
    let out = d
        .gnomonctl(&["freeze", "--reason", "e2e maintenance"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let before = sources_file(&client);
    primary.kill();
    thread::sleep(Duration::from_secs(8)); // well past grace
    assert_eq!(state(&d), "frozen");
    assert_eq!(
        sources_file(&client),
        before,
        "a frozen gnomond rewrote chrony's sources"
    );
    assert_eq!(
        chrony_source(&d, FALLBACK).map(|(_, n)| n),
        Some(Some(true)),
        "a frozen gnomond engaged the fallback"
    );
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    assert_eq!(s["status"]["frozen"]["reason"], "e2e maintenance");

    // Thaw: reconciled to what the situation calls for.
    let out = d.gnomonctl(&["thaw"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "fallback engaged after thaw",
        Duration::from_secs(30),
        || match chrony_source(&d, FALLBACK) {
            Some((_, Some(false))) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Bad control input and a non-admin peer are refused; the daemon lives.
    bad_control_input(d.control_socket());
    let nobody = gnomonctl(
        d.control_socket(),
        &["freeze", "--reason", "not mine"],
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
    )
    .unwrap();
    assert_eq!(nobody.status.code(), Some(77), "{nobody:?}");
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    assert!(s["status"]["frozen"].is_null(), "nobody froze gnomond: {s}");
    // Reads are open to everyone with read-group = "".
    let read = gnomonctl(
        d.control_socket(),
        &["status"],
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
    )
    .unwrap();
    assert!(read.status.success(), "{read:?}");

    // SIGTERM: clean exit, state saved.
    d.signal(Signal::TERM).unwrap();
    let status = d.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "gnomond exited with {status}{}",
        output(&d)
    );
    assert!(d.state_dir().join("state.json").is_file());
    eprintln!("fallback selected {engaged_after:?} after the primary was killed");
}

/// Raw frames on the control socket: garbage JSON and an absurd length.
fn bad_control_input(socket: &Path) {
    use std::{
        io::{Read, Write},
        os::unix::net::UnixStream,
    };
    for frame in [
        {
            let body = b"{not json";
            let mut f = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            f.extend_from_slice(body);
            f
        },
        vec![0xff, 0xff, 0xff, 0xff],
    ] {
        let mut s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&frame).unwrap();
        let mut header = [0u8; 4];
        s.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        s.read_exact(&mut body).unwrap();
        let reply: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(reply["response"], "error", "{reply}");
        // The connection is closed after an error.
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    }
}
