//! Sentences of the same UTC time of day (RMC/GGA/GSA/GNS/ZDA, any talker)
//! merged into one [`GpsEpoch`]. Dates come from RMC or ZDA and carry over
//! to later time-only sentences; two-digit years are placed against the
//! time floor; a date that looks like a GPS week rollover is reported as
//! is and only counted here, because judging it is the engine's job.

use std::time::Duration;

use gnomon_core::{
    gps::{FixMode, GpsEpoch},
    time::{MonoTime, WallTime, GPS_ROLLOVER},
};
use serde::{Deserialize, Serialize};

use crate::sentence::{
    parse_sentence, DateField, ParseStrategy, Parsed, SentenceFacts, TimeOfDay, YearField,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Counters of what the assembler did with the sentences it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssemblerStats {
    /// Sentences the `nmea` crate understood.
    pub parsed_by_nmea: u64,
    /// Sentences only the tolerant parser understood.
    pub parsed_by_tolerant: u64,
    /// RMC/GGA/GSA/GNS/ZDA sentences neither parser understood.
    pub rejected: u64,
    /// Other sentence types, skipped.
    pub ignored: u64,
    /// Epochs emitted.
    pub epochs: u64,
    /// Epochs emitted without a UTC time (no date seen yet, bad date).
    pub epochs_without_utc: u64,
    /// Two-digit years placed in a century against the floor.
    pub two_digit_years: u64,
    /// Epochs whose time is before the floor.
    pub before_floor: u64,
    /// Of those, epochs that land on or after the floor (and less than one
    /// era after it) when 1024 or 2048 weeks are added: the signature of a
    /// receiver with a week-rollover bug. Reported as is, never corrected.
    pub rollover_suspects: u64,
}

/// A calendar date already placed in its century.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Date {
    year: i32,
    month: u32,
    day: u32,
}

#[derive(Debug, Clone)]
struct Pending {
    time: Option<TimeOfDay>,
    /// Date carried by a sentence of this epoch (RMC or ZDA).
    date: Option<Date>,
    rmc_valid: Option<bool>,
    gga_quality: Option<u8>,
    altitude: bool,
    gsa_mode: Option<u8>,
    gns_fix: Option<bool>,
    gll_valid: Option<bool>,
    gga_sats: Option<u8>,
    gsa_sats: Option<u8>,
    gns_sats: Option<u8>,
    gga_hdop: Option<f32>,
    other_hdop: Option<f32>,
    received_wall: WallTime,
    received_mono: MonoTime,
}

impl Pending {
    fn new(time: Option<TimeOfDay>, received_wall: WallTime, received_mono: MonoTime) -> Self {
        Self {
            time,
            date: None,
            rmc_valid: None,
            gga_quality: None,
            altitude: false,
            gsa_mode: None,
            gns_fix: None,
            gll_valid: None,
            gga_sats: None,
            gsa_sats: None,
            gns_sats: None,
            gga_hdop: None,
            other_hdop: None,
            received_wall,
            received_mono,
        }
    }

    fn merge(&mut self, f: &SentenceFacts, date: Option<Date>) {
        if date.is_some() {
            self.date = date;
        }
        self.rmc_valid = f.rmc_valid.or(self.rmc_valid);
        self.gga_quality = f.gga_quality.or(self.gga_quality);
        self.altitude |= f.altitude;
        self.gll_valid = f.gll_valid.or(self.gll_valid);
        self.gsa_mode = match (self.gsa_mode, f.gsa_mode) {
            // Several GSAs (one per constellation, GN talker): the best wins.
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.gns_fix = match (self.gns_fix, f.gns_fix) {
            (Some(a), Some(b)) => Some(a || b),
            (a, b) => a.or(b),
        };
        match f.kind {
            crate::sentence::SentenceKind::Gga => {
                self.gga_sats = f.sats_used.or(self.gga_sats);
                self.gga_hdop = f.hdop.or(self.gga_hdop);
            }
            crate::sentence::SentenceKind::Gsa => {
                // One GSA per constellation: the satellites add up.
                if let Some(n) = f.sats_used {
                    self.gsa_sats = Some(self.gsa_sats.unwrap_or(0).saturating_add(n));
                }
                self.other_hdop = self.other_hdop.or(f.hdop);
            }
            crate::sentence::SentenceKind::Gns => {
                self.gns_sats = f.sats_used.or(self.gns_sats);
                self.other_hdop = f.hdop.or(self.other_hdop);
            }
            _ => {}
        }
    }

    /// Satellites used in the solution: GGA's count, else GSA's, else GNS's.
    fn sats_used(&self) -> Option<u8> {
        self.gga_sats.or(self.gsa_sats).or(self.gns_sats)
    }

    /// gpsd's reading, made conservative: any sentence of the epoch that
    /// says "no fix" wins over the others, and a solution from no
    /// satellite is none (some receivers send GGA quality 1 with 0
    /// satellites used while they coast or before their first fix; gpsd
    /// reports no fix for it).
    fn fix(&self) -> FixMode {
        let denied = self.rmc_valid == Some(false)
            || self.gga_quality == Some(0)
            || self.sats_used() == Some(0)
            || self.gsa_mode == Some(1)
            || self.gns_fix == Some(false)
            || self.gll_valid == Some(false);
        if denied {
            return FixMode::NoFix;
        }
        match self.gsa_mode {
            Some(3) => return FixMode::Fix3D,
            Some(2) => return FixMode::Fix2D,
            _ => {}
        }
        let positioned = self.gga_quality.is_some_and(|q| q >= 1) || self.gns_fix == Some(true);
        if positioned {
            return if self.altitude {
                FixMode::Fix3D
            } else {
                FixMode::Fix2D
            };
        }
        if self.rmc_valid == Some(true) || self.gll_valid == Some(true) {
            FixMode::Fix2D
        } else {
            FixMode::NoFix
        }
    }
}

/// Merges sentences into epochs; one per distinct time of day.
#[derive(Debug, Clone)]
pub struct EpochAssembler {
    floor: WallTime,
    strategy: ParseStrategy,
    current: Option<Pending>,
    /// The last date seen (RMC/ZDA) and the time of day it came with.
    last_date: Option<(Date, Option<TimeOfDay>)>,
    stats: AssemblerStats,
}

impl EpochAssembler {
    pub fn new(floor: WallTime) -> Self {
        Self::with_strategy(floor, ParseStrategy::default())
    }

