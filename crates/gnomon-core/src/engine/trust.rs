//! Trust, not just liveness: which of the sources gnomon keeps measured
//! are independent of this host and of the reference being judged, and
//! what they say together. Every reference that may lead the clock (a
//! LAN server's primary, the GPS, the source a step would follow) is
//! checked against them.

use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    chrony::{ChronySnapshot, SourceReport},
    source::SourceAddress,
    time::{human_duration, Offset},
};

/// A cross-check needs at least this many independent sources: with one,
/// a disagreement cannot say which side is wrong.
pub const MIN_INDEPENDENT: usize = 2;

/// One measured source as a cross-check saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedSource {
    pub address: SourceAddress,
    /// What it says of the system clock (source − system), if measured.
    pub offset: Option<Offset>,
    /// Why it was not counted; `None` when it was.
    pub excluded: Option<String>,
}

impl CheckedSource {
    pub fn counted(&self) -> bool {
        self.excluded.is_none()
    }
}

/// The independent sources at one instant and what they say together.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CrossCheck {
    pub sources: Vec<CheckedSource>,
    /// The median offset of the counted sources (source − system).
    pub median: Option<Offset>,
}

impl CrossCheck {
    /// How many sources were counted.
    pub fn counted(&self) -> usize {
        self.sources.iter().filter(|s| s.counted()).count()
    }

    /// The median, when enough sources were counted to judge by it.
    pub fn judging_median(&self) -> Option<Offset> {
        self.median.filter(|_| self.counted() >= MIN_INDEPENDENT)
    }

    /// The counted sources' addresses, joined for a message.
    pub fn counted_names(&self) -> String {
        let names: Vec<String> = self
            .sources
            .iter()
            .filter(|s| s.counted())
            .map(|s| s.address.to_string())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Why it cannot judge, in words, or `None` when it can.
    pub fn too_few(&self) -> Option<String> {
        let n = self.counted();
        (n < MIN_INDEPENDENT).then(|| {
            format!(
                "{n} independent source{} answering ({}), {MIN_INDEPENDENT} needed to cross-check",
                if n == 1 { "" } else { "s" },
                self.counted_names()
            )
        })
    }
}

/// A candidate for a cross-check: a configured source and whether the
/// configuration says it follows this host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub address: &'a SourceAddress,
    pub follows_this_host: bool,
}

/// Cross-checks against `candidates`, leaving out every source that is not
/// independent of `under_check` (the references being judged, which are
/// never counted themselves) or of this host, and every source that is not
/// usable now (`problem` says why, from the engine's usual judgement).
pub(crate) fn cross_check<'a>(
    candidates: impl IntoIterator<Item = Candidate<'a>>,
    snap: &ChronySnapshot,
    under_check: &[IpAddr],
    problem: impl Fn(&SourceReport) -> Option<String>,
) -> CrossCheck {
    let mut sources = Vec::new();
    for c in candidates {
        if let SourceAddress::Ip(ip) = c.address {
            if under_check.contains(ip) {
                continue;
            }
        }
        let report = snap.source(c.address);
        let excluded = exclusion(c, report, under_check, &problem);
        sources.push(CheckedSource {
            address: c.address.clone(),
            offset: report.and_then(|r| r.offset),
            excluded,
        });
    }
    let median = median(
        sources
            .iter()
            .filter(|s| s.counted())
            .filter_map(|s| s.offset)
            .collect(),
    );
    CrossCheck { sources, median }
}

fn exclusion(
    c: Candidate<'_>,
    report: Option<&SourceReport>,
    under_check: &[IpAddr],
    problem: &impl Fn(&SourceReport) -> Option<String>,
) -> Option<String> {
    if c.follows_this_host {
        return Some("configured as following this host (follows-this-host)".to_owned());
    }
    let Some(r) = report else {
        return Some("not in chrony's sources".to_owned());
    };
    if let Some(remote) = r.remote {
        if remote.follows_this_host() {
            return Some(format!(
                "takes its time from this host (its reference is {})",
                remote
                    .local_address
                    .map_or_else(String::new, |a| a.to_string())
            ));
        }
        if let Some(ip) = under_check.iter().find(|ip| remote.follows(**ip)) {
            return Some(format!(
                "takes its time from {ip}, the reference being checked"
            ));
        }
    }
    if let Some(why) = problem(r) {
        return Some(why);
    }
    r.offset.is_none().then(|| "no sample yet".to_owned())
}

/// How a reference's offset compares with the independent median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The reference being checked.
    pub reference: String,
    /// What the reference says of the system clock.
    pub reference_offset: Offset,
    /// What the independent sources say (their median).
    pub independent_offset: Offset,
    /// The sources counted, by address.
    pub sources: Vec<SourceAddress>,
    /// The bound it exceeded.
    pub allowed: Duration,
}

impl Disagreement {
    /// Reference − independent median.
    pub fn by(&self) -> Offset {
        self.reference_offset - self.independent_offset
    }
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} disagrees with {} independent sources by {} (more than {}): it says the clock is off by {}, they say {} (median of {})",
            self.reference,
            self.sources.len(),
            self.by(),
            human_duration(self.allowed),
            self.reference_offset,
            self.independent_offset,
            names.join(", ")
        )
    }
}

/// Whether a reference whose offset is `reference_offset` disagrees with
/// `check` by more than `allowed`; `None` when it agrees or when too few
/// sources were counted to judge.
pub(crate) fn disagreement(
    reference: &str,
    reference_offset: Offset,
    check: &CrossCheck,
    allowed: Duration,
) -> Option<Disagreement> {
    let median = check.judging_median()?;
    ((reference_offset - median).abs() > allowed).then(|| Disagreement {
        reference: reference.to_owned(),
        reference_offset,
        independent_offset: median,
        sources: check
            .sources
            .iter()
            .filter(|s| s.counted())
            .map(|s| s.address.clone())
            .collect(),
        allowed,
    })
}

/// The median of `v` (the mean of the middle two for an even count).
pub(crate) fn median(mut v: Vec<Offset>) -> Option<Offset> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(mid).copied()
    } else {
        let a = v.get(mid - 1)?.as_nanos();
        let b = v.get(mid)?.as_nanos();
        Some(Offset::from_nanos(a / 2 + b / 2))
    }
}
