//! Every scenario of the outage lab, as CI runs them: a real chronyd per
//! host in network namespaces, gnomond on gps1/srv1/srv2, a private
//! journald. One lab at a time (they are timed against the lab's
//! thresholds; two at once on a 2-core machine would be a load test).
//! A failed check fails the test with the scenario's timeline, checks and
//! diagnostics. Root only, like the rest of the process-level tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::sync::{Mutex, PoisonError};

use gnomon_lab::outage::{self, Output};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario(name: &str) {
    let _one = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let scenario = outage::find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    let report = outage::play(scenario, Output::Quiet)
        .unwrap_or_else(|e| panic!("{name}: the lab itself failed: {e}"));
    println!("# {name}\n{}{}", report.timeline(), report.summary());
    assert!(
        report.passed(),
        "{name} failed:\n{}{}",
        report.timeline(),
        report.summary()
    );
}

#[test]
fn every_scenario_has_a_test_here() {
    let source = include_str!("outage.rs");
    for s in outage::scenarios() {
        let test = format!("fn {}()", s.name.replace('-', "_"));
        assert!(
            source.contains(&test),
            "no test {test} for scenario {}",
            s.name
        );
    }
}

#[test]
fn power_outage() {
    scenario("power-outage");
}

#[test]
fn baseline_stock() {
    scenario("baseline-stock");
}

#[test]
fn clock_in_the_past() {
    scenario("clock-in-the-past");
}

#[test]
fn gps_rollover() {
    scenario("gps-rollover");
}

#[test]
fn pps_without_fix() {
    scenario("pps-without-fix");
}

#[test]
fn primary_returns() {
    scenario("primary-returns");
}

#[test]
fn fallback_rot() {
    scenario("fallback-rot");
}

#[test]
fn chronyd_restart() {
    scenario("chronyd-restart");
}

#[test]
fn freeze() {
    scenario("freeze");
}

#[test]
fn primary_lies() {
    scenario("primary-lies");
}

#[test]
fn gps_wrong_second() {
    scenario("gps-wrong-second");
}

#[test]
fn gps_leap_offset_at_boot() {
    scenario("gps-leap-offset-at-boot");
}

#[test]
fn gps_own_echo() {
    scenario("gps-own-echo");
}
