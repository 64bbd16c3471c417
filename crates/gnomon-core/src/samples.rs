//! The offset history behind `gnomonctl plot`: one [`Sample`] per interval
//! of what gnomon saw (GPS/PPS − system clock, chrony's estimate, each
//! chrony source − system clock, the engine's state), the `[history]`
//! settings that bound it, and its reduction to a plot's worth of points
//! ([`reduce`]) so a week of samples crosses the control socket as a few
//! hundred kilobytes at most.
//!
//! Every offset here is "reference − system clock": positive when the
//! system clock is behind.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    chrony::{ChronySnapshot, ChronySourceId},
    config::ConfigProblem,
    engine::{EngineState, Status},
    time::{human_duration, Offset, WallTime},
};

/// `[history]`: how often a sample is taken and how long samples are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HistoryConfig {
    #[serde(default = "default_interval", with = "crate::config::duration_serde")]
    pub interval: Duration,
    #[serde(default = "default_keep", with = "crate::config::duration_serde")]
    pub keep: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_keep() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            keep: default_keep(),
        }
    }
}

/// The shortest sampling interval accepted (the daemon ticks every second).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest sampling interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The most samples kept: 70 days at one a minute. Each is a few hundred
/// bytes in memory and on disk.
pub const MAX_SAMPLES: usize = 100_000;

impl HistoryConfig {
    /// How many samples `keep` holds at one per `interval` (at least 1).
    pub fn capacity(&self) -> usize {
        let interval = self.interval.as_nanos().max(1);
        let n = self.keep.as_nanos() / interval;
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_SAMPLES)
    }

    pub(crate) fn check(&self, out: &mut Vec<ConfigProblem>) {
        if self.interval < MIN_INTERVAL || self.interval > MAX_INTERVAL {
            out.push(ConfigProblem::error(
                "history.interval",
                format!(
                    "{} is outside {}..{}",
                    human_duration(self.interval),
                    human_duration(MIN_INTERVAL),
                    human_duration(MAX_INTERVAL)
                ),
            ));
            return;
        }
        if self.keep < self.interval {
            out.push(ConfigProblem::error(
                "history.keep",
                format!(
                    "{} is shorter than history.interval ({})",
                    human_duration(self.keep),
                    human_duration(self.interval)
                ),
            ));
            return;
        }
        let wanted = self.keep.as_nanos() / self.interval.as_nanos().max(1);
        if wanted > MAX_SAMPLES as u128 {
            out.push(ConfigProblem::error(
                "history.keep",
                format!(
                    "{} at one sample every {} is {wanted} samples; at most {MAX_SAMPLES} are kept \
                     (lengthen history.interval or shorten history.keep)",
                    human_duration(self.keep),
                    human_duration(self.interval)
                ),
            ));
        }
    }
}

/// One observation, taken every `[history] interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The system clock when the sample was taken.
    pub at: WallTime,
    pub state: EngineState,
    #[serde(default)]
    pub fallbacks_engaged: bool,
    /// GPS time − system clock (role `gps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<Offset>,
    /// Whether `gps` was measured at the pulse (else at the sentence's arrival).
    #[serde(default)]
    pub gps_from_pps: bool,
    /// chrony's estimate of true time − system clock (its `tracking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrony: Option<Offset>,
    /// Each answering chrony source's last sample, source − system clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    /// The refclock's refid (`NMEA`, `PPS`) or the server's name or address.
    pub source: String,
    pub offset: Offset,
}

/// The most sources one sample records (a chrony with more is unusual).
const MAX_SOURCES_PER_SAMPLE: usize = 16;

