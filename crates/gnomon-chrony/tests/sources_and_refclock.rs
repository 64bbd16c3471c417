//! The sources file and the SOCK refclock against real chronyd 4.x.
//!
//! Every chronyd here runs with `-x` (it never touches the host clock), on a
//! private config, command socket and temp directory, and talks NTP on
//! loopback only; the host's own chronyd is never asked anything. The tests
//! need chronyd, chronyc and root (for the tmpfs test); they fail, never
//! skip, when those are missing.
//!
//! What they established about chrony 4.3 (see the comments at each test):
//! - `reload sources` keeps a source only when its line is unchanged.
//!   Flipping `noselect` removes the source and adds it again: its samples
//!   and reach start over.
//! - In chrony < 4.5, removing `noselect` from a source given by IP address
//!   makes it vanish: the new line sorts before the old one, its addition
//!   conflicts with the still-present old source ("Could not add source"),
//!   then the old one is removed. A second `reload sources` adds it. Fixed
//!   in 4.5 (chrony commit 7ff74d9, "fix reloading modified sources
//!   specified by IP address").
//! - The SOCK `offset` field of an ordinary sample is true − system (chrony
//!   reports a positive one as "slow of NTP time"); a pulse sample carries
//!   system − true.

// Helpers outside #[test] fns count as non-test code for clippy; the
// stderr lines report the chrony behaviour the tests observed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use gnomon_chrony::{
    client::{ChronyClient, ClientConfig},
    refclock_sock::{Delivery, DropReason, LeapIndicator, SockRefclock, SockSample, TimevalLayout},
    sources_file::{try_render, SourcesFile},
};
use gnomon_core::{
    chrony::{ChronySourceId, ChronySourceMode, SelectionState, SourceReport, Tracking},
    source::SourcePlan,
    time::{Offset, WallTime},
};
use gnomon_lab::{
    chronyd::{free_loopback_udp_port, loopback_fallback_plan, Chronyd, ChronydSpec},
    tmpfs::Tmpfs,
};

// ---------------------------------------------------------------------------
// chronyd comes from the lab's harness and is queried with our own
// `ChronyClient`; chronyc (always `-h` with the lab socket, never the host's
// chronyd) only where the client has no query (`ntpdata`) and to read
// chrony's own sign convention without our mapping in between.

fn start(spec: ChronydSpec) -> Chronyd {
    let name = spec.name.clone();
    Chronyd::start(spec).unwrap_or_else(|e| panic!("chronyd {name}: {e}"))
}

/// gnomon's command-socket client on a private runtime, so the tests stay
/// synchronous like the harness.
struct Client<'a> {
    chronyd: &'a Chronyd,
    rt: tokio::runtime::Runtime,
    client: ChronyClient,
}

impl<'a> Client<'a> {
    fn new(chronyd: &'a Chronyd) -> Self {
        Client {
            chronyd,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: ChronyClient::new(ClientConfig::new(chronyd.socket(), chronyd.client_dir())),
        }
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> ! {
        panic!("{what}: {e}\nchronyd log:\n{}", self.chronyd.log())
    }

    fn sources(&mut self) -> Vec<SourceReport> {
        match self.rt.block_on(self.client.sources()) {
            Ok(s) => s,
            Err(e) => self.fail("sources", e),
        }
    }

    fn source(&mut self, id: &ChronySourceId) -> Option<SourceReport> {
        self.sources().into_iter().find(|s| &s.id == id)
    }

    fn tracking(&mut self) -> Tracking {
        match self.rt.block_on(self.client.tracking()) {
            Ok(t) => t,
            Err(e) => self.fail("tracking", e),
        }
    }

    fn reload_sources(&mut self) {
        if let Err(e) = self.rt.block_on(self.client.reload_sources()) {
            self.fail("reload sources", e);
        }
    }
}

/// chronyc against one lab chronyd's command socket.
struct Chronyc<'a>(&'a Chronyd);

