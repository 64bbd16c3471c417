//! `cargo bench -p gnomond --bench history`: what the offset history costs
//! at its default size (7 days at one sample a minute, 10 080 samples, a
//! GPS host with five chrony sources): reducing it for a plot, reading it
//! at start, appending a sample, the file's size and a plot report's size
//! on the control socket. Figures go in docs/benchmarks.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap
)]

use std::{hint::black_box, time::Duration, time::Instant};

use gnomon_core::{
    config::Role,
    engine::EngineState,
    ipc::{encode_frame, PlotReport, Response, MAX_FRAME},
    samples::{reduce, Sample, SourceOffset, MAX_POINTS},
    time::{Offset, WallTime},
};
use gnomond::samples::SampleLog;

const SAMPLES: usize = 7 * 24 * 60;
const T0: i64 = 1_790_035_200;

fn sample(i: usize) -> Sample {
    let n = i64::try_from(i).unwrap();
    let wobble = |k: i64| (n * 7919 + k * 104_729) % 2001 - 1000;
    Sample {
        at: WallTime::from_unix_secs(T0 + n * 60),
        state: if n % 1440 < 60 {
            EngineState::Fallback
        } else {
            EngineState::Primary
        },
        fallbacks_engaged: n % 1440 < 60,
        gps: Some(Offset::from_nanos(wobble(1))),
        gps_from_pps: true,
        chrony: Some(Offset::from_nanos(wobble(2) / 10)),
        sources: [
            "192.168.1.11",
            "192.168.1.12",
            "206.108.0.131",
            "206.108.0.132",
            "PPS",
        ]
        .iter()
        .enumerate()
        .map(|(k, s)| SourceOffset {
            source: (*s).to_owned(),
            offset: Offset::from_nanos(wobble(3 + k as i64) * 1000),
        })
        .collect(),
    }
}

fn time<T>(what: &str, runs: u32, mut f: impl FnMut() -> T) {
    let _ = black_box(f());
    let start = Instant::now();
    for _ in 0..runs {
        black_box(f());
    }
    let each = start.elapsed() / runs;
    println!("{what:<58} {:>9.3} ms", each.as_secs_f64() * 1e3);
}

fn main() {
    let samples: Vec<Sample> = (0..SAMPLES).map(sample).collect();
    let now = WallTime::from_unix_secs(T0 + i64::try_from(SAMPLES).unwrap() * 60);
    let week = Duration::from_secs(7 * 86_400);
    let day = Duration::from_secs(86_400);
    println!("offset history, {SAMPLES} samples of 7 sources each (7 days at 1/min)");
    time(
        "reduce 7 days to 600 points (plot --since 7d --svg)",
        20,
        || reduce(&samples, now, week, 600),
    );
    time(
        "reduce 24 h to 88 points (plot, 100-column terminal)",
        20,
        || reduce(&samples, now, day, 88),
    );

    let dir = tempfile::tempdir().unwrap();
    let mut log = SampleLog::new(dir.path(), SAMPLES);
    let start = Instant::now();
    for s in &samples {
        log.append(s).unwrap();
    }
    let per_append = start.elapsed() / u32::try_from(SAMPLES).unwrap();
    println!(
        "{:<58} {:>9.3} ms",
        "append one sample to samples.jsonl (no fsync)",
        per_append.as_secs_f64() * 1e3
    );
    let size = std::fs::metadata(log.path()).unwrap().len();
    println!(
        "{:<58} {:>9.1} KiB",
        "samples.jsonl at 10 080 samples",
        size as f64 / 1024.0
    );
    time("read samples.jsonl at start (10 080 lines)", 5, || {
        SampleLog::new(dir.path(), SAMPLES).load()
    });

    let report = PlotReport {
        host: "gps1".into(),
        role: Role::Gps,
        interval: Duration::from_secs(60),
        keep: week,
        kept: SAMPLES,
        oldest: samples.first().map(|s| s.at),
        data: reduce(&samples, now, week, MAX_POINTS),
    };
    let frame = encode_frame(&Response::Plot(Box::new(report))).unwrap();
    println!(
        "{:<58} {:>9.1} KiB (limit {} KiB)",
        "plot report, 7 days at the most points asked, as a frame",
        frame.len() as f64 / 1024.0,
        MAX_FRAME / 1024
    );
}
