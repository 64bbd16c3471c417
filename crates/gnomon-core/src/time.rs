//! Time as gnomon reasons about it: wall-clock readings with nanoseconds,
//! signed offsets between clocks, the monotonic instants the engine runs on,
//! and the time floor below which the system clock is known to be wrong.
//!
//! Nothing here reads a clock: every value comes in from the IO layer.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// One GPS week-number era: the receiver's 10-bit week counter wraps after
/// 1024 weeks, and a receiver with a rollover bug reports a date exactly
/// this much in the past.
pub const GPS_ROLLOVER: Duration = Duration::from_secs(1024 * 7 * 86_400);

/// A reading of a wall clock (UTC, POSIX seconds since 1970-01-01 with
/// nanoseconds). Covers 1678..2262, which is wider than any clock gnomon
/// has to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WallTime {
    nanos: i64,
}

impl WallTime {
    pub const UNIX_EPOCH: WallTime = WallTime { nanos: 0 };

    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    pub const fn from_unix_secs(secs: i64) -> Self {
        Self {
            nanos: secs.saturating_mul(NANOS_PER_SEC),
        }
    }

    pub const fn unix_nanos(self) -> i64 {
        self.nanos
    }

    /// Whole seconds, rounded towards minus infinity.
    pub const fn unix_secs(self) -> i64 {
        self.nanos.div_euclid(NANOS_PER_SEC)
    }

    /// Nanoseconds within the second, always in `0..1_000_000_000`.
    pub const fn subsec_nanos(self) -> u32 {
        // rem_euclid with a positive divisor is in 0..1e9, which fits u32.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = self.nanos.rem_euclid(NANOS_PER_SEC) as u32;
        n
    }

    /// Builds a UTC time from calendar fields; `None` when a field is out of
    /// range (month 13, 31 February, hour 24, ...). Leap seconds (second 60)
    /// are folded into the next second, as POSIX time does.
    pub fn from_utc(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        nanos: u32,
    ) -> Option<Self> {
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
            || nanos >= 1_000_000_000
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days
            .checked_mul(86_400)?
            .checked_add(i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second))?;
        let nanos = secs
            .checked_mul(NANOS_PER_SEC)?
            .checked_add(i64::from(nanos))?;
        Some(Self { nanos })
    }

    /// Calendar fields in UTC: (year, month, day, hour, minute, second).
    pub fn to_utc(self) -> (i32, u32, u32, u32, u32, u32) {
        let secs = self.unix_secs();
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (h, mi, s) = (
            (rem / 3600) as u32,
            ((rem % 3600) / 60) as u32,
            (rem % 60) as u32,
        );
        (y, m, d, h, mi, s)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T02:47:55.123Z`.
    pub fn rfc3339_millis(self) -> String {
        let (y, mo, d, h, mi, s) = self.to_utc();
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            self.subsec_nanos() / 1_000_000
        )
    }

    /// `self - earlier` as a signed offset.
    pub const fn since(self, earlier: WallTime) -> Offset {
        Offset::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    pub const fn offset_by(self, offset: Offset) -> WallTime {
        WallTime {
            nanos: self.nanos.saturating_add(offset.as_nanos()),
        }
    }

    pub fn plus(self, d: Duration) -> WallTime {
        self.offset_by(Offset::from_duration(d))
    }

    pub fn minus(self, d: Duration) -> WallTime {
        self.offset_by(-Offset::from_duration(d))
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339_millis())
    }
}

/// A signed difference between two clocks or two readings, in nanoseconds.
///
/// Sign convention everywhere in gnomon: an offset *of a source* is
/// `source time − system time`, so a positive offset means the system clock
/// is behind the source and must move forward.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset {
    nanos: i64,
}

impl Offset {
    pub const ZERO: Offset = Offset { nanos: 0 };

    pub const fn from_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    pub const fn from_secs(secs: i64) -> Self {
        Self {
            nanos: secs.saturating_mul(NANOS_PER_SEC),
        }
    }

    /// From floating-point seconds (as chrony reports them); saturates.
    pub fn from_secs_f64(secs: f64) -> Self {
        // `as` saturates for out-of-range floats and maps NaN to 0.
        #[allow(clippy::cast_possible_truncation)]
        let nanos = (secs * 1e9).round() as i64;
        Self { nanos }
    }

    pub fn from_duration(d: Duration) -> Self {
        Self {
            nanos: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn as_secs_f64(self) -> f64 {
        self.nanos as f64 / 1e9
    }

    pub const fn abs(self) -> Duration {
        Duration::from_nanos(self.nanos.unsigned_abs())
    }
}

impl std::ops::Neg for Offset {
    type Output = Offset;
    fn neg(self) -> Offset {
        Offset {
            nanos: self.nanos.saturating_neg(),
        }
    }
}

impl std::ops::Sub for Offset {
    type Output = Offset;
    fn sub(self, rhs: Offset) -> Offset {
        Offset {
            nanos: self.nanos.saturating_sub(rhs.nanos),
        }
    }
}

impl std::ops::Add for Offset {
    type Output = Offset;
    fn add(self, rhs: Offset) -> Offset {
        Offset {
            nanos: self.nanos.saturating_add(rhs.nanos),
        }
    }
}

impl fmt::Display for Offset {
    /// Human form with a unit that keeps three significant digits or so:
    /// `+12 ns`, `-3.402 ms`, `+1.000 s`, `-1771234567 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        let sign = if n < 0 { '-' } else { '+' };
        let a = n.unsigned_abs();
        #[allow(clippy::cast_precision_loss)]
        let af = a as f64;
        if a < 1_000 {
            write!(f, "{sign}{a} ns")
        } else if a < 1_000_000 {
            write!(f, "{sign}{:.3} us", af / 1e3)
        } else if a < 1_000_000_000 {
            write!(f, "{sign}{:.3} ms", af / 1e6)
        } else if a < 1_000_000_000_000 {
            write!(f, "{sign}{:.3} s", af / 1e9)
        } else {
            write!(f, "{sign}{} s", a / 1_000_000_000)
        }
    }
}

