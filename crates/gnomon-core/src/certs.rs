//! Time-dependent artefacts: TLS certificates (a DNS server's DoT/DoH
//! certificate, a web UI's) whose validity window is judged against the
//! system clock and against the best time gnomon trusts, so an operator
//! hears "not yet valid because the clock is 2 years behind" instead of
//! "DNS is down", and "expires in 5 days" before it does.
//!
//! The daemon reads and parses the files ([`CertObservation`]); this module
//! judges them ([`assess`]), remembers what each file held to notice a
//! renewal ([`CertWatch`]), and says which alerts hold.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    alert::{Alert, AlertKind},
    config::ConfigProblem,
    time::{human_duration, MonoTime, Offset, WallTime},
};

/// `[certs]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CertsConfig {
    /// PEM files holding a certificate (the first one is judged: the leaf).
    #[serde(default)]
    pub files: Vec<String>,
    /// A certificate this close to its end is a warning.
    #[serde(
        default = "default_warn_before",
        with = "crate::config::duration_serde"
    )]
    pub warn_before: Duration,
    /// How often the files are read again (also at start and on SIGHUP).
    #[serde(
        default = "default_check_every",
        with = "crate::config::duration_serde"
    )]
    pub check_every: Duration,
}

fn default_warn_before() -> Duration {
    Duration::from_secs(21 * 86_400)
}

fn default_check_every() -> Duration {
    Duration::from_secs(3600)
}

impl Default for CertsConfig {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            warn_before: default_warn_before(),
            check_every: default_check_every(),
        }
    }
}

const MIN_CHECK_EVERY: Duration = Duration::from_secs(10);
const MAX_CHECK_EVERY: Duration = Duration::from_secs(86_400);
const MAX_WARN_BEFORE: Duration = Duration::from_secs(365 * 86_400);
/// More files than anyone watches; keeps a status report bounded.
pub const MAX_FILES: usize = 64;

impl CertsConfig {
    pub(crate) fn check(&self, out: &mut Vec<ConfigProblem>) {
        for (i, f) in self.files.iter().enumerate() {
            let key = format!("certs.files[{i}]");
            if !f.starts_with('/') {
                out.push(ConfigProblem::error(
                    key,
                    format!("\"{f}\" is not an absolute path"),
                ));
            } else if self.files.iter().take(i).any(|g| g == f) {
                out.push(ConfigProblem::warning(
                    key,
                    format!("\"{f}\" is listed twice"),
                ));
            }
        }
        if self.files.len() > MAX_FILES {
            out.push(ConfigProblem::error(
                "certs.files",
                format!("{} files; at most {MAX_FILES}", self.files.len()),
            ));
        }
        if self.warn_before.is_zero() || self.warn_before > MAX_WARN_BEFORE {
            out.push(ConfigProblem::error(
                "certs.warn-before",
                format!(
                    "{} is outside 1ms..365 days",
                    human_duration(self.warn_before)
                ),
            ));
        }
        if self.check_every < MIN_CHECK_EVERY || self.check_every > MAX_CHECK_EVERY {
            out.push(ConfigProblem::error(
                "certs.check-every",
                format!(
                    "{} is outside {}..{}",
                    human_duration(self.check_every),
                    human_duration(MIN_CHECK_EVERY),
                    human_duration(MAX_CHECK_EVERY)
                ),
            ));
        }
    }
}

/// What the daemon found in one certificate file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    pub not_before: WallTime,
    pub not_after: WallTime,
    /// Certificates in the file (the leaf and its chain).
    pub certificates: usize,
}

/// One file, read now: its leaf certificate, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertObservation {
    pub path: String,
    pub read: Result<CertInfo, String>,
}

/// The best estimate of true time gnomon has, as a correction to the
/// system clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedTime {
    /// Trusted time − system clock: positive when the clock is behind.
    pub offset: Offset,
    /// Where it comes from, in words: "GPS", "chrony, synchronised to
    /// 203.0.113.1", "NTP sources 192.0.2.12, 203.0.113.1 (median)",
    /// "time floor, build time" (see `Engine::trusted_time`).
    pub basis: String,
    /// Only a lower bound: true time is at least this (the time floor).
    pub lower_bound: bool,
}

/// A certificate's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertState {
    Valid,
    /// Within `warn-before` of its end.
    Expiring,
    /// Before its start by the system clock only: the clock is behind.
    NotYetValidByClock,
    /// Before its start by trusted time too.
    NotYetValid,
    /// Past its end by the system clock only: the clock is ahead.
    ExpiredByClock,
    /// Past its end by trusted time.
    Expired,
    /// The file could not be read or holds no certificate.
    Unreadable,
}

