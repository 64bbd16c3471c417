//! `cargo bench -p gnomon-chrony`: round-trip latency of gnomon's command
//! socket client against real chronyd, side by side with `chronyc -h
//! <socket> tracking` in the same run, and the cost of a full plan apply
//! (write + reload + read back). Private chronyd processes on loopback, `-x`.
//! Prints figures; asserts nothing about speed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use gnomon_chrony::{
    apply::PlanApplier,
    client::{ChronyClient, ClientConfig},
    sources_file::SourcesFile,
};
use gnomon_core::source::SourcePlan;
use gnomon_lab::chronyd::{free_loopback_udp_port, loopback_fallback_plan, Chronyd, ChronydSpec};

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap();
    let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "{name:<44} n={n:<4} mean {:>9.1} us  median {:>9.1} us  p99 {:>9.1} us",
        mean.as_secs_f64() * 1e6,
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
}

fn plan(port: u16, selectable: bool) -> SourcePlan {
    loopback_fallback_plan(port, Some(selectable))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_loopback_udp_port().unwrap();
    let _server = Chronyd::start(ChronydSpec::ntp_server("bench-server", port)).unwrap();
    let mut spec = ChronydSpec::client("bench-client");
    spec.with_sourcedir = true;
    let chronyd = Chronyd::start(spec).unwrap();
    let mut client = ChronyClient::new(ClientConfig::new(chronyd.socket(), chronyd.client_dir()));
    let applier = PlanApplier::new(SourcesFile::new(chronyd.sources_dir()));
    rt.block_on(applier.apply(&mut client, &plan(port, true)))
        .unwrap();

    println!(
        "chronyd {}",
        String::from_utf8_lossy(
            &Command::new("chronyd")
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .trim()
    );
    // Warm up.
    for _ in 0..20 {
        rt.block_on(client.tracking()).unwrap();
    }
    let mut ours = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        rt.block_on(client.tracking()).unwrap();
        ours.push(t.elapsed());
    }
    stats("gnomon ChronyClient::tracking()", ours);

    let mut snap = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        rt.block_on(client.snapshot(gnomon_core::time::WallTime::UNIX_EPOCH))
            .unwrap();
        snap.push(t.elapsed());
    }
    stats("gnomon snapshot() (tracking + 1 source)", snap);

    let mut chronyc = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let out = Command::new("chronyc")
            .arg("-h")
            .arg(chronyd.socket())
            .arg("tracking")
            .output()
            .unwrap();
        chronyc.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stats("chronyc -h <socket> tracking (process)", chronyc);

    let mut applies = Vec::new();
    let mut reloads = 0;
    for i in 0..40 {
        let t = Instant::now();
        let report = rt
            .block_on(applier.apply(&mut client, &plan(port, i % 2 == 0)))
            .unwrap();
        applies.push(t.elapsed());
        reloads += report.reloads;
    }
    stats("full plan apply, noselect flipped", applies);
    println!(
        "  ({reloads} reloads over 40 applies: chrony < 4.5 needs two when noselect is dropped)"
    );

    let mut unchanged = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        rt.block_on(applier.apply(&mut client, &plan(port, true)))
            .unwrap();
        unchanged.push(t.elapsed());
    }
    stats("plan apply, unchanged (reload + read back)", unchanged);
}
