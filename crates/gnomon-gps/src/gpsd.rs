//! gpsd as a GPS source: a JSON client over TCP that watches one gpsd,
//! turns TPV (+ the last SKY) into [`GpsEpoch`]s and PPS messages into
//! [`PpsEdge`]s, and reconnects with backoff when gpsd goes away.
//!
//! The protocol part ([`LineSplitter`], [`parse_line`], [`GpsdMapper`]) is
//! pure and tested on captured lines; [`GpsdSource`] does the IO.

use std::{io, net::SocketAddr, time::Duration};

use gnomon_core::{
    gps::{FixMode, GpsEpoch, PpsEdge},
    time::{MonoTime, WallTime},
};
use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::pps::read_clocks;

/// What gnomon asks gpsd for: JSON reports, PPS included.
pub const WATCH_COMMAND: &[u8] = b"?WATCH={\"enable\":true,\"json\":true,\"pps\":true};\n";

/// gpsd's longest reports (SKY with many satellites) are a few KiB; a line
/// longer than this is broken or hostile and is skipped.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Messages

/// The gpsd reports gnomon reads; every other class is [`GpsdMessage::Unknown`].
/// Unknown fields are ignored: gpsd adds fields between releases.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "class")]
pub enum GpsdMessage {
    #[serde(rename = "VERSION")]
    Version(Version),
    #[serde(rename = "DEVICES")]
    Devices(Devices),
    #[serde(rename = "DEVICE")]
    Device(Device),
    #[serde(rename = "WATCH")]
    Watch(Watch),
    #[serde(rename = "TPV")]
    Tpv(Tpv),
    #[serde(rename = "SKY")]
    Sky(Sky),
    #[serde(rename = "PPS")]
    Pps(PpsReport),
    #[serde(rename = "TOFF")]
    Toff(PpsReport),
    #[serde(rename = "ERROR")]
    Error(ErrorReport),
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Version {
    #[serde(default)]
    pub release: String,
    #[serde(default)]
    pub rev: String,
    #[serde(default)]
    pub proto_major: u32,
    #[serde(default)]
    pub proto_minor: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Devices {
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Device {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub activated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Watch {
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub json: bool,
    #[serde(default)]
    pub pps: bool,
}

/// Time-position-velocity report; only what the time server judges.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tpv {
    #[serde(default)]
    pub device: Option<String>,
    /// 0 unknown, 1 no fix, 2 2D, 3 3D.
    #[serde(default)]
    pub mode: u8,
    /// gpsd's fix status (1 GPS, 2 DGPS, ...); gpsd omits it for a plain fix.
    #[serde(default)]
    pub status: Option<u8>,
    /// ISO 8601 UTC, e.g. `2006-07-21T18:52:44.000Z`.
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub ept: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sky {
    #[serde(default, rename = "uSat")]
    pub used_sats: Option<u32>,
    #[serde(default)]
    pub hdop: Option<f64>,
    #[serde(default)]
    pub satellites: Option<Vec<Satellite>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Satellite {
    #[serde(default)]
    pub used: bool,
}

/// PPS and TOFF reports. Seconds and nanoseconds stay integers: as floats
/// (gpsd_proto uses f32) the nanoseconds of a 2026 time are lost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PpsReport {
    #[serde(default)]
    pub device: Option<String>,
    /// GPS (true) time of the edge.
    pub real_sec: i64,
    pub real_nsec: i64,
    /// System clock at the edge.
    pub clock_sec: i64,
    pub clock_nsec: i64,
    #[serde(default)]
    pub precision: Option<i32>,
}

impl PpsReport {
    pub fn real_time(&self) -> Option<WallTime> {
        wall_from_parts(self.real_sec, self.real_nsec)
    }

    pub fn clock_time(&self) -> Option<WallTime> {
        wall_from_parts(self.clock_sec, self.clock_nsec)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorReport {
    #[serde(default)]
    pub message: String,
}

fn wall_from_parts(sec: i64, nsec: i64) -> Option<WallTime> {
    if !(0..1_000_000_000).contains(&nsec) {
        return None;
    }
    let nanos = sec.checked_mul(1_000_000_000)?.checked_add(nsec)?;
    Some(WallTime::from_unix_nanos(nanos))
}

/// Parses one report line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<GpsdMessage, serde_json::Error> {
    serde_json::from_slice(line)
}

/// Parses gpsd's `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_iso_time(s: &str) -> Option<WallTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i32 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.splitn(3, ':');
    let hour: u32 = t.next()?.parse().ok()?;
    let minute: u32 = t.next()?.parse().ok()?;
    let second: u32 = t.next()?.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: u32 = 0;
    for b in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
        nanos = nanos * 10 + u32::from(b - b'0');
    }
    WallTime::from_utc(year, month, day, hour, minute, second, nanos)
}

// ---------------------------------------------------------------------------
// Line splitting with a cap

/// Splits a byte stream into lines, skipping lines longer than the cap.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    discarding: bool,
    overlong: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max_line,
            discarding: false,
            overlong: 0,
        }
    }

