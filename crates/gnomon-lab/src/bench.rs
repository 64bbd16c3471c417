//! `gnomon-lab bench`: how fast the engine decides. Runs a simulated day on
//! the GPS host (1 Hz NMEA and PPS, chrony polled every 2 s, the receiver
//! failing and recovering every hour) and a simulated day on a client whose
//! primary flaps, and prints wall time per simulated day and per input.
//! The figures belong in docs/benchmarks.md, not in a timed test.

use std::{fmt::Write as _, time::Duration, time::Instant};

use crate::{
    scenarios::{self, ip, GPS1},
    sim::{GpsBehaviour, ScriptEvent, Sim},
};

const DAY: Duration = Duration::from_secs(86_400);

fn gps_day() -> Sim {
    let mut sim = Sim::new(scenarios::gps_host_for_bench());
    for hour in 0..24 {
        let base = hour * 3600;
        sim.at(
            Duration::from_secs(base + 600),
            ScriptEvent::Gps(GpsBehaviour::Stuck),
        );
        sim.at(
            Duration::from_secs(base + 900),
            ScriptEvent::Gps(GpsBehaviour::Healthy),
        );
    }
    sim
}

fn client_day() -> Sim {
    let mut sim = Sim::new(scenarios::healthy_client());
    let g = ip(GPS1);
    for hour in 0..24 {
        let base = hour * 3600;
        sim.at(
            Duration::from_secs(base + 300),
            ScriptEvent::Server {
                address: g,
                up: false,
            },
        );
        sim.at(
            Duration::from_secs(base + 900),
            ScriptEvent::Server {
                address: g,
                up: true,
            },
        );
    }
    sim
}

fn measure(name: &str, mut sim: Sim, out: &mut String) {
    let start = Instant::now();
    sim.run_until(DAY);
    let took = start.elapsed();
    let inputs = sim.inputs_handled();
    #[allow(clippy::cast_precision_loss)]
    let per_input = took.as_nanos() as f64 / inputs.max(1) as f64;
    let _ = writeln!(
        out,
        "{name:<28} 1 simulated day in {:>8.1} ms  {inputs:>7} inputs  {per_input:>7.0} ns/input (simulation included)  {} decisions",
        took.as_secs_f64() * 1e3,
        sim.decisions().count()
    );
}

/// Runs the benchmark and returns the report.
pub fn run() -> String {
    let mut out = String::new();
    measure("gps host, hourly outages", gps_day(), &mut out);
    measure("client, hourly outages", client_day(), &mut out);
    out
}
