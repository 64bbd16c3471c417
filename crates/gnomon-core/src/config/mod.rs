//! The schema of `gnomon.toml`: what the operator may write, its defaults,
//! and the semantic check that finds every mistake at once. Parsing takes
//! the file's text; reading the file is the daemon's job.

mod check;
mod duration;
mod metrics;
mod syntax;
#[cfg(test)]
mod tests;

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

/// serde glue for `Duration` fields outside this module (e.g. `[history]`).
pub(crate) use self::duration::human as duration_serde;
pub use self::duration::{format_duration, parse_duration};
pub use self::metrics::{MetricsConfig, DEFAULT_METRICS_PORT};
use crate::gps::FixMode;

/// Which host this gnomon runs on, which decides what its primary reference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The Stratum 1 host with the GPS hat: the primary is the local GPS.
    Gps,
    /// A Stratum 2 host: the primary is one or more LAN NTP servers.
    Client,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Gps => "gps",
            Role::Client => "client",
        })
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    pub role: Role,
    /// Lets fallbacks be hostnames. Off by default: a fallback is for when
    /// the clock is wrong, which is when DNS (DNSSEC, DoT) can fail.
    #[serde(default)]
    pub allow_dns_fallbacks: bool,
    /// `[primary]`: the client role's primary NTP servers.
    #[serde(default)]
    pub primary: PrimaryConfig,
    /// `[gps]`: required for role `gps`, refused for role `client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GpsConfig>,
    #[serde(default)]
    pub fallback: FallbackConfig,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub control: ControlConfig,
    /// `[history]`: the offset samples behind `gnomonctl plot`.
    #[serde(default)]
    pub history: crate::samples::HistoryConfig,
    /// `[metrics]`: the Prometheus/OpenMetrics endpoint, off by default.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[certs]`: TLS certificates whose validity depends on the clock.
    #[serde(default)]
    pub certs: crate::certs::CertsConfig,
}

/// `[control]`: who may use gnomonctl. The control socket is open to all
/// local users; each request is checked against the peer's credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ControlConfig {
    /// Members of this group may read (status, sources, history, check).
    /// Root, gnomond's own user and the admin group may always read. An
    /// empty string lets every local user read.
    #[serde(default = "default_read_group")]
    pub read_group: String,
    /// Members of this group may also freeze, thaw and override fallbacks.
    /// Unset: root only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_group: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            read_group: default_read_group(),
            admin_group: None,
        }
    }
}

/// `[primary]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PrimaryConfig {
    /// `[[primary.servers]]`
    #[serde(default)]
    pub servers: Vec<NtpServerConfig>,
}

/// `[fallback]`: what chrony is given, `noselect` while unused, so that it
/// keeps measuring them until they are needed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FallbackConfig {
    /// `[[fallback.servers]]`: public servers, IP literals.
    #[serde(default)]
    pub servers: Vec<NtpServerConfig>,
    /// `[[fallback.peers]]`: LAN peers (chrony `peer` lines).
    #[serde(default)]
    pub peers: Vec<NtpServerConfig>,
}

/// One NTP server or peer as chrony will be told about it. `None` options
/// are left out of the chrony line, so chrony's own defaults apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NtpServerConfig {
    /// An IP literal (v4 or v6), or a hostname where hostnames are allowed.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minpoll: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxpoll: Option<i8>,
    /// Symmetric key id in chrony's key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    #[serde(default = "default_true")]
    pub iburst: bool,
    /// This source takes its time from this host (one of its clients, e.g.
    /// a LAN server peering back with the GPS host): never counted as an
    /// independent source in a cross-check. Sources whose packets name
    /// this host as their reference are left out without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follows_this_host: bool,
}

impl NtpServerConfig {
    /// A server at `address` with every option at its default.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            port: None,
            minpoll: None,
            maxpoll: None,
            key: None,
            iburst: true,
            follows_this_host: false,
        }
    }

    /// Whether `address` is an IP literal, i.e. reaching it needs no DNS.
    pub fn is_ip_literal(&self) -> bool {
        check::is_ip_literal(&self.address)
    }
}

/// Where NMEA comes from on the `gps` host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpsSourceKind {
    /// The Pi's own UART (a GPS hat), through rppal.
    Uart,
    /// A USB or other tty receiver, through serialport.
    Serial,
    /// A running gpsd.
    Gpsd,
}

impl fmt::Display for GpsSourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpsSourceKind::Uart => "uart",
            GpsSourceKind::Serial => "serial",
            GpsSourceKind::Gpsd => "gpsd",
        })
    }
}

