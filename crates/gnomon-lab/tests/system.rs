//! The system lab on real systems: Debian 12 (bookworm) and Debian 13
//! (trixie) booted under systemd-nspawn from the cached root file systems,
//! checked with data read inside (systemd's state, chronyd's /proc entries,
//! the interfaces, the capability bounding set, versions), gnomon's package
//! installed offline as an operator would, and nothing left on this
//! machine after shutdown: no mount, no process, no cgroup, no directory.
//!
//! Needs root, systemd-nspawn (systemd-container), debootstrap, overlayfs
//! and cgroup2, and the package built by `deploy/build-deb`; fails loudly
//! without any of them. The first run builds both root file systems
//! (debootstrap from this machine's Debian mirror, a few minutes each);
//! tests needing the same one wait for a single build.
//!
//! The stale-cleanup test re-executes this binary with [`ROLE_ENV`] set to
//! boot a container in a child process that is then killed with SIGKILL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, SystemTime},
};

use gnomon_lab::{
    netns::{Topology, TopologySpec},
    system::{
        container::{cgroup_processes, cleanup_stale, leftovers},
        lab_dir, Container, ContainerSpec, Network, Release,
    },
};

/// Set in a re-executed test binary: boot a container, say its name, wait.
const ROLE_ENV: &str = "GNOMON_SYSTEM_TEST_ROLE";
/// CAP_SYS_TIME's bit in a capability set.
const CAP_SYS_TIME: u32 = 25;

fn boot(release: Release, machine: &str) -> Container {
    let container = Container::boot(ContainerSpec::new(release, machine))
        .unwrap_or_else(|e| panic!("booting {release} ({machine}): {e}"));
    let rootfs = container.rootfs();
    println!(
        "{release}: root file system {} ({}, chrony {}, systemd {}, built in {:.1} s{}); \
         container {} booted in {:.2} s",
        rootfs.path.display(),
        if rootfs.built_now {
            "built now"
        } else {
            "cached"
        },
        rootfs.chrony_version,
        rootfs.systemd_version,
        rootfs.build_time.as_secs_f64(),
        if rootfs.built_now { "" } else { " earlier" },
        container.name(),
        container.boot_time().as_secs_f64(),
    );
    container
}

/// Shuts the container down and checks, with data, that nothing of it is
/// left: no mount under its directory in /proc/self/mountinfo, none of its
/// processes (systemd-nspawn, its cgroups, its pid namespace: pid and start
/// time), no cgroup, no directory, no loop device.
fn shut_down_without_a_trace(container: Container) {
    let name = container.name().to_owned();
    let dir = container.dir().to_owned();
    let processes = container.processes().unwrap();
    let leader = container.leader_pid().unwrap();
    assert!(
        processes.iter().any(|p| p.pid == leader),
        "{name}: PID 1 ({leader}) not among {processes:?}"
    );
    assert!(processes.iter().any(|p| p.pid == container.nspawn_pid()));
    assert!(dir.join("merged").is_dir());
    assert!(mountinfo_points().iter().any(|p| p.starts_with(&dir)));

    container
        .shutdown()
        .unwrap_or_else(|e| panic!("shutting {name} down: {e}"));

    let mounts: Vec<PathBuf> = mountinfo_points()
        .into_iter()
        .filter(|p| p.starts_with(&dir))
        .collect();
    assert!(mounts.is_empty(), "{name} left mounts: {mounts:?}");
    assert!(!dir.exists(), "{name} left {}", dir.display());
    let alive: Vec<_> = processes.iter().filter(|p| p.exists()).collect();
    assert!(alive.is_empty(), "{name} left processes {alive:?}");
    let left = leftovers(&name).unwrap();
    assert!(left.is_empty(), "{name} left {left:?}");
    let loops = loop_devices_under(&dir);
    assert!(loops.is_empty(), "{name} left loop devices {loops:?}");
}

fn mountinfo_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .collect()
}

/// Loop devices whose backing file is under `dir`.
fn loop_devices_under(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|file| Path::new(file.trim()).starts_with(dir))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `Key:\tvalue...` line of a /proc status file.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in\n{status}"))
        .trim()
}

fn uid_of(container: &Container, user: &str) -> u32 {
    let passwd = text(&container.read_file("/etc/passwd").unwrap());
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields[0] == user)
        .unwrap_or_else(|| panic!("no user {user} in the container's /etc/passwd"))[2]
        .parse()
        .unwrap()
}

