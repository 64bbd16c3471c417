//! The simulated world around one gnomon host: true time, the host's
//! system clock, the NTP servers it can reach, its GPS receiver and PPS
//! line, and a model of chrony that measures, selects, slews and steps.
//!
//! The chrony model is deliberately simple and pessimistic: it never steps
//! the clock on its own (a chrony.conf without `makestep`), slews at most at
//! chrony's default 83.3 ms/s, and only selects sources that are selectable
//! in the applied plan or are refclocks fed through an open gate.

use std::{net::IpAddr, time::Duration};

use gnomon_core::{
    chrony::{
        ChronySnapshot, ChronySourceId, ChronySourceMode, LeapStatus, SelectionState, SourceReport,
        Tracking,
    },
    gps::{FixMode, GpsEpoch, PpsEdge},
    source::{SourceAddress, SourcePlan},
    time::{MonoTime, Offset, WallTime, GPS_ROLLOVER},
};

/// chrony's default maximum slew rate, 83333 ppm.
const MAX_SLEW_PER_SEC: f64 = 0.083_333;
/// Seconds between polls once a source is past its initial burst.
const POLL_SECS: u64 = 16;
/// iburst: the first polls come this many seconds apart.
const BURST_SECS: u64 = 2;
const BURST_POLLS: u32 = 4;
/// chrony's refid for the NMEA SOCK refclock.
pub const NMEA_REFID: u32 = 0x4E4D_4541;

/// An NTP server somewhere on the (simulated) network.
#[derive(Debug, Clone, PartialEq)]
pub struct SimServer {
    pub address: IpAddr,
    pub up: bool,
    /// The server's time minus true time.
    pub error: Offset,
    pub stratum: u8,
}

/// How the GPS receiver behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpsBehaviour {
    /// Good fix, 3D, 9 satellites, sentence 300 ms after the pulse.
    Healthy,
    /// Powered but silent: the receiver hangs (no NMEA, no PPS).
    Stuck,
    /// PPS pulses but NMEA says no fix (RMC V, GGA 0).
    PpsWithoutFix,
    /// PPS continues, NMEA stops.
    NmeaStopped,
    /// NMEA with a fix but no PPS pulses.
    NoPps,
    /// The sentence arrives this long after the pulse.
    LateSentence(Duration),
    /// Valid fix, date 1024 weeks in the past.
    Rollover,
    /// Valid fix, time off by whole seconds.
    OffBy(i64),
}

/// Measurement state chrony keeps per source.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    address: IpAddr,
    peer: bool,
    selectable: bool,
    reach: u8,
    polls: u32,
    next_poll: MonoTime,
    last_sample: Option<(MonoTime, Offset, u8)>,
}

/// The chrony model.
#[derive(Debug, Clone, PartialEq)]
pub struct SimChrony {
    pub running: bool,
    measured: Vec<Measured>,
    /// The sources file as last written (survives a chronyd restart).
    pub sources_file: Option<SourcePlan>,
    /// When the NMEA refclock last got a sample: (at, gps error).
    refclock_sample: Option<(MonoTime, Offset)>,
    has_refclock: bool,
    selected: Option<ChronySourceId>,
    pub steps: u32,
}

/// The world one host lives in.
#[derive(Debug, Clone)]
pub struct World {
    /// True UTC at mono zero.
    pub epoch: WallTime,
    /// System clock minus true time.
    pub clock_error: Offset,
    pub servers: Vec<SimServer>,
    pub gps: GpsBehaviour,
    pub gate_open: bool,
    pub chrony: SimChrony,
    pub pps_sequence: u64,
}

impl World {
    pub fn new(
        epoch: WallTime,
        clock_error: Offset,
        servers: Vec<SimServer>,
        has_refclock: bool,
    ) -> Self {
        Self {
            epoch,
            clock_error,
            servers,
            gps: GpsBehaviour::Healthy,
            gate_open: false,
            chrony: SimChrony {
                running: true,
                measured: Vec::new(),
                sources_file: None,
                refclock_sample: None,
                has_refclock,
                selected: None,
                steps: 0,
            },
            pps_sequence: 0,
        }
    }

    pub fn true_time(&self, now: MonoTime) -> WallTime {
        self.epoch.plus(now.as_duration())
    }

