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
