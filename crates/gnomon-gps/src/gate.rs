//! The GPS gate: the only path from GPS epochs to chrony's SOCK refclock.
//! The engine opens and closes it; closed, or without a fix, nothing is
//! sent, which keeps an insane GPS out of chrony even when marked `trust`.

use std::time::Duration;

use gnomon_chrony::refclock_sock::{Delivery, RefclockError, SockRefclock, SockSample};
use gnomon_core::{
    gps::{FixMode, GpsEpoch, PpsEdge},
    time::WallTime,
};

/// Why an epoch was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The engine closed the gate.
    Closed,
    /// No 2D/3D fix, or the receiver flagged the fix invalid (RMC `V`, GGA 0).
    NoFix,
    /// The epoch carries no usable UTC time.
    NoTime,
}

/// What [`GpsGate::offer`] did with an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// Handed to chrony's socket (or dropped there, chronyd being away).
    Offered {
        delivery: Delivery,
        sample: SockSample,
        /// Whether the system time is the PPS edge's (else the sentence's arrival).
        from_pps: bool,
    },
    Withheld(Withheld),
}

/// Counters of the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Samples chronyd's queue accepted.
    pub sent: u64,
    /// Samples sent while chronyd was away or not reading.
    pub dropped: u64,
    pub withheld_closed: u64,
    pub withheld_no_fix: u64,
    pub withheld_no_time: u64,
}

impl GateStats {
    pub fn withheld(&self) -> u64 {
        self.withheld_closed
            .saturating_add(self.withheld_no_fix)
            .saturating_add(self.withheld_no_time)
    }
}

/// An edge is paired with the epoch it starts only if the epoch's first
/// sentence arrived within this time after it (receivers send the second's
/// NMEA tens to hundreds of ms after its pulse).
pub const PPS_PAIRING_WINDOW: Duration = Duration::from_millis(990);

/// Feeds chrony's SOCK refclock from GPS epochs while the engine allows it.
#[derive(Debug)]
pub struct GpsGate {
    refclock: SockRefclock,
    open: bool,
    stats: GateStats,
}

impl GpsGate {
    /// A closed gate in front of `refclock`: nothing goes to chrony until
    /// the engine has judged the GPS and opens it.
    pub fn new(refclock: SockRefclock) -> Self {
        Self {
            refclock,
            open: false,
            stats: GateStats::default(),
        }
    }

