//! The status snapshot the engine publishes: everything `gnomonctl status`
//! shows, and the one-line summary systemd's STATUS= carries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    alert::Alert,
    config::Role,
    engine::{
        gps_watch::{GpsObservation, GpsVerdict},
        trust::CrossCheck,
        types::{EngineState, FallbackMode, FreezeRecord},
    },
    source::{FallbackTier, SourceAddress},
    time::{FloorSource, Offset, WallTime},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub role: Role,
    pub state: EngineState,
    /// What the state would be without the freeze.
    pub underlying_state: EngineState,
    /// Why the engine is in this state, in words.
    pub reason: String,
    pub frozen: Option<FreezeRecord>,
    pub fallback_mode: FallbackMode,
    pub fallbacks_engaged: bool,
    pub primary: PrimaryStatus,
    pub gps: Option<GpsStatus>,
    pub clock: ClockStatus,
    pub chrony: ChronyStatus,
    pub fallbacks: Vec<FallbackStatus>,
    /// The reference's cross-check: every measured source, counted as
    /// independent or left out (and why), and their median.
    #[serde(default)]
    pub cross_check: CrossCheck,
    pub changes_last_hour: u32,
    pub max_changes_per_hour: u32,
    pub alerts: Vec<Alert>,
    /// The `[certs]` files' standing (empty when none are watched).
    #[serde(default)]
    pub certs: Vec<crate::certs::CertStatus>,
    /// The best estimate of true time, as a correction to the system clock.
    #[serde(default)]
    pub trusted_time: Option<crate::certs::TrustedTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimaryStatus {
    /// `None` while it cannot be judged (chrony silent on a client).
    pub healthy: Option<bool>,
    pub detail: String,
    /// How long it has been healthy / unhealthy.
    pub for_: Option<Duration>,
    /// Kept `noselect`: it disagreed with the independent sources.
    #[serde(default)]
    pub distrusted: bool,
    /// In use, but too few independent sources to cross-check it: why.
    #[serde(default)]
    pub unchecked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsStatus {
    pub verdict: GpsVerdict,
    pub observation: GpsObservation,
    pub gate_open: bool,
    /// What the gate should be; differs from `gate_open` only while frozen.
    pub gate_wanted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockStatus {
    pub wall: Option<WallTime>,
    pub floor: WallTime,
    pub floor_source: FloorSource,
    pub before_floor: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChronyStatus {
    pub reachable: bool,
    pub error: Option<String>,
    pub synchronised: bool,
    /// chrony's reference, as chronyc names it.
    pub reference: Option<String>,
    pub system_offset: Option<Offset>,
    pub plan_applied: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackStatus {
    pub address: SourceAddress,
    pub tier: FallbackTier,
    pub selectable: bool,
    pub answering: bool,
    pub usable: bool,
    pub offset: Option<Offset>,
    pub silent_for: Option<Duration>,
}

impl Status {
    /// One line for systemd's STATUS=, e.g.
    /// `primary: GPS healthy, PPS locked, offset +12 ns; fallbacks standby
    /// 3/3 answering` (the offset is chrony's, system clock vs. its reference).
    pub fn summary(&self) -> String {
        let answering = self.fallbacks.iter().filter(|f| f.answering).count();
        let total = self.fallbacks.len();
        let fb = if self.fallbacks_engaged {
            format!("fallbacks engaged {answering}/{total} answering")
        } else {
            format!("fallbacks standby {answering}/{total} answering")
        };
        let mut line = format!("{}: {}", self.state, self.reason);
        if let Some(g) = &self.gps {
            if g.observation.offset_from_pps && g.gate_open {
                line.push_str(", PPS locked");
            }
        }
        if let (true, Some(offset)) = (self.chrony.reachable, self.chrony.system_offset) {
            line.push_str(&format!(", offset {offset}"));
        }
        line.push_str("; ");
        line.push_str(&fb);
        if self.clock.before_floor {
            line.push_str("; CLOCK BEFORE FLOOR");
        }
        line
    }
}
