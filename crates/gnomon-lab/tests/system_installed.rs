//! gnomon as installed: a booted Debian 12 and Debian 13 (systemd-nspawn,
//! loopback only) with gnomon's .deb installed as `docs/install.md` says,
//! chrony.service as `_chrony` under Debian's own unit, gnomond as `gnomon`
//! under its hardened unit. Three stand-ins for the LAN primary and two
//! IP-literal fallbacks are chronyd servers inside the container on
//! 127.0.0.2–4. Then what an operator and bad luck do to it: gnomond killed
//! and not restarted, stopped, failing with 78 at boot, started again over
//! the fail-safe, chrony restarted, the package removed. After each, chrony
//! must still have a usable, selectable source.
//!
//! Needs root, systemd-nspawn, debootstrap and the package built by
//! `deploy/build-deb`; fails, never skips, without them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use gnomon_core::config::{Config, NtpServerConfig};
use gnomon_lab::system::{Container, ContainerSpec, Release};
use serde_json::Value;

const PORT: u16 = 11123;
const PRIMARY: &str = "127.0.0.2";
const FALLBACKS: [&str; 2] = ["127.0.0.3", "127.0.0.4"];

/// The newest package `deploy/build-deb` made for this machine.
fn package() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run deploy/build-deb first", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gnomon_") && n.ends_with("_amd64.deb"))
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap());
    debs.pop().unwrap_or_else(|| {
        panic!(
            "no gnomon_*_amd64.deb in {}: run deploy/build-deb first",
            dir.display()
        )
    })
}

fn server(address: &str) -> NtpServerConfig {
    NtpServerConfig {
        port: Some(PORT),
        minpoll: Some(-2),
        maxpoll: Some(-2),
        ..NtpServerConfig::new(address)
    }
}

/// srv1's configuration with the lab's addresses; every path the default.
fn gnomon_toml() -> String {
    let mut config = Config::example_client();
    config.primary.servers = vec![server(PRIMARY)];
    config.fallback.servers = FALLBACKS.iter().map(|a| server(a)).collect();
    config.fallback.peers = Vec::new();
    toml::to_string(&config).unwrap()
}

/// A stratum-1 stand-in on its own clock: chronyd as a transient service.
fn start_stand_in(c: &Container, name: &str, address: &str) {
    let conf = format!(
        "port {PORT}\nbindaddress {address}\ncmdport 0\nbindcmdaddress /run/lab-{name}.sock\n\
         pidfile /run/lab-{name}.pid\nlocal stratum 1\nallow 127.0.0.0/8\n"
    );
    let path = format!("/etc/gnomon-lab/{name}.conf");
    c.exec_ok(&["mkdir", "-p", "/etc/gnomon-lab"]).unwrap();
    c.write_file(&path, conf.as_bytes(), 0o644).unwrap();
    c.exec_ok(&[
        "systemd-run",
        &format!("--unit=lab-{name}"),
        "/usr/sbin/chronyd",
        "-d",
        "-x",
        "-u",
        "root",
        "-f",
        &path,
    ])
    .unwrap();
}

/// chrony's sources as `chronyc -c -n sources` lists them:
/// (address, state character).
fn chrony_sources(c: &Container) -> Vec<(String, char)> {
    let out = c.exec_ok(&["chronyc", "-c", "-n", "sources"]).unwrap();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let state = f.get(1)?.chars().next()?;
            Some((f.get(2)?.to_string(), state))
        })
        .collect()
}

/// chrony has a selected source, and no source is `noselect` (`?` is
/// what chrony shows for noselect and for a source without samples).
fn all_selectable_and_synced(sources: &[(String, char)]) -> bool {
    sources.len() == 3
        && sources.iter().any(|(_, s)| *s == '*')
        && sources.iter().all(|(_, s)| *s != '?' && *s != 'x')
}

/// What the container shows when a wait times out.
fn diagnose(c: &Container) -> String {
    let run = |args: &[&str]| match c.exec(args) {
        Ok(o) => format!(
            "$ {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("$ {}: {e}\n", args.join(" ")),
    };
    [
        run(&["chronyc", "-n", "sources"]),
        run(&["chronyc", "tracking"]),
        run(&["cat", "/run/gnomon/chrony/gnomon.sources"]),
        run(&["gnomonctl", "status"]),
        run(&[
            "systemctl",
            "status",
            "--no-pager",
            "-l",
            "-n",
            "0",
            "gnomond",
        ]),
        run(&[
            "journalctl",
            "-n",
            "40",
            "--no-pager",
            "-u",
            "gnomond",
            "-u",
            "chrony",
        ]),
    ]
    .concat()
}

fn wait_for<T>(
    c: &Container,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}\n{}",
            diagnose(c)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sources_file(c: &Container) -> String {
    String::from_utf8(
        c.read_file("/run/gnomon/chrony/gnomon.sources")
            .unwrap_or_default(),
    )
    .unwrap()
}

fn is_failsafe(text: &str) -> bool {
    text.starts_with("# gnomon fail-safe")
}

fn status(c: &Container) -> Value {
    let out = c.exec_ok(&["gnomonctl", "status", "--json"]).unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("gnomonctl status --json: {e}: {out}"))
}

