//! Helpers shared by gnomond's process-level tests: gnomonctl's JSON,
//! waiting for a condition with a useful failure, READY.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    process::Output,
    thread,
    time::{Duration, Instant},
};

use std::net::{IpAddr, Ipv4Addr};

use gnomon_core::config::{Config, NtpServerConfig};
use gnomon_lab::{
    chronyd::{free_loopback_udp_port, Chronyd, ChronydSpec},
    gnomond::Gnomond,
};
use serde_json::Value;

pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// gnomonctl's `--json` output; fails the test if it failed or printed no JSON.
pub(crate) fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "gnomonctl failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gnomonctl printed no JSON ({e}): {}", text(&out.stdout)))
}

/// Polls `f` every 100 ms until it returns `Ok`, or fails the test with
/// what it last saw.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// gnomond's output, for failure messages.
pub(crate) fn output(d: &Gnomond) -> String {
    format!("\n--- gnomond output ---\n{}", d.output())
}

/// Waits for READY=1 on the notify socket.
pub(crate) fn wait_ready(d: &Gnomond) {
    if d.notify()
        .wait_for("READY", READY_TIMEOUT, |v| v == "1")
        .is_none()
    {
        panic!(
            "no READY=1 within {READY_TIMEOUT:?}; notifications {:?}{}",
            d.notify().all(),
            output(d)
        );
    }
}

/// `gnomonctl status --json`.
pub(crate) fn status(d: &Gnomond) -> Value {
    json(&d.gnomonctl(&["status", "--json"]).unwrap())
}

/// A client-role host on loopback: a chronyd serving as the primary at
/// one address, another as the fallback, and a private chronyd as the
/// host's own chrony (with a `sourcedir`). `config` points gnomond at them,
/// polling every 1/16 s, with every local user allowed to read.
pub(crate) struct LoopbackClient {
    pub(crate) primary: Chronyd,
    pub(crate) fallback: Chronyd,
    pub(crate) client: Chronyd,
    pub(crate) config: Config,
}

impl LoopbackClient {
    /// `name` prefixes the chronyds' directories; the addresses must be
    /// unique to the test binary (tests run in parallel).
    pub(crate) fn start(name: &str, primary: Ipv4Addr, fallback: Ipv4Addr) -> LoopbackClient {
        let (primary_chronyd, primary_port) = ntp_server(&format!("{name}-primary"), primary);
        let (fallback_chronyd, fallback_port) = ntp_server(&format!("{name}-fallback"), fallback);
        let mut client_spec = ChronydSpec::client(&format!("{name}-client"));
        client_spec.with_sourcedir = true;
        let client = Chronyd::start(client_spec).unwrap();
        let mut config = Config::example_client();
        config.primary.servers = vec![fast(primary, primary_port)];
        config.fallback.servers = vec![fast(fallback, fallback_port)];
        config.fallback.peers = Vec::new();
        config.paths.chrony_socket = client.socket().display().to_string();
        config.paths.sources_dir = client.sources_dir().display().to_string();
        config.control.read_group = String::new();
        LoopbackClient {
            primary: primary_chronyd,
            fallback: fallback_chronyd,
            client,
            config,
        }
    }
}

/// A chronyd serving NTP on `address` at a free port.
pub(crate) fn ntp_server(name: &str, address: Ipv4Addr) -> (Chronyd, u16) {
    let port = free_loopback_udp_port().unwrap();
    let mut spec = ChronydSpec::ntp_server(name, port);
    spec.bind_address = Some(IpAddr::V4(address));
    (Chronyd::start(spec).unwrap(), port)
}

/// A server polled every 1/16 s, so tests see chrony's view change fast.
pub(crate) fn fast(address: Ipv4Addr, port: u16) -> NtpServerConfig {
    NtpServerConfig {
        port: Some(port),
        minpoll: Some(-4),
        maxpoll: Some(-4),
        ..NtpServerConfig::new(address.to_string())
    }
}