fn boots_with_chrony_as_chrony_user(release: Release, chrony_series: &str, systemd: &str) {
    let container = boot(release, &format!("{}-chrony", release.codename()));

    let state = container
        .systemctl(&["is-system-running"])
        .map(|out| text(&out.stdout))
        .unwrap();
    assert_eq!(state.trim(), "running", "{release}");

    // chronyd runs as _chrony, with -x, started by chrony.service.
    assert_eq!(
        container.unit_state("is-active", "chrony").unwrap(),
        "active"
    );
    let main_pid = container
        .systemctl_ok(&["show", "-p", "MainPID", "--value", "chrony"])
        .unwrap();
    let main_pid: u32 = main_pid.trim().parse().unwrap();
    assert_ne!(main_pid, 0, "{release}: chrony.service has no main process");
    let status = container
        .exec_ok(&["cat", &format!("/proc/{main_pid}/status")])
        .unwrap();
    assert_eq!(status_field(&status, "Name"), "chronyd", "{status}");
    let chrony_uid = uid_of(&container, "_chrony");
    let uids: Vec<u32> = status_field(&status, "Uid")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids, vec![chrony_uid; 4], "{release}: chronyd's Uid line");
    let cmdline = container
        .exec_ok(&["cat", &format!("/proc/{main_pid}/cmdline")])
        .unwrap();
    let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
    assert_eq!(args.first(), Some(&"/usr/sbin/chronyd"), "{args:?}");
    assert!(
        args.contains(&"-x"),
        "{release}: chronyd without -x: {args:?}"
    );

    // chronyd's own journal entries, under chrony.service.
    let journal = container.journal("chrony").unwrap();
    assert!(
        journal.iter().any(|e| e.field("_COMM") == Some("chronyd")
            && e.field("_SYSTEMD_UNIT") == Some("chrony.service")),
        "{release}: no journal entry from chronyd in {} entries",
        journal.len()
    );

    // No source at all: Debian's pool is commented out.
    let sources = container
        .exec_ok(&["chronyc", "-n", "-c", "sources"])
        .unwrap();
    let sources: Vec<&str> = sources.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        sources.is_empty(),
        "{release}: chrony has sources {sources:?}"
    );
    let conf = text(&container.read_file("/etc/chrony/chrony.conf").unwrap());
    assert!(
        !conf
            .lines()
            .any(|l| l.split_whitespace().next() == Some("pool")),
        "{conf}"
    );
    assert!(conf.lines().any(|l| l == "sourcedir /etc/chrony/sources.d"));

    // Loopback only.
    let addresses = container.exec_ok(&["ip", "-o", "addr"]).unwrap();
    let interfaces: BTreeSet<&str> = addresses
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(interfaces, BTreeSet::from(["lo"]), "{release}: {addresses}");
    let links = container.exec_ok(&["ip", "-o", "link"]).unwrap();
    assert_eq!(links.lines().count(), 1, "{release}: {links}");

    // CAP_SYS_TIME is not in PID 1's bounding set, so in no process's.
    let init_status = text(&container.read_file("/proc/1/status").unwrap());
    let bounding = u64::from_str_radix(status_field(&init_status, "CapBnd"), 16).unwrap();
    assert_eq!(
        bounding & (1 << CAP_SYS_TIME),
        0,
        "{release}: CapBnd {bounding:016x} has CAP_SYS_TIME"
    );
    let chronyd_bounding = u64::from_str_radix(status_field(&status, "CapBnd"), 16).unwrap();
    assert_eq!(chronyd_bounding & (1 << CAP_SYS_TIME), 0);

    // The release's versions.
    let version = container.exec_ok(&["chronyd", "--version"]).unwrap();
    let version = version
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {version}"))
        .to_owned();
    assert!(
        version.starts_with(&format!("{chrony_series}.")) || version == chrony_series,
        "{release}: chrony {version}, expected {chrony_series}.x"
    );
    assert!(container.rootfs().chrony_version.starts_with(&version));
    let systemctl_version = container.exec_ok(&["systemctl", "--version"]).unwrap();
    assert!(
        systemctl_version.starts_with(&format!("systemd {systemd} ")),
        "{release}: {systemctl_version}"
    );
    println!(
        "{release}: chronyd {version} as uid {chrony_uid} with {args:?}; {}",
        systemctl_version.lines().next().unwrap_or_default()
    );

    shut_down_without_a_trace(container);
}

