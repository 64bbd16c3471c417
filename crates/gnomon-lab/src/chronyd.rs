//! Real chronyd processes for tests and the demo: one private config and
//! directory tree per simulated host, `-x` so the host clock is never
//! touched, the command socket inside the tree, killed when dropped.
//!
//! Every chronyd runs as `chronyd -n -x -u USER -f CONF -L 0 -l LOG` with
//! every path (pidfile, command socket, dump, NTS dump, log and sources
//! directories, drift file) under its own temporary directory, `cmdport 0`,
//! and either `port 0` or a loopback NTP port.
//!
//! Layout (the directory itself is 0755 so chrony's user can reach in):
//!
//! | path | owner | what |
//! |---|---|---|
//! | `chrony.conf` | root | the private config |
//! | `chronyd.log`, `chronyd.stderr` | root | `-l` log, and anything printed before it opens |
//! | `run/` | chronyd's user, created by chronyd | command socket and pidfile |
//! | `dump/`, `nts/`, `log/` | chronyd's user, created by chronyd | dumps, drift file, statistics logs |
//! | `sources/` | root, 0755 | `sourcedir`, when asked for |
//! | `clients/` | root, 1777 | for client sockets (chronyd must be able to answer there) |
//!
//! chrony's rules that shape this (chrony 4.3, `conf.c` and `cmdmon.c`):
//! chronyd creates the socket directory with mode 0770 (less its umask) for
//! its user and its user's primary group, and disables the command socket
//! when an existing directory has other permissions or another owner; the
//! socket itself is created after dropping privileges, with no chmod, so
//! its mode is 0777 less chronyd's umask. Group members can only use the
//! socket when chronyd runs with a umask that leaves group write
//! ([`ChronydSpec::umask`]).

