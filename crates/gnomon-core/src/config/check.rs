//! The semantic check: everything TOML's types cannot say, reported all
//! at once with the key each problem belongs to, so an operator fixes the
//! file in one pass instead of one restart per mistake.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use super::{
    Config, ConfigProblem, ControlConfig, GpsConfig, GpsSourceKind, NtpServerConfig, Paths,
    PpsKind, Role, Thresholds, BAUD_RATES,
};
use crate::{gps::FixMode, time::human_duration};

const POLL_RANGE: std::ops::RangeInclusive<i8> = -6..=24;
const NTP_PORT: u16 = 123;
/// Highest BCM GPIO number on the Pi's 40-pin header.
const MAX_BCM_GPIO: u8 = 27;

pub(super) fn check(config: &Config) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    check_role(config, &mut out);
    check_servers(config, &mut out);
    if let Some(gps) = &config.gps {
        check_gps(gps, &mut out);
    }
    check_thresholds(&config.thresholds, &mut out);
    check_paths(&config.paths, &mut out);
    check_control(&config.control, &mut out);
    config.history.check(&mut out);
    config.metrics.check(&mut out);
    config.certs.check(&mut out);
    out
}

/// Group names as `groupadd` accepts them.
fn valid_group_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

fn check_control(control: &ControlConfig, out: &mut Vec<ConfigProblem>) {
    if !control.read_group.is_empty() && !valid_group_name(&control.read_group) {
        out.push(ConfigProblem::error(
            "control.read-group",
            format!(
                "\"{}\" is not a group name (lower-case letters, digits, '_' and '-'), \
                 or \"\" to let every local user read",
                control.read_group
            ),
        ));
    }
    if let Some(admin) = &control.admin_group {
        if !valid_group_name(admin) {
            out.push(ConfigProblem::error(
                "control.admin-group",
                format!(
                    "\"{admin}\" is not a group name (lower-case letters, digits, '_' and '-'); \
                     leave the key out to let only root change gnomon's decisions"
                ),
            ));
        }
    }
}

