//! The Prometheus/OpenMetrics exposition of gnomon's state: the catalogue
//! of metric families ([`FAMILIES`]), a [`Scrape`] (what the engine loop
//! hands over for one scrape) and its rendering in the OpenMetrics 1.0 or
//! the Prometheus 0.0.4 text format. Pure: the HTTP side is in [`http`].
//!
//! Naming follows Prometheus' rules: everything under `gnomon_`, base units
//! (seconds, ratios), `_total` on counters, `_info` on info metrics, an
//! enum as a one-hot gauge with one series per value, and labels only with
//! a small bounded set of values (sources are the configured ones).

pub mod http;

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use gnomon_core::{
    alert::{AlertKind, Priority},
    chrony::{ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState},
    config::Role,
    engine::{EngineState, FallbackMode, GpsFault, GpsInsanity, Status},
    gps::FixMode,
    ipc::{DaemonInfo, GpsReport, PpsReport},
    source::{FallbackTier, SourceAddress},
    time::{Offset, WallTime},
};
use tokio::sync::oneshot;

// ---- what a scrape shows ----

/// Everything one scrape shows, taken by the engine loop in one go so the
/// figures agree with each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// System clock when the scrape was taken.
    pub taken: WallTime,
    pub daemon: DaemonInfo,
    pub status: Status,
    /// The GPS feed (role `gps` only).
    pub gps: Option<GpsReport>,
    pub pps: Option<PpsReport>,
    /// chrony's last answer, if any.
    pub chrony: Option<ChronySnapshot>,
    /// `[[primary.servers]]`, to tell chrony's sources apart by kind.
    pub primary: Vec<SourceAddress>,
}

/// A request from the HTTP task to the engine loop for a [`Scrape`].
#[derive(Debug)]
pub struct ScrapeCall {
    pub reply: oneshot::Sender<Box<Scrape>>,
}

// ---- formats ----

/// The text format of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text`).
    OpenMetrics,
    /// Prometheus' text format 0.0.4 (`text/plain`).
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it (with a non-zero
    /// weight), else the Prometheus text format every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let wants_openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            if !media.eq_ignore_ascii_case("application/openmetrics-text") {
                return false;
            }
            let weight = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok());
            weight.is_some_and(|q| q > 0.0)
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

// ---- the catalogue ----

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Info,
}

impl MetricType {
    const fn name(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Info => "info",
        }
    }
}

/// One metric family as documented in `docs/metrics.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The family's name: without `_total` (counters) or `_info` (info).
    pub name: &'static str,
    pub kind: MetricType,
    /// OpenMetrics unit; the name ends in `_<unit>`.
    pub unit: Option<&'static str>,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Only exposed by a gnomond with role `gps`.
    pub gps_only: bool,
}

impl Family {
    /// The name samples carry (and Prometheus queries use).
    pub fn sample_name(&self) -> String {
        match self.kind {
            MetricType::Gauge => self.name.to_owned(),
            MetricType::Counter => format!("{}_total", self.name),
            MetricType::Info => format!("{}_info", self.name),
        }
    }
}

const fn gauge(
    name: &'static str,
    unit: Option<&'static str>,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: MetricType::Gauge,
        unit,
        labels,
        help,
        gps_only: false,
    }
}

const fn gps(family: Family) -> Family {
    Family {
        gps_only: true,
        ..family
    }
}

const S: Option<&str> = Some("seconds");
const RATIO: Option<&str> = Some("ratio");
const SOURCE: &[&str] = &["source", "kind"];
const FALLBACK: &[&str] = &["source", "tier"];

