//! chrony's view of the world as the engine consumes it: tracking and the
//! per-source reports, already mapped from chrony's wire types by
//! `gnomon-chrony`. Offsets follow gnomon's sign convention (source time −
//! system time), whatever chrony's own convention is.

use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    source::SourceAddress,
    time::{Offset, WallTime},
};

/// chrony's leap status; `Unsynchronised` means chrony has no reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeapStatus {
    Normal,
    InsertSecond,
    DeleteSecond,
    Unsynchronised,
}

/// chrony's `tracking` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracking {
    /// chrony's reference ID, e.g. `0x4E4D4541` ("NMEA") or an IPv4 address.
    pub ref_id: u32,
    /// The reference's address when it is an NTP source.
    pub ref_address: Option<IpAddr>,
    pub stratum: u8,
    pub leap: LeapStatus,
    /// How far the system clock is from chrony's estimate of true time:
    /// positive when the clock is behind (chrony: "slow of NTP time").
    pub system_offset: Offset,
    pub last_offset: Offset,
    pub rms_offset: Duration,
    /// chrony's frequency estimate; positive when the clock runs fast.
    pub frequency_ppm: f64,
    pub root_delay: Duration,
    pub root_dispersion: Duration,
}

impl Tracking {
    pub fn synchronised(&self) -> bool {
        self.leap != LeapStatus::Unsynchronised && self.stratum < 16
    }

    /// The reference ID as chrony prints it for refclocks ("NMEA", "PPS").
    pub fn ref_id_text(&self) -> String {
        refid_text(self.ref_id)
    }
}

/// Renders a 32-bit refid as ASCII when it is printable (refclocks),
/// otherwise as hex.
pub fn refid_text(ref_id: u32) -> String {
    let bytes = ref_id.to_be_bytes();
    let printable: String = bytes
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect();
    if !printable.is_empty() && printable.chars().all(|c| c.is_ascii_graphic()) {
        printable
    } else {
        format!("{ref_id:08X}")
    }
}

/// How chrony talks to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChronySourceMode {
    Server,
    Peer,
    Refclock,
}

/// chrony's selection state of a source (the `S` column of `chronyc sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionState {
    /// `*`: the current reference.
    Selected,
    /// `+`: combined with the reference.
    Combined,
    /// `-`: acceptable but not combined.
    NotCombined,
    /// `?`: unreachable, not yet enough samples, or `noselect` (chrony
    /// reports every `noselect` source this way, however well it answers:
    /// judge those by reach and offset, never by this state).
    Unusable,
    /// `x`: a falseticker, disagreeing with the majority.
    Falseticker,
    /// `~`: too variable.
    Jittery,
}

impl SelectionState {
    pub fn symbol(self) -> char {
        match self {
            SelectionState::Selected => '*',
            SelectionState::Combined => '+',
            SelectionState::NotCombined => '-',
            SelectionState::Unusable => '?',
            SelectionState::Falseticker => 'x',
            SelectionState::Jittery => '~',
        }
    }
}

/// Where a chrony source points: an NTP address or a refclock refid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChronySourceId {
    Address(IpAddr),
    Refclock(String),
}

/// One line of chrony's `sources` report, with `sourcestats` and
/// `selectdata` facts merged in where available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    pub id: ChronySourceId,
    /// The name chrony resolved or was given (NtpSourceName), if any.
    pub name: Option<String>,
    pub mode: ChronySourceMode,
    pub state: SelectionState,
    pub stratum: u8,
    pub poll: i8,
    /// chrony's 8-bit reachability register; bit 0 is the latest poll.
    pub reach: u8,
    /// Age of the last good sample.
    pub last_sample_ago: Option<Duration>,
    /// Offset of the last sample (source − system).
    pub offset: Option<Offset>,
    /// Error bound of the last sample.
    pub error: Duration,
    /// From selectdata: whether chrony has the source as `noselect`.
    pub noselect: Option<bool>,
    /// From ntpdata (NTP sources that answered): where the source itself
    /// takes its time from, to tell whether it is independent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteReference>,
}