/// Where gnomon watches the pulse-per-second line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PpsKind {
    /// The kernel's pps-gpio device (`/dev/ppsN`).
    Kernel,
    /// Edge interrupts on a GPIO pin, through rppal.
    Gpio,
    /// Edges delivered as datagrams on a Unix socket at `pps-device`
    /// (see `docs/gps.md`): a bridge from another PPS reader, or the lab's
    /// simulated GPS hat.
    Socket,
    /// No PPS: NMEA alone.
    None,
}

impl fmt::Display for PpsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PpsKind::Kernel => "kernel",
            PpsKind::Gpio => "gpio",
            PpsKind::Socket => "socket",
            PpsKind::None => "none",
        })
    }
}

/// `[gps]`, for role `gps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GpsConfig {
    #[serde(default = "default_gps_source")]
    pub source: GpsSourceKind,
    #[serde(default = "default_gps_device")]
    pub device: String,
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    #[serde(default = "default_gpsd_address")]
    pub gpsd_address: String,
    #[serde(default = "default_pps")]
    pub pps: PpsKind,
    #[serde(default = "default_pps_device")]
    pub pps_device: String,
    /// BCM pin number of the PPS line when `pps = "gpio"`.
    #[serde(default = "default_pps_gpio")]
    pub pps_gpio: u8,
    /// chrony's SOCK refclock socket that gnomon feeds NMEA samples into.
    #[serde(default = "default_sock_refclock")]
    pub sock_refclock: String,
}

impl Default for GpsConfig {
    fn default() -> Self {
        Self {
            source: default_gps_source(),
            device: default_gps_device(),
            baud_rate: default_baud_rate(),
            gpsd_address: default_gpsd_address(),
            pps: default_pps(),
            pps_device: default_pps_device(),
            pps_gpio: default_pps_gpio(),
            sock_refclock: default_sock_refclock(),
        }
    }
}

/// The baud rates a GPS receiver is configured for in practice.
pub const BAUD_RATES: [u32; 8] = [4800, 9600, 19200, 38400, 57600, 115_200, 230_400, 460_800];

/// `[thresholds]`: every number the engine judges by. Durations are
/// written as in [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Thresholds {
    /// Primary missing or unhealthy this long → fallbacks engaged.
    #[serde(default = "default_grace", with = "duration::human")]
    pub grace: Duration,
    /// Primary continuously healthy this long → fallbacks released.
    #[serde(default = "default_hold", with = "duration::human")]
    pub hold: Duration,
    /// Automatic engage/release changes allowed in any hour.
    #[serde(default = "default_max_changes_per_hour")]
    pub max_changes_per_hour: u32,
    /// An active alert is repeated this often.
    #[serde(default = "default_realert_interval", with = "duration::human")]
    pub realert_interval: Duration,
    #[serde(default = "default_min_satellites")]
    pub min_satellites: u8,
    #[serde(default = "default_max_hdop")]
    pub max_hdop: f64,
    #[serde(default = "default_min_fix")]
    pub min_fix: FixMode,
    /// No NMEA epoch this long → NMEA missing.
    #[serde(default = "default_nmea_timeout", with = "duration::human")]
    pub nmea_timeout: Duration,
    /// No pulse this long → PPS missing.
    #[serde(default = "default_pps_timeout", with = "duration::human")]
    pub pps_timeout: Duration,
    /// A pulse interval must be 1 s ± this.
    #[serde(default = "default_pps_interval_tolerance", with = "duration::human")]
    pub pps_interval_tolerance: Duration,
    /// The sentence for second N must arrive within this after pulse N.
    #[serde(default = "default_nmea_window", with = "duration::human")]
    pub nmea_window: Duration,
    /// GPS healthy this long before the gate to chrony opens.
    #[serde(default = "default_gps_settle", with = "duration::human")]
    pub gps_settle: Duration,
    /// |GPS offset − independent sources' offset| above this → GPS insane.
    #[serde(default = "default_max_gps_disagreement", with = "duration::human")]
    pub max_gps_disagreement: Duration,
    /// |primary's offset − the median offset of the independent fallbacks|
    /// above this → the primary is not trusted (a `client` host's
    /// cross-check; at least two independent fallbacks must answer).
    #[serde(default = "default_max_primary_disagreement", with = "duration::human")]
    pub max_primary_disagreement: Duration,
    #[serde(default = "default_max_primary_stratum")]
    pub max_primary_stratum: u8,
    /// A source whose error bound (root distance) exceeds this is not healthy.
    #[serde(default = "default_max_distance", with = "duration::human")]
    pub max_distance: Duration,
    /// A fallback silent this long → warning.
    #[serde(
        default = "default_fallback_unreachable_after",
        with = "duration::human"
    )]
    pub fallback_unreachable_after: Duration,
    /// Remaining correction above this → ask chrony to step.
    #[serde(default = "default_step_threshold", with = "duration::human")]
    pub step_threshold: Duration,
    /// The last-synchronised time is persisted at most this often.
    #[serde(default = "default_floor_save_interval", with = "duration::human")]
    pub floor_save_interval: Duration,
    /// A chrony snapshot older than this is not evidence.
    #[serde(default = "default_chrony_max_age", with = "duration::human")]
    pub chrony_max_age: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            grace: default_grace(),
            hold: default_hold(),
            max_changes_per_hour: default_max_changes_per_hour(),
            realert_interval: default_realert_interval(),
            min_satellites: default_min_satellites(),
            max_hdop: default_max_hdop(),
            min_fix: default_min_fix(),
            nmea_timeout: default_nmea_timeout(),
            pps_timeout: default_pps_timeout(),
            pps_interval_tolerance: default_pps_interval_tolerance(),
            nmea_window: default_nmea_window(),
            gps_settle: default_gps_settle(),
            max_gps_disagreement: default_max_gps_disagreement(),
            max_primary_disagreement: default_max_primary_disagreement(),
            max_primary_stratum: default_max_primary_stratum(),
            max_distance: default_max_distance(),
            fallback_unreachable_after: default_fallback_unreachable_after(),
            step_threshold: default_step_threshold(),
            floor_save_interval: default_floor_save_interval(),
            chrony_max_age: default_chrony_max_age(),
        }
    }
}