use std::{
    fs::{self, OpenOptions, Permissions},
    io,
    net::{IpAddr, Ipv4Addr, UdpSocket},
    os::unix::{fs::PermissionsExt, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;

/// How long `start` waits for the command socket to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the log quoted in a start error.
const LOG_TAIL_LINES: usize = 30;
/// `sun_path` is 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// What one chronyd should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChronydSpec {
    /// A short name for messages and the temporary directory.
    pub name: String,
    /// `-u USER`; `root` keeps chronyd privileged (no privilege drop).
    pub user: String,
    /// NTP server port; 0 = not a server (`port 0`).
    pub ntp_port: u16,
    /// Address the NTP server binds to; 127.0.0.1 when serving and unset.
    pub bind_address: Option<IpAddr>,
    /// Further configuration lines, appended as they are.
    pub extra_conf: Vec<String>,
    /// Adds `sourcedir <dir>/sources` (see [`Chronyd::sources_dir`]).
    pub with_sourcedir: bool,
    /// The umask chronyd runs with. chronyd does not chmod its command
    /// socket, so this decides who can write it: 0o022 (Debian's service
    /// default) leaves it to chronyd's user and root, 0o007 lets chrony's
    /// group in too.
    pub umask: u32,
    /// A command chronyd is run through, e.g. `ip netns exec <ns>` to put
    /// it on a lab host ([`crate::netns::Topology::wrapper`]). It must
    /// exec chronyd, so the process held is chronyd itself.
    pub wrapper: Vec<String>,
}

impl ChronydSpec {
    /// A chronyd that serves no NTP: add sources with `extra_conf` or the
    /// sources directory.
    pub fn client(name: &str) -> Self {
        ChronydSpec {
            name: name.to_owned(),
            user: "root".to_owned(),
            ntp_port: 0,
            bind_address: None,
            extra_conf: Vec::new(),
            with_sourcedir: false,
            umask: 0o022,
            wrapper: Vec::new(),
        }
    }

    /// A stratum 1 server on its local clock, serving 127.0.0.0/8 on
    /// `127.0.0.1:port`.
    pub fn ntp_server(name: &str, port: u16) -> Self {
        ChronydSpec {
            ntp_port: port,
            bind_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            extra_conf: vec!["local stratum 1".to_owned(), "allow 127.0.0.0/8".to_owned()],
            ..ChronydSpec::client(name)
        }
    }
}

/// A running (or stopped) chronyd and its private directory. Dropping it
/// kills chronyd, waits for it and deletes the directory.
#[derive(Debug)]
pub struct Chronyd {
    spec: ChronydSpec,
    binary: PathBuf,
    conf: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
    sources: PathBuf,
    clients: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
    // Last, so it is removed after the child is gone.
    dir: TempDir,
}

impl Chronyd {
    /// Writes the config, starts chronyd and waits until its command socket
    /// exists and answers a `null` request (at most 10 s).
    pub fn start(spec: ChronydSpec) -> io::Result<Chronyd> {
        let binary = find_chronyd()?;
        let short: String = spec
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(16)
            .collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("gnomon-chronyd-{short}-"))
            .tempdir()?;
        let root = dir.path().to_owned();
        fs::set_permissions(&root, Permissions::from_mode(0o755))?;

        let socket = root.join("run/chronyd.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "chronyd '{}': socket path {} is longer than a Unix socket allows: \
                     set TMPDIR to a shorter directory",
                    spec.name,
                    socket.display()
                ),
            ));
        }
        let sources = root.join("sources");
        if spec.with_sourcedir {
            fs::create_dir(&sources)?;
            fs::set_permissions(&sources, Permissions::from_mode(0o755))?;
        }
        let clients = root.join("clients");
        fs::create_dir(&clients)?;
        fs::set_permissions(&clients, Permissions::from_mode(0o1777))?;

        let conf = root.join("chrony.conf");
        fs::write(&conf, render_conf(&spec, &root))?;
        fs::set_permissions(&conf, Permissions::from_mode(0o644))?;

        let mut chronyd = Chronyd {
            binary,
            conf,
            pidfile: root.join("run/chronyd.pid"),
            socket,
            sources,
            clients,
            log: root.join("chronyd.log"),
            stderr: root.join("chronyd.stderr"),
            child: None,
            spec,
            dir,
        };
        chronyd.spawn_and_wait()?;
        Ok(chronyd)
    }

    /// The private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// chronyd's command socket (`bindcmdaddress`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The `sourcedir` (exists only with [`ChronydSpec::with_sourcedir`]).
    pub fn sources_dir(&self) -> &Path {
        &self.sources
    }

    /// A world-writable directory for client sockets that chronyd's user
    /// can reach to answer.
    pub fn client_dir(&self) -> &Path {
        &self.clients
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn spec(&self) -> &ChronydSpec {
        &self.spec
    }

    /// chronyd's log so far (`-l`), then anything it printed on stderr.
    pub fn log(&self) -> String {
        let mut text = read_lossy(&self.log);
        let stderr = read_lossy(&self.stderr);
        if !stderr.trim().is_empty() {
            text.push_str("--- stderr ---\n");
            text.push_str(&stderr);
        }
        text
    }

    /// chronyd's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits for chronyd to exit (SIGKILL after 5 s).
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        match kill_process(Pid::from_child(&child), Signal::TERM) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        child.wait()?;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "chronyd '{}' ignored SIGTERM for {STOP_TIMEOUT:?} and was killed",
                self.spec.name
            ),
        ))
    }

    /// Starts chronyd again with the same config and directory (after
    /// [`Chronyd::stop`] or [`Chronyd::kill`]; stops it first if needed).
    pub fn start_again(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// SIGKILL and wait: chronyd leaves its socket and pidfile behind, as
    /// after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        // A pidfile left by a killed chronyd names a pid that may be reused.
        match fs::remove_file(&self.pidfile) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)?;
        // chronyd has no umask option: set it in a shell that then becomes
        // chronyd (exec), so the child we hold is chronyd itself.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("umask \"$0\" && exec \"$@\"")
            .arg(format!("{:04o}", self.spec.umask & 0o777))
            .args(&self.spec.wrapper)
            .arg(&self.binary)
            .args(["-n", "-x", "-u", &self.spec.user, "-f"])
            .arg(&self.conf)
            .args(["-L", "0", "-l"])
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .map_err(|e| self.failure(&format!("could not be spawned: {e}")))?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_probe = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(self.failure(&format!("exited at start ({status})")));
                }
            }
            if self.socket.exists() {
                match probe(&self.socket, &self.clients) {
                    Ok(()) => return Ok(()),
                    Err(e) => last_probe = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(&format!(
                    "did not answer on {} within {START_TIMEOUT:?} (last try: {last_probe})",
                    self.socket.display()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn failure(&self, what: &str) -> io::Error {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(LOG_TAIL_LINES)..)
            .unwrap_or_default()
            .join("\n");
        // chronyd reports config errors by line number only.
        let conf: String = read_lossy(&self.conf)
            .lines()
            .enumerate()
            .map(|(i, line)| format!("{:3}: {line}\n", i + 1))
            .collect();
        io::Error::other(format!(
            "chronyd '{}' ({}, -u {}, conf {}, log {}) {what}\n--- log tail ---\n{tail}\n\
             --- {} ---\n{conf}",
            self.spec.name,
            self.binary.display(),
            self.spec.user,
            self.conf.display(),
            self.log.display(),
            self.conf.display(),
        ))
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_loopback_udp_port() -> io::Result<u16> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(socket.local_addr()?.port())
}

/// `$GNOMON_CHRONYD`, else `chronyd` in PATH, /usr/sbin or /sbin.
fn find_chronyd() -> io::Result<PathBuf> {
    crate::programs::find(
        "chronyd",
        Some("GNOMON_CHRONYD"),
        &["/usr/sbin", "/sbin"],
        "install chrony 4.x (apt-get install chrony)",
    )
}

fn render_conf(spec: &ChronydSpec, root: &Path) -> String {
    let at = |p: &str| root.join(p).display().to_string();
    let mut lines = vec![
        format!("# gnomon-lab chronyd '{}': private paths only", spec.name),
        format!("pidfile {}", at("run/chronyd.pid")),
        format!("bindcmdaddress {}", at("run/chronyd.sock")),
        "cmdport 0".to_owned(),
        format!("port {}", spec.ntp_port),
    ];
    if spec.ntp_port != 0 {
        let bind = spec.bind_address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        lines.push(format!("bindaddress {bind}"));
    }
    lines.extend([
        format!("driftfile {}", at("dump/drift")),
        format!("dumpdir {}", at("dump")),
        format!("ntsdumpdir {}", at("nts")),
        format!("logdir {}", at("log")),
    ]);
    if spec.with_sourcedir {
        lines.push(format!("sourcedir {}", at("sources")));
    }
    lines.extend(spec.extra_conf.iter().cloned());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One `null` request (command 0) on the command socket: the smallest
/// proof that chronyd reads and answers it.
fn probe(socket: &Path, client_dir: &Path) -> io::Result<()> {
    let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = client_dir.join(format!("probe.{}.{n}.sock", std::process::id()));
    let _ = fs::remove_file(&path);
    let client = UnixDatagram::bind(&path)?;
    let result = (|| {
        fs::set_permissions(&path, Permissions::from_mode(0o666))?;
        client.connect(socket)?;
        client.set_read_timeout(Some(Duration::from_millis(250)))?;
        let sequence = u32::try_from(n & 0xFFFF_FFFF).unwrap_or_default() ^ 0x676E_6D6E;
        // version 6, request, command 0 (null), attempt 0, sequence, padding
        // up to the 28-byte reply header chrony needs room for.
        let mut request = vec![6u8, 1, 0, 0, 0, 0, 0, 0];
        request.extend_from_slice(&sequence.to_be_bytes());
        request.resize(28, 0);
        client.send(&request)?;
        let mut reply = [0u8; 64];
        loop {
            let len = client.recv(&mut reply)?;
            let answer = reply.get(..len).unwrap_or_default();
            if answer.get(16..20) == Some(&sequence.to_be_bytes()[..]) {
                return if answer.get(..2) == Some(&[6, 2][..]) {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not a chrony reply",
                    ))
                };
            }
        }
    })();
    let _ = fs::remove_file(&path);
    result
}

/// A loopback NTP server as gnomon plans a source: polled every 1/16 s
/// (`minpoll -4 maxpoll -4 iburst`) so tests see answers within a second.
pub fn fast_loopback_source(port: u16) -> gnomon_core::source::NtpSource {
    gnomon_core::source::NtpSource {
        address: gnomon_core::source::SourceAddress::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        kind: gnomon_core::source::AssociationKind::Server,
        port: Some(port),
        minpoll: Some(-4),
        maxpoll: Some(-4),
        key: None,
        iburst: true,
    }
}

/// A plan with one public-tier fallback: [`fast_loopback_source`], or an
/// empty plan for `None`.
pub fn loopback_fallback_plan(
    port: u16,
    selectable: Option<bool>,
) -> gnomon_core::source::SourcePlan {
    gnomon_core::source::SourcePlan {
        sources: selectable
            .map(|selectable| gnomon_core::source::PlannedSource {
                source: fast_loopback_source(port),
                role: gnomon_core::source::SourceRole::Fallback(
                    gnomon_core::source::FallbackTier::PublicIpLiteral,
                ),
                selectable,
            })
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_in_the_config_is_private() {
        let root = Path::new("/tmp/gnomon-chronyd-x");
        let mut spec = ChronydSpec::ntp_server("x", 12345);
        spec.with_sourcedir = true;
        spec.extra_conf.push("log measurements".to_owned());
        let conf = render_conf(&spec, root);
        for directive in [
            "pidfile",
            "bindcmdaddress",
            "driftfile",
            "dumpdir",
            "ntsdumpdir",
            "logdir",
            "sourcedir",
        ] {
            let line = conf
                .lines()
                .find(|l| l.starts_with(&format!("{directive} ")))
                .unwrap_or_else(|| panic!("{directive} missing:\n{conf}"));
            assert!(line.contains("/tmp/gnomon-chronyd-x/"), "{line}");
        }
        for line in [
            "cmdport 0",
            "port 12345",
            "bindaddress 127.0.0.1",
            "local stratum 1",
            "allow 127.0.0.0/8",
            "log measurements",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
        }
    }

    #[test]
    fn a_client_serves_nothing() {
        let conf = render_conf(&ChronydSpec::client("c"), Path::new("/tmp/c"));
        assert!(conf.lines().any(|l| l == "port 0"), "{conf}");
        assert!(!conf.contains("bindaddress"), "{conf}");
        assert!(!conf.contains("allow"), "{conf}");
        assert!(!conf.contains("sourcedir"), "{conf}");
    }

    #[test]
    fn a_free_port_is_not_zero() {
        assert_ne!(free_loopback_udp_port().unwrap(), 0);
    }
}