/// What an NTP source's own packets say about its reference (chrony's
/// `ntpdata`): a source whose reference ID is this host's address takes
/// its time from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReference {
    /// The reference ID in the source's last packet.
    pub ref_id: u32,
    /// This host's address on the association (the address the source
    /// would name as its reference if it took its time from this host).
    pub local_address: Option<IpAddr>,
}

impl RemoteReference {
    /// Whether the source names `address` as its reference.
    pub fn follows(&self, address: IpAddr) -> bool {
        self.ref_id == refid_of(address)
    }

    /// Whether the source takes its time from this host.
    pub fn follows_this_host(&self) -> bool {
        self.local_address.is_some_and(|a| self.follows(a))
    }
}

/// The reference ID an NTP server puts in its packets when it takes its
/// time from `address` (RFC 5905; chrony's `UTI_IPToRefid`): the IPv4
/// address itself, or the first four bytes of the MD5 digest of an IPv6
/// address.
pub fn refid_of(address: IpAddr) -> u32 {
    match address {
        IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
        IpAddr::V6(a) => {
            let [b0, b1, b2, b3, ..] = crate::md5::digest(&a.octets());
            u32::from_be_bytes([b0, b1, b2, b3])
        }
    }
}

impl SourceReport {
    /// Answered at least one of the last three polls.
    pub fn answering(&self) -> bool {
        self.reach & 0b111 != 0
    }

    pub fn matches(&self, address: &SourceAddress) -> bool {
        match (&self.id, address) {
            (ChronySourceId::Address(a), SourceAddress::Ip(b)) => a == b,
            (ChronySourceId::Address(_), SourceAddress::Hostname(h)) => {
                self.name.as_deref() == Some(h.as_str())
            }
            (ChronySourceId::Refclock(_), _) => false,
        }
    }
}

/// chrony's `sourcestats` for one source: its regression over the kept
/// samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStatistics {
    pub id: ChronySourceId,
    pub samples: u32,
    pub runs: u32,
    /// Time spanned by the samples.
    pub span: Duration,
    /// Standard deviation of the samples about the regression.
    pub std_dev: Duration,
    pub residual_frequency_ppm: f64,
    pub skew_ppm: f64,
    /// Estimated offset (source − system).
    pub estimated_offset: Offset,
    pub estimated_offset_error: Duration,
}

/// Everything read from chrony in one poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChronySnapshot {
    /// System clock when the snapshot was taken.
    pub taken_wall: WallTime,
    pub tracking: Tracking,
    pub sources: Vec<SourceReport>,
}

impl ChronySnapshot {
    pub fn source(&self, address: &SourceAddress) -> Option<&SourceReport> {
        self.sources.iter().find(|s| s.matches(address))
    }

    pub fn selected(&self) -> Option<&SourceReport> {
        self.sources
            .iter()
            .find(|s| s.state == SelectionState::Selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refids_render_like_chronyc() {
        assert_eq!(refid_text(0x4E4D_4541), "NMEA");
        assert_eq!(refid_text(0x5050_5300), "PPS");
        assert_eq!(refid_text(0xC000_0201), "C0000201");
    }

    #[test]
    fn refids_of_addresses_are_what_servers_send() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(refid_of(v4), 0xC000_0201);
        // chrony's UTI_IPToRefid for ::1: MD5 of 15 zero bytes and a 1.
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(refid_of(v6), 0xCF40_4DC8);
        let r = RemoteReference {
            ref_id: 0x0AC7_000B,
            local_address: Some("10.199.0.11".parse().unwrap()),
        };
        assert!(r.follows_this_host());
        assert!(!RemoteReference {
            local_address: None,
            ..r
        }
        .follows_this_host());
    }
}
