//! A real gnomond process for tests and the lab: a private config, state
//! and runtime directory, a systemd notify socket the caller owns (READY,
//! STATUS, WATCHDOG read back), and gnomonctl run against its control
//! socket. Killed and waited for on drop.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    thread,
    time::{Duration, Instant},
};

use gnomon_core::config::Config;
use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;

/// A binary of this workspace, next to the running test or lab binary
/// (`target/<profile>/` or its `deps/`). `cargo test --workspace` builds
/// every binary before running any test.
pub fn workspace_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_owned());
        if let Some(up) = dir.parent() {
            dirs.push(up.to_owned());
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{name} not found beside {} (build it first: cargo build --workspace)",
                    exe.display()
                ),
            )
        })
}

/// One notification as systemd would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Time since the socket was bound.
    pub at: Duration,
    /// The datagram, e.g. `READY=1\nSTATUS=...\n`.
    pub text: String,
}

/// The service manager's end of `NOTIFY_SOCKET`, read on a thread.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
}

impl NotifySocket {
    pub fn bind(path: &Path) -> io::Result<NotifySocket> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&received), Arc::clone(&stop));
        let start = Instant::now();
        let reader = thread::Builder::new()
            .name("notify-socket".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !s.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let text =
                            String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
                        r.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Notification {
                                at: start.elapsed(),
                                text,
                            });
                    }
                }
            })?;
        Ok(NotifySocket {
            path: path.to_owned(),
            received,
            stop,
            reader: Some(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn all(&self) -> Vec<Notification> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every value of `KEY=` sent so far, in order.
    pub fn values(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}=");
        self.all()
            .iter()
            .flat_map(|n| {
                n.text
                    .lines()
                    .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits until some `KEY=value` satisfies `pred`; the value.
    pub fn wait_for(
        &self,
        key: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.values(key).into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How to run one gnomond.
#[derive(Debug, Clone)]
pub struct GnomondSpec {
    pub config: Config,
    /// `WatchdogSec=` as systemd would pass it (`WATCHDOG_USEC`).
    pub watchdog: Option<Duration>,
    /// Runs gnomond through this command first (e.g. `nsenter` into a
    /// private journal's namespace).
    pub wrapper: Vec<String>,
    /// `--log` value.
    pub log: String,
    /// A state directory of the caller's instead of a fresh one in the
    /// temporary directory: it outlives this gnomond, so the next one can
    /// start from what this one left (or from damage the caller put there).
    pub state_dir: Option<PathBuf>,
    /// Written as the config file instead of `config` serialised: for a
    /// file gnomond must refuse. Written as it is, so its paths are not
    /// made private; `config` still names the sockets the harness uses.
    pub config_text: Option<String>,
}

impl GnomondSpec {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            watchdog: Some(Duration::from_secs(2)),
            wrapper: Vec::new(),
            log: "stderr".to_owned(),
            state_dir: None,
            config_text: None,
        }
    }
}

/// Points the runtime directory, control socket and state directory of
/// `config` into `dir`. The sources directory is the caller's: it must be
/// the one its chronyd's `sourcedir` names.
pub fn private_paths(config: &mut Config, dir: &Path) {
    let at = |p: &str| dir.join(p).display().to_string();
    config.paths.runtime_dir = at("run");
    config.paths.control_socket = at("run/gnomon.sock");
    config.paths.state_dir = at("state");
}

/// A running gnomond.
#[derive(Debug)]
pub struct Gnomond {
    child: Option<Child>,
    config_path: PathBuf,
    control_socket: PathBuf,
    state_dir: PathBuf,
    stderr_path: PathBuf,
    notify: NotifySocket,
    dir: TempDir,
}

impl Gnomond {
    /// Writes the config with [`private_paths`] in a new temporary
    /// directory and starts `gnomond --config`.
    pub fn start(mut spec: GnomondSpec) -> io::Result<Gnomond> {
        let dir = tempfile::Builder::new().prefix("gnomond-").tempdir()?;
        // Other users (a test's unprivileged gnomonctl) must reach the
        // control socket inside.
        std::fs::set_permissions(
            dir.path(),
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )?;
        private_paths(&mut spec.config, dir.path());
        if let Some(state_dir) = &spec.state_dir {
            spec.config.paths.state_dir = state_dir.display().to_string();
        }
        let binary = workspace_binary("gnomond")?;
        let config_path = dir.path().join("gnomon.toml");
        let text = match spec.config_text.take() {
            Some(text) => text,
            None => toml::to_string(&spec.config).map_err(io::Error::other)?,
        };
        std::fs::write(&config_path, text)?;
        let notify = NotifySocket::bind(&dir.path().join("notify.sock"))?;
        let stderr_path = dir.path().join("gnomond.stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = match spec.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--log")
            .arg(&spec.log)
            .env("NOTIFY_SOCKET", notify.path())
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr);
        match spec.watchdog {
            Some(w) => cmd.env("WATCHDOG_USEC", w.as_micros().to_string()),
            None => cmd.env_remove("WATCHDOG_USEC"),
        };
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawning {}: {e}", binary.display())))?;
        Ok(Gnomond {
            child: Some(child),
            config_path,
            control_socket: PathBuf::from(&spec.config.paths.control_socket),
            state_dir: PathBuf::from(&spec.config.paths.state_dir),
            stderr_path,
            notify,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Replaces the config file (for a SIGHUP after it) with `config`,
    /// its runtime, control socket and state paths made private as at
    /// start. Written to a temporary file and renamed, so gnomond never
    /// reads half of it.
    pub fn write_config(&self, config: &Config) -> io::Result<()> {
        let mut config = config.clone();
        private_paths(&mut config, self.dir.path());
        config.paths.state_dir = self.state_dir.display().to_string();
        let text = toml::to_string(&config).map_err(io::Error::other)?;
        self.write_config_text(&text)
    }

    /// Replaces the config file with `text` as it is (e.g. a broken one).
    pub fn write_config_text(&self, text: &str) -> io::Result<()> {
        let temp = self.dir.path().join("gnomon.toml.new");
        std::fs::write(&temp, text)?;
        std::fs::rename(&temp, &self.config_path)
    }

    pub fn notify(&self) -> &NotifySocket {
        &self.notify
    }

    /// What gnomond wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (SIGHUP, SIGTERM, ...).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let pid = self
            .pid()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other("gnomond is not running"))?;
        kill_process(pid, signal).map_err(io::Error::from)
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| io::Error::other("gnomond was already reaped"))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("gnomond did not exit within {timeout:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs `gnomonctl --socket <control socket> args...`.
    pub fn gnomonctl(&self, args: &[&str]) -> io::Result<Output> {
        gnomonctl(&self.control_socket, args, &[])
    }
}

impl Drop for Gnomond {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs gnomonctl against `socket`, optionally through a wrapper (e.g.
/// `setpriv --reuid ...` to act as another user).
pub fn gnomonctl(socket: &Path, args: &[&str], wrapper: &[&str]) -> io::Result<Output> {
    let binary = workspace_binary("gnomonctl")?;
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&binary);
            c
        }
        None => Command::new(&binary),
    };
    cmd.arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("GNOMON_SOCKET")
        .stdin(Stdio::null())
        .output()
}
