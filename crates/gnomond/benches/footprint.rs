//! `cargo bench -p gnomond --bench footprint`: the steady-state footprint
//! of a role-`gps` gnomond (1 Hz NMEA + PPS, chrony polled every 2 s, the
//! SOCK refclock fed) side by side with real gpsd reading the same NMEA
//! stream from its own simulated hat, sampled from /proc over the same
//! window; then `gnomonctl status` latency beside `chronyc tracking`, and
//! the bare control-socket round trip without a process spawn.
//!
//! Needs release binaries beside it (`cargo build --release --workspace
//! --bins` first), root (gpsd), chronyd, chronyc and gpsd. The window is
//! `GNOMON_FOOTPRINT_SECONDS` (default 600). Everything runs on loopback
//! and Unix sockets in temp dirs. Prints figures; asserts only that each
//! side was really working during the window.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Output, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use gnomon_core::ipc::{
    encode_frame, frame_len, Request, RequestFrame, Response, FRAME_HEADER, MAX_FRAME,
};
use gnomon_lab::{
    gnomond::{workspace_binary, Gnomond, GnomondSpec},
    gps_hat::{GpsHat, HatMode},
    gps_host::GpsHost,
};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

/// The loopback address the fallback chronyd answers on.
const FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const DEFAULT_SECONDS: u64 = 600;
const SPAWN_RUNS: usize = 200;
const SOCKET_RUNS: usize = 1000;
/// Settling after the gate opened, before the window starts.
const WARM_UP: Duration = Duration::from_secs(10);

type BenchResult<T> = Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("footprint bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- /proc ----

/// What /proc says about one process at one moment.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    /// utime + stime, all threads, in clock ticks.
    cpu_ticks: u64,
    /// Time on CPU of the threads alive now, from their schedstat, in ns:
    /// finer than ticks, blind to threads that exited in between.
    run_ns: u64,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn threads_run_ns(pid: u32) -> BenchResult<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0_u64;
    for task in fs::read_dir(&dir).map_err(|e| format!("reading {dir}: {e}"))? {
        let path = task
            .map_err(|e| format!("reading {dir}: {e}"))?
            .path()
            .join("schedstat");
        // A thread may exit between listing and reading.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("{}: unexpected {text:?}", path.display()))?;
    }
    Ok(total)
}

fn sample(pid: u32) -> BenchResult<ProcSample> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&stat_path).map_err(|e| format!("reading {stat_path}: {e}"))?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')', with field 3 (state) first, so utime (14) is at 11.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize, name: &str| -> BenchResult<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{stat_path}: no {name} field in {stat:?}"))
    };
    let cpu_ticks = field(11, "utime")? + field(12, "stime")?;
    let status_path = format!("/proc/{pid}/status");
    let status =
        fs::read_to_string(&status_path).map_err(|e| format!("reading {status_path}: {e}"))?;
    let value = |key: &str| -> BenchResult<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{status_path}: no {key}"))
    };
    Ok(ProcSample {
        cpu_ticks,
        run_ns: threads_run_ns(pid)?,
        rss_kib: value("VmRSS:")?,
        hwm_kib: value("VmHWM:")?,
        threads: value("Threads:")?,
    })
}

/// One measured process: where it started the window.
#[derive(Debug)]
struct Watched {
    label: &'static str,
    pid: u32,
    start: Option<ProcSample>,
}

impl Watched {
    fn new(label: &'static str, pid: Option<u32>) -> BenchResult<Watched> {
        let pid = pid.ok_or_else(|| format!("{label} is not running"))?;
        Ok(Watched {
            label,
            pid,
            start: None,
        })
    }
}

// ---- gpsd ----

fn find_program(name: &str) -> BenchResult<PathBuf> {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{name} not found in PATH, /usr/sbin, /usr/bin or /sbin \
                 (apt-get install chrony gpsd)"
            )
        })
}

fn free_loopback_tcp_port() -> BenchResult<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free TCP port on 127.0.0.1: {e}"))
}