/// A unit's property (`systemctl show -p NAME --value UNIT`).
fn property(c: &Container, name: &str, unit: &str) -> String {
    c.systemctl_ok(&["show", "-p", name, "--value", unit])
        .unwrap()
        .trim()
        .to_owned()
}

/// The uid a process of a unit runs as, from /proc inside.
fn main_uid(c: &Container, unit: &str) -> u32 {
    let pid = property(c, "MainPID", unit);
    let status = c.exec_ok(&["cat", &format!("/proc/{pid}/status")]).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

fn uid_of(c: &Container, user: &str) -> u32 {
    c.exec_ok(&["id", "-u", user])
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

struct Figures(Vec<(String, String)>);

impl Figures {
    fn add(&mut self, what: &str, value: impl std::fmt::Display) {
        self.0.push((what.to_owned(), value.to_string()));
    }
}

/// srv1 booted with `deb` installed as docs/install.md says: the
/// stand-ins answering, gnomon.toml and the client snippet in place, chrony
/// restarted, gnomond started.
fn booted_client(release: Release, machine: &str, deb: &std::path::Path) -> Container {
    let c = Container::boot(ContainerSpec::new(release, machine).hostname("srv1")).unwrap();
    install_deb(&c, deb);
    for (name, address) in [
        ("primary", PRIMARY),
        ("fb1", FALLBACKS[0]),
        ("fb2", FALLBACKS[1]),
    ] {
        start_stand_in(&c, name, address);
    }
    c.write_file("/etc/gnomon/gnomon.toml", gnomon_toml().as_bytes(), 0o644)
        .unwrap();
    install_snippet(&c, "gnomon-client.conf", None, |t| t);
    c.exec_ok(&["gnomond", "--check-config", "/etc/gnomon/gnomon.toml"])
        .unwrap();
    c.systemctl_ok(&["restart", "chrony"]).unwrap();
    c.systemctl_ok(&["start", "gnomond"]).unwrap();
    c
}

fn client_as_installed(release: Release) {
    let c = booted_client(
        release,
        &format!("gnl-inst-{}", release.codename()),
        &package(),
    );
    let mut figures = Figures(Vec::new());
    figures.add("boot", format!("{:.1?}", c.boot_time()));
    assert_eq!(main_uid(&c, "gnomond"), uid_of(&c, "gnomon"));
    assert_eq!(main_uid(&c, "chrony"), uid_of(&c, "_chrony"));

    // Running: the primary selected, the fallbacks measured as noselect.
    let (_, took) = wait_for(
        &c,
        "chrony synchronised to the primary, fallbacks noselect",
        Duration::from_secs(60),
        || {
            let s = chrony_sources(&c);
            let primary = s.iter().any(|(a, st)| a == PRIMARY && *st == '*');
            let standby = FALLBACKS
                .iter()
                .all(|f| s.iter().any(|(a, st)| a == f && *st == '?'));
            (primary && standby).then_some(())
        },
    );
    figures.add(
        "start → chrony on the primary, fallbacks noselect",
        format!("{took:.1?}"),
    );
    let (_, took) = wait_for(
        &c,
        "gnomond judges the primary healthy",
        Duration::from_secs(30),
        || (status(&c)["status"]["state"] == "primary").then_some(()),
    );
    figures.add("then → gnomond in state primary", format!("{took:.1?}"));
    let check = c.exec(&["gnomonctl", "check", "--json"]).unwrap();
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let failed: Vec<&Value> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "fail")
        .collect();
    assert!(
        failed.is_empty(),
        "gnomonctl check as installed: {failed:?}"
    );
    let stored =
        String::from_utf8(c.read_file("/var/lib/gnomon/failsafe.sources").unwrap()).unwrap();
    assert!(is_failsafe(&stored), "{stored}");

    // gnomond killed and not restarted: chrony keeps every source selectable.
    c.exec_ok(&["mkdir", "-p", "/etc/systemd/system/gnomond.service.d"])
        .unwrap();
    c.write_file(
        "/etc/systemd/system/gnomond.service.d/test.conf",
        b"[Service]\nRestart=no\n",
        0o644,
    )
    .unwrap();
    c.systemctl_ok(&["daemon-reload"]).unwrap();
    // As the OOM killer or a crash would: the main process only (`systemctl
    // kill` on systemd 257 also kills the ExecStopPost= that follows).
    let pid = property(&c, "MainPID", "gnomond");
    c.exec_ok(&["kill", "-KILL", &pid]).unwrap();
    let (_, took) = wait_for(
        &c,
        "SIGKILL: fail-safe in place, every source selectable",
        Duration::from_secs(30),
        || {
            (is_failsafe(&sources_file(&c)) && all_selectable_and_synced(&chrony_sources(&c)))
                .then_some(())
        },
    );
    figures.add("SIGKILL → every source selectable", format!("{took:.1?}"));
    assert_ne!(property(&c, "ActiveState", "gnomond"), "active");

    // Started again over the fail-safe: it takes over without a dip.
    c.systemctl_ok(&["start", "gnomond"]).unwrap();
    let engaged = status(&c);
    assert_eq!(engaged["status"]["fallbacks_engaged"], true, "{engaged}");
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let s = chrony_sources(&c);
        assert!(
            all_selectable_and_synced(&s),
            "a dip while taking over: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        !is_failsafe(&sources_file(&c)),
        "gnomond did not write its own plan"
    );

    // systemctl stop.
    c.systemctl_ok(&["stop", "gnomond"]).unwrap();
    let (_, took) = wait_for(&c, "stop: fail-safe", Duration::from_secs(15), || {
        (is_failsafe(&sources_file(&c)) && all_selectable_and_synced(&chrony_sources(&c)))
            .then_some(())
    });
    figures.add(
        "systemctl stop → every source selectable",
        format!("{took:.1?}"),
    );

    // A broken configuration at boot: /run is empty, chrony starts before
    // gnomond, gnomond exits 78 and is not restarted.
    c.write_file("/etc/gnomon/gnomon.toml", b"role = \"clinet\"\n", 0o644)
        .unwrap();
    c.systemctl_ok(&["stop", "chrony"]).unwrap();
    c.exec_ok(&["rm", "-f", "/run/gnomon/chrony/gnomon.sources"])
        .unwrap();
    c.systemctl_ok(&["start", "chrony"]).unwrap();
    assert!(
        is_failsafe(&sources_file(&c)),
        "chrony started without the fail-safe"
    );
    let _ = c.systemctl(&["start", "gnomond"]);
    let (_, _) = wait_for(&c, "gnomond exits 78", Duration::from_secs(15), || {
        (property(&c, "ExecMainStatus", "gnomond") == "78").then_some(())
    });
    let (_, took) = wait_for(
        &c,
        "exit 78: every source selectable",
        Duration::from_secs(30),
        || all_selectable_and_synced(&chrony_sources(&c)).then_some(()),
    );
    figures.add(
        "chrony start with gnomond exiting 78 → synchronised",
        format!("{took:.1?}"),
    );

    // Good configuration again; chrony restarted under a running gnomond.
    c.write_file("/etc/gnomon/gnomon.toml", gnomon_toml().as_bytes(), 0o644)
        .unwrap();
    c.systemctl_ok(&["reset-failed", "gnomond"]).unwrap();
    c.systemctl_ok(&["start", "gnomond"]).unwrap();
    c.systemctl_ok(&["restart", "chrony"]).unwrap();
    let (_, took) = wait_for(
        &c,
        "chrony restarted: the plan back",
        Duration::from_secs(5),
        || {
            let s = chrony_sources(&c);
            (s.len() == 3 && s.iter().any(|(_, st)| *st == '*')).then_some(())
        },
    );
    figures.add(
        "systemctl restart chrony → a source selected",
        format!("{took:.1?}"),
    );

    operators(&c);
    reloads(&c);
    watchdog(&c, &mut figures);
    catalog(&c);

    // The package removed: chrony keeps the sources, also after a reboot's
    // empty /run.
    c.exec_ok(&["apt-get", "remove", "-y", "gnomon"]).unwrap();
    let left = c
        .read_file("/etc/chrony/sources.d/gnomon-failsafe.sources")
        .unwrap();
    assert!(is_failsafe(&String::from_utf8(left).unwrap()));
    c.exec_ok(&["rm", "-rf", "/run/gnomon"]).unwrap();
    c.systemctl_ok(&["restart", "chrony"]).unwrap();
    let (_, took) = wait_for(
        &c,
        "removed: every source selectable",
        Duration::from_secs(30),
        || all_selectable_and_synced(&chrony_sources(&c)).then_some(()),
    );
    figures.add(
        "apt remove + chrony restart → synchronised",
        format!("{took:.1?}"),
    );

    c.shutdown().unwrap();
    eprintln!(
        "as installed, Debian {} ({}):",
        release.version(),
        release.codename()
    );
    for (what, value) in &figures.0 {
        eprintln!("  {what}: {value}");
    }
}

/// A member of group gnomon reads the status; anyone else is refused (77).
fn operators(c: &Container) {
    c.exec_ok(&["useradd", "--system", "--groups", "gnomon", "gnl-alice"])
        .unwrap();
    c.exec_ok(&["useradd", "--system", "gnl-bob"]).unwrap();
    let alice = c
        .exec_as("gnl-alice", &["gnomonctl", "status", "--json"])
        .unwrap();
    assert!(
        alice.status.success(),
        "a member of gnomon: {}",
        String::from_utf8_lossy(&alice.stderr)
    );
    let bob = c.exec_as("gnl-bob", &["gnomonctl", "status"]).unwrap();
    assert_eq!(
        bob.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&bob.stderr)
    );
    let freeze = c
        .exec_as(
            "gnl-alice",
            &["gnomonctl", "freeze", "--reason", "not mine"],
        )
        .unwrap();
    assert_eq!(freeze.status.code(), Some(77), "a reader may not freeze");
}

