//! The samples gnomon feeds chrony's SOCK refclock (NMEA time on the `gps`
//! host): the C struct chrony reads, encoded for the target's
//! `struct timeval` ([`SockSample::encode`], pure), and the datagram sender
//! ([`SockRefclock`], IO).
//!
//! chrony's side (refclock_sock.c, checked against chrony 4.3 and master):
//!
//! ```c
//! struct sock_sample {
//!   struct timeval tv;  /* system time of the sample */
//!   double offset;      /* true time - system time, seconds */
//!   int pulse;          /* non-zero: a PPS pulse, seconds come from elsewhere */
//!   int leap;           /* 0 normal, 1 insert, 2 delete a leap second */
//!   int _pad;           /* ignored */
//!   int magic;          /* 0x534f434b, "SOCK" */
//! };
//! ```
//!
//! chrony reads it in host byte order and drops (with only a debug log) a
//! datagram whose length is not its own `sizeof`, whose magic is wrong, or
//! whose leap is not 0, 1 or 2. For an ordinary sample the reference time is
//! `tv + offset`, the same sign as gnomon's [`Offset`] and as gpsd's writer
//! (`offset = real − clock`, `pulse = 0`). For a pulse sample chrony uses
//! the field the other way round, as the position of the system clock
//! within the true second (`system − true`, only the fraction counts);
//! [`SockSample::encode`] hides that, so [`SockSample::offset`] always means
//! `true − system`.

use std::{
    fmt, io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    str::FromStr,
};

use gnomon_core::time::{Offset, WallTime};

/// The protocol identifier chrony expects in `magic`.
pub const SOCK_MAGIC: i32 = 0x534f_434b;

const NANOS_PER_MICRO: i64 = 1_000;

/// How the target's C library lays out `struct timeval`, which decides the
/// size of chrony's `struct sock_sample`. It must match the chronyd that
/// reads the socket (chrony 4.3 accepts no other size; chrony ≥ 4.4 on
/// 32-bit glibc also converts the other one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimevalLayout {
    /// 64-bit `time_t` and `suseconds_t`: every 64-bit target, and 32-bit
    /// glibc built with `_TIME_BITS=64` (Debian 13 armhf). 40 bytes.
    Time64,
    /// 32-bit `time_t` and `suseconds_t`, the double 8-byte aligned after
    /// them: 32-bit ARM EABI as on Raspberry Pi OS 32-bit up to bookworm.
    /// 32 bytes.
    Time32,
}

impl TimevalLayout {
    /// The layout this binary's target most likely has, by pointer width.
    ///
    /// A 32-bit system whose chronyd was built with 64-bit `time_t`
    /// (`_TIME_BITS=64`, e.g. Debian 13 armhf) uses [`TimevalLayout::Time64`]
    /// although its pointers are 32-bit: the operator sets the layout
    /// explicitly there (`"64"`), since nothing at run time tells which
    /// `time_t` chronyd was compiled with.
    pub const fn native() -> Self {
        #[cfg(target_pointer_width = "64")]
        {
            TimevalLayout::Time64
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            TimevalLayout::Time32
        }
    }

    /// `sizeof (struct sock_sample)` with this layout.
    pub const fn sample_len(self) -> usize {
        match self {
            TimevalLayout::Time64 => 40,
            TimevalLayout::Time32 => 32,
        }
    }
}

impl fmt::Display for TimevalLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimevalLayout::Time64 => "64",
            TimevalLayout::Time32 => "32",
        })
    }
}

/// A layout name that is none of `64`, `32`, `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown timeval layout {0:?}: expected \"64\", \"32\" or \"auto\"")]
pub struct ParseLayoutError(String);

impl FromStr for TimevalLayout {
    type Err = ParseLayoutError;

    /// `"64"`, `"32"`, or `"auto"` for [`TimevalLayout::native`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "64" => Ok(TimevalLayout::Time64),
            "32" => Ok(TimevalLayout::Time32),
            "auto" => Ok(TimevalLayout::native()),
            other => Err(ParseLayoutError(other.to_owned())),
        }
    }
}

