//! The axes of `gnomonctl plot`: the offset axis (linear, or symmetric
//! logarithmic when nanosecond PPS offsets share the plot with a clock that
//! is minutes or years off) and the time axis, with tick positions and
//! their labels. Both renderers (terminal, SVG) use them.

use std::time::Duration;

use gnomon_core::{samples::PlotData, time::WallTime};

use crate::render;

/// `--scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ScaleChoice {
    /// Linear, unless a few offsets dwarf the rest by a factor of 100 or more.
    Auto,
    Linear,
    /// Symmetric logarithmic: linear near zero, one band per decade beyond.
    Log,
}

/// How offsets (in nanoseconds) map to the vertical axis, as a fraction
/// 0.0 (bottom) ..= 1.0 (top).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum YScale {
    Linear {
        lo: f64,
        hi: f64,
    },
    /// `sign(x)·log10(1 + |x|/linear)`, from −`limit` to +`limit` (in
    /// transformed units).
    SymLog {
        linear: f64,
        limit: f64,
    },
}

/// A tick: where (0..=1) and what it says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tick {
    pub(crate) at: f64,
    pub(crate) label: String,
}

/// Every offset of the plot, in nanoseconds: means, minima and maxima.
fn values(data: &PlotData) -> Vec<f64> {
    #[allow(clippy::cast_precision_loss)]
    data.series
        .iter()
        .flat_map(|s| s.points.iter())
        .flat_map(|p| [p.min.as_nanos(), p.mean.as_nanos(), p.max.as_nanos()])
        .map(|n| n as f64)
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

impl YScale {
    /// The scale that shows `data` best under `choice`.
    pub(crate) fn choose(data: &PlotData, choice: ScaleChoice) -> YScale {
        let all = values(data);
        let mut mags: Vec<f64> = all.iter().map(|v| v.abs()).collect();
        mags.sort_by(f64::total_cmp);
        let max = mags.last().copied().unwrap_or(0.0);
        let typical = quantile(&mags, 0.5);
        let log = match choice {
            ScaleChoice::Linear => false,
            ScaleChoice::Log => true,
            ScaleChoice::Auto => max > 100.0 * typical.max(1.0) && max > 1000.0,
        };
        if log {
            // Linear below the decade of the smaller offsets (at least 1 ns).
            let small = quantile(&mags, 0.25).max(1.0);
            let linear = 10f64.powf(small.log10().floor());
            let limit = symlog(max.max(linear * 10.0), linear) * 1.05;
            return YScale::SymLog { linear, limit };
        }
        let lo = all.iter().copied().fold(0.0_f64, f64::min);
        let hi = all.iter().copied().fold(0.0_f64, f64::max);
        let (lo, hi) = if (hi - lo).abs() < 1.0 {
            (lo - 10.0, hi + 10.0)
        } else {
            let pad = (hi - lo) * 0.05;
            (lo - pad, hi + pad)
        };
        YScale::Linear { lo, hi }
    }

    /// Where `nanos` lands, 0.0 (bottom) ..= 1.0 (top), clamped.
    pub(crate) fn position(&self, nanos: f64) -> f64 {
        let f = match *self {
            YScale::Linear { lo, hi } => (nanos - lo) / (hi - lo),
            YScale::SymLog { linear, limit } => (symlog(nanos, linear) + limit) / (2.0 * limit),
        };
        if f.is_nan() {
            0.5
        } else {
            f.clamp(0.0, 1.0)
        }
    }

    pub(crate) fn is_log(&self) -> bool {
        matches!(self, YScale::SymLog { .. })
    }

    /// Ticks: "nice" steps for a linear axis; 0 and ±decades (thinned to
    /// about `max_per_side` each side) for a logarithmic one.
    pub(crate) fn ticks(&self, max_ticks: usize) -> Vec<Tick> {
        match *self {
            YScale::Linear { lo, hi } => {
                let step = nice_step((hi - lo) / max_ticks.max(2) as f64);
                let mut out = Vec::new();
                let mut v = (lo / step).ceil() * step;
                while v <= hi && out.len() <= max_ticks * 2 {
                    out.push(self.tick(v));
                    v += step;
                }
                out
            }
            YScale::SymLog { linear, limit } => {
                let top = inverse_symlog(limit, linear);
                // Decades of nanoseconds: 0..=19 for any offset an i64 holds.
                #[allow(clippy::cast_possible_truncation)]
                let (first, last) = (
                    linear.log10().ceil().clamp(0.0, 19.0) as i32,
                    top.log10().floor().clamp(0.0, 19.0) as i32,
                );
                let decades: Vec<i32> = (first..=last).collect();
                let per_side = (max_ticks / 2).max(1);
                let every = decades.len().div_ceil(per_side).max(1);
                let mut out = vec![self.tick(0.0)];
                for (i, d) in decades.iter().rev().enumerate() {
                    if i % every != 0 {
                        continue;
                    }
                    let v = 10f64.powi(*d);
                    out.push(self.tick(v));
                    out.push(self.tick(-v));
                }
                out.sort_by(|a, b| a.at.total_cmp(&b.at));
                out
            }
        }
    }

    fn tick(&self, nanos: f64) -> Tick {
        Tick {
            at: self.position(nanos),
            label: offset_label(nanos),
        }
    }
}

fn symlog(x: f64, linear: f64) -> f64 {
    x.signum() * (1.0 + x.abs() / linear).log10()
}

fn inverse_symlog(y: f64, linear: f64) -> f64 {
    y.signum() * (10f64.powf(y.abs()) - 1.0) * linear
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if base * m >= raw {
            return base * m;
        }
    }
    base * 10.0
}