impl Chronyc<'_> {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("chronyc")
            .arg("-h")
            .arg(self.0.socket())
            .arg("-n")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run chronyc ({e}): these tests need chrony 4.x"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "chronyc {args:?} failed ({}): {stdout}{}\nchronyd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.0.log()
        );
        stdout
    }

    /// chrony's own "last sample" of a source, seconds, system − source.
    fn offset(&self, name: &str) -> Option<f64> {
        self.run(&["-c", "sources"]).lines().find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2] == name).then(|| f[8].parse().unwrap())
        })
    }

    /// Requests chrony has sent to an NTP source ("Total TX" of
    /// `ntpdata`): a counter that only a new association starts over.
    fn polls(&self, address: &str) -> Option<u64> {
        let out = self.run(&["-c", "ntpdata", address]);
        let f: Vec<&str> = out.trim().split(',').collect();
        (f.len() > 4).then(|| f[f.len() - 4].parse().unwrap())
    }
}

/// Polls `probe` every 100 ms until it yields a value or `limit` passes.
fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn chronyd_version() -> String {
    let out = Command::new("chronyd")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run chronyd ({e}): these tests need chrony 4.x"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn now() -> WallTime {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    WallTime::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap())
}

// ---------------------------------------------------------------------------
// The sources file and `reload sources`.

fn loopback_fallback(port: u16, selectable: bool) -> SourcePlan {
    loopback_fallback_plan(port, Some(selectable))
}

/// A `noselect` fallback is measured but never selected; engaging it
/// (dropping `noselect`) gets it selected; leaving it out of the plan
/// removes it.
///
/// Finding (chrony 4.3, conf.c `reload_source_dirs`): a reload compares each
/// source's whole line (name, type, port and every option, memcmp of the
/// parameters) and keeps only identical ones. A source whose only change is
/// `noselect` is removed and added again, so its reach and samples start
/// from zero (asserted below through the `ntpdata` request counter). Before chrony 4.5 the
/// engage direction is worse: the re-added line conflicts with the old
/// source still present and is dropped, and the source is gone until a
/// second `reload sources` (observed and reported below).
#[test]
fn noselect_fallback_is_measured_then_engaged_then_removed() {
    let version = chronyd_version();
    let port = free_loopback_udp_port().unwrap();
    let _server = start(ChronydSpec::ntp_server("server", port));
    let chronyd = start(ChronydSpec {
        with_sourcedir: true,
        ..ChronydSpec::client("client")
    });
    let mut client = Client::new(&chronyd);
    let chronyc = Chronyc(&chronyd);
    let file = SourcesFile::new(chronyd.sources_dir());
    let id = ChronySourceId::Address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let name = "127.0.0.1";

    // Measured, not selected.
    let noselect = try_render(&loopback_fallback(port, false)).unwrap();
    assert!(noselect.contains(" noselect\n"), "{noselect}");
    assert!(file.write(&noselect).unwrap());
    assert!(!file.write(&noselect).unwrap(), "identical plan rewritten");
    client.reload_sources();
    let started = Instant::now();
    wait_for(Duration::from_secs(15), "noselect fallback reached", || {
        client.source(&id).filter(|s| s.reach != 0)
    });
    // Keep watching: 16 polls a second give chrony every chance to select
    // it, which it must not.
    let mut polls_before = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let s = client.source(&id).unwrap();
        assert_eq!(s.mode, ChronySourceMode::Server);
        assert_eq!(s.noselect, Some(true), "{s:?}");
        assert!(
            !matches!(s.state, SelectionState::Selected | SelectionState::Combined),
            "noselect source used: {s:?}"
        );
        let t = client.tracking();
        assert!(
            !t.synchronised(),
            "synchronised to a noselect source: {t:?}"
        );
        polls_before = chronyc.polls(name).unwrap();
        thread::sleep(Duration::from_millis(200));
    }
    assert!(polls_before >= 32, "only {polls_before} polls in 4 s");
    // Where the source takes its time from (`ntpdata`, whose reply grew
    // after 4.3: the request is padded again when chronyd says it is too
    // short): a `local stratum 1` server names 127.127.1.1, and this host's
    // address on the association is loopback.
    let remote = client
        .source(&id)
        .and_then(|s| s.remote)
        .unwrap_or_else(|| panic!("{version}: no ntpdata for {name}"));
    assert_eq!(remote.ref_id, 0x7F7F_0101, "{version}: {remote:?}");
    assert_eq!(
        remote.local_address,
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "{version}: {remote:?}"
    );
    assert!(!remote.follows_this_host(), "{version}: {remote:?}");

    // Engaged: `noselect` dropped.
    let engage_started = Instant::now();
    assert!(file
        .write(&try_render(&loopback_fallback(port, true)).unwrap())
        .unwrap());
    client.reload_sources();
    let vanished = client.source(&id).is_none();
    eprintln!(
        "{version}: right after `reload sources` dropping noselect, the source is {}",
        if vanished {
            "GONE (chrony < 4.5: needs a second reload)"
        } else {
            "present"
        }
    );
    if vanished {
        assert!(
            chronyd.log().contains("Could not add source 127.0.0.1"),
            "source vanished without chrony saying why:\n{}",
            chronyd.log()
        );
        client.reload_sources();
        assert!(
            client.source(&id).is_some(),
            "a second reload did not add it"
        );
    }
    // Either way it was removed and added again, not changed in place: a
    // new association, whose counters (and samples, and reach) start over.
    let polls_after = chronyc.polls(name).unwrap();
    assert!(
        polls_after < polls_before,
        "same association across the noselect flip ({polls_before} -> {polls_after} polls)"
    );
    let selected = wait_for(Duration::from_secs(30), "engaged fallback selected", || {
        client
            .source(&id)
            .filter(|s| s.state == SelectionState::Selected)
    });
    assert_eq!(selected.noselect, Some(false), "{selected:?}");
    eprintln!(
        "engaged fallback selected {:?} after the flip",
        engage_started.elapsed()
    );
    let t = wait_for(Duration::from_secs(5), "tracking synchronised", || {
        Some(client.tracking()).filter(Tracking::synchronised)
    });
    assert_eq!(
        t.ref_address,
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "{t:?}"
    );

    // Released: `noselect` again. The removal sorts first in this direction,
    // so even chrony 4.3 re-adds it at once, again as a new association.
    thread::sleep(Duration::from_secs(1));
    let polls_engaged = chronyc.polls(name).unwrap();
    assert!(file.write(&noselect).unwrap());
    client.reload_sources();
    let s = client
        .source(&id)
        .expect("released fallback kept as noselect");
    assert_eq!(s.noselect, Some(true), "{s:?}");
    assert_ne!(s.state, SelectionState::Selected, "{s:?}");
    let polls_released = chronyc.polls(name).unwrap();
    assert!(
        polls_released < polls_engaged,
        "same association across the release ({polls_engaged} -> {polls_released} polls)"
    );

    // Left out of the plan: gone after the reload.
    assert!(file
        .write(&try_render(&SourcePlan::default()).unwrap())
        .unwrap());
    client.reload_sources();
    assert_eq!(client.sources(), vec![], "source kept after removal");
}

