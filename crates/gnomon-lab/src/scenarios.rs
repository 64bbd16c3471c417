//! The incidents of SCENARIOS.md as engine-level simulations: each builds a
//! host, scripts what breaks and when, and says how long to run. Tests
//! assert on the result; `gnomon-lab run <name>` prints the timeline.

use std::{net::IpAddr, time::Duration};

use gnomon_core::{
    config::Config,
    engine::{OperatorCommand, PersistedState},
    time::{Offset, WallTime},
};

use crate::sim::{GpsBehaviour, HostSpec, ScriptEvent, Sim, SimServer};

/// The lab's addresses (RFC 5737 documentation ranges: they exist only in
/// the simulation).
pub const GPS1: &str = "192.0.2.1";
pub const SRV1: &str = "192.0.2.11";
pub const SRV2: &str = "192.0.2.12";
pub const PUB: [&str; 3] = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];

/// A named scenario ready to run.
#[derive(Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub sim: Sim,
    pub duration: Duration,
}

/// Every scenario, by stable name.
pub const NAMES: [&str; 14] = [
    "power-outage",
    "power-outage-gps-host",
    "clock-in-the-past-1970",
    "clock-in-the-past-day-behind",
    "gps-rollover",
    "gps-rollover-at-boot",
    "gps-second-jump",
    "pps-without-fix",
    "pps-without-nmea",
    "pps-misaligned",
    "primary-returns",
    "fallback-rot",
    "freeze",
    "bad-input",
];

/// Builds the scenario of that name.
pub fn build(name: &str) -> Option<Scenario> {
    Some(match name {
        "power-outage" => power_outage(),
        "power-outage-gps-host" => power_outage_gps_host(),
        "clock-in-the-past-1970" => clock_in_the_past_1970(),
        "clock-in-the-past-day-behind" => clock_in_the_past_day_behind(),
        "gps-rollover" => gps_rollover(),
        "gps-rollover-at-boot" => gps_rollover_at_boot(),
        "gps-second-jump" => gps_second_jump(),
        "pps-without-fix" => pps_fault("pps-without-fix", GpsBehaviour::PpsWithoutFix),
        "pps-without-nmea" => pps_fault("pps-without-nmea", GpsBehaviour::NmeaStopped),
        "pps-misaligned" => pps_fault(
            "pps-misaligned",
            GpsBehaviour::LateSentence(Duration::from_millis(950)),
        ),
        "primary-returns" => primary_returns(),
        "fallback-rot" => fallback_rot(),
        "freeze" => freeze(),
        "bad-input" => bad_input(),
        _ => return None,
    })
}

pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// 2026-11-22 03:00:00 UTC: "now" in every scenario.
pub fn scenario_start() -> WallTime {
    WallTime::from_unix_secs(1_795_316_400)
}

/// gnomond was built a month before.
pub fn build_time() -> WallTime {
    scenario_start().minus(Duration::from_secs(30 * 86_400))
}

/// The clock of a Pi without RTC at boot: 1970-01-01.
pub fn boot_1970_error() -> Offset {
    WallTime::UNIX_EPOCH.since(scenario_start())
}

fn server(addr: &str, up: bool, stratum: u8) -> SimServer {
    SimServer {
        address: ip(addr),
        up,
        error: Offset::ZERO,
        stratum,
    }
}

/// srv1's configuration: primary gps1, LAN peer srv2, three IP-literal
/// public servers. Thresholds are the shipped defaults.
pub fn client_config() -> Config {
    let text = format!(
        r#"
role = "client"

[[primary.servers]]
address = "{GPS1}"

[[fallback.peers]]
address = "{SRV2}"

[[fallback.servers]]
address = "{}"
[[fallback.servers]]
address = "{}"
[[fallback.servers]]
address = "{}"
"#,
        PUB[0], PUB[1], PUB[2]
    );
    load(&text)
}