/// Every metric family gnomond exposes, in exposition order.
pub const FAMILIES: &[Family] = &[
    // the daemon
    Family {
        name: "gnomon_build",
        kind: MetricType::Info,
        unit: None,
        labels: &["version"],
        help: "gnomond's version.",
        gps_only: false,
    },
    Family {
        name: "gnomon_role",
        kind: MetricType::Info,
        unit: None,
        labels: &["role"],
        help: "The configured role: gps (Stratum 1 with the GPS hat) or client.",
        gps_only: false,
    },
    gauge(
        "gnomon_start_time_seconds",
        S,
        &[],
        "System clock when gnomond started, seconds since the Unix epoch.",
    ),
    gauge(
        "gnomon_uptime_seconds",
        S,
        &[],
        "Time since gnomond started, on the monotonic clock.",
    ),
    Family {
        name: "gnomon_engine_passes",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "Inputs the decision engine has handled.",
        gps_only: false,
    },
    gauge(
        "gnomon_system_time_seconds",
        S,
        &[],
        "The host's system clock when this scrape was taken, seconds since the Unix epoch.",
    ),
    // the engine
    gauge(
        "gnomon_state",
        None,
        &["state"],
        "The engine's state, one series per state: 1 for the current one.",
    ),
    gauge(
        "gnomon_underlying_state",
        None,
        &["state"],
        "The state the engine would be in without an operator's freeze (one-hot).",
    ),
    gauge(
        "gnomon_frozen",
        None,
        &[],
        "1 while an operator has frozen the automation.",
    ),
    gauge(
        "gnomon_primary_healthy",
        None,
        &[],
        "1 when the primary reference is healthy, 0 when not; absent while it cannot be judged.",
    ),
    gauge(
        "gnomon_fallbacks_engaged",
        None,
        &[],
        "1 while the fallbacks are selectable in chrony.",
    ),
    gauge(
        "gnomon_fallback_mode",
        None,
        &["mode"],
        "Who decides on the fallbacks (one-hot): auto, engaged or released by an operator.",
    ),
    gauge(
        "gnomon_fallback_changes_last_hour",
        None,
        &[],
        "Automatic engage and release changes in the last hour.",
    ),
    gauge(
        "gnomon_fallback_changes_per_hour_limit",
        None,
        &[],
        "thresholds.max-changes-per-hour: the bound on those changes.",
    ),
    gauge(
        "gnomon_alerts_active",
        None,
        &["kind", "priority"],
        "Active alerts of each kind (several for per-source kinds), 0 when none.",
    ),
    // the clock
    gauge(
        "gnomon_time_floor_seconds",
        S,
        &[],
        "The time floor: the system clock is known wrong before it (seconds since the Unix epoch).",
    ),
    gauge(
        "gnomon_clock_before_floor",
        None,
        &[],
        "1 while the system clock is before the time floor.",
    ),
    gauge(
        "gnomon_clock_ahead_of_floor_seconds",
        S,
        &[],
        "System clock minus the time floor; negative while the clock is before the floor.",
    ),
    // chrony
    gauge(
        "gnomon_chrony_reachable",
        None,
        &[],
        "1 while chrony's command socket answers.",
    ),
    gauge(
        "gnomon_chrony_synchronised",
        None,
        &[],
        "1 while chrony is synchronised to a reference.",
    ),
    gauge(
        "gnomon_chrony_plan_applied",
        None,
        &[],
        "1 when chrony's sources are what gnomon's plan says.",
    ),
    gauge(
        "gnomon_chrony_snapshot_age_seconds",
        S,
        &[],
        "Age of chrony's last answer.",
    ),
    gauge(
        "gnomon_chrony_system_offset_seconds",
        S,
        &[],
        "chrony's estimate of true time minus the system clock (positive: the clock is behind).",
    ),
    gauge(
        "gnomon_chrony_last_offset_seconds",
        S,
        &[],
        "chrony's offset at its last clock update.",
    ),
    gauge(
        "gnomon_chrony_rms_offset_seconds",
        S,
        &[],
        "chrony's long-term average offset (RMS).",
    ),
    gauge(
        "gnomon_chrony_frequency_ratio",
        RATIO,
        &[],
        "chrony's estimate of the system clock's frequency error (ppm x 1e-6), positive when it runs fast.",
    ),
    gauge(
        "gnomon_chrony_root_delay_seconds",
        S,
        &[],
        "chrony's total network delay to the Stratum 1 reference.",
    ),
    gauge(
        "gnomon_chrony_root_dispersion_seconds",
        S,
        &[],
        "chrony's total dispersion accumulated to the Stratum 1 reference.",
    ),
    gauge(
        "gnomon_chrony_stratum",
        None,
        &[],
        "chrony's stratum (16: unsynchronised).",
    ),
    gauge(
        "gnomon_chrony_leap_status",
        None,
        &["state"],
        "chrony's leap status (one-hot): normal, insert-second, delete-second, unsynchronised.",
    ),
    // chrony's sources
    gauge(
        "gnomon_chrony_source_offset_seconds",
        S,
        SOURCE,
        "Offset of the source's last sample, source time minus system time.",
    ),
    gauge(
        "gnomon_chrony_source_error_seconds",
        S,
        SOURCE,
        "Error bound of the source's last sample.",
    ),
    gauge(
        "gnomon_chrony_source_last_sample_age_seconds",
        S,
        SOURCE,
        "Age of the source's last good sample.",
    ),
    gauge(
        "gnomon_chrony_source_reachability_ratio",
        RATIO,
        SOURCE,
        "Share of the last 8 polls the source answered (chrony's reach register).",
    ),
    gauge(
        "gnomon_chrony_source_answering",
        None,
        SOURCE,
        "1 when the source answered at least one of the last 3 polls.",
    ),
    gauge(
        "gnomon_chrony_source_stratum",
        None,
        SOURCE,
        "The source's stratum.",
    ),
    gauge(
        "gnomon_chrony_source_poll_interval_seconds",
        S,
        SOURCE,
        "How often chrony polls the source.",
    ),
    gauge(
        "gnomon_chrony_source_noselect",
        None,
        SOURCE,
        "1 when chrony has the source as noselect.",
    ),
    gauge(
        "gnomon_chrony_source_state",
        None,
        &["source", "kind", "state"],
        "chrony's selection state of the source (one-hot): selected, combined, not-combined, unusable, falseticker, jittery.",
    ),
    // fallbacks as gnomon judges them
    gauge(
        "gnomon_fallback_selectable",
        None,
        FALLBACK,
        "1 when the fallback is selectable in gnomon's plan (0: noselect).",
    ),
    gauge(
        "gnomon_fallback_answering",
        None,
        FALLBACK,
        "1 when the fallback answers chrony.",
    ),
    gauge(
        "gnomon_fallback_usable",
        None,
        FALLBACK,
        "1 when the fallback could be used now.",
    ),
    gauge(
        "gnomon_fallback_offset_seconds",
        S,
        FALLBACK,
        "The fallback's offset, source time minus system time.",
    ),
    gauge(
        "gnomon_fallback_silence_seconds",
        S,
        FALLBACK,
        "How long the fallback has not answered; absent while it answers.",
    ),
    // the GPS (role gps)
    gps(Family {
        name: "gnomon_gps",
        kind: MetricType::Info,
        unit: None,
        labels: &["source", "pps"],
        help: "Where NMEA (uart, serial, gpsd) and PPS (kernel, gpio, socket, none) come from.",
        gps_only: true,
    }),
    gps(gauge(
        "gnomon_gps_connected",
        None,
        &[],
        "1 while the receiver's device or gpsd is open.",
    )),
    gps(gauge(
        "gnomon_gps_healthy",
        None,
        &[],
        "1 when the GPS has no fault and is sane.",
    )),
    gps(gauge(
        "gnomon_gps_fault",
        None,
        &["fault"],
        "1 for each fault present: nmea-missing, no-fix, poor-quality, pps-missing, pps-irregular, misaligned.",
    )),
    gps(gauge(
        "gnomon_gps_insane",
        None,
        &["reason"],
        "1 when the GPS reports a fix with a wrong time, by reason: rollover, before-floor, jumped, disagrees.",
    )),
    gps(gauge(
        "gnomon_gps_gate_open",
        None,
        &[],
        "1 while NMEA samples are fed to chrony.",
    )),
    gps(gauge(
        "gnomon_gps_gate_wanted",
        None,
        &[],
        "1 when the engine wants the gate open (differs from gnomon_gps_gate_open only while frozen).",
    )),
    gps(gauge(
        "gnomon_gps_fix_mode",
        None,
        &["mode"],
        "The receiver's fix (one-hot): none, 2d, 3d; absent before the first epoch.",
    )),
    gps(gauge(
        "gnomon_gps_satellites_used",
        None,
        &[],
        "Satellites used in the fix.",
    )),
    gps(gauge(
        "gnomon_gps_hdop",
        None,
        &[],
        "Horizontal dilution of precision of the fix.",
    )),
    gps(gauge(
        "gnomon_gps_epoch_age_seconds",
        S,
        &[],
        "Time since the last NMEA epoch.",
    )),
    gps(gauge(
        "gnomon_gps_offset_seconds",
        S,
        &[],
        "GPS time minus system time, from the pulse when aligned, else from NMEA arrival.",
    )),
    gps(gauge(
        "gnomon_gps_offset_from_pps",
        None,
        &[],
        "1 when gnomon_gps_offset_seconds comes from the pulse.",
    )),
    gps(gauge(
        "gnomon_gps_nmea_pps_delay_seconds",
        S,
        &[],
        "NMEA-PPS alignment: delay from a pulse to the sentence of its second.",
    )),
    gps(gauge(
        "gnomon_gps_pps_pulse_age_seconds",
        S,
        &[],
        "Time since the last PPS pulse.",
    )),
    gps(gauge(
        "gnomon_gps_pps_interval_seconds",
        S,
        &[],
        "The last interval between two pulses (1 s when healthy).",
    )),
    gps(gauge(
        "gnomon_gps_pps_jitter_seconds",
        S,
        &[],
        "Mean absolute deviation of the pulse intervals from 1 s.",
    )),
    gps(Family {
        name: "gnomon_gps_pps_pulses",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "PPS pulses seen.",
        gps_only: true,
    }),
    gps(Family {
        name: "gnomon_gps_pps_missed_pulses",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "PPS pulses missed (gaps in the driver's sequence).",
        gps_only: true,
    }),
    gps(Family {
        name: "gnomon_gps_nmea_epochs",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "NMEA epochs (one second of receiver output) read.",
        gps_only: true,
    }),
    gps(Family {
        name: "gnomon_gps_nmea_read_bytes",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "Bytes read from the receiver.",
        gps_only: true,
    }),
    gps(Family {
        name: "gnomon_gps_backlog_dropped_epochs",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "Epochs read several at once after a stall, not used for timing.",
        gps_only: true,
    }),
    gps(Family {
        name: "gnomon_gps_refclock_samples_sent",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "Samples sent into chrony's SOCK refclock.",
        gps_only: true,
    }),
    gps(Family {
        name: "gnomon_gps_refclock_samples_withheld",
        kind: MetricType::Counter,
        unit: None,
        labels: &[],
        help: "Samples withheld by the closed gate or for want of a pulse.",
        gps_only: true,
    }),
];