// ---------------------------------------------------------------------------
// The SOCK refclock.

/// Sends one sample a second from its own thread, as gnomond's GPS task
/// will, and records what became of each.
struct Feeder {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Result<Delivery, String>>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Feeder {
    /// `make` builds the sample from the system time it is sent at.
    fn start(path: PathBuf, make: impl Fn(WallTime) -> SockSample + Send + 'static) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2) = (stop.clone(), log.clone());
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut clock = SockRefclock::new(path, TimevalLayout::native());
            while !stop2.load(Ordering::Relaxed) {
                let result = rt
                    .block_on(clock.send(&make(now())))
                    .map_err(|e| e.to_string());
                log2.lock().unwrap().push(result);
                thread::sleep(Duration::from_secs(1));
            }
        });
        Feeder {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn deliveries(&self) -> Vec<Result<Delivery, String>> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sock_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gnomon-sock-")
        .tempdir()
        .unwrap()
}

/// NMEA time fed once a second with offset 0 gets the refclock reached
/// and selected; a sender started before chronyd listens only counts
/// drops.
#[test]
fn sock_refclock_is_reached_and_selected() {
    let dir = sock_dir();
    let path = dir.path().join("nmea.sock");
    let feeder = Feeder::start(path.clone(), |t| SockSample::new(t, t));
    // Let the sender try while nobody listens.
    thread::sleep(Duration::from_millis(1500));

    let started = Instant::now();
    let chronyd = start(ChronydSpec {
        extra_conf: vec![format!(
            "refclock SOCK {} refid NMEA poll 0 filter 1",
            path.display()
        )],
        ..ChronydSpec::client("sock")
    });
    let mut client = Client::new(&chronyd);
    let nmea = ChronySourceId::Refclock("NMEA".to_owned());
    let selected = wait_for(Duration::from_secs(20), "NMEA reached and selected", || {
        client
            .source(&nmea)
            .filter(|s| s.reach != 0 && s.state == SelectionState::Selected)
    });
    assert_eq!(selected.mode, ChronySourceMode::Refclock);
    eprintln!(
        "SOCK refclock selected {:?} after chronyd started",
        started.elapsed()
    );
    let t = client.tracking();
    assert!(t.synchronised(), "{t:?}");
    assert_eq!(t.ref_id_text(), "NMEA", "{t:?}");

    let deliveries = feeder.deliveries();
    assert!(
        deliveries.iter().all(Result::is_ok),
        "sender failed: {deliveries:?}"
    );
    assert_eq!(
        deliveries.first(),
        Some(&Ok(Delivery::Dropped(DropReason::NoSocket))),
        "{deliveries:?}"
    );
    assert!(deliveries.contains(&Ok(Delivery::Sent)), "{deliveries:?}");
}

/// The sign of the offset, end to end: samples saying the system clock is
/// 100 ms behind (gnomon's +100 ms) make chrony measure the system clock
/// 100 ms behind the refclock, for an ordinary sample and for a pulse,
/// whose field chrony reads the other way round.
#[test]
fn sock_offset_sign_for_samples_and_pulses() {
    let dir = sock_dir();
    let nmea = dir.path().join("nmea.sock");
    let pps = dir.path().join("pps.sock");
    let chronyd = start(ChronydSpec {
        // noselect: chrony must not steer its (virtual) clock by them, so
        // what it measures stays the offset we send.
        extra_conf: vec![
            format!(
                "refclock SOCK {} refid NMEA poll 0 filter 1 noselect",
                nmea.display()
            ),
            format!(
                "refclock SOCK {} refid PPS poll 0 filter 1 noselect lock NMEA",
                pps.display()
            ),
        ],
        ..ChronydSpec::client("sign")
    });
    let behind = Offset::from_millis(100);
    let _nmea = Feeder::start(nmea, move |t| SockSample {
        system_time: t,
        offset: behind,
        pulse: false,
        leap: LeapIndicator::Normal,
    });
    let _pps = Feeder::start(pps, move |t| SockSample {
        system_time: t,
        offset: behind,
        pulse: true,
        leap: LeapIndicator::Normal,
    });
    let chronyc = Chronyc(&chronyd);
    let mut client = Client::new(&chronyd);
    for refid in ["NMEA", "PPS"] {
        let id = ChronySourceId::Refclock(refid.to_owned());
        let s = wait_for(
            Duration::from_secs(20),
            &format!("{refid} measured"),
            || client.source(&id).filter(|s| s.reach != 0),
        );
        // chrony's own convention: system − source.
        let raw = chronyc.offset(refid).unwrap();
        assert!(
            (raw - -0.1).abs() < 0.001,
            "{refid}: chrony measured {raw} s, expected -0.1 s"
        );
        // Through our client: gnomon's source − system.
        let mapped = s.offset.unwrap();
        assert!(
            (mapped - behind).abs() < Duration::from_millis(1),
            "{refid}: client reports {mapped}, expected {behind}: {s:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The sources file on a filesystem that fails.

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A full disk and a read-only filesystem: a clear error naming the
/// operation and path, the old file intact, no temporary file left.
#[test]
fn sources_file_on_full_and_read_only_filesystems() {
    let fs = Tmpfs::mount("size=16k,mode=0755").unwrap();
    let file = SourcesFile::new(fs.path());
    let old = try_render(&loopback_fallback(123, false)).unwrap();
    assert!(file.write(&old).unwrap());

    let huge = "# filler\n".repeat(64 * 1024 / 9);
    let err = file.write(&huge).unwrap_err();
    let temp = fs.path().join("gnomon.sources.tmp");
    assert_eq!(
        err.to_string(),
        format!(
            "writing {}: No space left on device (os error 28)",
            temp.display()
        )
    );
    assert_eq!(file.read_back().unwrap().as_deref(), Some(old.as_str()));
    assert_eq!(names_in(fs.path()), vec!["gnomon.sources"]);

    fs.remount_read_only().unwrap();
    let err = file
        .write(&try_render(&loopback_fallback(123, true)).unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "creating {}: Read-only file system (os error 30)",
            temp.display()
        )
    );
    assert_eq!(file.read_back().unwrap().as_deref(), Some(old.as_str()));
    assert_eq!(names_in(fs.path()), vec!["gnomon.sources"]);
}