fn check_role(config: &Config, out: &mut Vec<ConfigProblem>) {
    match config.role {
        Role::Gps => {
            if config.gps.is_none() {
                out.push(ConfigProblem::error(
                    "gps",
                    "role = \"gps\" needs a [gps] table saying where the receiver is \
                     (an empty [gps] takes every default)",
                ));
            }
            if !config.primary.servers.is_empty() {
                out.push(ConfigProblem::error(
                    "primary.servers",
                    "role = \"gps\" has the local GPS as its primary; list other NTP \
                     servers under [[fallback.servers]] or [[fallback.peers]]",
                ));
            }
        }
        Role::Client => {
            if config.gps.is_some() {
                out.push(ConfigProblem::error(
                    "gps",
                    "role = \"client\" does not read a GPS: remove [gps], or set role = \"gps\" \
                     on the host with the GPS hat",
                ));
            }
            if config.primary.servers.is_empty() {
                out.push(ConfigProblem::error(
                    "primary.servers",
                    "role = \"client\" needs at least one [[primary.servers]] entry \
                     (the LAN time server it follows)",
                ));
            }
        }
    }
    if config.fallback.servers.is_empty() && config.fallback.peers.is_empty() {
        out.push(ConfigProblem::warning(
            "fallback",
            "no [[fallback.servers]] or [[fallback.peers]]: when the primary fails, \
             gnomon can only alert, never fall back",
        ));
    } else {
        let independent = config
            .fallback
            .servers
            .iter()
            .chain(&config.fallback.peers)
            .filter(|s| !s.follows_this_host)
            .count();
        if independent < crate::engine::MIN_INDEPENDENT {
            let what = match config.role {
                Role::Gps => "the GPS",
                Role::Client => "the primary",
            };
            out.push(ConfigProblem::warning(
                "fallback",
                format!(
                    "{independent} fallback(s) that do not follow this host: {what} cannot be \
                     cross-checked ({} independent sources needed), so a wrong time it serves \
                     would be followed; add IP-literal public servers",
                    crate::engine::MIN_INDEPENDENT
                ),
            ));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Primary,
    Fallback,
}

/// What an `address` string is.
enum Address {
    /// An IP literal, normalised (`2001:DB8::0:1` → `2001:db8::1`).
    Ip(String),
    /// A hostname, normalised (lower case, no trailing dot).
    Hostname(String),
    Invalid(String),
}

fn check_servers(config: &Config, out: &mut Vec<ConfigProblem>) {
    let lists = [
        ("primary.servers", &config.primary.servers, Tier::Primary),
        ("fallback.servers", &config.fallback.servers, Tier::Fallback),
        ("fallback.peers", &config.fallback.peers, Tier::Fallback),
    ];
    // (normalised address, port, key of its first use)
    let mut seen: Vec<(String, u16, String)> = Vec::new();
    for (list, servers, tier) in lists {
        for (index, server) in servers.iter().enumerate() {
            let key = format!("{list}[{index}]");
            if let Some(name) = check_server(&key, server, tier, config.allow_dns_fallbacks, out) {
                let port = server.port.unwrap_or(NTP_PORT);
                let address_key = format!("{key}.address");
                if let Some((_, _, first)) = seen.iter().find(|(a, p, _)| *a == name && *p == port)
                {
                    out.push(ConfigProblem::error(
                        &address_key,
                        format!(
                            "{first} and {address_key} both name {} port {port}: \
                             chrony would measure one server twice",
                            server.address
                        ),
                    ));
                } else {
                    seen.push((name, port, address_key));
                }
            }
        }
    }
}

/// Checks one server; returns its normalised address when it has one.
fn check_server(
    key: &str,
    server: &NtpServerConfig,
    tier: Tier,
    allow_dns_fallbacks: bool,
    out: &mut Vec<ConfigProblem>,
) -> Option<String> {
    let address_key = format!("{key}.address");
    let normalised = match classify(&server.address) {
        Address::Ip(ip) => Some(ip),
        Address::Hostname(name) => {
            if tier == Tier::Fallback {
                if allow_dns_fallbacks {
                    out.push(ConfigProblem::warning(
                        &address_key,
                        format!(
                            "\"{}\" is a hostname: gnomon never relies on it while the system \
                             clock is before the time floor, because resolving it may need a \
                             correct clock (DNSSEC, DNS over TLS)",
                            server.address
                        ),
                    ));
                } else {
                    out.push(ConfigProblem::error(
                        &address_key,
                        format!(
                            "\"{}\" is a hostname, and a fallback must work when DNS does not: \
                             use an IP literal or set allow-dns-fallbacks = true (resolving a \
                             name can need a correct clock, and a wrong clock is exactly when \
                             the fallback is needed)",
                            server.address
                        ),
                    ));
                }
            }
            Some(name)
        }
        Address::Invalid(why) => {
            out.push(ConfigProblem::error(&address_key, why));
            None
        }
    };
    if server.port == Some(0) {
        out.push(ConfigProblem::error(
            format!("{key}.port"),
            "port 0 is not a port",
        ));
    }
    for (name, poll) in [("minpoll", server.minpoll), ("maxpoll", server.maxpoll)] {
        if let Some(poll) = poll {
            if !POLL_RANGE.contains(&poll) {
                out.push(ConfigProblem::error(
                    format!("{key}.{name}"),
                    format!(
                        "{name} {poll} is outside chrony's range {}..={} (a poll interval of 2^{name} seconds)",
                        POLL_RANGE.start(),
                        POLL_RANGE.end()
                    ),
                ));
            }
        }
    }
    if let (Some(min), Some(max)) = (server.minpoll, server.maxpoll) {
        if min > max {
            out.push(ConfigProblem::error(
                format!("{key}.minpoll"),
                format!("minpoll {min} is greater than maxpoll {max}"),
            ));
        }
    }
    if server.key == Some(0) {
        out.push(ConfigProblem::error(
            format!("{key}.key"),
            "key ids start at 1 in chrony's key file",
        ));
    }
    normalised
}

pub(super) fn is_ip_literal(address: &str) -> bool {
    matches!(classify(address), Address::Ip(_))
}

fn classify(address: &str) -> Address {
    if address.is_empty() {
        return Address::Invalid("the address is empty".into());
    }
    if address.trim() != address {
        return Address::Invalid(format!("\"{address}\" has leading or trailing spaces"));
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Address::Ip(ip.to_string());
    }
    if let Some(ip) = link_local_with_zone(address) {
        return Address::Ip(ip);
    }
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Address::Invalid(format!(
            "\"{address}\" includes a port: write address = \"{}\" and port = {}",
            socket.ip(),
            socket.port()
        ));
    }
    if let Some(inner) = address.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        if inner.parse::<Ipv6Addr>().is_ok() {
            return Address::Invalid(format!(
                "\"{address}\": write IPv6 addresses without brackets (\"{inner}\")"
            ));
        }
    }
    match hostname_problem(address) {
        None => Address::Hostname(address.trim_end_matches('.').to_ascii_lowercase()),
        Some(why) => Address::Invalid(format!(
            "\"{address}\" is neither an IP address nor a valid hostname: {why}"
        )),
    }
}

