//! The system lab: whole Debian systems (Debian 12 "bookworm" and Debian 13
//! "trixie") booted under systemd-nspawn, with their own systemd, journald,
//! D-Bus and chrony, for tests that install gnomon's package as an operator
//! would and watch it run under a real init.
//!
//! - [`rootfs`] owns the cached root file systems, built once per release
//!   with debootstrap from the Debian mirror this machine's apt uses, under
//!   `<target>/system-lab/rootfs/`;
//! - [`container`] owns the booted containers: an overlayfs on the cached
//!   tree per container (the tree itself is never written), systemd-nspawn
//!   with loopback-only networking or a [`crate::netns`] lab host, and
//!   everything they leave behind (mounts, cgroups, processes, directories)
//!   removed at shutdown, on a test's panic, or by
//!   [`container::cleanup_stale`] after a killed run.
//!
//! Everything here needs root, systemd-nspawn (`systemd-container`),
//! debootstrap, overlayfs and cgroup2; what is missing is an error that says
//! what to install, never a skip. Nothing reaches the network but
//! debootstrap, on the host, fetching packages while it builds a root file
//! system; containers see loopback or a lab namespace only.

pub mod container;
pub mod rootfs;

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

pub use container::{cleanup_stale, Bind, Container, ContainerSpec, Network};
pub use rootfs::{Release, Rootfs};

/// `<target>/system-lab`: the workspace's target directory
/// (`$CARGO_TARGET_DIR`, relative to the workspace root when relative, else
/// `<workspace>/target`) holds the cached root file systems and the
/// containers' directories.
pub fn lab_dir() -> io::Result<PathBuf> {
    let workspace = workspace_root()?;
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    Ok(target.join("system-lab"))
}

/// The directory holding `Cargo.lock`, from this crate's manifest directory
/// upwards.
fn workspace_root() -> io::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "system lab: no Cargo.lock in {} or above it, so no workspace target \
                     directory for the root file systems",
                    manifest.display()
                ),
            )
        })
}

/// The system lab needs root: overlayfs mounts, cgroups, systemd-nspawn.
fn require_root(what: &str) -> io::Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} needs root (debootstrap, overlayfs mounts, cgroups and systemd-nspawn); \
                 run the test as root: it fails rather than skips"
            ),
        ))
    }
}

/// Runs a command to completion; the error names `what`, the command line,
/// its exit status and its output.
fn run(command: &mut Command, what: &str) -> io::Result<String> {
    let line = command_line(command);
    let out = command
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run `{line}` ({e})")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{what}: `{line}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Mount points at or below `dir` in this process's mount namespace
/// (`/proc/self/mountinfo`), deepest first: the order to unmount them in.
fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io::Error::new(e.kind(), format!("reading /proc/self/mountinfo: {e}")))?;
    let mut found: Vec<PathBuf> = parse_mount_points(&info)
        .into_iter()
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found.dedup();
    Ok(found)
}

/// The mount point (fifth field, octal escapes undone) of every line of a
/// mountinfo file.
fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style
/// octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| byte == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or below `dir`, deepest first (a lazy unmount
/// when a plain one is refused), and checks that nothing is left.
fn unmount_all_under(dir: &Path) -> io::Result<()> {
    for point in mounts_under(dir)? {
        let plain = Command::new("umount").arg(&point).output();
        let unmounted = matches!(&plain, Ok(out) if out.status.success());
        if !unmounted {
            run(
                Command::new("umount").arg("--lazy").arg(&point),
                &format!(
                    "unmounting {} (a plain umount was refused)",
                    point.display()
                ),
            )?;
        }
    }
    let left = mounts_under(dir)?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "still mounted under {} after unmounting: {}",
            dir.display(),
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Removes a directory tree, but only once nothing is mounted below it: a
/// recursive delete must never reach into a mounted file system (a bind
/// mount of a host directory, the container's /proc).
fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    unmount_all_under(dir)?;
    fs::remove_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("removing {}: {e}", dir.display())))
}

/// The pid in a `<prefix><pid>-...` name, if the name has that shape.
fn creator_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped_and_filtered() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:40 / /tmp/a\\040b/merged rw - overlay overlay rw\n\
                    41 40 0:41 / /tmp/a\\040b/merged/proc rw - proc proc rw\n\
                    42 22 0:42 / /tmp/other rw - tmpfs tmpfs rw\n";
        let points = parse_mount_points(info);
        assert_eq!(points.len(), 4);
        assert_eq!(points[1], PathBuf::from("/tmp/a b/merged"));
        assert_eq!(unescape_mountinfo("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape_mountinfo("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn the_creator_pid_is_read_from_the_name() {
        assert_eq!(creator_pid("gls-1234-0-boot", "gls-"), Some(1234));
        assert_eq!(creator_pid("gls-x-0-boot", "gls-"), None);
        assert_eq!(creator_pid("other-1234-0", "gls-"), None);
        assert_eq!(creator_pid("gls-1234", "gls-"), None);
    }

    #[test]
    fn the_lab_dir_is_in_the_target_dir() {
        let dir = lab_dir().unwrap();
        assert!(dir.ends_with("system-lab"), "{}", dir.display());
    }
}