/// A real gpsd on one pty, foreground, read-only, its client port on
/// loopback and its control socket in a temp dir. Stopped (SIGTERM, then
/// SIGKILL) and reaped on drop, so every exit path takes it down.
#[derive(Debug)]
struct Gpsd {
    label: &'static str,
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gpsd {
    fn start(label: &'static str, device: &Path) -> BenchResult<Gpsd> {
        let binary = find_program("gpsd")?;
        let dir = tempfile::Builder::new()
            .prefix("gnomon-gpsd-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir for {label}: {e}"))?;
        let port = free_loopback_tcp_port()?;
        let log = dir.path().join("gpsd.log");
        let out = fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("duplicating {}: {e}", log.display()))?;
        // -N foreground, -n read without waiting for a client, -b open the
        // device read-only and never reconfigure it, -s fixed 9600 baud (no
        // speed hunting on a pty), no -G: clients on loopback only.
        let child = Command::new(&binary)
            .args(["-N", "-n", "-b", "-s", "9600", "-S"])
            .arg(port.to_string())
            .arg("-F")
            .arg(dir.path().join("gpsd.sock"))
            .arg("-P")
            .arg(dir.path().join("gpsd.pid"))
            .arg(device)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
        let mut gpsd = Gpsd {
            label,
            child: Some(child),
            port,
            log,
            _dir: dir,
        };
        gpsd.wait_listening()?;
        Ok(gpsd)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_listening(&mut self) -> BenchResult<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "{} exited at start ({status}); its output:\n{}",
                        self.label,
                        self.log_text()
                    ));
                }
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not listening on 127.0.0.1:{} after 10 s; its output:\n{}",
                    self.label,
                    self.port,
                    self.log_text()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The newest fix gpsd holds: `?POLL` answered by a fresh client.
    fn poll(&self) -> BenchResult<Value> {
        let what = format!("polling {} on 127.0.0.1:{}", self.label, self.port);
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .map_err(|e| format!("{what}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| format!("{what}: {e}"))?;
        stream
            .write_all(b"?WATCH={\"enable\":true,\"json\":true};?POLL;\n")
            .map_err(|e| format!("{what}: {e}"))?;
        for line in BufReader::new(stream).lines() {
            let line = line.map_err(|e| format!("{what}: {e}"))?;
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["class"] == "POLL" {
                return Ok(v);
            }
        }
        Err(format!("{what}: no POLL reply"))
    }
}

impl Drop for Gpsd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Every listening TCP socket on `port` is on a loopback address (gpsd
/// without -G must not listen beyond 127.0.0.1 / ::1).
fn check_loopback_only(port: u16) -> BenchResult<Vec<IpAddr>> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).map_err(|e| format!("reading {table}: {e}"))?;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if *state != "0A" || u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            found.push(proc_net_addr(addr).ok_or_else(|| format!("{table}: bad address {addr}"))?);
        }
    }
    if found.is_empty() {
        return Err(format!("nothing listens on TCP port {port}"));
    }
    if let Some(wide) = found.iter().find(|a| !is_loopback(**a)) {
        return Err(format!("gpsd listens on {wide}:{port}, beyond loopback"));
    }
    Ok(found)
}