/// The leap second announcement a SOCK sample carries. chrony drops
/// samples with any other value, so "unsynchronised" cannot be expressed:
/// a source without time sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LeapIndicator {
    #[default]
    Normal,
    InsertSecond,
    DeleteSecond,
}

impl LeapIndicator {
    /// The value of the C `leap` field.
    pub const fn code(self) -> i32 {
        match self {
            LeapIndicator::Normal => 0,
            LeapIndicator::InsertSecond => 1,
            LeapIndicator::DeleteSecond => 2,
        }
    }

    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(LeapIndicator::Normal),
            1 => Some(LeapIndicator::InsertSecond),
            2 => Some(LeapIndicator::DeleteSecond),
            _ => None,
        }
    }
}

/// One sample for chrony's SOCK refclock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockSample {
    /// The system clock when the time was true (for NMEA: the system time
    /// of the second's start, as estimated from the sentence's arrival).
    pub system_time: WallTime,
    /// `true time − system time` (gnomon's sign): positive when the system
    /// clock is behind.
    pub offset: Offset,
    /// A PPS pulse: only the offset's fraction of a second counts, chrony
    /// takes the seconds from another source.
    pub pulse: bool,
    pub leap: LeapIndicator,
}

/// Why a sample cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("system time {secs} s does not fit a 32-bit time_t (layout {layout})")]
    TimeOutOfRange { secs: i64, layout: TimevalLayout },
}

/// Why bytes are not a SOCK sample.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes, but a SOCK sample with layout {layout} has {expected}")]
    Length {
        len: usize,
        expected: usize,
        layout: TimevalLayout,
    },
    #[error("magic {0:#010x} is not 0x534f434b")]
    Magic(i32),
    #[error("leap {0} is not 0, 1 or 2")]
    Leap(i32),
    #[error("tv_usec {0} is outside 0..1000000")]
    Micros(i64),
    #[error("offset {0} s is not a finite number")]
    Offset(f64),
}

impl SockSample {
    /// An ordinary (not pulse) sample: at system time `system_time` the
    /// true time was `true_time`.
    pub fn new(system_time: WallTime, true_time: WallTime) -> Self {
        Self {
            system_time,
            offset: true_time.since(system_time),
            pulse: false,
            leap: LeapIndicator::Normal,
        }
    }

    /// The true time this sample states.
    pub fn true_time(&self) -> WallTime {
        self.system_time.offset_by(self.offset)
    }

    /// The datagram chrony reads, in host byte order.
    ///
    /// `struct timeval` holds microseconds: the system time is truncated to
    /// the microsecond and the nanoseconds cut off are added to the offset,
    /// so the true time chrony computes stays exact to the nanosecond (up
    /// to the double's precision).
    pub fn encode(&self, layout: TimevalLayout) -> Result<Vec<u8>, EncodeError> {
        let secs = self.system_time.unix_secs();
        let sub_nanos = i64::from(self.system_time.subsec_nanos());
        let micros = sub_nanos / NANOS_PER_MICRO;
        let cut = Offset::from_nanos(sub_nanos % NANOS_PER_MICRO);
        let true_minus_tv = (self.offset + cut).as_secs_f64();
        let field = if self.pulse {
            -true_minus_tv
        } else {
            true_minus_tv
        };

        let mut out = Vec::with_capacity(layout.sample_len());
        match layout {
            TimevalLayout::Time64 => {
                out.extend_from_slice(&secs.to_ne_bytes());
                out.extend_from_slice(&micros.to_ne_bytes());
            }
            TimevalLayout::Time32 => {
                let secs32 = i32::try_from(secs)
                    .map_err(|_| EncodeError::TimeOutOfRange { secs, layout })?;
                // micros is in 0..1_000_000.
                let micros32 = i32::try_from(micros).unwrap_or(0);
                out.extend_from_slice(&secs32.to_ne_bytes());
                out.extend_from_slice(&micros32.to_ne_bytes());
            }
        }
        // The timeval is 16 or 8 bytes, so the double is 8-byte aligned
        // with no padding before it in either layout.
        out.extend_from_slice(&field.to_ne_bytes());
        out.extend_from_slice(&i32::from(self.pulse).to_ne_bytes());
        out.extend_from_slice(&self.leap.code().to_ne_bytes());
        out.extend_from_slice(&0_i32.to_ne_bytes());
        out.extend_from_slice(&SOCK_MAGIC.to_ne_bytes());
        Ok(out)
    }

