//! PPS edges into gnomon: a simulated pulse train for the lab, the kernel's
//! `/dev/ppsN` (pps-time) and GPIO edge interrupts (rppal). Each backend
//! runs on its own thread and hands [`PpsEdge`]s to the async side through a
//! [`PpsStream`]; pulse statistics are the engine's (`gps_watch`).
//!
//! Every [`MonoTime`] produced by gnomon-gps is `CLOCK_MONOTONIC` since boot
//! ([`read_clocks`]), so edges, sentences and gpsd reports share one origin.

use std::{
    fmt,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use gnomon_core::{
    gps::PpsEdge,
    time::{MonoTime, Offset, WallTime},
};
use rustix::time::{clock_gettime, ClockId};
use tokio::sync::mpsc;

/// Reads `CLOCK_REALTIME` and `CLOCK_MONOTONIC`, back to back.
pub fn read_clocks() -> (WallTime, MonoTime) {
    let wall = realtime();
    let mono = clock_gettime(ClockId::Monotonic);
    (wall, mono_from_timespec(mono.tv_sec, nsec_of(&mono)))
}

/// `CLOCK_REALTIME` through the C library (`std::time::SystemTime`), not
/// rustix's direct vDSO call: a time shim loaded with `LD_PRELOAD`
/// (libfaketime, which the outage lab uses to boot a host in 1970) sees
/// this read, as it sees chronyd's. Same clock, same resolution.
pub fn realtime() -> WallTime {
    let now = std::time::SystemTime::now();
    let nanos = match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    };
    WallTime::from_unix_nanos(nanos)
}

/// `tv_nsec` is `i64` here but `c_long` on some 32-bit targets.
#[allow(clippy::useless_conversion)]
fn nsec_of(ts: &rustix::time::Timespec) -> i64 {
    i64::from(ts.tv_nsec)
}

fn wall_from_timespec(sec: i64, nsec: i64) -> WallTime {
    WallTime::from_unix_nanos(sec.saturating_mul(1_000_000_000).saturating_add(nsec))
}

fn mono_from_timespec(sec: i64, nsec: i64) -> MonoTime {
    let nanos = sec.saturating_mul(1_000_000_000).saturating_add(nsec);
    MonoTime::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// One reading of the wall clock bracketed by two monotonic readings: the
/// wall/monotonic relation at that moment, known to ± [`ClockPair::bound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPair {
    pub mono_before: MonoTime,
    pub wall: WallTime,
    pub mono_after: MonoTime,
}

impl ClockPair {
    /// The tightest of a few samples (a preemption between the readings
    /// widens one bracket, rarely all of them).
    pub fn sample() -> Self {
        let mut best = Self::sample_once();
        for _ in 0..4 {
            let s = Self::sample_once();
            if s.bound() < best.bound() {
                best = s;
            }
        }
        best
    }

    fn sample_once() -> Self {
        let before = clock_gettime(ClockId::Monotonic);
        let wall = realtime();
        let after = clock_gettime(ClockId::Monotonic);
        Self {
            mono_before: mono_from_timespec(before.tv_sec, nsec_of(&before)),
            wall,
            mono_after: mono_from_timespec(after.tv_sec, nsec_of(&after)),
        }
    }

    /// The monotonic instant taken to coincide with `wall`: the middle of
    /// the bracket.
    pub fn mono_mid(&self) -> MonoTime {
        let half = self.mono_after.since(self.mono_before) / 2;
        self.mono_before.plus(half)
    }

    /// Half the bracket: how far the pairing can be off.
    pub fn bound(&self) -> Duration {
        self.mono_after.since(self.mono_before) / 2
    }

    /// The wall-clock reading at monotonic instant `mono`, assuming the wall
    /// clock ran at the monotonic rate in between (see the module users for
    /// what that costs).
    pub fn wall_at(&self, mono: MonoTime) -> WallTime {
        let mid = self.mono_mid();
        let delta = if mono >= mid {
            Offset::from_duration(mono.since(mid))
        } else {
            -Offset::from_duration(mid.since(mono))
        };
        self.wall.offset_by(delta)
    }

