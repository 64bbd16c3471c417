//! The outage lab's infrastructure: six hosts in network namespaces, a real
//! chronyd on each, gnomond on the three that run it, a simulated GPS hat
//! on `gps1`, one private journald for every gnomond.
//!
//! | host | address | runs |
//! |---|---|---|
//! | `gps1` | 10.199.0.10 | the hat (NMEA on a pty, PPS as datagrams), chronyd with gnomon's SOCK refclock `NMEA`, gnomond role `gps` (fallbacks pub1–3) |
//! | `srv1`, `srv2` | .11, .12 | chronyd serving the LAN, gnomond role `client`: primary gps1, LAN peer each other, fallbacks pub1–3 |
//! | `pub1`–`pub3` | .21–.23 | chronyd stand-ins for IP-literal public servers |
//!
//! The addresses exist only inside the lab's namespaces (see
//! [`crate::netns`]); nothing is routed out. Every chronyd runs `-x`, so no
//! host clock is ever touched: a step chrony is asked for is refused, and
//! the remaining correction chrony reports is what the lab shows.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Output,
    thread::JoinHandle,
    time::Duration,
};

use gnomon_core::config::{Config, NtpServerConfig, Role, Thresholds};
use tempfile::TempDir;

use crate::{
    chronyd::{Chronyd, ChronydSpec},
    gnomond::{gnomonctl, Gnomond, GnomondSpec},
    gps_hat::{forward_pps, GpsHat, HatMode},
    journald::PrivateJournal,
    netns::{Topology, TopologySpec},
};

pub const GPS1: &str = "gps1";
pub const SRV1: &str = "srv1";
pub const SRV2: &str = "srv2";
pub const PUBS: [&str; 3] = ["pub1", "pub2", "pub3"];
/// The two LAN servers, in order.
pub const SERVERS: [&str; 2] = [SRV1, SRV2];

/// NTP port every lab host serves on (inside its own namespace).
const NTP_PORT: u16 = 123;
/// The lab network; `allow` on every server.
const LAB_NETWORK: &str = "10.199.0.0/24";
/// Poll exponent of every source: 2^-2 s, so the lab runs in seconds.
const LAB_POLL: i8 = -2;

/// Every host of the lab with its address, in start order.
pub fn hosts() -> [(&'static str, Ipv4Addr); 6] {
    [
        ("pub1", Ipv4Addr::new(10, 199, 0, 21)),
        ("pub2", Ipv4Addr::new(10, 199, 0, 22)),
        ("pub3", Ipv4Addr::new(10, 199, 0, 23)),
        (GPS1, Ipv4Addr::new(10, 199, 0, 10)),
        (SRV1, Ipv4Addr::new(10, 199, 0, 11)),
        (SRV2, Ipv4Addr::new(10, 199, 0, 12)),
    ]
}

/// The lab address of `host`.
pub fn address(host: &str) -> Option<Ipv4Addr> {
    hosts()
        .into_iter()
        .find(|(h, _)| *h == host)
        .map(|(_, a)| a)
}

/// The host a lab address belongs to.
pub fn host_of(address: IpAddr) -> Option<&'static str> {
    hosts()
        .into_iter()
        .find(|(_, a)| IpAddr::V4(*a) == address)
        .map(|(h, _)| h)
}

/// gnomond's thresholds in the lab: the defaults' shape, minutes made
/// seconds so a scenario takes about a minute.
pub fn lab_thresholds() -> Thresholds {
    Thresholds {
        grace: Duration::from_secs(5),
        hold: Duration::from_secs(15),
        gps_settle: Duration::from_secs(3),
        fallback_unreachable_after: Duration::from_secs(8),
        realert_interval: Duration::from_secs(600),
        ..Thresholds::default()
    }
}