/// The family named `name`, if it is in the catalogue.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

// ---- enum values, each list checked against its type by an exhaustive match ----

pub const ENGINE_STATES: [EngineState; 8] = [
    EngineState::Starting,
    EngineState::Acquiring,
    EngineState::Primary,
    EngineState::Degraded,
    EngineState::Fallback,
    EngineState::Recovering,
    EngineState::NoReference,
    EngineState::Frozen,
];

/// Exhaustive, so a new state fails the build of the tests until it is
/// in [`ENGINE_STATES`].
#[cfg(test)]
const fn engine_state_index(state: EngineState) -> usize {
    match state {
        EngineState::Starting => 0,
        EngineState::Acquiring => 1,
        EngineState::Primary => 2,
        EngineState::Degraded => 3,
        EngineState::Fallback => 4,
        EngineState::Recovering => 5,
        EngineState::NoReference => 6,
        EngineState::Frozen => 7,
    }
}

const FALLBACK_MODES: [FallbackMode; 3] = [
    FallbackMode::Auto,
    FallbackMode::Engaged,
    FallbackMode::Released,
];

const fn fallback_mode_name(mode: FallbackMode) -> &'static str {
    match mode {
        FallbackMode::Auto => "auto",
        FallbackMode::Engaged => "engaged",
        FallbackMode::Released => "released",
    }
}