    /// The monotonic instant at wall-clock reading `wall`.
    pub fn mono_at(&self, wall: WallTime) -> MonoTime {
        let mid = self.mono_mid();
        let delta = wall.since(self.wall).as_nanos();
        let nanos = i128::from(mid.as_nanos()) + i128::from(delta);
        MonoTime::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
    }
}

/// Extends a driver's 32-bit sequence counter to 64 bits across wraps.
#[derive(Debug, Default, Clone, Copy)]
pub struct SequenceExtender {
    last: Option<u32>,
    high: u64,
}

impl SequenceExtender {
    pub fn extend(&mut self, seq: u32) -> u64 {
        if let Some(last) = self.last {
            if seq < last && last - seq > u32::MAX / 2 {
                self.high = self.high.saturating_add(1 << 32);
            }
        }
        self.last = Some(seq);
        self.high | u64::from(seq)
    }
}

/// Why a PPS source could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum PpsError {
    #[error("opening PPS device {}: {error}", path.display())]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("reading PPS device {}: {error}", path.display())]
    Fetch {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("no pulse on {source_name} for {waited:?}")]
    NoPulse {
        source_name: String,
        waited: Duration,
    },
    #[error("GPIO {pin} for PPS: {error}")]
    Gpio { pin: u8, error: String },
}

/// Edges from a backend thread. Dropping the stream stops the thread (within
/// one fetch timeout) and releases the device.
pub struct PpsStream {
    rx: mpsc::Receiver<Result<PpsEdge, PpsError>>,
    stop: Arc<AtomicBool>,
    /// Keeps a device alive whose callbacks feed `rx` (the GPIO pin).
    _guard: Option<Box<dyn Send>>,
}

impl fmt::Debug for PpsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PpsStream")
            .field("stopped", &self.stop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PpsStream {
    /// The next edge or error; `None` once the backend has stopped.
    pub async fn next(&mut self) -> Option<Result<PpsEdge, PpsError>> {
        self.rx.recv().await
    }
}

impl Drop for PpsStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const CHANNEL_DEPTH: usize = 64;

// ---------------------------------------------------------------------------
// Simulated

/// One second of a simulated pulse train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpsStep {
    /// A pulse on time.
    Pulse,
    /// A pulse off the second by this much (jitter, a wrong second).
    Shifted(Offset),
    /// No pulse on the line: nothing counts it, only the time gap shows.
    Missing,
    /// A pulse the driver counted but the reader never saw: the next edge's
    /// sequence jumps.
    Unread,
}

/// A scriptable pulse train, pure: [`SimulatedPps::next_edge`] gives the
/// edges in order, the lab's simulator runs them in simulated time and
/// [`SimulatedPps::spawn_realtime`] in real time. After the script, pulses
/// are on time forever.
#[derive(Debug, Clone)]
pub struct SimulatedPps {
    /// The nominal edge of the next second.
    wall: WallTime,
    mono: MonoTime,
    sequence: u64,
    script: std::collections::VecDeque<PpsStep>,
}

impl SimulatedPps {
    pub fn new(first_edge: WallTime, first_edge_mono: MonoTime, script: Vec<PpsStep>) -> Self {
        Self {
            wall: first_edge,
            mono: first_edge_mono,
            sequence: 0,
            script: script.into(),
        }
    }

    /// Edges on the next whole second of the system clock.
    pub fn starting_now(script: Vec<PpsStep>) -> Self {
        let pair = ClockPair::sample();
        let next = WallTime::from_unix_secs(pair.wall.unix_secs().saturating_add(1));
        Self::new(next, pair.mono_at(next), script)
    }

