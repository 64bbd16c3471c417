use std::time::Duration;

use proptest::prelude::*;

use super::*;

const FULL_GPS: &str = r#"
role = "gps"
allow-dns-fallbacks = true

[gps]
source = "serial"
device = "/dev/ttyACM0"
baud-rate = 115200
gpsd-address = "127.0.0.1:2948"
pps = "gpio"
pps-device = "/dev/pps1"
pps-gpio = 4
sock-refclock = "/run/chrony/nmea.sock"

[[fallback.servers]]
address = "203.0.113.1"
port = 1123
minpoll = 4
maxpoll = 8
key = 7
iburst = false

[[fallback.servers]]
address = "ntp.example.org"

[[fallback.peers]]
address = "2001:db8::12"
follows-this-host = true

[thresholds]
grace = "90s"
hold = "15m"
max-changes-per-hour = 4
realert-interval = "1h"
min-satellites = 6
max-hdop = 2.5
min-fix = "3d"
nmea-timeout = 5
pps-timeout = "3s"
pps-interval-tolerance = "50ms"
nmea-window = "800ms"
gps-settle = "1m30s"
max-gps-disagreement = 0.25
max-primary-disagreement = "50ms"
max-primary-stratum = 3
max-distance = "1.5s"
fallback-unreachable-after = "20m"
step-threshold = "2s"
floor-save-interval = "30m"
chrony-max-age = "20s"

[paths]
chrony-socket = "/var/run/chrony/chronyd.sock"
runtime-dir = "/run/gnomon2"
sources-dir = "/run/gnomon2/sources"
state-dir = "/var/lib/gnomon2"
control-socket = "/run/gnomon2/ctl.sock"
floor-file = "/etc/gnomon/floor"
"#;

