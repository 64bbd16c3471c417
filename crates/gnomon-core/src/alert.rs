//! The alert model: what can be wrong, how loud it is, and the lifecycle of
//! each alert (opened, repeated while it lasts, resolved). Alerts are
//! level-triggered: on every pass the engine states which conditions hold,
//! and the [`AlertBook`] turns that into events.
//!
//! Every kind has a stable journald MESSAGE_ID; the catalog in `deploy/`
//! explains each one, so never change an ID once released.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::time::MonoTime;

/// syslog/journald priority of an alert while it is active. Resolutions are
/// always logged at `Notice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    Critical,
    Warning,
    Notice,
}

impl Priority {
    /// The syslog number journald's PRIORITY field takes.
    pub const fn syslog(self) -> u8 {
        match self {
            Priority::Critical => 2,
            Priority::Warning => 4,
            Priority::Notice => 5,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Critical => "crit",
            Priority::Warning => "warning",
            Priority::Notice => "notice",
        })
    }
}

/// Every condition gnomon alerts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// Neither the primary nor any fallback can be used: the clock is free-running.
    NoUsableReference,
    /// The system clock is before the time floor.
    ClockBeforeFloor,
    /// The system clock is far from what trusted sources measure, though
    /// not before the floor (e.g. restored from a day-old journal).
    ClockFarOff,
    /// The GPS reports a valid fix with a time that is wrong.
    GpsInsane,
    /// The primary reference is missing or unhealthy (which part, in the message).
    PrimaryUnusable,
    /// The primary answers, but the independent sources measure another
    /// time: it is kept out of selection.
    PrimaryDisagrees,
    /// The reference in use cannot be cross-checked: too few independent
    /// sources answer.
    CrossCheckUnavailable,
    /// Fallbacks were made selectable.
    FallbackEngaged,
    /// A fallback has not answered for a long time, while still unused.
    FallbackUnreachable,
    /// chrony's command socket does not answer.
    ChronyUnreachable,
    /// The wanted source plan could not be written or loaded into chrony.
    PlanNotApplied,
    /// Persisted state could not be written.
    StateNotSaved,
    /// The operator froze the automation.
    Frozen,
    /// A change was due but the per-hour change bound held it back.
    ChangeBudgetExhausted,
    /// A watched TLS certificate is not yet valid (by the clock, or truly).
    CertificateNotYetValid,
    /// A watched TLS certificate is past its end (by the clock, or truly).
    CertificateExpired,
    /// A watched TLS certificate ends within `[certs] warn-before`.
    CertificateExpiring,
    /// A watched certificate file cannot be read or holds no certificate.
    CertificateUnreadable,
    /// A watched certificate file holds a new certificate.
    CertificateRenewed,
}

impl AlertKind {
    pub const ALL: [AlertKind; 19] = [
        AlertKind::NoUsableReference,
        AlertKind::ClockBeforeFloor,
        AlertKind::ClockFarOff,
        AlertKind::GpsInsane,
        AlertKind::PrimaryUnusable,
        AlertKind::PrimaryDisagrees,
        AlertKind::CrossCheckUnavailable,
        AlertKind::FallbackEngaged,
        AlertKind::FallbackUnreachable,
        AlertKind::ChronyUnreachable,
        AlertKind::PlanNotApplied,
        AlertKind::StateNotSaved,
        AlertKind::Frozen,
        AlertKind::ChangeBudgetExhausted,
        AlertKind::CertificateNotYetValid,
        AlertKind::CertificateExpired,
        AlertKind::CertificateExpiring,
        AlertKind::CertificateUnreadable,
        AlertKind::CertificateRenewed,
    ];

