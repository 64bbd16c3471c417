//! The exposition on hand-built scrapes: names, types, metadata lines,
//! label escaping, one-hot enums, `# EOF`, and both formats.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use gnomon_core::{
    alert::{Alert, AlertKind},
    chrony::{
        ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        Tracking,
    },
    config::Role,
    engine::{
        ChronyStatus, ClockStatus, EngineState, FallbackMode, FallbackStatus, FreezeRecord,
        GpsFault, GpsInsanity, GpsObservation, GpsStatus, GpsVerdict, PrimaryStatus, Status,
    },
    gps::{FixMode, GpsEpoch},
    ipc::{DaemonInfo, GpsReport, PpsReport},
    source::{FallbackTier, SourceAddress},
    time::{FloorSource, MonoTime, Offset, WallTime},
};

use super::*;

const NOW: i64 = 1_795_000_000;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn source(id: ChronySourceId, mode: ChronySourceMode, state: SelectionState) -> SourceReport {
    SourceReport {
        id,
        name: None,
        mode,
        state,
        stratum: 1,
        poll: -4,
        reach: 0b0111_1111,
        last_sample_ago: Some(Duration::from_millis(500)),
        offset: Some(Offset::from_nanos(-1_500)),
        error: Duration::from_micros(20),
        noselect: Some(false),
        remote: None,
    }
}

fn gps_status() -> GpsStatus {
    GpsStatus {
        verdict: GpsVerdict::default(),
        observation: GpsObservation {
            last_epoch: Some(GpsEpoch {
                utc: Some(WallTime::from_unix_secs(NOW)),
                fix: FixMode::Fix3D,
                rmc_valid: Some(true),
                gga_quality: Some(1),
                sats_used: Some(9),
                hdop: Some(0.9),
                received_wall: WallTime::from_unix_secs(NOW),
                received_mono: MonoTime::from_nanos(5),
            }),
            last_epoch_age: Some(Duration::from_millis(300)),
            last_pulse_age: Some(Duration::from_millis(200)),
            last_interval: Some(Duration::from_nanos(1_000_000_120)),
            pps_jitter: Some(Duration::from_nanos(2_500)),
            pulses: 1234,
            missed_pulses: 2,
            alignment: Some(Duration::from_millis(130)),
            gps_offset: Some(Offset::from_nanos(-800)),
            offset_from_pps: true,
        },
        gate_open: true,
        gate_wanted: true,
    }
}