    /// Reads a datagram as chrony would; the inverse of
    /// [`SockSample::encode`] up to the microsecond truncation.
    pub fn decode(bytes: &[u8], layout: TimevalLayout) -> Result<Self, DecodeError> {
        let length_error = || DecodeError::Length {
            len: bytes.len(),
            expected: layout.sample_len(),
            layout,
        };
        if bytes.len() != layout.sample_len() {
            return Err(length_error());
        }
        let mut r = Reader(bytes);
        let (secs, micros) = match layout {
            TimevalLayout::Time64 => (r.i64(), r.i64()),
            TimevalLayout::Time32 => (r.i32().map(i64::from), r.i32().map(i64::from)),
        };
        let (secs, micros) = (
            secs.ok_or_else(length_error)?,
            micros.ok_or_else(length_error)?,
        );
        let field = r.f64().ok_or_else(length_error)?;
        let pulse = r.i32().ok_or_else(length_error)?;
        let leap = r.i32().ok_or_else(length_error)?;
        let _pad = r.i32().ok_or_else(length_error)?;
        let magic = r.i32().ok_or_else(length_error)?;

        if magic != SOCK_MAGIC {
            return Err(DecodeError::Magic(magic));
        }
        let leap = LeapIndicator::from_code(leap).ok_or(DecodeError::Leap(leap))?;
        if !(0..1_000_000).contains(&micros) {
            return Err(DecodeError::Micros(micros));
        }
        if !field.is_finite() {
            return Err(DecodeError::Offset(field));
        }
        let pulse = pulse != 0;
        let offset = Offset::from_secs_f64(if pulse { -field } else { field });
        let system_time = WallTime::from_unix_secs(secs)
            .offset_by(Offset::from_nanos(micros.saturating_mul(NANOS_PER_MICRO)));
        Ok(Self {
            system_time,
            offset,
            pulse,
            leap,
        })
    }
}

/// Reads host-order numbers off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_ne_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_ne_bytes)
    }

    fn f64(&mut self) -> Option<f64> {
        self.take().map(f64::from_ne_bytes)
    }
}

/// What became of a sample that was not an error.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In chronyd's receive queue.
    Sent,
    /// Not delivered, for a reason that goes away on its own; the sample is
    /// lost, which costs chrony one sample of many.
    Dropped(DropReason),
}

/// Why chronyd did not get a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No socket file: chronyd has not started yet, or is configured
    /// without this refclock (ENOENT).
    NoSocket,
    /// A socket file nobody reads: chronyd stopped and left it (ECONNREFUSED).
    NotListening,
    /// chronyd's receive queue is full: it is alive but not reading
    /// (EAGAIN, ENOBUFS). A late time sample is worse than none, so the
    /// sender never waits.
    QueueFull,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::NoSocket => "no socket (chronyd not started or refclock not configured)",
            DropReason::NotListening => "nobody listening (chronyd stopped)",
            DropReason::QueueFull => "chronyd's queue is full (chronyd not reading)",
        })
    }
}

/// Why a sample could not be sent, other than chronyd being away.
#[derive(Debug, thiserror::Error)]
pub enum RefclockError {
    #[error("SOCK refclock {}: {error}", path.display())]
    Encode { path: PathBuf, error: EncodeError },
    #[error("opening a datagram socket for SOCK refclock {}: {error}", path.display())]
    Socket { path: PathBuf, error: io::Error },
    /// chronyd creates the socket as root with its own umask; gnomon needs
    /// write permission on it.
    #[error("sending to SOCK refclock {}: {error} (gnomon needs write permission on the socket chronyd created)", path.display())]
    PermissionDenied { path: PathBuf, error: io::Error },
    #[error("sending to SOCK refclock {}: {error}", path.display())]
    Send { path: PathBuf, error: io::Error },
    #[error("sending to SOCK refclock {}: only {sent} of {len} bytes went out", path.display())]
    Truncated {
        path: PathBuf,
        sent: usize,
        len: usize,
    },
}