const LEAP_STATUSES: [LeapStatus; 4] = [
    LeapStatus::Normal,
    LeapStatus::InsertSecond,
    LeapStatus::DeleteSecond,
    LeapStatus::Unsynchronised,
];

const fn leap_name(leap: LeapStatus) -> &'static str {
    match leap {
        LeapStatus::Normal => "normal",
        LeapStatus::InsertSecond => "insert-second",
        LeapStatus::DeleteSecond => "delete-second",
        LeapStatus::Unsynchronised => "unsynchronised",
    }
}

const SELECTION_STATES: [SelectionState; 6] = [
    SelectionState::Selected,
    SelectionState::Combined,
    SelectionState::NotCombined,
    SelectionState::Unusable,
    SelectionState::Falseticker,
    SelectionState::Jittery,
];

const fn selection_name(state: SelectionState) -> &'static str {
    match state {
        SelectionState::Selected => "selected",
        SelectionState::Combined => "combined",
        SelectionState::NotCombined => "not-combined",
        SelectionState::Unusable => "unusable",
        SelectionState::Falseticker => "falseticker",
        SelectionState::Jittery => "jittery",
    }
}

const FIX_MODES: [FixMode; 3] = [FixMode::NoFix, FixMode::Fix2D, FixMode::Fix3D];