/// A monotonic instant: nanoseconds since an arbitrary origin (the daemon's
/// start, or zero in a simulation). The engine measures every grace, hold
/// and re-alert interval on this clock, never on the wall clock, because
/// the wall clock is exactly what may be stepped.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MonoTime {
    nanos: u64,
}

impl MonoTime {
    pub const ZERO: MonoTime = MonoTime { nanos: 0 };

    pub const fn from_nanos(nanos: u64) -> Self {
        Self { nanos }
    }

    pub fn from_duration(d: Duration) -> Self {
        Self {
            nanos: u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }

    /// Time elapsed since `earlier`; zero if `earlier` is in the future.
    pub const fn since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    pub fn plus(self, d: Duration) -> MonoTime {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        MonoTime {
            nanos: self.nanos.saturating_add(add),
        }
    }
}

impl fmt::Display for MonoTime {
    /// Elapsed form used by timelines: `T+0123.456s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.as_duration();
        write!(f, "T+{:04}.{:03}s", d.as_secs(), d.subsec_millis())
    }
}

/// Where a part of the time floor comes from, for alerts and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloorSource {
    /// When the running binary was built.
    BuildTime,
    /// The last time gnomon saw chrony synchronised, persisted on disk.
    LastSynchronised,
    /// A time written by the operator into the configured floor file.
    OperatorFile,
}

impl fmt::Display for FloorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FloorSource::BuildTime => "build time of gnomond",
            FloorSource::LastSynchronised => "last time chrony was seen synchronised",
            FloorSource::OperatorFile => "operator's floor file",
        })
    }
}

/// The earliest time the system clock can plausibly show: a clock before
/// the floor is wrong, whatever any source says. The floor is the latest of
/// its known parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeFloor {
    pub build_time: WallTime,
    pub last_synchronised: Option<WallTime>,
    pub operator: Option<WallTime>,
}

impl TimeFloor {
    pub fn new(build_time: WallTime) -> Self {
        Self {
            build_time,
            last_synchronised: None,
            operator: None,
        }
    }