    /// Lines skipped for being longer than the cap.
    pub fn overlong(&self) -> u64 {
        self.overlong
    }

    /// Feeds bytes; complete lines (without `\n` or `\r\n`) go to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        for chunk in data.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            if !self.discarding {
                if self.buf.len().saturating_add(body.len()) > self.max {
                    self.discarding = true;
                    self.overlong = self.overlong.saturating_add(1);
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(body);
                }
            }
            if complete {
                if !self.discarding {
                    let mut line = std::mem::take(&mut self.buf);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if !line.is_empty() {
                        out.push(line);
                    }
                }
                self.discarding = false;
                self.buf.clear();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Mapping reports to gnomon's values

/// What a gpsd connection tells the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum GpsdEvent {
    /// Connected and the watch was sent.
    Connected {
        addr: SocketAddr,
    },
    Version(Version),
    /// The devices gpsd reads, sent after the watch.
    Devices(Vec<Device>),
    /// A device appeared, went away or changed.
    Device(Device),
    Epoch(GpsEpoch),
    Pps(PpsEdge),
    /// gpsd answered with an ERROR report.
    GpsdError(String),
    /// The connection failed or ended; the source reconnects after `retry_in`.
    Disconnected {
        error: String,
        retry_in: Duration,
    },
}

/// Counters of one source, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpsdStats {
    pub lines: u64,
    pub unknown_classes: u64,
    pub bad_lines: u64,
    pub overlong_lines: u64,
    pub epochs: u64,
    pub pps: u64,
    pub toff: u64,
    pub connects: u64,
    pub disconnects: u64,
}

/// Pure state that turns reports into events: the last SKY (gpsd sends
/// satellites and HDOP separately from the TPV), the time of the last TPV
/// (gpsd may send several TPVs for one second; only the first becomes an
/// epoch, since its arrival is closest to the receiver's output; TPVs
/// without a time are never merged), and the
/// local PPS sequence.
#[derive(Debug, Default)]
pub struct GpsdMapper {
    sats_used: Option<u8>,
    hdop: Option<f32>,
    last_tpv_time: Option<String>,
    pps_sequence: u64,
    pub stats: GpsdStats,
}

