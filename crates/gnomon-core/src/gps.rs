//! What the GPS hat tells gnomon: one epoch per second assembled from the
//! receiver's NMEA sentences, and the pulses on the PPS line. Decoding
//! lives in `gnomon-gps`; these are the values the engine judges.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::{MonoTime, WallTime};

/// Fix mode with gpsd's TPV meaning (1 no fix, 2 2D, 3 3D); ordered so that
/// a quality gate can say "at least 2D".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FixMode {
    #[serde(rename = "none")]
    NoFix,
    #[serde(rename = "2d")]
    Fix2D,
    #[serde(rename = "3d")]
    Fix3D,
}

impl FixMode {
    /// gpsd's TPV `mode` number.
    pub const fn gpsd_mode(self) -> u8 {
        match self {
            FixMode::NoFix => 1,
            FixMode::Fix2D => 2,
            FixMode::Fix3D => 3,
        }
    }
}

impl fmt::Display for FixMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FixMode::NoFix => "no fix",
            FixMode::Fix2D => "2D",
            FixMode::Fix3D => "3D",
        })
    }
}

/// One second of receiver output, merged from RMC/GGA/GSA/GNS/ZDA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsEpoch {
    /// The UTC time the receiver says this epoch is for. `None` when the
    /// receiver sent sentences without a usable date and time.
    pub utc: Option<WallTime>,
    pub fix: FixMode,
    /// RMC status `A` (true) or `V` (false); `None` when no RMC was seen.
    pub rmc_valid: Option<bool>,
    /// GGA fix quality (0 invalid, 1 GPS, 2 DGPS, ...), when seen.
    pub gga_quality: Option<u8>,
    pub sats_used: Option<u8>,
    pub hdop: Option<f32>,
    /// System clock reading when the first sentence of the epoch arrived.
    pub received_wall: WallTime,
    /// Monotonic instant of the same arrival.
    pub received_mono: MonoTime,
}

/// One edge on the PPS line, timestamped by the kernel or the GPIO driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PpsEdge {
    /// System clock at the edge.
    pub wall: WallTime,
    /// Monotonic instant of the edge.
    pub mono: MonoTime,
    /// The driver's assert sequence number; a gap means missed pulses.
    pub sequence: u64,
}

// PPS edges as datagrams: how a bridge or the lab's simulated hat hands
// pulses to gnomond (`pps = "socket"`).

/// Magic at the start of every PPS datagram ("GPPS").
pub const PPS_DATAGRAM_MAGIC: [u8; 4] = *b"GPPS";
/// Length of one PPS datagram: magic, 4 reserved bytes, the edge's
/// sequence (u64) and its `CLOCK_REALTIME` time in ns (i64), little-endian.
pub const PPS_DATAGRAM_LEN: usize = 24;

/// One edge as a PPS datagram.
pub fn encode_pps_datagram(sequence: u64, wall: WallTime) -> [u8; PPS_DATAGRAM_LEN] {
    let mut out = [0u8; PPS_DATAGRAM_LEN];
    for (dst, src) in out.iter_mut().zip(
        PPS_DATAGRAM_MAGIC
            .iter()
            .chain([0u8; 4].iter())
            .chain(sequence.to_le_bytes().iter())
            .chain(wall.unix_nanos().to_le_bytes().iter()),
    ) {
        *dst = *src;
    }
    out
}

/// The (sequence, wall time) of a PPS datagram, or why it is not one.
pub fn decode_pps_datagram(bytes: &[u8]) -> Result<(u64, WallTime), String> {
    let arr: &[u8; PPS_DATAGRAM_LEN] = bytes.try_into().map_err(|_| {
        format!(
            "datagram of {} bytes, expected {PPS_DATAGRAM_LEN}",
            bytes.len()
        )
    })?;
    let (magic, rest) = arr.split_at(4);
    if magic != PPS_DATAGRAM_MAGIC {
        return Err("datagram does not start with GPPS".into());
    }
    let (_reserved, rest) = rest.split_at(4);
    let (seq, wall) = rest.split_at(8);
    let seq: [u8; 8] = seq.try_into().map_err(|_| "short sequence".to_string())?;
    let wall: [u8; 8] = wall.try_into().map_err(|_| "short time".to_string())?;
    Ok((
        u64::from_le_bytes(seq),
        WallTime::from_unix_nanos(i64::from_le_bytes(wall)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_edge_round_trip_and_refusals() {
        let bytes = encode_pps_datagram(42, WallTime::from_unix_nanos(1_795_315_675_000_000_000));
        assert_eq!(
            decode_pps_datagram(&bytes),
            Ok((42, WallTime::from_unix_nanos(1_795_315_675_000_000_000)))
        );
        assert!(decode_pps_datagram(&bytes[..20]).is_err());
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(decode_pps_datagram(&bad).is_err());
    }
}
