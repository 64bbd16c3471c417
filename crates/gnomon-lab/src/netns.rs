//! Lab hosts as Linux network namespaces: one namespace per host, all joined
//! by veth pairs to a Linux bridge in a private "hub" namespace, removed when
//! the [`Topology`] is dropped (also on a test's panic) or, after a killed
//! run, by [`cleanup_stale`] at the next [`Topology::create`].
//!
//! Addresses are lab-only (e.g. 10.199.0.0/24: RFC 1918, but they exist only
//! inside namespaces this module created). Nothing is routed out: no default
//! route, no link to the root namespace; each namespace has its own `lo`.
//! Every interface is created directly inside its namespace (`ip link add
//! ... netns`), so the root namespace never sees one, and fixed short names
//! (`lab0` in a host, `port<N>` and `br0` in the hub) stay within the
//! 15-character limit whatever the run's tag.
//!
//! Namespace names are `gnl-<pid>-<n>-<host>` and `gnl-<pid>-<n>-hub`: the
//! creating pid tells [`cleanup_stale`] whether the run that made them is
//! gone.

use std::{
    collections::BTreeSet,
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
};

/// Every namespace this module creates starts with this.
pub const NAMESPACE_PREFIX: &str = "gnl-";
/// A host's end of its link, inside the host's namespace.
pub const HOST_INTERFACE: &str = "lab0";
const BRIDGE: &str = "br0";
const HUB_SUFFIX: &str = "hub";
/// Host names become part of namespace names and messages: keep them plain.
const MAX_HOST_NAME: usize = 32;

static TOPOLOGY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What hosts a [`Topology`] has and their addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySpec {
    hosts: Vec<(String, Ipv4Addr)>,
    prefix_len: u8,
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec::new()
    }
}

impl TopologySpec {
    /// No hosts yet, a /24 lab network.
    pub fn new() -> Self {
        TopologySpec {
            hosts: Vec::new(),
            prefix_len: 24,
        }
    }

    /// Adds a host (letters, digits and `-`) with its lab address.
    #[must_use]
    pub fn host(mut self, name: &str, address: Ipv4Addr) -> Self {
        self.hosts.push((name.to_owned(), address));
        self
    }

    /// The prefix length of every host's address (24 unless set).
    #[must_use]
    pub fn prefix_len(mut self, prefix_len: u8) -> Self {
        self.prefix_len = prefix_len;
        self
    }

