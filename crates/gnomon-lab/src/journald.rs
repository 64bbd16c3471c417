//! A standalone systemd-journald in a private mount namespace, so tests can
//! log through journald's real sockets and read the entries back with
//! journalctl, on hosts with or without systemd, never touching the host's
//! journal or `/run`.
//!
//! `unshare --mount --propagation private` runs a shell that mounts a tmpfs
//! on `/run` (and on `/var/log/journal` when it exists), writes a
//! `journald.conf.d` drop-in (volatile storage, no kmsg, no forwarding, no
//! rate limit) and becomes systemd-journald (`exec`). The journald process
//! is the namespace: commands join it with `nsenter --mount --target
//! <pid>`, and when journald is gone the namespace and its tmpfs go too.
//! Inside, `/run` holds only what journald made: a program that needs the
//! host's `/run` (chrony's socket, say) must be given other paths. Root only.

use std::{
    ffi::OsStr,
    fs::{self, File},
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::{Map, Value};
use tempfile::TempDir;

/// How long `start` waits for journald's native socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Drop` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// journald's native socket and runtime journal, inside the namespace.
const NATIVE_SOCKET: &str = "/run/systemd/journal/socket";
const RUNTIME_JOURNAL: &str = "/run/log/journal";

/// Prepares the namespace, then becomes journald. `$1` is journald's path,
/// `$2` a machine id for hosts whose /etc/machine-id is empty.
const SETUP_SCRIPT: &str = r#"set -eu
mount -t tmpfs -o mode=0755,size=64m gnomon-lab-run /run
if [ -d /var/log/journal ]; then
    mount -t tmpfs -o mode=0755,size=16m gnomon-lab-journal /var/log/journal
fi
if [ -f /etc/machine-id ] && [ ! -s /etc/machine-id ]; then
    echo "$2" > /run/machine-id
    mount --bind /run/machine-id /etc/machine-id
fi
mkdir -p /run/systemd/journal /run/log/journal /run/systemd/journald.conf.d
cat > /run/systemd/journald.conf.d/99-gnomon-lab.conf <<'EOF'
[Journal]
Storage=volatile
RuntimeMaxUse=32M
ReadKMsg=no
Audit=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitBurst=0
EOF
exec "$1"
"#;

/// Replaces the catalog sources and database inside the namespace with a
/// tmpfs each, then builds a database from the one catalog file `$1`.
const CATALOG_SCRIPT: &str = r#"set -eu
# Never mount over the host's directories: only in our namespace does this exist.
if [ ! -f /run/systemd/journald.conf.d/99-gnomon-lab.conf ]; then
    echo "not inside the private journal's mount namespace" >&2
    exit 1
fi
for d in /usr/lib/systemd/catalog /var/lib/systemd/catalog; do
    if [ ! -d "$d" ]; then
        echo "$d does not exist (it comes with systemd): cannot hide it under a tmpfs" >&2
        exit 1
    fi
    mount -t tmpfs -o mode=0755,size=4m gnomon-lab-catalog "$d"
done
cp "$1" /usr/lib/systemd/catalog/
journalctl --update-catalog
"#;

/// A running private journald. Dropping it stops journald (SIGTERM, then
/// SIGKILL) and waits for it; its namespace and journal disappear with it.
#[derive(Debug)]
pub struct PrivateJournal {
    child: Option<Child>,
    pid: u32,
    nsenter: PathBuf,
    journalctl: PathBuf,
    log: PathBuf,
    // Last: removed once journald is gone.
    _dir: TempDir,
}

impl PrivateJournal {
    /// Starts journald in a new mount namespace and waits (at most 10 s)
    /// until its native socket accepts a datagram.
    pub fn start() -> io::Result<PrivateJournal> {
        let unshare = find_program("unshare")?;
        let nsenter = find_program("nsenter")?;
        let journalctl = find_program("journalctl")?;
        let journald = find_journald()?;
        let dir = tempfile::Builder::new()
            .prefix("gnomon-journald-")
            .tempdir()?;
        let log = dir.path().join("journald.stderr");
        let out = File::create(&log)?;
        let setpriv = find_program("setpriv")?;
        // journald dies with the thread that started it, even when Drop
        // never runs (SIGKILL, an aborting panic): it holds a namespace.
        let child = Command::new(&setpriv)
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&unshare)
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg(SETUP_SCRIPT)
            .arg("gnomon-lab-journal")
            .arg(&journald)
            .arg(machine_id())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "spawning {} for journald {}: {e}",
                        unshare.display(),
                        journald.display()
                    ),
                )
            })?;
        let mut journal = PrivateJournal {
            pid: child.id(),
            child: Some(child),
            nsenter,
            journalctl,
            log,
            _dir: dir,
        };
        journal.wait_until_ready(&journald)?;
        Ok(journal)
    }

    fn wait_until_ready(&mut self, journald: &Path) -> io::Result<()> {
        let socket = self.native_socket();
        let probe = UnixDatagram::unbound()?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(self.failure(journald, &format!("exited at start ({status})")));
                }
            }
            if socket.exists() {
                // journald ignores an empty datagram.
                match probe.send_to(&[], &socket) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(self.failure(
                    journald,
                    &format!(
                        "did not accept datagrams on {NATIVE_SOCKET} within {START_TIMEOUT:?} \
                         (last try: {last})"
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn failure(&self, journald: &Path, what: &str) -> io::Error {
        io::Error::other(format!(
            "private journald ({} in a mount namespace, needs root) {what}\n--- its output ---\n{}",
            journald.display(),
            fs::read_to_string(&self.log).unwrap_or_default()
        ))
    }

    /// journald's process id: the namespace to join.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// journald's native socket as seen from outside the namespace
    /// (through `/proc/<pid>/root`), for sending entries without entering.
    pub fn native_socket(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{NATIVE_SOCKET}", self.pid))
    }

    /// A command running `program` inside the namespace, where
    /// /run/systemd/journal/socket is this journald. It starts in `/`
    /// (entering a mount namespace resets the working directory), so give
    /// it absolute paths. Add arguments, env and stdio as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(&self.nsenter);
        cmd.args(self.wrapper().get(1..).unwrap_or_default())
            .arg(program);
        cmd
    }

    /// The argv prefix that runs a program inside the namespace
    /// (`nsenter --mount --target=<pid> --`), for harnesses that take a
    /// wrapper rather than a [`Command`].
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            self.nsenter.display().to_string(),
            "--mount".to_owned(),
            format!("--target={}", self.pid),
            "--".to_owned(),
        ]
    }

    /// `journalctl -D /run/log/journal --no-pager` inside the namespace;
    /// add options (`-x`, `-o`, matches) as needed.
    pub fn journalctl(&self) -> Command {
        let mut cmd = self.command(&self.journalctl);
        cmd.args(["-D", RUNTIME_JOURNAL, "--no-pager"]);
        cmd
    }

    /// Every entry so far (journald's own included), oldest first.
    pub fn entries(&self) -> io::Result<Vec<JournalEntry>> {
        let out = self.journalctl().args(["-o", "json", "--all"]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "journalctl -D {RUNTIME_JOURNAL} -o json in journald {}'s namespace: {}: {}",
                self.pid,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(fields)) => Ok(JournalEntry { fields }),
                Ok(other) => Err(io::Error::other(format!(
                    "journalctl printed JSON that is not an entry: {other}"
                ))),
                Err(e) => Err(io::Error::other(format!(
                    "journalctl printed a line that is not JSON ({e}): {line}"
                ))),
            })
            .collect()
    }

    /// Polls the entries until one matches (journald writes
    /// asynchronously) and returns them all, or `None` after `timeout`
    /// (use [`PrivateJournal::wait_until`] for the reason and what was
    /// there).
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut matches: impl FnMut(&JournalEntry) -> bool,
    ) -> Option<Vec<JournalEntry>> {
        self.wait_until(timeout, |entries| entries.iter().any(&mut matches))
            .ok()
    }

    /// Polls the entries until `done` holds for them and returns them;
    /// after `timeout` an error listing what was there.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[JournalEntry]) -> bool,
    ) -> io::Result<Vec<JournalEntry>> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.entries()?;
            if done(&entries) {
                return Ok(entries);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.field("SYSLOG_IDENTIFIER").unwrap_or("?"),
                            e.field("MESSAGE").unwrap_or("?")
                        )
                    })
                    .collect();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the private journal did not get the expected entries within \
                         {timeout:?}; it has:\n{}",
                        seen.join("\n")
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes `catalog` the only message catalog inside the namespace
    /// (`journalctl --update-catalog` on tmpfs copies of the catalog
    /// directories), so `journalctl -x` there explains its entries.
    pub fn install_catalog(&self, catalog: &Path) -> io::Result<()> {
        let out = self
            .command("/bin/sh")
            .arg("-c")
            .arg(CATALOG_SCRIPT)
            .arg("gnomon-lab-catalog")
            .arg(catalog)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "installing catalog {} in journald {}'s namespace: {}: {}{}",
                catalog.display(),
                self.pid,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if kill_process(Pid::from_child(&child), Signal::TERM).is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PrivateJournal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command running `program` in a fresh mount namespace whose `/run` is
/// an empty tmpfs: no journald socket, whatever the host runs. Root only.
pub fn without_journald(program: impl AsRef<OsStr>) -> io::Result<Command> {
    let mut cmd = Command::new(find_program("unshare")?);
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg("mount -t tmpfs -o mode=0755,size=1m gnomon-lab-run /run && exec \"$0\" \"$@\"")
        .arg(program);
    Ok(cmd)
}

/// One journal entry as `journalctl -o json` prints it: a field that
/// appears several times is an array, binary data an array of bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    fields: Map<String, Value>,
}

