//! S9, the engine's half: garbage on every input the engine has. The
//! receiver and socket halves (line noise, gpsd classes, control-socket
//! nonsense) are tested where those parsers live.

use std::{net::IpAddr, time::Duration};

use gnomon_core::{
    chrony::{
        ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        Tracking,
    },
    engine::{Input, OperatorCommand},
    gps::{FixMode, GpsEpoch, PpsEdge},
    source::SourcePlan,
    time::{MonoTime, Offset, WallTime},
};

use crate::{
    scenarios::{ip, scenario_start, Scenario, PUB},
    sim::{GpsBehaviour, HostSpec, ScriptEvent, Sim, SimServer},
};

fn epoch(utc: Option<WallTime>, fix: FixMode, sats: u8, hdop: f32, mono: MonoTime) -> Input {
    Input::GpsEpoch(GpsEpoch {
        utc,
        fix,
        rmc_valid: Some(true),
        gga_quality: Some(1),
        sats_used: Some(sats),
        hdop: Some(hdop),
        received_wall: WallTime::from_unix_nanos(i64::MAX),
        received_mono: mono,
    })
}

fn absurd_snapshot() -> ChronySnapshot {
    let weird = SourceReport {
        id: ChronySourceId::Address(IpAddr::V4(std::net::Ipv4Addr::new(0, 0, 0, 0))),
        name: Some("\u{0}\u{7f}garbage".to_owned()),
        mode: ChronySourceMode::Server,
        state: SelectionState::Selected,
        stratum: 255,
        poll: i8::MIN,
        reach: 0xff,
        last_sample_ago: Some(Duration::MAX),
        offset: Some(Offset::from_nanos(i64::MAX)),
        error: Duration::MAX,
        noselect: None,
        remote: None,
    };
    let dup = SourceReport {
        id: ChronySourceId::Address(ip(PUB[0])),
        offset: Some(Offset::from_nanos(i64::MIN)),
        stratum: 0,
        ..weird.clone()
    };
    ChronySnapshot {
        taken_wall: WallTime::from_unix_nanos(i64::MIN),
        tracking: Tracking {
            ref_id: u32::MAX,
            ref_address: Some(ip(PUB[0])),
            stratum: 0,
            leap: LeapStatus::Normal,
            system_offset: Offset::from_nanos(i64::MIN),
            last_offset: Offset::from_nanos(i64::MAX),
            rms_offset: Duration::MAX,
            frequency_ppm: f64::NAN,
            root_delay: Duration::MAX,
            root_dispersion: Duration::ZERO,
        },
        sources: vec![weird, dup.clone(), dup],
    }
}

/// gps1 healthy, then a barrage of nonsense; the state disk fills up for a
/// while in the middle.
pub(crate) fn scenario() -> Scenario {
    let spec = HostSpec {
        name: "gps1".to_owned(),
        config: crate::scenarios::gps_config(),
        start: scenario_start(),
        build_time: crate::scenarios::build_time(),
        clock_error: Offset::from_millis(-40),
        servers: PUB
            .iter()
            .map(|a| SimServer {
                address: ip(a),
                up: true,
                error: Offset::ZERO,
                stratum: 1,
            })
            .collect(),
        gps: GpsBehaviour::Healthy,
        persisted: Default::default(),
    };
    let mut sim = Sim::new(spec);
    let s = Duration::from_secs;
    let far = MonoTime::from_nanos(u64::MAX);
    let raw = [
        epoch(None, FixMode::Fix3D, 9, 0.9, MonoTime::ZERO),
        epoch(
            WallTime::from_utc(2080, 1, 1, 0, 0, 0, 0),
            FixMode::Fix3D,
            255,
            f32::NAN,
            far,
        ),
        epoch(
            WallTime::from_utc(1980, 1, 6, 0, 0, 0, 0),
            FixMode::Fix3D,
            9,
            -1.0,
            MonoTime::ZERO,
        ),
        epoch(
            Some(WallTime::from_unix_nanos(i64::MIN)),
            FixMode::Fix2D,
            0,
            f32::INFINITY,
            far,
        ),
        Input::PpsEdge(PpsEdge {
            wall: WallTime::from_unix_nanos(i64::MIN),
            mono: far,
            sequence: u64::MAX,
        }),
        Input::PpsEdge(PpsEdge {
            wall: WallTime::UNIX_EPOCH,
            mono: MonoTime::ZERO,
            sequence: 0,
        }),
        Input::Chrony(absurd_snapshot()),
        Input::ChronyUnreachable {
            error: String::new(),
        },
        Input::PlanApplied {
            plan: SourcePlan::default(),
            outcome: Err("no such plan was ever issued".to_owned()),
        },
        Input::StateSaved {
            outcome: Err("rename /var/lib/gnomon/state.json.tmp: Read-only file system".to_owned()),
        },
        Input::Tick {
            wall: WallTime::from_unix_nanos(i64::MAX),
        },
        Input::Tick {
            wall: WallTime::from_unix_nanos(i64::MIN),
        },
        Input::Command(OperatorCommand::Thaw),
        Input::Command(OperatorCommand::Reassess),
    ];
    for (i, input) in raw.into_iter().enumerate() {
        let at = 200 + 3 * u64::try_from(i).unwrap_or(0);
        sim.at(s(at), ScriptEvent::Raw(input));
    }
    sim.at(s(260), ScriptEvent::DiskFull(true))
        .at(
            s(262),
            ScriptEvent::Command(OperatorCommand::Fallback {
                mode: gnomon_core::engine::FallbackMode::Engaged,
            }),
        )
        .at(s(400), ScriptEvent::DiskFull(false));
    Scenario {
        name: "bad-input",
        title: "S9: garbage on every input, a full disk",
        sim,
        duration: s(900),
    }
}
