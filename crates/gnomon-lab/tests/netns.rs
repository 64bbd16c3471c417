//! The lab topology against the real kernel: hosts in their own network
//! namespaces reach each other over the hub's bridge and nothing else, a
//! link taken down cuts its host off, and no namespace outlives its run.
//! Needs root and `ip` (iproute2); fails loudly without them.
//!
//! Processes inside a namespace are this test binary re-executed through
//! `ip netns exec` with [`ROLE_ENV`] set (see [`udp_role`]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use gnomon_lab::{
    chronyd::{Chronyd, ChronydSpec},
    netns::{cleanup_stale, find_ip, list_namespaces, Topology, TopologySpec},
};

/// `echo:<addr>:<port>` or `probe:<addr>:<port>:<millis>`.
const ROLE_ENV: &str = "GNOMON_NETNS_TEST_ROLE";
const PORT: u16 = 12_399;
const GPS1: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
const SRV1: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
const SRV2: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 3);

fn three_hosts() -> TopologySpec {
    TopologySpec::new()
        .host("gps1", GPS1)
        .host("srv1", SRV1)
        .host("srv2", SRV2)
}

/// Answers every datagram with the same bytes, forever.
fn echo(address: SocketAddr) {
    let socket = UdpSocket::bind(address).unwrap_or_else(|e| panic!("binding {address}: {e}"));
    let mut buf = [0u8; 512];
    loop {
        let (len, from) = socket.recv_from(&mut buf).unwrap();
        socket.send_to(&buf[..len], from).unwrap();
    }
}

/// Whether an echo at `address` answers within `patience`.
fn probe(address: SocketAddr, patience: Duration) -> bool {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + patience;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        // An unreachable network is an answer too: "no".
        if socket.send_to(b"gnomon-lab ping", address).is_ok() {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                if from == address && &buf[..len] == b"gnomon-lab ping" {
                    return true;
                }
            }
        } else {
            thread::sleep(Duration::from_millis(100));
        }
    }
    false
}