/// /proc/net/tcp{,6} print addresses as 32-bit words in host byte order.
fn proc_net_addr(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
                .map(u32::to_ne_bytes)
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// A gpsd client as a map or logger would be: `?WATCH` JSON, every line
/// read and counted, until `stop`.
#[derive(Debug, Default)]
struct WatchCounts {
    lines: AtomicU64,
    bytes: AtomicU64,
    tpv_3d: AtomicU64,
}

fn watch_client(
    port: u16,
    stop: Arc<AtomicBool>,
) -> BenchResult<(Arc<WatchCounts>, thread::JoinHandle<()>)> {
    let what = format!("gpsd WATCH client on 127.0.0.1:{port}");
    let mut stream =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| format!("{what}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("{what}: {e}"))?;
    stream
        .write_all(b"?WATCH={\"enable\":true,\"json\":true};\n")
        .map_err(|e| format!("{what}: {e}"))?;
    let counts = Arc::new(WatchCounts::default());
    let c = Arc::clone(&counts);
    let handle = thread::Builder::new()
        .name("gpsd-watch".into())
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(n) => {
                        c.lines.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
                        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                        if v["class"] == "TPV" && v["mode"] == 3 {
                            c.tpv_3d.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Read timeout: look at `stop` again. A line split by
                    // the timeout is kept in `line` and completed next read.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        })
        .map_err(|e| format!("{what}: spawning the reader: {e}"))?;
    Ok((counts, handle))
}

// ---- signals ----

/// SIGTERM (e.g. from `timeout`) or SIGINT sets `stop`, so `run` returns
/// through its drop guards instead of leaving gpsd, chronyd and gnomond
/// behind.
fn stop_on_signals(stop: Arc<AtomicBool>) -> BenchResult<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building a runtime for signals: {e}"))?;
    let (mut term, mut int) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            stop.store(true, Ordering::Relaxed);
        })
        .map_err(|e| format!("spawning the signal thread: {e}"))?;
    Ok(())
}

/// Sleeps `d` unless stopped.
fn pause(stop: &AtomicBool, d: Duration) -> BenchResult<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted by a signal".into());
        }
        thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    Ok(())
}

fn check_stop(stop: &AtomicBool) -> BenchResult<()> {
    if stop.load(Ordering::Relaxed) {
        Err("interrupted by a signal".into())
    } else {
        Ok(())
    }
}

// ---- gnomond ----

fn gnomonctl_json(d: &Gnomond, args: &[&str]) -> BenchResult<Value> {
    let out = d
        .gnomonctl(args)
        .map_err(|e| format!("running gnomonctl {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gnomonctl {args:?} failed ({}): {}{}\n--- gnomond output ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            d.output()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("gnomonctl {args:?}: not JSON: {e}"))
}

fn wait_until(
    what: &str,
    timeout: Duration,
    stop: &AtomicBool,
    mut probe: impl FnMut() -> BenchResult<bool>,
) -> BenchResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if probe()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        pause(stop, Duration::from_millis(250))?;
    }
}

// ---- figures ----

struct Latency {
    n: usize,
    mean: Duration,
    median: Duration,
    p99: Duration,
}

fn latency(mut samples: Vec<Duration>) -> BenchResult<Latency> {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return Err("no latency samples".into());
    }
    let count = u32::try_from(n).map_err(|e| e.to_string())?;
    let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)];
    Ok(Latency {
        n,
        mean: samples.iter().sum::<Duration>() / count,
        median: pct(0.5),
        p99: pct(0.99),
    })
}

fn latency_row(what: &str, l: &Latency) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {what} | {} | {:.1} µs | {:.1} µs | {:.1} µs |",
        l.n,
        us(l.mean),
        us(l.median),
        us(l.p99)
    );
}

fn timed_runs(
    what: &str,
    runs: usize,
    stop: &AtomicBool,
    mut one: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Latency> {
    for _ in 0..runs.min(20) {
        one().map_err(|e| format!("{what} (warm-up): {e}"))?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        check_stop(stop)?;
        let t = Instant::now();
        one().map_err(|e| format!("{what}: {e}"))?;
        samples.push(t.elapsed());
    }
    latency(samples)
}

fn ran_ok(what: &str, out: std::io::Result<Output>) -> BenchResult<()> {
    let out = out.map_err(|e| format!("spawning {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// connect + one Status request + the whole reply, std only.
fn control_round_trip(socket: &Path, frame: &[u8]) -> BenchResult<Vec<u8>> {
    let what = |e: std::io::Error| format!("control socket {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(what)?;
    stream.write_all(frame).map_err(what)?;
    let mut header = [0_u8; FRAME_HEADER];
    stream.read_exact(&mut header).map_err(what)?;
    let len = frame_len(header, MAX_FRAME).map_err(|e| format!("reply header: {e}"))?;
    let mut body = vec![0_u8; len];
    stream.read_exact(&mut body).map_err(what)?;
    Ok(body)
}

fn first_line_of(path: &str, prefix: &str) -> String {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(prefix)
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            })
        })
        .unwrap_or_else(|| "?".into())
}

/// The name /etc/passwd gives `uid` (gpsd drops root to its own user).
fn user_name(uid: &str) -> String {
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| "?".into())
}