fn fallback_count(c: &Container) -> usize {
    status(c)["status"]["fallbacks"].as_array().unwrap().len()
}

/// `systemctl reload gnomond`: a bad file is refused and the running
/// configuration kept; a good one is taken, without a restart.
fn reloads(c: &Container) {
    let pid = property(c, "MainPID", "gnomond");
    assert_eq!(fallback_count(c), 2);
    c.write_file("/etc/gnomon/gnomon.toml", b"[primary\n", 0o644)
        .unwrap();
    c.systemctl_ok(&["reload", "gnomond"]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(property(c, "ActiveState", "gnomond"), "active");
    assert_eq!(property(c, "MainPID", "gnomond"), pid);
    assert_eq!(fallback_count(c), 2, "a bad file changed the configuration");

    let mut config: Config = toml::from_str(&gnomon_toml()).unwrap();
    config.fallback.servers.push(server("127.0.0.5"));
    c.write_file(
        "/etc/gnomon/gnomon.toml",
        toml::to_string(&config).unwrap().as_bytes(),
        0o644,
    )
    .unwrap();
    c.systemctl_ok(&["reload", "gnomond"]).unwrap();
    wait_for(c, "the good file reloaded", Duration::from_secs(10), || {
        (fallback_count(c) == 3).then_some(())
    });
    assert_eq!(property(c, "MainPID", "gnomond"), pid);
    c.write_file("/etc/gnomon/gnomon.toml", gnomon_toml().as_bytes(), 0o644)
        .unwrap();
    c.systemctl_ok(&["reload", "gnomond"]).unwrap();
    wait_for(c, "the first file back", Duration::from_secs(10), || {
        (fallback_count(c) == 2).then_some(())
    });
}

/// A gnomond whose loop stops (SIGSTOP) is killed by systemd's watchdog and
/// started again (a test drop-in shortens WatchdogSec).
fn watchdog(c: &Container, figures: &mut Figures) {
    c.exec_ok(&[
        "rm",
        "-f",
        "/etc/systemd/system/gnomond.service.d/test.conf",
    ])
    .unwrap();
    c.write_file(
        "/etc/systemd/system/gnomond.service.d/watchdog.conf",
        b"[Service]\nWatchdogSec=3s\nRestartSec=1s\n",
        0o644,
    )
    .unwrap();
    c.systemctl_ok(&["daemon-reload"]).unwrap();
    c.systemctl_ok(&["restart", "gnomond"]).unwrap();
    let restarts: u32 = property(c, "NRestarts", "gnomond").parse().unwrap();
    let pid = property(c, "MainPID", "gnomond");
    c.exec_ok(&["kill", "-STOP", &pid]).unwrap();
    let (_, took) = wait_for(
        c,
        "the watchdog restarts gnomond",
        Duration::from_secs(60),
        || {
            let now: u32 = property(c, "NRestarts", "gnomond").parse().ok()?;
            (now > restarts
                && property(c, "ActiveState", "gnomond") == "active"
                && property(c, "MainPID", "gnomond") != pid)
                .then_some(())
        },
    );
    figures.add(
        "SIGSTOP → restarted by the watchdog (WatchdogSec=3s)",
        format!("{took:.1?}"),
    );
    let sources = chrony_sources(c);
    assert!(
        sources.iter().any(|(_, st)| *st == '*'),
        "chrony lost its source while gnomond was restarted: {sources:?}"
    );
    c.exec_ok(&[
        "rm",
        "-f",
        "/etc/systemd/system/gnomond.service.d/watchdog.conf",
    ])
    .unwrap();
    c.systemctl_ok(&["daemon-reload"]).unwrap();
}

/// `journalctl -x` shows the catalog's explanation under gnomon's alerts:
/// the alert that opened at start (the primary not answering yet) carries
/// a MESSAGE_ID whose catalog entry, from deploy/gnomon.catalog, is shown.
fn catalog(c: &Container) {
    let json = c
        .exec_ok(&["journalctl", "-u", "gnomond", "-o", "json", "--no-pager"])
        .unwrap();
    let id = json
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["GNOMON_ALERT"].is_string() && e["GNOMON_PHASE"] == "opened")
        .and_then(|e| e["MESSAGE_ID"].as_str().map(str::to_owned))
        .expect("no alert opened in gnomond's journal");
    let catalog = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gnomon.catalog"),
    )
    .unwrap();
    let subject = catalog
        .split(&format!("-- {id}\n"))
        .nth(1)
        .and_then(|entry| entry.lines().find_map(|l| l.strip_prefix("Subject: ")))
        .unwrap_or_else(|| panic!("no catalog entry for {id}"));
    let shown = c
        .exec_ok(&[
            "journalctl",
            "-x",
            "--no-pager",
            &format!("MESSAGE_ID={id}"),
        ])
        .unwrap();
    assert!(
        shown.contains(subject),
        "journalctl -x does not show {subject:?}:\n{shown}"
    );
}

