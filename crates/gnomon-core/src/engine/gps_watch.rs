//! Judges the GPS hat on the `gps` host: is NMEA flowing with a usable fix,
//! are pulses regular, does each sentence follow its pulse, and is the time
//! it reports sane (after the floor, not a week-rollover, no jumps, in
//! agreement with independent NTP sources)?

use std::{collections::VecDeque, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    config::Thresholds,
    gps::{FixMode, GpsEpoch, PpsEdge},
    time::{human_duration, MonoTime, Offset, WallTime, GPS_ROLLOVER},
};

/// A missing or unusable part of the GPS: the GPS is not used, but it is
/// not lying either.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "fault")]
pub enum GpsFault {
    /// No NMEA epoch for longer than the timeout.
    NmeaMissing { pps_present: bool },
    /// NMEA flows but says there is no fix.
    NoFix { pps_present: bool, detail: String },
    /// A fix, but below the configured quality gates.
    PoorQuality { detail: String },
    /// PPS is expected but no pulse came within the timeout.
    PpsMissing,
    /// The last pulse interval was not 1 s within tolerance.
    PpsIrregular { interval: Duration },
    /// The sentence for a second did not arrive within the window after its pulse.
    Misaligned { delay: Option<Duration> },
}

impl fmt::Display for GpsFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpsFault::NmeaMissing { pps_present: true } => {
                f.write_str("PPS pulses arrive but NMEA has stopped: no time to go with them")
            }
            GpsFault::NmeaMissing { pps_present: false } => {
                f.write_str("no NMEA from the receiver and no PPS")
            }
            GpsFault::NoFix {
                pps_present: true,
                detail,
            } => write!(
                f,
                "PPS pulses arrive but the receiver has no fix ({detail})"
            ),
            GpsFault::NoFix {
                pps_present: false,
                detail,
            } => write!(f, "the receiver has no fix ({detail})"),
            GpsFault::PoorQuality { detail } => write!(f, "fix quality too low: {detail}"),
            GpsFault::PpsMissing => f.write_str("NMEA has a fix but no PPS pulse arrives"),
            GpsFault::PpsIrregular { interval } => write!(
                f,
                "PPS interval {:.3} s is not 1 s within tolerance",
                interval.as_secs_f64()
            ),
            GpsFault::Misaligned { delay: Some(d) } => write!(
                f,
                "NMEA second does not line up with the pulse: sentence arrived {} after it",
                human_duration(*d)
            ),
            GpsFault::Misaligned { delay: None } => f.write_str(
                "NMEA second does not line up with the pulse: no pulse before the sentence",
            ),
        }
    }
}

/// The GPS reports a fix but its time is wrong: the dangerous case, since
/// chrony told to `trust` it would follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "insanity")]
pub enum GpsInsanity {
    /// Exactly one GPS week era (1024 weeks) in the past.
    Rollover { gps: WallTime, floor: WallTime },
    /// Before the time floor, not explained by a rollover.
    BeforeFloor { gps: WallTime, floor: WallTime },
    /// Time moved by a different amount than the monotonic clock did.
    Jumped { by: Offset },
    /// Independent NTP sources measure a different time.
    Disagrees {
        gps_offset: Offset,
        independent_offset: Offset,
        sources: usize,
    },
}

impl fmt::Display for GpsInsanity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpsInsanity::Rollover { gps, floor } => write!(
                f,
                "GPS says {gps}, 1024 weeks before the real date (week-number rollover); time floor {floor}"
            ),
            GpsInsanity::BeforeFloor { gps, floor } => {
                write!(f, "GPS says {gps}, before the time floor {floor}")
            }
            GpsInsanity::Jumped { by } => write!(f, "GPS time jumped by {by}"),
            GpsInsanity::Disagrees {
                gps_offset,
                independent_offset,
                sources,
            } => write!(
                f,
                "GPS disagrees with {sources} independent NTP source(s) by {}: GPS offset {gps_offset}, NTP offset {independent_offset}",
                *gps_offset - *independent_offset
            ),
        }
    }
}