impl Sample {
    /// What `status` and chrony's `snapshot` say at `at`. A snapshot older
    /// than `max_age` (by the system clock) is left out: its offsets are
    /// not of this moment.
    pub fn observe(
        at: WallTime,
        status: &Status,
        snapshot: Option<&ChronySnapshot>,
        max_age: Duration,
    ) -> Sample {
        let (gps, gps_from_pps) = status.gps.as_ref().map_or((None, false), |g| {
            (g.observation.gps_offset, g.observation.offset_from_pps)
        });
        let chrony = if status.chrony.reachable {
            status.chrony.system_offset
        } else {
            None
        };
        let fresh = snapshot.filter(|s| at.since(s.taken_wall).abs() <= max_age);
        let mut sources: Vec<SourceOffset> = fresh
            .map(|s| {
                s.sources
                    .iter()
                    .filter(|src| src.answering())
                    .filter_map(|src| {
                        let offset = src.offset?;
                        let source = match (&src.id, &src.name) {
                            (ChronySourceId::Refclock(refid), _) => refid.clone(),
                            (ChronySourceId::Address(_), Some(name)) if !name.is_empty() => {
                                name.clone()
                            }
                            (ChronySourceId::Address(ip), _) => ip.to_string(),
                        };
                        Some(SourceOffset { source, offset })
                    })
                    .collect()
            })
            .unwrap_or_default();
        sources.sort_by(|a, b| a.source.cmp(&b.source));
        sources.dedup_by(|a, b| a.source == b.source);
        sources.truncate(MAX_SOURCES_PER_SAMPLE);
        Sample {
            at,
            state: status.state,
            fallbacks_engaged: status.fallbacks_engaged,
            gps,
            gps_from_pps,
            chrony,
            sources,
        }
    }
}

/// What a series measures, which decides its colour and place in a legend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeriesKind {
    /// GPS − system, measured at the pulse.
    Pps,
    /// GPS − system, measured at the sentence's arrival.
    Nmea,
    /// chrony's estimate of true time − system.
    Chrony,
    /// One chrony source − system.
    Source,
}

/// One bucket of a series: the samples' least, mean and greatest offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotPoint {
    /// The middle of the bucket.
    pub at: WallTime,
    pub min: Offset,
    pub mean: Offset,
    pub max: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotSeries {
    pub name: String,
    pub kind: SeriesKind,
    /// Buckets with at least one sample, oldest first; a missing bucket is
    /// a gap.
    pub points: Vec<PlotPoint>,
}

/// A stretch of time the engine spent in one state (the worst state seen
/// in each bucket, adjacent buckets merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSpan {
    pub from: WallTime,
    pub to: WallTime,
    pub state: EngineState,
}

/// A window of the history reduced for plotting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotData {
    pub from: WallTime,
    pub to: WallTime,
    /// The width of one point.
    pub bucket: Duration,
    /// Samples inside the window.
    pub samples: usize,
    pub series: Vec<PlotSeries>,
    pub states: Vec<StateSpan>,
}

/// The most series one plot carries: GPS/PPS, chrony and the sources with
/// the most points.
pub const MAX_SERIES: usize = 12;
/// The most points per series a plot asks for: a dozen series of this
/// many stay well inside the control socket's 1 MiB frame.
pub const MAX_POINTS: usize = 800;

/// How bad a state is, for choosing one per bucket: the worst wins, so a
/// minute of `no-reference` is never hidden by an hour of `primary` at a
/// coarse scale.
pub fn state_severity(state: EngineState) -> u8 {
    match state {
        EngineState::Primary => 0,
        EngineState::Starting | EngineState::Acquiring => 1,
        EngineState::Recovering => 2,
        EngineState::Degraded => 3,
        EngineState::Fallback => 4,
        EngineState::Frozen => 5,
        EngineState::NoReference => 6,
    }
}

#[derive(Default)]
struct Acc {
    n: i128,
    sum: i128,
    min: i64,
    max: i64,
}

impl Acc {
    fn add(&mut self, nanos: i64) {
        if self.n == 0 {
            self.min = nanos;
            self.max = nanos;
        } else {
            self.min = self.min.min(nanos);
            self.max = self.max.max(nanos);
        }
        self.n += 1;
        self.sum += i128::from(nanos);
    }

    fn mean(&self) -> i64 {
        if self.n == 0 {
            return 0;
        }
        i64::try_from(self.sum / self.n).unwrap_or(if self.sum < 0 { i64::MIN } else { i64::MAX })
    }
}

