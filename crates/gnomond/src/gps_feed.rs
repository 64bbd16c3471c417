//! The GPS side of the `gps` role: reads NMEA (UART/serial or gpsd) and the
//! PPS line, hands epochs and edges to the engine, and feeds chrony's SOCK
//! refclock through the gate the engine opens and closes.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use gnomon_chrony::refclock_sock::{SockRefclock, TimevalLayout};
use gnomon_core::{
    config::{GpsConfig, GpsSourceKind, PpsKind},
    engine::{GpsStatus, Input},
    gps::{GpsEpoch, PpsEdge},
    ipc::{GpsReport, PpsReport},
    time::WallTime,
};
use gnomon_gps::{
    decode::Decoder,
    gate::GpsGate,
    gpsd::{GpsdConfig, GpsdEvent, GpsdSource},
    pps::{self, PpsStream},
    serial::{SerialConfig, SerialEvent, SerialReader},
};
use tokio::sync::{mpsc, watch};

/// Edges kept for `gnomonctl pps`.
const EDGES_SHOWN: usize = 8;
/// Pulses remembered for pairing with an epoch that completes late.
const EDGES_KEPT: usize = 4;
/// A PPS backend that could not be opened is tried again this often.
const PPS_RETRY: Duration = Duration::from_secs(5);
/// How long an epoch waits for the engine's judgement before it is
/// withheld from chrony (the engine loop answers within milliseconds).
const JUDGEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// The engine's word to the feed: whether the gate is open, and how many
/// epochs the engine has judged. An epoch is offered to chrony only once
/// the engine has judged it, so the gate decides on the epoch it passes:
/// the first sample of a GPS gone wrong never reaches chrony.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateWord {
    pub open: bool,
    /// Epochs ([`Input::GpsEpoch`]) the engine has handled.
    pub judged: u64,
}

/// What `gnomonctl gps` and `pps` show of the reading side; the engine's
/// judgement is added by the daemon.
#[derive(Debug, Default)]
pub struct GpsFeedState {
    pub connected: bool,
    pub last_error: Option<String>,
    pub bytes_read: u64,
    pub epochs: u64,
    pub samples_sent: u64,
    pub samples_withheld: u64,
    /// Epochs withheld because the engine's judgement did not come in time.
    pub unjudged: u64,
    /// Epochs read as a backlog and not used (see `GpsFeed::drop_backlog`).
    pub backlog_dropped: u64,
    pub pps_last_error: Option<String>,
    pub recent_edges: VecDeque<PpsEdge>,
}

/// Shared between the feed task (writer) and the daemon (reader).
pub type SharedFeedState = Arc<Mutex<GpsFeedState>>;

fn update(state: &SharedFeedState, f: impl FnOnce(&mut GpsFeedState)) {
    f(&mut state.lock().unwrap_or_else(PoisonError::into_inner));
}

/// The reports for `gnomonctl gps` / `pps`.
pub fn reports(
    config: &GpsConfig,
    state: &SharedFeedState,
    status: Option<GpsStatus>,
) -> (GpsReport, PpsReport) {
    let s = state.lock().unwrap_or_else(PoisonError::into_inner);
    let device = match config.source {
        GpsSourceKind::Gpsd => config.gpsd_address.clone(),
        GpsSourceKind::Uart | GpsSourceKind::Serial => config.device.clone(),
    };
    let pps_device = match config.pps {
        PpsKind::Gpio => format!("GPIO {}", config.pps_gpio),
        PpsKind::None => String::new(),
        PpsKind::Kernel | PpsKind::Socket => config.pps_device.clone(),
    };
    (
        GpsReport {
            source: config.source.to_string(),
            device,
            connected: s.connected,
            last_error: s.last_error.clone(),
            bytes_read: s.bytes_read,
            epochs: s.epochs,
            backlog_dropped: s.backlog_dropped,
            samples_sent: s.samples_sent,
            samples_withheld: s.samples_withheld,
            sock_refclock: config.sock_refclock.clone(),
            status: status.clone(),
        },
        PpsReport {
            kind: config.pps.to_string(),
            device: pps_device,
            last_error: s.pps_last_error.clone(),
            recent_edges: s.recent_edges.iter().copied().collect(),
            status,
        },
    )
}

/// Where NMEA comes from.
enum NmeaSource {
    Serial {
        reader: SerialReader,
        decoder: Box<Decoder>,
        /// The reader thread ended (it only does when dropped): wait forever
        /// instead of spinning on `None`.
        ended: bool,
    },
    Gpsd(Box<GpsdSource>),
}

