//! Human output of gnomonctl: one renderer per report, and the shared
//! vocabulary they use — colour, compact chronyc-style offsets, ages,
//! RFC 3339 times. Renderers are pure: a report in, text out.

use std::time::Duration;

use gnomon_core::{
    engine::EngineState,
    time::{human_duration, Offset, WallTime},
};

pub(crate) mod certs;
pub(crate) mod check;
pub(crate) mod gps;
pub(crate) mod history;
pub(crate) mod sources;
pub(crate) mod status;

/// What a piece of text means, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paint {
    Plain,
    Heading,
    Good,
    Warn,
    Bad,
    /// Operator-made conditions (a freeze, a forced fallback mode).
    Note,
}

/// Whether output is coloured. Chosen once per run from `--color`, the
/// terminal and `NO_COLOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    colour: bool,
}

/// `--color`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colour when standard output is a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

impl Style {
    #[cfg(test)]
    pub(crate) const fn plain() -> Self {
        Self { colour: false }
    }

    #[cfg(test)]
    pub(crate) const fn coloured() -> Self {
        Self { colour: true }
    }

    /// `--color always` wins over NO_COLOR (an explicit request beats the
    /// environment, as no-color.org asks); `auto` colours a terminal only,
    /// and only when NO_COLOR is unset or empty.
    /// `no_color`: NO_COLOR is set to something other than the empty string.
    pub(crate) fn choose(choice: ColorChoice, stdout_is_tty: bool, no_color: bool) -> Self {
        let colour = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout_is_tty && !no_color,
        };
        Self { colour }
    }

    /// Whether ANSI colours are written.
    pub(crate) fn is_coloured(self) -> bool {
        self.colour
    }

    pub(crate) fn paint(self, text: &str, paint: Paint) -> String {
        let code = match paint {
            _ if !self.colour || text.is_empty() => return text.to_owned(),
            Paint::Plain => return text.to_owned(),
            Paint::Heading => "1",
            Paint::Good => "32",
            Paint::Warn => "33",
            Paint::Bad => "31",
            Paint::Note => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The colour of an engine state: green when the primary serves, yellow
/// while something is being worked around, red with nothing usable.
pub(crate) fn state_paint(state: EngineState) -> Paint {
    match state {
        EngineState::Primary => Paint::Good,
        EngineState::Starting
        | EngineState::Acquiring
        | EngineState::Degraded
        | EngineState::Fallback
        | EngineState::Recovering => Paint::Warn,
        EngineState::NoReference => Paint::Bad,
        EngineState::Frozen => Paint::Note,
    }
}

/// A signed offset in chronyc's compact form: a unit that keeps the number
/// under 1000, one decimal below 10 (`+12ns`, `-3.2ms`, `+480us`, `+1.5s`,
/// `-56y`).
pub(crate) fn offset(o: Offset) -> String {
    let sign = if o.as_nanos() < 0 { '-' } else { '+' };
    format!("{sign}{}", compact(o.as_nanos().unsigned_abs()))
}

/// An unsigned amount of time (an error bound, a jitter) in the same form.
pub(crate) fn magnitude(d: Duration) -> String {
    compact(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn compact(nanos: u64) -> String {
    if nanos < 1000 {
        return format!("{nanos}ns");
    }
    // Rounded to tenths and to wholes of a unit, in integers so that 999.6
    // of a unit moves up to the next unit instead of printing "1000".
    let div_round = |n: u64, d: u64| n / d + u64::from(n % d >= d.div_ceil(2));
    for (unit, name) in [(1_000u64, "us"), (1_000_000, "ms")] {
        let tenths = div_round(nanos, unit / 10);
        if tenths < 100 {
            return format!("{}.{}{name}", tenths / 10, tenths % 10);
        }
        let whole = div_round(nanos, unit);
        if whole < 1000 {
            return format!("{whole}{name}");
        }
    }
    let tenths = div_round(nanos, 100_000_000);
    if tenths < 100 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = div_round(nanos, 1_000_000_000);
    const DAY: u64 = 86_400;
    if secs < 100_000 {
        format!("{secs}s")
    } else if secs < 1000 * DAY {
        format!("{}d", div_round(secs, DAY))
    } else {
        // 365.2425 days, in seconds.
        format!("{}y", div_round(secs, 31_556_952))
    }
}

/// chronyc's `LastRx`: seconds up to 20 minutes, then minutes, hours,
/// days and years; `-` when there is no sample.
pub(crate) fn last_rx(ago: Option<Duration>) -> String {
    let Some(ago) = ago else {
        return "-".to_owned();
    };
    let s = ago.as_secs();
    if s < 1200 {
        format!("{s}")
    } else if s < 36_000 {
        format!("{}m", s / 60)
    } else if s < 345_600 {
        format!("{}h", s / 3600)
    } else if s / 86_400 > 999 {
        format!("{}y", s / 86_400 / 365)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// `3.2s ago`, or `never`.
pub(crate) fn ago(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{} ago", human_duration(d)),
    )
}

/// Times are always shown in UTC, RFC 3339, to the millisecond.
pub(crate) fn time(t: WallTime) -> String {
    t.rfc3339_millis()
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Key/value lines in chronyc `tracking`'s layout: `Key      : value`.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    lines: Vec<(String, String)>,
}

impl Fields {
    pub(crate) fn add(&mut self, key: &str, value: impl Into<String>) {
        self.lines.push((key.to_owned(), value.into()));
    }

    pub(crate) fn render(&self) -> String {
        let w = self
            .lines
            .iter()
            .map(|(k, _)| crate::table::width(k))
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.lines {
            let pad = " ".repeat(w.saturating_sub(crate::table::width(k)));
            out.push_str(format!("{k}{pad} : {v}").trim_end());
            out.push('\n');
        }
        out
    }
}

/// The text without colour escapes, for tests comparing layouts.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_compact_with_units_like_chronyc() {
        let cases = [
            (0, "+0ns"),
            (12, "+12ns"),
            (-999, "-999ns"),
            (1_000, "+1.0us"),
            (480_000, "+480us"),
            (999_600, "+1.0ms"),
            (-3_200_000, "-3.2ms"),
            (-3_249_000, "-3.2ms"),
            (45_000_000, "+45ms"),
            (1_500_000_000, "+1.5s"),
            (-42_000_000_000, "-42s"),
            (86_400 * 3 * 1_000_000_000, "+3d"),
        ];
        for (nanos, text) in cases {
            assert_eq!(offset(Offset::from_nanos(nanos)), text, "{nanos} ns");
        }
        // A clock of the 1970 kind against a 2026 floor.
        assert_eq!(offset(Offset::from_secs(-1_795_316_400)), "-57y");
        assert_eq!(magnitude(Duration::from_micros(1200)), "1.2ms");
    }

    #[test]
    fn last_rx_like_chronyc() {
        assert_eq!(last_rx(None), "-");
        assert_eq!(last_rx(Some(Duration::from_secs(11))), "11");
        assert_eq!(last_rx(Some(Duration::from_secs(1200))), "20m");
        assert_eq!(last_rx(Some(Duration::from_secs(40_000))), "11h");
        assert_eq!(last_rx(Some(Duration::from_secs(5 * 86_400))), "5d");
        assert_eq!(last_rx(Some(Duration::from_secs(2000 * 86_400))), "5y");
    }

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        use ColorChoice::*;
        assert!(!Style::choose(Auto, false, false).colour);
        assert!(Style::choose(Auto, true, false).colour);
        assert!(!Style::choose(Auto, true, true).colour);
        assert!(Style::choose(Always, false, true).colour);
        assert!(!Style::choose(Never, true, false).colour);
        assert_eq!(Style::plain().paint("x", Paint::Bad), "x");
        assert_eq!(Style::coloured().paint("x", Paint::Bad), "\x1b[31mx\x1b[0m");
    }

    #[test]
    fn fields_align_their_colons() {
        let mut f = Fields::default();
        f.add("State", "primary");
        f.add("Fallback mode", "auto");
        assert_eq!(
            f.render(),
            "State         : primary\nFallback mode : auto\n"
        );
    }
}