impl CertState {
    pub const fn name(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Expiring => "expiring",
            CertState::NotYetValidByClock => "not-yet-valid-by-clock",
            CertState::NotYetValid => "not-yet-valid",
            CertState::ExpiredByClock => "expired-by-clock",
            CertState::Expired => "expired",
            CertState::Unreadable => "unreadable",
        }
    }

    /// Whether TLS with this certificate fails (or will, by true time).
    pub const fn is_critical(self) -> bool {
        matches!(
            self,
            CertState::NotYetValidByClock
                | CertState::NotYetValid
                | CertState::ExpiredByClock
                | CertState::Expired
        )
    }
}

/// One certificate as `gnomonctl certs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStatus {
    pub path: String,
    pub info: Option<CertInfo>,
    pub state: CertState,
    /// Whole days until `not_after` by the time it was judged against
    /// (negative once past).
    pub days_left: Option<i64>,
    /// What it was judged against: "system clock" or the trusted basis.
    pub judged_by: String,
    /// Trusted time − system clock, when that is what makes the difference.
    pub clock_error: Option<Offset>,
    /// The standing in words.
    pub detail: String,
    /// When the file last changed to a new certificate, by the system clock.
    pub renewed: Option<WallTime>,
}

const DAY: i64 = 86_400;

fn days(from: WallTime, to: WallTime) -> i64 {
    to.since(from)
        .as_nanos()
        .div_euclid(1_000_000_000)
        .div_euclid(DAY)
}

fn ahead_behind(error: Offset) -> &'static str {
    if error.as_nanos() > 0 {
        "behind"
    } else {
        "ahead"
    }
}

/// Judges `read` at system time `system`, with `trusted` time if gnomon has
/// any, warning within `warn_before` of the end.
pub fn assess(
    path: &str,
    read: &Result<CertInfo, String>,
    system: WallTime,
    trusted: Option<&TrustedTime>,
    warn_before: Duration,
) -> CertStatus {
    let info = match read {
        Ok(info) => info,
        Err(e) => {
            return CertStatus {
                path: path.to_owned(),
                info: None,
                state: CertState::Unreadable,
                days_left: None,
                judged_by: "system clock".to_owned(),
                clock_error: None,
                detail: e.clone(),
                renewed: None,
            }
        }
    };
    let (nb, na) = (info.not_before, info.not_after);
    let truth = trusted.map_or(system, |t| system.offset_by(t.offset));
    let basis = trusted.map_or("the system clock", |t| t.basis.as_str());
    let error = trusted.map(|t| t.offset).filter(|o| !o.abs().is_zero());
    let at_least = if trusted.is_some_and(|t| t.lower_bound) {
        "at least "
    } else {
        ""
    };
    let err_words = |e: Offset| {
        format!(
            "the system clock is {at_least}{} {} ({basis})",
            human_duration(e.abs()),
            ahead_behind(e)
        )
    };
    let (state, detail, clock_error) = if system < nb {
        if truth >= nb {
            let e = error.unwrap_or(Offset::ZERO);
            (
                CertState::NotYetValidByClock,
                format!(
                    "not yet valid because {}: valid from {} by the certificate, TLS with it fails until the clock is right",
                    err_words(e),
                    nb.rfc3339_millis()
                ),
                Some(e),
            )
        } else {
            (
                CertState::NotYetValid,
                format!(
                    "not yet valid: valid from {}, in {} by {basis}",
                    nb.rfc3339_millis(),
                    human_duration(nb.since(truth).abs())
                ),
                None,
            )
        }
    } else if system > na {
        if truth <= na && trusted.is_some_and(|t| !t.lower_bound) {
            let e = error.unwrap_or(Offset::ZERO);
            (
                CertState::ExpiredByClock,
                format!(
                    "expired by the system clock only: {}; by it the certificate ends {} ({} left)",
                    err_words(e),
                    na.rfc3339_millis(),
                    human_duration(na.since(truth).abs())
                ),
                Some(e),
            )
        } else {
            (
                CertState::Expired,
                format!(
                    "expired {} ago ({}), by {basis}",
                    human_duration(truth.since(na).abs()),
                    na.rfc3339_millis()
                ),
                None,
            )
        }
    } else if truth > na {
        let e = error.unwrap_or(Offset::ZERO);
        (
            CertState::Expired,
            format!(
                "expired {} ago by {basis} ({}); it only looks valid because {}",
                human_duration(truth.since(na).abs()),
                na.rfc3339_millis(),
                err_words(e)
            ),
            Some(e),
        )
    } else if truth < nb {
        let e = error.unwrap_or(Offset::ZERO);
        (
            CertState::NotYetValid,
            format!(
                "not yet valid by {basis} (from {}); it only looks valid because {}",
                nb.rfc3339_millis(),
                err_words(e)
            ),
            Some(e),
        )
    } else {
        let left = na.since(truth).abs();
        if left <= warn_before {
            (
                CertState::Expiring,
                format!(
                    "expires in {} ({}), by {basis}: renew it",
                    human_duration(left),
                    na.rfc3339_millis()
                ),
                None,
            )
        } else {
            (
                CertState::Valid,
                format!(
                    "valid until {} ({} left)",
                    na.rfc3339_millis(),
                    human_duration(left)
                ),
                None,
            )
        }
    };
    CertStatus {
        path: path.to_owned(),
        info: Some(info.clone()),
        state,
        days_left: Some(days(truth, na)),
        judged_by: basis.to_owned(),
        clock_error,
        detail,
        renewed: None,
    }
}