    pub fn set_open(&mut self, open: bool) {
        self.open = open;
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn stats(&self) -> GateStats {
        self.stats
    }

    pub fn refclock(&self) -> &SockRefclock {
        &self.refclock
    }

    /// Offers one epoch, with the PPS edge that began its second if there is
    /// one. The sample's system time is the edge's (the receiver's time
    /// refers to the edge) when the edge is within [`PPS_PAIRING_WINDOW`]
    /// before the epoch's arrival, else the arrival itself (chrony's
    /// refclock `offset` must then absorb the receiver's output delay).
    /// Offset = GPS time − system time, gnomon's and chrony's sign.
    pub async fn offer(
        &mut self,
        epoch: &GpsEpoch,
        pps_edge: Option<&PpsEdge>,
    ) -> Result<GateOutcome, RefclockError> {
        if let Some(reason) = self.withhold_reason(epoch) {
            let counter = match reason {
                Withheld::Closed => &mut self.stats.withheld_closed,
                Withheld::NoFix => &mut self.stats.withheld_no_fix,
                Withheld::NoTime => &mut self.stats.withheld_no_time,
            };
            *counter = counter.saturating_add(1);
            return Ok(GateOutcome::Withheld(reason));
        }
        let Some(utc) = epoch.utc else {
            return Ok(GateOutcome::Withheld(Withheld::NoTime));
        };
        let edge = pps_edge.filter(|e| pairs_with(e.wall, epoch.received_wall));
        let system_time = edge.map_or(epoch.received_wall, |e| e.wall);
        let sample = SockSample::new(system_time, utc);
        let delivery = self.refclock.send(&sample).await?;
        match delivery {
            Delivery::Sent => self.stats.sent = self.stats.sent.saturating_add(1),
            Delivery::Dropped(_) => self.stats.dropped = self.stats.dropped.saturating_add(1),
        }
        Ok(GateOutcome::Offered {
            delivery,
            sample,
            from_pps: edge.is_some(),
        })
    }

    fn withhold_reason(&self, epoch: &GpsEpoch) -> Option<Withheld> {
        if !self.open {
            Some(Withheld::Closed)
        } else if epoch.fix < FixMode::Fix2D
            || epoch.rmc_valid == Some(false)
            || epoch.gga_quality == Some(0)
        {
            Some(Withheld::NoFix)
        } else if epoch.utc.is_none() {
            Some(Withheld::NoTime)
        } else {
            None
        }
    }
}

fn pairs_with(edge: WallTime, arrival: WallTime) -> bool {
    let age = arrival.since(edge);
    age.as_nanos() >= 0 && age.abs() <= PPS_PAIRING_WINDOW
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use gnomon_chrony::refclock_sock::{DropReason, TimevalLayout};
    use gnomon_core::time::{MonoTime, Offset};

    use super::*;

    /// GPS second 2026-11-22T02:47:55Z.
    const GPS: WallTime = WallTime::from_unix_nanos(1_795_315_675_000_000_000);

    fn epoch(fix: FixMode, utc: Option<WallTime>, arrival_after: Offset) -> GpsEpoch {
        GpsEpoch {
            utc,
            fix,
            rmc_valid: Some(fix >= FixMode::Fix2D),
            gga_quality: Some(u8::from(fix >= FixMode::Fix2D)),
            sats_used: Some(7),
            hdop: Some(0.9),
            // The system clock is 3 ms behind GPS; the sentence arrives later.
            received_wall: GPS
                .offset_by(Offset::from_millis(-3))
                .offset_by(arrival_after),
            received_mono: MonoTime::from_nanos(1_000_000_000),
        }
    }

    fn recv(sock: &UnixDatagram) -> Option<SockSample> {
        let mut buf = [0_u8; 64];
        match sock.recv(&mut buf) {
            Ok(n) => Some(SockSample::decode(&buf[..n], TimevalLayout::native()).unwrap()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn sends_only_while_open_and_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gps.sock");
        let chrony = UnixDatagram::bind(&path).unwrap();
        chrony.set_nonblocking(true).unwrap();
        let mut gate = GpsGate::new(SockRefclock::new(&path, TimevalLayout::native()));
        let good = epoch(FixMode::Fix3D, Some(GPS), Offset::from_millis(150));

        // Closed by default.
        assert_eq!(
            gate.offer(&good, None).await.unwrap(),
            GateOutcome::Withheld(Withheld::Closed)
        );
        assert_eq!(recv(&chrony), None);

        gate.set_open(true);
        // Without PPS: the arrival is the system time, 147 ms after GPS.
        let out = gate.offer(&good, None).await.unwrap();
        assert!(matches!(
            out,
            GateOutcome::Offered {
                delivery: Delivery::Sent,
                from_pps: false,
                ..
            }
        ));
        let s = recv(&chrony).unwrap();
        assert_eq!(s.system_time, good.received_wall);
        assert_eq!(s.offset, Offset::from_millis(-147));
        assert!(!s.pulse);
        assert_eq!(s.true_time(), GPS);

        // With the edge that began the second: offset is the clock error.
        let edge = PpsEdge {
            wall: GPS.offset_by(Offset::from_nanos(-3_000_250)),
            mono: MonoTime::from_nanos(850_000_000),
            sequence: 41,
        };
        let out = gate.offer(&good, Some(&edge)).await.unwrap();
        assert!(matches!(out, GateOutcome::Offered { from_pps: true, .. }));
        let s = recv(&chrony).unwrap();
        // The timeval holds microseconds; the rest moves into the offset.
        assert_eq!(s.system_time, GPS.offset_by(Offset::from_nanos(-3_001_000)));
        assert_eq!(s.offset, Offset::from_nanos(3_001_000));
        assert_eq!(s.true_time(), GPS);

        // An edge from another second is not used.
        let stale = PpsEdge {
            wall: edge.wall.minus(Duration::from_secs(2)),
            ..edge
        };
        let out = gate.offer(&good, Some(&stale)).await.unwrap();
        assert!(matches!(
            out,
            GateOutcome::Offered {
                from_pps: false,
                ..
            }
        ));
        assert_eq!(recv(&chrony).unwrap().offset, Offset::from_millis(-147));

        // No fix, flagged invalid, or no time: nothing goes out.
        let no_fix = epoch(FixMode::NoFix, Some(GPS), Offset::ZERO);
        let mut void = good.clone();
        void.rmc_valid = Some(false);
        void.fix = FixMode::Fix3D;
        let no_time = epoch(FixMode::Fix2D, None, Offset::ZERO);
        for (e, why) in [
            (&no_fix, Withheld::NoFix),
            (&void, Withheld::NoFix),
            (&no_time, Withheld::NoTime),
        ] {
            assert_eq!(
                gate.offer(e, Some(&edge)).await.unwrap(),
                GateOutcome::Withheld(why)
            );
        }
        assert_eq!(recv(&chrony), None);

        gate.set_open(false);
        assert_eq!(
            gate.offer(&good, Some(&edge)).await.unwrap(),
            GateOutcome::Withheld(Withheld::Closed)
        );
        assert_eq!(recv(&chrony), None);

        let stats = gate.stats();
        assert_eq!(
            stats,
            GateStats {
                sent: 3,
                dropped: 0,
                withheld_closed: 2,
                withheld_no_fix: 2,
                withheld_no_time: 1,
            }
        );
        assert_eq!(stats.withheld(), 5);
        assert_eq!(gate.refclock().sent(), 3);
    }

    #[tokio::test]
    async fn absent_chronyd_counts_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut gate = GpsGate::new(SockRefclock::new(
            dir.path().join("none.sock"),
            TimevalLayout::native(),
        ));
        gate.set_open(true);
        let out = gate
            .offer(&epoch(FixMode::Fix3D, Some(GPS), Offset::ZERO), None)
            .await
            .unwrap();
        assert!(matches!(
            out,
            GateOutcome::Offered {
                delivery: Delivery::Dropped(DropReason::NoSocket),
                ..
            }
        ));
        assert_eq!((gate.stats().sent, gate.stats().dropped), (0, 1));
    }
}