    pub fn system_time(&self, now: MonoTime) -> WallTime {
        self.true_time(now).offset_by(self.clock_error)
    }

    pub fn server_mut(&mut self, address: IpAddr) -> Option<&mut SimServer> {
        self.servers.iter_mut().find(|s| s.address == address)
    }

    /// Writes the sources file and reloads it, as gnomon-chrony will.
    pub fn apply_plan(&mut self, now: MonoTime, plan: &SourcePlan) -> Result<(), String> {
        self.chrony.sources_file = Some(plan.clone());
        if !self.chrony.running {
            return Err("reload sources: chronyd command socket: connection refused".to_owned());
        }
        self.load_sources(now);
        Ok(())
    }

    fn load_sources(&mut self, now: MonoTime) {
        let Some(plan) = self.chrony.sources_file.clone() else {
            return;
        };
        let mut next = Vec::new();
        for p in &plan.sources {
            let SourceAddress::Ip(ip) = p.source.address else {
                continue; // no DNS in the simulated world
            };
            let peer = p.source.kind == gnomon_core::source::AssociationKind::Peer;
            match self.chrony.measured.iter().find(|m| m.address == ip) {
                Some(m) => next.push(Measured {
                    selectable: p.selectable,
                    peer,
                    ..m.clone()
                }),
                None => next.push(Measured {
                    address: ip,
                    peer,
                    selectable: p.selectable,
                    reach: 0,
                    polls: 0,
                    next_poll: now,
                    last_sample: None,
                }),
            }
        }
        self.chrony.measured = next;
    }

    pub fn chronyd_stop(&mut self) {
        self.chrony.running = false;
        self.chrony.measured.clear();
        self.chrony.selected = None;
        self.chrony.refclock_sample = None;
    }

    /// chronyd starts and reads the sourcedir itself.
    pub fn chronyd_start(&mut self, now: MonoTime) {
        self.chrony.running = true;
        self.load_sources(now);
    }

    /// gnomon's `makestep`: chrony steps by its remaining correction.
    pub fn step(&mut self) -> bool {
        match self.reference_offset() {
            Some(off) if self.chrony.running => {
                self.adjust_clock(off);
                self.chrony.steps += 1;
                true
            }
            _ => false,
        }
    }

    /// Offset of chrony's selected reference (source − system), if any.
    fn reference_offset(&self) -> Option<Offset> {
        match self.chrony.selected.as_ref()? {
            ChronySourceId::Address(ip) => self
                .chrony
                .measured
                .iter()
                .find(|m| m.address == *ip)
                .and_then(|m| m.last_sample.map(|(_, o, _)| o)),
            ChronySourceId::Refclock(_) => self
                .chrony
                .refclock_sample
                .map(|(_, e)| e - self.clock_error),
        }
    }

    /// The GPS receiver's time error for its current behaviour.
    fn gps_error(&self) -> Offset {
        match self.gps {
            GpsBehaviour::Rollover => -Offset::from_duration(GPS_ROLLOVER),
            GpsBehaviour::OffBy(s) => Offset::from_secs(s),
            _ => Offset::ZERO,
        }
    }

    /// The PPS edge of true second `now` (called on whole seconds), if the
    /// receiver pulses now.
    pub fn pps_edge(&mut self, now: MonoTime) -> Option<PpsEdge> {
        match self.gps {
            GpsBehaviour::Stuck | GpsBehaviour::NoPps => None,
            _ => {
                self.pps_sequence += 1;
                Some(PpsEdge {
                    wall: self.system_time(now),
                    mono: now,
                    sequence: self.pps_sequence,
                })
            }
        }
    }

    /// When, after the pulse of a second, the epoch's first sentence arrives.
    pub fn sentence_delay(&self) -> Option<Duration> {
        match self.gps {
            GpsBehaviour::Stuck | GpsBehaviour::NmeaStopped => None,
            GpsBehaviour::LateSentence(d) => Some(d),
            _ => Some(Duration::from_millis(300)),
        }
    }