/// The alert a status raises, if any.
pub fn alert_for(status: &CertStatus) -> Option<Alert> {
    let kind = match status.state {
        CertState::Valid => return None,
        CertState::Expiring => AlertKind::CertificateExpiring,
        CertState::NotYetValidByClock | CertState::NotYetValid => AlertKind::CertificateNotYetValid,
        CertState::ExpiredByClock | CertState::Expired => AlertKind::CertificateExpired,
        CertState::Unreadable => AlertKind::CertificateUnreadable,
    };
    let what = status
        .info
        .as_ref()
        .map_or_else(String::new, |i| format!(" ({})", i.subject));
    let mut alert = Alert::new(
        kind,
        format!("certificate {}{what}: {}", status.path, status.detail),
    )
    .about(status.path.clone())
    .with("cert_state", status.state.name())
    .with("cert_judged_by", &status.judged_by);
    if let Some(i) = &status.info {
        alert = alert
            .with("cert_not_before", i.not_before)
            .with("cert_not_after", i.not_after)
            .with("cert_fingerprint", &i.fingerprint);
    }
    if let Some(d) = status.days_left {
        alert = alert.with("cert_days_left", d);
    }
    if let Some(e) = status.clock_error {
        alert = alert.with("clock_error_ns", e.as_nanos());
    }
    Some(alert)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Renewal {
    at: MonoTime,
    wall: Option<WallTime>,
    old_not_after: WallTime,
    /// Held until the next read after this one.
    reads_left: u8,
}

/// What the files held at the last read, and recent renewals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertWatch {
    current: Vec<CertObservation>,
    renewals: BTreeMap<String, Renewal>,
}

