//! One checked NMEA sentence into the few facts gnomon needs (time of day,
//! date, fix status, satellites used, HDOP). The `nmea` crate is tried
//! first; where it rejects a sentence gpsd accepts, a tolerant field parser
//! for RMC/GGA/GSA/GNS/ZDA/GLL takes over.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use nmea::{
    sentences::{gsa::GsaMode2, rmc::RmcStatusOfFix, FixType},
    ParseResult,
};
use serde::{Deserialize, Serialize};

/// Which parser turns a sentence into facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParseStrategy {
    /// Only the `nmea` crate; what it rejects is dropped.
    NmeaCrate,
    /// Only gnomon's tolerant field parser.
    Tolerant,
    /// The `nmea` crate, and the tolerant parser where it fails.
    #[default]
    NmeaThenTolerant,
}

/// The sentence types that carry something an epoch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SentenceKind {
    Rmc,
    Gga,
    Gsa,
    Gns,
    Zda,
    Gll,
}

/// UTC time of day as the receiver wrote it; second 60 is a leap second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
}

impl TimeOfDay {
    /// Milliseconds since midnight (a leap second counts past 86 400 000).
    pub fn millis_of_day(self) -> u32 {
        (u32::from(self.hour) * 3600 + u32::from(self.minute) * 60 + u32::from(self.second)) * 1000
            + u32::from(self.millis)
    }
}

/// A year as the sentence carries it: RMC has two digits, ZDA four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum YearField {
    TwoDigit(u8),
    Full(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateField {
    pub year: YearField,
    pub month: u8,
    pub day: u8,
}

/// What one sentence says about its epoch. Fields a sentence type does not
/// carry stay `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceFacts {
    pub kind: SentenceKind,
    pub time: Option<TimeOfDay>,
    pub date: Option<DateField>,
    pub rmc_valid: Option<bool>,
    pub gga_quality: Option<u8>,
    /// GGA or GNS altitude present: gpsd calls such a fix 3D.
    pub altitude: bool,
    /// GSA fix mode 1/2/3.
    pub gsa_mode: Option<u8>,
    /// GNS mode indicators: `Some(false)` when every system says `N`.
    pub gns_fix: Option<bool>,
    /// GLL status `A` (true) or `V` (false).
    pub gll_valid: Option<bool>,
    pub sats_used: Option<u8>,
    pub hdop: Option<f32>,
}

impl SentenceFacts {
    fn empty(kind: SentenceKind) -> Self {
        Self {
            kind,
            time: None,
            date: None,
            rmc_valid: None,
            gga_quality: None,
            altitude: false,
            gsa_mode: None,
            gns_fix: None,
            gll_valid: None,
            sats_used: None,
            hdop: None,
        }
    }
}

/// The outcome of parsing one sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Understood by the `nmea` crate.
    ByNmeaCrate(SentenceFacts),
    /// Understood only by the tolerant parser.
    ByTolerant(SentenceFacts),
    /// A sentence type gnomon does not need (GSV, VTG, proprietary, ...).
    Ignored,
    /// A needed type that neither parser could read.
    Rejected(SentenceKind),
}

/// The sentence type from the address field (`GPRMC` → RMC, any talker).
pub fn sentence_kind(sentence: &str) -> Option<SentenceKind> {
    let body = sentence.strip_prefix('$')?;
    let address = body.split(',').next()?;
    // Proprietary sentences (`$P...`) are never one of ours.
    if address.len() != 5 || address.starts_with('P') {
        return None;
    }
    match address.get(2..)? {
        "RMC" => Some(SentenceKind::Rmc),
        "GGA" => Some(SentenceKind::Gga),
        "GSA" => Some(SentenceKind::Gsa),
        "GNS" => Some(SentenceKind::Gns),
        "ZDA" => Some(SentenceKind::Zda),
        "GLL" => Some(SentenceKind::Gll),
        _ => None,
    }
}

/// Parses one framed sentence (`$…*hh`, checksum already checked).
pub fn parse_sentence(sentence: &str, strategy: ParseStrategy) -> Parsed {
    let Some(kind) = sentence_kind(sentence) else {
        return Parsed::Ignored;
    };
    let by_crate = || from_nmea_crate(sentence, kind).map(Parsed::ByNmeaCrate);
    let by_tolerant = || tolerant(sentence, kind).map(Parsed::ByTolerant);
    let parsed = match strategy {
        ParseStrategy::NmeaCrate => by_crate(),
        ParseStrategy::Tolerant => by_tolerant(),
        ParseStrategy::NmeaThenTolerant => by_crate().or_else(by_tolerant),
    };
    parsed.unwrap_or(Parsed::Rejected(kind))
}