fn scrape(role: Role) -> Scrape {
    let nmea = source(
        ChronySourceId::Refclock("NMEA".into()),
        ChronySourceMode::Refclock,
        SelectionState::Selected,
    );
    let fallback = source(
        ChronySourceId::Address(ip("203.0.113.1")),
        ChronySourceMode::Server,
        SelectionState::Unusable,
    );
    let primary = source(
        ChronySourceId::Address(ip("192.0.2.10")),
        ChronySourceMode::Server,
        SelectionState::Combined,
    );
    let extra = source(
        ChronySourceId::Address(ip("2001:db8::1")),
        ChronySourceMode::Server,
        SelectionState::Falseticker,
    );
    Scrape {
        taken: WallTime::from_unix_nanos(NOW * 1_000_000_000 + 250_000_000),
        daemon: DaemonInfo {
            version: "0.1.0".into(),
            pid: 42,
            config_path: "/etc/gnomon/gnomon.toml".into(),
            started: WallTime::from_unix_secs(NOW - 3600),
            uptime: Duration::from_secs(3600),
            passes: 98_765,
        },
        status: Status {
            role,
            state: EngineState::Primary,
            underlying_state: EngineState::Primary,
            reason: "GPS healthy".into(),
            frozen: None,
            fallback_mode: FallbackMode::Auto,
            fallbacks_engaged: false,
            primary: PrimaryStatus {
                healthy: Some(true),
                detail: "GPS healthy".into(),
                for_: Some(Duration::from_secs(60)),
                distrusted: false,
                unchecked: None,
            },
            gps: (role == Role::Gps).then(gps_status),
            clock: ClockStatus {
                wall: Some(WallTime::from_unix_secs(NOW)),
                floor: WallTime::from_unix_secs(NOW - 86_400),
                floor_source: FloorSource::LastSynchronised,
                before_floor: false,
            },
            chrony: ChronyStatus {
                reachable: true,
                error: None,
                synchronised: true,
                reference: Some("NMEA".into()),
                system_offset: Some(Offset::from_nanos(12)),
                plan_applied: true,
            },
            fallbacks: vec![FallbackStatus {
                address: SourceAddress::parse("203.0.113.1"),
                tier: FallbackTier::PublicIpLiteral,
                selectable: false,
                answering: true,
                usable: true,
                offset: Some(Offset::from_nanos(-1_500)),
                silent_for: None,
            }],
            cross_check: Default::default(),
            changes_last_hour: 1,
            max_changes_per_hour: 6,
            alerts: vec![
                Alert::new(AlertKind::FallbackUnreachable, "a").about("203.0.113.2"),
                Alert::new(AlertKind::FallbackUnreachable, "b").about("203.0.113.3"),
            ],
            certs: Vec::new(),
            trusted_time: None,
        },
        gps: (role == Role::Gps).then(|| GpsReport {
            source: "serial".into(),
            device: "/dev/pts/3".into(),
            connected: true,
            last_error: None,
            bytes_read: 123_456,
            epochs: 600,
            backlog_dropped: 3,
            samples_sent: 590,
            samples_withheld: 10,
            sock_refclock: "/run/chrony/gnomon-nmea.sock".into(),
            status: None,
        }),
        pps: (role == Role::Gps).then(|| PpsReport {
            kind: "kernel".into(),
            device: "/dev/pps0".into(),
            last_error: None,
            recent_edges: Vec::new(),
            status: None,
        }),
        chrony: Some(ChronySnapshot {
            taken_wall: WallTime::from_unix_secs(NOW - 2),
            tracking: Tracking {
                ref_id: 0x4E4D_4541,
                ref_address: None,
                stratum: 1,
                leap: LeapStatus::Normal,
                system_offset: Offset::from_nanos(12),
                last_offset: Offset::from_nanos(-30),
                rms_offset: Duration::from_nanos(250),
                frequency_ppm: -12.5,
                root_delay: Duration::from_micros(1),
                root_dispersion: Duration::from_micros(15),
            },
            sources: vec![nmea, fallback, primary, extra],
        }),
        primary: vec![SourceAddress::parse("192.0.2.10")],
    }
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(match rest {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        })
    })
}

fn sample_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn openmetrics_metadata_and_eof() {
    let text = render(&scrape(Role::Gps), Format::OpenMetrics);
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(!text.contains("\n\n"), "no blank lines in OpenMetrics");
    // Counters: TYPE on the family, samples with _total; info: _info.
    assert!(text.contains("# TYPE gnomon_engine_passes counter\n"));
    assert_eq!(value(&text, "gnomon_engine_passes_total"), Some(98_765.0));
    assert!(text.contains("# TYPE gnomon_build info\n"));
    assert_eq!(
        value(&text, "gnomon_build_info{version=\"0.1.0\"}"),
        Some(1.0)
    );
    // Units: a UNIT line for families in seconds, none for unitless ones.
    assert!(text.contains(
        "# TYPE gnomon_gps_pps_jitter_seconds gauge\n# UNIT gnomon_gps_pps_jitter_seconds seconds\n# HELP gnomon_gps_pps_jitter_seconds "
    ));
    assert!(!text.contains("# UNIT gnomon_frozen"));
    // Every family with samples has TYPE and HELP exactly once; one
    // without (no fallback is silent) is left out whole.
    for f in FAMILIES {
        let want = usize::from(f.name != "gnomon_fallback_silence_seconds");
        assert_eq!(
            text.matches(&format!("# TYPE {} ", f.name)).count(),
            want,
            "{}",
            f.name
        );
        assert_eq!(
            text.matches(&format!("# HELP {} ", f.name)).count(),
            want,
            "{}",
            f.name
        );
    }
}