/// The role a re-executed test binary plays inside a namespace. Run
/// normally, it checks both roles on loopback, so a broken role fails here
/// rather than looking like a broken network.
#[test]
fn udp_role() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let parts: Vec<&str> = role.split(':').collect();
        let address = SocketAddr::new(parts[1].parse().unwrap(), parts[2].parse().unwrap());
        match parts[0] {
            "echo" => echo(address),
            "probe" => {
                let patience = Duration::from_millis(parts[3].parse().unwrap());
                let reached = probe(address, patience);
                println!("PROBE-RESULT {reached}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = socket.local_addr().unwrap();
    drop(socket);
    thread::spawn(move || echo(address));
    assert!(probe(address, Duration::from_secs(5)));
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    assert!(!probe(
        silent.local_addr().unwrap(),
        Duration::from_millis(300)
    ));
}

fn role_in(topology: &Topology, host: &str, role: &str) -> Command {
    let mut command = topology
        .exec(host, std::env::current_exe().unwrap())
        .unwrap();
    command
        .args(["--exact", "udp_role", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role);
    command
}

/// Kills the echo server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_echo(topology: &Topology, host: &str, address: SocketAddr) -> Running {
    let child = role_in(
        topology,
        host,
        &format!("echo:{}:{}", address.ip(), address.port()),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    Running(child)
}

fn reaches(topology: &Topology, from: &str, to: SocketAddr, patience: Duration) -> bool {
    let out = role_in(
        topology,
        from,
        &format!("probe:{}:{}:{}", to.ip(), to.port(), patience.as_millis()),
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe from {from} to {to}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.contains("PROBE-RESULT true") {
        true
    } else if stdout.contains("PROBE-RESULT false") {
        false
    } else {
        panic!("probe from {from} printed no result: {stdout}")
    }
}

fn existing_namespaces() -> Vec<String> {
    list_namespaces(&find_ip().expect("the lab needs iproute2's `ip`")).unwrap()
}

#[test]
fn hosts_reach_each_other_until_a_link_goes_down() {
    let topology = Topology::create(three_hosts()).unwrap();
    let names = topology.namespaces();
    assert_eq!(names.len(), 4, "three hosts and the hub: {names:?}");
    let present = existing_namespaces();
    for name in &names {
        assert!(name.starts_with(topology.tag()), "{name}");
        assert!(present.contains(name), "{name} not in {present:?}");
    }
    assert_eq!(topology.address("srv2"), Some(SRV2));
    assert_eq!(topology.address("nope"), None);
    assert!(topology.exec("nope", "true").is_err());

    let gps1 = SocketAddr::from((GPS1, PORT));
    let _echo = start_echo(&topology, "gps1", gps1);
    assert!(reaches(&topology, "srv1", gps1, Duration::from_secs(10)));
    assert!(reaches(&topology, "srv2", gps1, Duration::from_secs(10)));

    topology.set_link("gps1", false).unwrap();
    assert!(!reaches(&topology, "srv1", gps1, Duration::from_secs(1)));

    topology.set_link("gps1", true).unwrap();
    assert!(reaches(&topology, "srv1", gps1, Duration::from_secs(10)));

    // Loopback is per namespace: a service on the root namespace's
    // 127.0.0.1 is out of a lab host's reach.
    let root_service = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let root_address = root_service.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = root_service.recv_from(&mut buf) {
            let _ = root_service.send_to(&buf[..len], from);
        }
    });
    assert!(!reaches(
        &topology,
        "gps1",
        root_address,
        Duration::from_secs(1)
    ));

    drop(topology);
    let present = existing_namespaces();
    for name in &names {
        assert!(!present.contains(name), "{name} left behind: {present:?}");
    }
}

#[test]
fn a_panicking_test_leaves_no_namespace() {
    let result = std::panic::catch_unwind(|| {
        let topology = Topology::create(TopologySpec::new().host("gps1", GPS1)).unwrap();
        let names = topology.namespaces();
        panic!("{}", names.join(" "));
    });
    let message = result.unwrap_err();
    let names = message.downcast_ref::<String>().unwrap();
    let present = existing_namespaces();
    assert_eq!(names.split(' ').count(), 2, "{names}");
    for name in names.split(' ') {
        assert!(!present.contains(&name.to_owned()), "{name} left behind");
    }
}

#[test]
fn stale_namespaces_of_dead_runs_are_removed() {
    let dead_pid = 999_999;
    assert!(
        !std::path::Path::new(&format!("/proc/{dead_pid}")).exists(),
        "pid {dead_pid} is alive"
    );
    let ip = find_ip().unwrap();
    let stale = format!("gnl-{dead_pid}-0-gps1");
    let ours = format!("gnl-{}-x-live", std::process::id());
    for name in [&stale, &ours] {
        let status = Command::new(&ip)
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
    }
    // What a killed run leaves running in its namespaces (its chronyd).
    let mut orphan = Command::new(&ip)
        .args(["netns", "exec", &stale, "sleep", "600"])
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(
        orphan.try_wait().unwrap().is_none(),
        "the orphan did not start"
    );
    let deleted = cleanup_stale().unwrap();
    let present = existing_namespaces();
    let _ = Command::new(&ip).args(["netns", "del", &ours]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut reaped = None;
    while reaped.is_none() && Instant::now() < deadline {
        reaped = orphan.try_wait().unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    if reaped.is_none() {
        let _ = orphan.kill();
        let _ = orphan.wait();
    }
    assert!(
        reaped.is_some(),
        "the process in the stale namespace was not killed"
    );
    assert!(deleted.contains(&stale), "{deleted:?}");
    assert!(!present.contains(&stale), "{present:?}");
    assert!(
        !deleted.contains(&ours),
        "a live run's namespace was deleted"
    );
    assert!(present.contains(&ours), "{present:?}");
}

/// A real chronyd client in srv1 measures a real chronyd server in gps1
/// over the lab link, each run on its host through `Topology::wrapper`.
#[test]
fn chronyd_serves_time_across_the_lab() {
    let topology = Topology::create(three_hosts()).unwrap();
    let mut server = ChronydSpec::ntp_server("lab-gps1", 123);
    server.bind_address = Some(GPS1.into());
    server.extra_conf = vec![
        "local stratum 1".to_owned(),
        "allow 10.199.0.0/24".to_owned(),
    ];
    server.wrapper = topology.wrapper("gps1").unwrap();
    let _server = Chronyd::start(server).unwrap();

    let mut client = ChronydSpec::client("lab-srv1");
    client.extra_conf = vec![
        format!("server {GPS1} iburst minpoll -4 maxpoll -4"),
        "log measurements".to_owned(),
    ];
    client.wrapper = topology.wrapper("srv1").unwrap();
    let client = Chronyd::start(client).unwrap();

    let log = client.dir().join("log/measurements.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l.contains(&GPS1.to_string())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "srv1's chronyd measured nothing from {GPS1}:\n{text}\n{}",
            client.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}
