//! Cached root file systems for the system lab: one minimal Debian tree per
//! [`Release`], built once with debootstrap and then only ever read (each
//! container writes to its own overlay, see [`super::container`]).
//!
//! Layout under `<target>/system-lab/rootfs/` (see [`super::lab_dir`]):
//!
//! | path | what |
//! |---|---|
//! | `<codename>/` | the ready tree, used as an overlayfs lower layer |
//! | `<codename>.ready` | the marker, written last: versions and build time |
//! | `<codename>.lock` | flock(2) held while checking and building |
//! | `<codename>.build-<pid>/` | a build in progress, renamed into place when done |
//! | `<codename>.old-<pid>-<n>/` | a replaced tree, removed once no container runs on it |
//! | `<codename>.debootstrap.log` | the last build's debootstrap output |
//!
//! Under the lock, any `.build-*` directory is removed and a tree without
//! its marker (a build killed between the rename and the marker) or with a
//! marker of another [`recipe`] (the package list or the changes below have
//! changed since) is built again, so a half-built or outdated tree is never
//! used and two test processes never build the same release at once. A
//! replaced tree is renamed aside, not deleted: containers of another run
//! may still have it as their overlay's lower layer (each container records
//! which tree it runs on, see [`tree_id`]).
//!
//! The tree is `debootstrap --variant=minbase --include=<`[`INCLUDE`]`>`
//! from the Debian mirror this machine's apt is configured with (read at run
//! time by [`debian_mirror`]; no mirror is written in the repository),
//! checked with Debian's archive keyring. Then, and nothing else:
//!
//! - a drop-in `/etc/systemd/system/chrony.service.d/container.conf` that
//!   starts chronyd without CAP_SYS_TIME and with `-x`: a container never
//!   gets that capability and must never set this machine's clock;
//! - Debian's default `pool` lines in `/etc/chrony/chrony.conf` commented
//!   out: nothing may leave loopback or the lab's own namespaces
//!   (`sourcedir` and `confdir` stay as Debian ships them);
//! - `/etc/hostname` set to `gnomon-lab` (debootstrap copies this
//!   machine's; each container writes its own into its overlay) and
//!   `/etc/machine-id` emptied, for systemd to fill at boot.
//!
//! No unit is masked: both releases boot to `running` under
//! systemd-nspawn as they are.

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rustix::fs::{flock, FlockOperation};

/// The packages debootstrap adds to minbase: systemd as init (systemd-sysv)
/// with D-Bus, chrony (which pulls in init-system-helpers for
/// deb-systemd-helper), iproute2 and procps for looking inside, apparmor
/// for `apparmor_parser` (nothing is loaded into a kernel), libcap2-bin
/// for `capsh`/`getpcaps`, and pps-tools, which gnomon's package
/// recommends: `apt install ./gnomon_*.deb` as an operator types it then
/// needs nothing from the network. The package depends on chrony, systemd,
/// libc6 and libgcc-s1 (the last two are in minbase), and its maintainer
/// scripts use systemd-sysusers, systemd-tmpfiles, journalctl,
/// deb-systemd-helper and coreutils.
pub const INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "chrony",
    "iproute2",
    "procps",
    "apparmor",
    "libcap2-bin",
    "pps-tools",
];

/// Raised whenever [`customize`]'s changes change, so cached trees built
/// the old way are rebuilt.
const RECIPE_VERSION: u32 = 1;

/// Debian's archive keyring (has the keys of bookworm and trixie).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The hostname written into the cached trees (a container sets its own).
pub const HOSTNAME: &str = "gnomon-lab";

/// The chrony.service drop-in every tree gets.
pub const CHRONY_DROP_IN: &str = "/etc/systemd/system/chrony.service.d/container.conf";

const CHRONY_DROP_IN_TEXT: &str = "\
# gnomon system lab: a container never gets CAP_SYS_TIME (systemd-nspawn
# --drop-capability=CAP_SYS_TIME) and must never set this machine's clock.
# Start chronyd anyway (Debian's unit has ConditionCapability=CAP_SYS_TIME),
# with -x: it never adjusts the system clock.
[Unit]
ConditionCapability=
[Service]
ExecStart=
ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x
";

