//! Pure mapping between chrony's wire types (chrony-candm) and
//! `gnomon-core`'s view of chrony. All sign flips live here.
//!
//! chrony's sign conventions, checked against chrony 4.3's sources:
//! - `tracking.current_correction`: `REF_GetTrackingReport` reads the local
//!   clock's pending correction, with `cooked = raw + correction`; chronyc
//!   prints it as "slow of NTP time" when positive. Positive therefore means
//!   the system clock is behind, which is gnomon's sign: copied as is.
//! - `tracking.last_offset`: "a positive value indicates the local time was
//!   ahead of the time sources" (chronyc(1)); negated.
//! - `source_data.latest_meas`: `SST_DoSourceReport` copies sourcestats'
//!   `offsets[]`, which `SST_AccumulateSample` stores as `-sample->offset`;
//!   the NTP sample offset (`ntp_core.c`) is remote − local, so
//!   `latest_meas` is local − source ("positive offsets indicate that the
//!   local clock is ahead of the source", chronyc(1)); negated to
//!   source − system.
//! - `tracking.freq_ppm`: chronyc prints positive as "fast" (the clock runs
//!   fast); passed through unchanged.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use chrony_candm::{
    common::{ChronyAddr, ChronyFloat, SourceFlags},
    reply::{self, SelectDataOptions, SourceMode, SourceState},
    request::{self, AddSrcType},
};
use gnomon_core::{
    chrony::{
        refid_text, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        SourceStatistics, Tracking,
    },
    source::{AssociationKind, NtpSource, SourceAddress},
    time::Offset,
};

/// A reply field with a value chrony never sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} has the impossible value {value}")]
pub struct UnexpectedValue {
    pub field: &'static str,
    pub value: String,
}

fn unexpected(field: &'static str, value: &dyn std::fmt::Display) -> UnexpectedValue {
    UnexpectedValue {
        field,
        value: value.to_string(),
    }
}

/// chrony's `since_sample` when a source has no sample yet (`(uint32_t)-1`).
const NO_SAMPLE: u32 = u32::MAX;

/// The address in a chrony reply, when it is one.
pub fn ip_addr(addr: ChronyAddr) -> Option<IpAddr> {
    match addr {
        ChronyAddr::V4(a) => Some(IpAddr::V4(a)),
        ChronyAddr::V6(a) => Some(IpAddr::V6(a)),
        ChronyAddr::Unspec | ChronyAddr::Id(_) => None,
    }
}

/// chrony's leap status numbers (`NTP_Leap` in chrony's `ntp.h`).
pub fn leap_status(value: u16) -> Result<LeapStatus, UnexpectedValue> {
    match value {
        0 => Ok(LeapStatus::Normal),
        1 => Ok(LeapStatus::InsertSecond),
        2 => Ok(LeapStatus::DeleteSecond),
        3 => Ok(LeapStatus::Unsynchronised),
        other => Err(unexpected("leap status", &other)),
    }
}