#[test]
fn bookworm_client_as_installed_keeps_chrony_usable_whatever_gnomond_does() {
    client_as_installed(Release::Bookworm);
}

#[test]
fn trixie_client_as_installed_keeps_chrony_usable_whatever_gnomond_does() {
    client_as_installed(Release::Trixie);
}

/// The simulated hat and what reaches a container of it: its pty (at
/// /dev/ttyGNSS0) and a directory for the PPS socket (/run/gnomon-hat).
struct Hat {
    hat: gnomon_lab::gps_hat::GpsHat,
    pty: PathBuf,
    dir: tempfile::TempDir,
    _pulses: std::thread::JoinHandle<()>,
}

impl Hat {
    fn start() -> Hat {
        use gnomon_lab::gps_hat::{forward_pps, GpsHat, HatMode};
        use std::os::unix::fs::PermissionsExt;
        let hat = GpsHat::start(HatMode::Healthy).unwrap();
        let pty = std::fs::canonicalize(hat.device_path()).unwrap();
        std::fs::set_permissions(&pty, std::fs::Permissions::from_mode(0o666)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let pulses = forward_pps(hat.take_pps().unwrap(), dir.path().join("pps.sock")).unwrap();
        Hat {
            hat,
            pty,
            dir,
            _pulses: pulses,
        }
    }

    fn bind(&self, spec: ContainerSpec) -> ContainerSpec {
        let _ = &self.hat;
        spec.bind(&self.pty, "/dev/ttyGNSS0")
            .bind(self.dir.path(), "/run/gnomon-hat")
    }
}

/// `apt install ./PACKAGE` inside (every dependency is in the tree: no
/// network).
fn install_deb(c: &Container, deb: &std::path::Path) {
    let inside = format!("/root/{}", deb.file_name().unwrap().to_string_lossy());
    c.copy_in(deb, &inside).unwrap();
    c.exec_ok(&[
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confold",
        &inside,
    ])
    .unwrap();
}

fn install(c: &Container) {
    install_deb(c, &package());
}

/// gnomon's chrony snippet as the operator installs it: the `allow` line
/// edited for the network (`None`: as shipped).
fn install_snippet(
    c: &Container,
    name: &str,
    allow: Option<&str>,
    edit: impl Fn(String) -> String,
) {
    let shipped = String::from_utf8(
        c.read_file(&format!("/usr/share/gnomon/chrony/{name}"))
            .unwrap(),
    )
    .unwrap();
    let mut text = edit(shipped);
    if let Some(network) = allow {
        text = text.replace("allow 192.168.1.0/24", &format!("allow {network}"));
    }
    c.write_file("/etc/chrony/conf.d/gnomon.conf", text.as_bytes(), 0o644)
        .unwrap();
}

/// gps1's configuration: the hat through the container's paths, the given
/// fallbacks.
fn gps_config(
    fallbacks: Vec<NtpServerConfig>,
    thresholds: Option<gnomon_core::config::Thresholds>,
) -> Config {
    let mut config = Config::example_gps();
    config.fallback.servers = fallbacks;
    config.fallback.peers = Vec::new();
    if let Some(t) = thresholds {
        config.thresholds = t;
    }
    let gps = config.gps.get_or_insert_with(Default::default);
    gps.source = gnomon_core::config::GpsSourceKind::Serial;
    gps.device = "/dev/ttyGNSS0".to_owned();
    gps.baud_rate = 9600;
    gps.pps = gnomon_core::config::PpsKind::Socket;
    gps.pps_device = "/run/gnomon-hat/pps.sock".to_owned();
    config
}

/// The GPS host's set-up as docs/install.md says, with `noselect` dropped
/// from the NMEA refclock (there is no /dev/pps0 here, as on a host
/// without PPS) and a test drop-in for the simulated hat. Returns when
/// gnomond has started.
fn set_up_gps_host(c: &Container, config: &Config, allow: Option<&str>) {
    c.write_file(
        "/etc/gnomon/gnomon.toml",
        toml::to_string(config).unwrap().as_bytes(),
        0o644,
    )
    .unwrap();
    install_snippet(c, "gnomon-gps.conf", allow, |t| {
        t.replace("refid NMEA noselect", "refid NMEA")
    });
    c.exec_ok(&[
        "cp",
        "/usr/share/gnomon/chrony/gnomon-pps.conf",
        "/etc/chrony/gnomon-pps.conf",
    ])
    .unwrap();
    c.exec_ok(&["mkdir", "-p", "/etc/systemd/system/gnomond.service.d"])
        .unwrap();
    c.write_file(
        "/etc/systemd/system/gnomond.service.d/simulated-hat.conf",
        b"[Service]\nDeviceAllow=/dev/ttyGNSS0 rw\nReadWritePaths=/run/gnomon-hat\n",
        0o644,
    )
    .unwrap();
    c.systemctl_ok(&["daemon-reload"]).unwrap();
    c.systemctl_ok(&["restart", "chrony"]).unwrap();
    assert_eq!(property(c, "ActiveState", "chrony"), "active");
    c.systemctl_ok(&["start", "gnomond"]).unwrap();
}

fn nmea_selected(c: &Container) -> bool {
    c.exec_ok(&["chronyc", "-c", "-n", "sources"])
        .is_ok_and(|out| out.lines().any(|l| l.starts_with("#,*,NMEA,")))
}

/// The GPS host as installed: the simulated hat's pty and PPS socket reach
/// the container (the only hardware edge: a test drop-in allows gnomond the
/// pty's device and the PPS socket's directory, where a Pi has
/// /dev/ttyAMA0 and /dev/pps0). No /dev/pps0 exists here, so chrony must
/// start without its PPS refclock (gnomon-pps.conf left out by the helper),
/// and with `noselect` dropped from the NMEA refclock, as on a host
/// without PPS, chrony selects NMEA, fed by gnomond (user gnomon) through
/// the SOCK socket chronyd created as root.
fn gps_as_installed(release: Release) {
    let hat = Hat::start();
    let name = format!("gnl-gps-{}", release.codename());
    let c = Container::boot(hat.bind(ContainerSpec::new(release, &name).hostname("gps1"))).unwrap();
    install(&c);
    for (name, address) in [("fb1", FALLBACKS[0]), ("fb2", FALLBACKS[1])] {
        start_stand_in(&c, name, address);
    }
    let started = Instant::now();
    set_up_gps_host(
        &c,
        &gps_config(FALLBACKS.iter().map(|a| server(a)).collect(), None),
        None,
    );
    // Without /dev/pps0 the PPS refclock was left out, not fatal.
    let pps_conf = String::from_utf8(c.read_file("/run/chrony/gnomon-pps.conf").unwrap()).unwrap();
    assert!(
        !pps_conf.lines().any(|l| l.starts_with("refclock")),
        "{pps_conf}"
    );
    // The socket chronyd made as root is gnomon's to write to.
    let socket = c
        .exec_ok(&["stat", "-c", "%U:%G %a", "/run/chrony/gnomon-nmea.sock"])
        .unwrap();
    assert_eq!(socket.trim(), "root:_chrony 660");
    wait_for(
        &c,
        "chrony selects NMEA fed by gnomond",
        Duration::from_secs(120),
        || nmea_selected(&c).then_some(()),
    );
    let took = started.elapsed();
    let s = status(&c);
    assert_eq!(s["status"]["state"], "primary", "{s}");
    let check = c.exec(&["gnomonctl", "check", "--json"]).unwrap();
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let refclock = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "chrony-refclock")
        .cloned()
        .unwrap_or_default();
    assert_eq!(refclock["outcome"], "pass", "{report}");
    c.shutdown().unwrap();
    eprintln!(
        "GPS host as installed, Debian {}: chrony and gnomond started → chrony selects NMEA: {took:.1?}",
        release.version()
    );
}