const CHRONY_CONF: &str = "/etc/chrony/chrony.conf";
const POOL_COMMENT: &str = "# gnomon system lab (nothing leaves the lab's network): ";
/// Lines of debootstrap's output quoted in a build error.
const LOG_TAIL_LINES: usize = 25;

/// A Debian release the system lab can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Release {
    /// Debian 12: chrony 4.3, systemd 252.
    Bookworm,
    /// Debian 13: chrony 4.6.1, systemd 257.
    Trixie,
}

impl Release {
    /// Every release, oldest first.
    pub const ALL: [Release; 2] = [Release::Bookworm, Release::Trixie];

    /// Debian's code name: `bookworm`, `trixie`.
    pub fn codename(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    /// Debian's version number: 12, 13.
    pub fn version(self) -> u32 {
        match self {
            Release::Bookworm => 12,
            Release::Trixie => 13,
        }
    }

    /// The release with this code name.
    pub fn from_codename(codename: &str) -> Option<Release> {
        Release::ALL.into_iter().find(|r| r.codename() == codename)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Debian {} ({})", self.version(), self.codename())
    }
}

/// A ready root file system and what is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    pub release: Release,
    /// The tree (never written once ready).
    pub path: PathBuf,
    /// `dpkg-query` version of chrony, e.g. `4.3-2+deb12u3`.
    pub chrony_version: String,
    /// `dpkg-query` version of systemd, e.g. `252.39-1~deb12u2`.
    pub systemd_version: String,
    /// How long debootstrap and the container changes took.
    pub build_time: Duration,
    /// Whether this call built it (false: it was in the cache).
    pub built_now: bool,
}

/// `<target>/system-lab/rootfs`.
pub fn cache_dir() -> io::Result<PathBuf> {
    Ok(super::lab_dir()?.join("rootfs"))
}

/// What a tree is built from (the package list and the version of the
/// changes after debootstrap), recorded in its marker: a tree of another
/// recipe is rebuilt.
pub fn recipe() -> String {
    format!("v{RECIPE_VERSION}:{}", INCLUDE.join(","))
}

/// `<dev>:<inode>` of a tree's top directory: it survives the rename that
/// puts a replaced tree aside, so a container that recorded it
/// ([`IN_USE_FILE`] in its directory) keeps the tree from being removed.
pub fn tree_id(tree: &Path) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(tree)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", tree.display())))?;
    Ok(format!("{}:{}", meta.dev(), meta.ino()))
}

/// The file in a container's directory that holds the [`tree_id`] of the
/// tree it runs on.
pub const IN_USE_FILE: &str = "rootfs-in-use";

/// The cached root file system of `release`, built first when it is not
/// there (several minutes: debootstrap from this machine's Debian mirror).
/// Another process or thread building the same release is waited for.
pub fn ensure(release: Release) -> io::Result<Rootfs> {
    let cache = cache_dir()?;
    if let Some(ready) = read_ready(release, &cache) {
        if replaced_trees(release, &cache)?.is_empty() {
            return Ok(ready);
        }
    }
    super::require_root(&format!("building the {release} root file system"))?;
    fs::create_dir_all(&cache)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", cache.display())))?;
    let lock_path = cache.join(format!("{}.lock", release.codename()));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", lock_path.display())))?;
    flock(&lock, FlockOperation::LockExclusive).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("locking {}: {e}", lock_path.display()),
        )
    })?;
    let pruned = prune_replaced_trees(release, &cache);
    // Someone else may have built it while this waited for the lock.
    let built = match (pruned, read_ready(release, &cache)) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(ready)) => Ok(ready),
        (Ok(()), None) => build(release, &cache),
    };
    // The lock goes with the file; closing it is the unlock.
    drop(lock);
    built
}

/// The ready tree of `release` in `cache`, if its marker is there and reads.
fn read_ready(release: Release, cache: &Path) -> Option<Rootfs> {
    let path = cache.join(release.codename());
    let marker = fs::read_to_string(cache.join(format!("{}.ready", release.codename()))).ok()?;
    if !path.is_dir() {
        return None;
    }
    let mut rootfs = parse_marker(&marker, release, path)?;
    rootfs.built_now = false;
    Some(rootfs)
}