    pub fn next_edge(&mut self) -> PpsEdge {
        loop {
            let step = self.script.pop_front().unwrap_or(PpsStep::Pulse);
            let (wall, mono) = (self.wall, self.mono);
            self.wall = self.wall.plus(Duration::from_secs(1));
            self.mono = self.mono.plus(Duration::from_secs(1));
            match step {
                PpsStep::Missing => {}
                PpsStep::Unread => self.sequence = self.sequence.saturating_add(1),
                PpsStep::Pulse | PpsStep::Shifted(_) => {
                    let shift = match step {
                        PpsStep::Shifted(o) => o,
                        _ => Offset::ZERO,
                    };
                    self.sequence = self.sequence.saturating_add(1);
                    let mono = if shift >= Offset::ZERO {
                        mono.plus(shift.abs())
                    } else {
                        MonoTime::from_nanos(mono.as_nanos().saturating_sub(
                            u64::try_from(shift.abs().as_nanos()).unwrap_or(u64::MAX),
                        ))
                    };
                    return PpsEdge {
                        wall: wall.offset_by(shift),
                        mono,
                        sequence: self.sequence,
                    };
                }
            }
        }
    }

    /// Emits the edges at their monotonic instants from a thread.
    pub fn spawn_realtime(mut self) -> PpsStream {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = Arc::clone(&stop);
        thread::spawn(move || loop {
            let edge = self.next_edge();
            loop {
                if stop_thread.load(Ordering::Relaxed) {
                    return;
                }
                let (_, now) = read_clocks();
                if now >= edge.mono {
                    break;
                }
                thread::sleep(edge.mono.since(now).min(Duration::from_millis(100)));
            }
            if tx.blocking_send(Ok(edge)).is_err() {
                return;
            }
        });
        PpsStream {
            rx,
            stop,
            _guard: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Kernel /dev/ppsN

/// Reads a kernel PPS device (`/dev/ppsN`, e.g. pps-gpio) on a thread.
///
/// Error bound: the assert timestamp is `CLOCK_REALTIME` taken by the
/// kernel in the PPS interrupt handler (pps-gpio on a Pi: a few µs of
/// interrupt latency). The edge's monotonic instant is not in the event; it
/// is the fetch's monotonic reading minus the edge's age on the wall clock,
/// so it is off by however much the wall clock was slewed between edge and
/// fetch (chrony slews at most 83 ms/s, and a fetch normally returns well
/// under 1 ms after the edge: below 100 µs), or by a whole step if the
/// clock was stepped in between. The engine judges pulses on their wall
/// times; the monotonic instant only orders them.
///
/// Needs the hardware: compiled here, not run.
pub fn spawn_kernel(path: PathBuf) -> Result<PpsStream, PpsError> {
    let device = pps_time::PpsDevice::new(path.clone()).map_err(|error| PpsError::Open {
        path: path.clone(),
        error,
    })?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_thread = Arc::clone(&stop);
    let timeout = Duration::from_millis(1500);
    thread::spawn(move || {
        let mut seq = SequenceExtender::default();
        let mut last_seq: Option<u64> = None;
        while !stop_thread.load(Ordering::Relaxed) {
            let result = device.fetch_timeout(1, 500_000_000);
            let item = match result {
                Ok(data) => {
                    let (now_wall, now_mono) = read_clocks();
                    let info = data.info;
                    let sequence = seq.extend(info.assert_sequence);
                    if last_seq == Some(sequence) {
                        continue;
                    }
                    last_seq = Some(sequence);
                    let wall =
                        wall_from_timespec(info.assert_tu.sec, i64::from(info.assert_tu.nsec));
                    Ok(kernel_edge(wall, sequence, now_wall, now_mono))
                }
                Err(error) => {
                    let timed_out = error.raw_os_error() == Some(libc_etimedout());
                    Err(wait_failure(&path, timeout, error, timed_out))
                }
            };
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    });
    Ok(PpsStream {
        rx,
        stop,
        _guard: None,
    })
}

/// What a backend thread reports when waiting for a pulse failed: no
/// pulse within `timeout`, or an error (after a pause, so a device that
/// keeps failing is not read in a tight loop).
fn wait_failure(
    path: &std::path::Path,
    timeout: Duration,
    error: std::io::Error,
    timed_out: bool,
) -> PpsError {
    if timed_out {
        return PpsError::NoPulse {
            source_name: path.display().to_string(),
            waited: timeout,
        };
    }
    thread::sleep(Duration::from_secs(1));
    PpsError::Fetch {
        path: path.to_owned(),
        error,
    }
}

fn libc_etimedout() -> i32 {
    rustix::io::Errno::TIMEDOUT.raw_os_error()
}

/// A kernel assert timestamp fetched at (`now_wall`, `now_mono`).
fn kernel_edge(wall: WallTime, sequence: u64, now_wall: WallTime, now_mono: MonoTime) -> PpsEdge {
    let age = now_wall.since(wall).as_nanos();
    let mono = if age >= 0 {
        MonoTime::from_nanos(
            now_mono
                .as_nanos()
                .saturating_sub(u64::try_from(age).unwrap_or(0)),
        )
    } else {
        now_mono
    };
    PpsEdge {
        wall,
        mono,
        sequence,
    }
}

// ---------------------------------------------------------------------------
// GPIO edge interrupts

/// Rising edges on a GPIO line (BCM numbering) via rppal's character-device
/// interrupts.
///
/// Error bound: rppal's event timestamp is the kernel's `CLOCK_MONOTONIC`
/// reading in the GPIO interrupt handler (tens of µs of latency on a Pi,
/// more under load: prefer `/dev/pps0`, which chrony reads itself). It is
/// mapped to wall time with a [`ClockPair`] sampled in the callback, a few
/// µs after the edge: the mapping adds ± [`ClockPair::bound`] (typically
/// < 1 µs) and the wall clock's slew over that short interval (negligible).
///
/// Needs the hardware: compiled here, not run.
pub fn spawn_gpio(pin: u8) -> Result<PpsStream, PpsError> {
    let gpio_err = |error: rppal::gpio::Error| PpsError::Gpio {
        pin,
        error: error.to_string(),
    };
    let mut input = rppal::gpio::Gpio::new()
        .map_err(gpio_err)?
        .get(pin)
        .map_err(gpio_err)?
        .into_input();
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let stop = Arc::new(AtomicBool::new(false));
    let mut seq = SequenceExtender::default();
    input
        .set_async_interrupt(rppal::gpio::Trigger::RisingEdge, None, move |event| {
            let pair = ClockPair::sample();
            let edge = gpio_edge(event.timestamp, seq.extend(event.seqno), &pair);
            // A full channel means the async side is stuck; dropping the
            // edge shows up as a sequence gap, which is the truth.
            let _ = tx.try_send(Ok(edge));
        })
        .map_err(gpio_err)?;
    Ok(PpsStream {
        rx,
        stop,
        _guard: Some(Box::new(input)),
    })
}

/// An edge at monotonic `timestamp` (since boot), mapped with `pair`.
fn gpio_edge(timestamp: Duration, sequence: u64, pair: &ClockPair) -> PpsEdge {
    let mono = MonoTime::from_duration(timestamp);
    PpsEdge {
        wall: pair.wall_at(mono),
        mono,
        sequence,
    }
}

// ---------------------------------------------------------------------------
// Unix datagram socket

/// Edges received as datagrams on a Unix socket bound at `path` (a stale
/// file there is replaced), in the format of
/// [`gnomon_core::gps::encode_pps_datagram`]. For bridges from PPS readers gnomon has no
/// backend for, and for the lab's simulated hat.
///
/// Error bound: the sender's timestamp is taken as the edge's wall time; the
/// monotonic instant is derived as for the kernel device (fetch reading
/// minus the edge's age), so delivery delay does not bias the wall time.
pub fn spawn_socket(path: PathBuf) -> Result<PpsStream, PpsError> {
    let open_err = |error| PpsError::Open {
        path: path.clone(),
        error,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            std::fs::remove_file(&path).map_err(open_err)?;
        }
        Ok(_) => {
            return Err(open_err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )))
        }
        Err(_) => {}
    }
    let socket = std::os::unix::net::UnixDatagram::bind(&path).map_err(open_err)?;
    let timeout = Duration::from_millis(1500);
    socket.set_read_timeout(Some(timeout)).map_err(open_err)?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_thread = Arc::clone(&stop);
    thread::Builder::new()
        .name("gnomon-pps-socket".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            while !stop_thread.load(Ordering::Relaxed) {
                let item = match socket.recv(&mut buf) {
                    Ok(n) => {
                        let (now_wall, now_mono) = read_clocks();
                        match gnomon_core::gps::decode_pps_datagram(
                            buf.get(..n).unwrap_or_default(),
                        ) {
                            Ok((sequence, wall)) => {
                                Ok(kernel_edge(wall, sequence, now_wall, now_mono))
                            }
                            // A stray datagram is not a pulse; ignore it.
                            Err(_) => continue,
                        }
                    }
                    Err(error) => {
                        let timed_out = matches!(
                            error.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        );
                        Err(wait_failure(&path, timeout, error, timed_out))
                    }
                };
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
            let _ = std::fs::remove_file(&path);
        })
        .map_err(|error| PpsError::Open {
            path: PathBuf::from("(thread)"),
            error,
        })?;
    Ok(PpsStream {
        rx,
        stop,
        _guard: None,
    })
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn socket_backend_delivers_edges_and_reports_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pps.sock");
        // A stale socket file from a previous run is replaced.
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
        let mut stream = spawn_socket(path.clone()).unwrap();
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let (wall, _) = read_clocks();
        sender.send_to(b"noise", &path).unwrap();
        sender
            .send_to(&gnomon_core::gps::encode_pps_datagram(7, wall), &path)
            .unwrap();
        let edge = stream.next().await.unwrap().unwrap();
        assert_eq!(edge.sequence, 7);
        assert_eq!(edge.wall, wall);
        let (_, now_mono) = read_clocks();
        assert!(edge.mono <= now_mono);
        match stream.next().await.unwrap() {
            Err(PpsError::NoPulse { source_name, .. }) => {
                assert!(source_name.contains("pps.sock"), "{source_name}");
            }
            other => panic!("expected NoPulse, got {other:?}"),
        }
    }
    use super::*;