/// `fe80::1%eth0`: a link-local IPv6 address with its interface, which
/// chrony accepts and a LAN peer may need.
fn link_local_with_zone(address: &str) -> Option<String> {
    let (ip, zone) = address.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let link_local = ip.segments().first().is_some_and(|s| s & 0xffc0 == 0xfe80);
    let zone_ok = !zone.is_empty()
        && zone.len() <= 15
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (link_local && zone_ok).then(|| format!("{ip}%{zone}"))
}

/// Why `name` is not a hostname by RFC 1123, or `None` if it is one.
fn hostname_problem(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Some("it has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Some(format!("label \"{label}\" is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Some(format!(
                "'{c}' is not allowed (letters, digits and '-' only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label \"{label}\" starts or ends with '-'"));
        }
    }
    // A numeric top-level label means a mistyped IPv4 address, not a name.
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Some("it looks like an IPv4 address but is not a valid one".into());
    }
    None
}

fn check_gps(gps: &GpsConfig, out: &mut Vec<ConfigProblem>) {
    if !BAUD_RATES.contains(&gps.baud_rate) {
        let list = BAUD_RATES.map(|b| b.to_string()).join(", ");
        out.push(ConfigProblem::error(
            "gps.baud-rate",
            format!(
                "{} is not a GPS baud rate; use one of {list}",
                gps.baud_rate
            ),
        ));
    }
    if gps.source == GpsSourceKind::Gpsd && gps.gpsd_address.parse::<SocketAddr>().is_err() {
        out.push(ConfigProblem::error(
            "gps.gpsd-address",
            format!(
                "\"{}\" is not an IP address and port such as \"127.0.0.1:2947\" \
                 (gnomon does not resolve names for gpsd)",
                gps.gpsd_address
            ),
        ));
    }
    if gps.pps == PpsKind::Gpio && gps.pps_gpio > MAX_BCM_GPIO {
        out.push(ConfigProblem::error(
            "gps.pps-gpio",
            format!(
                "GPIO {} does not exist on the Pi header: BCM pins are 0..={MAX_BCM_GPIO}",
                gps.pps_gpio
            ),
        ));
    }
    if gps.pps == PpsKind::None {
        out.push(ConfigProblem::warning(
            "gps.pps",
            "without PPS, NMEA alone times the second only to within tens of \
             milliseconds, and gnomon cannot check the second's alignment",
        ));
    }
    for (key, path) in [
        ("gps.device", &gps.device),
        ("gps.pps-device", &gps.pps_device),
        ("gps.sock-refclock", &gps.sock_refclock),
    ] {
        absolute(key, path, out);
    }
}