/// The verdict on the GPS at one instant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpsVerdict {
    pub faults: Vec<GpsFault>,
    pub insanity: Option<GpsInsanity>,
}

impl GpsVerdict {
    pub fn healthy(&self) -> bool {
        self.faults.is_empty() && self.insanity.is_none()
    }

    /// One line: insanity first, then the missing parts.
    pub fn describe(&self) -> String {
        if let Some(i) = &self.insanity {
            return i.to_string();
        }
        if self.faults.is_empty() {
            return "GPS healthy".to_owned();
        }
        self.faults
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What the watch has seen, for status displays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsObservation {
    pub last_epoch: Option<GpsEpoch>,
    pub last_epoch_age: Option<Duration>,
    pub last_pulse_age: Option<Duration>,
    pub last_interval: Option<Duration>,
    /// Mean absolute deviation of pulse intervals from 1 s.
    pub pps_jitter: Option<Duration>,
    pub pulses: u64,
    pub missed_pulses: u64,
    /// Delay from the pulse to the sentence of the last epoch.
    pub alignment: Option<Duration>,
    /// GPS time − system time, from the pulse when aligned, else from NMEA arrival.
    pub gps_offset: Option<Offset>,
    pub offset_from_pps: bool,
}

const EDGES_KEPT: usize = 4;
/// Without independent sources, a GPS date is called a rollover when one
/// week era later it lands within this span after the time floor.
const ROLLOVER_FLOOR_SPAN: Duration = Duration::from_secs(4 * 365 * 86_400);
/// Pulse intervals averaged for the jitter figure.
const JITTER_WEIGHT: f64 = 1.0 / 16.0;

#[derive(Debug, Clone)]
pub(crate) struct GpsWatch {
    pps_required: bool,
    last_epoch: Option<GpsEpoch>,
    prev_fix: Option<(WallTime, MonoTime, bool)>,
    last_jump: Option<(MonoTime, Offset)>,
    edges: VecDeque<PpsEdge>,
    last_interval: Option<Duration>,
    jitter_s: Option<f64>,
    pulses: u64,
    missed_pulses: u64,
    alignment: Option<Duration>,
    gps_offset: Option<Offset>,
    offset_from_pps: bool,
}

impl GpsWatch {
    pub(crate) fn new(pps_required: bool) -> Self {
        Self {
            pps_required,
            last_epoch: None,
            prev_fix: None,
            last_jump: None,
            edges: VecDeque::with_capacity(EDGES_KEPT),
            last_interval: None,
            jitter_s: None,
            pulses: 0,
            missed_pulses: 0,
            alignment: None,
            gps_offset: None,
            offset_from_pps: false,
        }
    }

    pub(crate) fn set_pps_required(&mut self, required: bool) {
        self.pps_required = required;
    }

    pub(crate) fn pulse(&mut self, edge: PpsEdge) {
        if let Some(prev) = self.edges.back() {
            let gap = edge.sequence.saturating_sub(prev.sequence);
            if gap > 1 {
                self.missed_pulses = self.missed_pulses.saturating_add(gap - 1);
            }
            let interval = edge.mono.since(prev.mono);
            if gap == 1 {
                self.last_interval = Some(interval);
                let dev = (interval.as_secs_f64() - 1.0).abs();
                self.jitter_s = Some(match self.jitter_s {
                    Some(j) => j + (dev - j) * JITTER_WEIGHT,
                    None => dev,
                });
            } else {
                // After missed pulses the interval says nothing about jitter.
                self.last_interval = None;
            }
        }
        if self.edges.len() == EDGES_KEPT {
            self.edges.pop_front();
        }
        self.edges.push_back(edge);
        self.pulses = self.pulses.saturating_add(1);
    }

    pub(crate) fn epoch(&mut self, epoch: GpsEpoch, t: &Thresholds) {
        let has_fix = fix_ok(&epoch);
        // The pulse this sentence belongs to: the latest edge before it.
        let edge = self
            .edges
            .iter()
            .rev()
            .find(|e| e.mono <= epoch.received_mono)
            .copied();
        self.alignment = edge.map(|e| epoch.received_mono.since(e.mono));
        match (epoch.utc, has_fix) {
            (Some(utc), true) => {
                let aligned = self.alignment.is_some_and(|d| d <= t.nmea_window);
                match edge {
                    Some(e) if aligned && utc.subsec_nanos() == 0 => {
                        self.gps_offset = Some(utc.since(e.wall));
                        self.offset_from_pps = true;
                    }
                    _ => {
                        self.gps_offset = Some(utc.since(epoch.received_wall));
                        self.offset_from_pps = false;
                    }
                }
                // Compare how far GPS time moved with how far the monotonic
                // clock moved, anchored on the pulses when the sentences
                // are aligned with them, else on arrival (less exact).
                let anchor = match edge {
                    Some(e) if aligned => (e.mono, true),
                    _ => (epoch.received_mono, false),
                };
                if let Some((prev_utc, prev_anchor, prev_on_pulse)) = self.prev_fix {
                    let elapsed = anchor.0.since(prev_anchor);
                    if elapsed <= Duration::from_secs(10) {
                        let err = utc.since(prev_utc) - Offset::from_duration(elapsed);
                        let mut allowed = t.max_gps_disagreement;
                        if !(anchor.1 && prev_on_pulse) {
                            allowed = allowed.saturating_add(t.nmea_window);
                        }
                        if err.abs() > allowed {
                            self.last_jump = Some((epoch.received_mono, err));
                        }
                    }
                }
                self.prev_fix = Some((utc, anchor.0, anchor.1));
            }
            _ => {
                self.gps_offset = None;
                self.prev_fix = None;
            }
        }
        self.last_epoch = Some(epoch);
    }

    fn pps_present(&self, now: MonoTime, t: &Thresholds) -> bool {
        self.edges
            .back()
            .is_some_and(|e| now.since(e.mono) <= t.pps_timeout)
    }

    /// Judges the GPS now. `independent` is the median offset of
    /// independent NTP sources and how many there were, when measurable;
    /// `correction` is chrony's (its clock − the system clock), when known.
    pub(crate) fn verdict(
        &self,
        now: MonoTime,
        t: &Thresholds,
        floor: WallTime,
        independent: Option<(Offset, usize)>,
        correction: Option<Offset>,
    ) -> GpsVerdict {
        let mut v = GpsVerdict::default();
        let pps_present = self.pps_present(now, t);
        let epoch = match &self.last_epoch {
            Some(e) if now.since(e.received_mono) <= t.nmea_timeout => e,
            _ => {
                v.faults.push(GpsFault::NmeaMissing { pps_present });
                return v;
            }
        };
        if !fix_ok(epoch) {
            v.faults.push(GpsFault::NoFix {
                pps_present,
                detail: no_fix_detail(epoch),
            });
            return v;
        }
        if let Some(detail) = quality_problem(epoch, t) {
            v.faults.push(GpsFault::PoorQuality { detail });
        }
        if self.pps_required {
            if !pps_present {
                v.faults.push(GpsFault::PpsMissing);
            } else {
                if let Some(i) = self.last_interval {
                    let dev = Offset::from_duration(i) - Offset::from_secs(1);
                    if dev.abs() > t.pps_interval_tolerance {
                        v.faults.push(GpsFault::PpsIrregular { interval: i });
                    }
                }
                match self.alignment {
                    Some(d) if d <= t.nmea_window => {}
                    other => v.faults.push(GpsFault::Misaligned { delay: other }),
                }
            }
        }
        v.insanity = self.insanity(now, epoch, t, floor, independent, correction);
        v
    }

    fn insanity(
        &self,
        now: MonoTime,
        epoch: &GpsEpoch,
        t: &Thresholds,
        floor: WallTime,
        independent: Option<(Offset, usize)>,
        correction: Option<Offset>,
    ) -> Option<GpsInsanity> {
        let gps = epoch.utc?;
        if gps < floor {
            let corrected = gps.plus(GPS_ROLLOVER);
            let one_day = Duration::from_secs(86_400);
            let rollover = match (independent, self.gps_offset) {
                (Some((indep, _)), _) => {
                    let true_time = epoch.received_wall.offset_by(indep);
                    corrected.since(true_time).abs() <= one_day
                }
                // Without an independent measure, a date that lands just
                // after the floor once a week era is added is most likely
                // one (the floor is at most a few years old).
                (None, _) => {
                    corrected >= floor.minus(one_day)
                        && corrected <= floor.plus(ROLLOVER_FLOOR_SPAN)
                }
            };
            return Some(if rollover {
                GpsInsanity::Rollover { gps, floor }
            } else {
                GpsInsanity::BeforeFloor { gps, floor }
            });
        }
        if let Some((at, by)) = self.last_jump {
            if now.since(at) < t.hold {
                return Some(GpsInsanity::Jumped { by });
            }
            if independent.is_none() {
                // Nothing independent says which second is right: the GPS
                // is trusted again only once it agrees with the clock it
                // disciplined before the jump (a glitch that went back),
                // never because the suspicion merely aged.
                let mut allowed = t.max_gps_disagreement;
                if !self.offset_from_pps {
                    allowed = allowed.saturating_add(t.nmea_window);
                }
                let agrees = match (self.gps_offset, correction) {
                    (Some(g), Some(c)) => (g - c).abs() <= allowed,
                    _ => false,
                };
                if !agrees {
                    return Some(GpsInsanity::Jumped { by });
                }
            }
        }
        if let (Some((indep, sources)), Some(gps_offset)) = (independent, self.gps_offset) {
            let mut allowed = t.max_gps_disagreement;
            if !self.offset_from_pps {
                allowed = allowed.saturating_add(t.nmea_window);
            }
            if (gps_offset - indep).abs() > allowed {
                return Some(GpsInsanity::Disagrees {
                    gps_offset,
                    independent_offset: indep,
                    sources,
                });
            }
        }
        None
    }

    pub(crate) fn observation(&self, now: MonoTime) -> GpsObservation {
        GpsObservation {
            last_epoch_age: self.last_epoch.as_ref().map(|e| now.since(e.received_mono)),
            last_epoch: self.last_epoch.clone(),
            last_pulse_age: self.edges.back().map(|e| now.since(e.mono)),
            last_interval: self.last_interval,
            pps_jitter: self
                .jitter_s
                .and_then(|j| Duration::try_from_secs_f64(j).ok()),
            pulses: self.pulses,
            missed_pulses: self.missed_pulses,
            alignment: self.alignment,
            gps_offset: self.gps_offset,
            offset_from_pps: self.offset_from_pps,
        }
    }

    /// When the current jump suspicion ends, for the engine's wake-up.
    pub(crate) fn jump_expiry(&self, hold: Duration) -> Option<MonoTime> {
        self.last_jump.map(|(at, _)| at.plus(hold))
    }
}

fn fix_ok(e: &GpsEpoch) -> bool {
    e.utc.is_some()
        && e.fix >= FixMode::Fix2D
        && e.rmc_valid != Some(false)
        && e.gga_quality != Some(0)
}

fn no_fix_detail(e: &GpsEpoch) -> String {
    let mut parts = Vec::new();
    if e.utc.is_none() {
        parts.push("no date and time".to_owned());
    }
    if e.rmc_valid == Some(false) {
        parts.push("RMC status V".to_owned());
    }
    if e.gga_quality == Some(0) {
        parts.push("GGA quality 0".to_owned());
    }
    if e.sats_used == Some(0) {
        parts.push("0 satellites used".to_owned());
    }
    if e.fix < FixMode::Fix2D {
        parts.push("fix mode none".to_owned());
    }
    parts.join(", ")
}

fn quality_problem(e: &GpsEpoch, t: &Thresholds) -> Option<String> {
    let mut parts = Vec::new();
    if e.fix < t.min_fix {
        parts.push(format!("fix {} below {}", e.fix, t.min_fix));
    }
    if let Some(n) = e.sats_used {
        if n < t.min_satellites {
            parts.push(format!("{n} satellites used, need {}", t.min_satellites));
        }
    }
    if let Some(h) = e.hdop {
        if f64::from(h) > t.max_hdop {
            parts.push(format!("HDOP {h:.1} above {:.1}", t.max_hdop));
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn t() -> Thresholds {
        Config::example_gps().thresholds
    }

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_nanos(ms * 1_000_000)
    }

    const START: i64 = 1_795_316_400; // 2026-11-22 03:00:00 UTC

    /// Feeds `n` healthy seconds: pulse at k s, sentence at k s + `delay_ms`,
    /// GPS time `START + k + gps_error_s`.
    fn feed(w: &mut GpsWatch, from: u64, n: u64, delay_ms: u64, gps_error_s: i64) {
        let th = t();
        for k in from..from + n {
            let secs = i64::try_from(k).unwrap();
            w.pulse(PpsEdge {
                wall: WallTime::from_unix_secs(START + secs),
                mono: at(k * 1000),
                sequence: k,
            });
            w.epoch(
                GpsEpoch {
                    utc: Some(WallTime::from_unix_secs(START + secs + gps_error_s)),
                    fix: FixMode::Fix3D,
                    rmc_valid: Some(true),
                    gga_quality: Some(1),
                    sats_used: Some(9),
                    hdop: Some(0.9),
                    received_wall: WallTime::from_unix_secs(START + secs)
                        .offset_by(Offset::from_millis(i64::try_from(delay_ms).unwrap())),
                    received_mono: at(k * 1000 + delay_ms),
                },
                &th,
            );
        }
    }

    fn floor() -> WallTime {
        WallTime::from_unix_secs(START - 30 * 86_400)
    }

    #[test]
    fn healthy_receiver_is_healthy_and_pps_anchored() {
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 5, 300, 0);
        let v = w.verdict(at(5400), &t(), floor(), Some((Offset::ZERO, 3)), None);
        assert!(v.healthy(), "{}", v.describe());
        let obs = w.observation(at(5400));
        assert!(obs.offset_from_pps);
        assert_eq!(obs.gps_offset, Some(Offset::ZERO));
        assert_eq!(obs.alignment, Some(Duration::from_millis(300)));
        assert_eq!(obs.missed_pulses, 0);
    }

    #[test]
    fn rollover_is_named_with_or_without_independent_sources() {
        let rolled = -i64::try_from(GPS_ROLLOVER.as_secs()).unwrap();
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 3, 300, rolled);
        for indep in [None, Some((Offset::ZERO, 2))] {
            let v = w.verdict(at(3400), &t(), floor(), indep, None);
            assert!(
                matches!(v.insanity, Some(GpsInsanity::Rollover { .. })),
                "{indep:?}: {}",
                v.describe()
            );
        }
        // Far before the floor and not one era back: plainly before the floor.
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 3, 300, -5 * 365 * 86_400);
        let v = w.verdict(at(3400), &t(), floor(), None, None);
        assert!(matches!(v.insanity, Some(GpsInsanity::BeforeFloor { .. })));
    }