fn parse_marker(text: &str, release: Release, path: PathBuf) -> Option<Rootfs> {
    let field = |name: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_owned())
    };
    if field("release")? != release.codename() || field("recipe")? != recipe() {
        return None;
    }
    Some(Rootfs {
        release,
        path,
        chrony_version: field("chrony")?,
        systemd_version: field("systemd")?,
        build_time: Duration::from_secs_f64(field("build_seconds")?.parse().ok()?),
        built_now: true,
    })
}

fn render_marker(rootfs: &Rootfs) -> String {
    let built_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "# gnomon system lab: this tree is complete (written last)\n\
         release={}\nrecipe={}\nchrony={}\nsystemd={}\nbuild_seconds={:.1}\n\
         built_at_unix={built_at}\n",
        rootfs.release.codename(),
        recipe(),
        rootfs.chrony_version,
        rootfs.systemd_version,
        rootfs.build_time.as_secs_f64(),
    )
}

/// Replaced trees of `release` (`<codename>.old-*`).
fn replaced_trees(release: Release, cache: &Path) -> io::Result<Vec<PathBuf>> {
    let prefix = format!("{}.old-", release.codename());
    let entries = match fs::read_dir(cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("listing {}: {e}", cache.display()),
            ))
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect())
}

/// Removes the replaced trees no container runs on (the caller holds the
/// lock).
fn prune_replaced_trees(release: Release, cache: &Path) -> io::Result<()> {
    let trees = replaced_trees(release, cache)?;
    if trees.is_empty() {
        return Ok(());
    }
    // A container that does not say which tree it runs on keeps them all.
    let Some(in_use) = trees_in_use()? else {
        return Ok(());
    };
    for tree in trees {
        if !in_use.contains(&tree_id(&tree)?) {
            super::remove_tree(&tree)?;
        }
    }
    Ok(())
}

/// The [`tree_id`]s recorded by every container directory there is (of
/// any run: a dead run's are removed by its cleanup, and then free theirs);
/// `None` when a container directory has no record.
fn trees_in_use() -> io::Result<Option<std::collections::BTreeSet<String>>> {
    let containers = super::lab_dir()?.join("containers");
    let entries = match fs::read_dir(&containers) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Default::default())),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("listing {}: {e}", containers.display()),
            ))
        }
    };
    let mut ids = std::collections::BTreeSet::new();
    for entry in entries {
        match fs::read_to_string(entry?.path().join(IN_USE_FILE)) {
            Ok(id) => ids.insert(id.trim().to_owned()),
            Err(_) => return Ok(None),
        };
    }
    Ok(Some(ids))
}

/// Builds the tree (the caller holds the lock): debootstrap into a build
/// directory, the container changes, the versions, the rename, the marker.
fn build(release: Release, cache: &Path) -> io::Result<Rootfs> {
    let codename = release.codename();
    let final_dir = cache.join(codename);
    // A tree without its marker or of another recipe: aside, for removal
    // once no container runs on it.
    if final_dir.exists() {
        let aside = cache.join(format!(
            "{codename}.old-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        fs::rename(&final_dir, &aside).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "putting the outdated {} aside as {}: {e}",
                    final_dir.display(),
                    aside.display()
                ),
            )
        })?;
        prune_replaced_trees(release, cache)?;
    }
    // Leftovers of killed builds (debootstrap may have left /proc and /sys
    // mounted in them).
    let build_prefix = format!("{codename}.build-");
    for entry in fs::read_dir(cache)
        .map_err(|e| io::Error::new(e.kind(), format!("listing {}: {e}", cache.display())))?
    {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&build_prefix)
        {
            super::remove_tree(&entry.path())?;
        }
    }

    let mirror = debian_mirror()?;
    let debootstrap = crate::programs::find(
        "debootstrap",
        None,
        &["/usr/sbin", "/sbin"],
        "install debootstrap (apt-get install debootstrap)",
    )?;
    if !Path::new(KEYRING).is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "building the {release} root file system: no {KEYRING} (apt-get install \
                 debian-archive-keyring)"
            ),
        ));
    }
    let build_dir = cache.join(format!("{build_prefix}{}", std::process::id()));
    let log_path = cache.join(format!("{codename}.debootstrap.log"));
    let started = Instant::now();
    let result = (|| {
        debootstrap_into(&debootstrap, release, &mirror, &build_dir, &log_path)?;
        customize(&build_dir)?;
        let rootfs = Rootfs {
            release,
            path: final_dir.clone(),
            chrony_version: package_version(&build_dir, "chrony")?,
            systemd_version: package_version(&build_dir, "systemd")?,
            build_time: started.elapsed(),
            built_now: true,
        };
        fs::rename(&build_dir, &final_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "moving {} into place as {}: {e}",
                    build_dir.display(),
                    final_dir.display()
                ),
            )
        })?;
        write_atomically(
            &cache.join(format!("{codename}.ready")),
            render_marker(&rootfs).as_bytes(),
        )?;
        Ok(rootfs)
    })();
    if result.is_err() {
        // Best effort: the next build removes whatever this leaves anyway.
        let _ = super::remove_tree(&build_dir);
    }
    result
}