    const T0: WallTime = WallTime::from_unix_nanos(1_795_315_675_000_000_000);

    #[test]
    fn clock_pair_maps_both_ways() {
        let pair = ClockPair {
            mono_before: MonoTime::from_nanos(10_000_000_000),
            wall: T0,
            mono_after: MonoTime::from_nanos(10_000_002_000),
        };
        assert_eq!(pair.bound(), Duration::from_nanos(1_000));
        assert_eq!(pair.mono_mid(), MonoTime::from_nanos(10_000_001_000));
        // An edge 250 us before the pairing.
        let mono = MonoTime::from_nanos(9_999_751_000);
        assert_eq!(
            pair.wall_at(mono),
            T0.offset_by(Offset::from_nanos(-250_000))
        );
        assert_eq!(pair.mono_at(pair.wall_at(mono)), mono);
        assert_eq!(
            pair.wall_at(MonoTime::from_nanos(10_001_001_000)),
            T0.offset_by(Offset::from_millis(1))
        );
    }

    #[test]
    fn real_clock_pair_is_tight_and_consistent() {
        let pair = ClockPair::sample();
        assert!(
            pair.bound() < Duration::from_millis(5),
            "{:?}",
            pair.bound()
        );
        let (wall, mono) = read_clocks();
        assert!(wall >= pair.wall && mono >= pair.mono_before);
        let predicted = pair.wall_at(mono);
        assert!(wall.since(predicted).abs() < Duration::from_millis(5));
    }