/// How the lab starts.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The incident's stock configuration: srv1/srv2's chronyd has only
    /// `server gps1` and no gnomond runs anywhere.
    pub stock: bool,
    /// gps1 hangs at boot: its chronyd and gnomond are not started (see
    /// [`Lab::boot_gps1`]).
    pub gps1_hung: bool,
    /// What the hat does from the start.
    pub hat_mode: HatMode,
    /// Hosts whose chronyd and gnomond run under libfaketime, with the
    /// `FAKETIME` value (`@1970-01-01 00:00:00`, `-1d`).
    pub faketime: BTreeMap<String, String>,
    /// Replaces the lab thresholds on every gnomond.
    pub thresholds: Thresholds,
    /// gps1 is a plain LAN NTP server serving its own clock (chronyd with
    /// `local stratum 1`, no refclock, no gnomond): a primary whose clock
    /// a scenario can fake.
    pub gps1_plain_server: bool,
    /// gps1's gnomond also has srv1 and srv2 as peers, as in the deploy
    /// example, but without `follows-this-host`: it must tell by their
    /// reference ID that they take their time from it.
    pub gps1_peers_servers: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            stock: false,
            gps1_hung: false,
            hat_mode: HatMode::Healthy,
            faketime: BTreeMap::new(),
            thresholds: lab_thresholds(),
            gps1_plain_server: false,
            gps1_peers_servers: false,
        }
    }
}

#[derive(Debug)]
struct Host {
    name: &'static str,
    address: Ipv4Addr,
    /// gnomond's config (None: the host runs no gnomond).
    config: Option<Config>,
    faketime: Option<String>,
    chronyd_spec: ChronydSpec,
    // Drop order: gnomond before chronyd.
    gnomond: Option<Gnomond>,
    chronyd: Option<Chronyd>,
    state_dir: PathBuf,
}

/// A running lab; dropping it stops every process and removes every
/// namespace (the journal last, so nothing logs into a dead socket).
#[derive(Debug)]
pub struct Lab {
    hosts: Vec<Host>,
    hat: GpsHat,
    _pulses: JoinHandle<()>,
    topology: Topology,
    journal: PrivateJournal,
    // Last: sockets and state directories outlive every process.
    dir: TempDir,
}

impl Lab {
    /// Builds the topology, starts journald, the hat and every host's
    /// chronyd and gnomond (except gps1's when it is hung at boot).
    pub fn start(options: &LabOptions) -> io::Result<Lab> {
        let dir = tempfile::Builder::new().prefix("gnomon-lab-").tempdir()?;
        std::fs::set_permissions(
            dir.path(),
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )?;
        let journal = PrivateJournal::start()?;
        let mut spec = TopologySpec::new();
        for (name, address) in hosts() {
            spec = spec.host(name, address);
        }
        let topology = Topology::create(spec)?;

        let hat = GpsHat::start(options.hat_mode)?;
        let pps_socket = dir.path().join("gps1-pps.sock");
        let refclock = dir.path().join("gps1-nmea.sock");
        let pulses = hat
            .take_pps()
            .ok_or_else(|| io::Error::other("the hat's PPS line was already taken"))?;
        let pulses = forward_pps(pulses, pps_socket.clone())?;

        let mut lab = Lab {
            hosts: Vec::new(),
            hat,
            _pulses: pulses,
            topology,
            journal,
            dir,
        };
        for (name, address) in hosts() {
            let state_dir = lab.dir.path().join(format!("{name}-state"));
            std::fs::create_dir(&state_dir)?;
            let plain = options.gps1_plain_server && name == GPS1;
            let chronyd_spec = chronyd_spec(name, address, options.stock, plain, &refclock);
            let config = (!options.stock && !plain && !PUBS.contains(&name)).then(|| {
                let mut config =
                    gnomond_config(name, &options.thresholds, &pps_socket, &refclock, &lab.hat);
                if name == GPS1 && options.gps1_peers_servers {
                    config.fallback.peers = SERVERS.iter().map(|s| lab_source(s)).collect();
                }
                config
            });
            lab.hosts.push(Host {
                name,
                address,
                config,
                faketime: options.faketime.get(name).cloned(),
                chronyd_spec,
                gnomond: None,
                chronyd: None,
                state_dir,
            });
            if name == GPS1 && options.gps1_hung {
                continue;
            }
            lab.start_chronyd(name)?;
        }
        for name in [GPS1, SRV1, SRV2] {
            if (name == GPS1 && options.gps1_hung) || lab.host(name)?.config.is_none() {
                continue;
            }
            lab.start_gnomond(name)?;
        }
        Ok(lab)
    }

    /// gps1 finishes booting: its chronyd, then its gnomond.
    pub fn boot_gps1(&mut self) -> io::Result<()> {
        self.start_chronyd(GPS1)?;
        if self.host(GPS1)?.config.is_some() {
            self.start_gnomond(GPS1)?;
        }
        Ok(())
    }