/// `[paths]`: where gnomon talks to chrony and keeps its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Paths {
    /// chrony's command socket.
    #[serde(default = "default_chrony_socket")]
    pub chrony_socket: String,
    #[serde(default = "default_runtime_dir")]
    pub runtime_dir: String,
    /// The directory chrony's `sourcedir` names; gnomon writes its
    /// `.sources` file here.
    #[serde(default = "default_sources_dir")]
    pub sources_dir: String,
    /// Persistent state (the last-synchronised time, decision history).
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// gnomonctl's socket.
    #[serde(default = "default_control_socket")]
    pub control_socket: String,
    /// The operator's time-floor file, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_file: Option<String>,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            chrony_socket: default_chrony_socket(),
            runtime_dir: default_runtime_dir(),
            sources_dir: default_sources_dir(),
            state_dir: default_state_dir(),
            control_socket: default_control_socket(),
            floor_file: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_gps_source() -> GpsSourceKind {
    GpsSourceKind::Uart
}
fn default_gps_device() -> String {
    "/dev/serial0".into()
}
fn default_baud_rate() -> u32 {
    9600
}
fn default_gpsd_address() -> String {
    "127.0.0.1:2947".into()
}
fn default_pps() -> PpsKind {
    PpsKind::Kernel
}
fn default_pps_device() -> String {
    "/dev/pps0".into()
}
fn default_pps_gpio() -> u8 {
    18
}
fn default_sock_refclock() -> String {
    "/run/chrony/gnomon-nmea.sock".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(60)
}
fn default_hold() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_max_changes_per_hour() -> u32 {
    6
}
fn default_realert_interval() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_min_satellites() -> u8 {
    4
}
fn default_max_hdop() -> f64 {
    5.0
}
fn default_min_fix() -> FixMode {
    FixMode::Fix2D
}
fn default_nmea_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_pps_timeout() -> Duration {
    Duration::from_millis(2500)
}
fn default_pps_interval_tolerance() -> Duration {
    Duration::from_millis(100)
}
fn default_nmea_window() -> Duration {
    Duration::from_millis(900)
}
fn default_gps_settle() -> Duration {
    Duration::from_secs(10)
}
fn default_max_gps_disagreement() -> Duration {
    Duration::from_millis(500)
}
/// A LAN Stratum 1 is within a millisecond of true time, and public
/// servers measured over a home uplink within some tens of milliseconds
/// (asymmetric routes, a loaded uplink's queues); a server a whole second
/// or a wrong step away is far outside both. 100 ms leaves the noisy
/// measurement its room and still catches a primary long before its error
/// breaks TOTP (30 s windows) or Kerberos (5 min).
fn default_max_primary_disagreement() -> Duration {
    Duration::from_millis(100)
}
fn default_max_primary_stratum() -> u8 {
    4
}
fn default_max_distance() -> Duration {
    Duration::from_secs(1)
}
fn default_fallback_unreachable_after() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_step_threshold() -> Duration {
    Duration::from_secs(1)
}
fn default_floor_save_interval() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_chrony_max_age() -> Duration {
    Duration::from_secs(15)
}
fn default_chrony_socket() -> String {
    "/run/chrony/chronyd.sock".into()
}
fn default_runtime_dir() -> String {
    "/run/gnomon".into()
}
fn default_sources_dir() -> String {
    "/run/gnomon/chrony".into()
}
fn default_state_dir() -> String {
    "/var/lib/gnomon".into()
}
fn default_control_socket() -> String {
    "/run/gnomon/gnomon.sock".into()
}
fn default_read_group() -> String {
    "gnomon".into()
}