    #[test]
    fn gpio_edge_uses_the_pair() {
        let pair = ClockPair {
            mono_before: MonoTime::from_nanos(100_000_000_000),
            wall: T0,
            mono_after: MonoTime::from_nanos(100_000_000_000),
        };
        let e = gpio_edge(Duration::from_nanos(99_999_990_000), 7, &pair);
        assert_eq!(e.wall, T0.offset_by(Offset::from_nanos(-10_000)));
        assert_eq!(e.mono, MonoTime::from_nanos(99_999_990_000));
        assert_eq!(e.sequence, 7);
    }

    #[test]
    fn kernel_edge_backdates_the_monotonic_instant() {
        let e = kernel_edge(
            T0,
            3,
            T0.offset_by(Offset::from_nanos(120_000)),
            MonoTime::from_nanos(50_000_000_000),
        );
        assert_eq!(e.mono, MonoTime::from_nanos(49_999_880_000));
        assert_eq!((e.wall, e.sequence), (T0, 3));
        // A wall clock stepped back between edge and fetch: no time travel.
        let e = kernel_edge(T0, 4, T0.minus(Duration::from_secs(5)), MonoTime::ZERO);
        assert_eq!(e.mono, MonoTime::ZERO);
    }

    #[test]
    fn sequences_extend_across_the_wrap() {
        let mut s = SequenceExtender::default();
        assert_eq!(s.extend(u32::MAX - 1), u64::from(u32::MAX - 1));
        assert_eq!(s.extend(u32::MAX), u64::from(u32::MAX));
        assert_eq!(s.extend(0), 1 << 32);
        assert_eq!(s.extend(2), (1 << 32) + 2);
        // A small step back (reordering) is not a wrap.
        assert_eq!(s.extend(1), (1 << 32) + 1);
    }