const MINIMAL_CLIENT: &str = r#"
role = "client"
[[primary.servers]]
address = "192.0.2.10"
[[fallback.servers]]
address = "203.0.113.1"
"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn syntax(text: &str) -> (usize, usize, String) {
    match Config::from_toml_str(text) {
        Err(ConfigError::Syntax {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

/// (severity, key) of every problem, in order.
fn problem_keys(config: &Config) -> Vec<(Severity, String)> {
    config
        .check()
        .into_iter()
        .map(|p| (p.severity, p.key))
        .collect()
}

fn client_with_fallbacks(servers: &[&str]) -> Config {
    let mut config = Config::example_client();
    config.fallback.servers = servers.iter().map(|a| NtpServerConfig::new(*a)).collect();
    config
}

#[test]
fn full_example_parses_every_key() {
    let (config, warnings) = Config::load(FULL_GPS).unwrap();
    assert_eq!(config.role, Role::Gps);
    assert!(config.allow_dns_fallbacks);
    assert!(config.primary.servers.is_empty());
    let gps = config.gps.as_ref().unwrap();
    assert_eq!(
        *gps,
        GpsConfig {
            source: GpsSourceKind::Serial,
            device: "/dev/ttyACM0".into(),
            baud_rate: 115_200,
            gpsd_address: "127.0.0.1:2948".into(),
            pps: PpsKind::Gpio,
            pps_device: "/dev/pps1".into(),
            pps_gpio: 4,
            sock_refclock: "/run/chrony/nmea.sock".into(),
        }
    );
    assert_eq!(
        config.fallback.servers[0],
        NtpServerConfig {
            address: "203.0.113.1".into(),
            port: Some(1123),
            minpoll: Some(4),
            maxpoll: Some(8),
            key: Some(7),
            iburst: false,
            follows_this_host: false,
        }
    );
    assert_eq!(
        config.fallback.servers[1],
        NtpServerConfig::new("ntp.example.org")
    );
    assert_eq!(
        config.fallback.peers,
        vec![NtpServerConfig {
            follows_this_host: true,
            ..NtpServerConfig::new("2001:db8::12")
        }]
    );
    assert_eq!(
        config.thresholds,
        Thresholds {
            grace: ms(90_000),
            hold: ms(900_000),
            max_changes_per_hour: 4,
            realert_interval: ms(3_600_000),
            min_satellites: 6,
            max_hdop: 2.5,
            min_fix: FixMode::Fix3D,
            nmea_timeout: ms(5000),
            pps_timeout: ms(3000),
            pps_interval_tolerance: ms(50),
            nmea_window: ms(800),
            gps_settle: ms(90_000),
            max_gps_disagreement: ms(250),
            max_primary_disagreement: ms(50),
            max_primary_stratum: 3,
            max_distance: ms(1500),
            fallback_unreachable_after: ms(1_200_000),
            step_threshold: ms(2000),
            floor_save_interval: ms(1_800_000),
            chrony_max_age: ms(20_000),
        }
    );
    assert_eq!(
        config.paths,
        Paths {
            chrony_socket: "/var/run/chrony/chronyd.sock".into(),
            runtime_dir: "/run/gnomon2".into(),
            sources_dir: "/run/gnomon2/sources".into(),
            state_dir: "/var/lib/gnomon2".into(),
            control_socket: "/run/gnomon2/ctl.sock".into(),
            floor_file: Some("/etc/gnomon/floor".into()),
        }
    );
    // The one hostname fallback is allowed, with its warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "fallback.servers[1].address");
    assert_eq!(warnings[0].severity, Severity::Warning);
}

#[test]
fn every_default_value() {
    let config = Config::from_toml_str(MINIMAL_CLIENT).unwrap();
    assert!(!config.allow_dns_fallbacks);
    assert_eq!(config.gps, None);
    assert!(config.fallback.peers.is_empty());
    let server = &config.primary.servers[0];
    assert_eq!(server.port, None);
    assert_eq!(server.minpoll, None);
    assert_eq!(server.maxpoll, None);
    assert_eq!(server.key, None);
    assert!(server.iburst);

    let t = &config.thresholds;
    assert_eq!(t.grace, ms(60_000));
    assert_eq!(t.hold, ms(300_000));
    assert_eq!(t.max_changes_per_hour, 6);
    assert_eq!(t.realert_interval, ms(600_000));
    assert_eq!(t.min_satellites, 4);
    assert_eq!(t.max_hdop, 5.0);
    assert_eq!(t.min_fix, FixMode::Fix2D);
    assert_eq!(t.nmea_timeout, ms(3000));
    assert_eq!(t.pps_timeout, ms(2500));
    assert_eq!(t.pps_interval_tolerance, ms(100));
    assert_eq!(t.nmea_window, ms(900));
    assert_eq!(t.gps_settle, ms(10_000));
    assert_eq!(t.max_gps_disagreement, ms(500));
    assert_eq!(t.max_primary_stratum, 4);
    assert_eq!(t.max_distance, ms(1000));
    assert_eq!(t.fallback_unreachable_after, ms(600_000));
    assert_eq!(t.step_threshold, ms(1000));
    assert_eq!(t.floor_save_interval, ms(600_000));
    assert_eq!(t.chrony_max_age, ms(15_000));
    assert_eq!(*t, Thresholds::default());

    let p = &config.paths;
    assert_eq!(p.chrony_socket, "/run/chrony/chronyd.sock");
    assert_eq!(p.runtime_dir, "/run/gnomon");
    assert_eq!(p.sources_dir, "/run/gnomon/chrony");
    assert_eq!(p.state_dir, "/var/lib/gnomon");
    assert_eq!(p.control_socket, "/run/gnomon/gnomon.sock");
    assert_eq!(p.floor_file, None);
    assert_eq!(*p, Paths::default());

    let gps = Config::from_toml_str("role = \"gps\"\n[gps]\n")
        .unwrap()
        .gps
        .unwrap();
    assert_eq!(gps.source, GpsSourceKind::Uart);
    assert_eq!(gps.device, "/dev/serial0");
    assert_eq!(gps.baud_rate, 9600);
    assert_eq!(gps.gpsd_address, "127.0.0.1:2947");
    assert_eq!(gps.pps, PpsKind::Kernel);
    assert_eq!(gps.pps_device, "/dev/pps0");
    assert_eq!(gps.pps_gpio, 18);
    assert_eq!(gps.sock_refclock, "/run/chrony/gnomon-nmea.sock");
    assert_eq!(gps, GpsConfig::default());
}

#[test]
fn unknown_key_is_a_syntax_error_at_its_line_and_column() {
    let text = "role = \"client\"\n\n[thresholds]\ngrace = \"60s\"\n  gracee = \"5s\"\n";
    let (line, column, message) = syntax(text);
    assert_eq!((line, column), (5, 3));
    assert!(
        message.starts_with("thresholds.gracee: unknown field `gracee`"),
        "{message}"
    );

    let (line, column, message) = syntax("role = \"gps\"\nfallbacks = []\n");
    assert_eq!((line, column), (2, 1));
    assert!(message.starts_with("fallbacks: unknown field"), "{message}");

    let text = "role = \"client\"\n[[fallback.servers]]\naddress = \"203.0.113.1\"\n[[fallback.servers]]\naddress = \"203.0.113.2\"\nprot = 123\n";
    let (line, column, message) = syntax(text);
    assert_eq!((line, column), (6, 1));
    assert!(
        message.starts_with("fallback.servers[1].prot: unknown field"),
        "{message}"
    );
}

#[test]
fn wrong_type_is_a_syntax_error_naming_the_key() {
    let text = "role = \"client\"\n[thresholds]\nmin-satellites = \"four\"\n";
    let (line, column, message) = syntax(text);
    assert_eq!((line, column), (3, 18));
    assert!(
        message.starts_with("thresholds.min-satellites: invalid type"),
        "{message}"
    );

    let (line, _, message) = syntax("role = \"client\"\n[gps]\npps-gpio = 300\n");
    assert_eq!(line, 3);
    assert!(
        message.starts_with("gps.pps-gpio: invalid value"),
        "{message}"
    );

    let (line, _, message) = syntax("role = \"satellite\"\n");
    assert_eq!(line, 1);
    assert!(message.contains("unknown variant `satellite`"), "{message}");

    let (line, _, message) = syntax("role = \"gps\"\n[gps]\npps = \"yes\"\n");
    assert_eq!(line, 3);
    assert!(message.starts_with("gps.pps: unknown variant"), "{message}");
}

#[test]
fn bad_duration_is_a_syntax_error_with_the_reason() {
    let (line, column, message) = syntax("role = \"client\"\n[thresholds]\nhold = \"5 minutes\"\n");
    assert_eq!((line, column), (3, 8));
    assert!(
        message.starts_with("thresholds.hold: invalid duration"),
        "{message}"
    );
    assert!(message.contains("unknown unit `minutes`"), "{message}");
}

#[test]
fn missing_keys_are_named() {
    let (line, _, message) = syntax("[[primary.servers]]\naddress = \"192.0.2.1\"\n");
    assert_eq!(line, 1);
    assert_eq!(message, "role: missing field `role`");

    let text = "role = \"client\"\n[[primary.servers]]\naddress = \"192.0.2.1\"\n[[primary.servers]]\nport = 123\n";
    let (line, _, message) = syntax(text);
    assert_eq!(line, 4);
    assert_eq!(
        message,
        "primary.servers[1].address: missing field `address`"
    );
}

#[test]
fn malformed_toml_reports_position_without_a_key() {
    let (line, column, message) = syntax("role = \"client\"\n[thresholds\ngrace = 1\n");
    assert_eq!((line, column), (2, 12));
    assert!(message.starts_with("invalid table header"), "{message}");
    assert!(!message.contains('\n'));

    let (line, _, message) = syntax("role = \"client\"\nrole = \"gps\"\n");
    assert_eq!(line, 2);
    assert!(message.contains("duplicate key"), "{message}");
}

#[test]
fn several_mistakes_are_all_reported_with_their_keys() {
    let text = r#"
role = "client"

[[primary.servers]]
address = "192.0.2.10"
port = 0
minpoll = 10
maxpoll = 6

[[fallback.servers]]
address = "203.0.113.1"

[[fallback.servers]]
address = "time.example.net"
key = 0

[[fallback.peers]]
address = "203.0.113.1"

[gps]

[thresholds]
grace = "10m"
max-changes-per-hour = 1
min-fix = "none"
nmea-window = "1s"
pps-timeout = "1s"
max-primary-stratum = 16
chrony-max-age = 0

[paths]
state-dir = "var/lib/gnomon"
control-socket = "/run/gnomon/chrony/ctl.sock"
"#;
    let err = Config::load(text).unwrap_err();
    let ConfigError::Invalid { problems } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    let got: Vec<(Severity, &str)> = problems
        .iter()
        .map(|p| (p.severity, p.key.as_str()))
        .collect();
    use Severity::{Error as E, Warning as W};
    assert_eq!(
        got,
        vec![
            (E, "gps"),
            (E, "primary.servers[0].port"),
            (E, "primary.servers[0].minpoll"),
            (E, "fallback.servers[1].address"),
            (E, "fallback.servers[1].key"),
            (E, "fallback.peers[0].address"),
            (E, "thresholds.chrony-max-age"),
            (E, "thresholds.max-changes-per-hour"),
            (E, "thresholds.min-fix"),
            (E, "thresholds.pps-timeout"),
            (E, "thresholds.nmea-window"),
            (E, "thresholds.max-primary-stratum"),
            (W, "thresholds.hold"),
            (E, "paths.state-dir"),
            (E, "paths.control-socket"),
        ]
    );
    let rendered = err.to_string();
    assert!(
        rendered.starts_with("invalid configuration: 14 errors\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("\n  error: fallback.servers[1].key: "),
        "{rendered}"
    );
    assert!(
        rendered.contains("fallback.servers[0].address and fallback.peers[0].address both name"),
        "{rendered}"
    );
}

#[test]
fn hostname_fallback_is_refused_unless_allowed() {
    let mut config = client_with_fallbacks(&["203.0.113.1", "ntp.example.org"]);
    let problems = config.check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(p.severity, Severity::Error);
    assert_eq!(p.key, "fallback.servers[1].address");
    assert!(
        p.message.contains(
            "a fallback must work when DNS does not: use an IP literal or set allow-dns-fallbacks = true"
        ),
        "{p}"
    );

    config.allow_dns_fallbacks = true;
    let problems = config.check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].severity, Severity::Warning);
    assert_eq!(problems[0].key, "fallback.servers[1].address");
    assert!(problems[0].message.contains("before the time floor"));

    // A hostname is fine as a client's primary; peers count as fallbacks.
    let mut config = Config::example_client();
    config.primary.servers = vec![NtpServerConfig::new("gps-pi.lan")];
    assert!(config.check().is_empty(), "{:?}", config.check());
    config.fallback.peers = vec![NtpServerConfig::new("other-pi.lan")];
    assert_eq!(
        problem_keys(&config),
        vec![(Severity::Error, "fallback.peers[0].address".to_owned())]
    );
}

#[test]
fn too_few_independent_fallbacks_is_said() {
    let mut config = Config::example_client();
    assert!(config.check().is_empty(), "{:?}", config.check());
    config.fallback.servers.truncate(1);
    config.fallback.peers = vec![NtpServerConfig {
        follows_this_host: true,
        ..NtpServerConfig::new("192.0.2.12")
    }];
    let problems = config.check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "fallback");
    assert_eq!(problems[0].severity, Severity::Warning);
    assert!(
        problems[0].message.contains("cannot be cross-checked"),
        "{}",
        problems[0].message
    );
    // The example GPS host: its LAN peers follow it, three public servers
    // remain independent.
    assert!(Config::example_gps().check().is_empty());
}

#[test]
fn load_returns_warnings_and_refuses_errors() {
    let text = "role = \"client\"\nallow-dns-fallbacks = true\n[[primary.servers]]\naddress = \"192.0.2.10\"\n[[fallback.servers]]\naddress = \"ntp.example.org\"\n[[fallback.servers]]\naddress = \"203.0.113.9\"\n";
    let (config, warnings) = Config::load(text).unwrap();
    assert!(config.allow_dns_fallbacks);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        warnings[0].to_string(),
        format!(
            "warning: fallback.servers[0].address: {}",
            warnings[0].message
        )
    );

    let refused = text.replace("allow-dns-fallbacks = true\n", "");
    match Config::load(&refused) {
        Err(ConfigError::Invalid { problems }) => {
            assert_eq!(problems.len(), 1);
            assert!(problems[0]
                .to_string()
                .starts_with("error: fallback.servers[0].address: "));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn duplicate_addresses_are_refused_naming_both_keys() {
    let mut config = Config::example_client();
    config.fallback.servers = vec![
        NtpServerConfig::new("203.0.113.1"),
        NtpServerConfig::new("2001:db8::1"),
    ];
    config.fallback.peers = vec![NtpServerConfig {
        port: Some(123),
        ..NtpServerConfig::new("192.0.2.10")
    }];
    config
        .primary
        .servers
        .push(NtpServerConfig::new("2001:DB8:0::0:1"));
    let problems = config.check();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].key, "fallback.servers[1].address");
    assert!(problems[0].message.contains("primary.servers[1].address"));
    assert_eq!(problems[1].key, "fallback.peers[0].address");
    assert!(
        problems[1]
            .message
            .starts_with("primary.servers[0].address and fallback.peers[0].address both name 192.0.2.10 port 123"),
        "{}",
        problems[1]
    );

    // The same host on another port is another server.
    config.fallback.peers[0].port = Some(1123);
    config.primary.servers.pop();
    assert!(config.check().is_empty(), "{:?}", config.check());

    // Hostnames compare without case or trailing dot.
    let mut config = client_with_fallbacks(&["NTP.example.org.", "ntp.example.org"]);
    config.allow_dns_fallbacks = true;
    let keys = problem_keys(&config);
    assert!(keys.contains(&(Severity::Error, "fallback.servers[1].address".to_owned())));
}

#[test]
fn addresses_must_be_ip_literals_or_valid_hostnames() {
    let accepted_ip = ["192.0.2.1", "2001:db8::1", "::1", "fe80::1%eth0"];
    for address in accepted_ip {
        assert!(NtpServerConfig::new(address).is_ip_literal(), "{address}");
        assert!(
            client_with_fallbacks(&[address]).check().is_empty(),
            "{address}"
        );
    }
    let hostnames = ["ntp.example.org", "a-b.example", "localhost", "x1.lan."];
    for address in hostnames {
        assert!(!NtpServerConfig::new(address).is_ip_literal());
        let mut config = Config::example_client();
        config.primary.servers = vec![NtpServerConfig::new(address)];
        assert!(config.check().is_empty(), "{address}: {:?}", config.check());
    }
    let refused: &[(&str, &str)] = &[
        ("", "empty"),
        (" 192.0.2.1", "spaces"),
        ("192.0.2.1:123", "port = 123"),
        ("[2001:db8::1]", "without brackets"),
        ("192.0.2.300", "IPv4"),
        ("ntp..example.org", "empty label"),
        ("-ntp.example.org", "starts or ends with '-'"),
        ("ntp_1.example.org", "'_'"),
        ("ntp.exämple.org", "'ä'"),
        ("fe80::1%", "is not allowed"),
        ("2001:db8::1%eth0", "is not allowed"),
    ];
    let long_label = format!("{}.example", "a".repeat(64));
    let long_name = ["abcdefghij"; 26].join(".");
    let mut cases: Vec<(&str, &str)> = refused.to_vec();
    cases.push((&long_label, "63"));
    cases.push((&long_name, "253"));
    for (address, reason) in cases {
        let mut config = Config::example_client();
        config.primary.servers = vec![NtpServerConfig::new(address)];
        let problems = config.check();
        assert_eq!(problems.len(), 1, "{address:?}: {problems:?}");
        assert_eq!(problems[0].key, "primary.servers[0].address");
        assert_eq!(problems[0].severity, Severity::Error);
        assert!(
            problems[0].message.contains(reason),
            "{address:?}: {}",
            problems[0]
        );
    }
}

#[test]
fn server_options_are_range_checked() {
    let mut config = Config::example_client();
    config.primary.servers = vec![NtpServerConfig {
        minpoll: Some(-7),
        maxpoll: Some(25),
        ..NtpServerConfig::new("192.0.2.10")
    }];
    assert_eq!(
        problem_keys(&config),
        vec![
            (Severity::Error, "primary.servers[0].minpoll".to_owned()),
            (Severity::Error, "primary.servers[0].maxpoll".to_owned()),
        ]
    );
    config.primary.servers[0].minpoll = Some(-6);
    config.primary.servers[0].maxpoll = Some(24);
    config.primary.servers[0].key = Some(1);
    config.primary.servers[0].port = Some(65535);
    assert!(config.check().is_empty());
}

#[test]
fn roles_decide_which_tables_belong() {
    let mut gps = Config::example_gps();
    gps.gps = None;
    gps.primary.servers = vec![NtpServerConfig::new("192.0.2.20")];
    assert_eq!(
        problem_keys(&gps),
        vec![
            (Severity::Error, "gps".to_owned()),
            (Severity::Error, "primary.servers".to_owned()),
        ]
    );

    let mut client = Config::example_client();
    client.gps = Some(GpsConfig::default());
    client.primary.servers.clear();
    assert_eq!(
        problem_keys(&client),
        vec![
            (Severity::Error, "gps".to_owned()),
            (Severity::Error, "primary.servers".to_owned()),
        ]
    );

    let mut lonely = Config::example_client();
    lonely.fallback = FallbackConfig::default();
    let problems = lonely.check();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "fallback");
    assert_eq!(problems[0].severity, Severity::Warning);
    assert!(problems[0]
        .message
        .contains("gnomon can only alert, never fall back"));
    assert!(Config::load(&toml::to_string(&lonely).unwrap()).is_ok());
}