    /// The epoch describing the second whose pulse was at `pulse_at`,
    /// arriving at `now`.
    pub fn gps_epoch(&self, pulse_at: MonoTime, now: MonoTime) -> GpsEpoch {
        let fix = !matches!(self.gps, GpsBehaviour::PpsWithoutFix);
        let utc = self.true_time(pulse_at).offset_by(self.gps_error());
        GpsEpoch {
            utc: Some(utc),
            fix: if fix { FixMode::Fix3D } else { FixMode::NoFix },
            rmc_valid: Some(fix),
            gga_quality: Some(u8::from(fix)),
            sats_used: Some(if fix { 9 } else { 0 }),
            hdop: Some(if fix { 0.9 } else { 99.0 }),
            received_wall: self.system_time(now),
            received_mono: now,
        }
    }

    /// gnomon fed an NMEA sample through the open gate: the refclock
    /// carries the receiver's error.
    pub fn refclock_sample(&mut self, now: MonoTime) {
        self.chrony.refclock_sample = Some((now, self.gps_error()));
    }

    /// One second of chrony: polls due sources, selects, slews.
    pub fn chrony_tick(&mut self, now: MonoTime) {
        if !self.chrony.running {
            return;
        }
        let clock_error = self.clock_error;
        let servers = self.servers.clone();
        for m in &mut self.chrony.measured {
            if now < m.next_poll {
                continue;
            }
            let server = servers.iter().find(|s| s.address == m.address);
            let answered = server.filter(|s| s.up);
            m.reach = (m.reach << 1) | u8::from(answered.is_some());
            if let Some(s) = answered {
                m.last_sample = Some((now, s.error - clock_error, s.stratum));
            }
            m.polls += 1;
            let gap = if m.polls < BURST_POLLS {
                BURST_SECS
            } else {
                POLL_SECS
            };
            m.next_poll = now.plus(Duration::from_secs(gap));
        }
        self.select(now);
        self.slew();
    }

    fn refclock_live(&self, now: MonoTime) -> bool {
        self.chrony.has_refclock
            && self
                .chrony
                .refclock_sample
                .is_some_and(|(at, _)| now.since(at) <= Duration::from_secs(4))
    }

    fn select(&mut self, now: MonoTime) {
        // The refclock is configured `trust prefer`: when it has samples,
        // chrony follows it whatever the others say. That is exactly why
        // the gate matters.
        if self.refclock_live(now) {
            self.chrony.selected = Some(ChronySourceId::Refclock("NMEA".to_owned()));
            return;
        }
        let candidates: Vec<&Measured> = self
            .chrony
            .measured
            .iter()
            .filter(|m| m.selectable && m.reach & 0b111 != 0)
            .filter(|m| m.last_sample.is_some_and(|(_, _, st)| st < 16))
            .collect();
        let offsets: Vec<Offset> = candidates
            .iter()
            .filter_map(|m| m.last_sample.map(|(_, o, _)| o))
            .collect();
        let majority = majority_offset(&offsets);
        let best = candidates
            .iter()
            .filter(|m| {
                let o = m.last_sample.map(|(_, o, _)| o).unwrap_or_default();
                majority.is_none_or(|maj| (o - maj).abs() < Duration::from_millis(500))
            })
            .min_by_key(|m| m.last_sample.map(|(_, _, st)| st).unwrap_or(16));
        self.chrony.selected = best.map(|m| ChronySourceId::Address(m.address));
    }

    fn slew(&mut self) {
        if let Some(off) = self.reference_offset() {
            let s = off.as_secs_f64();
            let step = s.clamp(-MAX_SLEW_PER_SEC, MAX_SLEW_PER_SEC) * 0.5;
            self.adjust_clock(Offset::from_secs_f64(step));
        }
    }

    /// Moves the system clock; like chrony, corrects the samples it keeps
    /// so they stay relative to the new clock.
    fn adjust_clock(&mut self, by: Offset) {
        self.clock_error = self.clock_error + by;
        for m in &mut self.chrony.measured {
            if let Some((_, o, _)) = &mut m.last_sample {
                *o = *o - by;
            }
        }
    }

