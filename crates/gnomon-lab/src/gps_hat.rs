//! A simulated GPS hat: NMEA (RMC, GGA, GSA each second, valid checksums)
//! written to a pty at 9600-baud pacing, a simulated PPS edge at each
//! second, a scriptable behaviour (healthy, no fix, week rollover, silent)
//! and unplug/replug. The device path is a stable symlink to the current
//! `/dev/pts/N`, as a udev name would be.

use std::{
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex, PoisonError,
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gnomon_core::{
    config::{GpsConfig, GpsSourceKind, PpsKind},
    gps::PpsEdge,
    time::{MonoTime, Offset, WallTime, GPS_ROLLOVER},
};
use rustix::{
    fs::{Mode, OFlags},
    pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags},
    termios::{tcgetattr, tcsetattr, OptionalActions},
    time::{clock_gettime, ClockId},
};

/// One byte at 9600 baud, 8N1: 10 bits.
pub const BYTE_TIME_9600: Duration = Duration::from_nanos(1_041_667);

/// How long after the pulse a receiver starts sending its sentences.
pub const NMEA_DELAY: Duration = Duration::from_millis(100);

/// What the hat does each second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HatMode {
    /// 3D fix, 8 satellites, correct time.
    Healthy,
    /// Sentences without a fix (RMC `V`, GGA quality 0), time still sent.
    NoFix,
    /// A receiver with the week-rollover bug: a 3D fix and a date 1024
    /// weeks in the past.
    Rollover,
    /// Powered but sending nothing (and no pulses).
    Silent,
    /// Pulses every second, but the sentences say there is no fix (some
    /// receivers pulse before they have one).
    PulsesNoFix,
    /// Pulses every second and no sentences at all (the UART went quiet).
    PulsesOnly,
    /// A 3D fix and pulses on the true second, but the sentences name
    /// another second, this many seconds off: a receiver bug, or the
    /// GPS−UTC leap offset (18 s) not yet known after a cold start.
    WrongSecond(i32),
}

impl HatMode {
    /// Whether the PPS line pulses.
    pub fn pulses(self) -> bool {
        matches!(
            self,
            HatMode::Healthy
                | HatMode::Rollover
                | HatMode::PulsesNoFix
                | HatMode::PulsesOnly
                | HatMode::WrongSecond(_)
        )
    }

    /// Whether sentences are sent.
    pub fn sends_nmea(self) -> bool {
        !matches!(self, HatMode::Silent | HatMode::PulsesOnly)
    }

    /// Whether the sentences report a fix.
    pub fn has_fix(self) -> bool {
        matches!(
            self,
            HatMode::Healthy | HatMode::Rollover | HatMode::WrongSecond(_)
        )
    }
}

/// The sentences of one second, each with `\r\n`.
pub fn nmea_second(utc: WallTime, mode: HatMode) -> Vec<String> {
    if !mode.sends_nmea() {
        return Vec::new();
    }
    let (y, mo, d, h, mi, s) = utc.to_utc();
    let hms = format!("{h:02}{mi:02}{s:02}.00");
    let date = format!("{d:02}{mo:02}{:02}", y.rem_euclid(100));
    let fixed = mode.has_fix();
    let (status, quality, sats, gsa_mode) = if fixed {
        ("A", 1, 8, 3)
    } else {
        ("V", 0, 0, 1)
    };
    let (lat, ns, lon, ew) = if fixed {
        ("4916.45", "N", "12311.12", "W")
    } else {
        ("", "", "", "")
    };
    let prns = if fixed {
        "02,05,07,13,15,18,21,26,,,,"
    } else {
        ",,,,,,,,,,,"
    };
    [
        format!("GPRMC,{hms},{status},{lat},{ns},{lon},{ew},0.0,0.0,{date},,,A"),
        format!("GPGGA,{hms},{lat},{ns},{lon},{ew},{quality},{sats:02},0.9,120.0,M,-17.0,M,,"),
        format!("GPGSA,A,{gsa_mode},{prns},1.5,0.9,1.2"),
    ]
    .into_iter()
    .map(|body| format!("${body}*{:02X}\r\n", nmea_checksum(&body)))
    .collect()
}