/// How bad a [`ConfigProblem`] is: errors stop gnomon from starting,
/// warnings are reported and gnomon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One thing the semantic check found, tied to the key the operator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `fallback.servers[1].address` (indices from 0).
    pub key: String,
    pub severity: Severity,
    pub message: String,
}

impl ConfigProblem {
    pub fn error(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.severity, self.key, self.message)
    }
}

/// Why a configuration text was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or TOML that does not fit the schema (unknown key, wrong
    /// type, missing required key, unparsable duration). `line` and
    /// `column` are 1-based, columns counted in characters.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed but semantically wrong. Holds every problem found,
    /// warnings included, in key order; at least one is an error.
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<ConfigProblem> },
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let mut out = format!(
        "invalid configuration: {errors} error{}",
        if errors == 1 { "" } else { "s" }
    );
    for problem in problems {
        out.push_str("\n  ");
        out.push_str(&problem.to_string());
    }
    out
}

impl Config {
    /// Parses a configuration text without judging it: every error is a
    /// [`ConfigError::Syntax`] with the line and column it was found at.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        // Parsing into a plain table first separates malformed TOML (no key
        // to blame) from TOML that does not fit the schema (a key to name).
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(syntax::error(text, &e, false));
        }
        toml::from_str(text).map_err(|e| syntax::error(text, &e, true))
    }

    /// Every semantic problem, errors and warnings, each with its key.
    pub fn check(&self) -> Vec<ConfigProblem> {
        check::check(self)
    }

    /// Parses and checks. On success returns the configuration and its
    /// warnings; any error makes it [`ConfigError::Invalid`].
    pub fn load(text: &str) -> Result<(Config, Vec<ConfigProblem>), ConfigError> {
        let config = Config::from_toml_str(text)?;
        let problems = config.check();
        if problems.iter().any(ConfigProblem::is_error) {
            return Err(ConfigError::Invalid { problems });
        }
        Ok((config, problems))
    }

    /// A valid Stratum 2 configuration: one LAN GPS server as primary, one
    /// LAN peer and three public servers as fallbacks. Addresses are from
    /// the RFC 5737 documentation ranges and reach nothing.
    pub fn example_client() -> Config {
        Config {
            role: Role::Client,
            allow_dns_fallbacks: false,
            primary: PrimaryConfig {
                servers: vec![NtpServerConfig::new("192.0.2.10")],
            },
            gps: None,
            fallback: FallbackConfig {
                servers: vec![
                    NtpServerConfig::new("203.0.113.1"),
                    NtpServerConfig::new("203.0.113.2"),
                    NtpServerConfig::new("203.0.113.3"),
                ],
                peers: vec![NtpServerConfig::new("192.0.2.12")],
            },
            thresholds: Thresholds::default(),
            paths: Paths::default(),
            control: ControlConfig::default(),
            history: crate::samples::HistoryConfig::default(),
            metrics: MetricsConfig::default(),
            certs: crate::certs::CertsConfig::default(),
        }
    }

    /// A valid Stratum 1 configuration: a GPS hat on the Pi UART with
    /// kernel PPS, three public servers and two LAN peers as fallbacks.
    pub fn example_gps() -> Config {
        Config {
            role: Role::Gps,
            allow_dns_fallbacks: false,
            primary: PrimaryConfig::default(),
            gps: Some(GpsConfig::default()),
            fallback: FallbackConfig {
                servers: vec![
                    NtpServerConfig::new("203.0.113.1"),
                    NtpServerConfig::new("203.0.113.2"),
                    NtpServerConfig::new("203.0.113.3"),
                ],
                // LAN servers that take their time from this host.
                peers: vec![
                    NtpServerConfig {
                        follows_this_host: true,
                        ..NtpServerConfig::new("192.0.2.11")
                    },
                    NtpServerConfig {
                        follows_this_host: true,
                        ..NtpServerConfig::new("192.0.2.12")
                    },
                ],
            },
            thresholds: Thresholds::default(),
            paths: Paths::default(),
            control: ControlConfig::default(),
            history: crate::samples::HistoryConfig::default(),
            metrics: MetricsConfig::default(),
            certs: crate::certs::CertsConfig::default(),
        }
    }
}