    /// The floor and the part that set it.
    pub fn floor(&self) -> (WallTime, FloorSource) {
        let mut best = (self.build_time, FloorSource::BuildTime);
        for (t, src) in [
            (self.last_synchronised, FloorSource::LastSynchronised),
            (self.operator, FloorSource::OperatorFile),
        ] {
            if let Some(t) = t {
                if t > best.0 {
                    best = (t, src);
                }
            }
        }
        best
    }

    pub fn value(&self) -> WallTime {
        self.floor().0
    }

    /// Raises the last-synchronised part; the floor never moves backwards.
    pub fn raise_last_synchronised(&mut self, t: WallTime) {
        if self.last_synchronised.is_none_or(|old| t > old) {
            self.last_synchronised = Some(t);
        }
    }
}

/// Formats a duration the way operators read it: `45s`, `5m`, `1h30m`, `250ms`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        let frac = d.subsec_millis();
        return if frac == 0 {
            format!("{s}s")
        } else {
            format!("{s}.{:01}s", frac / 100)
        };
    }
    const DAY: u64 = 86_400;
    if s >= 2 * 365 * DAY {
        // Clocks of the 1970 kind: the exact hours mean nothing to a reader.
        #[allow(clippy::cast_precision_loss)]
        let years = s as f64 / (365.2425 * DAY as f64);
        return format!("{years:.1} years");
    }
    if s >= 2 * DAY {
        let (d, h) = (s / DAY, (s % DAY) / 3600);
        return if h == 0 {
            format!("{d} days")
        } else {
            format!("{d} days {h}h")
        };
    }
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

pub(crate) fn is_leap_year(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm, exact for every representable year).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (y as i32, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_known_dates() {
        let t = WallTime::from_utc(2026, 11, 22, 2, 47, 55, 123_000_000).unwrap();
        assert_eq!(t.unix_secs(), 1_795_315_675);
        assert_eq!(t.rfc3339_millis(), "2026-11-22T02:47:55.123Z");
        assert_eq!(
            WallTime::UNIX_EPOCH.rfc3339_millis(),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = WallTime::from_utc(2000, 2, 29, 0, 0, 0, 0).unwrap();
        assert_eq!(leap.to_utc(), (2000, 2, 29, 0, 0, 0));
        assert!(WallTime::from_utc(2001, 2, 29, 0, 0, 0, 0).is_none());
        assert!(WallTime::from_utc(2026, 13, 1, 0, 0, 0, 0).is_none());
        assert!(WallTime::from_utc(2026, 1, 1, 24, 0, 0, 0).is_none());
    }

    #[test]
    fn rollover_is_1024_weeks() {
        let now = WallTime::from_utc(2019, 4, 7, 0, 0, 0, 0).unwrap();
        let rolled = now.minus(GPS_ROLLOVER);
        assert_eq!(rolled.to_utc(), (1999, 8, 22, 0, 0, 0));
    }

    #[test]
    fn negative_times_have_positive_subsec() {
        let t = WallTime::from_unix_nanos(-1);
        assert_eq!(t.unix_secs(), -1);
        assert_eq!(t.subsec_nanos(), 999_999_999);
    }

    #[test]
    fn floor_takes_latest_part() {
        let mut f = TimeFloor::new(WallTime::from_unix_secs(100));
        assert_eq!(
            f.floor(),
            (WallTime::from_unix_secs(100), FloorSource::BuildTime)
        );
        f.raise_last_synchronised(WallTime::from_unix_secs(200));
        f.raise_last_synchronised(WallTime::from_unix_secs(150));
        assert_eq!(
            f.floor(),
            (WallTime::from_unix_secs(200), FloorSource::LastSynchronised)
        );
        f.operator = Some(WallTime::from_unix_secs(300));
        assert_eq!(f.floor().1, FloorSource::OperatorFile);
    }

    #[test]
    fn offsets_display_with_units() {
        assert_eq!(Offset::from_nanos(12).to_string(), "+12 ns");
        assert_eq!(Offset::from_nanos(-3_402_000).to_string(), "-3.402 ms");
        assert_eq!(Offset::from_secs(1).to_string(), "+1.000 s");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 7200)),
            "3 days 2h"
        );
        assert_eq!(
            human_duration(Duration::from_secs(1_795_316_400)),
            "56.9 years"
        );
    }
}
