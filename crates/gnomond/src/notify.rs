//! systemd's notification protocol: READY=1 once the first full assessment
//! is done, STATUS= kept to the engine's one-line summary, WATCHDOG=1 only
//! from the engine loop, so a stalled loop stops the pings and systemd
//! restarts the daemon. Without `NOTIFY_SOCKET` every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    /// Ping at least this often (half of `WatchdogSec=`), if the watchdog is on.
    watchdog_every: Option<Duration>,
    last_ping: Option<Instant>,
    last_status: String,
    ready: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog_every: sd_notify::watchdog_enabled().map(|d| d / 2),
            last_ping: None,
            last_status: String::new(),
            ready: false,
        }
    }

    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }

    /// READY=1 with the first STATUS= line.
    pub fn ready(&mut self, status: &str) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.last_status = status.to_owned();
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// STATUS=, only when the line changed.
    pub fn status(&mut self, status: &str) {
        if self.last_status == status {
            return;
        }
        status.clone_into(&mut self.last_status);
        self.send(&[NotifyState::Status(status)]);
    }

    /// WATCHDOG=1, called by the engine loop's watchdog timer every half
    /// watchdog interval. Calls closer than a quarter interval apart send
    /// nothing: a burst cannot flood systemd, and a timer firing a little
    /// early after a late one cannot drop a ping.
    pub fn progress(&mut self, now: Instant) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if self
            .last_ping
            .is_some_and(|last| now.duration_since(last) < every / 2)
        {
            return;
        }
        self.last_ping = Some(now);
        self.send(&[NotifyState::Watchdog]);
    }

    /// RELOADING=1 while a new config is read (with the monotonic stamp
    /// newer systemd wants), READY=1 after.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(stamp) => self.send(&[NotifyState::Reloading, stamp]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn reloaded(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}
