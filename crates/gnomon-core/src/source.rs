//! Sources as gnomon plans them: who the primary reference is, which
//! fallbacks exist and in which tier, and the source plan the engine wants
//! chrony's sources file to contain.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

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
