//! Booted Debian systems: one systemd-nspawn container per [`Container`],
//! running the release's own systemd as PID 1, stopped and removed without a
//! trace when shut down or dropped (also on a test's panic), or by
//! [`cleanup_stale`] after a run that was killed.
//!
//! Each container gets, under `<target>/system-lab/containers/<name>/`
//! (`<name>` is `gls-<pid>-<n>-<machine>`: the creating pid tells
//! [`cleanup_stale`] whether its run is gone):
//!
//! | path | what |
//! |---|---|
//! | `merged/` | an overlayfs: the cached root file system ([`super::rootfs`]) read-only below, `upper/` and `work/` above; systemd-nspawn boots it |
//! | `console.log` | the container's console (`--console=read-only`) |
//!
//! and a cgroup `gnomon-lab/<name>` in the cgroup2 hierarchy (and in the
//! `name=systemd` one of a hybrid host) that systemd-nspawn is started in:
//! it holds nspawn and every process of the container, so they can be
//! counted and killed as one, and parallel containers never share one.
//!
//! systemd-nspawn runs as `-b --register=no --keep-unit` (this machine's
//! PID 1 need not be systemd: nothing is asked of it), with
//! `--drop-capability=CAP_SYS_TIME` always, `--private-network` (loopback
//! only) or a lab host's namespace ([`Network`]), `--link-journal=no`,
//! `--resolv-conf=off` and `--timezone=off` (nothing of this machine's is
//! copied in or linked out), and `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`: the
//! container gets a cgroup2 hierarchy of its own even on a hybrid host,
//! which systemd 257 (trixie) requires.
//!
//! Commands run inside through `nsenter --target <PID 1> --all --root --wd`
//! with a clean environment ([`Container::exec`]); files are read and
//! written from the host through `/proc/<PID 1>/root` with `openat2`
//! `RESOLVE_IN_ROOT`, so the container's own mounts (`/run`, `/tmp`, bind
//! mounts) are seen as inside and its symbolic links never lead out of it.

use std::{
    collections::BTreeSet,
    fs::{self, File},
    io::{self, Read, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use rustix::{
    fs::{fchmod, openat2, Mode, OFlags, ResolveFlags},
    process::{kill_process, kill_process_group, Pid, Signal},
};
use serde_json::Value;

use super::rootfs::{self, Release, Rootfs};
use crate::journald::JournalEntry;

/// Every container name (and its directory and cgroup) starts with this.
pub const NAME_PREFIX: &str = "gls-";
/// The cgroup (in each hierarchy) that holds one cgroup per container.
pub const CGROUP_PARENT: &str = "gnomon-lab";
/// `PATH` of commands run inside.
pub const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long [`Container::boot`] waits for `running` unless told otherwise.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long [`Container::exec`] lets a command run before killing it.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a shutdown waits for the container to power off.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// How long killed processes get to leave their cgroup.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Machine names become part of directory and cgroup names: keep them plain.
const MAX_MACHINE: usize = 32;
/// Lines of the console quoted in a boot error.
const CONSOLE_TAIL_LINES: usize = 40;
/// Where systemd-nspawn keeps per-machine state on the host.
const NSPAWN_RUN_DIRS: &[&str] = &[
    "/run/systemd/nspawn/propagate",
    "/run/systemd/nspawn/unix-export",
];

/// Where systemd-nspawn keeps its image locks.
const NSPAWN_LOCKS: &str = "/run/systemd/nspawn/locks";

static CONTAINER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The container's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// `--private-network`: a network namespace with `lo` only.
    Private,
    /// `--network-namespace-path=/run/netns/<name>`: join an existing
    /// namespace, e.g. a host of a [`crate::netns::Topology`].
    Namespace(String),
}

impl Network {
    /// The namespace of `host` in a lab topology (its `lo` and `lab0`).
    pub fn lab_host(topology: &crate::netns::Topology, host: &str) -> io::Result<Network> {
        topology
            .namespace(host)
            .map(|ns| Network::Namespace(ns.to_owned()))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("lab topology {}: no host '{host}'", topology.tag()),
                )
            })
    }

    fn nspawn_arg(&self) -> String {
        match self {
            Network::Private => "--private-network".to_owned(),
            Network::Namespace(name) => format!("--network-namespace-path=/run/netns/{name}"),
        }
    }
}

/// A bind mount: a host path seen at a path inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

/// What one container should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub release: Release,
    /// A short name (letters, digits, `-`) for the container's name, its
    /// directory and messages; the hostname unless [`Self::hostname`].
    pub machine: String,
    /// The container's hostname (`--hostname`); the machine name if unset.
    pub hostname: Option<String>,
    pub network: Network,
    pub binds: Vec<Bind>,
    /// Set for the container's init (`--setenv`) and for every command
    /// run inside with [`Container::exec`].
    pub env: Vec<(String, String)>,
    /// From starting systemd-nspawn to `systemctl is-system-running`
    /// answering `running`.
    pub boot_timeout: Duration,
}

impl ContainerSpec {
    /// A container of `release` with loopback only, no bind mounts, and
    /// [`DEFAULT_BOOT_TIMEOUT`].
    pub fn new(release: Release, machine: &str) -> Self {
        ContainerSpec {
            release,
            machine: machine.to_owned(),
            hostname: None,
            network: Network::Private,
            binds: Vec::new(),
            env: Vec::new(),
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
        }
    }