    pub fn journal(&self) -> &PrivateJournal {
        &self.journal
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn hat(&self) -> &GpsHat {
        &self.hat
    }

    pub fn set_hat_mode(&self, mode: HatMode) {
        self.hat.set_mode(mode);
    }

    /// Cuts `host` off the lab network, or reconnects it.
    pub fn set_link(&self, host: &str, up: bool) -> io::Result<()> {
        self.topology.set_link(host, up)
    }

    /// Starts the host's chronyd (again: same config, same directory).
    pub fn start_chronyd(&mut self, name: &str) -> io::Result<()> {
        let wrapper = self.wrapper(name)?;
        let host = self.host_mut(name)?;
        match host.chronyd.as_mut() {
            Some(chronyd) => chronyd.start_again(),
            None => {
                let mut spec = host.chronyd_spec.clone();
                spec.wrapper = wrapper;
                host.chronyd = Some(Chronyd::start(spec)?);
                Ok(())
            }
        }
    }

    /// SIGTERM to the host's chronyd, waited for; its directory stays.
    pub fn stop_chronyd(&mut self, name: &str) -> io::Result<()> {
        match self.host_mut(name)?.chronyd.as_mut() {
            Some(chronyd) => chronyd.stop(),
            None => Ok(()),
        }
    }

    /// Starts the host's gnomond on its persistent state directory; the
    /// host's chronyd must have been started once (its socket paths).
    pub fn start_gnomond(&mut self, name: &str) -> io::Result<()> {
        let mut wrapper = die_with_the_lab()?;
        wrapper.extend(self.topology.wrapper(name)?);
        wrapper.extend(self.journal.wrapper());
        let host = self.host(name)?;
        if let Some(spec) = &host.faketime {
            wrapper.extend(faketime_env(spec)?);
        }
        let mut config = host
            .config
            .clone()
            .ok_or_else(|| io::Error::other(format!("lab host {name} runs no gnomond")))?;
        let chronyd = host.chronyd.as_ref().ok_or_else(|| {
            io::Error::other(format!("lab host {name}: start chronyd before gnomond"))
        })?;
        config.paths.chrony_socket = chronyd.socket().display().to_string();
        config.paths.sources_dir = chronyd.sources_dir().display().to_string();
        let mut spec = GnomondSpec::new(config);
        spec.wrapper = wrapper;
        spec.log = "journald".to_owned();
        spec.watchdog = Some(Duration::from_secs(10));
        spec.state_dir = Some(host.state_dir.clone());
        let gnomond = Gnomond::start(spec)?;
        self.host_mut(name)?.gnomond = Some(gnomond);
        Ok(())
    }

    /// SIGTERM to the host's gnomond and waits (5 s) for it to exit.
    pub fn stop_gnomond(&mut self, name: &str) -> io::Result<()> {
        if let Some(mut gnomond) = self.host_mut(name)?.gnomond.take() {
            gnomond.signal(rustix::process::Signal::TERM)?;
            gnomond.wait_exit(Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// Restarts the host's chronyd and gnomond under `faketime` (or none).
    pub fn set_faketime(&mut self, name: &str, faketime: Option<&str>) -> io::Result<()> {
        self.stop_gnomond(name)?;
        self.stop_chronyd(name)?;
        let host = self.host_mut(name)?;
        host.faketime = faketime.map(str::to_owned);
        // A new wrapper: a fresh chronyd on the same directory.
        let _ = host.chronyd.take();
        self.start_chronyd(name)?;
        if self.host(name)?.config.is_some() {
            self.start_gnomond(name)?;
        }
        Ok(())
    }

    /// `gnomonctl --socket <host's control socket> args...`.
    pub fn gnomonctl(&self, name: &str, args: &[&str]) -> io::Result<Output> {
        let socket = self
            .control_socket(name)
            .ok_or_else(|| io::Error::other(format!("lab host {name}: gnomond is not running")))?;
        gnomonctl(&socket, args, &[])
    }

    /// The host's gnomond control socket while it runs.
    pub fn control_socket(&self, name: &str) -> Option<PathBuf> {
        self.find(name)?
            .gnomond
            .as_ref()
            .map(|g| g.control_socket().to_owned())
    }

    /// The host's chronyd command socket and client directory while it runs.
    pub fn chrony_endpoint(&self, name: &str) -> Option<(PathBuf, PathBuf)> {
        let chronyd = self.find(name)?.chronyd.as_ref()?;
        chronyd.pid()?;
        Some((chronyd.socket().to_owned(), chronyd.client_dir().to_owned()))
    }

    /// The host's chronyd `sourcedir` (where gnomond writes its sources
    /// file), once chronyd was started.
    pub fn sources_dir(&self, name: &str) -> Option<PathBuf> {
        let chronyd = self.find(name)?.chronyd.as_ref()?;
        chronyd
            .spec()
            .with_sourcedir
            .then(|| chronyd.sources_dir().to_owned())
    }

    /// gnomond's process id on each host that runs one (to tell journal
    /// entries apart: gnomond is exec'd by its wrappers).
    pub fn gnomond_pids(&self) -> BTreeMap<u32, &'static str> {
        self.hosts
            .iter()
            .filter_map(|h| Some((h.gnomond.as_ref()?.pid()?, h.name)))
            .collect()
    }

    /// The host's gnomond configuration, if it runs one.
    pub fn config(&self, name: &str) -> Option<&Config> {
        self.find(name)?.config.as_ref()
    }

    /// The host's chronyd log (for a failed scenario's report).
    pub fn chronyd_log(&self, name: &str) -> String {
        self.find(name)
            .and_then(|h| h.chronyd.as_ref())
            .map(Chronyd::log)
            .unwrap_or_default()
    }

    /// Where the lab keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host's lab address.
    pub fn address(&self, name: &str) -> Option<Ipv4Addr> {
        self.find(name).map(|h| h.address)
    }

    fn wrapper(&self, name: &str) -> io::Result<Vec<String>> {
        let mut wrapper = die_with_the_lab()?;
        wrapper.extend(self.topology.wrapper(name)?);
        if let Some(spec) = &self.host(name)?.faketime {
            wrapper.extend(faketime_env(spec)?);
        }
        Ok(wrapper)
    }

    fn find(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    fn host(&self, name: &str) -> io::Result<&Host> {
        self.find(name)
            .ok_or_else(|| io::Error::other(format!("no lab host {name}")))
    }

    fn host_mut(&mut self, name: &str) -> io::Result<&mut Host> {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .ok_or_else(|| io::Error::other(format!("no lab host {name}")))
    }
}

/// A lab source as gnomon plans it: polled every 2^-2 s.
fn lab_source(host: &str) -> NtpServerConfig {
    let address = address(host).map(|a| a.to_string()).unwrap_or_default();
    NtpServerConfig {
        minpoll: Some(LAB_POLL),
        maxpoll: Some(LAB_POLL),
        ..NtpServerConfig::new(address)
    }
}

/// `plain`: the host serves its own clock (see [`LabOptions::gps1_plain_server`]).
fn chronyd_spec(
    name: &str,
    address: Ipv4Addr,
    stock: bool,
    plain: bool,
    refclock: &Path,
) -> ChronydSpec {
    let mut spec = ChronydSpec::client(name);
    spec.ntp_port = NTP_PORT;
    spec.bind_address = Some(IpAddr::V4(address));
    spec.extra_conf.push(format!("allow {LAB_NETWORK}"));
    if PUBS.contains(&name) || plain {
        // A server on its own clock: a public server (the machine's, never
        // set), or gps1 as a plain LAN server (whose clock may be faked).
        spec.extra_conf.push("local stratum 1".to_owned());
        return spec;
    }
    if name == GPS1 {
        spec.extra_conf.push(format!(
            "refclock SOCK {} refid NMEA poll 0 filter 1",
            refclock.display()
        ));
    }
    if stock && name != GPS1 {
        // The incident's configuration: the GPS server and nothing else.
        let gps1 = address_text(GPS1);
        spec.extra_conf.push(format!(
            "server {gps1} iburst minpoll {LAB_POLL} maxpoll {LAB_POLL}"
        ));
    } else {
        spec.with_sourcedir = true;
    }
    spec
}

fn address_text(host: &str) -> String {
    address(host).map(|a| a.to_string()).unwrap_or_default()
}

fn gnomond_config(
    name: &str,
    thresholds: &Thresholds,
    pps_socket: &Path,
    refclock: &Path,
    hat: &GpsHat,
) -> Config {
    let mut config = if name == GPS1 {
        Config::example_gps()
    } else {
        Config::example_client()
    };
    config.thresholds = thresholds.clone();
    // The lab's minutes are seconds: one sample a second for `gnomonctl plot`.
    config.history.interval = Duration::from_secs(1);
    config.history.keep = Duration::from_secs(3600);
    config.fallback.servers = PUBS.iter().map(|p| lab_source(p)).collect();
    config.control.read_group = String::new();
    match config.role {
        Role::Gps => {
            config.gps = Some(hat.gps_config(pps_socket, refclock));
            config.fallback.peers = Vec::new();
        }
        Role::Client => {
            config.primary.servers = vec![lab_source(GPS1)];
            let peer = if name == SRV1 { SRV2 } else { SRV1 };
            config.fallback.peers = vec![lab_source(peer)];
        }
    }
    config
}

/// `setpriv --pdeathsig KILL --`: the start of every lab process's
/// wrapper, so a chronyd or gnomond dies with the thread that started it
/// even when the lab gets no chance to stop it (SIGKILL, a panic in a
/// release build, which aborts). The namespaces such a run leaves are
/// deleted by the next one ([`crate::netns::cleanup_stale`]).
fn die_with_the_lab() -> io::Result<Vec<String>> {
    let setpriv = crate::programs::find(
        "setpriv",
        None,
        &["/usr/bin", "/bin"],
        "install util-linux (apt-get install util-linux)",
    )?;
    Ok(vec![
        setpriv.display().to_string(),
        "--pdeathsig".to_owned(),
        "KILL".to_owned(),
        "--".to_owned(),
    ])
}

/// `env LD_PRELOAD=<libfaketime> FAKETIME=<spec> ...`: the end of a wrapper
/// that runs a program on a faked wall clock. The monotonic clock stays
/// real (timers and timeouts keep working).
pub fn faketime_env(spec: &str) -> io::Result<Vec<String>> {
    let env = crate::programs::find("env", None, &["/usr/bin", "/bin"], "install coreutils")?;
    let lib = find_libfaketime()?;
    Ok(vec![
        env.display().to_string(),
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME={spec}"),
        "DONT_FAKE_MONOTONIC=1".to_owned(),
    ])
}

/// `$GNOMON_LIBFAKETIME`, else libfaketime.so.1 where Debian's faketime
/// package puts it.
pub fn find_libfaketime() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("GNOMON_LIBFAKETIME") {
        return Ok(PathBuf::from(path));
    }
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for entry in entries.flatten() {
            candidates.push(entry.path().join("faketime/libfaketime.so.1"));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "libfaketime.so.1 not found under /usr/lib/*/faketime (or $GNOMON_LIBFAKETIME): \
             install faketime (apt-get install faketime)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_a_lab_address() {
        for (host, a) in hosts() {
            assert_eq!(a.octets()[..3], [10, 199, 0], "{host}");
            assert_eq!(host_of(IpAddr::V4(a)), Some(host));
            assert_eq!(address(host), Some(a));
        }
        assert_eq!(host_of(IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    }

    #[test]
    fn clients_point_at_gps1_peer_each_other_and_fall_back_to_pubs() {
        let hat = GpsHat::start(HatMode::Silent).unwrap();
        let t = lab_thresholds();
        let p = Path::new("/tmp/x");
        let srv1 = gnomond_config(SRV1, &t, p, p, &hat);
        assert_eq!(srv1.primary.servers[0].address, "10.199.0.10");
        assert_eq!(srv1.fallback.peers[0].address, "10.199.0.12");
        let fallbacks: Vec<&str> = srv1
            .fallback
            .servers
            .iter()
            .map(|s| s.address.as_str())
            .collect();
        assert_eq!(fallbacks, ["10.199.0.21", "10.199.0.22", "10.199.0.23"]);
        assert!(
            srv1.check().iter().all(|p| !p.is_error()),
            "{:?}",
            srv1.check()
        );
        let gps1 = gnomond_config(GPS1, &t, p, p, &hat);
        assert_eq!(gps1.role, Role::Gps);
        assert!(
            gps1.check().iter().all(|p| !p.is_error()),
            "{:?}",
            gps1.check()
        );
        let stock = chronyd_spec(SRV1, Ipv4Addr::new(10, 199, 0, 11), true, false, p);
        assert!(!stock.with_sourcedir);
        assert!(stock
            .extra_conf
            .iter()
            .any(|l| l.starts_with("server 10.199.0.10 ")));
    }
}