const fn fix_name(fix: FixMode) -> &'static str {
    match fix {
        FixMode::NoFix => "none",
        FixMode::Fix2D => "2d",
        FixMode::Fix3D => "3d",
    }
}

pub const GPS_FAULTS: [&str; 6] = [
    "nmea-missing",
    "no-fix",
    "poor-quality",
    "pps-missing",
    "pps-irregular",
    "misaligned",
];

const fn fault_name(fault: &GpsFault) -> &'static str {
    match fault {
        GpsFault::NmeaMissing { .. } => "nmea-missing",
        GpsFault::NoFix { .. } => "no-fix",
        GpsFault::PoorQuality { .. } => "poor-quality",
        GpsFault::PpsMissing => "pps-missing",
        GpsFault::PpsIrregular { .. } => "pps-irregular",
        GpsFault::Misaligned { .. } => "misaligned",
    }
}

pub const GPS_INSANITIES: [&str; 4] = ["rollover", "before-floor", "jumped", "disagrees"];

const fn insanity_name(insanity: &GpsInsanity) -> &'static str {
    match insanity {
        GpsInsanity::Rollover { .. } => "rollover",
        GpsInsanity::BeforeFloor { .. } => "before-floor",
        GpsInsanity::Jumped { .. } => "jumped",
        GpsInsanity::Disagrees { .. } => "disagrees",
    }
}

const fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Critical => "critical",
        Priority::Warning => "warning",
        Priority::Notice => "notice",
    }
}

const fn tier_name(tier: FallbackTier) -> &'static str {
    match tier {
        FallbackTier::LanPeer => "lan-peer",
        FallbackTier::PublicIpLiteral => "public",
    }
}

// ---- collecting samples ----

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    labels: Labels,
    value: f64,
}

/// Samples by family name, before rendering.
#[derive(Debug, Default)]
struct Samples {
    by_family: BTreeMap<&'static str, Vec<Sample>>,
}

impl Samples {
    fn set(&mut self, family: &'static str, labels: Labels, value: f64) {
        let samples = self.by_family.entry(family).or_default();
        // A label set appears once per family (chrony never reports one
        // source twice, but the format forbids it, so make sure).
        if !samples.iter().any(|s| s.labels == labels) {
            samples.push(Sample { labels, value });
        }
    }

    fn plain(&mut self, family: &'static str, value: f64) {
        self.set(family, Vec::new(), value);
    }

    fn flag(&mut self, family: &'static str, on: bool) {
        self.plain(family, bool_value(on));
    }

    fn seconds(&mut self, family: &'static str, d: Option<Duration>) {
        if let Some(d) = d {
            self.plain(family, d.as_secs_f64());
        }
    }

    fn offset(&mut self, family: &'static str, labels: Labels, offset: Option<Offset>) {
        if let Some(o) = offset {
            self.set(family, labels, o.as_secs_f64());
        }
    }

    /// One series per `values`, 1 for `current` and 0 for the others.
    fn one_hot<'a>(
        &mut self,
        family: &'static str,
        base: &Labels,
        label: &'static str,
        values: impl IntoIterator<Item = &'a str>,
        current: Option<&str>,
    ) {
        for v in values {
            let mut labels = base.clone();
            labels.push((label, v.to_owned()));
            self.set(family, labels, bool_value(current == Some(v)));
        }
    }
}

fn bool_value(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

#[allow(clippy::cast_precision_loss)] // counters below 2^53 are exact
fn count(n: u64) -> f64 {
    n as f64
}

fn unix_seconds(t: WallTime) -> f64 {
    // Seconds and nanoseconds apart, so the fraction keeps its precision.
    #[allow(clippy::cast_precision_loss)]
    let secs = t.unix_secs() as f64;
    secs + f64::from(t.subsec_nanos()) / 1e9
}

fn wall_difference(a: WallTime, b: WallTime) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let nanos = a.unix_nanos().saturating_sub(b.unix_nanos()) as f64;
    nanos / 1e9
}