impl JournalEntry {
    /// An entry from the fields of one line of `journalctl -o json`.
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        JournalEntry { fields }
    }

    /// The value of a field that appears exactly once, as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// Every value of a field (several when it was sent more than once);
    /// binary values lossily as UTF-8.
    pub fn values(&self, name: &str) -> Vec<String> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
                vec![bytes_to_text(items)]
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    Value::Array(bytes) => bytes_to_text(bytes),
                    other => other.to_string(),
                })
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(other) => vec![other.to_string()],
        }
    }

    /// Field names, journald's trusted `_` ones and cursors included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.fields
    }
}

fn bytes_to_text(items: &[Value]) -> String {
    let bytes: Vec<u8> = items
        .iter()
        .filter_map(Value::as_u64)
        .filter_map(|b| u8::try_from(b).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `$GNOMON_JOURNALD`, else systemd-journald in /lib/systemd or /usr/lib/systemd.
fn find_journald() -> io::Result<PathBuf> {
    crate::programs::find(
        "systemd-journald",
        Some("GNOMON_JOURNALD"),
        &["/lib/systemd", "/usr/lib/systemd"],
        "install the systemd package",
    )
}

/// `name` in PATH, /usr/bin, /bin, /usr/sbin or /sbin.
fn find_program(name: &str) -> io::Result<PathBuf> {
    crate::programs::find(
        name,
        None,
        &["/usr/bin", "/bin", "/usr/sbin", "/sbin"],
        "util-linux for unshare and nsenter, systemd for journalctl",
    )
}

/// A 128-bit id in machine-id form, different for each journal started.
fn machine_id() -> String {
    use std::{
        collections::hash_map::RandomState,
        hash::{BuildHasher, Hasher},
    };
    let mut id = String::with_capacity(32);
    for part in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(part);
        h.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}
