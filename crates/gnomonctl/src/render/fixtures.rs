//! Hand-built reports for the renderers' tests: a `gps` host during a GPS
//! outage, its fallbacks engaged, one public fallback silent and one not
//! yet in chrony.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gnomon_core::{
    alert::{Alert, AlertKind},
    chrony::{
        ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        Tracking,
    },
    config::Role,
    engine::{
        CheckedSource, ChronyStatus, ClockStatus, CrossCheck, Decision, DecisionKind, EngineState,
        FallbackMode, FallbackStatus, GpsFault, GpsObservation, GpsStatus, GpsVerdict,
        PrimaryStatus, Status,
    },
    gps::{FixMode, GpsEpoch, PpsEdge},
    ipc::{DaemonInfo, GpsReport, PpsReport, SourcesReport, StatusReport},
    source::{
        AssociationKind, FallbackTier, NtpSource, PlannedSource, SourceAddress, SourcePlan,
        SourceRole,
    },
    time::{FloorSource, MonoTime, Offset, WallTime},
};

pub(crate) fn noon() -> WallTime {
    WallTime::from_utc(2026, 5, 1, 12, 0, 0, 0).unwrap()
}

pub(crate) fn decisions() -> Vec<Decision> {
    vec![
        Decision {
            at: MonoTime::from_duration(Duration::from_secs(2)),
            wall: None,
            kind: DecisionKind::StateChange,
            state: EngineState::Acquiring,
            reason: "first word from chrony".into(),
        },
        Decision {
            at: MonoTime::from_duration(Duration::from_secs(600)),
            wall: Some(noon()),
            kind: DecisionKind::EngageFallbacks,
            state: EngineState::Fallback,
            reason: "GPS has no fix for 45s".into(),
        },
        Decision {
            at: MonoTime::from_duration(Duration::from_secs(700)),
            wall: Some(noon().plus(Duration::from_secs(100))),
            kind: DecisionKind::Freeze,
            state: EngineState::Frozen,
            reason: "operator: maintenance".into(),
        },
    ]
}

fn no_fix() -> GpsFault {
    GpsFault::NoFix {
        pps_present: false,
        detail: "0 satellites".into(),
    }
}

pub(crate) fn gps_status(healthy: bool) -> GpsStatus {
    GpsStatus {
        verdict: GpsVerdict {
            faults: if healthy { vec![] } else { vec![no_fix()] },
            insanity: None,
        },
        observation: GpsObservation {
            last_epoch: Some(GpsEpoch {
                utc: if healthy {
                    Some(noon().minus(Duration::from_secs(1)))
                } else {
                    None
                },
                fix: if healthy {
                    FixMode::Fix3D
                } else {
                    FixMode::NoFix
                },
                rmc_valid: Some(healthy),
                gga_quality: Some(u8::from(healthy)),
                sats_used: Some(if healthy { 9 } else { 0 }),
                hdop: if healthy { Some(0.9) } else { None },
                received_wall: noon(),
                received_mono: MonoTime::from_duration(Duration::from_secs(600)),
            }),
            last_epoch_age: Some(Duration::from_millis(300)),
            last_pulse_age: Some(Duration::from_millis(200)),
            last_interval: Some(Duration::from_nanos(1_000_001_000)),
            pps_jitter: Some(Duration::from_nanos(1_200)),
            pulses: 3456,
            missed_pulses: 2,
            alignment: Some(Duration::from_millis(120)),
            gps_offset: Some(Offset::from_nanos(12)),
            offset_from_pps: true,
        },
        gate_open: healthy,
        gate_wanted: healthy,
    }
}

fn fallback(addr: &str, tier: FallbackTier, answering: bool, offset_ns: i64) -> FallbackStatus {
    FallbackStatus {
        address: SourceAddress::parse(addr),
        tier,
        selectable: true,
        answering,
        usable: answering,
        offset: answering.then(|| Offset::from_nanos(offset_ns)),
        silent_for: (!answering).then(|| Duration::from_secs(3600)),
    }
}