#[test]
fn bookworm_gps_host_as_installed_feeds_chrony_through_its_socket() {
    gps_as_installed(Release::Bookworm);
}

#[test]
fn trixie_gps_host_as_installed_feeds_chrony_through_its_socket() {
    gps_as_installed(Release::Trixie);
}

/// S1 `power-outage` on booted systems in the outage lab's network: srv1
/// and srv2 (containers, the package installed) boot with gps1 missing and
/// the three public stand-ins answering; gps1's container boots 30 s
/// later. The clients must engage the fallbacks within the grace period
/// and synchronise to them, then go back to gps1 once it has been healthy
/// for the hold time. The lab's thresholds (grace 5 s, hold 15 s) keep it
/// short; everything else is as installed.
fn s1_power_outage_as_installed(release: Release) {
    use gnomon_lab::{
        chronyd::{Chronyd, ChronydSpec},
        netns::{Topology, TopologySpec},
        outage::lab::{address, hosts, lab_thresholds, GPS1, PUBS, SERVERS},
        system::Network,
    };
    const LAB_NETWORK: &str = "10.199.0.0/24";
    let lab_server = |host: &str| NtpServerConfig {
        minpoll: Some(-2),
        maxpoll: Some(-2),
        ..NtpServerConfig::new(address(host).unwrap().to_string())
    };

    let mut spec = TopologySpec::new();
    for (name, addr) in hosts() {
        spec = spec.host(name, addr);
    }
    let topology = Topology::create(spec).unwrap();
    let _pubs: Vec<Chronyd> = PUBS
        .iter()
        .map(|host| {
            let mut spec = ChronydSpec::ntp_server(&format!("s1-{host}"), 123);
            spec.bind_address = Some(std::net::IpAddr::V4(address(host).unwrap()));
            spec.extra_conf = vec!["local stratum 1".into(), format!("allow {LAB_NETWORK}")];
            spec.wrapper = topology.wrapper(host).unwrap();
            Chronyd::start(spec).unwrap()
        })
        .collect();

    let mut servers = Vec::new();
    for (i, host) in SERVERS.iter().enumerate() {
        let other = SERVERS[1 - i];
        let c = Container::boot(
            ContainerSpec::new(release, &format!("gnl-s1-{}-{host}", release.codename()))
                .hostname(host)
                .network(Network::lab_host(&topology, host).unwrap()),
        )
        .unwrap();
        install(&c);
        let mut config = Config::example_client();
        config.primary.servers = vec![lab_server(GPS1)];
        config.fallback.peers = vec![lab_server(other)];
        config.fallback.servers = PUBS.iter().map(|p| lab_server(p)).collect();
        config.thresholds = lab_thresholds();
        c.write_file(
            "/etc/gnomon/gnomon.toml",
            toml::to_string(&config).unwrap().as_bytes(),
            0o644,
        )
        .unwrap();
        install_snippet(&c, "gnomon-client.conf", Some(LAB_NETWORK), |t| t);
        c.systemctl_ok(&["restart", "chrony"]).unwrap();
        servers.push(c);
    }
    let t0 = Instant::now();
    for c in &servers {
        c.systemctl_ok(&["start", "gnomond"]).unwrap();
    }
    let mut figures = Figures(Vec::new());
    let pubs: Vec<String> = PUBS
        .iter()
        .map(|p| address(p).unwrap().to_string())
        .collect();
    for (i, (c, host)) in servers.iter().zip(SERVERS).enumerate() {
        let peer = address(SERVERS[1 - i]).unwrap().to_string();
        wait_for(
            c,
            "engaged and synchronised to a public stand-in or the peer",
            Duration::from_secs(60),
            || {
                let engaged = status(c)["status"]["fallbacks_engaged"] == true;
                let s = chrony_sources(c);
                // A public stand-in or the LAN peer: anything but gps1.
                let on_fallback = s
                    .iter()
                    .any(|(a, st)| *st == '*' && (pubs.contains(a) || *a == peer));
                (engaged && on_fallback).then_some(())
            },
        );
        figures.add(
            &format!("{host}: gnomond start → fallbacks engaged, chrony synchronised"),
            format!("{:.1?}", t0.elapsed()),
        );
    }

    // gps1 boots 30 s after the others.
    let late = Duration::from_secs(30).saturating_sub(t0.elapsed());
    std::thread::sleep(late);
    let hat = Hat::start();
    let gps1 = Container::boot(
        hat.bind(
            ContainerSpec::new(release, &format!("gnl-s1-{}-gps1", release.codename()))
                .hostname(GPS1)
                .network(Network::lab_host(&topology, GPS1).unwrap()),
        ),
    )
    .unwrap();
    let gps1_up = Instant::now();
    install(&gps1);
    set_up_gps_host(
        &gps1,
        &gps_config(
            PUBS.iter().map(|p| lab_server(p)).collect(),
            Some(lab_thresholds()),
        ),
        Some(LAB_NETWORK),
    );
    wait_for(
        &gps1,
        "gps1's chrony selects NMEA",
        Duration::from_secs(150),
        || nmea_selected(&gps1).then_some(()),
    );
    figures.add(
        "gps1 boots (30 s late) → its chrony on NMEA",
        format!("{:.1?}", gps1_up.elapsed()),
    );
    let gps1_address = address(GPS1).unwrap().to_string();
    for (c, host) in servers.iter().zip(SERVERS) {
        wait_for(
            c,
            "released and back on gps1",
            Duration::from_secs(120),
            || {
                let released = status(c)["status"]["fallbacks_engaged"] == false;
                let s = chrony_sources(c);
                let on_gps1 = s.iter().any(|(a, st)| *st == '*' && *a == gps1_address);
                (released && on_gps1).then_some(())
            },
        );
        figures.add(
            &format!("{host}: gps1 up → fallbacks released, chrony on gps1"),
            format!("{:.1?}", gps1_up.elapsed()),
        );
    }
    gps1.shutdown().unwrap();
    for c in servers {
        c.shutdown().unwrap();
    }
    eprintln!(
        "S1 power-outage as installed, Debian {}:",
        release.version()
    );
    for (what, value) in &figures.0 {
        eprintln!("  {what}: {value}");
    }
}