fn version_of(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_else(|e| format!("? ({e})"))
}

fn print_machine(chronyd: &Path, gpsd: &Path) {
    let cores = thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "machine: {cores} cores, {}",
        first_line_of("/proc/cpuinfo", "model name")
    );
    println!(
        "memory: {}; kernel {}",
        first_line_of("/proc/meminfo", "MemTotal"),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!("{}", version_of(chronyd, "--version"));
    println!("gpsd {}", version_of(gpsd, "-V"));
    println!(
        "load average at start: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

// ---- the run ----

#[allow(clippy::too_many_lines)]
fn run() -> BenchResult<()> {
    let seconds = match std::env::var("GNOMON_FOOTPRINT_SECONDS") {
        Ok(v) => v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            format!("GNOMON_FOOTPRINT_SECONDS={v:?} is not a positive number of seconds")
        })?,
        Err(_) => DEFAULT_SECONDS,
    };
    let window = Duration::from_secs(seconds);
    if !rustix::process::geteuid().is_root() {
        return Err("run as root: gpsd is started as root, as its service is".into());
    }
    let built = "the bench runs release binaries: cargo build --release --workspace --bins";
    let gnomond_bin = workspace_binary("gnomond").map_err(|e| format!("{e}; {built}"))?;
    let gnomonctl_bin = workspace_binary("gnomonctl").map_err(|e| format!("{e}; {built}"))?;
    let gpsd_bin = find_program("gpsd")?;
    let chronyd_bin = find_program("chronyd")?;
    let chronyc_bin = find_program("chronyc")?;
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(Arc::clone(&stop))?;

    println!("# gnomond footprint and gnomonctl latency");
    print_machine(&chronyd_bin, &gpsd_bin);
    println!("gnomond: {}", gnomond_bin.display());
    println!("gnomonctl: {}", gnomonctl_bin.display());
    println!("window: {seconds} s; CLK_TCK {ticks_per_second}");

    // gpsd: two instances, each on its own hat sending the same stream.
    let gpsd_hat =
        GpsHat::start(HatMode::Healthy).map_err(|e| format!("starting a GPS hat: {e}"))?;
    let watched_hat =
        GpsHat::start(HatMode::Healthy).map_err(|e| format!("starting a GPS hat: {e}"))?;
    let gpsd = Gpsd::start("gpsd (no client)", gpsd_hat.device_path())?;
    let watched = Gpsd::start("gpsd (one WATCH client)", watched_hat.device_path())?;
    for g in [&gpsd, &watched] {
        let addrs = check_loopback_only(g.port)?;
        println!(
            "{} listens on {} port {} only",
            g.label,
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" and "),
            g.port
        );
    }
    let watch_stop = Arc::new(AtomicBool::new(false));
    let (watch, watch_reader) = watch_client(watched.port, Arc::clone(&watch_stop))?;

    // gnomond, role gps, as in the e2e test but with default thresholds.
    let host = GpsHost::start("footprint", HatMode::Healthy, FALLBACK)
        .map_err(|e| format!("starting the GPS host (hat, chronyd, fallback): {e}"))?;
    let hat = &host.hat;
    let chrony = &host.chrony;
    let config = host.config();
    let d =
        Gnomond::start(GnomondSpec::new(config)).map_err(|e| format!("starting gnomond: {e}"))?;
    let started = Instant::now();
    if d.notify()
        .wait_for("READY", Duration::from_secs(30), |v| v == "1")
        .is_none()
    {
        return Err(format!(
            "gnomond sent no READY=1\n--- output ---\n{}",
            d.output()
        ));
    }
    wait_until(
        "the GPS gate to open",
        Duration::from_secs(60),
        &stop,
        || {
            let s = gnomonctl_json(&d, &["status", "--json"])?;
            Ok(s["status"]["gps"]["gate_open"] == true)
        },
    )?;
    pause(&stop, WARM_UP)?;
    println!(
        "gnomond READY and gate open; window starts {:.0} s after its start",
        started.elapsed().as_secs_f64()
    );

    for g in [&gpsd, &watched] {
        let pid = g
            .pid()
            .ok_or_else(|| format!("{} is not running", g.label))?;
        let uid = first_line_of(&format!("/proc/{pid}/status"), "Uid:")
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_owned();
        println!(
            "{} pid {pid} runs as {} (uid {uid})",
            g.label,
            user_name(&uid)
        );
    }

    // The window: both sides sampled at its start and end.
    let mut watched_procs = vec![
        Watched::new("gnomond", d.pid())?,
        Watched::new("gpsd, no client", gpsd.pid())?,
        Watched::new("gpsd, one ?WATCH client", watched.pid())?,
        Watched::new("chronyd (gnomond's; context)", chrony.pid())?,
    ];
    let gps_before = gnomonctl_json(&d, &["gps", "--json"])?;
    let log_before = d.output().len();
    let tpv_before = watch.tpv_3d.load(Ordering::Relaxed);
    let watch_bytes_before = watch.bytes.load(Ordering::Relaxed);
    let hat_seconds_before = [hat, &gpsd_hat, &watched_hat].map(GpsHat::seconds_sent);
    let t0 = Instant::now();
    for w in &mut watched_procs {
        w.start = Some(sample(w.pid)?);
    }
    let mut left = window;
    while !left.is_zero() {
        let step = left.min(Duration::from_secs(60));
        pause(&stop, step)?;
        left -= step;
        let mut line = Vec::new();
        for w in &watched_procs {
            let now = sample(w.pid)?;
            let used = now
                .cpu_ticks
                .saturating_sub(w.start.map_or(0, |s| s.cpu_ticks));
            line.push(format!(
                "{} {:.2} s {:.2} MiB",
                w.label,
                used as f64 / ticks_per_second as f64,
                now.rss_kib as f64 / 1024.0
            ));
        }
        println!(
            "  {:>4.0} s: CPU so far, RSS: {}",
            t0.elapsed().as_secs_f64(),
            line.join(", ")
        );
    }
    let mut ends = Vec::new();
    for w in &watched_procs {
        ends.push(sample(w.pid)?);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let gps_after = gnomonctl_json(&d, &["gps", "--json"])?;
    let log_after = d.output().len();
    let tpv = watch.tpv_3d.load(Ordering::Relaxed) - tpv_before;
    let watch_bytes = watch.bytes.load(Ordering::Relaxed) - watch_bytes_before;
    let hat_seconds = [hat, &gpsd_hat, &watched_hat]
        .map(GpsHat::seconds_sent)
        .iter()
        .zip(hat_seconds_before)
        .map(|(a, b)| a - b)
        .collect::<Vec<_>>();

    // Each side really worked through the window.
    let status = gnomonctl_json(&d, &["status", "--json"])?;
    if status["status"]["gps"]["gate_open"] != true {
        return Err(format!(
            "gnomond's gate closed during the window: {}",
            status["status"]
        ));
    }
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let epochs = count(&gps_after, "epochs").saturating_sub(count(&gps_before, "epochs"));
    let sent = count(&gps_after, "samples_sent").saturating_sub(count(&gps_before, "samples_sent"));
    if (epochs as f64) < elapsed * 0.9 {
        return Err(format!(
            "gnomond decoded only {epochs} epochs in {elapsed:.0} s"
        ));
    }
    let poll = gpsd.poll()?;
    let tpv_poll = &poll["tpv"][0];
    if tpv_poll["mode"] != 3 {
        return Err(format!("{} holds no 3D fix: {poll}", gpsd.label));
    }
    if (tpv as f64) < elapsed * 0.9 {
        return Err(format!(
            "{}: only {tpv} 3D TPV reports in {elapsed:.0} s",
            watched.label
        ));
    }
    let dropped: Vec<u64> = [hat, &gpsd_hat, &watched_hat]
        .map(GpsHat::bytes_dropped)
        .to_vec();
    println!();
    println!(
        "window: {elapsed:.1} s; hats sent {hat_seconds:?} seconds of NMEA (gnomond, gpsd, gpsd+client), \
         bytes dropped unread {dropped:?}"
    );
    println!(
        "gnomond: {epochs} epochs decoded, {sent} samples into the SOCK refclock, state {}, \
         {} bytes logged in the window",
        status["status"]["state"],
        log_after.saturating_sub(log_before)
    );
    println!(
        "gpsd (no client): ?POLL after the window: mode {} time {}",
        tpv_poll["mode"], tpv_poll["time"]
    );
    println!(
        "gpsd (one ?WATCH client): {tpv} 3D TPV reports, {watch_bytes} bytes of JSON to the client"
    );
    println!();
    println!(
        "| process | CPU in window | CPU, % of one core | CPU (schedstat) | RSS at start → end | \
         peak RSS (VmHWM) | threads |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (w, end) in watched_procs.iter().zip(&ends) {
        let start = w.start.ok_or("missing start sample")?;
        let cpu = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks_per_second as f64;
        let run = end.run_ns.saturating_sub(start.run_ns) as f64 / 1e9;
        println!(
            "| {} | {cpu:.2} s | {:.3} % | {run:.3} s | {:.2} → {:.2} MiB | {:.2} MiB | {} |",
            w.label,
            cpu * 100.0 / elapsed,
            start.rss_kib as f64 / 1024.0,
            end.rss_kib as f64 / 1024.0,
            end.hwm_kib as f64 / 1024.0,
            end.threads
        );
    }
    watch_stop.store(true, Ordering::Relaxed);
    let _ = watch_reader.join();
    drop(watched);
    drop(gpsd);

    // Latency: a process per query on both sides, then the bare socket.
    let socket = d.control_socket().to_owned();
    let spawn_gnomonctl = || {
        ran_ok(
            "gnomonctl status",
            Command::new(&gnomonctl_bin)
                .arg("--socket")
                .arg(&socket)
                .arg("status")
                .env_remove("GNOMON_SOCKET")
                .stdin(Stdio::null())
                .output(),
        )
    };
    let gnomonctl_lat = timed_runs("gnomonctl status", SPAWN_RUNS, &stop, spawn_gnomonctl)?;
    let chronyc_lat = timed_runs("chronyc tracking", SPAWN_RUNS, &stop, || {
        ran_ok(
            "chronyc tracking",
            Command::new(&chronyc_bin)
                .arg("-h")
                .arg(chrony.socket())
                .arg("tracking")
                .stdin(Stdio::null())
                .output(),
        )
    })?;
    let frame = encode_frame(&RequestFrame::new(Request::Status))
        .map_err(|e| format!("encoding a Status request: {e}"))?;
    let mut reply = Vec::new();
    let socket_lat = timed_runs("control round trip", SOCKET_RUNS, &stop, || {
        reply = control_round_trip(&socket, &frame)?;
        Ok(())
    })?;
    match serde_json::from_slice::<Response>(&reply) {
        Ok(Response::Status(_)) => {}
        Ok(other) => return Err(format!("Status answered with {other:?}")),
        Err(e) => return Err(format!("Status reply is not a Response: {e}")),
    }
    println!();
    println!("| what | n | mean | median | p99 |");
    println!("|---|---|---|---|---|");
    latency_row(
        "`gnomonctl --socket <sock> status` (a process per query)",
        &gnomonctl_lat,
    );
    latency_row(
        "`chronyc -h <chronyd socket> tracking` (a process per query)",
        &chronyc_lat,
    );
    latency_row(
        &format!(
            "control socket round trip in process (connect + Status + {} B reply)",
            reply.len() + FRAME_HEADER
        ),
        &socket_lat,
    );
    println!(
        "load average at end: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    Ok(())
}