fn debootstrap_into(
    debootstrap: &Path,
    release: Release,
    mirror: &str,
    dir: &Path,
    log_path: &Path,
) -> io::Result<()> {
    let log = File::create(log_path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", log_path.display())))?;
    let mut command = Command::new(debootstrap);
    command
        .args(["--variant=minbase", "--components=main"])
        .arg(format!("--include={}", INCLUDE.join(",")))
        .arg(format!("--keyring={KEYRING}"))
        .arg(release.codename())
        .arg(dir)
        .arg(mirror)
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let line = super::command_line(&command);
    let status = command
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{line}`: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines
        .get(lines.len().saturating_sub(LOG_TAIL_LINES)..)
        .unwrap_or_default()
        .join("\n");
    Err(io::Error::other(format!(
        "building the {release} root file system: `{line}` failed ({status}); \
         full output in {}:\n{tail}",
        log_path.display()
    )))
}

/// The container-only changes (see the module documentation).
fn customize(root: &Path) -> io::Result<()> {
    let at = |path: &str| root.join(path.trim_start_matches('/'));

    let drop_in = at(CHRONY_DROP_IN);
    if let Some(parent) = drop_in.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", parent.display())))?;
    }
    write_atomically(&drop_in, CHRONY_DROP_IN_TEXT.as_bytes())?;

    let conf_path = at(CHRONY_CONF);
    let conf = fs::read_to_string(&conf_path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", conf_path.display())))?;
    let quiet = comment_out_pools(&conf);
    if let Some(line) = quiet.lines().find(|line| is_source_line(line)) {
        return Err(io::Error::other(format!(
            "{}: '{line}' would send NTP traffic out of the lab",
            conf_path.display()
        )));
    }
    write_atomically(&conf_path, quiet.as_bytes())?;

    write_atomically(&at("/etc/hostname"), format!("{HOSTNAME}\n").as_bytes())?;
    write_atomically(&at("/etc/machine-id"), b"")?;
    Ok(())
}

/// chrony.conf with every `pool` line commented out, saying why.
fn comment_out_pools(conf: &str) -> String {
    let mut out = String::with_capacity(conf.len() + 64);
    for line in conf.lines() {
        if line.split_whitespace().next() == Some("pool") {
            out.push_str(POOL_COMMENT);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A chrony directive that names a time source to reach over the network.
fn is_source_line(line: &str) -> bool {
    matches!(
        line.split_whitespace().next(),
        Some("pool" | "server" | "peer")
    )
}

fn package_version(root: &Path, package: &str) -> io::Result<String> {
    let out = super::run(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f=${Version}", package]),
        &format!("reading the version of {package} in {}", root.display()),
    )?;
    Ok(out.trim().to_owned())
}

/// Writes `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("gnomon-lab-tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// The Debian mirror this machine's apt uses, as a URI for debootstrap: the
/// first `URIs:` of an enabled `deb` entry in /etc/apt/sources.list.d/*.sources
/// (then `deb` lines in /etc/apt/sources.list and sources.list.d/*.list) whose
/// suites include a plain Debian code name (`bookworm`, not
/// `bookworm-security`), with component `main`, signed (if `Signed-By` is
/// given) by Debian's archive keyring: the Debian archive, not a
/// third-party repository.
pub fn debian_mirror() -> io::Result<String> {
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut listed: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("sources" | "list")
                )
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("listing {}: {e}", dir.display()),
            ))
        }
    };
    listed.sort();
    let (deb822, one_line): (Vec<PathBuf>, Vec<PathBuf>) = listed
        .into_iter()
        .partition(|p| p.extension().and_then(|e| e.to_str()) == Some("sources"));
    let mut files = Vec::new();
    for path in deb822 {
        files.push(read_source_file(path)?);
    }
    for path in std::iter::once(PathBuf::from("/etc/apt/sources.list")).chain(one_line) {
        if path.exists() {
            files.push(read_source_file(path)?);
        }
    }
    mirror_from_sources(&files).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no Debian archive mirror in this machine's apt configuration (looked for a \
                 `deb` entry with a Debian code name as suite and component main in {}): \
                 the system lab builds its root file systems from it",
                files
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