    fn check(&self) -> io::Result<()> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        if self.prefix_len == 0 || self.prefix_len > 32 {
            return Err(invalid(format!(
                "lab topology: prefix length /{} is not between /1 and /32",
                self.prefix_len
            )));
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (name, address) in &self.hosts {
            if name.is_empty()
                || name.len() > MAX_HOST_NAME
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(invalid(format!(
                    "lab topology: host name '{name}' must be 1-{MAX_HOST_NAME} letters, \
                     digits or '-'"
                )));
            }
            if name == HUB_SUFFIX {
                return Err(invalid(format!(
                    "lab topology: '{HUB_SUFFIX}' is the bridge's namespace, not a host name"
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(invalid(format!("lab topology: host '{name}' twice")));
            }
            if address.is_loopback() || address.is_unspecified() || address.is_broadcast() {
                return Err(invalid(format!(
                    "lab topology: host '{name}' cannot have address {address}"
                )));
            }
            if !addresses.insert(*address) {
                return Err(invalid(format!(
                    "lab topology: address {address} given to two hosts"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct LabHost {
    name: String,
    address: Ipv4Addr,
    namespace: String,
}

/// Namespaces that exist until this value is dropped.
#[derive(Debug)]
pub struct Topology {
    ip: PathBuf,
    tag: String,
    hub: Option<String>,
    hosts: Vec<LabHost>,
}

impl Topology {
    /// Removes stale lab namespaces (see [`cleanup_stale`]), then creates the
    /// hub with its bridge and every host with its link up. On failure,
    /// whatever was created is removed again.
    pub fn create(spec: TopologySpec) -> io::Result<Topology> {
        spec.check()?;
        let ip = find_ip()?;
        cleanup_stale()?;
        let n = TOPOLOGY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut topology = Topology {
            ip,
            tag: format!("{NAMESPACE_PREFIX}{}-{n}", std::process::id()),
            hub: None,
            hosts: Vec::new(),
        };
        // From here on, Drop undoes whatever a failure leaves half built.
        let hub = format!("{}-{HUB_SUFFIX}", topology.tag);
        run_ip(&topology.ip, &["netns", "add", &hub])?;
        topology.hub = Some(hub.clone());
        run_ip(&topology.ip, &["-n", &hub, "link", "set", "lo", "up"])?;
        run_ip(
            &topology.ip,
            &["-n", &hub, "link", "add", "name", BRIDGE, "type", "bridge"],
        )?;
        run_ip(&topology.ip, &["-n", &hub, "link", "set", BRIDGE, "up"])?;

        for (index, (name, address)) in spec.hosts.into_iter().enumerate() {
            let namespace = format!("{}-{name}", topology.tag);
            run_ip(&topology.ip, &["netns", "add", &namespace])?;
            topology.hosts.push(LabHost {
                name,
                address,
                namespace: namespace.clone(),
            });
            let port = format!("port{index}");
            let cidr = format!("{address}/{}", spec.prefix_len);
            let ip = &topology.ip;
            run_ip(ip, &["-n", &namespace, "link", "set", "lo", "up"])?;
            run_ip(
                ip,
                &[
                    "-n",
                    &hub,
                    "link",
                    "add",
                    "name",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    HOST_INTERFACE,
                    "netns",
                    &namespace,
                ],
            )?;
            run_ip(
                ip,
                &["-n", &hub, "link", "set", &port, "master", BRIDGE, "up"],
            )?;
            run_ip(
                ip,
                &[
                    "-n",
                    &namespace,
                    "addr",
                    "add",
                    &cidr,
                    "dev",
                    HOST_INTERFACE,
                ],
            )?;
            run_ip(ip, &["-n", &namespace, "link", "set", HOST_INTERFACE, "up"])?;
        }
        Ok(topology)
    }

    /// `gnl-<pid>-<n>`: what every namespace of this topology starts with.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The hub namespace (holds the bridge).
    pub fn hub_namespace(&self) -> Option<&str> {
        self.hub.as_deref()
    }

    /// Host names in the order they were given.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }

    /// The host's lab address.
    pub fn address(&self, host: &str) -> Option<Ipv4Addr> {
        self.find(host).map(|h| h.address)
    }

    /// The host's namespace name (for `ip netns exec`, `ip -n`).
    pub fn namespace(&self, host: &str) -> Option<&str> {
        self.find(host).map(|h| h.namespace.as_str())
    }

    /// Every namespace this topology made: hosts, then the hub.
    pub fn namespaces(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| h.namespace.clone())
            .chain(self.hub.clone())
            .collect()
    }

    /// `ip netns exec <namespace> <program>`: add arguments, environment
    /// and stdio as to any command. The process sees only the host's `lo`
    /// and `lab0`.
    pub fn exec(&self, host: &str, program: impl AsRef<Path>) -> io::Result<Command> {
        let namespace = self.namespace_or_error(host)?;
        let mut command = Command::new(&self.ip);
        command
            .args(["netns", "exec", namespace])
            .arg(program.as_ref());
        Ok(command)
    }

    /// The command that runs a program on `host`: `ip netns exec <ns>`,
    /// for harnesses that take a wrapper (`ChronydSpec::wrapper`,
    /// `GnomondSpec::wrapper`).
    pub fn wrapper(&self, host: &str) -> io::Result<Vec<String>> {
        let ns = self.namespace(host).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no lab host {host}"))
        })?;
        Ok(vec![
            self.ip.display().to_string(),
            "netns".to_owned(),
            "exec".to_owned(),
            ns.to_owned(),
        ])
    }

    /// Takes the host's link down (`up == false`: the host is cut off from
    /// every other host) or brings it back up.
    pub fn set_link(&self, host: &str, up: bool) -> io::Result<()> {
        let namespace = self.namespace_or_error(host)?;
        let state = if up { "up" } else { "down" };
        run_ip(
            &self.ip,
            &["-n", namespace, "link", "set", HOST_INTERFACE, state],
        )
    }

    fn find(&self, host: &str) -> Option<&LabHost> {
        self.hosts.iter().find(|h| h.name == host)
    }

    fn namespace_or_error(&self, host: &str) -> io::Result<&str> {
        self.namespace(host).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("lab topology {}: no host '{host}'", self.tag),
            )
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Hosts first: deleting the hub would take their links with it, but
        // the host namespaces would stay until deleted by name.
        for host in self.hosts.drain(..) {
            let _ = run_ip(&self.ip, &["netns", "del", &host.namespace]);
        }
        if let Some(hub) = self.hub.take() {
            let _ = run_ip(&self.ip, &["netns", "del", &hub]);
        }
    }
}

/// Deletes every `gnl-<pid>-...` namespace whose creating process no longer
/// exists (a run killed by SIGKILL, which skips Drop), after killing the
/// processes still running in it (its chronyd and gnomond outlive the run
/// that started them). Returns the names it deleted.
pub fn cleanup_stale() -> io::Result<Vec<String>> {
    let ip = find_ip()?;
    let mut deleted = Vec::new();
    for namespace in list_namespaces(&ip)? {
        let Some(pid) = creator_pid(&namespace) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for orphan in run_ip_output(&ip, &["netns", "pids", &namespace])?
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter_map(rustix::process::Pid::from_raw)
        {
            // Gone already is fine; anything else is for the delete to report.
            let _ = rustix::process::kill_process(orphan, rustix::process::Signal::KILL);
        }
        run_ip(&ip, &["netns", "del", &namespace])?;
        deleted.push(namespace);
    }
    Ok(deleted)
}

/// Names from `ip netns list` (which prints `name` or `name (id: N)`).
pub fn list_namespaces(ip: &Path) -> io::Result<Vec<String>> {
    let out = run_ip_output(ip, &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The pid in `gnl-<pid>-...`, if the name has that shape.
fn creator_pid(namespace: &str) -> Option<u32> {
    let rest = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// iproute2's `ip`, which the network lab needs (with root).
pub fn find_ip() -> io::Result<PathBuf> {
    crate::programs::find(
        "ip",
        None,
        &["/usr/sbin", "/sbin", "/usr/bin", "/bin"],
        "install iproute2 (apt-get install iproute2)",
    )
}

fn run_ip(ip: &Path, args: &[&str]) -> io::Result<()> {
    run_ip_output(ip, args).map(drop)
}

/// Runs `ip args`; an error names the command line and quotes its stderr.
fn run_ip_output(ip: &Path, args: &[&str]) -> io::Result<String> {
    let line = format!("{} {}", ip.display(), args.join(" "));
    let out = Command::new(ip)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("`{line}`: cannot run it ({e})")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "`{line}` failed ({}): {} (the network lab needs root)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creator_pid_is_read_from_the_name() {
        assert_eq!(creator_pid("gnl-1234-0-gps1"), Some(1234));
        assert_eq!(creator_pid("gnl-999999-3-hub"), Some(999_999));
        assert_eq!(creator_pid("gnl-x-0-gps1"), None);
        assert_eq!(creator_pid("other-1234-0"), None);
        assert_eq!(creator_pid("gnl-1234"), None);
    }

    #[test]
    fn a_spec_with_clashing_or_odd_hosts_is_refused() {
        let a = Ipv4Addr::new(10, 199, 0, 1);
        let b = Ipv4Addr::new(10, 199, 0, 2);
        assert!(TopologySpec::new()
            .host("gps1", a)
            .host("srv1", b)
            .check()
            .is_ok());
        for spec in [
            TopologySpec::new().host("gps1", a).host("gps1", b),
            TopologySpec::new().host("gps1", a).host("srv1", a),
            TopologySpec::new().host("hub", a),
            TopologySpec::new().host("a/b", a),
            TopologySpec::new().host("", a),
            TopologySpec::new().host("lo", Ipv4Addr::LOCALHOST),
            TopologySpec::new().host("gps1", a).prefix_len(33),
        ] {
            assert!(spec.check().is_err(), "{spec:?}");
        }
    }
}