enum NmeaEvent {
    Serial(Option<SerialEvent>),
    Gpsd(GpsdEvent),
}

impl NmeaSource {
    /// An event the reader already has, without waiting (serial only: gpsd
    /// delivers reports one by one).
    fn try_next(&mut self) -> Option<NmeaEvent> {
        match self {
            NmeaSource::Serial {
                reader,
                ended: false,
                ..
            } => reader.try_next().map(|e| NmeaEvent::Serial(Some(e))),
            NmeaSource::Serial { .. } | NmeaSource::Gpsd(_) => None,
        }
    }

    async fn next(&mut self) -> NmeaEvent {
        match self {
            NmeaSource::Serial { ended: true, .. } => std::future::pending().await,
            NmeaSource::Serial { reader, ended, .. } => {
                let event = reader.next().await;
                *ended = event.is_none();
                NmeaEvent::Serial(event)
            }
            NmeaSource::Gpsd(source) => NmeaEvent::Gpsd(source.next_event().await),
        }
    }
}

/// Why the feed could not start.
#[derive(Debug, thiserror::Error)]
pub enum GpsFeedError {
    #[error("starting the reader thread for {path}: {error}")]
    Thread { path: String, error: std::io::Error },
    #[error("gps.gpsd-address \"{0}\" is not an address and port")]
    GpsdAddress(String),
}

/// The running feed's inputs and outputs.
#[derive(Debug)]
pub struct GpsFeed {
    pub config: GpsConfig,
    /// Floor for the decoder's date checks.
    pub floor: WallTime,
    pub gate: watch::Receiver<GateWord>,
    pub inputs: mpsc::Sender<Input>,
    pub state: SharedFeedState,
}