/// gps1's configuration: the GPS hat with kernel PPS, fallbacks the public
/// servers and the two LAN servers.
pub fn gps_config() -> Config {
    let text = format!(
        r#"
role = "gps"

[gps]
source = "uart"
device = "/dev/serial0"
pps = "kernel"

[[fallback.servers]]
address = "{}"
[[fallback.servers]]
address = "{}"
[[fallback.servers]]
address = "{}"
"#,
        PUB[0], PUB[1], PUB[2]
    );
    load(&text)
}

fn load(text: &str) -> Config {
    match Config::load(text) {
        Ok((c, _)) => c,
        // The scenario configs are fixed text; a failure is a bug in this
        // file, shown loudly by every test that uses it.
        Err(e) => panic_config(&e.to_string()),
    }
}

#[allow(clippy::panic)]
fn panic_config(e: &str) -> ! {
    panic!("scenario configuration does not load: {e}")
}

fn client_host(name: &str, clock_error: Offset, gps1_up: bool, srv2_stratum: u8) -> HostSpec {
    HostSpec {
        name: name.to_owned(),
        config: client_config(),
        start: scenario_start(),
        build_time: build_time(),
        clock_error,
        servers: vec![
            server(GPS1, gps1_up, 1),
            server(SRV2, true, srv2_stratum),
            server(PUB[0], true, 1),
            server(PUB[1], true, 1),
            server(PUB[2], true, 1),
        ],
        gps: GpsBehaviour::Healthy,
        persisted: PersistedState::default(),
    }
}

/// srv1 with everything healthy and its clock 3 ms off: the base for
/// scenarios that script their own faults.
pub fn healthy_client() -> HostSpec {
    client_host("srv1", Offset::from_millis(3), true, 2)
}

/// gps1 healthy with its fallbacks answering: the base for benchmarks.
pub fn gps_host_for_bench() -> HostSpec {
    gps_host(GpsBehaviour::Healthy, true)
}

fn gps_host(gps: GpsBehaviour, pubs_up: bool) -> HostSpec {
    HostSpec {
        name: "gps1".to_owned(),
        config: gps_config(),
        start: scenario_start(),
        build_time: build_time(),
        clock_error: Offset::from_millis(-40),
        servers: PUB.iter().map(|a| server(a, pubs_up, 1)).collect(),
        gps,
        persisted: PersistedState::default(),
    }
}

fn scenario(name: &'static str, title: &'static str, sim: Sim, secs: u64) -> Scenario {
    Scenario {
        name,
        title,
        sim,
        duration: Duration::from_secs(secs),
    }
}

/// S1: srv1 boots at 1970 after a power cut; gps1 hangs at boot; srv2 is
/// also at 1970 (unsynchronised, stratum 16). gps1 comes back after 10 min.
pub fn power_outage() -> Scenario {
    let mut sim = Sim::new(client_host("srv1", boot_1970_error(), false, 16));
    sim.at(
        Duration::from_secs(600),
        ScriptEvent::Server {
            address: ip(GPS1),
            up: true,
        },
    );
    scenario(
        "power-outage",
        "S1: the primary is missing at boot, the clock starts in 1970",
        sim,
        1200,
    )
}

/// S1 on the GPS host: its receiver hangs at boot, then recovers.
pub fn power_outage_gps_host() -> Scenario {
    gps_change(
        "power-outage-gps-host",
        "S1 on gps1: the receiver hangs at boot",
        GpsBehaviour::Stuck,
        GpsBehaviour::Healthy,
        900,
    )
}

/// S2, 1970 variant: the primary is fine, the clock is not.
pub fn clock_in_the_past_1970() -> Scenario {
    let sim = Sim::new(client_host("srv1", boot_1970_error(), true, 1));
    scenario(
        "clock-in-the-past-1970",
        "S2: no RTC, the clock starts in 1970",
        sim,
        120,
    )
}

/// S2, one-day variant: the clock was restored from a journal write a day
/// old; the persisted floor is equally old, so only the sources tell.
pub fn clock_in_the_past_day_behind() -> Scenario {
    let mut spec = client_host("srv1", Offset::from_secs(-86_400), true, 1);
    spec.persisted.last_synchronised =
        Some(scenario_start().minus(Duration::from_secs(86_400 + 60)));
    let sim = Sim::new(spec);
    scenario(
        "clock-in-the-past-day-behind",
        "S2: the clock restored a day behind",
        sim,
        120,
    )
}