/// An offset label: `0`, `+500ns`, `-1.0ms`, `+3y`.
pub(crate) fn offset_label(nanos: f64) -> String {
    if nanos == 0.0 {
        return "0".to_owned();
    }
    #[allow(clippy::cast_possible_truncation)]
    let n = nanos.round() as i64;
    render::offset(gnomon_core::time::Offset::from_nanos(n))
}

/// Steps the time axis may use, shortest first.
const TIME_STEPS: [u64; 16] = [
    10,
    30,
    60,
    5 * 60,
    10 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    30 * 86_400,
];

/// Time ticks between `from` and `to`, at most `max_ticks`, on round UTC
/// times; labels are `HH:MM`, with the date (`MM-DD HH:MM`) on the first
/// tick and at each midnight when the window spans days.
pub(crate) fn time_ticks(
    from: WallTime,
    to: WallTime,
    max_ticks: usize,
) -> Vec<(WallTime, String)> {
    let span = to.unix_secs().saturating_sub(from.unix_secs()).max(1);
    let span_u = u64::try_from(span).unwrap_or(u64::MAX);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span_u / s <= max_ticks.max(1) as u64)
        .unwrap_or(365 * 86_400);
    let step_i = i64::try_from(step).unwrap_or(i64::MAX);
    let mut t = from.unix_secs().div_euclid(step_i) * step_i;
    if t < from.unix_secs() {
        t += step_i;
    }
    let multi_day = span > 86_400 || from.to_utc().2 != to.to_utc().2;
    let mut out = Vec::new();
    while t <= to.unix_secs() && out.len() <= max_ticks * 2 {
        let w = WallTime::from_unix_secs(t);
        let (_, mon, day, h, m, s) = w.to_utc();
        let label = if step < 60 {
            format!("{h:02}:{m:02}:{s:02}")
        } else if multi_day && (out.is_empty() || (h == 0 && m == 0)) {
            format!("{mon:02}-{day:02} {h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}")
        };
        out.push((w, label));
        t += step_i;
    }
    out
}

/// Where `t` lands between `from` (0.0) and `to` (1.0).
pub(crate) fn time_position(t: WallTime, from: WallTime, to: WallTime) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let (num, den) = (
        t.since(from).as_nanos() as f64,
        to.since(from).as_nanos() as f64,
    );
    if den <= 0.0 {
        return 0.0;
    }
    (num / den).clamp(0.0, 1.0)
}