#[test]
fn gps_settings_are_checked() {
    let mut config = Config::example_gps();
    config.gps = Some(GpsConfig {
        source: GpsSourceKind::Gpsd,
        device: "ttyACM0".into(),
        baud_rate: 9601,
        gpsd_address: "localhost:2947".into(),
        pps: PpsKind::Gpio,
        pps_device: "pps0".into(),
        pps_gpio: 28,
        sock_refclock: "gnomon.sock".into(),
    });
    assert_eq!(
        problem_keys(&config),
        vec![
            (Severity::Error, "gps.baud-rate".to_owned()),
            (Severity::Error, "gps.gpsd-address".to_owned()),
            (Severity::Error, "gps.pps-gpio".to_owned()),
            (Severity::Error, "gps.device".to_owned()),
            (Severity::Error, "gps.pps-device".to_owned()),
            (Severity::Error, "gps.sock-refclock".to_owned()),
        ]
    );

    // The gpsd address and the GPIO pin only matter when they are used.
    let gps = config.gps.as_mut().unwrap();
    gps.source = GpsSourceKind::Uart;
    gps.pps = PpsKind::Kernel;
    gps.baud_rate = 460_800;
    gps.device = "/dev/ttyAMA0".into();
    gps.pps_device = "/dev/pps0".into();
    gps.sock_refclock = "/run/chrony/x.sock".into();
    assert!(config.check().is_empty(), "{:?}", config.check());
    config.gps.as_mut().unwrap().pps_gpio = 27;
    config.gps.as_mut().unwrap().pps = PpsKind::Gpio;
    assert!(config.check().is_empty());

    config.gps.as_mut().unwrap().pps = PpsKind::None;
    assert_eq!(
        problem_keys(&config),
        vec![(Severity::Warning, "gps.pps".to_owned())]
    );
}