/// The sender side of one chrony `refclock SOCK <path>`.
///
/// The socket is a std one in non-blocking mode rather than tokio's: a
/// send is one syscall that queues or fails at once, while tokio would
/// await writability, which for an unconnected datagram socket says nothing
/// about chronyd's queue and could wait forever on a chronyd that stopped
/// reading.
#[derive(Debug)]
pub struct SockRefclock {
    path: PathBuf,
    layout: TimevalLayout,
    /// Unbound: chrony never answers, so the socket needs no name.
    socket: Option<UnixDatagram>,
    sent: u64,
    dropped: u64,
}

impl SockRefclock {
    /// A sender to the socket chronyd creates at `path`; nothing is opened
    /// until the first sample.
    pub fn new(path: impl Into<PathBuf>, layout: TimevalLayout) -> Self {
        Self {
            path: path.into(),
            layout,
            socket: None,
            sent: 0,
            dropped: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn layout(&self) -> TimevalLayout {
        self.layout
    }

    /// Samples chronyd's queue accepted.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Samples lost because chronyd was away or not reading.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends one sample. Never waits: the send is one non-blocking
    /// datagram, and a chronyd that is not there (yet) or not reading is a
    /// [`Delivery::Dropped`], counted in [`SockRefclock::dropped`], not an
    /// error.
    pub async fn send(&mut self, sample: &SockSample) -> Result<Delivery, RefclockError> {
        let bytes = sample
            .encode(self.layout)
            .map_err(|error| RefclockError::Encode {
                path: self.path.clone(),
                error,
            })?;
        let socket = match &mut self.socket {
            Some(socket) => socket,
            slot @ None => slot.insert(open_socket().map_err(|error| RefclockError::Socket {
                path: self.path.clone(),
                error,
            })?),
        };
        match socket.send_to(&bytes, &self.path) {
            Ok(n) if n == bytes.len() => {
                self.sent = self.sent.saturating_add(1);
                Ok(Delivery::Sent)
            }
            Ok(n) => Err(RefclockError::Truncated {
                path: self.path.clone(),
                sent: n,
                len: bytes.len(),
            }),
            Err(error) => match drop_reason(&error) {
                Some(reason) => {
                    self.dropped = self.dropped.saturating_add(1);
                    Ok(Delivery::Dropped(reason))
                }
                None if matches!(error.kind(), io::ErrorKind::PermissionDenied) => {
                    Err(RefclockError::PermissionDenied {
                        path: self.path.clone(),
                        error,
                    })
                }
                None => Err(RefclockError::Send {
                    path: self.path.clone(),
                    error,
                }),
            },
        }
    }
}

fn open_socket() -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn drop_reason(error: &io::Error) -> Option<DropReason> {
    match error.raw_os_error() {
        Some(libc::ENOENT) => Some(DropReason::NoSocket),
        Some(libc::ECONNREFUSED) => Some(DropReason::NotListening),
        Some(libc::ENOBUFS) => Some(DropReason::QueueFull),
        Some(code) if code == libc::EAGAIN || code == libc::EWOULDBLOCK => {
            Some(DropReason::QueueFull)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T02:47:55.123456Z
    const T: WallTime = WallTime::from_unix_nanos(1_795_315_675_123_456_000);

    fn sample(offset: Offset, pulse: bool, leap: LeapIndicator) -> SockSample {
        SockSample {
            system_time: T,
            offset,
            pulse,
            leap,
        }
    }

    fn i64_at(b: &[u8], at: usize) -> i64 {
        i64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }
    fn i32_at(b: &[u8], at: usize) -> i32 {
        i32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn f64_at(b: &[u8], at: usize) -> f64 {
        f64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn time64_layout_field_positions() {
        let s = sample(
            Offset::from_nanos(-250_000),
            false,
            LeapIndicator::InsertSecond,
        );
        let b = s.encode(TimevalLayout::Time64).unwrap();
        assert_eq!(b.len(), 40);
        assert_eq!(i64_at(&b, 0), 1_795_315_675);
        assert_eq!(i64_at(&b, 8), 123_456);
        assert_eq!(f64_at(&b, 16), -0.000_25);
        assert_eq!(i32_at(&b, 24), 0);
        assert_eq!(i32_at(&b, 28), 1);
        assert_eq!(i32_at(&b, 32), 0);
        assert_eq!(i32_at(&b, 36), 0x534f_434b);
    }

    #[test]
    fn time32_layout_field_positions() {
        let s = sample(Offset::from_millis(500), true, LeapIndicator::DeleteSecond);
        let b = s.encode(TimevalLayout::Time32).unwrap();
        assert_eq!(b.len(), 32);
        assert_eq!(i32_at(&b, 0), 1_795_315_675);
        assert_eq!(i32_at(&b, 4), 123_456);
        // A pulse carries system − true.
        assert_eq!(f64_at(&b, 8), -0.5);
        assert_eq!(i32_at(&b, 16), 1);
        assert_eq!(i32_at(&b, 20), 2);
        assert_eq!(i32_at(&b, 24), 0);
        assert_eq!(i32_at(&b, 28), 0x534f_434b);
    }

    #[test]
    fn byte_order_is_the_hosts() {
        let b = sample(Offset::ZERO, false, LeapIndicator::Normal)
            .encode(TimevalLayout::Time64)
            .unwrap();
        let magic = &b[36..40];
        if cfg!(target_endian = "little") {
            assert_eq!(magic, b"KCOS");
        } else {
            assert_eq!(magic, b"SOCK");
        }
    }

    /// chrony's own struct, as the C compiler of this target lays it out.
    #[repr(C)]
    #[allow(dead_code)]
    struct CSockSample {
        tv: libc::timeval,
        offset: f64,
        pulse: libc::c_int,
        leap: libc::c_int,
        _pad: libc::c_int,
        magic: libc::c_int,
    }

    #[test]
    fn native_layout_matches_the_c_struct() {
        use std::mem::{offset_of, size_of};
        let native = TimevalLayout::native();
        let encoded = sample(Offset::ZERO, false, LeapIndicator::Normal)
            .encode(native)
            .unwrap();
        assert_eq!(encoded.len(), size_of::<CSockSample>());
        assert_eq!(native.sample_len(), size_of::<CSockSample>());
        let tv = size_of::<libc::timeval>();
        assert_eq!(offset_of!(CSockSample, offset), tv);
        assert_eq!(offset_of!(CSockSample, pulse), tv + 8);
        assert_eq!(offset_of!(CSockSample, leap), tv + 12);
        assert_eq!(offset_of!(CSockSample, magic), tv + 20);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(native, TimevalLayout::Time64);
            assert_eq!(size_of::<CSockSample>(), 40);
        }
    }

    #[test]
    fn sub_microsecond_time_moves_into_the_offset() {
        let s = SockSample::new(
            T.offset_by(Offset::from_nanos(789)),
            T.offset_by(Offset::from_millis(3)),
        );
        assert_eq!(s.offset, Offset::from_nanos(3_000_000 - 789));
        for layout in [TimevalLayout::Time64, TimevalLayout::Time32] {
            let back = SockSample::decode(&s.encode(layout).unwrap(), layout).unwrap();
            assert_eq!(back.system_time, T);
            assert_eq!(back.true_time(), s.true_time());
            assert_eq!(back.offset, Offset::from_millis(3));
        }
    }

    #[test]
    fn round_trip_both_layouts() {
        for layout in [TimevalLayout::Time64, TimevalLayout::Time32] {
            for s in [
                sample(Offset::ZERO, false, LeapIndicator::Normal),
                sample(
                    Offset::from_nanos(-123_456_789),
                    true,
                    LeapIndicator::InsertSecond,
                ),
                sample(Offset::from_secs(-3600), false, LeapIndicator::DeleteSecond),
            ] {
                let b = s.encode(layout).unwrap();
                assert_eq!(SockSample::decode(&b, layout).unwrap(), s, "{layout}");
            }
        }
    }

    #[test]
    fn time32_refuses_times_past_2038() {
        let late = SockSample::new(
            WallTime::from_unix_secs(i64::from(i32::MAX) + 1),
            WallTime::from_unix_secs(i64::from(i32::MAX) + 1),
        );
        assert_eq!(
            late.encode(TimevalLayout::Time32),
            Err(EncodeError::TimeOutOfRange {
                secs: 2_147_483_648,
                layout: TimevalLayout::Time32
            })
        );
        assert_eq!(late.encode(TimevalLayout::Time64).unwrap().len(), 40);
    }

    #[test]
    fn negative_times_floor_to_the_previous_second() {
        let s = SockSample::new(WallTime::from_unix_nanos(-1_500), WallTime::UNIX_EPOCH);
        let b = s.encode(TimevalLayout::Time64).unwrap();
        assert_eq!(i64_at(&b, 0), -1);
        assert_eq!(i64_at(&b, 8), 999_998);
        let back = SockSample::decode(&b, TimevalLayout::Time64).unwrap();
        assert_eq!(back.true_time(), WallTime::UNIX_EPOCH);
    }

    #[test]
    fn decode_refuses_what_chrony_refuses() {
        let good = sample(Offset::ZERO, false, LeapIndicator::Normal)
            .encode(TimevalLayout::Time64)
            .unwrap();
        assert!(matches!(
            SockSample::decode(&good, TimevalLayout::Time32),
            Err(DecodeError::Length {
                len: 40,
                expected: 32,
                ..
            })
        ));
        let mut bad_magic = good.clone();
        bad_magic[36] ^= 1;
        assert!(matches!(
            SockSample::decode(&bad_magic, TimevalLayout::Time64),
            Err(DecodeError::Magic(_))
        ));
        let mut bad_leap = good;
        bad_leap[28..32].copy_from_slice(&3_i32.to_ne_bytes());
        assert_eq!(
            SockSample::decode(&bad_leap, TimevalLayout::Time64),
            Err(DecodeError::Leap(3))
        );
    }

    #[test]
    fn layout_from_str() {
        assert_eq!("64".parse(), Ok(TimevalLayout::Time64));
        assert_eq!("32".parse(), Ok(TimevalLayout::Time32));
        assert_eq!("auto".parse(), Ok(TimevalLayout::native()));
        assert!("x86".parse::<TimevalLayout>().is_err());
        assert_eq!(TimevalLayout::Time32.to_string(), "32");
        assert_eq!(
            TimevalLayout::Time64.to_string().parse(),
            Ok(TimevalLayout::Time64)
        );
    }

    #[tokio::test]
    async fn absent_chronyd_is_a_counted_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nmea.sock");
        let mut clock = SockRefclock::new(&path, TimevalLayout::native());
        let s = sample(Offset::ZERO, false, LeapIndicator::Normal);
        assert_eq!(
            clock.send(&s).await.unwrap(),
            Delivery::Dropped(DropReason::NoSocket)
        );

        // A socket file left behind by a chronyd that exited.
        drop(UnixDatagram::bind(&path).unwrap());
        assert_eq!(
            clock.send(&s).await.unwrap(),
            Delivery::Dropped(DropReason::NotListening)
        );
        assert_eq!((clock.sent(), clock.dropped()), (0, 2));
    }

    #[tokio::test]
    async fn delivers_and_drops_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nmea.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let mut clock = SockRefclock::new(&path, TimevalLayout::Time64);
        let s = sample(Offset::from_millis(7), false, LeapIndicator::Normal);
        assert_eq!(clock.send(&s).await.unwrap(), Delivery::Sent);
        let mut buf = [0_u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(
            SockSample::decode(&buf[..n], TimevalLayout::Time64).unwrap(),
            s
        );

        // Nobody reads: the kernel queue fills and sends must not block.
        let mut last = Delivery::Sent;
        for _ in 0..10_000 {
            last = clock.send(&s).await.unwrap();
            if last != Delivery::Sent {
                break;
            }
        }
        assert_eq!(last, Delivery::Dropped(DropReason::QueueFull));
        assert_eq!(clock.dropped(), 1);
    }

    #[tokio::test]
    async fn errors_name_the_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        // Longer than a Unix socket address can be.
        let path = dir.path().join("n".repeat(120));
        let mut clock = SockRefclock::new(&path, TimevalLayout::Time64);
        let err = clock
            .send(&sample(Offset::ZERO, false, LeapIndicator::Normal))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}