    #[must_use]
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_owned());
        self
    }

    #[must_use]
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// A read-write bind mount (`--bind=HOST:CONTAINER`).
    #[must_use]
    pub fn bind(mut self, host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind {
            host: host.into(),
            container: container.into(),
            read_only: false,
        });
        self
    }

    /// A read-only bind mount (`--bind-ro=HOST:CONTAINER`).
    #[must_use]
    pub fn bind_ro(mut self, host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind {
            host: host.into(),
            container: container.into(),
            read_only: true,
        });
        self
    }

    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    fn check(&self) -> io::Result<()> {
        let invalid = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("system-lab container '{}': {what}", self.machine),
            )
        };
        if self.machine.is_empty()
            || self.machine.len() > MAX_MACHINE
            || !self
                .machine
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(format!(
                "the machine name must be 1-{MAX_MACHINE} letters, digits or '-'"
            )));
        }
        if let Some(hostname) = &self.hostname {
            if hostname.is_empty()
                || hostname.len() > 64
                || !hostname
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(invalid(format!(
                    "hostname '{hostname}' must be 1-64 letters, digits, '-' or '.'"
                )));
            }
        }
        if let Network::Namespace(name) = &self.network {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(invalid(format!("'{name}' is not a network namespace name")));
            }
            let path = Path::new("/run/netns").join(name);
            if !path.exists() {
                return Err(invalid(format!(
                    "network namespace {} does not exist",
                    path.display()
                )));
            }
        }
        for bind in &self.binds {
            let (host, inside) = (bind.host.display(), bind.container.display());
            if !bind.host.is_absolute() || !bind.host.exists() {
                return Err(invalid(format!(
                    "bind mount source {host} is not an existing absolute path"
                )));
            }
            if !bind.container.is_absolute() {
                return Err(invalid(format!(
                    "bind mount target {inside} is not an absolute path"
                )));
            }
            if host.to_string().contains(':') || inside.to_string().contains(':') {
                return Err(invalid(format!(
                    "bind mount {host} -> {inside}: a ':' in a path is not supported"
                )));
            }
        }
        for (name, value) in &self.env {
            let plain = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if name.is_empty() || !plain || value.contains('\0') {
                return Err(invalid(format!(
                    "environment variable '{name}' is not a plain name"
                )));
            }
        }
        Ok(())
    }
}

/// A booted container. Dropping it does what [`Container::shutdown`] does,
/// ignoring errors.
#[derive(Debug)]
pub struct Container {
    spec: ContainerSpec,
    rootfs: Rootfs,
    name: String,
    dir: PathBuf,
    merged: PathBuf,
    console: PathBuf,
    nsenter: PathBuf,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    nspawn_pid: u32,
    leader: Option<u32>,
    pid_namespace: String,
    /// Held while the container exists: the namespace (and so its inode
    /// number, which the kernel hands out again once it is freed) lives
    /// until teardown has seen every process in it gone.
    pid_namespace_fd: Option<rustix::fd::OwnedFd>,
    boot_time: Duration,
    torn_down: bool,
}