/// The time the hat's sentences name for the second that began at `edge`.
pub fn reported_time(edge: WallTime, mode: HatMode) -> WallTime {
    match mode {
        HatMode::Rollover => edge.minus(GPS_ROLLOVER),
        HatMode::WrongSecond(n) => edge.offset_by(Offset::from_secs(i64::from(n))),
        HatMode::Healthy
        | HatMode::NoFix
        | HatMode::Silent
        | HatMode::PulsesNoFix
        | HatMode::PulsesOnly => edge,
    }
}

/// XOR of the bytes between `$` and `*`.
pub fn nmea_checksum(body: &str) -> u8 {
    body.bytes().fold(0, |acc, b| acc ^ b)
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<HatMode>,
    master: Mutex<Option<OwnedFd>>,
    stop: AtomicBool,
    seconds_sent: AtomicU64,
    bytes_written: AtomicU64,
    bytes_dropped: AtomicU64,
}

/// The running hat; dropping it stops the writer and removes the pty.
#[derive(Debug)]
pub struct GpsHat {
    dir: tempfile::TempDir,
    link: PathBuf,
    shared: Arc<Shared>,
    pps: Mutex<Option<mpsc::Receiver<PpsEdge>>>,
    writer: Option<thread::JoinHandle<()>>,
}

