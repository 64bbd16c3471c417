//! Durations as operators write them in `gnomon.toml` — `"60s"`, `"5m"`,
//! `"1h30m"`, `"250ms"`, `"1.5s"`, `"7d"`, or a bare number of seconds — and the
//! same form written back, so a configuration survives a round trip.

use std::{fmt, time::Duration};

use serde::de;

use crate::time::human_duration;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Beyond this many significant decimals no unit can still land on a whole
/// nanosecond, and the arithmetic below stays far inside `u128`.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a duration: one or more `<number><unit>` parts (`"1h30m"`,
/// `"2m 30s"`), units `ms`, `s`, `m`, `h`, `d` (86 400 s), decimals allowed (`"1.5s"`,
/// `"0.25h"`); a lone number without unit means seconds (`"60"`).
/// Resolution is one nanosecond; negative, empty and unit-less compound
/// values are refused with a message that quotes the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(
            "empty duration: write a number with a unit, e.g. \"60s\", \"5m\" or \"250ms\"".into(),
        );
    }
    let fail = |why: &str| format!("invalid duration \"{text}\": {why}");
    if text.starts_with('-') {
        return Err(fail("negative durations are not allowed"));
    }

    let mut rest = text;
    let mut total: u128 = 0;
    let mut parts = 0_usize;
    while !rest.is_empty() {
        let (number, after) = split_while(rest, |c| c.is_ascii_digit() || c == '.');
        if number.is_empty() {
            return Err(fail(&format!("expected a number at \"{rest}\"")));
        }
        let (unit, after) = split_while(after.trim_start(), |c| {
            !(c.is_ascii_digit() || c == '.' || c.is_whitespace())
        });
        let after = after.trim_start();
        let unit_nanos = match unit {
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            "" if parts == 0 && after.is_empty() => NANOS_PER_SEC,
            "" => {
                return Err(fail(
                    "every number needs a unit (ms, s, m, h or d) when several are combined",
                ))
            }
            other => {
                return Err(fail(&format!(
                    "unknown unit `{other}` (use ms, s, m, h or d)"
                )))
            }
        };
        let nanos = part_nanos(number, unit_nanos).map_err(|why| fail(&why))?;
        total = total.checked_add(nanos).ok_or_else(|| fail("too large"))?;
        parts += 1;
        rest = after;
    }

    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| fail("too large"))?;
    let nanos = u32::try_from(total % NANOS_PER_SEC).map_err(|_| fail("too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// Writes a duration the way `parse_duration` reads it back exactly: the
/// operator's form from [`human_duration`] (`"45s"`, `"5m"`, `"1h30m"`)
/// whenever that form is exact, else milliseconds (`"1250ms"`) or, below
/// millisecond resolution, decimal seconds (`"1.0005s"`).
pub fn format_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    if d.subsec_nanos() == 0 && d.as_secs() >= DAY && d.as_secs() % DAY == 0 {
        return format!("{}d", d.as_secs() / DAY);
    }
    let human = human_duration(d);
    if parse_duration(&human) == Ok(d) {
        return human;
    }
    let subsec = d.subsec_nanos();
    if subsec % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        let frac = format!("{subsec:09}");
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    }
}

/// Splits `s` after the longest prefix whose characters satisfy `keep`.
fn split_while(s: &str, keep: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(_, c)| !keep(c))
        .map_or(s.len(), |(i, _)| i);
    (s.get(..end).unwrap_or(s), s.get(end..).unwrap_or(""))
}

/// Nanoseconds in `number` (digits with an optional decimal part) of a unit
/// that is `unit_nanos` long, exactly, in integers: "0.1s" is 100 ms, not
/// the nearest binary fraction of it.
fn part_nanos(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    if frac.contains('.') {
        return Err(format!("`{number}` is not a number"));
    }
    if number.ends_with('.') {
        return Err(format!(
            "`{number}`: a decimal point must be followed by digits"
        ));
    }
    let int_value: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "too large".to_owned())?
    };
    let frac = frac.trim_end_matches('0');
    if frac.len() > MAX_FRACTION_DIGITS {
        return Err("more decimal places than nanosecond resolution allows".into());
    }
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| "too large".to_owned())?
    };
    let scale = 10_u128
        .checked_pow(u32::try_from(frac.len()).unwrap_or(u32::MAX))
        .ok_or("more decimal places than nanosecond resolution allows")?;
    let frac_scaled = frac_value
        .checked_mul(unit_nanos)
        .ok_or("more decimal places than nanosecond resolution allows")?;
    if frac_scaled % scale != 0 {
        return Err("finer than a nanosecond".into());
    }
    int_value
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(frac_scaled / scale))
        .ok_or_else(|| "too large".into())
}

/// serde glue for `Duration` fields: reads strings in the form above and
/// TOML integers or floats as seconds; writes [`format_duration`] strings.
pub(crate) mod human {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(super::DurationVisitor)
    }
}

struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"60s\", \"5m\", \"250ms\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v).map(Duration::from_secs).map_err(|_| {
            E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if !v.is_finite() {
            return Err(E::custom(format!(
                "invalid duration {v}: not a finite number"
            )));
        }
        // f64's Display is the shortest decimal that reads back as the same
        // float and never uses an exponent, so `0.1` stays exactly 100 ms.
        parse_duration(&v.to_string()).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_good_durations() {
        let table: &[(&str, Duration)] = &[
            ("60s", ms(60_000)),
            ("5m", ms(300_000)),
            ("250ms", ms(250)),
            ("1h", ms(3_600_000)),
            ("1.5s", ms(1500)),
            ("0.1s", ms(100)),
            (".5s", ms(500)),
            ("0.25h", ms(900_000)),
            ("60", ms(60_000)),
            ("2.5", ms(2500)),
            ("0", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("1h30m", ms(5_400_000)),
            ("1h30m15s", ms(5_415_000)),
            ("2m 30s", ms(150_000)),
            ("1m1.5s", ms(61_500)),
            ("  45s  ", ms(45_000)),
            ("10 s", ms(10_000)),
            ("1.000000000s", ms(1000)),
            ("1.0005s", Duration::new(1, 500_000)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("0.5ms", Duration::from_micros(500)),
            ("7d", ms(7 * 86_400_000)),
            ("1.5d", ms(36 * 3_600_000)),
            ("1d12h", ms(36 * 3_600_000)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(*want), "parsing {text:?}");
        }
    }

    #[test]
    fn refuses_bad_durations_with_a_reason() {
        let table: &[(&str, &str)] = &[
            ("", "empty duration"),
            ("   ", "empty duration"),
            ("-5s", "negative"),
            ("-0.5", "negative"),
            ("5x", "unknown unit `x`"),
            ("5 sec", "unknown unit `sec`"),
            ("5us", "unknown unit `us`"),
            ("s", "expected a number"),
            ("1h30", "needs a unit"),
            ("5 5", "needs a unit"),
            ("1.2.3s", "not a number"),
            ("5.s", "decimal point"),
            ("0.0000000001s", "finer than a nanosecond"),
            ("0.1234567890123456789s", "decimal places"),
            ("99999999999999999999999h", "too large"),
            ("18446744073709551616s", "too large"),
            ("+5s", "expected a number"),
        ];
        for (text, reason) in table {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.contains(reason),
                "{text:?} gave {err:?}, wanted {reason:?}"
            );
        }
        let err = parse_duration("5x").unwrap_err();
        assert!(err.contains("\"5x\""), "message quotes the input: {err}");
    }

    #[test]
    fn formats_in_the_operators_form_when_exact() {
        assert_eq!(format_duration(ms(60_000)), "1m");
        assert_eq!(format_duration(ms(300_000)), "5m");
        assert_eq!(format_duration(ms(2500)), "2.5s");
        assert_eq!(format_duration(ms(250)), "250ms");
        assert_eq!(format_duration(ms(5_400_000)), "1h30m");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        // human_duration would drop the 5 ms and the half second here.
        assert_eq!(format_duration(ms(1255)), "1255ms");
        assert_eq!(format_duration(ms(61_500)), "61500ms");
        assert_eq!(format_duration(Duration::new(1, 500_000)), "1.0005s");
        assert_eq!(format_duration(ms(7 * 86_400_000)), "7d");
        assert_eq!(parse_duration("7d"), Ok(ms(7 * 86_400_000)));
        // Not whole days: the hours form, which reads back exactly.
        let d = ms(36 * 3_600_000);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn toml_numbers_are_seconds() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[serde(with = "human")]
            d: Duration,
        }
        let d = |text: &str| toml::from_str::<T>(text).map(|t| t.d);
        assert_eq!(d("d = 60").unwrap(), ms(60_000));
        assert_eq!(d("d = 1.5").unwrap(), ms(1500));
        assert_eq!(d("d = 0.1").unwrap(), ms(100));
        assert_eq!(d("d = \"250ms\"").unwrap(), ms(250));
        assert!(d("d = -1").unwrap_err().message().contains("negative"));
        assert!(d("d = -1.5").unwrap_err().message().contains("negative"));
        assert!(d("d = nan").unwrap_err().message().contains("finite"));
        assert!(d("d = inf").unwrap_err().message().contains("finite"));
        assert!(d("d = true")
            .unwrap_err()
            .message()
            .contains("a duration such as"));
    }

    proptest! {
        #[test]
        fn format_then_parse_is_exact(secs in 0_u64..=u64::MAX, nanos in 0_u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn whole_milliseconds_round_trip(millis in 0_u64..=10_000_000_000_000) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            // human_duration itself reads back as a truncation of at most
            // its own precision (exact below 1 s, 100 ms below 1 m, 1 s above)
            // up to two days; beyond that it speaks in days and years, for
            // people, and format_duration does not use it.
            if millis >= 2 * 86_400_000 {
                return Ok(());
            }
            let back = parse_duration(&human_duration(d)).unwrap();
            prop_assert!(back <= d);
            let precision = if millis < 1000 { 0 } else if millis < 60_000 { 99 } else { 999 };
            prop_assert!(d - back <= Duration::from_millis(precision), "{:?} -> {:?}", d, back);
            if millis < 1000 || millis % 1000 == 0 {
                prop_assert_eq!(back, d);
            }
        }
    }
}