/// The newest `gnomon_*_amd64.deb` that `deploy/build-deb` made.
fn gnomon_package() -> PathBuf {
    let target = lab_dir().unwrap().parent().unwrap().to_owned();
    let dir = target.join("debian");
    let newest = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("gnomon_") && name.ends_with("_amd64.deb")
                })
                .max_by_key(|e| {
                    e.metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                })
                .map(|e| e.path())
        })
        .ok()
        .flatten();
    newest.unwrap_or_else(|| {
        panic!(
            "no gnomon_*_amd64.deb in {}: run deploy/build-deb first (this test installs \
             the package it builds; it never skips)",
            dir.display()
        )
    })
}

fn installs_gnomon_offline(release: Release) {
    let package = gnomon_package();
    let container = boot(release, &format!("{}-deb", release.codename()));
    let file_name = package.file_name().unwrap().to_string_lossy().into_owned();
    let inside = format!("/root/{file_name}");
    container.copy_in(&package, &inside).unwrap();

    // As an operator would, but with no network: every dependency must
    // already be there.
    let installed = container
        .exec_ok(&[
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            &inside,
        ])
        .unwrap_or_else(|e| panic!("{release}: installing {file_name}: {e}"));
    println!("{release}: apt-get install {file_name}:\n{installed}");
    // Nothing but the package itself: its dependencies and recommends were
    // all there (apt's --no-download refuses a local .deb; the container
    // has no network to download from anyway).
    let new_packages: Vec<&str> = installed
        .split("The following NEW packages will be installed:")
        .nth(1)
        .unwrap_or_else(|| panic!("{release}: apt installed nothing new:\n{installed}"))
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(new_packages, ["gnomon"], "{release}:\n{installed}");
    assert!(
        installed.contains("0 upgraded, 1 newly installed, 0 to remove"),
        "{release}:\n{installed}"
    );
    let status = container
        .exec_ok(&["dpkg-query", "-W", "-f=${Status} ${Version}", "gnomon"])
        .unwrap();
    assert!(
        status.starts_with("install ok installed"),
        "{release}: {status}"
    );

    let gnomon = container.exec_ok(&["getent", "passwd", "gnomon"]).unwrap();
    assert!(gnomon.starts_with("gnomon:"), "{gnomon}");
    assert_eq!(
        container.unit_state("is-enabled", "gnomond").unwrap(),
        "enabled",
        "{release}"
    );
    assert_eq!(
        container.unit_state("is-active", "gnomond").unwrap(),
        "inactive",
        "{release}"
    );
    // Started anyway, it waits for its configuration: the condition fails,
    // the unit stays inactive, and nothing is marked failed.
    assert!(container.read_file("/etc/gnomon/gnomon.toml").is_err());
    container.systemctl_ok(&["start", "gnomond"]).unwrap();
    let shown = container
        .systemctl_ok(&[
            "show",
            "-p",
            "ActiveState",
            "-p",
            "ConditionResult",
            "gnomond",
        ])
        .unwrap();
    let shown: BTreeSet<&str> = shown.lines().collect();
    assert_eq!(
        shown,
        BTreeSet::from(["ActiveState=inactive", "ConditionResult=no"]),
        "{release}"
    );
    let state = container
        .systemctl(&["is-system-running"])
        .map(|out| text(&out.stdout))
        .unwrap();
    assert_eq!(state.trim(), "running", "{release} after installing gnomon");

    shut_down_without_a_trace(container);
}

#[test]
fn bookworm_boots_with_chrony_as_chrony_user() {
    boots_with_chrony_as_chrony_user(Release::Bookworm, "4.3", "252");
}

#[test]
fn trixie_boots_with_chrony_as_chrony_user() {
    boots_with_chrony_as_chrony_user(Release::Trixie, "4.6", "257");
}

#[test]
fn bookworm_installs_gnomon_offline() {
    installs_gnomon_offline(Release::Bookworm);
}

#[test]
fn trixie_installs_gnomon_offline() {
    installs_gnomon_offline(Release::Trixie);
}