pub(crate) fn status() -> Status {
    Status {
        role: Role::Gps,
        state: EngineState::Fallback,
        underlying_state: EngineState::Fallback,
        reason: "GPS has no fix for 45s; fallbacks engaged".into(),
        frozen: None,
        fallback_mode: FallbackMode::Auto,
        fallbacks_engaged: true,
        primary: PrimaryStatus {
            healthy: Some(false),
            detail: "the receiver has no fix (0 satellites)".into(),
            for_: Some(Duration::from_secs(300)),
            distrusted: false,
            unchecked: None,
        },
        gps: Some(gps_status(false)),
        clock: ClockStatus {
            wall: Some(noon()),
            floor: WallTime::from_utc(2026, 4, 28, 10, 0, 0, 0).unwrap(),
            floor_source: FloorSource::LastSynchronised,
            before_floor: false,
        },
        chrony: ChronyStatus {
            reachable: true,
            error: None,
            synchronised: true,
            reference: Some("192.168.1.11".into()),
            system_offset: Some(Offset::from_nanos(-3_200_000)),
            plan_applied: true,
        },
        fallbacks: vec![
            fallback("192.168.1.12", FallbackTier::LanPeer, true, 12_000),
            fallback(
                "206.108.0.131",
                FallbackTier::PublicIpLiteral,
                true,
                480_000,
            ),
            fallback("206.108.0.133", FallbackTier::PublicIpLiteral, false, 0),
        ],
        cross_check: CrossCheck {
            sources: vec![
                CheckedSource {
                    address: SourceAddress::parse("192.168.1.12"),
                    offset: Some(Offset::from_nanos(12_000)),
                    excluded: Some(
                        "takes its time from this host (its reference is 192.168.1.11)".into(),
                    ),
                },
                CheckedSource {
                    address: SourceAddress::parse("206.108.0.131"),
                    offset: Some(Offset::from_nanos(480_000)),
                    excluded: None,
                },
                CheckedSource {
                    address: SourceAddress::parse("206.108.0.133"),
                    offset: None,
                    excluded: Some("not answering (reach 000)".into()),
                },
            ],
            median: Some(Offset::from_nanos(480_000)),
        },
        changes_last_hour: 1,
        max_changes_per_hour: 6,
        alerts: vec![
            Alert::new(AlertKind::PrimaryUnusable, "GPS: the receiver has no fix"),
            Alert::new(
                AlertKind::FallbackUnreachable,
                "fallback 206.108.0.133 has not answered for 1h",
            )
            .about("206.108.0.133"),
        ],
        certs: Vec::new(),
        trusted_time: None,
    }
}

pub(crate) fn status_report() -> StatusReport {
    StatusReport {
        daemon: DaemonInfo {
            version: "0.1.0".into(),
            pid: 812,
            config_path: "/etc/gnomon/gnomon.toml".into(),
            started: noon().minus(Duration::from_secs(11_520)),
            uptime: Duration::from_secs(11_520),
            passes: 11_520,
        },
        status: status(),
        recent_decisions: decisions().into_iter().take(2).collect(),
    }
}

fn planned(addr: &str, kind: AssociationKind, role: SourceRole, selectable: bool) -> PlannedSource {
    PlannedSource {
        source: NtpSource {
            address: SourceAddress::parse(addr),
            kind,
            port: None,
            minpoll: None,
            maxpoll: None,
            key: None,
            iburst: true,
        },
        role,
        selectable,
    }
}

/// The `gps` host's plan: fallbacks only (the primary is the refclock).
pub(crate) fn gps_plan() -> SourcePlan {
    let public = SourceRole::Fallback(FallbackTier::PublicIpLiteral);
    SourcePlan {
        sources: vec![
            planned(
                "192.168.1.12",
                AssociationKind::Peer,
                SourceRole::Fallback(FallbackTier::LanPeer),
                true,
            ),
            planned("206.108.0.131", AssociationKind::Server, public, false),
            planned("206.108.0.132", AssociationKind::Server, public, false),
            planned("206.108.0.133", AssociationKind::Server, public, false),
        ],
    }
}