impl GpsHat {
    /// Plugs in a hat in `mode` and starts sending.
    pub fn start(mode: HatMode) -> io::Result<GpsHat> {
        let dir = tempfile::Builder::new().prefix("gnomon-hat").tempdir()?;
        let link = dir.path().join("gps0");
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            master: Mutex::new(None),
            stop: AtomicBool::new(false),
            seconds_sent: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            bytes_dropped: AtomicU64::new(0),
        });
        let (pps_tx, pps_rx) = mpsc::channel();
        let mut hat = GpsHat {
            dir,
            link,
            shared: Arc::clone(&shared),
            pps: Mutex::new(Some(pps_rx)),
            writer: None,
        };
        hat.replug()?;
        hat.writer = Some(
            thread::Builder::new()
                .name("gps-hat".into())
                .spawn(move || write_loop(&shared, &pps_tx))?,
        );
        Ok(hat)
    }

    /// The device path a reader opens (a symlink to the current pty).
    pub fn device_path(&self) -> &Path {
        &self.link
    }

    pub fn set_mode(&self, mode: HatMode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Seconds for which the hat wrote its sentences (while plugged in and
    /// not silent).
    pub fn seconds_sent(&self) -> u64 {
        self.shared.seconds_sent.load(Ordering::Relaxed)
    }

    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes_written.load(Ordering::Relaxed)
    }

    /// Bytes lost because nobody read the pty and its buffer was full.
    pub fn bytes_dropped(&self) -> u64 {
        self.shared.bytes_dropped.load(Ordering::Relaxed)
    }

    /// The simulated PPS line: one edge at each whole second for which the
    /// hat sends a fix (the first call takes the receiver).
    pub fn take_pps(&self) -> Option<mpsc::Receiver<PpsEdge>> {
        self.pps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// gnomond's `[gps]` for this hat: read as a serial receiver at 9600
    /// baud, pulses from the `pps = "socket"` socket `pps_socket`
    /// ([`forward_pps`] sends there), samples into chrony's SOCK refclock
    /// at `refclock`.
    pub fn gps_config(&self, pps_socket: &Path, refclock: &Path) -> GpsConfig {
        GpsConfig {
            source: GpsSourceKind::Serial,
            device: self.device_path().display().to_string(),
            baud_rate: 9600,
            pps: PpsKind::Socket,
            pps_device: pps_socket.display().to_string(),
            sock_refclock: refclock.display().to_string(),
            ..GpsConfig::default()
        }
    }

    pub fn is_plugged(&self) -> bool {
        self.shared
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Pulls the cable: the pty disappears, a reader gets a hangup and the
    /// device path dangles.
    pub fn unplug(&self) {
        self.shared
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Plugs the hat in again on a new pty; the device path follows it.
    pub fn replug(&self) -> io::Result<()> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let slave_path = PathBuf::from(name.to_string_lossy().into_owned());
        // Raw mode on the line itself, so nothing is echoed back or
        // rewritten before a reader has set its own mode.
        let slave = rustix::fs::open(
            &slave_path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut tio = tcgetattr(&slave)?;
        tio.make_raw();
        tio.set_speed(9600)?;
        tcsetattr(&slave, OptionalActions::Now, &tio)?;
        drop(slave);
        // Writes must never block the hat: a full buffer drops bytes, as a
        // UART with nobody reading does.
        let flags = rustix::fs::fcntl_getfl(&master)?;
        rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;

        let tmp = self.dir.path().join("gps0.new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&slave_path, &tmp)?;
        std::fs::rename(&tmp, &self.link)?;
        *self
            .shared
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(master);
        Ok(())
    }
}

impl Drop for GpsHat {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.unplug();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn wall_now() -> WallTime {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    WallTime::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn mono_now() -> MonoTime {
    let t = clock_gettime(ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    #[allow(clippy::useless_conversion)]
    let nanos = u64::try_from(i64::from(t.tv_nsec)).unwrap_or(0);
    MonoTime::from_nanos(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Sleeps until the wall clock reaches `t`, in short steps so that a stop
/// is seen quickly. Returns false when stopped.
fn sleep_until(shared: &Shared, t: WallTime) -> bool {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = wall_now();
        if now >= t {
            return true;
        }
        thread::sleep(t.since(now).abs().min(Duration::from_millis(50)));
    }
}

fn write_loop(shared: &Shared, pps: &mpsc::Sender<PpsEdge>) {
    let mut sequence = 0_u64;
    loop {
        let edge = WallTime::from_unix_secs(wall_now().unix_secs().saturating_add(1));
        if !sleep_until(shared, edge) {
            return;
        }
        let mode = *shared.mode.lock().unwrap_or_else(PoisonError::into_inner);
        let plugged = shared
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if !plugged {
            continue;
        }
        if mode.pulses() {
            sequence = sequence.saturating_add(1);
            let _ = pps.send(PpsEdge {
                wall: edge,
                mono: mono_now(),
                sequence,
            });
        }
        if !sleep_until(shared, edge.plus(NMEA_DELAY)) {
            return;
        }
        let text: String = nmea_second(reported_time(edge, mode), mode).concat();
        if !text.is_empty() && write_paced(shared, text.as_bytes()) {
            shared.seconds_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes at 9600-baud pacing in small bursts; false if unplugged midway.
fn write_paced(shared: &Shared, bytes: &[u8]) -> bool {
    const BURST: usize = 8;
    for chunk in bytes.chunks(BURST) {
        {
            let guard = shared.master.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(master) = guard.as_ref() else {
                return false;
            };
            match rustix::io::write(master, chunk) {
                Ok(n) => {
                    shared
                        .bytes_written
                        .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
                }
                Err(_) => {
                    shared
                        .bytes_dropped
                        .fetch_add(u64::try_from(chunk.len()).unwrap_or(0), Ordering::Relaxed);
                }
            }
        }
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        thread::sleep(BYTE_TIME_9600.saturating_mul(n));
    }
    true
}

/// Hands the hat's pulses to a `pps = "socket"` gnomond: each edge as a
/// datagram to `path` (sent again on the next pulse if nobody listens
/// yet). Runs until the hat is dropped.
pub fn forward_pps(
    pulses: mpsc::Receiver<PpsEdge>,
    path: PathBuf,
) -> io::Result<thread::JoinHandle<()>> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    thread::Builder::new()
        .name("gps-hat-pps".into())
        .spawn(move || {
            for edge in pulses {
                let datagram = gnomon_core::gps::encode_pps_datagram(edge.sequence, edge.wall);
                // Not listening yet (gnomond starting) is not an error.
                let _ = socket.send_to(&datagram, &path);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_have_valid_checksums_and_the_time() {
        let t = WallTime::from_utc(2026, 11, 22, 2, 47, 55, 0).unwrap();
        let s = nmea_second(t, HatMode::Healthy);
        assert_eq!(s.len(), 3);
        assert!(s[0].starts_with("$GPRMC,024755.00,A,"), "{}", s[0]);
        assert!(s[0].contains(",221126,"), "{}", s[0]);
        for line in &s {
            let body = line.strip_prefix('$').unwrap().trim_end();
            let (body, sum) = body.split_once('*').unwrap();
            assert_eq!(
                u8::from_str_radix(sum, 16).unwrap(),
                nmea_checksum(body),
                "{line}"
            );
            assert!(line.ends_with("\r\n"));
        }
        // The classic example sentence's checksum.
        assert_eq!(
            nmea_checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            0x47
        );
        let nofix = nmea_second(t, HatMode::NoFix);
        assert!(
            nofix[0].starts_with("$GPRMC,024755.00,V,,,,,"),
            "{}",
            nofix[0]
        );
        assert!(nofix[1].contains(",0,00,"), "{}", nofix[1]);
        assert!(nmea_second(t, HatMode::Silent).is_empty());
    }

    #[test]
    fn rollover_names_a_date_1024_weeks_back() {
        let edge = WallTime::from_utc(2026, 11, 22, 2, 47, 55, 0).unwrap();
        let t = reported_time(edge, HatMode::Rollover);
        assert_eq!(t, WallTime::from_utc(2007, 4, 8, 2, 47, 55, 0).unwrap());
        let s = nmea_second(t, HatMode::Rollover);
        assert!(s[0].starts_with("$GPRMC,024755.00,A,"), "{}", s[0]);
        assert!(s[0].contains(",080407,"), "{}", s[0]);
        assert_eq!(reported_time(edge, HatMode::Healthy), edge);
    }

    #[test]
    fn a_wrong_second_is_named_with_a_fix_and_pulses() {
        let edge = WallTime::from_utc(2026, 11, 22, 2, 47, 55, 0).unwrap();
        let mode = HatMode::WrongSecond(18);
        let t = reported_time(edge, mode);
        assert_eq!(t, WallTime::from_utc(2026, 11, 22, 2, 48, 13, 0).unwrap());
        assert!(mode.pulses() && mode.has_fix());
        let s = nmea_second(t, mode);
        assert!(s[0].starts_with("$GPRMC,024813.00,A,"), "{}", s[0]);
    }

    #[test]
    fn a_second_fits_in_a_second_at_9600_baud() {
        let t = WallTime::from_utc(2026, 11, 22, 2, 47, 55, 0).unwrap();
        let bytes: usize = nmea_second(t, HatMode::Healthy)
            .iter()
            .map(String::len)
            .sum();
        let time = BYTE_TIME_9600 * u32::try_from(bytes).unwrap();
        assert!(time + NMEA_DELAY < Duration::from_millis(500), "{time:?}");
    }

    #[test]
    fn unplug_and_replug_move_the_device() {
        let hat = GpsHat::start(HatMode::Silent).unwrap();
        let first = std::fs::read_link(hat.device_path()).unwrap();
        assert!(first.starts_with("/dev/pts/"), "{}", first.display());
        assert!(hat.is_plugged());
        hat.unplug();
        assert!(!hat.is_plugged());
        hat.replug().unwrap();
        assert!(hat.is_plugged());
        assert!(std::fs::read_link(hat.device_path())
            .unwrap()
            .starts_with("/dev/pts/"));
        assert!(hat.device_path().exists());
    }
}