fn check_thresholds(t: &Thresholds, out: &mut Vec<ConfigProblem>) {
    let key = |name: &str| format!("thresholds.{name}");
    for (name, value) in [
        ("grace", t.grace),
        ("hold", t.hold),
        ("realert-interval", t.realert_interval),
        ("nmea-timeout", t.nmea_timeout),
        ("gps-settle", t.gps_settle),
        ("max-gps-disagreement", t.max_gps_disagreement),
        ("max-primary-disagreement", t.max_primary_disagreement),
        ("max-distance", t.max_distance),
        ("fallback-unreachable-after", t.fallback_unreachable_after),
        ("step-threshold", t.step_threshold),
        ("floor-save-interval", t.floor_save_interval),
        ("chrony-max-age", t.chrony_max_age),
    ] {
        if value.is_zero() {
            out.push(ConfigProblem::error(key(name), "must be longer than 0"));
        }
    }
    if t.max_changes_per_hour < 2 {
        out.push(ConfigProblem::error(
            key("max-changes-per-hour"),
            format!(
                "{} is too few: every engage needs a matching release, so at least 2",
                t.max_changes_per_hour
            ),
        ));
    }
    if !(1..=64).contains(&t.min_satellites) {
        out.push(ConfigProblem::error(
            key("min-satellites"),
            format!("{} is outside 1..=64", t.min_satellites),
        ));
    }
    if !(t.max_hdop.is_finite() && t.max_hdop > 0.0) {
        out.push(ConfigProblem::error(
            key("max-hdop"),
            format!("{} is not a positive finite number", t.max_hdop),
        ));
    }
    if t.min_fix == FixMode::NoFix {
        out.push(ConfigProblem::error(
            key("min-fix"),
            "\"none\" would accept time from a receiver without a fix; use \"2d\" or \"3d\"",
        ));
    }
    let second = Duration::from_secs(1);
    if t.nmea_timeout > Duration::ZERO && t.nmea_timeout <= second {
        out.push(ConfigProblem::warning(
            key("nmea-timeout"),
            format!(
                "{}: the receiver sends one epoch a second, so ordinary jitter \
                 would declare NMEA missing",
                human_duration(t.nmea_timeout)
            ),
        ));
    }
    if t.pps_timeout <= second {
        out.push(ConfigProblem::error(
            key("pps-timeout"),
            format!(
                "{} must be longer than 1s, the interval between pulses",
                human_duration(t.pps_timeout)
            ),
        ));
    }
    if t.pps_interval_tolerance.is_zero() || t.pps_interval_tolerance >= second / 2 {
        out.push(ConfigProblem::error(
            key("pps-interval-tolerance"),
            format!(
                "{} must be longer than 0 and shorter than 500ms, or a missed or doubled \
                 pulse would pass",
                human_duration(t.pps_interval_tolerance)
            ),
        ));
    }
    if t.nmea_window.is_zero() || t.nmea_window >= second {
        out.push(ConfigProblem::error(
            key("nmea-window"),
            format!(
                "{} must be longer than 0 and shorter than 1s, or the sentence could \
                 belong to the next pulse",
                human_duration(t.nmea_window)
            ),
        ));
    }
    if !(1..=15).contains(&t.max_primary_stratum) {
        out.push(ConfigProblem::error(
            key("max-primary-stratum"),
            format!("{} is outside NTP's strata 1..=15", t.max_primary_stratum),
        ));
    }
    if t.hold < t.grace {
        out.push(ConfigProblem::warning(
            key("hold"),
            format!(
                "hold ({}) is shorter than grace ({}): a flapping primary would engage and \
                 release the fallbacks over and over",
                human_duration(t.hold),
                human_duration(t.grace)
            ),
        ));
    }
}

fn check_paths(paths: &Paths, out: &mut Vec<ConfigProblem>) {
    for (key, path) in [
        ("paths.chrony-socket", &paths.chrony_socket),
        ("paths.runtime-dir", &paths.runtime_dir),
        ("paths.sources-dir", &paths.sources_dir),
        ("paths.state-dir", &paths.state_dir),
        ("paths.control-socket", &paths.control_socket),
    ] {
        absolute(key, path, out);
    }
    if let Some(floor) = &paths.floor_file {
        absolute("paths.floor-file", floor, out);
    }
    let sources = Path::new(&paths.sources_dir);
    if sources == Path::new(&paths.runtime_dir) {
        out.push(ConfigProblem::warning(
            "paths.sources-dir",
            "is the runtime directory itself: chrony only reads *.sources files there, \
             but a directory of its own keeps its permissions separate from gnomon's sockets",
        ));
    }
    if Path::new(&paths.control_socket).starts_with(sources) {
        out.push(ConfigProblem::error(
            "paths.control-socket",
            format!(
                "is inside sources-dir ({}), the directory chrony reads sources from; \
                 put it in runtime-dir",
                paths.sources_dir
            ),
        ));
    }
    let state = Path::new(&paths.state_dir);
    if ["/run", "/tmp", "/dev/shm"]
        .iter()
        .any(|tmpfs| state.starts_with(tmpfs))
    {
        out.push(ConfigProblem::warning(
            "paths.state-dir",
            format!(
                "{} is usually a tmpfs: the last-synchronised time would be lost at reboot, \
                 which is when the time floor is needed",
                paths.state_dir
            ),
        ));
    }
}

fn absolute(key: &str, path: &str, out: &mut Vec<ConfigProblem>) {
    if !Path::new(path).is_absolute() {
        out.push(ConfigProblem::error(
            key,
            format!("\"{path}\" is not an absolute path"),
        ));
    }
}