fn source_label(id: &ChronySourceId) -> String {
    match id {
        ChronySourceId::Address(ip) => ip.to_string(),
        ChronySourceId::Refclock(refid) => refid.clone(),
    }
}

/// What a chrony source is to gnomon: `refclock`, `primary` (a
/// `[[primary.servers]]` entry), `fallback`, or `other` (from chrony's own
/// configuration).
fn source_kind(scrape: &Scrape, source: &gnomon_core::chrony::SourceReport) -> &'static str {
    if source.mode == ChronySourceMode::Refclock {
        return "refclock";
    }
    if scrape
        .status
        .fallbacks
        .iter()
        .any(|f| source.matches(&f.address))
    {
        return "fallback";
    }
    if scrape.primary.iter().any(|p| source.matches(p)) {
        return "primary";
    }
    "other"
}

fn collect(scrape: &Scrape) -> Samples {
    let mut m = Samples::default();
    let status = &scrape.status;
    let daemon = &scrape.daemon;

    m.set(
        "gnomon_build",
        vec![("version", daemon.version.clone())],
        1.0,
    );
    m.set("gnomon_role", vec![("role", status.role.to_string())], 1.0);
    m.plain("gnomon_start_time_seconds", unix_seconds(daemon.started));
    m.plain("gnomon_uptime_seconds", daemon.uptime.as_secs_f64());
    m.plain("gnomon_engine_passes", count(daemon.passes));
    m.plain("gnomon_system_time_seconds", unix_seconds(scrape.taken));

    let states = ENGINE_STATES.map(EngineState::name);
    m.one_hot(
        "gnomon_state",
        &Vec::new(),
        "state",
        states,
        Some(status.state.name()),
    );
    m.one_hot(
        "gnomon_underlying_state",
        &Vec::new(),
        "state",
        states,
        Some(status.underlying_state.name()),
    );
    m.flag("gnomon_frozen", status.frozen.is_some());
    if let Some(healthy) = status.primary.healthy {
        m.flag("gnomon_primary_healthy", healthy);
    }
    m.flag("gnomon_fallbacks_engaged", status.fallbacks_engaged);
    m.one_hot(
        "gnomon_fallback_mode",
        &Vec::new(),
        "mode",
        FALLBACK_MODES.map(fallback_mode_name),
        Some(fallback_mode_name(status.fallback_mode)),
    );
    m.plain(
        "gnomon_fallback_changes_last_hour",
        f64::from(status.changes_last_hour),
    );
    m.plain(
        "gnomon_fallback_changes_per_hour_limit",
        f64::from(status.max_changes_per_hour),
    );
    for kind in AlertKind::ALL {
        let active = status.alerts.iter().filter(|a| a.kind == kind).count();
        m.set(
            "gnomon_alerts_active",
            vec![
                ("kind", kind.name().to_owned()),
                ("priority", priority_name(kind.priority()).to_owned()),
            ],
            count(u64::try_from(active).unwrap_or(u64::MAX)),
        );
    }

    m.plain(
        "gnomon_time_floor_seconds",
        unix_seconds(status.clock.floor),
    );
    m.flag("gnomon_clock_before_floor", status.clock.before_floor);
    if let Some(wall) = status.clock.wall {
        m.plain(
            "gnomon_clock_ahead_of_floor_seconds",
            wall_difference(wall, status.clock.floor),
        );
    }

    m.flag("gnomon_chrony_reachable", status.chrony.reachable);
    m.flag("gnomon_chrony_synchronised", status.chrony.synchronised);
    m.flag("gnomon_chrony_plan_applied", status.chrony.plan_applied);
    if let Some(snapshot) = &scrape.chrony {
        collect_chrony(scrape, snapshot, &mut m);
    }

    for f in &status.fallbacks {
        let labels: Labels = vec![
            ("source", f.address.to_string()),
            ("tier", tier_name(f.tier).to_owned()),
        ];
        m.set(
            "gnomon_fallback_selectable",
            labels.clone(),
            bool_value(f.selectable),
        );
        m.set(
            "gnomon_fallback_answering",
            labels.clone(),
            bool_value(f.answering),
        );
        m.set(
            "gnomon_fallback_usable",
            labels.clone(),
            bool_value(f.usable),
        );
        m.offset("gnomon_fallback_offset_seconds", labels.clone(), f.offset);
        if let Some(silent) = f.silent_for {
            m.set(
                "gnomon_fallback_silence_seconds",
                labels,
                silent.as_secs_f64(),
            );
        }
    }

    if status.role == Role::Gps {
        collect_gps(scrape, &mut m);
    }
    m
}

