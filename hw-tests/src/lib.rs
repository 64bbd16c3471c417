//! Helpers for the hardware tests in `tests/pi.rs`: the guard that keeps
//! them off machines without the hardware, the figures computed from PPS
//! edges (tested here on any machine), and the report they fill in.

use std::{
    fmt::Write as _,
    fs::OpenOptions,
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use gnomon_core::time::{Offset, WallTime};

/// Panics unless `GNOMON_HW=1`: the tests are `#[ignore]`d, and one run
/// with `--ignored` by mistake must say why rather than fail on a missing
/// device. Only tests call it.
#[allow(clippy::panic)]
pub fn require_hw() {
    if std::env::var("GNOMON_HW").as_deref() != Ok("1") {
        panic!(
            "hardware test: run on a Raspberry Pi with a GPS hat as \
             `GNOMON_HW=1 hw-tests/run` (see hw-tests/README.md)"
        );
    }
}

/// A number of the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How regular a train of pulses was.
#[derive(Debug, Clone, PartialEq)]
pub struct PulseStats {
    pub pulses: usize,
    /// Whole seconds with no pulse between the first and the last.
    pub missed: u64,
    /// Mean absolute deviation of the intervals from 1 s (jitter).
    pub jitter: Duration,
    /// The largest |interval − 1 s| of consecutive pulses.
    pub worst_interval_error: Duration,
    /// Median of each edge's offset from its nearest whole second.
    pub median_phase: Offset,
}

/// Figures of a pulse train, from the system-clock time of each edge.
pub fn pulse_stats(edges: &[WallTime]) -> Option<PulseStats> {
    let (first, last) = (edges.first()?, edges.last()?);
    let span = last.since(*first).as_nanos();
    let expected = u64::try_from((span + 500_000_000) / 1_000_000_000).unwrap_or(0) + 1;
    let missed = expected.saturating_sub(u64::try_from(edges.len()).unwrap_or(0));
    let deviations: Vec<i64> = edges
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some(b.since(*a).as_nanos()),
            _ => None,
        })
        // An interval over a missed pulse is not jitter.
        .filter(|ns| (*ns - 1_000_000_000).abs() < 500_000_000)
        .map(|ns| ns - 1_000_000_000)
        .collect();
    let jitter = if deviations.is_empty() {
        Duration::ZERO
    } else {
        let sum: u128 = deviations
            .iter()
            .map(|d| u128::from(d.unsigned_abs()))
            .sum();
        let n = u128::try_from(deviations.len()).unwrap_or(1);
        Duration::from_nanos(u64::try_from(sum / n).unwrap_or(u64::MAX))
    };
    let worst = deviations
        .iter()
        .map(|d| d.unsigned_abs())
        .max()
        .unwrap_or(0);
    let mut phases: Vec<i64> = edges.iter().map(|e| phase_ns(*e)).collect();
    phases.sort_unstable();
    let median = phases.get(phases.len() / 2).copied().unwrap_or(0);
    Some(PulseStats {
        pulses: edges.len(),
        missed,
        jitter,
        worst_interval_error: Duration::from_nanos(worst),
        median_phase: Offset::from_nanos(median),
    })
}

/// The edge's offset from its nearest whole second, in −0.5..0.5 s.
fn phase_ns(edge: WallTime) -> i64 {
    let sub = i64::from(edge.subsec_nanos());
    if sub >= 500_000_000 {
        sub - 1_000_000_000
    } else {
        sub
    }
}

/// For each edge of `a`, the edge of `b` within 0.5 s of it: `b − a`.
/// (Two timestampings of the same pulse: kernel PPS and a GPIO interrupt.)
pub fn path_offsets(a: &[WallTime], b: &[WallTime]) -> Vec<Offset> {
    a.iter()
        .filter_map(|ea| {
            b.iter()
                .map(|eb| eb.since(*ea))
                .filter(|d| d.abs() < Duration::from_millis(500))
                .min_by_key(|d| d.abs())
        })
        .collect()
}

/// Median, 99th percentile and largest of |offsets|, with the median's sign.
pub fn offset_summary(offsets: &[Offset]) -> Option<(Offset, Duration, Duration)> {
    let mut sorted: Vec<Offset> = offsets.to_vec();
    sorted.sort_by_key(|o| o.as_nanos());
    let median = *sorted.get(sorted.len() / 2)?;
    let mut abs: Vec<Duration> = offsets.iter().map(|o| o.abs()).collect();
    abs.sort_unstable();
    let p99 = abs
        .get((abs.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()?;
    let max = *abs.last()?;
    Some((median, p99, max))
}

/// The report a hardware run fills in: markdown sections appended to
/// `$GNOMON_HW_REPORT` (default `target/hw-report.md`), which `hw-tests/run`
/// starts with the machine's facts.
pub fn report(section: &str, body: &str) -> io::Result<()> {
    let path = std::env::var_os("GNOMON_HW_REPORT")
        .map_or_else(|| PathBuf::from("target/hw-report.md"), PathBuf::from);
    let mut text = String::new();
    let _ = write!(text, "\n## {section}\n\n{body}\n");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: i64) -> WallTime {
        WallTime::from_unix_nanos(secs * 1_000_000_000 + nanos)
    }

    #[test]
    fn a_regular_train_has_no_jitter_and_its_phase() {
        let edges: Vec<WallTime> = (0..10).map(|s| at(1_000 + s, 2_000)).collect();
        let s = pulse_stats(&edges).unwrap();
        assert_eq!(s.pulses, 10);
        assert_eq!(s.missed, 0);
        assert_eq!(s.jitter, Duration::ZERO);
        assert_eq!(s.median_phase, Offset::from_nanos(2_000));
    }

    #[test]
    fn missed_pulses_are_counted_not_taken_for_jitter() {
        let edges = [at(0, 0), at(1, 10_000), at(2, -10_000), at(5, 0)];
        let s = pulse_stats(&edges).unwrap();
        assert_eq!(s.pulses, 4);
        assert_eq!(s.missed, 2);
        // Intervals +10 us, -20 us (the 3 s gap is left out).
        assert_eq!(s.jitter, Duration::from_micros(15));
        assert_eq!(s.worst_interval_error, Duration::from_micros(20));
        let late = [at(0, 999_999_000), at(1, 999_999_000)];
        assert_eq!(
            pulse_stats(&late).unwrap().median_phase,
            Offset::from_nanos(-1_000)
        );
        assert!(pulse_stats(&[]).is_none());
    }

    #[test]
    fn two_paths_are_paired_edge_by_edge() {
        let kernel = [at(0, 1_000), at(1, 1_000), at(2, 1_000)];
        let gpio = [at(0, 61_000), at(2, 41_000), at(7, 0)];
        let offsets = path_offsets(&kernel, &gpio);
        assert_eq!(
            offsets,
            [Offset::from_nanos(60_000), Offset::from_nanos(40_000)]
        );
        let (median, p99, max) = offset_summary(&offsets).unwrap();
        assert_eq!(median, Offset::from_nanos(60_000));
        assert_eq!(p99, Duration::from_micros(60));
        assert_eq!(max, Duration::from_micros(60));
        assert!(offset_summary(&[]).is_none());
    }
}