/// S3: gps1's receiver jumps 1024 weeks back after 5 minutes.
pub fn gps_rollover() -> Scenario {
    gps_change(
        "gps-rollover",
        "S3: the GPS reports a date 1024 weeks back",
        GpsBehaviour::Healthy,
        GpsBehaviour::Rollover,
        600,
    )
}

/// S3 at boot with no network: only the time floor can tell.
pub fn gps_rollover_at_boot() -> Scenario {
    let sim = Sim::new(gps_host(GpsBehaviour::Rollover, false));
    scenario(
        "gps-rollover-at-boot",
        "S3: rollover at boot, no independent source",
        sim,
        180,
    )
}

/// S3: the receiver's time jumps by two whole seconds and stays wrong.
pub fn gps_second_jump() -> Scenario {
    gps_change(
        "gps-second-jump",
        "S3: GPS time jumps by whole seconds",
        GpsBehaviour::Healthy,
        GpsBehaviour::OffBy(2),
        900,
    )
}

/// S4: a PPS/NMEA fault appears after 5 minutes of health.
pub fn pps_fault(name: &'static str, fault: GpsBehaviour) -> Scenario {
    gps_change(
        name,
        "S4: pulses, but no usable time",
        GpsBehaviour::Healthy,
        fault,
        600,
    )
}

/// gps1 with its receiver behaving one way at boot and another from 300 s.
fn gps_change(
    name: &'static str,
    title: &'static str,
    at_boot: GpsBehaviour,
    from_300s: GpsBehaviour,
    secs: u64,
) -> Scenario {
    let mut sim = Sim::new(gps_host(at_boot, true));
    sim.at(Duration::from_secs(300), ScriptEvent::Gps(from_300s));
    scenario(name, title, sim, secs)
}

/// S5: the primary fails, returns, fails again 20 s later, returns.
pub fn primary_returns() -> Scenario {
    let mut sim = Sim::new(client_host("srv1", Offset::from_millis(3), true, 2));
    let g = ip(GPS1);
    // Down long enough to be noticed (three missed polls), back, gone
    // again 20 s after its return, back for good at 500 s.
    for (at, up) in [(120, false), (400, true), (420, false), (500, true)] {
        sim.at(
            Duration::from_secs(at),
            ScriptEvent::Server { address: g, up },
        );
    }
    scenario(
        "primary-returns",
        "S5: recovery without flapping",
        sim,
        1500,
    )
}

/// S6: one public fallback is renumbered away while the primary is fine.
pub fn fallback_rot() -> Scenario {
    let mut sim = Sim::new(client_host("srv1", Offset::from_millis(3), true, 2));
    sim.at(
        Duration::from_secs(120),
        ScriptEvent::Server {
            address: ip(PUB[1]),
            up: false,
        },
    );
    scenario("fallback-rot", "S6: a fallback quietly dies", sim, 1500)
}

/// S8: frozen for maintenance; the primary dies meanwhile; gnomond
/// restarts; the operator thaws.
pub fn freeze() -> Scenario {
    let mut sim = Sim::new(client_host("srv1", Offset::from_millis(3), true, 2));
    sim.at(
        Duration::from_secs(60),
        ScriptEvent::Command(OperatorCommand::Freeze {
            reason: "replacing the GPS antenna".to_owned(),
        }),
    )
    .at(
        Duration::from_secs(120),
        ScriptEvent::Server {
            address: ip(GPS1),
            up: false,
        },
    )
    .at(Duration::from_secs(400), ScriptEvent::RestartGnomond)
    .at(
        Duration::from_secs(600),
        ScriptEvent::Command(OperatorCommand::Thaw),
    );
    scenario("freeze", "S8: stop the automation", sim, 800)
}

/// S9 (engine half): absurd and malformed inputs, a full disk.
pub fn bad_input() -> Scenario {
    crate::bad_input::scenario()
}
