//! Our gpsd client against a real gpsd: `gpsfake` replays a receiver capture
//! into a private gpsd on a free loopback port (never the host's gpsd), and
//! the epochs must carry the fixes and times gpsd's own regression output
//! (`.log.chk`) lists. Fails, never skips, when gpsfake is missing.

// Helpers outside #[test] functions are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gnomon_core::{
    gps::FixMode,
    time::{WallTime, GPS_ROLLOVER},
};
use gnomon_gps::gpsd::{parse_line, GpsdConfig, GpsdEvent, GpsdMessage, GpsdSource};
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};

/// shared/ sits beside the repository (locally and in CI).
const CAPTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/nmea-captures"
);
/// A SiRF-III capture with a 3D fix in every TPV of its .chk.
const CAPTURE: &str = "gpslim236.log";

/// gpsfake and the gpsd it starts, in their own process group, killed
/// together on every exit path (gpsfake does not kill gpsd on SIGKILL).
struct Gpsfake {
    child: Child,
}

impl Gpsfake {
    fn start(port: u16, log: &Path) -> Gpsfake {
        let child = Command::new("gpsfake")
            .args(["-1", "-q", "-c", "0.05", "-P"])
            .arg(port.to_string())
            .arg(log)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("gpsfake could not be started ({e}): install gpsd and gpsd-clients")
            });
        Gpsfake { child }
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap()
    }
}

impl Drop for Gpsfake {
    fn drop(&mut self) {
        let pgid = self.pgid();
        let _ = kill_process_group(pgid, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while test_kill_process_group(pgid).is_ok() && Instant::now() < deadline {
            let _ = self.child.try_wait();
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill_process_group(pgid, Signal::KILL);
        let _ = self.child.wait();
        // gpsfake leaves its control socket behind.
        let _ = std::fs::remove_file(format!("/tmp/gpsfake-{}.sock", self.child.id()));
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// The TPV times gpsd's regression run produced for the capture.
fn expected_times(chk: &Path) -> BTreeSet<WallTime> {
    let text = std::fs::read_to_string(chk).unwrap();
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| match parse_line(l.as_bytes()) {
            Ok(GpsdMessage::Tpv(t)) => t.time.as_deref().and_then(gnomon_gps::gpsd::parse_iso_time),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn epochs_from_gpsfake_match_the_capture() {
    let status = Command::new("gpsfake")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "gpsfake is missing: this test needs the gpsd and gpsd-clients packages"
    );

    let log = PathBuf::from(CAPTURES).join(CAPTURE);
    let expected = expected_times(&log.with_extension("log.chk"));
    assert!(
        expected.len() >= 15,
        "{} distinct TPV times in the .chk",
        expected.len()
    );

    let port = free_port();
    let gpsfake = Gpsfake::start(port, &log);
    let mut source = GpsdSource::new(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        GpsdConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..GpsdConfig::default()
        },
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut epochs = Vec::new();
    let mut connected = false;
    let mut version = None;
    let mut devices = Vec::new();
    while epochs.len() < 8 {
        let ev = tokio::time::timeout_at(deadline, source.next_event())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} epochs with a fix in 60 s (connected: {connected}, stats: {:?})",
                    epochs.len(),
                    source.stats()
                )
            });
        match ev {
            GpsdEvent::Connected { .. } => connected = true,
            GpsdEvent::Version(v) => version = Some(v),
            // DEVICES lists what gpsd reads when the watch starts; a client
            // that connects before gpsfake has added its pty sees an empty
            // list and then the device appearing (DEVICE).
            GpsdEvent::Devices(d) => devices.extend(d),
            GpsdEvent::Device(d) => devices.push(d),
            GpsdEvent::Epoch(e) if e.fix >= FixMode::Fix2D && e.utc.is_some() => epochs.push(e),
            // gpsd not listening yet, or the first TPVs without time.
            _ => {}
        }
    }
    drop(gpsfake);

    let version = version.expect("gpsd sent no VERSION");
    assert_eq!(version.proto_major, 3, "{version:?}");
    // gpsfake's pty, never a device of the host.
    assert!(
        devices.iter().any(|d| d
            .path
            .as_deref()
            .is_some_and(|p| p.starts_with("/dev/pts/"))),
        "{devices:?}"
    );
    let mut last = None;
    for e in &epochs {
        let utc = e.utc.unwrap();
        // gpsd moves dates older than its build by whole GPS eras (its own
        // rollover fix): the capture's 2006 comes out one or more eras later.
        let mut t = utc;
        while !expected.contains(&t) && t > WallTime::from_unix_secs(1_000_000_000) {
            t = t.minus(GPS_ROLLOVER);
        }
        assert!(
            expected.contains(&t),
            "{utc} is not a TPV time of the capture"
        );
        assert!(last < Some(utc), "times must increase: {last:?} then {utc}");
        last = Some(utc);
    }
    // Every TPV of gpsd's regression run is 3D. Live, under gpsfake's
    // pacing, gpsd now and then reports a TPV before the cycle's GSA and
    // calls it 2D (seen once in CI): gpsd's timing, not the client's
    // mapping. Most must be 3D, and none is worse than 2D (filtered above).
    let fix3d = epochs.iter().filter(|e| e.fix == FixMode::Fix3D).count();
    assert!(
        fix3d * 2 >= epochs.len(),
        "{:?}",
        epochs.iter().map(|e| e.fix).collect::<Vec<_>>()
    );
    // The capture's GSA lists 5 satellites; gpsd reports them in SKY.
    assert!(
        epochs.iter().any(|e| e.sats_used == Some(5)),
        "{:?}",
        epochs.iter().map(|e| e.sats_used).collect::<Vec<_>>()
    );
    let stats = source.stats();
    eprintln!(
        "gpsd_live: {} epochs with a fix, {} to {}, stats {stats:?}",
        epochs.len(),
        epochs[0].utc.unwrap(),
        last.unwrap()
    );
    assert_eq!(stats.bad_lines, 0, "{stats:?}");
    assert!(stats.connects >= 1);
}