    pub fn with_strategy(floor: WallTime, strategy: ParseStrategy) -> Self {
        Self {
            floor,
            strategy,
            current: None,
            last_date: None,
            stats: AssemblerStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    pub fn floor(&self) -> WallTime {
        self.floor
    }

    /// The floor may rise while the daemon runs (last synchronised).
    pub fn set_floor(&mut self, floor: WallTime) {
        self.floor = floor;
    }

    /// Takes one checked sentence; returns the previous epoch when this
    /// sentence opens a new one.
    pub fn push_sentence(
        &mut self,
        sentence: &str,
        received_wall: WallTime,
        received_mono: MonoTime,
    ) -> Option<GpsEpoch> {
        let facts = match parse_sentence(sentence, self.strategy) {
            Parsed::ByNmeaCrate(f) => {
                self.stats.parsed_by_nmea += 1;
                f
            }
            Parsed::ByTolerant(f) => {
                self.stats.parsed_by_tolerant += 1;
                f
            }
            Parsed::Ignored => {
                self.stats.ignored += 1;
                return None;
            }
            Parsed::Rejected(_) => {
                self.stats.rejected += 1;
                return None;
            }
        };
        self.push_facts(&facts, received_wall, received_mono)
    }

    /// Like [`push_sentence`](Self::push_sentence) for facts already parsed.
    pub fn push_facts(
        &mut self,
        facts: &SentenceFacts,
        received_wall: WallTime,
        received_mono: MonoTime,
    ) -> Option<GpsEpoch> {
        let date = facts.date.and_then(|d| self.resolve_date(d));
        if let Some(d) = date {
            self.last_date = Some((d, facts.time));
        }
        let mut emitted = None;
        let new_epoch = match (&self.current, facts.time) {
            (None, _) => true,
            // A timed sentence with another time of day opens a new epoch;
            // time-less ones (GSA) join the open one.
            (Some(cur), Some(t)) => cur.time != Some(t),
            (Some(_), None) => false,
        };
        if new_epoch {
            if let Some(done) = self.current.take() {
                emitted = Some(self.finish_epoch(&done));
            }
            self.current = Some(Pending::new(facts.time, received_wall, received_mono));
        }
        if let Some(cur) = self.current.as_mut() {
            if cur.time.is_none() {
                cur.time = facts.time;
            }
            cur.merge(facts, date);
        }
        emitted
    }

    /// End of input: the open epoch, if any.
    pub fn flush(&mut self) -> Option<GpsEpoch> {
        let done = self.current.take()?;
        Some(self.finish_epoch(&done))
    }

    fn resolve_date(&mut self, d: DateField) -> Option<Date> {
        let (month, day) = (u32::from(d.month), u32::from(d.day));
        let year = match d.year {
            YearField::Full(y) => y,
            YearField::TwoDigit(yy) => {
                self.stats.two_digit_years += 1;
                self.place_two_digit_year(yy, month, day)?
            }
        };
        WallTime::from_utc(year, month, day, 0, 0, 0, 0)?;
        Some(Date { year, month, day })
    }

    /// The century that puts the date closest to the floor; on a tie the
    /// one on or after the floor. A rolled-over receiver's date (19.6 or
    /// 39.3 years back) therefore stays in the past, where the engine sees it.
    fn place_two_digit_year(&self, yy: u8, month: u32, day: u32) -> Option<i32> {
        let floor_secs = self.floor.unix_secs();
        let (floor_year, ..) = self.floor.to_utc();
        let century = floor_year.div_euclid(100) * 100;
        [century - 100, century, century + 100]
            .into_iter()
            .map(|c| c + i32::from(yy))
            .filter_map(|y| {
                let t = WallTime::from_utc(y, month, day, 0, 0, 0, 0)?.unix_secs();
                let distance = (t - floor_secs).unsigned_abs();
                Some((distance, t < floor_secs, y))
            })
            .min()
            .map(|(_, _, y)| y)
    }

    fn finish_epoch(&mut self, p: &Pending) -> GpsEpoch {
        let utc = p.time.and_then(|t| self.utc_of(p.date, t));
        self.stats.epochs += 1;
        match utc {
            None => self.stats.epochs_without_utc += 1,
            Some(t) if t < self.floor => {
                self.stats.before_floor += 1;
                if looks_like_rollover(t, self.floor) {
                    self.stats.rollover_suspects += 1;
                }
            }
            Some(_) => {}
        }
        let fix = p.fix();
        GpsEpoch {
            utc,
            fix,
            rmc_valid: p.rmc_valid,
            gga_quality: p.gga_quality,
            sats_used: p.sats_used(),
            hdop: p.gga_hdop.or(p.other_hdop),
            received_wall: p.received_wall,
            received_mono: p.received_mono,
        }
    }

    /// The epoch's own date, else the last one seen, moved to the next day
    /// when the time of day wrapped past midnight since that date came.
    fn utc_of(&self, own: Option<Date>, t: TimeOfDay) -> Option<WallTime> {
        let (date, next_day) = match own {
            Some(d) => (d, false),
            None => {
                let (d, dated_at) = self.last_date?;
                let wrapped = dated_at.is_some_and(|at| {
                    at.millis_of_day() > t.millis_of_day().saturating_add(12 * 3_600_000)
                });
                (d, wrapped)
            }
        };
        let base = WallTime::from_utc(
            date.year,
            date.month,
            date.day,
            u32::from(t.hour),
            u32::from(t.minute),
            u32::from(t.second),
            u32::from(t.millis) * 1_000_000,
        )?;
        Some(if next_day { base.plus(DAY) } else { base })
    }
}

/// `t` is before the floor by about one or two GPS eras: adding 1024 or
/// 2048 weeks lands on or after the floor and within one era of it.
pub fn looks_like_rollover(t: WallTime, floor: WallTime) -> bool {
    t < floor
        && (1..=2u32).any(|k| {
            let corrected = t.plus(GPS_ROLLOVER * k);
            corrected >= floor && corrected < floor.plus(GPS_ROLLOVER)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nmea(body: &str) -> String {
        let sum = body.bytes().fold(0u8, |c, b| c ^ b);
        format!("${body}*{sum:02X}")
    }

    fn floor() -> WallTime {
        WallTime::from_utc(1999, 8, 22, 0, 0, 0, 0).unwrap()
    }

    fn run(a: &mut EpochAssembler, bodies: &[&str]) -> Vec<GpsEpoch> {
        let mut out: Vec<GpsEpoch> = bodies
            .iter()
            .filter_map(|b| a.push_sentence(&nmea(b), WallTime::UNIX_EPOCH, MonoTime::ZERO))
            .collect();
        out.extend(a.flush());
        out
    }

    #[test]
    fn sentences_of_one_second_merge() {
        let mut a = EpochAssembler::new(floor());
        let e = run(
            &mut a,
            &[
                "GPGGA,193221.00,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,",
                "GPGSA,A,3,10,28,09,13,,,,,,,,,03.4,01.7,03.0",
                "GPRMC,193221.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A",
            ],
        );
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!(e.utc.unwrap().rfc3339_millis(), "2007-12-23T19:32:21.000Z");
        assert_eq!(e.fix, FixMode::Fix3D);
        assert_eq!(e.rmc_valid, Some(true));
        assert_eq!(e.gga_quality, Some(1));
        assert_eq!(e.sats_used, Some(4));
        assert_eq!(e.hdop, Some(1.7));
    }

    #[test]
    fn a_fix_from_no_satellite_is_no_fix() {
        let mut a = EpochAssembler::new(floor());
        // GGA quality 1 with 0 satellites used, RMC valid: gpsd says no fix.
        let e = run(
            &mut a,
            &[
                "GPGGA,193221.00,2037.72792,N,08704.08478,W,1,00,99.9,-30.40,M,-13.9,M,,",
                "GPRMC,193221.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A",
            ],
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].fix, FixMode::NoFix);
        assert_eq!(e[0].sats_used, Some(0));
        assert_eq!(e[0].gga_quality, Some(1));
        // An empty satellite field says nothing either way.
        let e = run(
            &mut a,
            &[
                "GPGGA,193222.00,2037.72792,N,08704.08478,W,1,,1.7,-30.40,M,-13.9,M,,",
                "GPRMC,193222.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A",
            ],
        );
        assert_eq!(e[0].fix, FixMode::Fix3D);
    }

    #[test]
    fn date_carries_over_to_time_only_sentences_and_past_midnight() {
        let mut a = EpochAssembler::new(floor());
        let e = run(
            &mut a,
            &[
                "GPRMC,235959.50,A,2037.7279,N,08704.0848,W,00.1,201.8,311207,01,W,A",
                "GNGGA,235959.75,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,",
                "GNGGA,000000.25,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,",
            ],
        );
        let times: Vec<String> = e.iter().map(|e| e.utc.unwrap().rfc3339_millis()).collect();
        assert_eq!(
            times,
            [
                "2007-12-31T23:59:59.500Z",
                "2007-12-31T23:59:59.750Z",
                "2008-01-01T00:00:00.250Z"
            ]
        );
    }

    #[test]
    fn no_date_yet_means_no_utc() {
        let mut a = EpochAssembler::new(floor());
        let e = run(
            &mut a,
            &["GPGGA,193221.00,2037.72792,N,08704.08478,W,0,00,,,M,,M,,"],
        );
        assert_eq!(e[0].utc, None);
        assert_eq!(e[0].fix, FixMode::NoFix);
        assert_eq!(a.stats().epochs_without_utc, 1);
    }

    #[test]
    fn two_digit_year_goes_to_century_nearest_floor() {
        let rmc = "GPRMC,120000,A,2037.7279,N,08704.0848,W,0,0,010199,,";
        let year = |floor: WallTime| {
            let mut a = EpochAssembler::new(floor);
            run(&mut a, &[rmc])[0].utc.unwrap().to_utc().0
        };
        assert_eq!(year(floor()), 1999);
        assert_eq!(
            year(WallTime::from_utc(2080, 1, 1, 0, 0, 0, 0).unwrap()),
            2099
        );
        // Tie-ish: a floor in 2049 puts "99" in 2099 (50 y after) rather than 1999.
        assert_eq!(
            year(WallTime::from_utc(2049, 6, 1, 0, 0, 0, 0).unwrap()),
            2099
        );
    }

    #[test]
    fn rollover_is_reported_as_is_and_counted() {
        // A receiver with the 1024-week bug on 2019-04-07 says 1999-08-22.
        let floor = WallTime::from_utc(2019, 4, 1, 0, 0, 0, 0).unwrap();
        let mut a = EpochAssembler::new(floor);
        let e = run(
            &mut a,
            &[
                "GPRMC,000231.42,A,2037.7279,N,08704.0848,W,0,0,220899,,",
                "GPZDA,000232.42,22,08,1999,00,00",
            ],
        );
        assert_eq!(
            e[0].utc.unwrap().rfc3339_millis(),
            "1999-08-22T00:02:31.420Z"
        );
        assert_eq!(
            e[1].utc.unwrap().rfc3339_millis(),
            "1999-08-22T00:02:32.420Z"
        );
        assert_eq!(a.stats().before_floor, 2);
        assert_eq!(a.stats().rollover_suspects, 2);
        assert_eq!(e[0].fix, FixMode::Fix2D);
    }

    #[test]
    fn any_no_fix_statement_wins() {
        let mut a = EpochAssembler::new(floor());
        let e = run(
            &mut a,
            &[
                "GPRMC,120000,V,,,,,,,010107,,",
                "GPGGA,120000,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,",
                "GPGGA,120001,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,",
                "GPGSA,A,1,,,,,,,,,,,,,,,",
            ],
        );
        assert_eq!(e[0].fix, FixMode::NoFix);
        assert_eq!(e[0].rmc_valid, Some(false));
        assert_eq!(e[1].fix, FixMode::NoFix);
    }

    #[test]
    fn absurd_dates_are_dropped_without_panic() {
        let mut a = EpochAssembler::new(floor());
        let e = run(
            &mut a,
            &[
                "GPRMC,120000,A,,,,,,,310299,,",
                "GPZDA,120001,31,02,2001,00,00",
                "GPZDA,120002,99,99,99999,00,00",
                "GPRMC,999999,A,,,,,,,000000,,",
            ],
        );
        assert!(e.iter().all(|e| e.utc.is_none()));
    }
}