/// `24h`, `7 days`, `90m` for a title.
pub(crate) fn window_words(d: Duration) -> String {
    gnomon_core::time::human_duration(d)
}

#[cfg(test)]
#[allow(clippy::cast_possible_wrap)]
mod tests {
    use gnomon_core::{
        engine::EngineState,
        samples::{reduce, Sample},
        time::Offset,
    };

    use super::*;

    fn data(offsets: &[i64]) -> PlotData {
        let samples: Vec<Sample> = offsets
            .iter()
            .enumerate()
            .map(|(i, o)| Sample {
                at: WallTime::from_unix_secs(1_790_000_000 + i as i64 * 60),
                state: EngineState::Primary,
                fallbacks_engaged: false,
                gps: Some(Offset::from_nanos(*o)),
                gps_from_pps: true,
                chrony: None,
                sources: vec![],
            })
            .collect();
        let now = WallTime::from_unix_secs(1_790_000_000 + offsets.len() as i64 * 60);
        reduce(
            &samples,
            now,
            Duration::from_secs(offsets.len() as u64 * 60 + 1),
            500,
        )
    }

    #[test]
    fn auto_is_linear_for_similar_offsets_and_log_for_an_outlier() {
        let even = data(&[-300, 200, 150, -120, 90, 400]);
        let y = YScale::choose(&even, ScaleChoice::Auto);
        assert!(!y.is_log(), "{y:?}");
        assert!(y.position(400.0) > y.position(-300.0));
        assert!(y.position(400.0) <= 1.0 && y.position(-300.0) >= 0.0);

        // A clock 20 years off beside 100 ns PPS offsets.
        let mut wild = vec![100, -80, 120, -90, 110, -100, 95, -85];
        wild.push(-631_152_000_000_000_000);
        let y = YScale::choose(&data(&wild), ScaleChoice::Auto);
        assert!(y.is_log(), "{y:?}");
        // The small offsets keep room: +100 ns sits clearly above −100 ns.
        assert!(y.position(100.0) - y.position(-100.0) > 0.05, "{y:?}");
        assert!(y.position(-631_152_000_000_000_000.0) < 0.05);
        let labels: Vec<String> = y.ticks(10).into_iter().map(|t| t.label).collect();
        assert!(labels.contains(&"0".to_owned()), "{labels:?}");
        assert!(labels.iter().any(|l| l.ends_with('y')), "{labels:?}");
        assert!(labels.len() <= 13, "{labels:?}");
    }

    #[test]
    fn linear_ticks_are_round_and_inside() {
        let y = YScale::Linear {
            lo: -1234.0,
            hi: 5678.0,
        };
        let ticks = y.ticks(8);
        let labels: Vec<&str> = ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["-1.0us", "0", "+1.0us", "+2.0us", "+3.0us", "+4.0us", "+5.0us"]
        );
        assert!(ticks.iter().all(|t| (0.0..=1.0).contains(&t.at)));
        assert!(ticks.windows(2).all(|w| w[0].at < w[1].at));
    }

    #[test]
    fn time_ticks_are_round_utc_times() {
        // 2026-09-21 13:53:20 .. one day later.
        let from = WallTime::from_unix_secs(1_790_035_200 - 86_400 + 13 * 3600 + 53 * 60 + 20);
        let to = from.plus(Duration::from_secs(86_400));
        let ticks = time_ticks(from, to, 8);
        let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "09-21 15:00",
                "18:00",
                "21:00",
                "09-22 00:00",
                "03:00",
                "06:00",
                "09:00",
                "12:00"
            ]
        );
        // Ten minutes: ticks every five, on the minute.
        let short = time_ticks(from, from.plus(Duration::from_secs(600)), 6);
        let labels: Vec<&str> = short.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["13:55", "14:00"]);
        assert_eq!(time_position(from, from, to), 0.0);
        assert_eq!(time_position(to, from, to), 1.0);
    }
}
