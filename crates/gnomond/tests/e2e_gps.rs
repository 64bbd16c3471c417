//! gnomond end to end on one machine, role `gps`: the simulated GPS hat
//! writes NMEA to a pty and pulses into gnomond's PPS socket; gnomond reads
//! both, opens the gate and feeds a private real chronyd's SOCK refclock,
//! which selects it. Then the receiver jumps 1024 weeks back: the gate
//! closes and the fallback (a loopback chronyd) is engaged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{net::Ipv4Addr, thread, time::Duration};

use gnomon_lab::{
    gnomond::{Gnomond, GnomondSpec},
    gps_hat::HatMode,
    gps_host::GpsHost,
};
use rustix::process::Signal;
use serde_json::Value;

mod common;

use common::{json, output, wait_for, wait_ready};

const FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

fn selected_refclock(d: &Gnomond) -> Option<String> {
    let s = json(&d.gnomonctl(&["sources", "--json"]).unwrap());
    s["chrony"]["sources"].as_array()?.iter().find_map(|src| {
        (src["state"] == "selected")
            .then(|| src["id"]["refclock"].as_str().map(str::to_owned))
            .flatten()
    })
}

#[test]
fn gps_role_end_to_end() {
    let host = GpsHost::start("e2e-gps", HatMode::Healthy, FALLBACK).unwrap();
    let hat = &host.hat;
    let mut config = host.config();
    config.thresholds.grace = Duration::from_secs(3);
    config.thresholds.hold = Duration::from_secs(4);
    config.thresholds.gps_settle = Duration::from_secs(2);
    config.thresholds.max_changes_per_hour = 60;
    let d = Gnomond::start(GnomondSpec::new(config)).unwrap();
    wait_ready(&d);

    // NMEA and PPS read, the gate opens, chrony selects the NMEA refclock.
    wait_for("the GPS gate to open", Duration::from_secs(30), || {
        let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
        (s["status"]["gps"]["gate_open"] == true)
            .then_some(())
            .ok_or_else(|| format!("{}{}", s["status"]["gps"], output(&d)))
    });
    wait_for(
        "chrony to select NMEA",
        Duration::from_secs(30),
        || match selected_refclock(&d) {
            Some(r) if r == "NMEA" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // systemd's STATUS= says so in one line, with chrony's offset.
    let line = d
        .notify()
        .wait_for("STATUS", Duration::from_secs(20), |v| {
            v.starts_with("primary") && v.contains("PPS locked") && v.contains("offset")
        })
        .unwrap_or_else(|| panic!("STATUS lines: {:?}", d.notify().values("STATUS")));
    assert!(line.contains("fallbacks standby 1/1 answering"), "{line}");
    let gps = json(&d.gnomonctl(&["gps", "--json"]).unwrap());
    assert_eq!(gps["connected"], true, "{gps}");
    assert!(gps["epochs"].as_u64().unwrap() >= 3, "{gps}");
    assert!(gps["samples_sent"].as_u64().unwrap() >= 1, "{gps}");
    let pps = json(&d.gnomonctl(&["pps", "--json"]).unwrap());
    assert_eq!(pps["kind"], "socket");
    assert!(!pps["recent_edges"].as_array().unwrap().is_empty(), "{pps}");
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    assert_eq!(s["status"]["state"], "primary", "{s}");
    assert_eq!(
        s["status"]["gps"]["observation"]["offset_from_pps"], true,
        "{s}"
    );
    let check = d.gnomonctl(&["check"]).unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "check failed on a healthy GPS host: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A stall (a Pi under load, gnomond not scheduled for 5 s): NMEA piles
    // up unread in the tty. The backlog is not the receiver's time now;
    // read late, it must not look like a GPS jumping seconds back.
    d.signal(Signal::STOP).unwrap();
    thread::sleep(Duration::from_secs(5));
    d.signal(Signal::CONT).unwrap();
    thread::sleep(Duration::from_secs(6));
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    assert!(
        !d.output().contains("gps-insane"),
        "a stall made the GPS look insane{}",
        output(&d)
    );
    assert_eq!(
        s["status"]["gps"]["verdict"]["insanity"],
        Value::Null,
        "{s}"
    );
    let gps = json(&d.gnomonctl(&["gps", "--json"]).unwrap());
    assert!(gps["backlog_dropped"].as_u64().unwrap() >= 3, "{gps}");
    // With this test's 2-s settle and 3-s grace the 6-s silence may well
    // have engaged the fallback; the GPS must come back as primary.
    wait_for("the GPS back as primary", Duration::from_secs(30), || {
        let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
        (s["status"]["state"] == "primary" && s["status"]["gps"]["gate_open"] == true)
            .then_some(())
            .ok_or_else(|| s["status"]["reason"].to_string())
    });

    // The receiver's week counter rolls over: confidently wrong by 1024 weeks.
    hat.set_mode(HatMode::Rollover);
    wait_for("the gate to close", Duration::from_secs(20), || {
        let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
        (s["status"]["gps"]["gate_open"] == false)
            .then_some(())
            .ok_or_else(|| s["status"]["gps"]["verdict"].to_string())
    });
    wait_for("the fallback engaged", Duration::from_secs(30), || {
        let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
        (s["status"]["fallbacks_engaged"] == true)
            .then_some(())
            .ok_or_else(|| s["status"]["state"].to_string())
    });
    wait_for("gps-insane on stderr", Duration::from_secs(10), || {
        let out = d.output();
        out.contains("gps-insane").then_some(()).ok_or(out)
    });
    // chrony no longer gets NMEA samples: it stops selecting the refclock.
    wait_for(
        "chrony off NMEA",
        Duration::from_secs(40),
        || match selected_refclock(&d) {
            Some(r) if r == "NMEA" => Err("still NMEA".to_owned()),
            _ => Ok(()),
        },
    );
}