    /// What `gnomon-chrony` would read: tracking and sources.
    pub fn snapshot(&self, now: MonoTime) -> Result<ChronySnapshot, String> {
        if !self.chrony.running {
            return Err("/run/chrony/chronyd.sock: connection refused".to_owned());
        }
        let mut sources = Vec::new();
        if self.chrony.has_refclock {
            let live = self.refclock_live(now);
            sources.push(SourceReport {
                id: ChronySourceId::Refclock("NMEA".to_owned()),
                name: None,
                mode: ChronySourceMode::Refclock,
                state: if live {
                    SelectionState::Selected
                } else {
                    SelectionState::Unusable
                },
                stratum: 0,
                poll: 4,
                reach: if live { 0xff } else { 0 },
                last_sample_ago: self.chrony.refclock_sample.map(|(at, _)| now.since(at)),
                offset: self
                    .chrony
                    .refclock_sample
                    .map(|(_, e)| e - self.clock_error),
                error: Duration::from_millis(50),
                noselect: Some(false),
                remote: None,
            });
        }
        let offsets: Vec<Offset> = self
            .chrony
            .measured
            .iter()
            .filter(|m| m.selectable && m.reach & 0b111 != 0)
            .filter_map(|m| m.last_sample.map(|(_, o, _)| o))
            .collect();
        let majority = majority_offset(&offsets);
        for m in &self.chrony.measured {
            let id = ChronySourceId::Address(m.address);
            let sample = m.last_sample;
            let state = if self.chrony.selected.as_ref() == Some(&id) {
                SelectionState::Selected
            } else if m.reach & 0b111 == 0 || sample.is_none() || !m.selectable {
                // chrony 4 reports every `noselect` source as `?`.
                SelectionState::Unusable
            } else if majority.is_some_and(|maj| {
                sample.is_some_and(|(_, o, _)| (o - maj).abs() >= Duration::from_millis(500))
            }) {
                SelectionState::Falseticker
            } else {
                SelectionState::Combined
            };
            sources.push(SourceReport {
                id,
                name: None,
                mode: if m.peer {
                    ChronySourceMode::Peer
                } else {
                    ChronySourceMode::Server
                },
                state,
                stratum: sample.map_or(0, |(_, _, st)| st),
                poll: 4,
                reach: m.reach,
                last_sample_ago: sample.map(|(at, _, _)| now.since(at)),
                offset: sample.map(|(_, o, _)| o),
                error: Duration::from_millis(2),
                noselect: Some(!m.selectable),
                remote: None,
            });
        }
        let reference = self.reference_offset();
        let (ref_id, ref_address, stratum, leap) = match (&self.chrony.selected, reference) {
            (Some(ChronySourceId::Address(ip)), Some(_)) => {
                let st = self
                    .chrony
                    .measured
                    .iter()
                    .find(|m| m.address == *ip)
                    .and_then(|m| m.last_sample.map(|(_, _, st)| st))
                    .unwrap_or(15);
                (
                    ipv4_refid(*ip),
                    Some(*ip),
                    st.saturating_add(1),
                    LeapStatus::Normal,
                )
            }
            (Some(ChronySourceId::Refclock(_)), Some(_)) => {
                (NMEA_REFID, None, 1, LeapStatus::Normal)
            }
            _ => (0, None, 16, LeapStatus::Unsynchronised),
        };
        Ok(ChronySnapshot {
            taken_wall: self.system_time(now),
            tracking: Tracking {
                ref_id,
                ref_address,
                stratum,
                leap,
                system_offset: reference.unwrap_or_default(),
                last_offset: Offset::ZERO,
                rms_offset: Duration::from_micros(50),
                frequency_ppm: 0.0,
                root_delay: Duration::from_millis(1),
                root_dispersion: Duration::from_millis(1),
            },
            sources,
        })
    }

    /// What chrony has selected, as chronyc would name it.
    pub fn selected_name(&self) -> String {
        match &self.chrony.selected {
            Some(ChronySourceId::Address(ip)) => ip.to_string(),
            Some(ChronySourceId::Refclock(r)) => r.clone(),
            None => "-".to_owned(),
        }
    }

    pub fn selected(&self) -> Option<&ChronySourceId> {
        self.chrony.selected.as_ref()
    }
}

fn ipv4_refid(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(_) => 0,
    }
}

/// The offset most sources agree on (within 0.5 s), when there is one.
fn majority_offset(offsets: &[Offset]) -> Option<Offset> {
    offsets
        .iter()
        .max_by_key(|o| {
            offsets
                .iter()
                .filter(|p| (**p - **o).abs() < Duration::from_millis(500))
                .count()
        })
        .copied()
}