#[test]
fn threshold_limits() {
    let check = |f: &dyn Fn(&mut Thresholds)| {
        let mut config = Config::example_gps();
        f(&mut config.thresholds);
        problem_keys(&config)
    };
    let error = |key: &str| vec![(Severity::Error, format!("thresholds.{key}"))];
    let warning = |key: &str| vec![(Severity::Warning, format!("thresholds.{key}"))];

    assert_eq!(
        check(&|t| t.realert_interval = Duration::ZERO),
        error("realert-interval")
    );
    assert_eq!(
        check(&|t| t.step_threshold = Duration::ZERO),
        error("step-threshold")
    );
    assert_eq!(check(&|t| t.max_changes_per_hour = 2), vec![]);
    assert_eq!(check(&|t| t.min_satellites = 0), error("min-satellites"));
    assert_eq!(check(&|t| t.min_satellites = 65), error("min-satellites"));
    assert_eq!(check(&|t| t.min_satellites = 64), vec![]);
    assert_eq!(check(&|t| t.max_hdop = 0.0), error("max-hdop"));
    assert_eq!(check(&|t| t.max_hdop = f64::NAN), error("max-hdop"));
    assert_eq!(check(&|t| t.max_hdop = f64::INFINITY), error("max-hdop"));
    assert_eq!(
        check(&|t| t.nmea_window = Duration::ZERO),
        error("nmea-window")
    );
    assert_eq!(check(&|t| t.nmea_window = ms(999)), vec![]);
    assert_eq!(
        check(&|t| t.pps_interval_tolerance = ms(500)),
        error("pps-interval-tolerance")
    );
    assert_eq!(check(&|t| t.pps_interval_tolerance = ms(499)), vec![]);
    assert_eq!(check(&|t| t.pps_timeout = ms(1001)), vec![]);
    assert_eq!(
        check(&|t| t.pps_timeout = Duration::ZERO),
        error("pps-timeout")
    );
    assert_eq!(
        check(&|t| t.max_primary_stratum = 0),
        error("max-primary-stratum")
    );
    assert_eq!(check(&|t| t.max_primary_stratum = 15), vec![]);
    assert_eq!(
        check(&|t| t.nmea_timeout = ms(1000)),
        warning("nmea-timeout")
    );
    assert_eq!(check(&|t| t.hold = ms(59_999)), warning("hold"));
    assert_eq!(check(&|t| t.hold = ms(60_000)), vec![]);
    let all_zero = check(&|t| {
        t.grace = Duration::ZERO;
        t.hold = Duration::ZERO;
        t.gps_settle = Duration::ZERO;
        t.max_gps_disagreement = Duration::ZERO;
        t.max_distance = Duration::ZERO;
        t.fallback_unreachable_after = Duration::ZERO;
        t.floor_save_interval = Duration::ZERO;
        t.nmea_timeout = Duration::ZERO;
    });
    assert_eq!(all_zero.len(), 8, "{all_zero:?}");
    assert!(all_zero.iter().all(|(s, _)| *s == Severity::Error));
}