    #[test]
    fn late_sentence_is_misaligned_not_a_jump() {
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 3, 300, 0);
        feed(&mut w, 4, 2, 950, 0);
        let v = w.verdict(at(5950), &t(), floor(), Some((Offset::ZERO, 3)), None);
        assert!(v.insanity.is_none(), "{}", v.describe());
        assert!(v
            .faults
            .iter()
            .any(|f| matches!(f, GpsFault::Misaligned { .. })));
    }

    #[test]
    fn whole_second_jump_is_insane_for_the_hold() {
        let th = t();
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 3, 300, 0);
        feed(&mut w, 4, 1, 300, 1);
        let v = w.verdict(at(4300), &th, floor(), None, None);
        match v.insanity {
            Some(GpsInsanity::Jumped { by }) => assert_eq!(by, Offset::from_secs(1)),
            other => panic!("{other:?}"),
        }
        // Still suspicious just before the hold ends whatever is known.
        feed(&mut w, 5, 400, 300, 1);
        let end = 4300 + u64::try_from(th.hold.as_millis()).unwrap();
        let agreeing = Some((Offset::from_secs(1), 3));
        assert!(w
            .verdict(at(end - 1000), &th, floor(), agreeing, None)
            .insanity
            .is_some());
        // After the hold: independent sources that agree with the new
        // second clear it.
        assert!(w
            .verdict(at(end + 1), &th, floor(), agreeing, None)
            .insanity
            .is_none());
        // Without them, only the clock it disciplined before the jump can:
        // it says the old second, so the suspicion stands past the hold.
        for later in [end + 1, end + 300] {
            assert!(matches!(
                w.verdict(at(later), &th, floor(), None, Some(Offset::ZERO))
                    .insanity,
                Some(GpsInsanity::Jumped { .. })
            ));
            assert!(w
                .verdict(at(later), &th, floor(), None, None)
                .insanity
                .is_some());
        }
        // A clock that agrees with the GPS's second (a glitch that went
        // back) lets it be trusted again.
        assert!(w
            .verdict(at(end + 1), &th, floor(), None, Some(Offset::from_secs(1)))
            .insanity
            .is_none());
    }

    #[test]
    fn disagreement_needs_more_slack_without_pps() {
        let th = t();
        // 700 ms off with PPS: insane.
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 3, 300, 0);
        let indep = Some((Offset::from_millis(700), 3));
        assert!(matches!(
            w.verdict(at(3400), &th, floor(), indep, None).insanity,
            Some(GpsInsanity::Disagrees { .. })
        ));
        // Without PPS the offset comes from sentence arrival (here 300 ms
        // late, so -300 ms); 700 ms from the sources is within 0.5 s + window.
        let mut w = GpsWatch::new(false);
        let mut th2 = th.clone();
        th2.nmea_window = Duration::from_millis(900);
        for k in 1..4_u64 {
            let secs = i64::try_from(k).unwrap();
            w.epoch(
                GpsEpoch {
                    utc: Some(WallTime::from_unix_secs(START + secs)),
                    fix: FixMode::Fix3D,
                    rmc_valid: Some(true),
                    gga_quality: Some(1),
                    sats_used: Some(9),
                    hdop: Some(0.9),
                    received_wall: WallTime::from_unix_secs(START + secs)
                        .offset_by(Offset::from_millis(300)),
                    received_mono: at(k * 1000 + 300),
                },
                &th2,
            );
        }
        let v = w.verdict(at(3400), &th2, floor(), indep, None);
        assert!(v.healthy(), "{}", v.describe());
        assert!(!w.observation(at(3400)).offset_from_pps);
    }

    #[test]
    fn missed_pulses_are_counted_and_pps_loss_noticed() {
        let th = t();
        let mut w = GpsWatch::new(true);
        feed(&mut w, 1, 3, 300, 0);
        feed(&mut w, 7, 1, 300, 0); // pulses 4..6 never came
        assert_eq!(w.observation(at(7400)).missed_pulses, 3);
        let later = at(7000 + u64::try_from(th.pps_timeout.as_millis()).unwrap() + 1);
        let v = w.verdict(later, &th, floor(), None, None);
        assert!(v.faults.contains(&GpsFault::PpsMissing), "{}", v.describe());
    }
}
