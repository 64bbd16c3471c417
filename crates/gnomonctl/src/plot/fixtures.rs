//! A day on a GPS host, made up but shaped like the real thing: PPS within
//! a few hundred nanoseconds, the LAN peer within a millisecond, a public
//! server a few milliseconds off, a GPS outage with fallbacks engaged, and
//! a restart that left a gap.

use std::time::Duration;

use gnomon_core::{
    config::Role,
    engine::EngineState,
    ipc::PlotReport,
    samples::{reduce, Sample, SourceOffset},
    time::{Offset, WallTime},
};

/// 2026-09-22 00:00:00 UTC.
pub(crate) const DAY_START: i64 = 1_790_035_200;

/// A small deterministic noise source (an LCG), in −1.0..1.0.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        #[allow(clippy::cast_precision_loss)]
        let x = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        x * 2.0 - 1.0
    }

    #[allow(clippy::cast_possible_truncation)]
    fn nanos(&mut self, centre: f64, spread: f64) -> Offset {
        Offset::from_nanos((centre + spread * (self.next() + self.next()) / 2.0) as i64)
    }
}

pub(crate) fn day_samples() -> Vec<Sample> {
    let mut noise = Noise(7);
    let mut out = Vec::new();
    for minute in 0..1440_i64 {
        let hour = minute / 60;
        // gnomond restarted at 15:00 and was down for 20 minutes.
        if (900..920).contains(&minute) {
            continue;
        }
        let (state, gps, engaged) = match minute {
            541..=542 => (EngineState::Degraded, false, false),
            543..=719 => (EngineState::Fallback, false, true),
            720..=729 => (EngineState::Recovering, true, true),
            920..=922 => (EngineState::Acquiring, true, false),
            _ => (EngineState::Primary, true, false),
        };
        let drift = if gps { 1.0 } else { 40.0 };
        let mut sources = vec![
            SourceOffset {
                source: "192.168.1.11".into(),
                offset: noise.nanos(120_000.0, 400_000.0),
            },
            SourceOffset {
                source: "206.108.0.131".into(),
                offset: noise.nanos(
                    -1_800_000.0 + 200_000.0 * (hour as f64 / 4.0).sin(),
                    1_500_000.0,
                ),
            },
        ];
        if gps {
            sources.push(SourceOffset {
                source: "PPS".into(),
                offset: noise.nanos(0.0, 300.0),
            });
        }
        out.push(Sample {
            at: WallTime::from_unix_secs(DAY_START + minute * 60 + 7),
            state,
            fallbacks_engaged: engaged,
            gps: gps.then(|| noise.nanos(20.0, 250.0)),
            gps_from_pps: true,
            chrony: Some(noise.nanos(0.0, 60.0 * drift * if gps { 1.0 } else { 25.0 })),
            sources,
        });
    }
    out
}

pub(crate) fn day_report(points: usize) -> PlotReport {
    let samples = day_samples();
    let now = WallTime::from_unix_secs(DAY_START + 86_400);
    PlotReport {
        host: "gps1".into(),
        role: Role::Gps,
        interval: Duration::from_secs(60),
        keep: Duration::from_secs(7 * 86_400),
        kept: samples.len(),
        oldest: samples.first().map(|s| s.at),
        data: reduce(&samples, now, Duration::from_secs(86_400), points),
    }
}