#[test]
fn path_rules() {
    let mut config = Config::example_client();
    config.paths.sources_dir = "/run/gnomon/".into();
    config.paths.state_dir = "/run/gnomon/state".into();
    config.paths.floor_file = Some("floor".into());
    assert_eq!(
        problem_keys(&config),
        vec![
            (Severity::Error, "paths.floor-file".to_owned()),
            (Severity::Warning, "paths.sources-dir".to_owned()),
            // The control socket is now "inside" the sources directory.
            (Severity::Error, "paths.control-socket".to_owned()),
            (Severity::Warning, "paths.state-dir".to_owned()),
        ]
    );
    // Component-wise, not string prefix: /run/gnomon/chrony2 is not inside.
    let mut config = Config::example_client();
    config.paths.control_socket = "/run/gnomon/chrony2.sock".into();
    assert!(config.check().is_empty());
}

#[test]
fn examples_are_valid_and_round_trip() {
    for example in [Config::example_client(), Config::example_gps()] {
        let problems = example.check();
        assert!(
            problems.is_empty(),
            "{} example: {problems:?}",
            example.role
        );
        let text = toml::to_string(&example).unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), example, "{text}");
        let addresses: Vec<&str> = example
            .primary
            .servers
            .iter()
            .chain(&example.fallback.servers)
            .chain(&example.fallback.peers)
            .map(|s| s.address.as_str())
            .collect();
        for a in addresses {
            assert!(
                ["192.0.2.", "198.51.100.", "203.0.113."]
                    .iter()
                    .any(|net| a.starts_with(net)),
                "{a} is not an RFC 5737 documentation address"
            );
        }
    }
}