fn time_from_chrono(t: NaiveTime) -> Option<TimeOfDay> {
    // chrono folds a leap second into nanoseconds >= 1e9.
    let nanos = t.nanosecond();
    let (second, nanos) = if nanos >= 1_000_000_000 {
        (60, nanos - 1_000_000_000)
    } else {
        (t.second(), nanos)
    };
    Some(TimeOfDay {
        hour: u8::try_from(t.hour()).ok()?,
        minute: u8::try_from(t.minute()).ok()?,
        second: u8::try_from(second).ok()?,
        // Truncated like the decimal digits themselves; the crate rounds
        // to whole nanoseconds, so `.799` is exactly 799 ms here.
        millis: u16::try_from(nanos / 1_000_000).ok()?,
    })
}

fn date_from_chrono(d: NaiveDate) -> Option<DateField> {
    // The crate already guessed a century for RMC's two digits; gnomon
    // redoes that against the time floor, so only the digits are kept.
    Some(DateField {
        year: YearField::TwoDigit(u8::try_from(d.year().rem_euclid(100)).ok()?),
        month: u8::try_from(d.month()).ok()?,
        day: u8::try_from(d.day()).ok()?,
    })
}

fn quality_from_fix_type(f: FixType) -> u8 {
    match f {
        FixType::Invalid => 0,
        FixType::Gps => 1,
        FixType::DGps => 2,
        FixType::Pps => 3,
        FixType::Rtk => 4,
        FixType::FloatRtk => 5,
        FixType::Estimated => 6,
        FixType::Manual => 7,
        FixType::Simulation => 8,
    }
}

fn sats_u8<T: TryInto<u8>>(n: T) -> u8 {
    n.try_into().unwrap_or(u8::MAX)
}

fn from_nmea_crate(sentence: &str, kind: SentenceKind) -> Option<SentenceFacts> {
    let parsed = nmea::parse_str(sentence).ok()?;
    let mut f = SentenceFacts::empty(kind);
    match (kind, parsed) {
        (SentenceKind::Rmc, ParseResult::RMC(d)) => {
            f.time = d.fix_time.and_then(time_from_chrono);
            f.date = d.fix_date.and_then(date_from_chrono);
            f.rmc_valid = Some(!matches!(d.status_of_fix, RmcStatusOfFix::Invalid));
        }
        (SentenceKind::Gga, ParseResult::GGA(d)) => {
            f.time = d.fix_time.and_then(time_from_chrono);
            f.gga_quality = d.fix_type.map(quality_from_fix_type);
            f.sats_used = d.fix_satellites.map(sats_u8);
            f.hdop = d.hdop;
            f.altitude = d.altitude.is_some();
        }
        (SentenceKind::Gsa, ParseResult::GSA(d)) => {
            f.gsa_mode = Some(match d.mode2 {
                GsaMode2::NoFix => 1,
                GsaMode2::Fix2D => 2,
                GsaMode2::Fix3D => 3,
            });
            f.sats_used = Some(sats_u8(d.fix_sats_prn.len()));
            f.hdop = d.hdop;
        }
        (SentenceKind::Gns, ParseResult::GNS(d)) => {
            f.time = d.fix_time.and_then(time_from_chrono);
            f.gns_fix = Some(FixType::from(d.faa_modes).is_valid());
            f.sats_used = Some(sats_u8(d.nsattelites));
            f.hdop = d.hdop;
            f.altitude = d.alt.is_some();
        }
        (SentenceKind::Zda, ParseResult::ZDA(d)) => {
            f.time = d.utc_time.and_then(time_from_chrono);
            f.date = match (d.year, d.month, d.day) {
                (Some(y), Some(m), Some(day)) => Some(DateField {
                    year: YearField::Full(i32::from(y)),
                    month: m,
                    day,
                }),
                _ => None,
            };
        }
        (SentenceKind::Gll, ParseResult::GLL(d)) => {
            f.time = d.fix_time.and_then(time_from_chrono);
            f.gll_valid = Some(d.valid);
        }
        _ => return None,
    }
    Some(f)
}

/// The data fields of a sentence: between the address and the `*`.
fn fields(sentence: &str) -> Vec<&str> {
    let body = sentence.strip_prefix('$').unwrap_or(sentence);
    let body = body.rsplit_once('*').map_or(body, |(b, _)| b);
    body.split(',').skip(1).collect()
}

fn field<'a>(fields: &[&'a str], i: usize) -> &'a str {
    fields.get(i).map_or("", |s| s.trim())
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `hhmmss[.fff…]` (gpsd also accepts more or fewer decimals).
pub(crate) fn parse_time_of_day(s: &str) -> Option<TimeOfDay> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != 6 {
        return None;
    }
    let hour = digits(whole.get(0..2)?)?;
    let minute = digits(whole.get(2..4)?)?;
    let second = digits(whole.get(4..6)?)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Truncate to milliseconds: pad or cut to three digits.
    let millis = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    Some(TimeOfDay {
        hour: u8::try_from(hour).ok()?,
        minute: u8::try_from(minute).ok()?,
        second: u8::try_from(second).ok()?,
        millis,
    })
}

fn parse_u8(s: &str) -> Option<u8> {
    digits(s).map(sats_u8)
}