fn collect_chrony(scrape: &Scrape, snapshot: &ChronySnapshot, m: &mut Samples) {
    let t = &snapshot.tracking;
    m.plain(
        "gnomon_chrony_snapshot_age_seconds",
        wall_difference(scrape.taken, snapshot.taken_wall).max(0.0),
    );
    m.plain(
        "gnomon_chrony_system_offset_seconds",
        t.system_offset.as_secs_f64(),
    );
    m.plain(
        "gnomon_chrony_last_offset_seconds",
        t.last_offset.as_secs_f64(),
    );
    m.plain(
        "gnomon_chrony_rms_offset_seconds",
        t.rms_offset.as_secs_f64(),
    );
    m.plain("gnomon_chrony_frequency_ratio", t.frequency_ppm / 1e6);
    m.plain(
        "gnomon_chrony_root_delay_seconds",
        t.root_delay.as_secs_f64(),
    );
    m.plain(
        "gnomon_chrony_root_dispersion_seconds",
        t.root_dispersion.as_secs_f64(),
    );
    m.plain("gnomon_chrony_stratum", f64::from(t.stratum));
    m.one_hot(
        "gnomon_chrony_leap_status",
        &Vec::new(),
        "state",
        LEAP_STATUSES.map(leap_name),
        Some(leap_name(t.leap)),
    );
    for source in &snapshot.sources {
        let labels: Labels = vec![
            ("source", source_label(&source.id)),
            ("kind", source_kind(scrape, source).to_owned()),
        ];
        m.offset(
            "gnomon_chrony_source_offset_seconds",
            labels.clone(),
            source.offset,
        );
        m.set(
            "gnomon_chrony_source_error_seconds",
            labels.clone(),
            source.error.as_secs_f64(),
        );
        if let Some(age) = source.last_sample_ago {
            m.set(
                "gnomon_chrony_source_last_sample_age_seconds",
                labels.clone(),
                age.as_secs_f64(),
            );
        }
        m.set(
            "gnomon_chrony_source_reachability_ratio",
            labels.clone(),
            f64::from(source.reach.count_ones()) / 8.0,
        );
        m.set(
            "gnomon_chrony_source_answering",
            labels.clone(),
            bool_value(source.answering()),
        );
        m.set(
            "gnomon_chrony_source_stratum",
            labels.clone(),
            f64::from(source.stratum),
        );
        m.set(
            "gnomon_chrony_source_poll_interval_seconds",
            labels.clone(),
            2f64.powi(i32::from(source.poll)),
        );
        if let Some(noselect) = source.noselect {
            m.set(
                "gnomon_chrony_source_noselect",
                labels.clone(),
                bool_value(noselect),
            );
        }
        m.one_hot(
            "gnomon_chrony_source_state",
            &labels,
            "state",
            SELECTION_STATES.map(selection_name),
            Some(selection_name(source.state)),
        );
    }
}