    #[test]
    fn simulated_script_shows_gaps_in_time_and_sequence() {
        let mut sim = SimulatedPps::new(
            T0,
            MonoTime::from_nanos(1_000_000_000),
            vec![
                PpsStep::Pulse,
                PpsStep::Missing,
                PpsStep::Pulse,
                PpsStep::Unread,
                PpsStep::Shifted(Offset::from_micros_for_test(-300)),
                PpsStep::Shifted(Offset::from_millis(2)),
            ],
        );
        let edges: Vec<_> = (0..5).map(|_| sim.next_edge()).collect();
        let secs: Vec<_> = edges.iter().map(|e| e.wall.since(T0)).collect();
        assert_eq!(
            secs,
            vec![
                Offset::ZERO,
                Offset::from_secs(2),
                Offset::from_secs(4) - Offset::from_nanos(300_000),
                Offset::from_secs(5) + Offset::from_millis(2),
                Offset::from_secs(6),
            ]
        );
        let seqs: Vec<_> = edges.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![1, 2, 4, 5, 6]);
        assert_eq!(edges[2].mono, MonoTime::from_nanos(4_999_700_000));
    }

    trait Micros {
        fn from_micros_for_test(us: i64) -> Offset;
    }
    impl Micros for Offset {
        fn from_micros_for_test(us: i64) -> Offset {
            Offset::from_nanos(us * 1_000)
        }
    }

    #[tokio::test]
    async fn simulated_realtime_pulses_once_a_second() {
        let mut stream = SimulatedPps::starting_now(vec![]).spawn_realtime();
        let a = stream.next().await.unwrap().unwrap();
        let b = stream.next().await.unwrap().unwrap();
        let (now, _) = read_clocks();
        assert_eq!(b.wall.since(a.wall), Offset::from_secs(1));
        assert_eq!(a.wall.subsec_nanos(), 0);
        assert_eq!(b.sequence, a.sequence + 1);
        // Delivered on time, not all at once ahead of the edges.
        assert!(now >= b.wall && now.since(b.wall) < Offset::from_millis(500));
    }

    #[test]
    fn missing_device_names_its_path() {
        let err = spawn_kernel(PathBuf::from("/nonexistent/pps9")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pps9"), "{err}");
    }
}