impl GpsFeed {
    /// Runs until the engine's input channel closes.
    pub async fn run(mut self) -> Result<(), GpsFeedError> {
        let mut source = self.open_source()?;
        let mut gate = GpsGate::new(SockRefclock::new(
            &self.config.sock_refclock,
            TimevalLayout::native(),
        ));
        gate.set_open(self.gate.borrow().open);
        // Epochs handed to the engine, to match against its judgements.
        let mut sent: u64 = self.gate.borrow().judged;
        let mut pps: Option<PpsStream> = None;
        let mut pps_retry = tokio::time::interval(PPS_RETRY);
        // A decoder closes an epoch when the next second's sentences begin,
        // so by then the next pulse has come: keep a few.
        let mut last_edges: VecDeque<PpsEdge> = VecDeque::with_capacity(EDGES_KEPT);
        loop {
            tokio::select! {
                _ = pps_retry.tick(), if pps.is_none() && self.config.pps != PpsKind::None => {
                    pps = self.open_pps();
                }
                edge = next_edge(&mut pps) => match edge {
                    Some(Ok(edge)) => {
                        if last_edges.len() >= EDGES_KEPT {
                            last_edges.pop_front();
                        }
                        last_edges.push_back(edge);
                        update(&self.state, |s| {
                            s.pps_last_error = None;
                            if s.recent_edges.len() >= EDGES_SHOWN {
                                s.recent_edges.pop_front();
                            }
                            s.recent_edges.push_back(edge);
                        });
                        if self.inputs.send(Input::PpsEdge(edge)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Some(Err(e)) => {
                        update(&self.state, |s| s.pps_last_error = Some(e.to_string()));
                    }
                    None => {
                        // The backend thread ended: open it again later.
                        pps = None;
                    }
                },
                event = source.next() => {
                    let mut epochs = self.handle_nmea(&mut source, event);
                    // Everything the reader already has is part of the same read.
                    while let Some(event) = source.try_next() {
                        epochs.extend(self.handle_nmea(&mut source, event));
                    }
                    if epochs.len() > 1 {
                        self.drop_backlog(epochs.len());
                        continue;
                    }
                    for epoch in epochs {
                        // The engine judges the epoch first; the gate then
                        // passes it or not on that judgement.
                        if self.inputs.send(Input::GpsEpoch(epoch.clone())).await.is_err() {
                            return Ok(());
                        }
                        sent = sent.saturating_add(1);
                        let judged = tokio::time::timeout(
                            JUDGEMENT_TIMEOUT,
                            async {
                                // The guard must not live across an await.
                                self.gate.wait_for(|w| w.judged >= sent).await.map(|w| w.open)
                            },
                        )
                        .await;
                        let open = match judged {
                            Ok(Ok(open)) => Some(open),
                            // The daemon is gone.
                            Ok(Err(_)) => return Ok(()),
                            Err(_) => None,
                        };
                        let edge = edge_of(&last_edges, &epoch);
                        let outcome = match open {
                            Some(open) => {
                                gate.set_open(open);
                                Some(gate.offer(&epoch, edge).await)
                            }
                            None => {
                                // Not judged in time: withheld, as if closed.
                                tracing::warn!(
                                    "the engine did not judge an NMEA epoch within {} ms; not sent to chrony",
                                    JUDGEMENT_TIMEOUT.as_millis()
                                );
                                None
                            }
                        };
                        let stats = gate.stats();
                        update(&self.state, |s| {
                            s.epochs = s.epochs.saturating_add(1);
                            s.samples_sent = stats.sent;
                            match &outcome {
                                Some(Err(e)) => s.last_error = Some(e.to_string()),
                                None => s.unjudged = s.unjudged.saturating_add(1),
                                Some(Ok(_)) => {}
                            }
                            s.samples_withheld = stats.withheld().saturating_add(s.unjudged);
                        });
                    }
                }
            }
        }
    }

    /// A receiver completes one epoch a second: several in one read were
    /// queued in the tty while gnomond was not reading (a stall under
    /// load, or data buffered before the device was opened). Their arrival
    /// times are the read's, not the receiver's, so they say nothing about
    /// the time: stamped late they would look like the GPS jumping
    /// seconds back. None goes to the engine or to chrony; the next epoch,
    /// read on time, does.
    fn drop_backlog(&self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        tracing::warn!(
            epochs = count,
            "{count} NMEA epochs were read at once (queued while gnomond was not reading); \
             not used for timing"
        );
        update(&self.state, |s| {
            s.backlog_dropped = s.backlog_dropped.saturating_add(count);
        });
    }

    fn open_source(&self) -> Result<NmeaSource, GpsFeedError> {
        match self.config.source {
            GpsSourceKind::Uart | GpsSourceKind::Serial => {
                let path = PathBuf::from(&self.config.device);
                let reader = SerialReader::spawn(
                    path,
                    SerialConfig {
                        baud: self.config.baud_rate,
                        ..SerialConfig::default()
                    },
                )
                .map_err(|error| GpsFeedError::Thread {
                    path: self.config.device.clone(),
                    error,
                })?;
                Ok(NmeaSource::Serial {
                    reader,
                    decoder: Box::new(Decoder::new(self.floor)),
                    ended: false,
                })
            }
            GpsSourceKind::Gpsd => {
                let addr: SocketAddr = self
                    .config
                    .gpsd_address
                    .parse()
                    .map_err(|_| GpsFeedError::GpsdAddress(self.config.gpsd_address.clone()))?;
                Ok(NmeaSource::Gpsd(Box::new(GpsdSource::new(
                    addr,
                    GpsdConfig::default(),
                ))))
            }
        }
    }

    fn open_pps(&self) -> Option<PpsStream> {
        let opened = match self.config.pps {
            PpsKind::Kernel => pps::spawn_kernel(PathBuf::from(&self.config.pps_device)),
            PpsKind::Gpio => pps::spawn_gpio(self.config.pps_gpio),
            PpsKind::Socket => pps::spawn_socket(PathBuf::from(&self.config.pps_device)),
            PpsKind::None => return None,
        };
        match opened {
            Ok(stream) => Some(stream),
            Err(e) => {
                let message = e.to_string();
                let first = {
                    let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                    s.pps_last_error.as_deref() != Some(message.as_str())
                };
                if first {
                    tracing::warn!(pps = %self.config.pps, "cannot open the PPS source: {message}");
                }
                update(&self.state, |s| s.pps_last_error = Some(message));
                None
            }
        }
    }

    /// Turns one reader event into epochs, keeping the reading state.
    fn handle_nmea(&self, source: &mut NmeaSource, event: NmeaEvent) -> Vec<GpsEpoch> {
        match (source, event) {
            (NmeaSource::Serial { decoder, .. }, NmeaEvent::Serial(Some(event))) => match event {
                SerialEvent::Opened { path } => {
                    tracing::info!(device = %path.display(), "GPS device opened");
                    update(&self.state, |s| {
                        s.connected = true;
                        s.last_error = None;
                    });
                    Vec::new()
                }
                SerialEvent::Bytes {
                    data,
                    received_wall,
                    received_mono,
                } => {
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    update(&self.state, |s| {
                        s.bytes_read = s.bytes_read.saturating_add(len);
                    });
                    decoder.push(&data, received_wall, received_mono)
                }
                SerialEvent::Lost { error, retry_in } => {
                    let was_connected = {
                        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                        s.connected || s.last_error.as_deref() != Some(error.as_str())
                    };
                    if was_connected {
                        tracing::warn!(
                            "GPS device lost: {error}; retrying every {}",
                            gnomon_core::time::human_duration(retry_in)
                        );
                    }
                    update(&self.state, |s| {
                        s.connected = false;
                        s.last_error = Some(error);
                    });
                    Vec::new()
                }
            },
            (NmeaSource::Gpsd(_), NmeaEvent::Gpsd(event)) => match event {
                GpsdEvent::Connected { addr } => {
                    tracing::info!(gpsd = %addr, "connected to gpsd");
                    update(&self.state, |s| {
                        s.connected = true;
                        s.last_error = None;
                    });
                    Vec::new()
                }
                GpsdEvent::Epoch(epoch) => vec![epoch],
                GpsdEvent::Disconnected { error, .. } => {
                    update(&self.state, |s| {
                        s.connected = false;
                        s.last_error = Some(error);
                    });
                    Vec::new()
                }
                GpsdEvent::GpsdError(error) => {
                    update(&self.state, |s| s.last_error = Some(error));
                    Vec::new()
                }
                // gnomon reads the pulse itself (gps.pps); gpsd's own PPS
                // reports and device lists are not needed.
                GpsdEvent::Pps(_)
                | GpsdEvent::Version(_)
                | GpsdEvent::Devices(_)
                | GpsdEvent::Device(_) => Vec::new(),
            },
            // The serial reader thread ended (it only ends when dropped).
            (NmeaSource::Serial { .. }, NmeaEvent::Serial(None)) => {
                update(&self.state, |s| {
                    s.connected = false;
                    s.last_error = Some("the serial reader stopped".into());
                });
                Vec::new()
            }
            (NmeaSource::Serial { .. }, NmeaEvent::Gpsd(_))
            | (NmeaSource::Gpsd(_), NmeaEvent::Serial(_)) => Vec::new(),
        }
    }
}

async fn next_edge(pps: &mut Option<PpsStream>) -> Option<Result<PpsEdge, pps::PpsError>> {
    match pps {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// The pulse that began the epoch's second: the newest one at or before
/// the epoch's first sentence (the gate still checks the window). The
/// epoch is handed over only once the next second's sentences start, when
/// the next pulse has already come, so the newest pulse is not the one.
fn edge_of<'a>(edges: &'a VecDeque<PpsEdge>, epoch: &GpsEpoch) -> Option<&'a PpsEdge> {
    edges.iter().rev().find(|e| e.wall <= epoch.received_wall)
}

#[cfg(test)]
mod tests {
    use gnomon_core::{
        gps::FixMode,
        time::{MonoTime, WallTime},
    };

    use super::*;

    fn edge(secs: i64, sequence: u64) -> PpsEdge {
        PpsEdge {
            wall: WallTime::from_unix_secs(secs),
            mono: MonoTime::from_nanos(0),
            sequence,
        }
    }

    #[test]
    fn an_epoch_pairs_with_the_pulse_that_began_its_second_not_the_newest() {
        let second = 1_795_333_648;
        let epoch = GpsEpoch {
            utc: Some(WallTime::from_unix_secs(second)),
            fix: FixMode::Fix3D,
            rmc_valid: Some(true),
            gga_quality: Some(1),
            sats_used: Some(8),
            hdop: Some(0.9),
            // First sentence 159 ms after the pulse.
            received_wall: WallTime::from_unix_nanos(second * 1_000_000_000 + 159_000_000),
            received_mono: MonoTime::from_nanos(0),
        };
        // Handed over after the next pulse (the next second's RMC closed it).
        let edges: VecDeque<PpsEdge> = [edge(second - 1, 1), edge(second, 2), edge(second + 1, 3)]
            .into_iter()
            .collect();
        assert_eq!(edge_of(&edges, &epoch).map(|e| e.sequence), Some(2));
        let only_later: VecDeque<PpsEdge> = [edge(second + 1, 3)].into_iter().collect();
        assert_eq!(edge_of(&only_later, &epoch), None);
        assert_eq!(edge_of(&VecDeque::new(), &epoch), None);
    }
}