fn collect_gps(scrape: &Scrape, m: &mut Samples) {
    if let Some(report) = &scrape.gps {
        let pps = scrape
            .pps
            .as_ref()
            .map_or_else(|| "none".to_owned(), |p| p.kind.clone());
        m.set(
            "gnomon_gps",
            vec![("source", report.source.clone()), ("pps", pps)],
            1.0,
        );
        m.flag("gnomon_gps_connected", report.connected);
        m.plain("gnomon_gps_nmea_epochs", count(report.epochs));
        m.plain("gnomon_gps_nmea_read_bytes", count(report.bytes_read));
        m.plain(
            "gnomon_gps_backlog_dropped_epochs",
            count(report.backlog_dropped),
        );
        m.plain(
            "gnomon_gps_refclock_samples_sent",
            count(report.samples_sent),
        );
        m.plain(
            "gnomon_gps_refclock_samples_withheld",
            count(report.samples_withheld),
        );
    }
    let Some(gps) = &scrape.status.gps else {
        return;
    };
    m.flag("gnomon_gps_healthy", gps.verdict.healthy());
    for name in GPS_FAULTS {
        let present = gps.verdict.faults.iter().any(|f| fault_name(f) == name);
        m.set(
            "gnomon_gps_fault",
            vec![("fault", name.to_owned())],
            bool_value(present),
        );
    }
    let insanity = gps.verdict.insanity.as_ref().map(insanity_name);
    for name in GPS_INSANITIES {
        m.set(
            "gnomon_gps_insane",
            vec![("reason", name.to_owned())],
            bool_value(insanity == Some(name)),
        );
    }
    m.flag("gnomon_gps_gate_open", gps.gate_open);
    m.flag("gnomon_gps_gate_wanted", gps.gate_wanted);
    let o = &gps.observation;
    if let Some(epoch) = &o.last_epoch {
        m.one_hot(
            "gnomon_gps_fix_mode",
            &Vec::new(),
            "mode",
            FIX_MODES.map(fix_name),
            Some(fix_name(epoch.fix)),
        );
        if let Some(sats) = epoch.sats_used {
            m.plain("gnomon_gps_satellites_used", f64::from(sats));
        }
        if let Some(hdop) = epoch.hdop {
            // Through its shortest decimal form: the receiver wrote "0.9",
            // not the f32 widened to 0.8999999761581421.
            let hdop = hdop.to_string().parse().unwrap_or(f64::from(hdop));
            m.plain("gnomon_gps_hdop", hdop);
        }
    }
    m.seconds("gnomon_gps_epoch_age_seconds", o.last_epoch_age);
    m.offset("gnomon_gps_offset_seconds", Vec::new(), o.gps_offset);
    m.flag("gnomon_gps_offset_from_pps", o.offset_from_pps);
    m.seconds("gnomon_gps_nmea_pps_delay_seconds", o.alignment);
    m.seconds("gnomon_gps_pps_pulse_age_seconds", o.last_pulse_age);
    m.seconds("gnomon_gps_pps_interval_seconds", o.last_interval);
    m.seconds("gnomon_gps_pps_jitter_seconds", o.pps_jitter);
    m.plain("gnomon_gps_pps_pulses", count(o.pulses));
    m.plain("gnomon_gps_pps_missed_pulses", count(o.missed_pulses));
}

// ---- rendering ----

/// `scrape` in `format`: each family of the catalogue that has a sample now,
/// with HELP and TYPE (and UNIT in OpenMetrics), in catalogue order, and
/// `# EOF` at the end of OpenMetrics. A family without a sample (chrony's
/// figures while chrony is silent, the GPS on a client) is left out whole,
/// as client_golang does: parsers disagree on metadata without samples.
pub fn render(scrape: &Scrape, format: Format) -> String {
    let samples = collect(scrape);
    let mut out = String::with_capacity(16 * 1024);
    for family in FAMILIES {
        if family.gps_only && scrape.status.role != Role::Gps {
            continue;
        }
        match samples.by_family.get(family.name) {
            Some(family_samples) if !family_samples.is_empty() => {
                render_family(&mut out, family, family_samples, format);
            }
            _ => {}
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn render_family(out: &mut String, family: &Family, samples: &[Sample], format: Format) {
    let sample_name = family.sample_name();
    let help = escape_help(family.help);
    // Writing to a String cannot fail.
    match format {
        Format::OpenMetrics => {
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.name());
            if let Some(unit) = family.unit {
                let _ = writeln!(out, "# UNIT {} {unit}", family.name);
            }
            let _ = writeln!(out, "# HELP {} {help}", family.name);
        }
        Format::Prometheus => {
            let kind = match family.kind {
                MetricType::Counter => "counter",
                MetricType::Gauge | MetricType::Info => "gauge",
            };
            let _ = writeln!(out, "# HELP {sample_name} {help}");
            let _ = writeln!(out, "# TYPE {sample_name} {kind}");
        }
    }
    for sample in samples {
        out.push_str(&sample_name);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(&number(sample.value));
        out.push('\n');
    }
}

/// A label value with `\`, `"` and newlines escaped (both formats).
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text with `\` and newlines escaped, which both formats read the
/// same way (the help texts hold no `"`, which only OpenMetrics escapes).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as both formats write numbers.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Shortest representation that reads back to the same f64.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
