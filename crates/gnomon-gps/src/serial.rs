//! The receiver's serial line (UART, USB serial, or the lab's pty) as a
//! stream of timestamped byte chunks. A blocking thread owns the tty, sets
//! it raw at the configured speed and reopens it with backoff when it
//! fails or hangs up (unplugged USB receiver, driver reset).

use std::{
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use gnomon_core::time::{MonoTime, WallTime};
use rustix::{
    event::{poll, PollFd, PollFlags},
    fs::{Mode, OFlags},
    io::Errno,
    termios::{tcgetattr, tcsetattr, OptionalActions},
    time::Timespec,
};
use tokio::sync::mpsc;

use crate::pps::read_clocks;

/// What the serial line tells the async side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialEvent {
    /// The device was opened and set up.
    Opened { path: PathBuf },
    /// Bytes as read, with the clocks read right after the read returned.
    Bytes {
        data: Vec<u8>,
        received_wall: WallTime,
        received_mono: MonoTime,
    },
    /// The device could not be opened or was lost; the reader retries after
    /// `retry_in`. The message names the path.
    Lost { error: String, retry_in: Duration },
}

#[derive(Debug, Clone, Copy)]
pub struct SerialConfig {
    pub baud: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for SerialConfig {
    fn default() -> Self {
        Self {
            baud: 9600,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Reads one tty path on a thread. Dropping the reader stops the thread
/// (within 200 ms) and closes the device.
#[derive(Debug)]
pub struct SerialReader {
    rx: mpsc::Receiver<SerialEvent>,
    stop: Arc<AtomicBool>,
}

const POLL_INTERVAL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 200_000_000,
};

impl SerialReader {
    pub fn spawn(path: PathBuf, config: SerialConfig) -> std::io::Result<SerialReader> {
        let (tx, rx) = mpsc::channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = Arc::clone(&stop);
        thread::Builder::new()
            .name("gnomon-serial".into())
            .spawn(move || read_loop(&path, config, &stop_thread, &tx))?;
        Ok(SerialReader { rx, stop })
    }

    /// The next event; `None` once the thread has stopped.
    pub async fn next(&mut self) -> Option<SerialEvent> {
        self.rx.recv().await
    }

    /// An event already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<SerialEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for SerialReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn open_tty(path: &std::path::Path, baud: u32) -> rustix::io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut tio = tcgetattr(&fd)?;
    tio.make_raw();
    tio.set_speed(baud)?;
    tcsetattr(&fd, OptionalActions::Now, &tio)?;
    Ok(fd)
}

/// Why a session on an open tty ended.
enum End {
    Stopped,
    Lost(String),
}

fn read_loop(
    path: &std::path::Path,
    config: SerialConfig,
    stop: &AtomicBool,
    tx: &mpsc::Sender<SerialEvent>,
) {
    let mut backoff = config.backoff_min;
    while !stop.load(Ordering::Relaxed) {
        let error = match open_tty(path, config.baud) {
            Ok(fd) => {
                backoff = config.backoff_min;
                let opened = SerialEvent::Opened {
                    path: path.to_path_buf(),
                };
                if tx.blocking_send(opened).is_err() {
                    return;
                }
                match read_session(&fd, stop, tx) {
                    End::Stopped => return,
                    End::Lost(why) => format!("serial device {}: {why}", path.display()),
                }
            }
            Err(e) => format!("opening serial device {}: {e}", path.display()),
        };
        let lost = SerialEvent::Lost {
            error,
            retry_in: backoff,
        };
        if tx.blocking_send(lost).is_err() {
            return;
        }
        let mut waited = Duration::ZERO;
        while waited < backoff {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let step = (backoff - waited).min(Duration::from_millis(50));
            thread::sleep(step);
            waited += step;
        }
        backoff = backoff.saturating_mul(2).min(config.backoff_max);
    }
}

fn read_session(fd: &OwnedFd, stop: &AtomicBool, tx: &mpsc::Sender<SerialEvent>) -> End {
    let mut buf = [0_u8; 4096];
    loop {
        if stop.load(Ordering::Relaxed) || tx.is_closed() {
            return End::Stopped;
        }
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&POLL_INTERVAL)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return End::Lost(format!("poll: {e}")),
        }
        let revents = fds.first().map_or(PollFlags::empty(), PollFd::revents);
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return End::Lost("hung up (end of file)".into()),
            Ok(n) => {
                let (received_wall, received_mono) = read_clocks();
                let data = buf.get(..n).unwrap_or_default().to_vec();
                let ev = SerialEvent::Bytes {
                    data,
                    received_wall,
                    received_mono,
                };
                if tx.blocking_send(ev).is_err() {
                    return End::Stopped;
                }
            }
            Err(Errno::AGAIN | Errno::INTR) => {
                if revents.intersects(PollFlags::HUP | PollFlags::ERR) {
                    return End::Lost("hung up".into());
                }
            }
            Err(e) => return End::Lost(format!("read: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_device_is_lost_with_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ttyNONE");
        let mut reader = SerialReader::spawn(
            path.clone(),
            SerialConfig {
                backoff_min: Duration::from_millis(10),
                backoff_max: Duration::from_millis(40),
                ..SerialConfig::default()
            },
        )
        .unwrap();
        let mut waits = Vec::new();
        for _ in 0..4 {
            match reader.next().await.unwrap() {
                SerialEvent::Lost { error, retry_in } => {
                    assert!(error.contains(&path.display().to_string()), "{error}");
                    waits.push(retry_in.as_millis());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, vec![10, 20, 40, 40]);
    }

    #[tokio::test]
    async fn a_regular_file_is_not_a_tty() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut reader =
            SerialReader::spawn(file.path().to_path_buf(), SerialConfig::default()).unwrap();
        let Some(SerialEvent::Lost { error, .. }) = reader.next().await else {
            panic!("a regular file must not open as a tty");
        };
        assert!(error.contains("opening serial device"), "{error}");
    }
}