impl GpsdMapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets per-connection state (not the counters or the PPS sequence:
    /// a sequence that restarted would look like missed pulses reversed).
    pub fn reset_connection(&mut self) {
        self.sats_used = None;
        self.hdop = None;
        self.last_tpv_time = None;
    }

    /// One line as received at (`wall`, `mono`).
    pub fn handle_line(
        &mut self,
        line: &[u8],
        wall: WallTime,
        mono: MonoTime,
    ) -> Option<GpsdEvent> {
        self.stats.lines = self.stats.lines.saturating_add(1);
        match parse_line(line) {
            Ok(msg) => self.handle(msg, wall, mono),
            Err(_) => {
                self.stats.bad_lines = self.stats.bad_lines.saturating_add(1);
                None
            }
        }
    }

    pub fn handle(
        &mut self,
        msg: GpsdMessage,
        wall: WallTime,
        mono: MonoTime,
    ) -> Option<GpsdEvent> {
        match msg {
            GpsdMessage::Version(v) => Some(GpsdEvent::Version(v)),
            GpsdMessage::Devices(d) => Some(GpsdEvent::Devices(d.devices)),
            GpsdMessage::Device(d) => Some(GpsdEvent::Device(d)),
            GpsdMessage::Watch(_) => None,
            GpsdMessage::Sky(sky) => {
                let used = sky.used_sats.or_else(|| {
                    sky.satellites
                        .as_ref()
                        .and_then(|s| u32::try_from(s.iter().filter(|s| s.used).count()).ok())
                });
                if let Some(used) = used {
                    self.sats_used = Some(u8::try_from(used).unwrap_or(u8::MAX));
                }
                if let Some(hdop) = sky.hdop.filter(|h| h.is_finite() && *h >= 0.0) {
                    // HDOP is a small number; f32 is what GpsEpoch carries.
                    #[allow(clippy::cast_possible_truncation)]
                    let h = hdop as f32;
                    self.hdop = Some(h);
                }
                None
            }
            GpsdMessage::Tpv(tpv) => {
                // A TPV without time always counts: a receiver that has
                // no time yet must still show up once per report.
                if tpv.time.is_some() && self.last_tpv_time == tpv.time {
                    return None;
                }
                self.last_tpv_time.clone_from(&tpv.time);
                self.stats.epochs = self.stats.epochs.saturating_add(1);
                Some(GpsdEvent::Epoch(self.epoch(&tpv, wall, mono)))
            }
            GpsdMessage::Pps(pps) => {
                let edge = pps.clock_time()?;
                self.stats.pps = self.stats.pps.saturating_add(1);
                self.pps_sequence = self.pps_sequence.wrapping_add(1);
                // gpsd gives the edge on the system clock only; its
                // monotonic instant is estimated as the arrival minus the
                // report's delay on the wall clock (off by any wall-clock
                // step or slew in between, normally microseconds).
                let delay = wall.since(edge);
                let back = u64::try_from(delay.as_nanos()).unwrap_or(0);
                let edge_mono = MonoTime::from_nanos(mono.as_nanos().saturating_sub(back));
                Some(GpsdEvent::Pps(PpsEdge {
                    wall: edge,
                    mono: edge_mono,
                    sequence: self.pps_sequence,
                }))
            }
            GpsdMessage::Toff(_) => {
                self.stats.toff = self.stats.toff.saturating_add(1);
                None
            }
            GpsdMessage::Error(e) => Some(GpsdEvent::GpsdError(e.message)),
            GpsdMessage::Unknown => {
                self.stats.unknown_classes = self.stats.unknown_classes.saturating_add(1);
                None
            }
        }
    }

    fn epoch(&self, tpv: &Tpv, wall: WallTime, mono: MonoTime) -> GpsEpoch {
        let fix = match tpv.mode {
            2 => FixMode::Fix2D,
            3 => FixMode::Fix3D,
            _ => FixMode::NoFix,
        };
        GpsEpoch {
            utc: tpv.time.as_deref().and_then(parse_iso_time),
            fix,
            // gpsd hides the RMC status behind `mode`.
            rmc_valid: None,
            gga_quality: tpv.status.and_then(gga_quality_of_status),
            sats_used: self.sats_used,
            hdop: self.hdop,
            received_wall: wall,
            received_mono: mono,
        }
    }
}