impl CertWatch {
    /// A new read of every file. A file whose certificate changed to
    /// another one is a renewal, announced (a notice) until the next read.
    pub fn observe(&mut self, now: MonoTime, wall: Option<WallTime>, read: Vec<CertObservation>) {
        self.renewals.retain(|_, r| {
            r.reads_left = r.reads_left.saturating_sub(1);
            r.reads_left > 0
        });
        for obs in &read {
            let Ok(new) = &obs.read else { continue };
            let old = self
                .current
                .iter()
                .find(|o| o.path == obs.path)
                .and_then(|o| o.read.as_ref().ok());
            if let Some(old) = old {
                if old.fingerprint != new.fingerprint {
                    self.renewals.insert(
                        obs.path.clone(),
                        Renewal {
                            at: now,
                            wall,
                            old_not_after: old.not_after,
                            reads_left: 1,
                        },
                    );
                }
            }
        }
        self.current = read;
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Every file's standing now.
    pub fn statuses(
        &self,
        system: WallTime,
        trusted: Option<&TrustedTime>,
        warn_before: Duration,
    ) -> Vec<CertStatus> {
        self.current
            .iter()
            .map(|o| {
                let mut s = assess(&o.path, &o.read, system, trusted, warn_before);
                s.renewed = self.renewals.get(&o.path).and_then(|r| r.wall);
                s
            })
            .collect()
    }

    /// The alerts that hold: one per file in trouble, and a notice per
    /// recent renewal.
    pub fn alerts(
        &self,
        now: MonoTime,
        system: WallTime,
        trusted: Option<&TrustedTime>,
        warn_before: Duration,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for s in self.statuses(system, trusted, warn_before) {
            if let Some(a) = alert_for(&s) {
                out.push(a);
            }
            if let (Some(r), Some(info)) = (self.renewals.get(&s.path), &s.info) {
                out.push(
                    Alert::new(
                        AlertKind::CertificateRenewed,
                        format!(
                            "certificate {} renewed {} ago: now valid until {} (was until {}), {}",
                            s.path,
                            human_duration(now.since(r.at)),
                            info.not_after.rfc3339_millis(),
                            r.old_not_after.rfc3339_millis(),
                            s.state.name()
                        ),
                    )
                    .about(s.path.clone())
                    .with("cert_not_after", info.not_after)
                    .with("cert_fingerprint", &info.fingerprint),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000; // 2026-11-18

    fn at(days: i64) -> WallTime {
        WallTime::from_unix_secs(NOW + days * DAY)
    }

    fn cert(from: i64, to: i64, fp: &str) -> Result<CertInfo, String> {
        Ok(CertInfo {
            subject: "CN=dns.lan".into(),
            issuer: "CN=lan CA".into(),
            serial: "01".into(),
            fingerprint: fp.into(),
            not_before: at(from),
            not_after: at(to),
            certificates: 1,
        })
    }

    fn trusted(days: i64, basis: &str, lower_bound: bool) -> TrustedTime {
        TrustedTime {
            offset: Offset::from_secs(days * DAY),
            basis: basis.into(),
            lower_bound,
        }
    }

    const WARN: Duration = Duration::from_secs(21 * 86_400);

    #[test]
    fn a_clock_years_behind_makes_a_good_certificate_not_yet_valid_and_says_so() {
        // The cert is valid from 30 days ago for a year; the system clock
        // reads 2 years ago; the GPS says now.
        let c = cert(-30, 335, "a");
        let system = at(-730);
        let gps = trusted(730, "GPS", false);
        let s = assess("/etc/dot.pem", &c, system, Some(&gps), WARN);
        assert_eq!(s.state, CertState::NotYetValidByClock);
        assert!(s.state.is_critical());
        assert_eq!(s.clock_error, Some(Offset::from_secs(730 * DAY)));
        assert!(
            s.detail.contains("system clock is 2.0 years behind (GPS)"),
            "{}",
            s.detail
        );
        assert_eq!(s.days_left, Some(335));
        let a = alert_for(&s).unwrap();
        assert_eq!(a.kind, AlertKind::CertificateNotYetValid);
        assert_eq!(a.subject.as_deref(), Some("/etc/dot.pem"));

        // Only the floor to go by: "at least".
        let floor = trusted(700, "time floor (build time)", true);
        let s = assess("/etc/dot.pem", &c, system, Some(&floor), WARN);
        assert_eq!(s.state, CertState::NotYetValidByClock);
        assert!(s.detail.contains("at least"), "{}", s.detail);

        // No trusted time: the clock cannot be blamed.
        let s = assess("/etc/dot.pem", &c, system, None, WARN);
        assert_eq!(s.state, CertState::NotYetValid);
        assert!(s.detail.contains("by the system clock"), "{}", s.detail);
    }

    #[test]
    fn a_certificate_from_the_future_is_not_yet_valid_by_trusted_time_too() {
        let s = assess(
            "/x.pem",
            &cert(2, 90, "a"),
            at(0),
            Some(&trusted(0, "chrony", false)),
            WARN,
        );
        assert_eq!(s.state, CertState::NotYetValid);
        assert!(s.detail.contains("in 2 days by chrony"), "{}", s.detail);
        assert_eq!(s.clock_error, None);
    }

    #[test]
    fn expiring_expired_and_the_boundaries() {
        let gps = trusted(0, "GPS", false);
        let s = assess("/x.pem", &cert(-300, 5, "a"), at(0), Some(&gps), WARN);
        assert_eq!(s.state, CertState::Expiring);
        assert_eq!(s.days_left, Some(5));
        assert!(s.detail.contains("expires in 5 days"), "{}", s.detail);
        assert_eq!(alert_for(&s).unwrap().kind, AlertKind::CertificateExpiring);
        assert_eq!(
            alert_for(&s).unwrap().kind.priority(),
            crate::alert::Priority::Warning
        );

        // Exactly at the horizon: warned. A second beyond: valid.
        let s = assess("/x.pem", &cert(-300, 21, "a"), at(0), Some(&gps), WARN);
        assert_eq!(s.state, CertState::Expiring);
        let beyond = WallTime::from_unix_secs(NOW + 21 * DAY + 1);
        let mut c = cert(-300, 21, "a");
        if let Ok(i) = &mut c {
            i.not_after = beyond;
        }
        assert_eq!(
            assess("/x.pem", &c, at(0), Some(&gps), WARN).state,
            CertState::Valid
        );

        // Exactly at not_after and not_before: still valid (inclusive).
        assert_eq!(
            assess("/x.pem", &cert(-300, 0, "a"), at(0), None, WARN).state,
            CertState::Expiring
        );
        assert_eq!(
            assess("/x.pem", &cert(0, 300, "a"), at(0), None, WARN).state,
            CertState::Valid
        );

        let s = assess("/x.pem", &cert(-300, -3, "a"), at(0), Some(&gps), WARN);
        assert_eq!(s.state, CertState::Expired);
        assert_eq!(s.days_left, Some(-3));
        assert!(s.detail.contains("expired 3 days ago"), "{}", s.detail);
        assert_eq!(alert_for(&s).unwrap().kind, AlertKind::CertificateExpired);
        assert_eq!(
            alert_for(&s).unwrap().kind.priority(),
            crate::alert::Priority::Critical
        );
    }

    #[test]
    fn a_clock_ahead_expires_a_good_certificate_and_a_clock_behind_hides_an_expired_one() {
        // System clock 60 days ahead; the certificate ends in 30 days.
        let s = assess(
            "/x.pem",
            &cert(-300, 30, "a"),
            at(60),
            Some(&trusted(-60, "NTP sources (median of 3)", false)),
            WARN,
        );
        assert_eq!(s.state, CertState::ExpiredByClock);
        assert!(s.detail.contains("60 days ahead"), "{}", s.detail);
        // Clock 10 days behind; the certificate ended 5 days ago.
        let s = assess(
            "/x.pem",
            &cert(-300, -5, "a"),
            at(-10),
            Some(&trusted(10, "GPS", false)),
            WARN,
        );
        assert_eq!(s.state, CertState::Expired);
        assert!(
            s.detail
                .contains("only looks valid because the system clock is 10 days behind"),
            "{}",
            s.detail
        );
    }

    #[test]
    fn unreadable_files_are_warnings() {
        let s = assess(
            "/nope.pem",
            &Err("reading /nope.pem: No such file".into()),
            at(0),
            None,
            WARN,
        );
        assert_eq!(s.state, CertState::Unreadable);
        let a = alert_for(&s).unwrap();
        assert_eq!(a.kind, AlertKind::CertificateUnreadable);
        assert_eq!(a.kind.priority(), crate::alert::Priority::Warning);
    }

    #[test]
    fn a_renewal_is_announced_until_the_next_read_and_resolves_the_warning() {
        let mut w = CertWatch::default();
        let t = |s: u64| MonoTime::from_duration(Duration::from_secs(s));
        let obs = |c| {
            vec![CertObservation {
                path: "/x.pem".into(),
                read: c,
            }]
        };
        w.observe(t(0), Some(at(0)), obs(cert(-300, 5, "old")));
        let alerts = w.alerts(t(1), at(0), None, WARN);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, AlertKind::CertificateExpiring);

        // Renewed: the warning is gone, a notice says so.
        w.observe(t(3600), Some(at(0)), obs(cert(0, 90, "new")));
        let alerts = w.alerts(t(3601), at(0), None, WARN);
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::CertificateRenewed]);
        assert_eq!(
            AlertKind::CertificateRenewed.priority(),
            crate::alert::Priority::Notice
        );
        assert!(
            alerts[0].message.contains("renewed"),
            "{}",
            alerts[0].message
        );
        assert_eq!(w.statuses(at(0), None, WARN)[0].renewed, Some(at(0)));

        // The next read with the same certificate ends the notice.
        w.observe(t(7200), Some(at(0)), obs(cert(0, 90, "new")));
        assert!(w.alerts(t(7201), at(0), None, WARN).is_empty());
        // A read that fails does not count as a renewal afterwards.
        w.observe(t(9000), Some(at(0)), obs(Err("gone".into())));
        w.observe(t(9900), Some(at(0)), obs(cert(0, 90, "new")));
        assert!(w.alerts(t(9901), at(0), None, WARN).is_empty());
    }

    #[test]
    fn config_checks() {
        let mut out = Vec::new();
        CertsConfig {
            files: vec!["relative.pem".into(), "/a.pem".into(), "/a.pem".into()],
            warn_before: Duration::ZERO,
            check_every: Duration::from_secs(1),
        }
        .check(&mut out);
        let keys: Vec<&str> = out.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "certs.files[0]",
                "certs.files[2]",
                "certs.warn-before",
                "certs.check-every"
            ]
        );
        let mut out = Vec::new();
        CertsConfig::default().check(&mut out);
        assert!(out.is_empty());
    }
}