/// Reduces `samples` (any order) to the window `(now − since, now]` in at
/// most `points` buckets per series (clamped to 1..=[`MAX_POINTS`]).
pub fn reduce<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    now: WallTime,
    since: Duration,
    points: usize,
) -> PlotData {
    let points = points.clamp(1, MAX_POINTS);
    let from = now.minus(since);
    let span = u128::try_from(now.since(from).as_nanos())
        .unwrap_or(0)
        .max(1);
    let bucket_nanos = span.div_ceil(points as u128).max(1);
    let bucket = Duration::from_nanos(u64::try_from(bucket_nanos).unwrap_or(u64::MAX));

    // (kind, name) → bucket → accumulator; bucket → worst state.
    let mut series: BTreeMap<(SeriesKind, String), BTreeMap<usize, Acc>> = BTreeMap::new();
    let mut states: BTreeMap<usize, EngineState> = BTreeMap::new();
    let mut count = 0_usize;
    let mut times: Vec<i64> = Vec::new();
    for s in samples {
        if s.at <= from || s.at > now {
            continue;
        }
        times.push(s.at.unix_nanos());
        let offset_in = u128::try_from(s.at.since(from).as_nanos()).unwrap_or(0);
        // (at − from) is in (0, span]; the last instant belongs to the last bucket.
        let index = usize::try_from((offset_in.saturating_sub(1)) / bucket_nanos)
            .unwrap_or(usize::MAX)
            .min(points - 1);
        count += 1;
        let worst = states.entry(index).or_insert(s.state);
        if state_severity(s.state) > state_severity(*worst) {
            *worst = s.state;
        }
        let mut add = |kind, name: &str, offset: Offset| {
            series
                .entry((kind, name.to_owned()))
                .or_default()
                .entry(index)
                .or_default()
                .add(offset.as_nanos());
        };
        if let Some(gps) = s.gps {
            if s.gps_from_pps {
                add(SeriesKind::Pps, "GPS at pulse", gps);
            } else {
                add(SeriesKind::Nmea, "GPS at sentence", gps);
            }
        }
        if let Some(chrony) = s.chrony {
            add(SeriesKind::Chrony, "chrony tracking", chrony);
        }
        for src in &s.sources {
            add(SeriesKind::Source, &src.source, src.offset);
        }
    }

    let start_of = |index: usize| -> WallTime {
        let nanos = bucket_nanos.saturating_mul(index as u128);
        from.plus(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    };
    let mut out: Vec<PlotSeries> = series
        .into_iter()
        .map(|((kind, name), buckets)| PlotSeries {
            name,
            kind,
            points: buckets
                .into_iter()
                .map(|(index, acc)| PlotPoint {
                    at: start_of(index).plus(bucket / 2),
                    min: Offset::from_nanos(acc.min),
                    mean: Offset::from_nanos(acc.mean()),
                    max: Offset::from_nanos(acc.max),
                })
                .collect(),
        })
        .collect();
    if out.len() > MAX_SERIES {
        // Keep GPS, PPS and chrony, then the sources seen most.
        out.sort_by(|a, b| {
            (a.kind == SeriesKind::Source)
                .cmp(&(b.kind == SeriesKind::Source))
                .then(b.points.len().cmp(&a.points.len()))
        });
        out.truncate(MAX_SERIES);
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    }

    // A state holds until the next sample: buckets narrower than the
    // sampling interval that caught no sample are not gaps. A pause of more
    // than two intervals (gnomond stopped) is.
    times.sort_unstable();
    let mut spacing: Vec<i64> = times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] if b > a => Some(b - a),
            _ => None,
        })
        .collect();
    spacing.sort_unstable();
    let typical = spacing.get(spacing.len() / 2).copied().unwrap_or(0);
    let hold = Duration::from_nanos(u64::try_from(typical.saturating_mul(2)).unwrap_or(0));
    let mut spans: Vec<StateSpan> = Vec::new();
    for (index, state) in states {
        let (start, end) = (start_of(index), start_of(index + 1).min(now));
        if let Some(last) = spans.last_mut() {
            if last.to < start && start.since(last.to).abs() <= hold {
                last.to = start;
            }
            if last.state == state && last.to == start {
                last.to = end;
                continue;
            }
        }
        spans.push(StateSpan {
            from: start,
            to: end,
            state,
        });
    }

    PlotData {
        from,
        to: now,
        bucket,
        samples: count,
        series: out,
        states: spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000; // 2026-09-21

    fn at(secs: i64) -> WallTime {
        WallTime::from_unix_secs(T0 + secs)
    }

    fn sample(secs: i64, state: EngineState, pps_ns: Option<i64>) -> Sample {
        Sample {
            at: at(secs),
            state,
            fallbacks_engaged: false,
            gps: pps_ns.map(Offset::from_nanos),
            gps_from_pps: true,
            chrony: Some(Offset::from_nanos(-5)),
            sources: vec![SourceOffset {
                source: "192.168.1.11".into(),
                offset: Offset::from_millis(2),
            }],
        }
    }

    #[test]
    fn capacity_and_checks() {
        let c = HistoryConfig::default();
        assert_eq!(c.capacity(), 7 * 24 * 60);
        let mut out = Vec::new();
        c.check(&mut out);
        assert!(out.is_empty(), "{out:?}");

        let mut out = Vec::new();
        HistoryConfig {
            interval: Duration::from_millis(500),
            keep: default_keep(),
        }
        .check(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "history.interval");

        let mut out = Vec::new();
        HistoryConfig {
            interval: Duration::from_secs(60),
            keep: Duration::from_secs(30),
        }
        .check(&mut out);
        assert_eq!(out[0].key, "history.keep");

        let mut out = Vec::new();
        HistoryConfig {
            interval: Duration::from_secs(1),
            keep: Duration::from_secs(7 * 86_400),
        }
        .check(&mut out);
        assert!(out[0].message.contains("604800 samples"), "{out:?}");
    }

    #[test]
    fn buckets_hold_min_mean_max_and_the_window_is_half_open() {
        let samples: Vec<Sample> = (0..=120)
            .map(|s| sample(s, EngineState::Primary, Some(s * 10)))
            .collect();
        // Window (t60, t120] in 6 buckets of 10 s: t60 itself is outside.
        let data = reduce(&samples, at(120), Duration::from_secs(60), 6);
        assert_eq!(data.bucket, Duration::from_secs(10));
        assert_eq!(data.samples, 60);
        let pps = data
            .series
            .iter()
            .find(|s| s.kind == SeriesKind::Pps)
            .unwrap();
        assert_eq!(pps.name, "GPS at pulse");
        assert_eq!(pps.points.len(), 6);
        let first = pps.points[0];
        assert_eq!(first.at, at(65));
        assert_eq!(
            (first.min, first.mean, first.max),
            (
                Offset::from_nanos(610),
                Offset::from_nanos(655),
                Offset::from_nanos(700)
            )
        );
        assert_eq!(pps.points[5].max, Offset::from_nanos(1200));
        let names: Vec<&str> = data.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["GPS at pulse", "chrony tracking", "192.168.1.11"]);
    }

    #[test]
    fn gaps_stay_gaps() {
        let mut samples: Vec<Sample> = (0..10)
            .map(|s| sample(s * 60, EngineState::Primary, Some(1)))
            .collect();
        samples.extend((30..40).map(|s| sample(s * 60, EngineState::Primary, Some(1))));
        let data = reduce(&samples, at(40 * 60), Duration::from_secs(40 * 60), 40);
        let pps = &data.series[0];
        assert_eq!(pps.points.len(), 19, "t0 is outside the window");
        // Nothing between minute 10 and minute 29 (buckets are (start, end]:
        // the sample of minute 30 is in the bucket ending then).
        assert!(pps
            .points
            .iter()
            .all(|p| p.at < at(10 * 60) || p.at > at(29 * 60)));
        // The state band has the same gap: two spans.
        assert_eq!(data.states.len(), 2);
    }

    #[test]
    fn the_worst_state_of_a_bucket_wins_and_spans_merge() {
        let mut samples: Vec<Sample> = (1..=600)
            .map(|s| sample(s, EngineState::Primary, None))
            .collect();
        // One second of no-reference in the third minute.
        samples[150].state = EngineState::NoReference;
        let data = reduce(&samples, at(600), Duration::from_secs(600), 10);
        let states: Vec<(EngineState, i64, i64)> = data
            .states
            .iter()
            .map(|s| (s.state, s.from.unix_secs() - T0, s.to.unix_secs() - T0))
            .collect();
        assert_eq!(
            states,
            [
                (EngineState::Primary, 0, 120),
                (EngineState::NoReference, 120, 180),
                (EngineState::Primary, 180, 600),
            ]
        );
    }

    #[test]
    fn a_state_holds_across_buckets_narrower_than_the_sampling_interval() {
        // One sample every 60 s, buckets of 40 s: every third bucket is
        // empty, which is not a gap; a 10-minute pause is.
        let mut samples: Vec<Sample> = (1..=30)
            .map(|m| sample(m * 60, EngineState::Primary, None))
            .collect();
        samples.retain(|s| !(10 * 60..20 * 60).contains(&(s.at.unix_secs() - T0)));
        for s in samples
            .iter_mut()
            .filter(|s| s.at.unix_secs() - T0 > 25 * 60)
        {
            s.state = EngineState::Fallback;
        }
        let data = reduce(&samples, at(30 * 60), Duration::from_secs(30 * 60), 45);
        let states: Vec<(EngineState, i64, i64)> = data
            .states
            .iter()
            .map(|s| (s.state, s.from.unix_secs() - T0, s.to.unix_secs() - T0))
            .collect();
        assert_eq!(
            states,
            [
                (EngineState::Primary, 40, 560),
                (EngineState::Primary, 1160, 1520),
                (EngineState::Fallback, 1520, 1800),
            ]
        );
    }

    #[test]
    fn samples_out_of_order_or_outside_the_window_are_handled() {
        let samples = [
            sample(50, EngineState::Fallback, Some(3)),
            sample(-10_000, EngineState::Primary, Some(1_000_000)),
            sample(10, EngineState::Fallback, Some(1)),
            sample(5_000, EngineState::Primary, Some(1_000_000)),
        ];
        let data = reduce(&samples, at(60), Duration::from_secs(60), 1000);
        assert_eq!(data.samples, 2);
        let pps = &data.series[0];
        assert_eq!(pps.points.len(), 2);
        assert!(pps.points[0].at < pps.points[1].at);
        assert_eq!(pps.points[1].mean, Offset::from_nanos(3));
    }

    #[test]
    fn nmea_and_pps_are_separate_series_and_extreme_offsets_do_not_overflow() {
        let mut a = sample(1, EngineState::Fallback, Some(i64::MAX));
        a.gps_from_pps = false;
        let mut b = sample(2, EngineState::Fallback, Some(i64::MAX));
        b.gps_from_pps = false;
        let c = sample(3, EngineState::Primary, Some(-20));
        let data = reduce([&a, &b, &c], at(10), Duration::from_secs(10), 1);
        let nmea = data
            .series
            .iter()
            .find(|s| s.kind == SeriesKind::Nmea)
            .unwrap();
        assert_eq!(nmea.points[0].mean, Offset::from_nanos(i64::MAX));
        let pps = data
            .series
            .iter()
            .find(|s| s.kind == SeriesKind::Pps)
            .unwrap();
        assert_eq!(pps.points[0].mean, Offset::from_nanos(-20));
    }

    #[test]
    fn series_are_capped() {
        let mut s = sample(1, EngineState::Primary, Some(1));
        s.sources = (0..MAX_SOURCES_PER_SAMPLE)
            .map(|i| SourceOffset {
                source: format!("10.0.0.{i}"),
                offset: Offset::from_nanos(1),
            })
            .collect();
        let data = reduce([&s], at(10), Duration::from_secs(10), 10);
        assert_eq!(data.series.len(), MAX_SERIES);
        assert_eq!(data.series[0].kind, SeriesKind::Pps);
        assert_eq!(data.series[1].kind, SeriesKind::Chrony);
    }

    #[test]
    fn sample_json_is_compact_and_tolerant() {
        let s = sample(0, EngineState::Primary, None);
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("\"gps\""), "{json}");
        let back: Sample = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        // An older or newer writer's line with fields missing or added.
        let minimal: Sample =
            serde_json::from_str(r#"{"at":1,"state":"fallback","future":true}"#).unwrap();
        assert_eq!(minimal.state, EngineState::Fallback);
        assert!(minimal.sources.is_empty());
    }
}