#[test]
fn prometheus_format_names_samples_in_metadata() {
    let text = render(&scrape(Role::Gps), Format::Prometheus);
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
    assert!(text.contains("# TYPE gnomon_engine_passes_total counter\n"));
    assert!(text.contains("# HELP gnomon_engine_passes_total "));
    assert!(text.contains("# TYPE gnomon_build_info gauge\n"));
    assert!(text.contains("# TYPE gnomon_state gauge\n"));
    // The same samples as OpenMetrics.
    let om = render(&scrape(Role::Gps), Format::OpenMetrics);
    assert_eq!(sample_lines(&text), sample_lines(&om));
}

#[test]
fn state_is_one_hot_over_every_state() {
    let mut s = scrape(Role::Client);
    s.status.state = EngineState::Frozen;
    s.status.underlying_state = EngineState::Fallback;
    s.status.frozen = Some(FreezeRecord {
        reason: "maintenance".into(),
        since: None,
    });
    let text = render(&s, Format::OpenMetrics);
    for state in ENGINE_STATES {
        let want = if state == EngineState::Frozen {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            value(&text, &format!("gnomon_state{{state=\"{state}\"}}")),
            Some(want),
            "{state}"
        );
        let want = if state == EngineState::Fallback {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            value(
                &text,
                &format!("gnomon_underlying_state{{state=\"{state}\"}}")
            ),
            Some(want),
            "{state}"
        );
    }
    assert_eq!(value(&text, "gnomon_frozen"), Some(1.0));
    assert_eq!(
        value(&text, "gnomon_fallback_mode{mode=\"auto\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "gnomon_fallback_mode{mode=\"engaged\"}"),
        Some(0.0)
    );
    // Each state index is its own: the list is every state, once.
    for (i, state) in ENGINE_STATES.iter().enumerate() {
        assert_eq!(engine_state_index(*state), i);
    }
}

#[test]
fn alerts_count_per_kind_with_priority() {
    let text = render(&scrape(Role::Client), Format::OpenMetrics);
    assert_eq!(
        value(
            &text,
            "gnomon_alerts_active{kind=\"fallback-unreachable\",priority=\"warning\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "gnomon_alerts_active{kind=\"clock-before-floor\",priority=\"critical\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("gnomon_alerts_active{"))
            .count(),
        AlertKind::ALL.len()
    );
}

#[test]
fn chrony_and_its_sources() {
    let text = render(&scrape(Role::Client), Format::OpenMetrics);
    assert_eq!(
        value(&text, "gnomon_chrony_system_offset_seconds"),
        Some(12e-9)
    );
    assert_eq!(
        value(&text, "gnomon_chrony_frequency_ratio"),
        Some(-12.5e-6)
    );
    assert_eq!(
        value(&text, "gnomon_chrony_snapshot_age_seconds"),
        Some(2.25)
    );
    assert_eq!(
        value(&text, "gnomon_chrony_leap_status{state=\"normal\"}"),
        Some(1.0)
    );
    // Sources labelled by what they are to gnomon.
    for (src, kind) in [
        ("NMEA", "refclock"),
        ("203.0.113.1", "fallback"),
        ("192.0.2.10", "primary"),
        ("2001:db8::1", "other"),
    ] {
        let labels = format!("{{source=\"{src}\",kind=\"{kind}\"}}");
        assert_eq!(
            value(
                &text,
                &format!("gnomon_chrony_source_offset_seconds{labels}")
            ),
            Some(-1.5e-6),
            "{src}"
        );
        assert_eq!(
            value(
                &text,
                &format!("gnomon_chrony_source_reachability_ratio{labels}")
            ),
            Some(7.0 / 8.0),
            "{src}"
        );
        assert_eq!(
            value(
                &text,
                &format!("gnomon_chrony_source_poll_interval_seconds{labels}")
            ),
            Some(1.0 / 16.0),
            "{src}"
        );
    }
    assert_eq!(
        value(
            &text,
            "gnomon_chrony_source_state{source=\"NMEA\",kind=\"refclock\",state=\"selected\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "gnomon_chrony_source_state{source=\"2001:db8::1\",kind=\"other\",state=\"falseticker\"}"
        ),
        Some(1.0)
    );
    let selected: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gnomon_chrony_source_state{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(selected.len(), 4, "{selected:?}");
    // Fallbacks as gnomon judges them.
    let fb = "{source=\"203.0.113.1\",tier=\"public\"}";
    assert_eq!(
        value(&text, &format!("gnomon_fallback_answering{fb}")),
        Some(1.0)
    );
    assert_eq!(
        value(&text, &format!("gnomon_fallback_selectable{fb}")),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!("gnomon_fallback_silence_seconds{fb}")),
        None
    );
}

#[test]
fn without_chrony_its_families_have_no_samples() {
    let mut s = scrape(Role::Client);
    s.chrony = None;
    s.status.chrony.reachable = false;
    s.status.primary.healthy = None;
    let text = render(&s, Format::OpenMetrics);
    assert_eq!(value(&text, "gnomon_chrony_reachable"), Some(0.0));
    assert!(!text.contains("gnomon_chrony_system_offset_seconds"));
    assert!(!text.contains("\ngnomon_chrony_source_"));
    assert!(!text.contains("\ngnomon_primary_healthy "));
}

#[test]
fn gps_metrics_on_the_gps_role_only() {
    let text = render(&scrape(Role::Gps), Format::OpenMetrics);
    assert_eq!(value(&text, "gnomon_gps_satellites_used"), Some(9.0));
    assert!(text.contains("\ngnomon_gps_hdop 0.9\n"), "{text}");
    assert_eq!(value(&text, "gnomon_gps_pps_jitter_seconds"), Some(2.5e-6));
    assert_eq!(
        value(&text, "gnomon_gps_nmea_pps_delay_seconds"),
        Some(0.13)
    );
    assert_eq!(value(&text, "gnomon_gps_offset_seconds"), Some(-8e-7));
    assert_eq!(value(&text, "gnomon_gps_pps_pulses_total"), Some(1234.0));
    assert_eq!(
        value(&text, "gnomon_gps_pps_missed_pulses_total"),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "gnomon_gps_refclock_samples_sent_total"),
        Some(590.0)
    );
    assert_eq!(value(&text, "gnomon_gps_fix_mode{mode=\"3d\"}"), Some(1.0));
    assert_eq!(
        value(&text, "gnomon_gps_fix_mode{mode=\"none\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "gnomon_gps_info{source=\"serial\",pps=\"kernel\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "gnomon_gps_healthy"), Some(1.0));
    for fault in GPS_FAULTS {
        assert_eq!(
            value(&text, &format!("gnomon_gps_fault{{fault=\"{fault}\"}}")),
            Some(0.0)
        );
    }
    let client = render(&scrape(Role::Client), Format::OpenMetrics);
    assert!(!client.contains("gnomon_gps"), "{client}");
    assert_eq!(
        value(&client, "gnomon_role_info{role=\"client\"}"),
        Some(1.0)
    );
}

#[test]
fn gps_faults_and_insanity_by_name() {
    let mut s = scrape(Role::Gps);
    let gps = s.status.gps.as_mut().unwrap();
    gps.verdict = GpsVerdict {
        faults: vec![GpsFault::PpsMissing, GpsFault::Misaligned { delay: None }],
        insanity: Some(GpsInsanity::Rollover {
            gps: WallTime::from_unix_secs(NOW - 619_315_200),
            floor: WallTime::from_unix_secs(NOW - 86_400),
        }),
    };
    let text = render(&s, Format::OpenMetrics);
    assert_eq!(value(&text, "gnomon_gps_healthy"), Some(0.0));
    assert_eq!(
        value(&text, "gnomon_gps_fault{fault=\"pps-missing\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "gnomon_gps_fault{fault=\"misaligned\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "gnomon_gps_fault{fault=\"no-fix\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "gnomon_gps_insane{reason=\"rollover\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "gnomon_gps_insane{reason=\"jumped\"}"),
        Some(0.0)
    );
    // The name lists hold every variant's name.
    let faults = [
        GpsFault::NmeaMissing { pps_present: true },
        GpsFault::NoFix {
            pps_present: false,
            detail: String::new(),
        },
        GpsFault::PoorQuality {
            detail: String::new(),
        },
        GpsFault::PpsMissing,
        GpsFault::PpsIrregular {
            interval: Duration::ZERO,
        },
        GpsFault::Misaligned { delay: None },
    ];
    let names: BTreeSet<&str> = faults.iter().map(fault_name).collect();
    assert_eq!(names, GPS_FAULTS.into_iter().collect());
}

#[test]
fn clock_before_floor() {
    let mut s = scrape(Role::Client);
    s.status.clock.wall = Some(WallTime::from_unix_secs(86_400));
    s.status.clock.before_floor = true;
    let text = render(&s, Format::OpenMetrics);
    assert_eq!(value(&text, "gnomon_clock_before_floor"), Some(1.0));
    let ahead = value(&text, "gnomon_clock_ahead_of_floor_seconds").unwrap();
    assert_eq!(ahead, (86_400 - (NOW - 86_400)) as f64);
    assert_eq!(
        value(&text, "gnomon_time_floor_seconds"),
        Some((NOW - 86_400) as f64)
    );
    assert_eq!(
        value(&text, "gnomon_system_time_seconds"),
        Some(NOW as f64 + 0.25)
    );
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(escape_label_value("plain"), "plain");
    let mut s = scrape(Role::Client);
    s.daemon.version = "1.0\"evil\\\nx".into();
    let text = render(&s, Format::OpenMetrics);
    assert!(
        text.contains("gnomon_build_info{version=\"1.0\\\"evil\\\\\\nx\"} 1\n"),
        "{text}"
    );
    // A quote or newline can never end a sample line early.
    for line in sample_lines(&text) {
        assert!(line.starts_with("gnomon_"), "{line}");
    }
}

#[test]
fn the_catalogue_follows_the_naming_rules() {
    let mut names = BTreeSet::new();
    for f in FAMILIES {
        assert!(names.insert(f.name), "{} twice", f.name);
        assert!(f.name.starts_with("gnomon_"), "{}", f.name);
        assert!(
            f.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}",
            f.name
        );
        assert!(
            !f.help.is_empty() && !f.help.contains(['"', '\\', '\n']),
            "{}",
            f.name
        );
        if let Some(unit) = f.unit {
            assert!(f.name.ends_with(&format!("_{unit}")), "{}", f.name);
        }
        if f.name.ends_with("_seconds") {
            assert_eq!(f.unit, Some("seconds"), "{}", f.name);
        }
        match f.kind {
            MetricType::Counter => {
                assert!(!f.name.ends_with("_total"), "{}", f.name);
                assert_eq!(f.unit, None, "{}", f.name);
            }
            MetricType::Info => {
                assert!(!f.name.ends_with("_info"), "{}", f.name);
                assert_eq!(f.unit, None, "{}", f.name);
            }
            MetricType::Gauge => {
                assert!(!f.name.ends_with("_total") && !f.name.ends_with("_info"));
            }
        }
        for label in f.labels {
            assert!(!matches!(*label, "le" | "quantile" | "job" | "instance"));
        }
        assert_eq!(family(f.name), Some(f));
    }
}

#[test]
fn every_sample_belongs_to_its_family_with_its_labels() {
    for role in [Role::Gps, Role::Client] {
        let s = scrape(role);
        let samples = collect(&s);
        for (name, list) in &samples.by_family {
            let f = family(name).unwrap_or_else(|| panic!("{name} is not in FAMILIES"));
            for sample in list {
                let labels: Vec<&str> = sample.labels.iter().map(|(n, _)| *n).collect();
                assert_eq!(labels, f.labels, "{name}");
            }
        }
    }
}

#[test]
fn numbers_read_back() {
    assert_eq!(number(1.0), "1");
    assert_eq!(number(0.0), "0");
    assert_eq!(number(1e-9), "0.000000001");
    assert_eq!(number(f64::NAN), "NaN");
    assert_eq!(number(f64::INFINITY), "+Inf");
    assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    for v in [1.795e9 + 0.25, -12.5e-6, 1.0 / 3.0] {
        assert_eq!(number(v).parse::<f64>().unwrap(), v);
    }
}

#[test]
fn accept_negotiation() {
    assert_eq!(Format::negotiate(None), Format::Prometheus);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
    assert_eq!(
        Format::negotiate(Some("text/plain;version=0.0.4")),
        Format::Prometheus
    );
    assert_eq!(
        Format::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::negotiate(Some("text/plain, Application/OpenMetrics-Text ; q=0.3")),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
        Format::Prometheus
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Format::Prometheus.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}
