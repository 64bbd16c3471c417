//! The lab's simulated GPS hat on a pty, read by our serial reader and
//! decoded by our NMEA decoder, in real time: one epoch per second with
//! the hat's time, a hangup when the hat is unplugged, and recovery on
//! replug at a new /dev/pts path behind the same device name.

// Helpers outside #[test] functions are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::time::Duration;

use gnomon_core::{
    gps::{FixMode, GpsEpoch},
    time::{Offset, WallTime},
};
use gnomon_gps::{
    decode::Decoder,
    serial::{SerialConfig, SerialEvent, SerialReader},
};
use gnomon_lab::gps_hat::{nmea_checksum, GpsHat, HatMode};
use tokio::time::{timeout_at, Instant};

struct Rig {
    reader: SerialReader,
    decoder: Decoder,
    epochs: Vec<GpsEpoch>,
    /// Bytes seen on the wire, for the framing figures.
    raw: Vec<u8>,
    opened: u32,
    lost: u32,
}

impl Rig {
    /// Feeds events until `done` holds (true) or `within` passes (false).
    async fn until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&SerialEvent, &Rig) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let Ok(Some(ev)) = timeout_at(deadline, self.reader.next()).await else {
                return false;
            };
            match &ev {
                SerialEvent::Opened { .. } => self.opened += 1,
                SerialEvent::Lost { .. } => self.lost += 1,
                SerialEvent::Bytes {
                    data,
                    received_wall,
                    received_mono,
                } => {
                    self.raw.extend_from_slice(data);
                    let new = self.decoder.push(data, *received_wall, *received_mono);
                    self.epochs.extend(new);
                }
            }
            if done(&ev, self) {
                return true;
            }
        }
    }

    fn fixed(&self) -> usize {
        self.epochs
            .iter()
            .filter(|e| e.fix == FixMode::Fix3D)
            .count()
    }
}

fn wall_now() -> WallTime {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    WallTime::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap())
}

