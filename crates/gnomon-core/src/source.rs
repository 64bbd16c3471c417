//! Sources as gnomon plans them: who the primary reference is, which
//! fallbacks exist and in which tier, and the source plan the engine wants
//! chrony's sources file to contain.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::chrony::SourceReport;

/// Where an NTP source is. Fallbacks are IP literals so they work while DNS
/// is down; a hostname only appears where the operator opted in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceAddress {
    Ip(IpAddr),
    Hostname(String),
}

impl SourceAddress {
    /// An IP literal becomes `Ip`, anything else `Hostname` (validity of the
    /// name is the config check's job).
    pub fn parse(text: &str) -> SourceAddress {
        match text.trim().parse::<IpAddr>() {
            Ok(ip) => SourceAddress::Ip(ip),
            Err(_) => SourceAddress::Hostname(text.trim().to_owned()),
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            SourceAddress::Ip(ip) => Some(*ip),
            SourceAddress::Hostname(_) => None,
        }
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceAddress::Ip(ip) => write!(f, "{ip}"),
            SourceAddress::Hostname(h) => f.write_str(h),
        }
    }
}

/// The chrony directive a source is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssociationKind {
    /// `server`: client/server mode.
    Server,
    /// `peer`: symmetric mode with a LAN peer that may also serve us.
    Peer,
}

/// Order in which fallbacks are described to the operator. All tiers are
/// engaged together: chrony's own selection then picks the best of them,
/// and an outage does not pay a second grace period per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackTier {
    /// Another server on the LAN, as a chrony `peer`.
    LanPeer,
    /// A public NTP server named by IP literal.
    PublicIpLiteral,
}

impl fmt::Display for FallbackTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FallbackTier::LanPeer => "lan-peer",
            FallbackTier::PublicIpLiteral => "public",
        })
    }
}

/// What a source is for in gnomon's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceRole {
    Primary,
    Fallback(FallbackTier),
}

impl fmt::Display for SourceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceRole::Primary => f.write_str("primary"),
            SourceRole::Fallback(t) => write!(f, "fallback/{t}"),
        }
    }
}

/// One NTP association as chrony will be told about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NtpSource {
    pub address: SourceAddress,
    pub kind: AssociationKind,
    pub port: Option<u16>,
    pub minpoll: Option<i8>,
    pub maxpoll: Option<i8>,
    pub key: Option<u32>,
    pub iburst: bool,
}

/// A source with its purpose and whether chrony may select it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlannedSource {
    pub source: NtpSource,
    pub role: SourceRole,
    /// False means `noselect`: chrony keeps measuring it but never uses it,
    /// so the disaster configuration is exercised all the time.
    pub selectable: bool,
}

/// What chrony's gnomon sources file must contain. Deterministic: the order
/// is primary servers, then fallbacks in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SourcePlan {
    pub sources: Vec<PlannedSource>,
}

impl SourcePlan {
    pub fn selectable(&self) -> impl Iterator<Item = &PlannedSource> {
        self.sources.iter().filter(|s| s.selectable)
    }

    pub fn fallbacks(&self) -> impl Iterator<Item = &PlannedSource> {
        self.sources
            .iter()
            .filter(|s| matches!(s.role, SourceRole::Fallback(_)))
    }

    pub fn find(&self, address: &SourceAddress) -> Option<&PlannedSource> {
        self.sources.iter().find(|s| &s.source.address == address)
    }

    /// True when the fallbacks in this plan are selectable.
    pub fn fallbacks_engaged(&self) -> bool {
        self.fallbacks().any(|s| s.selectable)
    }
}

/// Why chrony's sources (its `sources` report with `selectdata`'s noselect
/// flags) do not match a plan, if they do not: a planned IP source missing,
/// or its `noselect` the other way round. Hostname sources are not judged
/// (chrony may not have resolved them yet), nor sources chrony has that the
/// plan does not name (they come from chrony.conf).
pub fn plan_disagreement(plan: &SourcePlan, sources: &[SourceReport]) -> Option<String> {
    let mut why = Vec::new();
    for p in &plan.sources {
        let SourceAddress::Ip(_) = p.source.address else {
            continue;
        };
        match sources.iter().find(|r| r.matches(&p.source.address)) {
            None => why.push(format!(
                "{} missing from chrony's sources",
                p.source.address
            )),
            Some(r) => {
                if r.noselect == Some(p.selectable) {
                    why.push(format!(
                        "chrony has {} {} but the plan says {}",
                        p.source.address,
                        if p.selectable {
                            "noselect"
                        } else {
                            "selectable"
                        },
                        if p.selectable {
                            "selectable"
                        } else {
                            "noselect"
                        }
                    ));
                }
            }
        }
    }
    if why.is_empty() {
        None
    } else {
        Some(format!(
            "chrony disagrees with the plan: {}",
            why.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::chrony::{ChronySourceId, ChronySourceMode, SelectionState};

    fn planned(addr: &str, selectable: bool) -> PlannedSource {
        PlannedSource {
            source: NtpSource {
                address: SourceAddress::parse(addr),
                kind: AssociationKind::Server,
                port: None,
                minpoll: None,
                maxpoll: None,
                key: None,
                iburst: true,
            },
            role: SourceRole::Fallback(FallbackTier::PublicIpLiteral),
            selectable,
        }
    }

    fn report(addr: &str, noselect: Option<bool>) -> SourceReport {
        SourceReport {
            id: ChronySourceId::Address(addr.parse().unwrap()),
            name: None,
            mode: ChronySourceMode::Server,
            state: SelectionState::Unusable,
            stratum: 1,
            poll: 6,
            reach: 0xff,
            last_sample_ago: None,
            offset: None,
            error: Duration::ZERO,
            noselect,
            remote: None,
        }
    }

    #[test]
    fn disagreement_names_missing_and_flipped_sources() {
        let plan = SourcePlan {
            sources: vec![
                planned("192.0.2.1", true),
                planned("192.0.2.2", false),
                planned("pool.example", false),
            ],
        };
        assert_eq!(
            plan_disagreement(
                &plan,
                &[
                    report("192.0.2.1", Some(false)),
                    report("192.0.2.2", Some(true))
                ]
            ),
            None
        );
        assert_eq!(
            plan_disagreement(
                &plan,
                &[report("192.0.2.1", None), report("192.0.2.2", None)]
            ),
            None,
            "without selectdata only presence is judged"
        );
        let why = plan_disagreement(&plan, &[report("192.0.2.1", Some(true))]).unwrap();
        assert!(
            why.contains("192.0.2.1 noselect but the plan says selectable"),
            "{why}"
        );
        assert!(why.contains("192.0.2.2 missing"), "{why}");
    }
}