#[test]
fn full_config_round_trips_with_human_durations() {
    let config = Config::from_toml_str(FULL_GPS).unwrap();
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("hold = \"15m\""), "{text}");
    assert!(text.contains("gps-settle = \"1m30s\""), "{text}");
    assert!(text.contains("pps-timeout = \"3s\""), "{text}");
    assert!(text.contains("nmea-window = \"800ms\""), "{text}");
    assert!(text.contains("max-distance = \"1.5s\""), "{text}");
    assert_eq!(Config::from_toml_str(&text).unwrap(), config);
}

#[test]
fn enums_display_as_written() {
    assert_eq!(Role::Gps.to_string(), "gps");
    assert_eq!(Role::Client.to_string(), "client");
    assert_eq!(GpsSourceKind::Serial.to_string(), "serial");
    assert_eq!(PpsKind::None.to_string(), "none");
    let syntax = ConfigError::Syntax {
        line: 3,
        column: 9,
        message: "thresholds.grace: x".into(),
    };
    assert_eq!(syntax.to_string(), "line 3, column 9: thresholds.grace: x");
}

/// Every complete example in docs/configuration.md loads, and every
/// fragment parses, so the manual cannot drift from the schema.
#[test]
fn documentation_examples_are_valid() {
    let doc = include_str!("../../../../docs/configuration.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 3, "found {} toml blocks", blocks.len());
    let mut complete = 0;
    for block in &blocks {
        if block.lines().any(|l| l.starts_with("role =")) {
            complete += 1;
            let loaded = Config::load(block);
            assert!(
                loaded.is_ok(),
                "{block}\n{:?}",
                loaded.err().map(|e| e.to_string())
            );
        } else {
            let fragment = format!("role = \"gps\"\n{block}");
            let parsed = Config::from_toml_str(&fragment);
            assert!(
                parsed.is_ok(),
                "{block}\n{:?}",
                parsed.err().map(|e| e.to_string())
            );
        }
    }
    assert!(complete >= 2, "one complete example per role");
}

fn arb_duration() -> impl Strategy<Value = Duration> {
    (0_u64..100_000_000).prop_map(Duration::from_millis)
}

proptest! {
    #[test]
    fn thresholds_round_trip_through_toml(
        grace in arb_duration(),
        hold in arb_duration(),
        nmea_window in arb_duration(),
        step in arb_duration(),
        hdop in 0.01_f64..100.0,
        changes in 0_u32..1000,
    ) {
        let mut config = Config::example_gps();
        config.thresholds.grace = grace;
        config.thresholds.hold = hold;
        config.thresholds.nmea_window = nmea_window;
        config.thresholds.step_threshold = step;
        config.thresholds.max_hdop = hdop;
        config.thresholds.max_changes_per_hour = changes;
        let text = toml::to_string(&config).unwrap();
        prop_assert_eq!(Config::from_toml_str(&text).unwrap(), config);
    }
}

#[test]
fn control_groups_are_checked() {
    let base = "role = \"client\"\n[[primary.servers]]\naddress = \"192.0.2.1\"\n";
    let (c, _) = Config::load(base).unwrap();
    assert_eq!(c.control.read_group, "gnomon");
    assert_eq!(c.control.admin_group, None);
    let (c, _) = Config::load(&format!(
        "{base}[control]\nread-group = \"\"\nadmin-group = \"ntp-admins\"\n"
    ))
    .unwrap();
    assert_eq!(c.control.read_group, "");
    assert_eq!(c.control.admin_group.as_deref(), Some("ntp-admins"));
    let Err(ConfigError::Invalid { problems }) =
        Config::load(&format!("{base}[control]\nadmin-group = \"Wheel; rm\"\n"))
    else {
        panic!("a bad group name must be refused");
    };
    assert!(
        problems.iter().any(|p| p.key == "control.admin-group"),
        "{problems:?}"
    );
}

#[test]
fn pps_socket_kind_parses() {
    let text = "role = \"gps\"\n[gps]\npps = \"socket\"\npps-device = \"/run/gnomon/pps.sock\"\n";
    let (c, problems) = Config::load(text).unwrap();
    assert_eq!(c.gps.unwrap().pps, PpsKind::Socket);
    assert!(
        !problems.iter().any(|p| p.key.starts_with("gps")),
        "{problems:?}"
    );
}

/// The ```toml blocks of a Markdown page, in order. An unclosed block is
/// returned too, so that it fails to load instead of vanishing.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_end() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks.extend(current);
    blocks
}