fn read_source_file(path: PathBuf) -> io::Result<(PathBuf, String)> {
    let text = fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    Ok((path, text))
}

/// Code names a Debian archive entry has as a suite.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// The first Debian archive URI in apt source files, given as (path, text);
/// `.sources` files are deb822, anything else one-line `deb` entries.
pub fn mirror_from_sources(files: &[(PathBuf, String)]) -> Option<String> {
    files.iter().find_map(|(path, text)| {
        if path.extension().and_then(|e| e.to_str()) == Some("sources") {
            mirror_from_deb822(text)
        } else {
            mirror_from_one_line(text)
        }
    })
}

fn is_debian_entry<'a>(
    types: impl IntoIterator<Item = &'a str>,
    suites: impl IntoIterator<Item = &'a str>,
    components: impl IntoIterator<Item = &'a str>,
    signed_by: Option<&str>,
) -> bool {
    types.into_iter().any(|t| t == "deb")
        && suites.into_iter().any(|s| DEBIAN_SUITES.contains(&s))
        && components.into_iter().any(|c| c == "main")
        && signed_by.is_none_or(|key| key.contains("debian-archive-keyring"))
}

fn usable_uri(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

fn mirror_from_deb822(text: &str) -> Option<String> {
    // Paragraphs are separated by blank lines; a field continues on lines
    // that start with white space; `#` lines are comments.
    let mut paragraphs: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if paragraphs.last().is_some_and(|p| !p.is_empty()) {
                paragraphs.push(Vec::new());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let paragraph = paragraphs.last_mut()?;
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = paragraph.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            paragraph.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    paragraphs.iter().find_map(|fields| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let enabled = get("enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let debian = is_debian_entry(
            get("types").unwrap_or_default().split_whitespace(),
            get("suites").unwrap_or_default().split_whitespace(),
            get("components").unwrap_or_default().split_whitespace(),
            get("signed-by"),
        );
        if !(enabled && debian) {
            return None;
        }
        get("uris")?
            .split_whitespace()
            .find(|uri| usable_uri(uri))
            .map(str::to_owned)
    })
}

fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace().peekable();
        let kind = words.next()?;
        // Options: `[arch=amd64 signed-by=/path]`, possibly split by spaces.
        let mut signed_by = None;
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for word in words.by_ref() {
                let option = word.trim_start_matches('[').trim_end_matches(']');
                if let Some(key) = option.strip_prefix("signed-by=") {
                    signed_by = Some(key.to_owned());
                }
                if word.ends_with(']') {
                    break;
                }
            }
        }
        let uri = words.next()?;
        let suite = words.next()?;
        let components: Vec<&str> = words.collect();
        (is_debian_entry([kind], [suite], components, signed_by.as_deref()) && usable_uri(uri))
            .then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# a comment line
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    fn files(entries: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        entries
            .iter()
            .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
            .collect()
    }

    #[test]
    fn the_debian_archive_is_found_in_deb822() {
        assert_eq!(
            mirror_from_sources(&files(&[("/a/debian.sources", DEB822)])).as_deref(),
            Some("http://mirror.example/debian")
        );
        let mut paragraphs: Vec<&str> = DEB822.split("\n\n").collect();
        paragraphs.reverse();
        let security_first = paragraphs.join("\n\n");
        assert_eq!(
            mirror_from_sources(&files(&[("/a/debian.sources", &security_first)])).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn third_party_disabled_and_security_entries_are_not_the_archive() {
        let third_party = "Types: deb\nURIs: https://vendor.example/node_20.x\n\
                           Suites: nodistro\nComponents: main\n";
        let vendor_keyring = "Types: deb\nURIs: https://vendor.example/debian\n\
                              Suites: bookworm\nComponents: stable main\n\
                              Signed-By: /usr/share/keyrings/vendor.gpg\n";
        let disabled = "Enabled: no\nTypes: deb\nURIs: http://old.example/debian\n\
                        Suites: bookworm\nComponents: main\n";
        let source_only = "Types: deb-src\nURIs: http://src.example/debian\n\
                           Suites: bookworm\nComponents: main\n";
        let security = "deb http://mirror.example/debian-security bookworm-security main\n";
        let list = "deb https://packages.vendor.example/apt cloud-sdk-bookworm main\n";
        assert_eq!(
            mirror_from_sources(&files(&[
                ("/a/1.sources", third_party),
                ("/a/2.sources", vendor_keyring),
                ("/a/3.sources", disabled),
                ("/a/4.sources", source_only),
                ("/a/sources.list", security),
                ("/a/x.list", list),
            ])),
            None
        );
    }

    #[test]
    fn one_line_entries_with_options_are_read() {
        let text = "# comment\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                    http://mirror.example/debian bookworm main contrib\n";
        assert_eq!(
            mirror_from_sources(&files(&[("/etc/apt/sources.list", text)])).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_from_sources(&files(&[(
                "/etc/apt/sources.list",
                "deb [ arch=amd64 ] http://m.example/debian trixie main\n"
            )]))
            .as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn pool_lines_are_commented_out_and_sourcedirs_kept() {
        let conf = "confdir /etc/chrony/conf.d\n# Use Debian vendor zone.\n\
                    pool 2.pool.example iburst\nsourcedir /run/chrony-dhcp\n";
        let quiet = comment_out_pools(conf);
        assert!(!quiet.lines().any(is_source_line), "{quiet}");
        assert!(quiet.contains(&format!("{POOL_COMMENT}pool 2.pool.example iburst")));
        assert!(quiet.lines().any(|l| l == "sourcedir /run/chrony-dhcp"));
        assert!(quiet.lines().any(|l| l == "confdir /etc/chrony/conf.d"));
    }

    #[test]
    fn the_marker_reads_back() {
        let rootfs = Rootfs {
            release: Release::Trixie,
            path: PathBuf::from("/x/trixie"),
            chrony_version: "4.6.1-3".to_owned(),
            systemd_version: "257.13-1".to_owned(),
            build_time: Duration::from_secs(98),
            built_now: true,
        };
        let text = render_marker(&rootfs);
        assert_eq!(
            parse_marker(&text, Release::Trixie, rootfs.path.clone()),
            Some(rootfs.clone())
        );
        assert_eq!(
            parse_marker(&text, Release::Bookworm, rootfs.path.clone()),
            None
        );
        let other_recipe = text.replace(&recipe(), "v0:systemd");
        assert_eq!(
            parse_marker(&other_recipe, Release::Trixie, rootfs.path.clone()),
            None
        );
        assert_eq!(
            parse_marker("release=trixie\n", Release::Trixie, rootfs.path),
            None
        );
    }

    #[test]
    fn releases_have_their_names() {
        for release in Release::ALL {
            assert_eq!(Release::from_codename(release.codename()), Some(release));
        }
        assert_eq!(Release::Trixie.to_string(), "Debian 13 (trixie)");
    }
}