/// A client's plan naming the refclock's address as its primary server.
pub(crate) fn client_plan() -> SourcePlan {
    let mut plan = gps_plan();
    plan.sources.insert(
        0,
        planned(
            "192.168.1.11",
            AssociationKind::Server,
            SourceRole::Primary,
            true,
        ),
    );
    plan
}

#[allow(clippy::too_many_arguments)]
fn source(
    id: ChronySourceId,
    mode: ChronySourceMode,
    state: SelectionState,
    stratum: u8,
    poll: i8,
    reach: u8,
    last_sample_ago: Option<Duration>,
    offset_ns: Option<i64>,
    error: Duration,
    noselect: bool,
) -> SourceReport {
    SourceReport {
        id,
        name: None,
        mode,
        state,
        stratum,
        poll,
        reach,
        last_sample_ago,
        offset: offset_ns.map(Offset::from_nanos),
        error,
        noselect: Some(noselect),
        remote: None,
    }
}

fn ip(addr: &str) -> ChronySourceId {
    ChronySourceId::Address(addr.parse().unwrap())
}

pub(crate) fn sources_report() -> SourcesReport {
    SourcesReport {
        plan: gps_plan(),
        plan_applied: true,
        chrony: Some(ChronySnapshot {
            taken_wall: noon(),
            tracking: Tracking {
                ref_id: 0x4E4D_4541,
                ref_address: None,
                stratum: 1,
                leap: LeapStatus::Normal,
                system_offset: Offset::from_nanos(-479),
                last_offset: Offset::from_nanos(-300),
                rms_offset: Duration::from_nanos(500),
                frequency_ppm: -12.5,
                root_delay: Duration::ZERO,
                root_dispersion: Duration::from_micros(20),
            },
            sources: vec![
                source(
                    ChronySourceId::Refclock("NMEA".into()),
                    ChronySourceMode::Refclock,
                    SelectionState::Selected,
                    0,
                    4,
                    0o377,
                    Some(Duration::from_secs(11)),
                    Some(-479),
                    Duration::from_nanos(134),
                    false,
                ),
                source(
                    ip("192.168.1.12"),
                    ChronySourceMode::Peer,
                    SelectionState::Unusable,
                    2,
                    6,
                    0o377,
                    Some(Duration::from_secs(40)),
                    Some(-3_200_000),
                    Duration::from_millis(5),
                    false,
                ),
                source(
                    ip("206.108.0.131"),
                    ChronySourceMode::Server,
                    SelectionState::Unusable,
                    1,
                    10,
                    0o1,
                    Some(Duration::from_secs(72_000)),
                    Some(45_000_000),
                    Duration::from_millis(20),
                    true,
                ),
                source(
                    ip("206.108.0.133"),
                    ChronySourceMode::Server,
                    SelectionState::Unusable,
                    0,
                    10,
                    0,
                    None,
                    None,
                    Duration::ZERO,
                    true,
                ),
            ],
        }),
        sourcestats: vec![],
        sources_file: "/run/gnomon/chrony/gnomon.sources".into(),
    }
}

pub(crate) fn gps_report() -> GpsReport {
    GpsReport {
        source: "uart".into(),
        device: "/dev/ttyAMA0".into(),
        connected: true,
        last_error: None,
        bytes_read: 1_234_567,
        epochs: 3600,
        backlog_dropped: 0,
        samples_sent: 3500,
        samples_withheld: 100,
        sock_refclock: "/run/gnomon/nmea.sock".into(),
        status: Some(gps_status(true)),
    }
}

pub(crate) fn pps_report() -> PpsReport {
    let edge = |secs: u64, nanos: i64, sequence| PpsEdge {
        wall: noon()
            .minus(Duration::from_secs(2))
            .plus(Duration::from_secs(secs))
            .offset_by(Offset::from_nanos(nanos)),
        mono: MonoTime::from_nanos(secs * 1_000_000_000 + u64::try_from(nanos).unwrap()),
        sequence,
    };
    PpsReport {
        kind: "kernel".into(),
        device: "/dev/pps0".into(),
        last_error: Some("fetch timed out".into()),
        recent_edges: vec![edge(0, 0, 12_345), edge(1, 1_000, 12_346)],
        status: Some(gps_status(true)),
    }
}