const MAN_PAGE: &str = include_str!("../../../../docs/man/gnomon.toml.5.md");

/// gnomon.toml(5)'s examples are what operators copy: each must load
/// without errors or warnings, and both roles must be shown.
#[test]
fn man_page_examples_load_cleanly() {
    let blocks = toml_blocks(MAN_PAGE);
    let mut roles = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        match Config::load(block) {
            Ok((config, warnings)) => {
                assert!(
                    warnings.is_empty(),
                    "example {index} of gnomon.toml.5.md has warnings: {warnings:?}\n{block}"
                );
                roles.push(config.role);
            }
            Err(e) => panic!("example {index} of gnomon.toml.5.md does not load: {e}\n{block}"),
        }
    }
    assert!(
        roles.contains(&Role::Client),
        "no role = \"client\" example"
    );
    assert!(roles.contains(&Role::Gps), "no role = \"gps\" example");
}

/// Every key of the schema has its entry (`**key** = type (default)`) in
/// gnomon.toml(5), so a new key cannot ship undocumented.
#[test]
fn man_page_documents_every_key() {
    let mut server = NtpServerConfig::new("192.0.2.1");
    server.port = Some(123);
    server.minpoll = Some(4);
    server.maxpoll = Some(8);
    server.key = Some(1);
    let mut config = Config::example_gps();
    config.primary.servers = vec![server.clone()];
    config.fallback.servers = vec![server.clone()];
    config.fallback.peers = vec![server];
    config.paths.floor_file = Some("/etc/gnomon/floor".into());
    config.control.admin_group = Some("ntp-admins".into());
    let table = toml::Table::try_from(&config).unwrap();

    fn keys(table: &toml::Table, out: &mut Vec<String>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(inner) => keys(inner, out),
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::Table(inner) = item {
                            keys(inner, out);
                        }
                    }
                }
                _ => out.push(key.clone()),
            }
        }
    }
    let mut all = Vec::new();
    keys(&table, &mut all);
    all.sort();
    all.dedup();
    assert!(all.len() > 40, "walked too few keys: {all:?}");
    let missing: Vec<&String> = all
        .iter()
        .filter(|key| !MAN_PAGE.contains(&format!("\n**{key}** = ")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys without an entry in docs/man/gnomon.toml.5.md: {missing:?}"
    );
}