/// A container on a lab host: the host's namespace (lo and lab0 only), a
/// read-only bind mount, files written and read through the container's
/// root (its /run is its own tmpfs), commands as another user.
#[test]
fn bookworm_joins_a_lab_host_with_binds_files_and_users() {
    let address = Ipv4Addr::new(10, 199, 7, 2);
    let topology = Topology::create(TopologySpec::new().host("sys1", address)).unwrap();
    let shared = tempfile::tempdir().unwrap();
    fs::write(shared.path().join("hello"), "from the host\n").unwrap();
    let spec = ContainerSpec::new(Release::Bookworm, "bookworm-lab")
        .hostname("sys1")
        .network(Network::lab_host(&topology, "sys1").unwrap())
        .bind_ro(shared.path(), "/mnt/shared")
        .env("GNOMON_LAB_TEST", "yes");
    let container = Container::boot(spec).unwrap_or_else(|e| panic!("booting on sys1: {e}"));
    println!(
        "bookworm on lab host sys1: booted in {:.2} s",
        container.boot_time().as_secs_f64()
    );

    let addresses = container.exec_ok(&["ip", "-o", "-4", "addr"]).unwrap();
    let found: BTreeSet<(String, String)> = addresses
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Some(((*words.get(1)?).to_owned(), (*words.get(3)?).to_owned()))
        })
        .collect();
    assert_eq!(
        found,
        BTreeSet::from([
            ("lo".to_owned(), "127.0.0.1/8".to_owned()),
            ("lab0".to_owned(), format!("{address}/24")),
        ]),
        "{addresses}"
    );
    assert_eq!(container.exec_ok(&["hostname"]).unwrap().trim(), "sys1");
    assert_eq!(
        container.exec_ok(&["printenv", "GNOMON_LAB_TEST"]).unwrap(),
        "yes\n"
    );

    assert_eq!(
        container.exec_ok(&["cat", "/mnt/shared/hello"]).unwrap(),
        "from the host\n"
    );
    let refused = container
        .exec(&["sh", "-c", "echo x > /mnt/shared/written"])
        .unwrap();
    assert!(!refused.status.success(), "the read-only bind was written");
    assert!(!shared.path().join("written").exists());

    container
        .write_file("/run/gnomon-lab-test", b"in the container's /run\n", 0o640)
        .unwrap();
    assert_eq!(
        container
            .exec_ok(&["stat", "-c", "%a %U", "/run/gnomon-lab-test"])
            .unwrap(),
        "640 root\n"
    );
    assert_eq!(
        container.read_file("/run/gnomon-lab-test").unwrap(),
        b"in the container's /run\n"
    );
    // Not on the overlay: /run is the container's own tmpfs.
    assert!(!container.merged_dir().join("run/gnomon-lab-test").exists());
    // A symbolic link inside never leads out of the container.
    container
        .exec_ok(&["ln", "-s", "/etc/hostname", "/root/link"])
        .unwrap();
    assert_eq!(
        container.read_file("/root/link").unwrap(),
        container.read_file("/etc/hostname").unwrap()
    );
    container
        .copy_in(&shared.path().join("hello"), "/root/hello")
        .unwrap();
    assert_eq!(
        container.exec_ok(&["cat", "/root/hello"]).unwrap(),
        "from the host\n"
    );

    let who = container
        .exec_as_ok("_chrony", &["sh", "-c", "id -un; id -gn; echo $HOME"])
        .unwrap();
    assert_eq!(who, "_chrony\n_chrony\n/var/lib/chrony\n");
    let refused = container
        .exec_as("_chrony", &["sh", "-c", "echo x > /etc/x"])
        .unwrap();
    assert!(!refused.status.success());

    shut_down_without_a_trace(container);
    drop(topology);
}

/// The child's part of [`a_killed_run_leaves_nothing_after_cleanup_stale`]:
/// run normally, it does nothing.
#[test]
fn stale_role() {
    if std::env::var(ROLE_ENV).as_deref() != Ok("boot-and-wait") {
        return;
    }
    let container = Container::boot(ContainerSpec::new(Release::Bookworm, "stale")).unwrap();
    println!("CONTAINER {}", container.name());
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

/// A run killed with SIGKILL skips every Drop: its container keeps
/// running. `cleanup_stale` (also called by every boot) kills it and
/// removes its mounts, cgroups and directory.
#[test]
fn a_killed_run_leaves_nothing_after_cleanup_stale() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stale_role", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "boot-and-wait")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may have put "test stale_role ... " before it.
            if let Some((_, rest)) = line.split_once("CONTAINER ") {
                let _ = sender.send(rest.to_owned());
            }
        }
    });
    // A first run builds the root file system first.
    let line = receiver.recv_timeout(Duration::from_secs(1200));
    let Ok(line) = line else {
        let _ = child.kill();
        let status = child.wait();
        panic!("the child run booted no container: {line:?}, {status:?}");
    };
    let name = line.trim();
    let processes = cgroup_processes(name).unwrap();
    assert!(
        processes.len() > 2,
        "the child's container {name} is not running: {processes:?}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    cleanup_stale().unwrap();
    let alive: Vec<_> = processes.iter().filter(|p| p.exists()).collect();
    assert!(alive.is_empty(), "{name} left processes {alive:?}");
    let left = leftovers(name).unwrap();
    assert!(left.is_empty(), "{name} left {left:?}");
}