#[test]
fn bookworm_s1_power_outage_as_installed() {
    s1_power_outage_as_installed(Release::Bookworm);
}

#[test]
fn trixie_s1_power_outage_as_installed() {
    s1_power_outage_as_installed(Release::Trixie);
}

/// The package `deploy/build-previous-deb` made of the previous commit.
fn previous_package() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debian/previous");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run deploy/build-previous-deb first",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| {
            panic!(
                "no .deb in {}: run deploy/build-previous-deb first",
                dir.display()
            )
        })
}

/// An operator's upgrade: the previous commit's package installed, running
/// and frozen, a conffile edited; this package installed over it. The
/// upgrade keeps the edit, the state and the freeze, and neither stops nor
/// restarts gnomond; the restart the operator then does keeps the freeze.
fn upgrade_as_installed(release: Release) {
    let c = booted_client(
        release,
        &format!("gnl-upg-{}", release.codename()),
        &previous_package(),
    );
    wait_for(
        &c,
        "the previous gnomond on the primary",
        Duration::from_secs(60),
        || (status(&c)["status"]["state"] == "primary").then_some(()),
    );
    let reason = "maintenance: the upgrade test";
    c.exec_ok(&["gnomonctl", "freeze", "--reason", reason])
        .unwrap();
    let edit = "\n# the operator's note\n";
    let example = "/etc/gnomon/examples/srv1.toml";
    let mut edited = c.read_file(example).unwrap();
    edited.extend_from_slice(edit.as_bytes());
    c.write_file(example, &edited, 0o644).unwrap();
    let pid = property(&c, "MainPID", "gnomond");
    let state_before: Value =
        serde_json::from_slice(&c.read_file("/var/lib/gnomon/state.json").unwrap()).unwrap();

    install(&c);
    let installed = c
        .exec_ok(&["dpkg-query", "-W", "-f", "${Version}", "gnomon"])
        .unwrap();
    assert!(installed.ends_with("-1"), "not upgraded: {installed}");
    assert_eq!(
        property(&c, "MainPID", "gnomond"),
        pid,
        "the upgrade restarted gnomond"
    );
    assert_eq!(c.read_file(example).unwrap(), edited, "the edit was lost");

    c.systemctl_ok(&["restart", "gnomond"]).unwrap();
    let s = status(&c);
    assert_eq!(s["status"]["frozen"]["reason"], reason, "{s}");
    let state_after: Value =
        serde_json::from_slice(&c.read_file("/var/lib/gnomon/state.json").unwrap()).unwrap();
    assert_eq!(state_after["freeze"], state_before["freeze"]);
    // The time floor's last-synchronised time survives and only grows.
    let synced = |v: &Value| v["last-synchronised"].as_u64();
    assert!(synced(&state_before).is_some(), "{state_before}");
    assert!(
        synced(&state_after) >= synced(&state_before),
        "{state_after}"
    );
    // Frozen: the fail-safe at the restart left chrony's sources alone.
    let sources = sources_file(&c);
    assert!(
        !is_failsafe(&sources),
        "a fail-safe under a freeze:\n{sources}"
    );
    c.shutdown().unwrap();
}

#[test]
fn bookworm_upgrade_keeps_conffiles_state_and_freeze() {
    upgrade_as_installed(Release::Bookworm);
}

#[test]
fn trixie_upgrade_keeps_conffiles_state_and_freeze() {
    upgrade_as_installed(Release::Trixie);
}