/// Seconds as chrony sends them to a non-negative duration; a negative
/// value (never sent for these fields) becomes zero, a huge one saturates.
pub fn duration(secs: ChronyFloat) -> Duration {
    let secs = f64::from(secs);
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

fn stratum(value: u16) -> Result<u8, UnexpectedValue> {
    u8::try_from(value).map_err(|_| unexpected("stratum", &value))
}

/// chrony's `tracking` reply in gnomon's terms.
pub fn tracking(t: &reply::Tracking) -> Result<Tracking, UnexpectedValue> {
    Ok(Tracking {
        ref_id: t.ref_id,
        ref_address: ip_addr(t.ip_addr),
        stratum: stratum(t.stratum)?,
        leap: leap_status(t.leap_status)?,
        // Positive = system clock slow of NTP time = gnomon's sign.
        system_offset: Offset::from_secs_f64(f64::from(t.current_correction)),
        // Positive = local time was ahead: flip.
        last_offset: -Offset::from_secs_f64(f64::from(t.last_offset)),
        rms_offset: duration(t.rms_offset),
        frequency_ppm: f64::from(t.freq_ppm),
        root_delay: duration(t.root_delay),
        root_dispersion: duration(t.root_dispersion),
    })
}

/// Which source a `source_data` reply is about. Refclocks have no address:
/// chrony puts their refid into an IPv4 address (`SRC_ReportSource`).
/// `None` for sources whose name is not resolved yet (chrony's `IPADDR_ID`
/// placeholder), which chronyc also hides unless asked with `-a`.
pub fn source_id(mode: SourceMode, addr: ChronyAddr) -> Option<ChronySourceId> {
    match (mode, addr) {
        (SourceMode::Ref, ChronyAddr::V4(refid)) => {
            Some(ChronySourceId::Refclock(refid_text(u32::from(refid))))
        }
        (SourceMode::Ref, _) => None,
        (SourceMode::Client | SourceMode::Peer, addr) => ip_addr(addr).map(ChronySourceId::Address),
    }
}

pub fn source_mode(mode: SourceMode) -> ChronySourceMode {
    match mode {
        SourceMode::Client => ChronySourceMode::Server,
        SourceMode::Peer => ChronySourceMode::Peer,
        SourceMode::Ref => ChronySourceMode::Refclock,
    }
}

/// chrony-candm's names follow chrony's `RPY_SD_ST_*` constants, which do
/// not mean what they say: `SRC_ReportSource` reports a source that is
/// "used for synchronisation, not system peer" (combined) as
/// `RPT_UNSELECTED`, which chronyc prints `+`, and a source that is
/// acceptable but not combined as `RPT_SELECTABLE`, printed `-`. A
/// `noselect` source has status `SRC_UNSELECTABLE`, reported as
/// `NONSELECTABLE` and printed `?`.
pub fn selection_state(state: SourceState) -> SelectionState {
    match state {
        SourceState::Selected => SelectionState::Selected,
        SourceState::Unselected => SelectionState::Combined,
        SourceState::Selectable => SelectionState::NotCombined,
        SourceState::NonSelectable => SelectionState::Unusable,
        SourceState::Falseticker => SelectionState::Falseticker,
        SourceState::Jittery => SelectionState::Jittery,
    }
}

/// One `source_data` reply; `Ok(None)` for an unresolved source (see
/// [`source_id`]). `name` and `noselect` come from other requests.
pub fn source_report(
    d: &reply::SourceData,
    name: Option<String>,
    noselect: Option<bool>,
) -> Result<Option<SourceReport>, UnexpectedValue> {
    let Some(id) = source_id(d.mode, d.ip_addr) else {
        return Ok(None);
    };
    let has_sample = d.since_sample != NO_SAMPLE;
    Ok(Some(SourceReport {
        id,
        name,
        mode: source_mode(d.mode),
        state: selection_state(d.state),
        stratum: stratum(d.stratum)?,
        poll: i8::try_from(d.poll).map_err(|_| unexpected("poll", &d.poll))?,
        reach: u8::try_from(d.reachability)
            .map_err(|_| unexpected("reachability", &d.reachability))?,
        last_sample_ago: has_sample.then(|| Duration::from_secs(u64::from(d.since_sample))),
        // chrony: local − source; gnomon: source − system.
        offset: has_sample.then(|| -Offset::from_secs_f64(f64::from(d.latest_meas))),
        error: duration(d.latest_meas_err),
        noselect,
        remote: None,
    }))
}

/// One `sourcestats` reply for the source `id` (taken from the
/// `source_data` reply of the same index: for a refclock, chrony puts the
/// refid in the address field here too).
pub fn source_statistics(id: ChronySourceId, st: &reply::SourceStats) -> Option<SourceStatistics> {
    Some(SourceStatistics {
        id,
        samples: st.n_samples,
        runs: st.n_runs,
        span: Duration::from_secs(u64::from(st.span_seconds)),
        std_dev: duration(st.sd),
        residual_frequency_ppm: f64::from(st.resid_freq_ppm),
        skew_ppm: f64::from(st.skew_ppm),
        // Like the sources report, chrony's estimate is local − source.
        estimated_offset: -Offset::from_secs_f64(f64::from(st.est_offset)),
        estimated_offset_error: duration(st.est_offset_err),
    })
}

/// Whether a `select_data` reply belongs to the source `id`: indices can
/// shift between two requests when sources are added or removed.
pub fn select_data_matches(s: &reply::SelectData, id: &ChronySourceId) -> bool {
    match id {
        ChronySourceId::Address(ip) => ip_addr(s.ip_addr) == Some(*ip),
        ChronySourceId::Refclock(text) => refid_text(s.ref_id) == *text,
    }
}

/// chrony's effective selection options (configured ones plus what
/// `authselectmode` adds) include `noselect`.
pub fn noselect(s: &reply::SelectData) -> bool {
    s.eff_options.contains(SelectDataOptions::NOSELECT)
}

/// The NUL-terminated name in an `ntp_source_name` reply; `None` if empty.
pub fn source_name(n: &reply::NtpSourceName) -> Option<String> {
    let end = n.name.iter().position(|b| *b == 0).unwrap_or(n.name.len());
    let bytes = n.name.get(..end).unwrap_or(&[]);
    let name = String::from_utf8_lossy(bytes).into_owned();
    (!name.is_empty()).then_some(name)
}

/// chrony's defaults for an added source (chrony 4.3 `srcparams.h`, as
/// chronyc's `add server` sends them).
const DEFAULT_PORT: u16 = 123;
const DEFAULT_MINPOLL: i8 = 6;
const DEFAULT_MAXPOLL: i8 = 10;
const DEFAULT_PRESEND_MINPOLL: i32 = 100;
const DEFAULT_POLL_TARGET: u32 = 8;
const DEFAULT_MAX_SOURCES: u32 = 4;
/// `SRC_DEFAULT_MINSAMPLES`/`MAXSAMPLES` are -1 ("chrony decides"), sent
/// as the 32-bit pattern.
const DEFAULT_SAMPLES: u32 = u32::MAX;
const DEFAULT_NTS_PORT: u32 = 4460;
const DEFAULT_MAX_DELAY: f64 = 3.0;
const DEFAULT_MAX_DELAY_DEV_RATIO: f64 = 10.0;
const DEFAULT_ASYMMETRY: f64 = 1.0;

/// The `add source` request for one NTP association, like
/// `chronyc add server|peer ADDRESS [options]`.
pub fn add_source_request(
    source: &NtpSource,
    noselect: bool,
) -> Result<request::NtpSource, UnexpectedValue> {
    let text = source.address.to_string();
    let mut name = [0u8; 256];
    // chrony requires the last byte to stay NUL.
    let room = name
        .get_mut(..255)
        .ok_or_else(|| unexpected("name buffer", &0))?;
    let target = room
        .get_mut(..text.len())
        .ok_or_else(|| unexpected("source name (longer than 255 bytes)", &text))?;
    target.copy_from_slice(text.as_bytes());
    if matches!(source.address, SourceAddress::Hostname(ref h) if h.is_empty()) {
        return Err(unexpected("source name", &"an empty hostname"));
    }

    let mut flags = SourceFlags::ONLINE;
    if source.iburst {
        flags |= SourceFlags::IBURST;
    }
    if noselect {
        flags |= SourceFlags::NOSELECT;
    }
    Ok(request::NtpSource {
        src_type: match source.kind {
            AssociationKind::Server => AddSrcType::Server,
            AssociationKind::Peer => AddSrcType::Peer,
        },
        name,
        port: u32::from(source.port.unwrap_or(DEFAULT_PORT)),
        minpoll: i32::from(source.minpoll.unwrap_or(DEFAULT_MINPOLL)),
        maxpoll: i32::from(source.maxpoll.unwrap_or(DEFAULT_MAXPOLL)),
        presend_minpoll: DEFAULT_PRESEND_MINPOLL,
        min_stratum: 0,
        poll_target: DEFAULT_POLL_TARGET,
        version: 0,
        max_sources: DEFAULT_MAX_SOURCES,
        min_samples: DEFAULT_SAMPLES,
        max_samples: DEFAULT_SAMPLES,
        authkey: source.key.unwrap_or(0),
        nts_port: DEFAULT_NTS_PORT,
        max_delay: ChronyFloat::from(DEFAULT_MAX_DELAY),
        max_delay_ratio: ChronyFloat::from(0.0),
        max_delay_dev_ratio: ChronyFloat::from(DEFAULT_MAX_DELAY_DEV_RATIO),
        min_delay: ChronyFloat::from(0.0),
        asymmetry: ChronyFloat::from(DEFAULT_ASYMMETRY),
        offset: ChronyFloat::from(0.0),
        flags,
        filter_length: 0,
        cert_set: 0,
    })
}

/// The address mask chronyc uses for a single host (`bits_to_mask(-1)`).
pub fn host_mask(address: IpAddr) -> ChronyAddr {
    match address {
        IpAddr::V4(_) => ChronyAddr::V4(Ipv4Addr::from(u32::MAX)),
        IpAddr::V6(_) => ChronyAddr::V6(Ipv6Addr::from(u128::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn f(x: f64) -> ChronyFloat {
        ChronyFloat::from(x)
    }

    fn wire_tracking() -> reply::Tracking {
        reply::Tracking {
            ref_id: 0x7F00_0001,
            ip_addr: ChronyAddr::V4(Ipv4Addr::LOCALHOST),
            stratum: 2,
            leap_status: 0,
            ref_time: UNIX_EPOCH,
            current_correction: f(0.25),
            last_offset: f(0.5),
            rms_offset: f(0.001),
            freq_ppm: f(-3.0),
            resid_freq_ppm: f(0.0),
            skew_ppm: f(0.1),
            root_delay: f(0.002),
            root_dispersion: f(0.003),
            last_update_interval: f(16.0),
        }
    }

    fn wire_source(mode: SourceMode, state: SourceState, addr: ChronyAddr) -> reply::SourceData {
        reply::SourceData {
            ip_addr: addr,
            poll: -4,
            stratum: 1,
            state,
            mode,
            flags: SourceFlags::empty(),
            reachability: 0o377,
            since_sample: 3,
            orig_latest_meas: f(0.010),
            latest_meas: f(0.010),
            latest_meas_err: f(0.0005),
        }
    }

    fn near(a: Offset, b: Offset) -> bool {
        (a - b).abs() < Duration::from_micros(1)
    }

    #[test]
    fn tracking_keeps_slow_as_positive_and_flips_last_offset() {
        let t = tracking(&wire_tracking()).unwrap();
        assert_eq!(t.ref_id, 0x7F00_0001);
        assert_eq!(t.ref_address, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(t.stratum, 2);
        assert_eq!(t.leap, LeapStatus::Normal);
        // chronyc: "0.25 seconds slow of NTP time": the clock is behind.
        assert!(
            near(t.system_offset, Offset::from_millis(250)),
            "{:?}",
            t.system_offset
        );
        // chronyc: last offset +0.5 = local was ahead: source − system < 0.
        assert!(
            near(t.last_offset, Offset::from_millis(-500)),
            "{:?}",
            t.last_offset
        );
        assert!((t.frequency_ppm + 3.0).abs() < 1e-6);
        assert!(
            t.root_delay > Duration::from_micros(1990)
                && t.root_delay < Duration::from_micros(2010)
        );
        assert!(t.synchronised());
    }

    #[test]
    fn leap_numbers_follow_chrony() {
        assert_eq!(leap_status(0), Ok(LeapStatus::Normal));
        assert_eq!(leap_status(1), Ok(LeapStatus::InsertSecond));
        assert_eq!(leap_status(2), Ok(LeapStatus::DeleteSecond));
        assert_eq!(leap_status(3), Ok(LeapStatus::Unsynchronised));
        assert!(leap_status(4).is_err());
        let mut t = wire_tracking();
        t.leap_status = 3;
        t.stratum = 0;
        assert!(!tracking(&t).unwrap().synchronised());
        t.stratum = 300;
        assert!(tracking(&t).is_err());
    }

    #[test]
    fn source_offset_is_source_minus_system() {
        // chrony: latest_meas +10 ms = local clock ahead of the source.
        let d = wire_source(
            SourceMode::Client,
            SourceState::Selected,
            ChronyAddr::V4(Ipv4Addr::LOCALHOST),
        );
        let r = source_report(&d, Some("127.0.0.1".into()), Some(false))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.id,
            ChronySourceId::Address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert!(
            near(r.offset.unwrap(), Offset::from_millis(-10)),
            "{:?}",
            r.offset
        );
        assert_eq!(r.last_sample_ago, Some(Duration::from_secs(3)));
        assert_eq!(r.mode, ChronySourceMode::Server);
        assert_eq!(r.state, SelectionState::Selected);
        assert_eq!((r.poll, r.reach, r.stratum), (-4, 0o377, 1));
        assert_eq!(r.name.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.noselect, Some(false));
        assert!(r.error > Duration::from_micros(490) && r.error < Duration::from_micros(510));
    }

    #[test]
    fn no_sample_means_no_offset() {
        let mut d = wire_source(
            SourceMode::Peer,
            SourceState::NonSelectable,
            ChronyAddr::V6(Ipv6Addr::LOCALHOST),
        );
        d.since_sample = u32::MAX;
        d.latest_meas = f(0.0);
        let r = source_report(&d, None, None).unwrap().unwrap();
        assert_eq!((r.offset, r.last_sample_ago), (None, None));
        assert_eq!(r.mode, ChronySourceMode::Peer);
        assert_eq!(r.state, SelectionState::Unusable);
    }

    #[test]
    fn states_map_like_chronyc_prints_them() {
        for (wire, ours) in [
            (SourceState::Selected, '*'),
            (SourceState::Unselected, '+'),
            (SourceState::Selectable, '-'),
            (SourceState::NonSelectable, '?'),
            (SourceState::Falseticker, 'x'),
            (SourceState::Jittery, '~'),
        ] {
            assert_eq!(selection_state(wire).symbol(), ours, "{wire:?}");
        }
    }

    #[test]
    fn refclocks_are_named_by_refid() {
        let nmea = ChronyAddr::V4(Ipv4Addr::from(0x4E4D_4541));
        let d = wire_source(SourceMode::Ref, SourceState::Selected, nmea);
        let r = source_report(&d, None, None).unwrap().unwrap();
        assert_eq!(r.id, ChronySourceId::Refclock("NMEA".into()));
        assert_eq!(r.mode, ChronySourceMode::Refclock);
        // Unresolved names (IPADDR_ID) are skipped, like chronyc without -a.
        let d = wire_source(
            SourceMode::Client,
            SourceState::NonSelectable,
            ChronyAddr::Id(7),
        );
        assert_eq!(source_report(&d, None, None).unwrap(), None);
    }

    #[test]
    fn garbage_values_are_errors_not_panics() {
        let mut d = wire_source(
            SourceMode::Client,
            SourceState::Selected,
            ChronyAddr::V4(Ipv4Addr::LOCALHOST),
        );
        d.poll = 1000;
        assert!(source_report(&d, None, None).is_err());
        d.poll = 6;
        d.reachability = 0x1FF;
        assert!(source_report(&d, None, None).is_err());
        assert_eq!(duration(f(-1.0)), Duration::ZERO);
        // chrony's float saturates near 2^62 s; still no panic.
        assert!(duration(f(1e300)) > Duration::from_secs(1 << 60));
    }

    #[test]
    fn select_data_matches_by_address_or_refid() {
        let s = reply::SelectData {
            ref_id: 0x5050_5300,
            ip_addr: ChronyAddr::Unspec,
            state_char: b'N',
            authentication: 0,
            leap: 0,
            pad: 0,
            conf_options: SelectDataOptions::NOSELECT,
            eff_options: SelectDataOptions::NOSELECT | SelectDataOptions::TRUST,
            last_sample_ago: 0,
            score: f(0.0),
            lo_limit: f(0.0),
            hi_limit: f(0.0),
        };
        assert!(select_data_matches(
            &s,
            &ChronySourceId::Refclock("PPS".into())
        ));
        assert!(!select_data_matches(
            &s,
            &ChronySourceId::Address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        ));
        assert!(noselect(&s));
        let s = reply::SelectData {
            ip_addr: ChronyAddr::V4(Ipv4Addr::LOCALHOST),
            eff_options: SelectDataOptions::empty(),
            ..s
        };
        assert!(select_data_matches(
            &s,
            &ChronySourceId::Address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        ));
        assert!(!noselect(&s));
    }

    #[test]
    fn names_stop_at_nul() {
        let mut name = [0u8; 256];
        name[..9].copy_from_slice(b"ntp.local");
        assert_eq!(
            source_name(&reply::NtpSourceName { name }).as_deref(),
            Some("ntp.local")
        );
        assert_eq!(source_name(&reply::NtpSourceName { name: [0; 256] }), None);
        assert_eq!(
            source_name(&reply::NtpSourceName { name: [b'a'; 256] }).map(|n| n.len()),
            Some(256)
        );
    }

    #[test]
    fn add_source_request_uses_chronyc_defaults() {
        let src = NtpSource {
            address: SourceAddress::Ip("206.108.0.131".parse().unwrap()),
            kind: AssociationKind::Server,
            port: None,
            minpoll: Some(-4),
            maxpoll: None,
            key: None,
            iburst: true,
        };
        let r = add_source_request(&src, true).unwrap();
        assert_eq!(&r.name[..13], b"206.108.0.131");
        assert!(r.name[13..].iter().all(|b| *b == 0));
        assert_eq!(r.src_type, AddSrcType::Server);
        assert_eq!((r.port, r.minpoll, r.maxpoll), (123, -4, 10));
        assert!(r
            .flags
            .contains(SourceFlags::ONLINE | SourceFlags::IBURST | SourceFlags::NOSELECT));
        let r = add_source_request(
            &NtpSource {
                kind: AssociationKind::Peer,
                iburst: false,
                ..src.clone()
            },
            false,
        )
        .unwrap();
        assert_eq!(r.src_type, AddSrcType::Peer);
        assert_eq!(r.flags, SourceFlags::ONLINE);

        let long = NtpSource {
            address: SourceAddress::Hostname("a".repeat(256)),
            ..src
        };
        assert!(add_source_request(&long, false).is_err());
    }

    #[test]
    fn host_masks_are_all_ones() {
        assert_eq!(
            host_mask("10.0.0.1".parse().unwrap()),
            ChronyAddr::V4(Ipv4Addr::BROADCAST)
        );
        assert_eq!(
            host_mask("::1".parse().unwrap()),
            ChronyAddr::V6(Ipv6Addr::from(u128::MAX))
        );
    }
}