impl Container {
    /// Removes what killed runs left (see [`cleanup_stale`]), makes sure
    /// the release's root file system is built ([`rootfs::ensure`]),
    /// mounts the overlay, starts systemd-nspawn and waits until
    /// `systemctl is-system-running --wait` says `running`. `degraded` is
    /// an error that lists the failed units; so is anything else after
    /// the spec's boot timeout. On any error everything is removed again.
    pub fn boot(spec: ContainerSpec) -> io::Result<Container> {
        spec.check()?;
        super::require_root(&format!("booting system-lab container '{}'", spec.machine))?;
        let nspawn = crate::programs::find(
            "systemd-nspawn",
            None,
            &["/usr/bin", "/bin"],
            "install systemd-container (apt-get install systemd-container)",
        )?;
        let nsenter = crate::programs::find(
            "nsenter",
            None,
            &["/usr/bin", "/bin"],
            "install util-linux (apt-get install util-linux)",
        )?;
        let rootfs = rootfs::ensure(spec.release)?;
        cleanup_stale()?;

        let n = CONTAINER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}-{n}-{}", std::process::id(), spec.machine);
        let dir = containers_dir()?.join(&name);
        let mut container = Container {
            merged: dir.join("merged"),
            console: dir.join("console.log"),
            dir,
            name,
            nsenter,
            rootfs,
            cgroups: Vec::new(),
            nspawn: None,
            nspawn_pid: 0,
            leader: None,
            pid_namespace: String::new(),
            pid_namespace_fd: None,
            boot_time: Duration::ZERO,
            torn_down: false,
            spec,
        };
        // From here on, Drop removes whatever a failure leaves half made.
        container.mount_overlay()?;
        container.make_cgroups()?;
        let started = Instant::now();
        container.spawn(&nspawn)?;
        container.wait_for_boot(started)?;
        container.boot_time = started.elapsed();
        Ok(container)
    }

    /// `gls-<pid>-<n>-<machine>`: the nspawn machine name, and the name of
    /// the container's directory and cgroup.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &ContainerSpec {
        &self.spec
    }

    pub fn release(&self) -> Release {
        self.spec.release
    }

    /// The cached root file system below the overlay.
    pub fn rootfs(&self) -> &Rootfs {
        &self.rootfs
    }

    /// The container's directory (overlay layers, console log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The overlay the container runs on, as the host sees it (without the
    /// container's own mounts: use [`Container::read_file`] for those).
    pub fn merged_dir(&self) -> &Path {
        &self.merged
    }

    /// From starting systemd-nspawn to `running`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// systemd-nspawn's pid.
    pub fn nspawn_pid(&self) -> u32 {
        self.nspawn_pid
    }

    /// The container's PID 1 (its systemd) as seen from the host.
    pub fn leader_pid(&self) -> Option<u32> {
        self.leader
    }

    /// The container's pid namespace (`pid:[N]`): every process of the
    /// container is in it. The number is only unique while the container
    /// exists.
    pub fn pid_namespace(&self) -> &str {
        &self.pid_namespace
    }

    /// Every host process of the container now: systemd-nspawn, whatever
    /// is in the container's cgroups and in its pid namespace (commands
    /// run with [`Container::exec`] included), each with its start time,
    /// so [`HostProcess::exists`] can tell after shutdown that none
    /// remains even if its pid has been reused.
    pub fn processes(&self) -> io::Result<Vec<HostProcess>> {
        let mut pids: BTreeSet<u32> = self.cgroups.iter().flat_map(|c| cgroup_pids(c)).collect();
        pids.insert(self.nspawn_pid);
        if self.pid_namespace_fd.is_some() {
            pids.extend(pids_in_namespace(&self.pid_namespace)?);
        }
        Ok(pids.into_iter().filter_map(HostProcess::now).collect())
    }

    /// The cgroups holding systemd-nspawn and the container.
    pub fn cgroups(&self) -> &[PathBuf] {
        &self.cgroups
    }

    /// The console so far, terminal escapes removed.
    pub fn console_log(&self) -> String {
        strip_escapes(&read_lossy(&self.console))
    }

    /// `nsenter` into every namespace of the container and its root, then
    /// `args`, with a clean environment (`PATH`, `LANG=C.UTF-8`,
    /// `HOME=/root`, `TERM=dumb` and the spec's) and stdin from /dev/null:
    /// add stdio and spawn it, or use [`Container::exec`].
    pub fn command(&self, args: &[&str]) -> io::Result<Command> {
        if args.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("container {}: no command to run", self.name),
            ));
        }
        let leader = self.live_leader()?;
        let mut command = Command::new(&self.nsenter);
        command
            .arg(format!("--target={leader}"))
            .args(["--all", "--root", "--wd", "--"])
            .args(args)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root")
            .env("TERM", "dumb")
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        Ok(command)
    }

    /// Runs `args` inside ([`Container::command`]) to completion, killed
    /// after [`DEFAULT_EXEC_TIMEOUT`]; any exit status.
    pub fn exec(&self, args: &[&str]) -> io::Result<Output> {
        self.exec_timeout(args, DEFAULT_EXEC_TIMEOUT)
    }

    /// [`Container::exec`] with a timeout: the command and everything it
    /// started are killed when it runs out (a `TimedOut` error).
    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> io::Result<Output> {
        let mut command = self.command(args)?;
        run_bounded(
            &mut command,
            timeout,
            &format!("in container {}: `{}`", self.name, args.join(" ")),
        )
    }

    /// Runs `args` inside and returns its stdout; a non-zero exit is an
    /// error with the command, its status, stdout and stderr.
    pub fn exec_ok(&self, args: &[&str]) -> io::Result<String> {
        let out = self.exec(args)?;
        self.checked(args, &out)
    }

    /// Runs `args` inside as `user` (a name or uid from the container's
    /// /etc/passwd), with its primary group and supplementary groups and an
    /// environment reset for it (`setpriv --reuid --regid --init-groups
    /// --reset-env`).
    pub fn exec_as(&self, user: &str, args: &[&str]) -> io::Result<Output> {
        let (uid, gid) = self.passwd_ids(user)?;
        let mut full = vec![
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--init-groups".to_owned(),
            "--reset-env".to_owned(),
            "--".to_owned(),
        ];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.exec(&full)
    }

    /// [`Container::exec_as`], failing on a non-zero exit like
    /// [`Container::exec_ok`].
    pub fn exec_as_ok(&self, user: &str, args: &[&str]) -> io::Result<String> {
        let out = self.exec_as(user, args)?;
        self.checked(args, &out)
    }

    /// `systemctl --no-pager ARGS` inside; any exit status (`is-active`,
    /// `is-enabled` answer with it).
    pub fn systemctl(&self, args: &[&str]) -> io::Result<Output> {
        let mut full = vec!["systemctl", "--no-pager"];
        full.extend_from_slice(args);
        self.exec(&full)
    }

    /// `systemctl --no-pager ARGS` inside; a non-zero exit is an error.
    pub fn systemctl_ok(&self, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["systemctl", "--no-pager"];
        full.extend_from_slice(args);
        self.exec_ok(&full)
    }

    /// What `systemctl <query> <unit>` prints (e.g. `is-active` →
    /// `inactive`, `is-enabled` → `enabled`): the exit status is part of
    /// the answer, so only a command that printed nothing is an error.
    pub fn unit_state(&self, query: &str, unit: &str) -> io::Result<String> {
        let out = self.systemctl(&[query, unit])?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state.is_empty() {
            Err(io::Error::other(format!(
                "in container {}: `systemctl {query} {unit}` printed nothing ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        } else {
            Ok(state)
        }
    }

    /// The unit's journal entries, oldest first
    /// (`journalctl -u UNIT -o json --no-pager`).
    pub fn journal(&self, unit: &str) -> io::Result<Vec<JournalEntry>> {
        let text = self.exec_ok(&["journalctl", "-u", unit, "-o", "json", "--no-pager"])?;
        text.lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(fields)) => Ok(JournalEntry::from_fields(fields)),
                Ok(other) => Err(io::Error::other(format!(
                    "in container {}: journalctl printed JSON that is not an entry: {other}",
                    self.name
                ))),
                Err(e) => Err(io::Error::other(format!(
                    "in container {}: journalctl printed a line that is not JSON ({e}): {line}",
                    self.name
                ))),
            })
            .collect()
    }

    /// The unit's journal as text (`journalctl -u UNIT -o short-precise`).
    pub fn journal_text(&self, unit: &str) -> io::Result<String> {
        self.exec_ok(&[
            "journalctl",
            "-u",
            unit,
            "-o",
            "short-precise",
            "--no-pager",
        ])
    }

    /// Writes a file inside (created or truncated, then given `mode`),
    /// owned by root. `path` is absolute inside the container; its parent
    /// must exist.
    pub fn write_file(&self, path: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        let what = || format!("container {}: writing {path}", self.name);
        let fd = self.open_inside(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            Mode::from_raw_mode(mode & 0o7777),
        )?;
        fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", what())))?;
        File::from(fd)
            .write_all(bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
    }

    /// Reads a file inside (`path` absolute inside the container).
    pub fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        let fd = self.open_inside(path, OFlags::RDONLY, Mode::empty())?;
        let mut bytes = Vec::new();
        File::from(fd).read_to_end(&mut bytes).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("container {}: reading {path}: {e}", self.name),
            )
        })?;
        Ok(bytes)
    }

    /// Copies a host file to `container_path`, keeping its permission bits.
    pub fn copy_in(&self, host_path: &Path, container_path: &str) -> io::Result<()> {
        let what = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "container {}: copying {} in: {e}",
                    self.name,
                    host_path.display()
                ),
            )
        };
        let bytes = fs::read(host_path).map_err(what)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(host_path).map_err(what)?.permissions().mode()
        };
        self.write_file(container_path, &bytes, mode & 0o7777)
    }

    /// Powers the container off (`systemctl poweroff --no-block` inside, or
    /// SIGTERM to systemd-nspawn, which asks its init to halt), waits
    /// [`POWEROFF_TIMEOUT`] for systemd-nspawn to exit, kills whatever is
    /// left in the container's cgroup, unmounts the overlay, removes the
    /// cgroups, systemd-nspawn's state for the machine and the directory.
    /// Everything is attempted; the error lists what went wrong, including
    /// a container that had to be killed.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.teardown()
    }

    fn checked(&self, args: &[&str], out: &Output) -> io::Result<String> {
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(io::Error::other(format!(
                "in container {}: `{}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.name,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            )))
        }
    }

    /// The leader's pid, once it is checked to still be systemd-nspawn's
    /// child (a container that died leaves a pid the kernel may reuse).
    fn live_leader(&self) -> io::Result<u32> {
        let not_running = || {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("container {} is not running", self.name),
            )
        };
        let leader = self.leader.ok_or_else(not_running)?;
        match proc_stat(leader) {
            Some(stat) if stat.ppid == self.nspawn_pid => Ok(leader),
            _ => Err(not_running()),
        }
    }

    fn open_inside(
        &self,
        path: &str,
        flags: OFlags,
        mode: Mode,
    ) -> io::Result<rustix::fd::OwnedFd> {
        let what = |e: rustix::io::Errno, step: &str| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("container {}: {step} {path}: {e}", self.name),
            )
        };
        if !path.starts_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "container {}: {path} is not an absolute path inside it",
                    self.name
                ),
            ));
        }
        let leader = self.live_leader()?;
        open_beneath(
            Path::new(&format!("/proc/{leader}/root")),
            path,
            flags,
            mode,
        )
        .map_err(|(e, step)| what(e, step))
    }

    /// uid and gid of `user` in the container's /etc/passwd.
    fn passwd_ids(&self, user: &str) -> io::Result<(u32, u32)> {
        let passwd = String::from_utf8_lossy(&self.read_file("/etc/passwd")?).into_owned();
        passwd
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let name = *fields.first()?;
                let uid: u32 = fields.get(2)?.parse().ok()?;
                let gid: u32 = fields.get(3)?.parse().ok()?;
                Some((name, uid, gid))
            })
            .find(|(name, uid, _)| *name == user || uid.to_string() == user)
            .map(|(_, uid, gid)| (uid, gid))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("container {}: no user '{user}' in /etc/passwd", self.name),
                )
            })
    }

    fn mount_overlay(&mut self) -> io::Result<()> {
        let lower = self.rootfs.path.display().to_string();
        let (upper, work) = (self.dir.join("upper"), self.dir.join("work"));
        for dir in [&upper, &work, &self.merged] {
            fs::create_dir_all(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))
            })?;
        }
        // The cached tree stays while this container runs on it, even if a
        // rebuild puts it aside.
        let in_use = self.dir.join(rootfs::IN_USE_FILE);
        fs::write(&in_use, rootfs::tree_id(&self.rootfs.path)?)
            .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", in_use.display())))?;
        let options = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        if [&lower, &self.dir.display().to_string()]
            .iter()
            .any(|p| p.contains([',', ':', '\\']))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "container {}: overlay options cannot hold these paths ({options}): \
                     move the target directory to a path without ',', ':' or '\\'",
                    self.name
                ),
            ));
        }
        super::run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(&self.merged),
            &format!(
                "container {}: mounting its overlay on {}",
                self.name,
                self.merged.display()
            ),
        )?;
        // systemd sets the hostname from /etc/hostname at boot, over
        // nspawn's --hostname: give this container its own, in its upper
        // layer.
        let hostname = self.spec.hostname.as_deref().unwrap_or(&self.spec.machine);
        let fd = open_beneath(
            &self.merged,
            "/etc/hostname",
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|(e, step)| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "container {}: {step} {}/etc/hostname: {e}",
                    self.name,
                    self.merged.display()
                ),
            )
        })?;
        File::from(fd)
            .write_all(format!("{hostname}\n").as_bytes())
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("container {}: writing its /etc/hostname: {e}", self.name),
                )
            })
    }

    fn make_cgroups(&mut self) -> io::Result<()> {
        for hierarchy in cgroup_hierarchies()? {
            let dir = hierarchy.join(CGROUP_PARENT).join(&self.name);
            // Another container's teardown may remove the (empty) parent
            // between the two mkdirs: try again once.
            fs::create_dir_all(&dir)
                .or_else(|_| fs::create_dir_all(&dir))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "container {}: creating cgroup {}: {e}",
                            self.name,
                            dir.display()
                        ),
                    )
                })?;
            self.cgroups.push(dir);
        }
        Ok(())
    }

    fn spawn(&mut self, nspawn: &Path) -> io::Result<()> {
        let console = File::create(&self.console).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating {}: {e}", self.console.display()),
            )
        })?;
        let mut command = Command::new("/bin/sh");
        // The shell moves itself into the container's cgroups, then becomes
        // systemd-nspawn: every process of the container starts there.
        command
            .arg("-c")
            .arg(
                "while [ \"$1\" != -- ]; do echo $$ > \"$1\" || exit 125; shift; done; \
                 shift; exec \"$@\"",
            )
            .arg("sh");
        for cgroup in &self.cgroups {
            command.arg(cgroup.join("cgroup.procs"));
        }
        command
            .arg("--")
            .arg(nspawn)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=read-only",
                "--link-journal=no",
                "--resolv-conf=off",
                "--timezone=off",
                "--drop-capability=CAP_SYS_TIME",
            ])
            .arg(format!("--directory={}", self.merged.display()))
            .arg(format!("--machine={}", self.name))
            .arg(format!(
                "--hostname={}",
                self.spec.hostname.as_deref().unwrap_or(&self.spec.machine)
            ))
            .arg(self.spec.network.nspawn_arg());
        for bind in &self.spec.binds {
            let option = if bind.read_only {
                "--bind-ro"
            } else {
                "--bind"
            };
            command.arg(format!(
                "{option}={}:{}",
                bind.host.display(),
                bind.container.display()
            ));
        }
        for (name, value) in &self.spec.env {
            command.arg(format!("--setenv={name}={value}"));
        }
        command
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .env("TERM", "dumb")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console);
        let line = super::command_line(&command);
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("container {}: cannot run `{line}`: {e}", self.name),
            )
        })?;
        self.nspawn_pid = child.id();
        self.nspawn = Some(child);
        Ok(())
    }

    fn wait_for_boot(&mut self, started: Instant) -> io::Result<()> {
        let timeout = self.spec.boot_timeout;
        let deadline = started + timeout;
        let own_pid_ns = fs::read_link("/proc/self/ns/pid")?;
        loop {
            self.check_nspawn_running("during boot")?;
            if let Some((pid, ns)) = find_leader(self.nspawn_pid, &own_pid_ns) {
                self.leader = Some(pid);
                let held = rustix::fs::open(
                    format!("/proc/{pid}/ns/pid"),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("container {}: opening /proc/{pid}/ns/pid: {e}", self.name),
                    )
                })?;
                self.pid_namespace_fd = Some(held);
                self.pid_namespace = ns;
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("started no init within {timeout:?}")));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let mut last = String::from("no answer yet");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.failure(&format!(
                    "was not running within {timeout:?} (last `systemctl is-system-running`: \
                     {last})"
                )));
            }
            match self.exec_timeout(&["systemctl", "is-system-running", "--wait"], remaining) {
                Ok(out) => {
                    let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    match state.as_str() {
                        "running" => return Ok(()),
                        "degraded" | "maintenance" | "stopping" => {
                            return Err(
                                self.failure(&format!("booted {state}:\n{}", self.failed_units()))
                            )
                        }
                        // offline, unknown, or no bus yet: systemd is not
                        // up far enough to answer; ask again.
                        _ => {
                            last = format!(
                                "'{state}' {}",
                                String::from_utf8_lossy(&out.stderr).trim()
                            );
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => last = e.to_string(),
                Err(e) => {
                    self.check_nspawn_running("during boot")?;
                    return Err(e);
                }
            }
            self.check_nspawn_running("during boot")?;
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemctl --failed` and the boot's warnings, for a boot error.
    fn failed_units(&self) -> String {
        let show = |args: &[&str]| match self.exec_timeout(args, Duration::from_secs(20)) {
            Ok(out) => format!(
                "$ {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("$ {}: {e}\n", args.join(" ")),
        };
        show(&["systemctl", "--failed", "--no-pager", "--plain"])
            + &show(&[
                "journalctl",
                "-b",
                "-p",
                "warning",
                "--no-pager",
                "-n",
                "60",
            ])
    }

    fn check_nspawn_running(&mut self, when: &str) -> io::Result<()> {
        let status = match self.nspawn.as_mut() {
            Some(child) => child.try_wait()?,
            None => return Err(self.failure(&format!("has no systemd-nspawn {when}"))),
        };
        match status {
            None => Ok(()),
            Some(status) => {
                self.nspawn = None;
                Err(self.failure(&format!("systemd-nspawn exited {when} ({status})")))
            }
        }
    }

    fn failure(&self, what: &str) -> io::Error {
        let console = self.console_log();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(CONSOLE_TAIL_LINES)..)
            .unwrap_or_default()
            .join("\n");
        io::Error::other(format!(
            "system-lab container {} ({}, {}) {what}\n--- console {} (last lines) ---\n{tail}",
            self.name,
            self.spec.release,
            self.dir.display(),
            self.console.display(),
        ))
    }

    fn teardown(&mut self) -> io::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if let Some(mut child) = self.nspawn.take() {
            if let Err(e) = self.power_off(&mut child) {
                problems.push(e.to_string());
            }
        }
        self.leader = None;
        let pid_namespace = self
            .pid_namespace_fd
            .is_some()
            .then_some(self.pid_namespace.as_str());
        problems.extend(remove_traces(
            &self.name,
            &self.dir,
            &self.cgroups,
            pid_namespace,
        ));
        self.pid_namespace_fd = None;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "shutting down container {}: {}",
                self.name,
                problems.join("; ")
            )))
        }
    }

    /// Asks the container to power off and waits for systemd-nspawn;
    /// kills it (and with the cgroup, the container) when it does not exit.
    fn power_off(&self, child: &mut Child) -> io::Result<()> {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let asked = self
            .exec_timeout(
                &["systemctl", "poweroff", "--no-block"],
                Duration::from_secs(10),
            )
            .is_ok_and(|out| out.status.success());
        if !asked {
            // systemd-nspawn turns SIGTERM into a halt request to its init.
            let _ = kill_process(Pid::from_child(child), Signal::TERM);
        }
        let deadline = Instant::now() + POWEROFF_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        for cgroup in &self.cgroups {
            kill_cgroup(cgroup);
        }
        let _ = child.kill();
        child.wait()?;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "it did not power off within {POWEROFF_TIMEOUT:?} and was killed\n\
                 --- console (last lines) ---\n{}",
                tail_lines(&self.console_log(), CONSOLE_TAIL_LINES)
            ),
        ))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// `<target>/system-lab/containers`.
pub fn containers_dir() -> io::Result<PathBuf> {
    Ok(super::lab_dir()?.join("containers"))
}

/// Removes what containers of runs that no longer exist left behind (a
/// run killed by SIGKILL skips Drop): their processes (killed through their
/// cgroup), mounts, cgroups, systemd-nspawn state and directories. Returns
/// the container names it cleaned up.
pub fn cleanup_stale() -> io::Result<Vec<String>> {
    let containers = containers_dir()?;
    let hierarchies = cgroup_hierarchies()?;
    let mut names = BTreeSet::new();
    let mut add_names = |dir: &Path| -> io::Result<()> {
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if name.starts_with(NAME_PREFIX) {
                        names.insert(name);
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("listing {}: {e}", dir.display()),
            )),
        }
    };
    add_names(&containers)?;
    for hierarchy in &hierarchies {
        add_names(&hierarchy.join(CGROUP_PARENT))?;
    }
    let mut cleaned = Vec::new();
    for name in names {
        let Some(pid) = super::creator_pid(&name, NAME_PREFIX) else {
            continue;
        };
        if super::pid_exists(pid) {
            continue;
        }
        let cgroups: Vec<PathBuf> = hierarchies
            .iter()
            .map(|h| h.join(CGROUP_PARENT).join(&name))
            .collect();
        // A dead run's pid namespace number may name another namespace by
        // now: its processes are found through the cgroups only (commands
        // it ran with nsenter died with the container's PID 1).
        let problems = remove_traces(&name, &containers.join(&name), &cgroups, None);
        if !problems.is_empty() {
            return Err(io::Error::other(format!(
                "cleaning up stale system-lab container {name}: {}",
                problems.join("; ")
            )));
        }
        cleaned.push(name);
    }
    Ok(cleaned)
}

/// What is left on this machine of the container `name`: processes in its
/// cgroups, mounts under its directory, the directory, its cgroups,
/// systemd-nspawn's state for it. Empty after a clean shutdown. (Commands
/// run inside are not in the cgroups: see [`Container::processes`].)
pub fn leftovers(name: &str) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    let dir = containers_dir()?.join(name);
    for point in super::mounts_under(&dir)? {
        found.push(format!("mount {}", point.display()));
    }
    if dir.exists() {
        found.push(format!("directory {}", dir.display()));
    }
    for cgroup in container_cgroups(name)? {
        for pid in cgroup_pids(&cgroup) {
            found.push(format!("process {pid} in cgroup {}", cgroup.display()));
        }
        if cgroup.exists() {
            found.push(format!("cgroup {}", cgroup.display()));
        }
    }
    for run_dir in NSPAWN_RUN_DIRS {
        let path = Path::new(run_dir).join(name);
        if path.exists() {
            found.push(format!("systemd-nspawn state {}", path.display()));
        }
    }
    Ok(found)
}

/// The processes in the cgroups of the container `name` (systemd-nspawn
/// and everything the container's init started), with their start times.
pub fn cgroup_processes(name: &str) -> io::Result<Vec<HostProcess>> {
    Ok(container_cgroups(name)?
        .iter()
        .flat_map(|c| cgroup_pids(c))
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .filter_map(HostProcess::now)
        .collect())
}

fn container_cgroups(name: &str) -> io::Result<Vec<PathBuf>> {
    Ok(cgroup_hierarchies()?
        .into_iter()
        .map(|h| h.join(CGROUP_PARENT).join(name))
        .collect())
}

/// A process as the host sees it: its pid and its start time (clock ticks
/// after boot), which together name it even after the pid is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostProcess {
    pub pid: u32,
    pub start_time: u64,
}

impl HostProcess {
    /// The process with this pid now, if there is one.
    pub fn now(pid: u32) -> Option<HostProcess> {
        let stat = proc_stat(pid)?;
        Some(HostProcess {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still exists, as a zombie too (dead,
    /// its exit status not yet collected by its parent).
    pub fn exists(&self) -> bool {
        HostProcess::now(self.pid).is_some_and(|now| now == *self)
    }

    /// Whether this very process still exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        self.exists() && proc_stat(self.pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
    }
}

/// Kills what is in the cgroups, unmounts and removes the directory, the
/// cgroups and systemd-nspawn's state for `name`; returns what failed.
/// `pid_namespace`: the container's, while it is still held (see
/// `Container::pid_namespace_fd`); its processes are waited for too.
fn remove_traces(
    name: &str,
    dir: &Path,
    cgroups: &[PathBuf],
    pid_namespace: Option<&str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeSet<u32> = cgroups.iter().flat_map(|c| cgroup_pids(c)).collect();
    if let Some(namespace) = pid_namespace {
        seen.extend(pids_in_namespace(namespace).unwrap_or_default());
    }
    let seen: Vec<HostProcess> = seen.into_iter().filter_map(HostProcess::now).collect();
    for cgroup in cgroups {
        kill_cgroup(cgroup);
    }
    // The kernel kills every process of a pid namespace whose PID 1 dies,
    // commands run with nsenter (not in the cgroups) included; they may
    // linger as zombies for a moment.
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let mut left: BTreeSet<u32> = cgroups.iter().flat_map(|c| cgroup_pids(c)).collect();
        if let Some(namespace) = pid_namespace {
            left.extend(pids_in_namespace(namespace).unwrap_or_default());
        }
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            problems.push(format!(
                "processes {left:?} of it are still there after SIGKILL"
            ));
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Out of the cgroups is not gone yet: after a killed run, init collects
    // the zombies of systemd-nspawn and the container's PID 1. Give it the
    // same time; a zombie is dead, so one that stays is not an error.
    while seen.iter().any(HostProcess::exists) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let running: Vec<u32> = seen
        .iter()
        .filter(|p| p.is_alive())
        .map(|p| p.pid)
        .collect();
    if !running.is_empty() {
        problems.push(format!(
            "processes {running:?} of it still run after SIGKILL"
        ));
    }
    // systemd-nspawn locks the image it boots with a file named after the
    // overlay's device and inode, and leaves it when it is killed.
    let image_lock = nspawn_image_lock(&dir.join("merged"));
    if let Err(e) = super::remove_tree(dir) {
        problems.push(e.to_string());
    }
    if let Some(lock) = image_lock {
        match fs::remove_file(&lock) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                problems.push(format!("removing {}: {e}", lock.display()));
            }
            _ => {}
        }
    }
    for cgroup in cgroups {
        if let Err(e) = remove_cgroup(cgroup) {
            problems.push(e.to_string());
        }
        // The parent goes once it is empty; another container's cgroup in
        // it keeps it (and this rmdir fails, as it should).
        if let Some(parent) = cgroup.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
    for run_dir in NSPAWN_RUN_DIRS {
        if let Err(e) = super::remove_tree(&Path::new(run_dir).join(name)) {
            problems.push(e.to_string());
        }
    }
    problems
}

/// `/run/systemd/nspawn/locks/inode-<dev>:<ino>` of the overlay mounted on
/// `merged` (none when nothing is mounted there: the lock was for the
/// overlay, whose device number is unique while it is mounted).
fn nspawn_image_lock(merged: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mounted = super::mounts_under(merged)
        .ok()?
        .iter()
        .any(|point| point == merged);
    if !mounted {
        return None;
    }
    let meta = fs::metadata(merged).ok()?;
    Some(PathBuf::from(format!(
        "{NSPAWN_LOCKS}/inode-{}:{}",
        meta.dev(),
        meta.ino()
    )))
}

/// The cgroup2 hierarchy and, on a hybrid host, the `name=systemd` one
/// (`/proc/self/mountinfo`).
fn cgroup_hierarchies() -> io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io::Error::new(e.kind(), format!("reading /proc/self/mountinfo: {e}")))?;
    let hierarchies = parse_cgroup_hierarchies(&info);
    if hierarchies.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the system lab needs a cgroup2 file system mounted (none in /proc/self/mountinfo)",
        ));
    }
    Ok(hierarchies)
}

fn parse_cgroup_hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    let mut unified = None;
    let mut named = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut fields = right.split(' ');
        let (fstype, options) = (fields.next(), fields.nth(1).unwrap_or_default());
        let point = PathBuf::from(super::unescape_mountinfo(point));
        match fstype {
            Some("cgroup2") if unified.is_none() => unified = Some(point),
            Some("cgroup")
                if named.is_none() && options.split(',').any(|o| o == "name=systemd") =>
            {
                named = Some(point);
            }
            _ => {}
        }
    }
    // Without cgroup2 there is nothing to boot on.
    match unified {
        Some(unified) => std::iter::once(unified).chain(named).collect(),
        None => Vec::new(),
    }
}

/// Pids in a cgroup and every cgroup below it.
fn cgroup_pids(cgroup: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if let Ok(entries) = fs::read_dir(cgroup) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(cgroup_pids(&entry.path()));
            }
        }
    }
    pids
}

/// SIGKILL to everything in a cgroup and below: `cgroup.kill` where the
/// kernel has it (cgroup2), else each pid.
fn kill_cgroup(cgroup: &Path) {
    if !cgroup.exists() {
        return;
    }
    let kill_file = cgroup.join("cgroup.kill");
    if kill_file.exists() && fs::write(&kill_file, "1").is_ok() {
        return;
    }
    for pid in cgroup_pids(cgroup) {
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            // Gone already is fine.
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// Removes a cgroup and the cgroups below it, deepest first.
fn remove_cgroup(cgroup: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(cgroup) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("listing cgroup {}: {e}", cgroup.display()),
            ))
        }
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path())?;
        }
    }
    match fs::remove_dir(cgroup) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing cgroup {}: {e}", cgroup.display()),
        )),
    }
}

/// Opens `path` (absolute) as if `root` were `/`: `openat2` with
/// `RESOLVE_IN_ROOT`, so `..` and symbolic links (absolute ones included)
/// never lead out of `root`. The error says which step failed.
fn open_beneath(
    root: &Path,
    path: &str,
    flags: OFlags,
    mode: Mode,
) -> Result<rustix::fd::OwnedFd, (rustix::io::Errno, &'static str)> {
    let root = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| (e, "opening the root to reach"))?;
    openat2(
        &root,
        path,
        flags | OFlags::CLOEXEC,
        mode,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| (e, "opening"))
}

/// Host pids whose pid namespace is `namespace` (`pid:[N]`).
fn pids_in_namespace(namespace: &str) -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns.as_os_str() == namespace)
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcStat {
    comm: String,
    /// `R`, `S`, ..., `Z` for a zombie.
    state: char,
    ppid: u32,
    /// Field 22: clock ticks after boot.
    start_time: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After the comm: state (field 3), ppid (4), ... starttime (22).
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(ProcStat {
        comm,
        state,
        ppid,
        start_time,
    })
}

/// The container's PID 1: the child of systemd-nspawn in another pid
/// namespace that has exec'd its init (until then it is still called
/// systemd-nspawn). Returns its pid and pid namespace.
fn find_leader(nspawn_pid: u32, own_pid_ns: &Path) -> Option<(u32, String)> {
    let entries = fs::read_dir("/proc").ok()?;
    entries.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
        let stat = proc_stat(pid)?;
        if stat.ppid != nspawn_pid || stat.comm == "systemd-nspawn" {
            return None;
        }
        let ns = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        (ns != own_pid_ns).then(|| (pid, ns.to_string_lossy().into_owned()))
    })
}

/// Runs a command with piped output in its own process group, killing the
/// group (nsenter and what it started inside) when `timeout` runs out.
fn run_bounded(command: &mut Command, timeout: Duration, what: &str) -> io::Result<Output> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run it ({e})")))?;
    let stdout = child.stdout.take().map(read_in_thread);
    let stderr = child.stderr.take().map(read_in_thread);
    let deadline = Instant::now() + timeout;
    let status: Option<ExitStatus> = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
            let _ = child.kill();
            child.wait()?;
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let collect = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{what}: killed after {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout).trim_end(),
                String::from_utf8_lossy(&stderr).trim_end()
            ),
        )),
    }
}

fn read_in_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the output there; the exit status still counts.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// Removes terminal control sequences (CSI `ESC [ ... final`, OSC
/// `ESC ] ... BEL`, two-byte `ESC x`) and carriage returns.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\u{7}' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_are_read() {
        let tail = "42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5555 1000 10";
        assert_eq!(
            parse_stat(&format!("42 (systemd) S 17 {tail}")),
            Some(ProcStat {
                comm: "systemd".to_owned(),
                state: 'S',
                ppid: 17,
                start_time: 5555,
            })
        );
        assert_eq!(
            parse_stat(&format!("43 (a) b (c)) R 1 {tail}")),
            Some(ProcStat {
                comm: "a) b (c)".to_owned(),
                state: 'R',
                ppid: 1,
                start_time: 5555,
            })
        );
        assert_eq!(parse_stat("44 (short) S 1 2 3"), None);
        let own = HostProcess::now(std::process::id()).unwrap();
        assert!(own.is_alive());
        assert!(!HostProcess {
            start_time: own.start_time + 1,
            ..own
        }
        .is_alive());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn cgroup_hierarchies_are_found_on_hybrid_and_unified_hosts() {
        let hybrid = "30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
                      31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                      33 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup_hierarchies(hybrid),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/systemd")
            ]
        );
        let unified = "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup_hierarchies(unified),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
        let legacy_only = "31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(parse_cgroup_hierarchies(legacy_only).is_empty());
    }

    #[test]
    fn console_escapes_are_removed() {
        assert_eq!(
            strip_escapes("\u{1b}[0;32m  OK  \u{1b}[0m] Started \u{1b}[!p\u{1b}]0;t\u{7}x\r\n"),
            "  OK  ] Started x\n"
        );
    }

    #[test]
    fn specs_with_odd_names_or_paths_are_refused() {
        let ok = ContainerSpec::new(Release::Bookworm, "boot-1");
        assert!(ok.check().is_ok());
        for spec in [
            ContainerSpec::new(Release::Bookworm, ""),
            ContainerSpec::new(Release::Bookworm, "a/b"),
            ContainerSpec::new(Release::Bookworm, &"x".repeat(MAX_MACHINE + 1)),
            ok.clone().hostname("bad host"),
            ok.clone().bind("relative", "/x"),
            ok.clone().bind("/", "relative"),
            ok.clone().bind_ro("/", "/a:b"),
            ok.clone().env("1X", "v"),
            ok.clone().env("A=B", "v"),
            ok.clone()
                .network(Network::Namespace("gnl-no-such-namespace".to_owned())),
        ] {
            assert!(spec.check().is_err(), "{spec:?}");
        }
    }
}