/// gpsd's TPV status in GGA's fix-quality numbering; `None` for unknown.
fn gga_quality_of_status(status: u8) -> Option<u8> {
    match status {
        1 | 9 => Some(1),
        2 => Some(2),
        3 => Some(4),
        4 => Some(5),
        5 | 6 => Some(6),
        7 => Some(7),
        8 => Some(8),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// IO

/// Why a connection to gpsd failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum GpsdError {
    #[error("connecting to gpsd at {addr}: {error}")]
    Connect { addr: SocketAddr, error: io::Error },
    #[error("sending WATCH to gpsd at {addr}: {error}")]
    Watch { addr: SocketAddr, error: io::Error },
    #[error("reading from gpsd at {addr}: {error}")]
    Read { addr: SocketAddr, error: io::Error },
    #[error("gpsd at {addr} closed the connection")]
    Closed { addr: SocketAddr },
    #[error("gpsd at {addr} sent nothing for {silence:?}")]
    Silent { addr: SocketAddr, silence: Duration },
}

/// Reconnect and read limits.
#[derive(Debug, Clone, Copy)]
pub struct GpsdConfig {
    pub max_line: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A gpsd that sends nothing for this long is treated as gone.
    pub read_timeout: Duration,
}

impl Default for GpsdConfig {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// A gpsd source that keeps itself connected. Call [`GpsdSource::next_event`]
/// in a loop; a lost connection comes out as [`GpsdEvent::Disconnected`]
/// (for the engine to alert on) and the next call waits out the backoff
/// and reconnects.
#[derive(Debug)]
pub struct GpsdSource {
    addr: SocketAddr,
    config: GpsdConfig,
    conn: Option<TcpStream>,
    splitter: LineSplitter,
    pending: std::collections::VecDeque<(Vec<u8>, WallTime, MonoTime)>,
    mapper: GpsdMapper,
    backoff: Duration,
    wait_before_connect: Option<Duration>,
}

impl GpsdSource {
    pub fn new(addr: SocketAddr, config: GpsdConfig) -> Self {
        Self {
            addr,
            config,
            conn: None,
            splitter: LineSplitter::new(config.max_line),
            pending: std::collections::VecDeque::new(),
            mapper: GpsdMapper::new(),
            backoff: config.backoff_min,
            wait_before_connect: None,
        }
    }

    pub fn stats(&self) -> GpsdStats {
        GpsdStats {
            overlong_lines: self.splitter.overlong(),
            ..self.mapper.stats
        }
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The next event; never fails, errors are events.
    pub async fn next_event(&mut self) -> GpsdEvent {
        loop {
            if let Some((line, wall, mono)) = self.pending.pop_front() {
                if let Some(ev) = self.mapper.handle_line(&line, wall, mono) {
                    return ev;
                }
                continue;
            }
            if self.conn.is_none() {
                if let Some(wait) = self.wait_before_connect.take() {
                    tokio::time::sleep(wait).await;
                }
                match self.connect().await {
                    Ok(stream) => {
                        self.conn = Some(stream);
                        self.backoff = self.config.backoff_min;
                        self.mapper.stats.connects = self.mapper.stats.connects.saturating_add(1);
                        return GpsdEvent::Connected { addr: self.addr };
                    }
                    Err(error) => return self.disconnected(&error),
                }
            }
            if let Err(error) = self.read_some().await {
                return self.disconnected(&error);
            }
        }
    }

    async fn connect(&mut self) -> Result<TcpStream, GpsdError> {
        let addr = self.addr;
        let mut stream = tokio::time::timeout(self.config.read_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| GpsdError::Connect {
                addr,
                error: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|error| GpsdError::Connect { addr, error })?;
        stream
            .write_all(WATCH_COMMAND)
            .await
            .map_err(|error| GpsdError::Watch { addr, error })?;
        self.splitter = LineSplitter {
            overlong: self.splitter.overlong(),
            ..LineSplitter::new(self.config.max_line)
        };
        self.mapper.reset_connection();
        Ok(stream)
    }

    async fn read_some(&mut self) -> Result<(), GpsdError> {
        let addr = self.addr;
        let Some(stream) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut buf = [0_u8; 8192];
        let n = match tokio::time::timeout(self.config.read_timeout, stream.read(&mut buf)).await {
            Err(_) => {
                return Err(GpsdError::Silent {
                    addr,
                    silence: self.config.read_timeout,
                })
            }
            Ok(Err(error)) => return Err(GpsdError::Read { addr, error }),
            Ok(Ok(0)) => return Err(GpsdError::Closed { addr }),
            Ok(Ok(n)) => n,
        };
        let (wall, mono) = read_clocks();
        let mut lines = Vec::new();
        self.splitter
            .push(buf.get(..n).unwrap_or_default(), &mut lines);
        self.pending
            .extend(lines.into_iter().map(|line| (line, wall, mono)));
        Ok(())
    }

    fn disconnected(&mut self, error: &GpsdError) -> GpsdEvent {
        self.conn = None;
        self.pending.clear();
        self.mapper.stats.disconnects = self.mapper.stats.disconnects.saturating_add(1);
        let retry_in = self.backoff;
        self.wait_before_connect = Some(retry_in);
        self.backoff = self.backoff.saturating_mul(2).min(self.config.backoff_max);
        GpsdEvent::Disconnected {
            error: error.to_string(),
            retry_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: WallTime = WallTime::from_unix_nanos(1_795_315_675_000_000_000);
    const M: MonoTime = MonoTime::from_nanos(5_000_000_000);

    fn feed(mapper: &mut GpsdMapper, lines: &[&str]) -> Vec<GpsdEvent> {
        lines
            .iter()
            .filter_map(|l| mapper.handle_line(l.as_bytes(), W, M))
            .collect()
    }

    #[test]
    fn tpv_with_sky_becomes_an_epoch() {
        let mut m = GpsdMapper::new();
        let ev = feed(
            &mut m,
            &[
                r#"{"class":"VERSION","release":"3.25","rev":"3.25","proto_major":3,"proto_minor":15}"#,
                r#"{"class":"DEVICES","devices":[{"class":"DEVICE","path":"/dev/ttyAMA0","driver":"u-blox","activated":"2026-11-22T04:24:36.837Z","bps":9600}]}"#,
                r#"{"class":"SKY","hdop":1.7,"pdop":2.8,"uSat":5}"#,
                r#"{"class":"TPV","mode":3,"time":"2006-07-21T18:52:44.000Z","ept":0.005,"lat":48.9}"#,
                r#"{"class":"TPV","mode":3,"time":"2006-07-21T18:52:44.000Z","ept":0.005}"#,
                r#"{"class":"TPV","mode":2,"status":2,"time":"2006-07-21T18:52:45.250Z"}"#,
            ],
        );
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert!(
            matches!(&ev[0], GpsdEvent::Version(v) if v.release == "3.25" && v.proto_major == 3)
        );
        let GpsdEvent::Devices(d) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(d[0].path.as_deref(), Some("/dev/ttyAMA0"));
        assert_eq!(d[0].driver.as_deref(), Some("u-blox"));
        let GpsdEvent::Epoch(e) = &ev[2] else {
            panic!("{ev:?}")
        };
        assert_eq!(e.utc, WallTime::from_utc(2006, 7, 21, 18, 52, 44, 0));
        assert_eq!(e.fix, FixMode::Fix3D);
        assert_eq!(e.sats_used, Some(5));
        assert_eq!(e.hdop, Some(1.7));
        assert_eq!(e.gga_quality, None);
        assert_eq!((e.received_wall, e.received_mono), (W, M));
        let GpsdEvent::Epoch(e) = &ev[3] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            e.utc,
            WallTime::from_utc(2006, 7, 21, 18, 52, 45, 250_000_000)
        );
        assert_eq!(e.fix, FixMode::Fix2D);
        assert_eq!(e.gga_quality, Some(2));
        assert_eq!(m.stats.epochs, 2);
    }

    #[test]
    fn no_fix_and_missing_fields() {
        let mut m = GpsdMapper::new();
        let ev = feed(
            &mut m,
            &[
                r#"{"class":"TPV"}"#,
                r#"{"class":"TPV","mode":1}"#,
                r#"{"class":"TPV","mode":1,"time":"2006-08-10T03:08:07.000Z"}"#,
                r#"{"class":"SKY","satellites":[{"PRN":1,"used":true},{"PRN":2,"used":false},{"PRN":3,"used":true}]}"#,
                r#"{"class":"TPV","mode":0,"time":"not a time"}"#,
            ],
        );
        let epochs: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                GpsdEvent::Epoch(e) => Some(e),
                _ => None,
            })
            .collect();
        // Timeless TPVs are never merged: each is a report of "no time".
        assert_eq!(epochs.len(), 4);
        assert_eq!((epochs[0].utc, epochs[1].utc), (None, None));
        assert_eq!(epochs[0].fix, FixMode::NoFix);
        assert_eq!(epochs[2].utc, WallTime::from_utc(2006, 8, 10, 3, 8, 7, 0));
        assert_eq!(epochs[2].fix, FixMode::NoFix);
        assert_eq!(epochs[2].sats_used, None);
        assert_eq!(epochs[3].utc, None);
        assert_eq!(epochs[3].sats_used, Some(2));
    }

    #[test]
    fn unknown_classes_and_garbage_are_counted() {
        let mut m = GpsdMapper::new();
        let ev = feed(
            &mut m,
            &[
                r#"{"class":"GST","rms":1.0}"#,
                r#"{"class":"ATT","heading":3}"#,
                "garbage",
                r#"{"class":"TPV","mode":"#,
                r#"{"no_class":1}"#,
                "\u{0}\u{1}\u{ff}",
                r#"{"class":"TPV","mode":300}"#,
                r#"{"class":"WATCH","enable":true,"json":true,"pps":true}"#,
                r#"{"class":"ERROR","message":"Unrecognized request 'FOO'"}"#,
            ],
        );
        assert_eq!(
            ev,
            vec![GpsdEvent::GpsdError("Unrecognized request 'FOO'".into())]
        );
        assert_eq!(m.stats.unknown_classes, 2);
        assert_eq!(m.stats.bad_lines, 5);
        assert_eq!(m.stats.lines, 9);
    }

    #[test]
    fn pps_keeps_nanoseconds_and_counts_locally() {
        let mut m = GpsdMapper::new();
        let wall = WallTime::from_unix_nanos(1_795_315_675_000_400_000);
        let ev: Vec<_> = [
            r#"{"class":"PPS","device":"/dev/pps0","real_sec":1795315675,"real_nsec":0,"clock_sec":1795315674,"clock_nsec":999999123,"precision":-20}"#,
            r#"{"class":"TOFF","device":"/dev/ttyAMA0","real_sec":1795315675,"real_nsec":0,"clock_sec":1795315675,"clock_nsec":120000000}"#,
            r#"{"class":"PPS","real_sec":1795315676,"real_nsec":0,"clock_sec":1795315675,"clock_nsec":999999500}"#,
        ]
        .iter()
        .filter_map(|l| m.handle_line(l.as_bytes(), wall, M))
        .collect();
        assert_eq!(ev.len(), 2);
        let GpsdEvent::Pps(p) = ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.wall, WallTime::from_unix_nanos(1_795_315_674_999_999_123));
        assert_eq!(p.sequence, 1);
        // 400.877 us before the arrival.
        assert_eq!(p.mono, MonoTime::from_nanos(M.as_nanos() - 400_877));
        let GpsdEvent::Pps(p) = ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.sequence, 2);
        assert_eq!(m.stats.toff, 1);
    }

    #[test]
    fn huge_numbers_do_not_panic() {
        let mut m = GpsdMapper::new();
        let ev = feed(
            &mut m,
            &[
                r#"{"class":"PPS","real_sec":99999999999999999999999,"real_nsec":0,"clock_sec":1,"clock_nsec":0}"#,
                r#"{"class":"PPS","real_sec":1,"real_nsec":0,"clock_sec":9223372036854775807,"clock_nsec":999999999}"#,
                r#"{"class":"PPS","real_sec":1,"real_nsec":0,"clock_sec":1,"clock_nsec":-5}"#,
                r#"{"class":"SKY","uSat":4294967295,"hdop":1e308}"#,
                r#"{"class":"SKY","uSat":99999999999}"#,
                r#"{"class":"TPV","mode":3,"time":"99999-99-99T99:99:99.9999999999Z"}"#,
            ],
        );
        assert_eq!(ev.len(), 1, "{ev:?}");
        let GpsdEvent::Epoch(e) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(e.utc, None);
        assert_eq!(e.sats_used, Some(255));
        assert_eq!(m.stats.bad_lines, 2);
        assert_eq!(m.stats.pps, 0);
    }

    #[test]
    fn iso_times() {
        assert_eq!(
            parse_iso_time("2026-11-22T02:47:55.123456789Z"),
            Some(WallTime::from_unix_nanos(1_795_315_675_123_456_789))
        );
        assert_eq!(
            parse_iso_time("2026-11-22T02:47:55Z"),
            Some(WallTime::from_unix_secs(1_795_315_675))
        );
        assert_eq!(parse_iso_time("2026-11-22T02:47:55"), None);
        assert_eq!(parse_iso_time("2026-02-30T02:47:55Z"), None);
        assert_eq!(parse_iso_time("2026-11-22T02:47:55.-1Z"), None);
    }

    #[test]
    fn splitter_caps_lines_and_handles_partial_reads() {
        let mut s = LineSplitter::new(16);
        let mut out = Vec::new();
        s.push(b"{\"a\":1}\r\n{\"b\"", &mut out);
        s.push(b":2}\n", &mut out);
        s.push(b"01234567890123456789", &mut out);
        s.push(b"more of the long line\nshort\n\n", &mut out);
        s.push(&[b'x'; 17], &mut out);
        s.push(b"\nok\n", &mut out);
        assert_eq!(
            out,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}".to_vec(),
                b"short".to_vec(),
                b"ok".to_vec()
            ]
        );
        assert_eq!(s.overlong(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_connection_is_reported_with_growing_backoff() {
        // A port nobody listens on: bind, learn the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut src = GpsdSource::new(addr, GpsdConfig::default());
        let mut waits = Vec::new();
        for _ in 0..3 {
            match src.next_event().await {
                GpsdEvent::Disconnected { error, retry_in } => {
                    assert!(error.contains(&addr.to_string()), "{error}");
                    waits.push(retry_in);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [500, 1000, 2000].map(Duration::from_millis).to_vec());
        assert_eq!(src.stats().disconnects, 3);
    }

    #[tokio::test]
    async fn reads_a_local_server_and_reconnects() {
        use tokio::io::AsyncBufReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for second in [44, 45] {
                let (sock, _) = listener.accept().await.unwrap();
                let mut sock = tokio::io::BufReader::new(sock);
                let mut watch = String::new();
                sock.read_line(&mut watch).await.unwrap();
                assert_eq!(watch.as_bytes(), WATCH_COMMAND);
                let long = format!("{{\"class\":\"SKY\",\"x\":\"{}\"}}\n", "y".repeat(100_000));
                sock.write_all(long.as_bytes()).await.unwrap();
                let tpv = format!(
                    "{{\"class\":\"TPV\",\"mode\":3,\"time\":\"2006-07-21T18:52:{second}.000Z\"}}\n"
                );
                sock.write_all(tpv.as_bytes()).await.unwrap();
                // Closing the connection is gpsd going away.
            }
        });
        let config = GpsdConfig {
            backoff_min: Duration::from_millis(10),
            ..GpsdConfig::default()
        };
        let mut src = GpsdSource::new(addr, config);
        let mut seen = Vec::new();
        while seen.len() < 7 {
            let ev = tokio::time::timeout(Duration::from_secs(5), src.next_event())
                .await
                .unwrap();
            seen.push(ev);
        }
        server.await.unwrap();
        assert!(matches!(seen[0], GpsdEvent::Connected { .. }));
        assert!(
            matches!(&seen[1], GpsdEvent::Epoch(e) if e.utc == WallTime::from_utc(2006, 7, 21, 18, 52, 44, 0))
        );
        assert!(
            matches!(&seen[2], GpsdEvent::Disconnected { error, .. } if error.contains("closed"))
        );
        assert!(matches!(seen[3], GpsdEvent::Connected { .. }));
        assert!(
            matches!(&seen[4], GpsdEvent::Epoch(e) if e.utc == WallTime::from_utc(2006, 7, 21, 18, 52, 45, 0))
        );
        assert!(matches!(seen[5], GpsdEvent::Disconnected { .. }));
        assert!(matches!(seen[6], GpsdEvent::Disconnected { .. }));
        let stats = src.stats();
        assert_eq!(stats.overlong_lines, 2);
        assert_eq!((stats.connects, stats.epochs), (2, 2));
    }
}