    /// journald MESSAGE_ID (128-bit, lowercase hex without dashes). Stable.
    pub const fn message_id(self) -> &'static str {
        match self {
            AlertKind::NoUsableReference => "d3274c527a7f44a0a105028cfe470c20",
            AlertKind::ClockBeforeFloor => "26dcca6b148d4490a08a0293b5e1730b",
            AlertKind::ClockFarOff => "b916726c58a741a98e7cf51726eb8422",
            AlertKind::GpsInsane => "fed13c23d6524641a7c9f1d7acac0c48",
            AlertKind::PrimaryUnusable => "1250aabf4a534b86a3685f86d078b3cb",
            AlertKind::PrimaryDisagrees => "c29bc96e389f48fdb24828fff1b9b02b",
            AlertKind::CrossCheckUnavailable => "32ff63d548944310b13a571c44c6d469",
            AlertKind::FallbackEngaged => "32bbaf7703d146aab44b9e335ff804dd",
            AlertKind::FallbackUnreachable => "4fa67174de014479b66464226d32e8d1",
            AlertKind::ChronyUnreachable => "8f597d0825d44420bb5f28bbe35780a8",
            AlertKind::PlanNotApplied => "ac8725a514304565a8b8d3af1fc72cfe",
            AlertKind::StateNotSaved => "20f2b76bbc3a4b8a8f655ce452d912b5",
            AlertKind::Frozen => "f9bc5caf9572411f9ae36bc9423ea495",
            AlertKind::ChangeBudgetExhausted => "21c6a1c86f6b4f07b9cf9194aee79dbc",
            AlertKind::CertificateNotYetValid => "e9e80369aa164ce2a268730937eca90c",
            AlertKind::CertificateExpired => "e7db3cd272ba4d1c857fc5670bdb2f63",
            AlertKind::CertificateExpiring => "0c9e73a4a2a74643ab37d86018c22155",
            AlertKind::CertificateUnreadable => "e21b4f25a95f47bf82120f1ec2192cd4",
            AlertKind::CertificateRenewed => "bae6d6aa131942b8886d5a468c25c90d",
        }
    }

    pub const fn priority(self) -> Priority {
        match self {
            AlertKind::NoUsableReference
            | AlertKind::ClockBeforeFloor
            | AlertKind::ClockFarOff
            | AlertKind::GpsInsane
            | AlertKind::PrimaryDisagrees
            | AlertKind::CertificateNotYetValid
            | AlertKind::CertificateExpired => Priority::Critical,
            AlertKind::PrimaryUnusable
            | AlertKind::CrossCheckUnavailable
            | AlertKind::FallbackEngaged
            | AlertKind::FallbackUnreachable
            | AlertKind::ChronyUnreachable
            | AlertKind::PlanNotApplied
            | AlertKind::StateNotSaved
            | AlertKind::ChangeBudgetExhausted
            | AlertKind::CertificateExpiring
            | AlertKind::CertificateUnreadable => Priority::Warning,
            AlertKind::Frozen | AlertKind::CertificateRenewed => Priority::Notice,
        }
    }

    /// The value of the `GNOMON_ALERT` journald field.
    pub const fn name(self) -> &'static str {
        match self {
            AlertKind::NoUsableReference => "no-usable-reference",
            AlertKind::ClockBeforeFloor => "clock-before-floor",
            AlertKind::ClockFarOff => "clock-far-off",
            AlertKind::GpsInsane => "gps-insane",
            AlertKind::PrimaryUnusable => "primary-unusable",
            AlertKind::PrimaryDisagrees => "primary-disagrees",
            AlertKind::CrossCheckUnavailable => "cross-check-unavailable",
            AlertKind::FallbackEngaged => "fallback-engaged",
            AlertKind::FallbackUnreachable => "fallback-unreachable",
            AlertKind::ChronyUnreachable => "chrony-unreachable",
            AlertKind::PlanNotApplied => "plan-not-applied",
            AlertKind::StateNotSaved => "state-not-saved",
            AlertKind::Frozen => "frozen",
            AlertKind::ChangeBudgetExhausted => "change-budget-exhausted",
            AlertKind::CertificateNotYetValid => "certificate-not-yet-valid",
            AlertKind::CertificateExpired => "certificate-expired",
            AlertKind::CertificateExpiring => "certificate-expiring",
            AlertKind::CertificateUnreadable => "certificate-unreadable",
            AlertKind::CertificateRenewed => "certificate-renewed",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One active condition: what, about which thing, in words, with evidence
/// as structured fields (journald `GNOMON_<KEY>` fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// The thing the alert is about, e.g. a fallback's address; part of the
    /// alert's identity, so two dead fallbacks are two alerts.
    pub subject: Option<String>,
    pub message: String,
    /// Evidence as (field, value); field names are upper-case ASCII.
    pub evidence: Vec<(String, String)>,
}

impl Alert {
    pub fn new(kind: AlertKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            subject: None,
            message: message.into(),
            evidence: Vec::new(),
        }
    }

    #[must_use]
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    #[must_use]
    pub fn with(mut self, field: &str, value: impl fmt::Display) -> Self {
        self.evidence
            .push((field.to_ascii_uppercase(), value.to_string()));
        self
    }

    pub fn key(&self) -> AlertKey {
        AlertKey {
            kind: self.kind,
            subject: self.subject.clone(),
        }
    }
}