// ---- [metrics] ----

fn metrics_problems(table: &str) -> Vec<(Severity, String, String)> {
    let config = Config::from_toml_str(&format!("{MINIMAL_CLIENT}\n[metrics]\n{table}")).unwrap();
    config
        .check()
        .into_iter()
        .filter(|p| p.key.starts_with("metrics"))
        .map(|p| (p.severity, p.key, p.message))
        .collect()
}

#[test]
fn metrics_are_off_and_on_loopback_by_default() {
    let config = Config::from_toml_str(MINIMAL_CLIENT).unwrap();
    assert!(!config.metrics.enabled);
    assert!(!config.metrics.allow_remote);
    assert_eq!(config.metrics.listen, "127.0.0.1:9476");
    assert_eq!(
        config.metrics.listen_addr(),
        Some(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            DEFAULT_METRICS_PORT
        )))
    );
    assert_eq!(config.metrics, MetricsConfig::default());
    assert!(metrics_problems("enabled = true\n").is_empty());
    assert!(metrics_problems("enabled = true\nlisten = \"[::1]:9100\"\n").is_empty());
}

#[test]
fn metrics_refuse_a_reachable_address_unless_allowed() {
    let problems = metrics_problems("enabled = true\nlisten = \"0.0.0.0:9476\"\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (severity, key, message) = &problems[0];
    assert_eq!(*severity, Severity::Error);
    assert_eq!(key, "metrics.listen");
    assert!(message.contains("allow-remote"), "{message}");
    assert!(message.contains("IPAddressAllow"), "{message}");
    let problems =
        metrics_problems("enabled = true\nlisten = \"192.0.2.10:9476\"\nallow-remote = true\n");
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn metrics_listen_must_be_ip_and_port() {
    for bad in ["localhost:9476", "127.0.0.1", "127.0.0.1:0", "::1:9476"] {
        let problems = metrics_problems(&format!("listen = \"{bad}\"\n"));
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert_eq!(problems[0].0, Severity::Error, "{bad}");
        assert_eq!(problems[0].1, "metrics.listen", "{bad}");
    }
    let (line, _, message) = syntax(&format!("{MINIMAL_CLIENT}\n[metrics]\nport = 9\n"));
    assert!(message.contains("port"), "{message}");
    assert!(line > 1);
}