fn parse_f32(s: &str) -> Option<f32> {
    if s.is_empty() {
        return None;
    }
    s.parse::<f32>().ok().filter(|v| v.is_finite())
}

fn tolerant(sentence: &str, kind: SentenceKind) -> Option<SentenceFacts> {
    let fs = fields(sentence);
    let mut f = SentenceFacts::empty(kind);
    match kind {
        SentenceKind::Rmc => {
            f.time = parse_time_of_day(field(&fs, 0));
            f.rmc_valid = match field(&fs, 1) {
                "A" | "D" => Some(true),
                "V" => Some(false),
                _ => None,
            };
            let d = field(&fs, 8);
            f.date = match d.len() {
                6 | 8 => {
                    let day = u8::try_from(digits(d.get(0..2)?)?).ok()?;
                    let month = u8::try_from(digits(d.get(2..4)?)?).ok()?;
                    let y = digits(d.get(4..)?)?;
                    let year = if d.len() == 6 {
                        YearField::TwoDigit(u8::try_from(y).ok()?)
                    } else {
                        YearField::Full(i32::try_from(y).ok()?)
                    };
                    Some(DateField { year, month, day })
                }
                _ => None,
            };
        }
        SentenceKind::Gga => {
            f.time = parse_time_of_day(field(&fs, 0));
            f.gga_quality = parse_u8(field(&fs, 5));
            f.sats_used = parse_u8(field(&fs, 6));
            f.hdop = parse_f32(field(&fs, 7));
            f.altitude = !field(&fs, 8).is_empty();
        }
        SentenceKind::Gsa => {
            f.gsa_mode = parse_u8(field(&fs, 1)).filter(|m| (1..=3).contains(m));
            // Standard layout: 12 PRN slots then PDOP, HDOP, VDOP (and an
            // NMEA 4.1 system id). Short sentences: the DOPs are the last three.
            let (prns, hdop) = if fs.len() >= 17 {
                (fs.get(2..14).unwrap_or(&[]), field(&fs, 15))
            } else {
                let n = fs.len();
                let prn_end = n.saturating_sub(3).max(2);
                (
                    fs.get(2..prn_end).unwrap_or(&[]),
                    field(&fs, n.saturating_sub(2)),
                )
            };
            f.sats_used = Some(sats_u8(
                prns.iter().filter(|p| !p.trim().is_empty()).count(),
            ));
            f.hdop = parse_f32(hdop);
        }
        SentenceKind::Gns => {
            f.time = parse_time_of_day(field(&fs, 0));
            let modes = field(&fs, 5);
            f.gns_fix = if modes.is_empty() {
                None
            } else {
                Some(modes.bytes().any(|b| b != b'N'))
            };
            f.sats_used = parse_u8(field(&fs, 6));
            f.hdop = parse_f32(field(&fs, 7));
            f.altitude = !field(&fs, 8).is_empty();
        }
        SentenceKind::Zda => {
            f.time = parse_time_of_day(field(&fs, 0));
            let day = parse_u8(field(&fs, 1));
            let month = parse_u8(field(&fs, 2));
            let y = field(&fs, 3);
            let year = match (y.len(), digits(y)) {
                (4, Some(y)) => i32::try_from(y).ok().map(YearField::Full),
                (2, Some(y)) => u8::try_from(y).ok().map(YearField::TwoDigit),
                _ => None,
            };
            f.date = match (year, month, day) {
                (Some(year), Some(month), Some(day)) => Some(DateField { year, month, day }),
                _ => None,
            };
        }
        SentenceKind::Gll => {
            f.time = parse_time_of_day(field(&fs, 4));
            f.gll_valid = match field(&fs, 5) {
                "A" => Some(true),
                "V" => Some(false),
                _ => None,
            };
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_for_any_talker() {
        for t in ["GP", "GN", "GL", "GA", "GB", "BD", "GQ"] {
            assert_eq!(
                sentence_kind(&format!("${t}RMC,1*00")),
                Some(SentenceKind::Rmc)
            );
        }
        assert_eq!(sentence_kind("$PGRMZ,1*00"), None);
        assert_eq!(sentence_kind("$GPGSV,1*00"), None);
    }

    #[test]
    fn time_of_day_fractions_truncate_to_millis() {
        let t = parse_time_of_day("074150.7999").unwrap();
        assert_eq!((t.hour, t.minute, t.second, t.millis), (7, 41, 50, 799));
        assert_eq!(parse_time_of_day("235960").unwrap().second, 60);
        assert!(parse_time_of_day("246000").is_none());
        assert!(parse_time_of_day("12345").is_none());
        assert!(parse_time_of_day("1234a6").is_none());
    }

    #[test]
    fn tolerant_reads_short_gsa() {
        let f = tolerant("$GPGSA,A,3,01,02,03,2.0,1.1,1.5*00", SentenceKind::Gsa).unwrap();
        assert_eq!(f.gsa_mode, Some(3));
        assert_eq!(f.sats_used, Some(3));
        assert_eq!(f.hdop, Some(1.1));
    }
}