/// Identity of an alert: its kind and subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub kind: AlertKind,
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertPhase {
    Opened,
    Repeated,
    Resolved,
}

impl fmt::Display for AlertPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertPhase::Opened => "opened",
            AlertPhase::Repeated => "repeated",
            AlertPhase::Resolved => "resolved",
        })
    }
}

/// A condition must hold this long before its alert opens, and stop
/// holding this long before it resolves: a condition that flickers (a
/// fallback answering just as it was called silent) is no alert, and no
/// alert opens and resolves within the same second.
pub const ALERT_SETTLE: Duration = Duration::from_secs(1);

/// An alert to log now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub phase: AlertPhase,
    pub alert: Alert,
    /// How long the condition has lasted (zero when opened).
    pub active_for: Duration,
    /// For a resolution: what is true now, in words (the alert keeps the
    /// last words it had while active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl AlertEvent {
    /// Priority to log this event at: the kind's while active, notice once resolved.
    pub fn priority(&self) -> Priority {
        match self.phase {
            AlertPhase::Resolved => Priority::Notice,
            AlertPhase::Opened | AlertPhase::Repeated => self.alert.kind.priority(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ActiveAlert {
    alert: Alert,
    opened: MonoTime,
    last_emitted: MonoTime,
    /// Since when the condition has not held (resolved after [`ALERT_SETTLE`]).
    clear_since: Option<MonoTime>,
}

/// The set of active alerts and their timing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertBook {
    active: BTreeMap<AlertKey, ActiveAlert>,
    /// Conditions that hold but not yet for [`ALERT_SETTLE`], since when.
    pending: BTreeMap<AlertKey, MonoTime>,
}

impl AlertBook {
    /// Reconciles the active set with the conditions that hold now and
    /// returns the events to log: true for [`ALERT_SETTLE`] → opened, still
    /// true and due → repeated, no longer true for [`ALERT_SETTLE`] →
    /// resolved, with `resolution(key)`'s words on what is true now.
    pub fn reconcile(
        &mut self,
        now: MonoTime,
        holding: Vec<Alert>,
        realert: Duration,
        resolution: impl Fn(&AlertKey) -> Option<String>,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut seen = BTreeMap::new();
        for alert in holding {
            seen.insert(alert.key(), alert);
        }
        self.pending.retain(|k, _| seen.contains_key(k));
        let gone: Vec<AlertKey> = self
            .active
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            let settled = match self.active.get_mut(&key) {
                Some(a) => now.since(*a.clear_since.get_or_insert(now)) >= ALERT_SETTLE,
                None => false,
            };
            if settled {
                if let Some(a) = self.active.remove(&key) {
                    events.push(AlertEvent {
                        phase: AlertPhase::Resolved,
                        active_for: now.since(a.opened),
                        resolution: resolution(&key),
                        alert: a.alert,
                    });
                }
            }
        }
        for (key, alert) in seen {
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.alert = alert;
                    a.clear_since = None;
                    if now.since(a.last_emitted) >= realert {
                        a.last_emitted = now;
                        events.push(AlertEvent {
                            phase: AlertPhase::Repeated,
                            alert: a.alert.clone(),
                            active_for: now.since(a.opened),
                            resolution: None,
                        });
                    }
                }
                None => {
                    let since = *self.pending.entry(key.clone()).or_insert(now);
                    if now.since(since) < ALERT_SETTLE {
                        continue;
                    }
                    self.pending.remove(&key);
                    events.push(AlertEvent {
                        phase: AlertPhase::Opened,
                        alert: alert.clone(),
                        active_for: Duration::ZERO,
                        resolution: None,
                    });
                    self.active.insert(
                        key,
                        ActiveAlert {
                            alert,
                            opened: now,
                            last_emitted: now,
                            clear_since: None,
                        },
                    );
                }
            }
        }
        events
    }

    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().map(|a| &a.alert)
    }

    /// The keys of the active alerts.
    pub fn active_keys(&self) -> impl Iterator<Item = &AlertKey> {
        self.active.keys()
    }

    pub fn is_active(&self, kind: AlertKind) -> bool {
        self.active.keys().any(|k| k.kind == kind)
    }

    /// When the next repeat, opening or resolution falls due, for the
    /// engine's wake-up.
    pub fn next_repeat(&self, realert: Duration) -> Option<MonoTime> {
        let repeats = self.active.values().map(|a| match a.clear_since {
            Some(clear) => clear.plus(ALERT_SETTLE),
            None => a.last_emitted.plus(realert),
        });
        let openings = self.pending.values().map(|since| since.plus(ALERT_SETTLE));
        repeats.chain(openings).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_secs(s))
    }

    fn none(_: &AlertKey) -> Option<String> {
        None
    }

    #[test]
    fn lifecycle_open_repeat_resolve() {
        let mut book = AlertBook::default();
        let realert = Duration::from_secs(600);
        let a = Alert::new(AlertKind::FallbackUnreachable, "silent").about("192.0.2.1");
        assert!(book
            .reconcile(t(0), vec![a.clone()], realert, none)
            .is_empty());
        assert_eq!(book.next_repeat(realert), Some(t(1)));
        let ev = book.reconcile(t(1), vec![a.clone()], realert, none);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].phase, AlertPhase::Opened);
        assert!(book
            .reconcile(t(600), vec![a.clone()], realert, none)
            .is_empty());
        let ev = book.reconcile(t(601), vec![a.clone()], realert, none);
        assert_eq!(ev[0].phase, AlertPhase::Repeated);
        assert_eq!(ev[0].active_for, Duration::from_secs(600));
        assert!(book.reconcile(t(700), vec![], realert, none).is_empty());
        let ev = book.reconcile(t(701), vec![], realert, |_| Some("answers again".into()));
        assert_eq!(ev[0].phase, AlertPhase::Resolved);
        assert_eq!(ev[0].resolution.as_deref(), Some("answers again"));
        assert_eq!(ev[0].alert.message, "silent");
        assert_eq!(ev[0].priority(), Priority::Notice);
        assert!(!book.is_active(AlertKind::FallbackUnreachable));
    }

    #[test]
    fn a_flicker_is_no_alert_and_none_resolves_within_a_second() {
        let mut book = AlertBook::default();
        let realert = Duration::from_secs(600);
        let a = Alert::new(AlertKind::FallbackUnreachable, "silent").about("192.0.2.1");
        let ms = |m: u64| MonoTime::from_duration(Duration::from_millis(m));
        // Holds for 900 ms, then not: never opened.
        assert!(book
            .reconcile(ms(0), vec![a.clone()], realert, none)
            .is_empty());
        assert!(book
            .reconcile(ms(900), vec![a.clone()], realert, none)
            .is_empty());
        assert!(book.reconcile(ms(1000), vec![], realert, none).is_empty());
        assert!(book
            .reconcile(ms(1500), vec![a.clone()], realert, none)
            .is_empty());
        let ev = book.reconcile(ms(2500), vec![a.clone()], realert, none);
        assert_eq!(ev[0].phase, AlertPhase::Opened);
        // Stops holding at once, holds again within the second: still open,
        // nothing logged.
        assert!(book.reconcile(ms(2600), vec![], realert, none).is_empty());
        assert!(book
            .reconcile(ms(3000), vec![a.clone()], realert, none)
            .is_empty());
        assert!(book.is_active(AlertKind::FallbackUnreachable));
        assert!(book.reconcile(ms(3100), vec![], realert, none).is_empty());
        let ev = book.reconcile(ms(4100), vec![], realert, none);
        assert_eq!(ev[0].phase, AlertPhase::Resolved);
        assert!(ev[0].active_for >= ALERT_SETTLE);
    }

    #[test]
    fn subjects_are_distinct_alerts() {
        let mut book = AlertBook::default();
        let a = Alert::new(AlertKind::FallbackUnreachable, "x").about("a");
        let b = Alert::new(AlertKind::FallbackUnreachable, "x").about("b");
        let realert = Duration::from_secs(60);
        assert!(book
            .reconcile(t(0), vec![a.clone(), b.clone()], realert, none)
            .is_empty());
        let ev = book.reconcile(t(1), vec![a, b], realert, none);
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn message_ids_are_unique_uuids() {
        let mut ids: Vec<&str> = AlertKind::ALL.iter().map(|k| k.message_id()).collect();
        assert!(ids
            .iter()
            .all(|i| i.len() == 32 && i.chars().all(|c| c.is_ascii_hexdigit())));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), AlertKind::ALL.len());
    }
}