/// `$GPRMC` lines in the raw bytes whose checksum is right.
fn valid_rmc_lines(raw: &[u8]) -> usize {
    String::from_utf8_lossy(raw)
        .split("\r\n")
        .filter_map(|l| l.strip_prefix('$'))
        .filter(|l| l.starts_with("GPRMC,"))
        .filter(|l| {
            l.split_once('*')
                .is_some_and(|(body, sum)| u8::from_str_radix(sum, 16) == Ok(nmea_checksum(body)))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn hat_on_a_pty_to_epochs_with_unplug_and_replug() {
    let hat = GpsHat::start(HatMode::Healthy).unwrap();
    let pps = hat.take_pps().unwrap();
    let reader = SerialReader::spawn(
        hat.device_path().to_path_buf(),
        SerialConfig {
            baud: 9600,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
        },
    )
    .unwrap();
    let mut rig = Rig {
        reader,
        decoder: Decoder::new(wall_now().minus(Duration::from_secs(86_400))),
        epochs: Vec::new(),
        raw: Vec::new(),
        opened: 0,
        lost: 0,
    };

    // Phase 1: healthy, one epoch per second with the hat's time.
    assert!(
        rig.until(Duration::from_secs(12), |_, r| r.fixed() >= 5)
            .await,
        "epochs in 12 s: {:?}, decoder {:?}",
        rig.epochs,
        rig.decoder.stats()
    );
    assert_eq!(rig.opened, 1);
    let phase1: Vec<GpsEpoch> = rig.epochs.drain(..).collect();
    let fixed1: Vec<&GpsEpoch> = phase1.iter().filter(|e| e.fix == FixMode::Fix3D).collect();
    for pair in fixed1.windows(2) {
        let (a, b) = (pair[0].utc.unwrap(), pair[1].utc.unwrap());
        assert_eq!(b.since(a), Offset::from_secs(1), "{a} then {b}");
    }
    for e in &fixed1 {
        let utc = e.utc.unwrap();
        assert_eq!(utc.subsec_nanos(), 0);
        // Sent 100 ms after the second, about 200 ms on the wire at 9600 baud.
        let lag = e.received_wall.since(utc);
        assert!(
            lag > Offset::from_millis(50) && lag < Offset::from_millis(900),
            "{utc} arrived {lag} late"
        );
        assert_eq!(e.rmc_valid, Some(true));
        assert_eq!(e.sats_used, Some(8));
    }
    // The simulated PPS line pulses on the seconds the NMEA names.
    let edges: Vec<WallTime> = pps.try_iter().map(|e| e.wall).collect();
    for e in &fixed1 {
        assert!(
            edges.contains(&e.utc.unwrap()),
            "no PPS edge for {:?}",
            e.utc
        );
    }

    // Phase 2: unplugged: a hangup, then retries on the dangling name.
    hat.unplug();
    assert!(
        rig.until(Duration::from_secs(3), |ev, _| matches!(
            ev,
            SerialEvent::Lost { .. }
        ))
        .await,
        "no Lost event after unplugging"
    );
    let fixed_at_unplug = rig.fixed();
    rig.until(Duration::from_secs(2), |_, _| false).await;
    assert!(
        rig.lost >= 2,
        "reader did not retry: {} lost events",
        rig.lost
    );
    assert!(
        rig.fixed() <= fixed_at_unplug + 1,
        "epochs while unplugged: {:?}",
        rig.epochs
    );

    // Phase 3: replugged on a new pty behind the same name: recovery.
    hat.replug().unwrap();
    let opened_before = rig.opened;
    assert!(
        rig.until(Duration::from_secs(12), |_, r| r.opened > opened_before
            && r.fixed() >= 3)
            .await,
        "no recovery after replug: opened {}, epochs {:?}",
        rig.opened,
        rig.epochs
    );
    let now = wall_now();
    let last = rig.epochs.iter().rev().find_map(|e| e.utc).unwrap();
    assert!(
        now.since(last).abs() < Duration::from_secs(3),
        "{last} vs {now}"
    );

    // Phase 4: the receiver loses its fix.
    hat.set_mode(HatMode::NoFix);
    assert!(
        rig.until(Duration::from_secs(6), |_, r| r.epochs.last().is_some_and(
            |e| e.fix == FixMode::NoFix && e.rmc_valid == Some(false)
        ))
        .await,
        "no no-fix epoch: {:?}",
        rig.epochs.last()
    );

    let received = fixed1.len() + rig.fixed();
    let sent = hat.seconds_sent();
    let rmc = valid_rmc_lines(&rig.raw);
    eprintln!(
        "pty_live: hat sent {sent} seconds, reader got {} bytes ({rmc} valid $GPRMC), \
         decoder gave {received} fixed epochs + {} others, {} opens, {} lost, hat dropped {} bytes",
        rig.raw.len(),
        phase1.len() - fixed1.len() + rig.epochs.len() - rig.fixed(),
        rig.opened,
        rig.lost,
        hat.bytes_dropped()
    );
    assert!(rmc >= received, "{rmc} RMC lines for {received} epochs");
    // Every second sent while plugged in is seen, give or take the one cut
    // by the unplug and the one still being assembled.
    assert!(
        u64::try_from(rmc).unwrap() + 2 >= sent,
        "{rmc} RMC lines of {sent} seconds sent"
    );
}

/// The whole `gps`-host chain on the lab hat: pty → serial reader → decoder
/// → gate (with the hat's PPS edges) → a Unix datagram socket standing in
/// for chronyd's SOCK refclock. The hat's time is the system clock, so a
/// PPS-paired sample must carry an offset of exactly zero.
#[tokio::test(flavor = "multi_thread")]
async fn hat_to_sock_refclock_through_the_gate() {
    use gnomon_chrony::refclock_sock::{SockRefclock, SockSample, TimevalLayout};
    use gnomon_gps::gate::{GateOutcome, GpsGate, Withheld};

    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("gps.sock");
    let chrony = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    chrony.set_nonblocking(true).unwrap();
    let mut gate = GpsGate::new(SockRefclock::new(&sock_path, TimevalLayout::native()));

    let hat = GpsHat::start(HatMode::Healthy).unwrap();
    let pps = hat.take_pps().unwrap();
    let mut reader =
        SerialReader::spawn(hat.device_path().to_path_buf(), SerialConfig::default()).unwrap();
    let mut decoder = Decoder::new(wall_now().minus(Duration::from_secs(86_400)));
    let mut edges = Vec::new();
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while outcomes.len() < 6 {
        let Ok(Some(ev)) = timeout_at(deadline, reader.next()).await else {
            panic!("only {} epochs offered: {outcomes:?}", outcomes.len());
        };
        let SerialEvent::Bytes {
            data,
            received_wall,
            received_mono,
        } = ev
        else {
            continue;
        };
        edges.extend(pps.try_iter());
        for epoch in decoder.push(&data, received_wall, received_mono) {
            // The first two epochs go through a closed gate.
            gate.set_open(outcomes.len() >= 2);
            let edge = edges.iter().rev().find(|e| e.wall <= epoch.received_wall);
            outcomes.push(gate.offer(&epoch, edge).await.unwrap());
        }
    }
    drop(hat);

    let mut samples = Vec::new();
    let mut buf = [0_u8; 64];
    while let Ok(n) = chrony.recv(&mut buf) {
        samples.push(SockSample::decode(&buf[..n], TimevalLayout::native()).unwrap());
    }
    let closed = outcomes
        .iter()
        .filter(|o| **o == GateOutcome::Withheld(Withheld::Closed))
        .count();
    let offered: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            GateOutcome::Offered {
                sample, from_pps, ..
            } => Some((*sample, *from_pps)),
            GateOutcome::Withheld(_) => None,
        })
        .collect();
    eprintln!(
        "pty_live gate: {} epochs, {closed} withheld (closed), {} offered ({} with PPS), {} samples on the socket",
        outcomes.len(),
        offered.len(),
        offered.iter().filter(|(_, p)| *p).count(),
        samples.len()
    );
    assert!(closed >= 2, "{outcomes:?}");
    assert!(offered.len() >= 3, "{outcomes:?}");
    assert_eq!(samples.len(), offered.len());
    assert_eq!(gate.stats().sent, u64::try_from(samples.len()).unwrap());
    for (got, (sent, from_pps)) in samples.iter().zip(&offered) {
        assert_eq!(got, sent);
        assert!(*from_pps, "every epoch has its edge: {outcomes:?}");
        assert_eq!(got.offset, Offset::ZERO, "{got:?}");
        assert_eq!(got.true_time().subsec_nanos(), 0);
        assert!(!got.pulse);
    }
}
