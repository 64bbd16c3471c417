//! The `/metrics` endpoint of a real gnomond: role `gps` on the simulated
//! hat with a private real chronyd, scraped over loopback TCP and parsed
//! with a real OpenMetrics/Prometheus parser (openmetrics-parser) and
//! checked by Prometheus' own `promtool`; garbage requests get errors and
//! leave the daemon serving; with `[metrics]` off there is no listener.
//! The alert rules and the Grafana dashboard in `deploy/` are checked
//! against the catalogue of metric names. Everything on 127.0.0.0/8.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use gnomon_core::config::{Config, NtpServerConfig};
use gnomon_lab::{
    chronyd::{free_loopback_udp_port, Chronyd, ChronydSpec},
    gnomond::{Gnomond, GnomondSpec},
    gps_hat::HatMode,
    gps_host::GpsHost,
};
use gnomond::metrics::{Family, MetricType, FAMILIES};
use openmetrics_parser::{
    MetricFamily, MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType,
    PrometheusValue,
};

mod common;

use common::{json, output, status, wait_for, wait_ready};

const FALLBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// What Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- a minimal HTTP client ----

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Sends `request` as it is and reads the answer until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The server may answer (and stop reading) before all of it is sent.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading the answer: {e}"))?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect::<BTreeMap<_, _>>();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("no Content-Length")?;
    if body.len() != length {
        return Err(format!(
            "body of {} bytes, Content-Length {length}",
            body.len()
        ));
    }
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn get(addr: SocketAddr, accept: Option<&str>) -> Answer {
    let mut request =
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gnomon-test\r\n");
    if let Some(accept) = accept {
        request.push_str(&format!("Accept: {accept}\r\n"));
    }
    request.push_str("\r\n");
    exchange(addr, request.as_bytes()).unwrap()
}

// ---- parsed expositions ----

type OmExposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;
type OmFamily = MetricFamily<OpenMetricsType, OpenMetricsValue>;

fn scrape_openmetrics(addr: SocketAddr) -> OmExposition {
    let a = get(addr, Some(PROMETHEUS_ACCEPT));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.headers["content-type"], OPENMETRICS);
    assert!(a.body.ends_with("# EOF\n"));
    openmetrics_parser::openmetrics::parse_openmetrics(&a.body)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{}", a.body))
}

fn om_number(v: &OpenMetricsValue) -> f64 {
    match v {
        OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        OpenMetricsValue::Info => 1.0,
        other => panic!("unexpected value {other:?}"),
    }
}

fn family<'a>(e: &'a OmExposition, name: &str) -> &'a OmFamily {
    e.families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name}; have {:?}", e.families.keys()))
}

/// The samples of a family as (labels, value).
fn samples(e: &OmExposition, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    family(e, name)
        .iter_samples()
        .map(|s| {
            let labels = s
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (labels, om_number(&s.value))
        })
        .collect()
}

/// The one sample whose labels include `want`.
fn sample(e: &OmExposition, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples(e, name)
        .into_iter()
        .find(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
}

/// The `state` label of the one series at 1.
fn current_state(e: &OmExposition) -> String {
    let on: Vec<String> = samples(e, "gnomon_state")
        .into_iter()
        .filter(|(_, v)| *v == 1.0)
        .map(|(l, _)| l["state"].clone())
        .collect();
    assert_eq!(on.len(), 1, "gnomon_state is not one-hot: {on:?}");
    on[0].clone()
}

fn promtool() -> PathBuf {
    gnomon_lab::programs::find(
        "promtool",
        Some("GNOMON_PROMTOOL"),
        &["/usr/bin"],
        "install Debian's prometheus package (apt-get install prometheus), which has promtool",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn run_promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ---- the gps role, scraped ----

#[test]
fn gps_host_is_scraped_and_parsed() {
    let host = GpsHost::start("metrics-gps", HatMode::Healthy, FALLBACK).unwrap();
    let mut config = host.config();
    config.thresholds.gps_settle = Duration::from_secs(2);
    config.metrics.enabled = true;
    config.metrics.listen = format!("127.0.0.1:{}", free_tcp_port());
    let addr: SocketAddr = config.metrics.listen.parse().unwrap();
    let d = Gnomond::start(GnomondSpec::new(config)).unwrap();
    wait_ready(&d);
    let e = wait_for(
        "the GPS as primary and chrony on NMEA",
        Duration::from_secs(40),
        || {
            let e = scrape_openmetrics(addr);
            let nmea = sample(
                &e,
                "gnomon_chrony_source_state",
                &[("source", "NMEA"), ("state", "selected")],
            );
            let state = current_state(&e);
            if state == "primary" && nmea == Some(1.0) {
                Ok(e)
            } else {
                Err(format!(
                    "state {state}, NMEA selected {nmea:?}{}",
                    output(&d)
                ))
            }
        },
    );

    // Every family of the catalogue, with its type, unit and help; on a
    // healthy GPS host only the silence of a fallback has no value.
    let names: BTreeSet<&str> = e.families.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = FAMILIES
        .iter()
        .map(|f| f.name)
        .filter(|n| *n != "gnomon_fallback_silence_seconds")
        .collect();
    assert_eq!(names, want);
    for f in FAMILIES.iter().filter(|f| names.contains(f.name)) {
        let parsed = family(&e, f.name);
        let kind = match f.kind {
            MetricType::Gauge => OpenMetricsType::Gauge,
            MetricType::Counter => OpenMetricsType::Counter,
            MetricType::Info => OpenMetricsType::Info,
        };
        assert_eq!(parsed.family_type, kind, "{}", f.name);
        assert_eq!(parsed.unit, f.unit.unwrap_or_default(), "{}", f.name);
        assert_eq!(parsed.help, f.help, "{}", f.name);
    }

    // The state agrees with gnomonctl (taken between two scrapes that agree).
    wait_for("a stable state", Duration::from_secs(20), || {
        let before = current_state(&scrape_openmetrics(addr));
        let s = status(&d);
        let after = current_state(&scrape_openmetrics(addr));
        let ctl = s["status"]["state"].as_str().unwrap().to_owned();
        (before == after && after == ctl)
            .then_some(())
            .ok_or_else(|| format!("metrics {before}/{after}, gnomonctl {ctl}"))
    });
    let s = status(&d);
    assert_eq!(
        samples(&e, "gnomon_build")[0].0["version"],
        s["daemon"]["version"].as_str().unwrap()
    );
    assert_eq!(sample(&e, "gnomon_role", &[("role", "gps")]), Some(1.0));
    assert_eq!(sample(&e, "gnomon_chrony_reachable", &[]), Some(1.0));
    assert_eq!(sample(&e, "gnomon_clock_before_floor", &[]), Some(0.0));
    assert_eq!(sample(&e, "gnomon_fallbacks_engaged", &[]), Some(0.0));
    assert_eq!(sample(&e, "gnomon_primary_healthy", &[]), Some(1.0));
    assert_eq!(
        samples(&e, "gnomon_alerts_active").len(),
        gnomon_core::alert::AlertKind::ALL.len()
    );
    assert_eq!(
        sample(
            &e,
            "gnomon_alerts_active",
            &[("kind", "gps-insane"), ("priority", "critical")]
        ),
        Some(0.0)
    );

    // GPS fix, satellites, PPS and the NMEA-PPS alignment.
    assert_eq!(sample(&e, "gnomon_gps_connected", &[]), Some(1.0));
    assert_eq!(sample(&e, "gnomon_gps_healthy", &[]), Some(1.0));
    assert_eq!(sample(&e, "gnomon_gps_gate_open", &[]), Some(1.0));
    assert_eq!(sample(&e, "gnomon_gps_offset_from_pps", &[]), Some(1.0));
    assert_eq!(
        sample(&e, "gnomon_gps", &[("source", "serial"), ("pps", "socket")]),
        Some(1.0)
    );
    let fixes: Vec<_> = samples(&e, "gnomon_gps_fix_mode");
    assert_eq!(fixes.len(), 3, "{fixes:?}");
    assert_eq!(
        fixes.iter().filter(|(_, v)| *v == 1.0).count(),
        1,
        "{fixes:?}"
    );
    assert_eq!(
        sample(&e, "gnomon_gps_fix_mode", &[("mode", "none")]),
        Some(0.0)
    );
    assert!(sample(&e, "gnomon_gps_satellites_used", &[]).unwrap() >= 4.0);
    assert!(sample(&e, "gnomon_gps_pps_pulses", &[]).unwrap() >= 3.0);
    assert!(sample(&e, "gnomon_gps_nmea_epochs", &[]).unwrap() >= 3.0);
    assert!(sample(&e, "gnomon_gps_refclock_samples_sent", &[]).unwrap() >= 1.0);
    let jitter = sample(&e, "gnomon_gps_pps_jitter_seconds", &[]).unwrap();
    assert!((0.0..0.1).contains(&jitter), "jitter {jitter}");
    let interval = sample(&e, "gnomon_gps_pps_interval_seconds", &[]).unwrap();
    assert!((0.9..1.1).contains(&interval), "interval {interval}");
    let delay = sample(&e, "gnomon_gps_nmea_pps_delay_seconds", &[]).unwrap();
    assert!((0.0..0.9).contains(&delay), "NMEA after PPS {delay}");
    let gps_offset = sample(&e, "gnomon_gps_offset_seconds", &[]).unwrap();
    assert!(gps_offset.abs() < 0.1, "GPS offset {gps_offset}");

    // chrony's offsets per source, labelled by what each is to gnomon.
    let nmea = sample(
        &e,
        "gnomon_chrony_source_offset_seconds",
        &[("source", "NMEA"), ("kind", "refclock")],
    )
    .unwrap();
    assert!(nmea.abs() < 0.1, "NMEA offset {nmea}");
    let fallback = FALLBACK.to_string();
    assert!(sample(
        &e,
        "gnomon_chrony_source_offset_seconds",
        &[("source", fallback.as_str()), ("kind", "fallback")],
    )
    .is_some());
    let fb_states: Vec<_> = samples(&e, "gnomon_chrony_source_state")
        .into_iter()
        .filter(|(l, _)| l["source"] == fallback)
        .collect();
    assert_eq!(fb_states.len(), 6, "{fb_states:?}");
    assert_eq!(fb_states.iter().filter(|(_, v)| *v == 1.0).count(), 1);
    assert_eq!(
        sample(
            &e,
            "gnomon_fallback_answering",
            &[("source", fallback.as_str()), ("tier", "public")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &e,
            "gnomon_chrony_source_answering",
            &[("source", fallback.as_str())]
        ),
        Some(1.0)
    );
    let age = sample(&e, "gnomon_chrony_snapshot_age_seconds", &[]).unwrap();
    assert!((0.0..15.0).contains(&age), "snapshot age {age}");

    // Counters only go up between scrapes.
    let passes = sample(&e, "gnomon_engine_passes", &[]).unwrap();
    thread::sleep(Duration::from_millis(1500));
    let later = scrape_openmetrics(addr);
    assert!(sample(&later, "gnomon_engine_passes", &[]).unwrap() > passes);

    // Without an OpenMetrics Accept: Prometheus' text format, the same
    // families, and promtool's lint has nothing to say.
    let a = get(addr, None);
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], PROMETHEUS_TEXT);
    assert!(!a.body.contains("# EOF"));
    let p: MetricsExposition<PrometheusType, PrometheusValue> =
        openmetrics_parser::prometheus::parse_prometheus(&a.body)
            .unwrap_or_else(|e| panic!("not Prometheus text: {e:?}\n{}", a.body));
    let sample_names: BTreeSet<String> = p.families.keys().cloned().collect();
    let want: BTreeSet<String> = FAMILIES
        .iter()
        .filter(|f| names.contains(f.name))
        .map(Family::sample_name)
        .collect();
    assert_eq!(sample_names, want);
    assert_eq!(
        p.families["gnomon_engine_passes_total"].family_type,
        PrometheusType::Counter
    );
    let (ok, lint) = run_promtool(&["check", "metrics"], Some(&a.body));
    assert!(ok, "promtool check metrics:\n{lint}\n{}", a.body);
    assert!(lint.trim().is_empty(), "promtool check metrics:\n{lint}");

    // HEAD: the headers of a scrape, no body.
    let raw = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    };
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "HEAD with a body: {raw}");

    garbage_gets_errors_and_the_daemon_serves_on(&d, addr);
}

/// Requests no scraper sends: each gets an error status (or, for what is
/// not HTTP at all, a closed connection), and gnomond goes on serving.
fn garbage_gets_errors_and_the_daemon_serves_on(d: &Gnomond, addr: SocketAddr) {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("another path", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 404),
        (
            "path traversal",
            b"GET /../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
            404,
        ),
        (
            "POST",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            405,
        ),
        ("no version", b"GET /metrics\r\n\r\n".to_vec(), 400),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            400,
        ),
        (
            "binary",
            (0u8..=255).cycle().take(3000).chain(*b"\r\n\r\n").collect(),
            400,
        ),
        (
            "a huge header",
            [
                b"GET /metrics HTTP/1.1\r\nX-Big: ".as_slice(),
                &vec![b'a'; 64 * 1024],
                b"\r\n\r\n",
            ]
            .concat(),
            431,
        ),
        (
            "a head that never ends",
            [
                b"GET /metrics HTTP/1.1\r\n".as_slice(),
                &b"X: y\r\n".repeat(3000),
            ]
            .concat(),
            431,
        ),
        (
            "a TLS client hello",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, b'\n', b'\n',
            ],
            400,
        ),
    ];
    for (what, request, want) in &cases {
        let a = exchange(addr, request).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(a.status, *want, "{what}: {a:?}");
        assert_eq!(a.headers["connection"], "close", "{what}");
        if *want == 405 {
            assert_eq!(a.headers["allow"], "GET, HEAD");
        }
    }
    // Half a request, then silence: 408 after the read timeout.
    let started = Instant::now();
    let a = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(b"GET /metr").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        parse_answer(&raw).unwrap()
    };
    assert_eq!(a.status, 408, "{a:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A client that connects and hangs up at once.
    for _ in 0..20 {
        let s = TcpStream::connect(addr).unwrap();
        s.shutdown(Shutdown::Both).unwrap();
    }
    // Their slots are free again once their tasks have seen them go.
    thread::sleep(Duration::from_millis(300));
    // As many idle connections as the cap: the next one gets 503 at once.
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(300));
    let a = get(addr, None);
    assert_eq!(a.status, 503, "{a:?}");
    drop(idle);
    // Still alive, still scraped.
    wait_for(
        "a scrape after the garbage",
        Duration::from_secs(10),
        || {
            let a = get(addr, Some(PROMETHEUS_ACCEPT));
            (a.status == 200).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    let e = scrape_openmetrics(addr);
    assert_eq!(
        current_state(&e),
        status(d)["status"]["state"].as_str().unwrap()
    );
    let s = json(&d.gnomonctl(&["status", "--json"]).unwrap());
    assert!(s["daemon"]["pid"].as_u64().is_some());
}

// ---- off by default ----

fn client_gnomond(name: &str, configure: impl FnOnce(&mut Config)) -> (Chronyd, Gnomond) {
    let mut spec = ChronydSpec::client(name);
    spec.with_sourcedir = true;
    let chrony = Chronyd::start(spec).unwrap();
    let mut config = Config::example_client();
    let silent = |octet: u8| NtpServerConfig {
        port: Some(free_loopback_udp_port().unwrap()),
        minpoll: Some(-4),
        maxpoll: Some(-4),
        ..NtpServerConfig::new(Ipv4Addr::new(127, 0, 0, octet).to_string())
    };
    config.primary.servers = vec![silent(41)];
    config.fallback.servers = vec![silent(42)];
    config.fallback.peers = Vec::new();
    config.paths.chrony_socket = chrony.socket().display().to_string();
    config.paths.sources_dir = chrony.sources_dir().display().to_string();
    config.control.read_group = String::new();
    configure(&mut config);
    let d = Gnomond::start(GnomondSpec::new(config)).unwrap();
    (chrony, d)
}

/// The inodes of listening TCP sockets in this network namespace.
fn listening_tcp_inodes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A: LISTEN; the inode is the tenth field.
            if fields.len() > 9 && fields[3] == "0A" {
                out.insert(fields[9].to_owned());
            }
        }
    }
    out
}

/// The socket inodes a process holds.
fn socket_inodes(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect()
}

#[test]
fn metrics_are_off_by_default() {
    let (_chrony, d) = client_gnomond("metrics-off", |c| {
        assert!(!c.metrics.enabled, "metrics must be off by default");
    });
    wait_ready(&d);
    let pid = d.pid().unwrap();
    let listening: Vec<String> = socket_inodes(pid)
        .intersection(&listening_tcp_inodes())
        .cloned()
        .collect();
    assert!(
        listening.is_empty(),
        "gnomond with [metrics] off listens on TCP (socket inodes {listening:?})"
    );
    // The default port is not answered by gnomond (nothing else of ours uses it).
    let refused = TcpStream::connect_timeout(
        &SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            gnomon_core::config::DEFAULT_METRICS_PORT,
        )),
        Duration::from_secs(2),
    );
    assert!(
        refused.is_err(),
        "something answers on the default metrics port"
    );

    // The same daemon with [metrics] on holds exactly one listening socket,
    // on the address asked for: the check above can see one.
    let port = free_tcp_port();
    let (_chrony2, on) = client_gnomond("metrics-on", |c| {
        c.metrics.enabled = true;
        c.metrics.listen = format!("127.0.0.1:{port}");
    });
    wait_ready(&on);
    let listening = socket_inodes(on.pid().unwrap())
        .intersection(&listening_tcp_inodes())
        .count();
    assert_eq!(listening, 1);
    let a = get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), None);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.body.contains("gnomon_role_info{role=\"client\"} 1\n"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("gnomon_gps"), "GPS metrics on a client");
}

#[test]
fn a_taken_port_stops_the_start_with_a_clear_error() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_chrony, mut d) = client_gnomond("metrics-taken", |c| {
        c.metrics.enabled = true;
        c.metrics.listen = format!("127.0.0.1:{port}");
    });
    let exit = d.wait_exit(Duration::from_secs(20)).unwrap();
    assert_eq!(exit.code(), Some(71), "{exit:?}{}", output(&d));
    let out = d.output();
    assert!(
        out.contains(&format!("127.0.0.1:{port}")) && out.contains("metrics.listen"),
        "{out}"
    );
}

#[test]
fn a_reachable_listen_address_is_refused_by_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::example_client();
    config.metrics.enabled = true;
    config.metrics.listen = "0.0.0.0:9476".into();
    let path = dir.path().join("gnomon.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let out = Command::new(gnomon_lab::gnomond::workspace_binary("gnomond").unwrap())
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("metrics.listen") && text.contains("allow-remote"),
        "{text}"
    );
    config.metrics.allow_remote = true;
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let out = Command::new(gnomon_lab::gnomond::workspace_binary("gnomond").unwrap())
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- deploy/: the alert rules and the dashboard ----

/// Every `gnomon_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("gnomon_") {
        let start = i + at;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

fn exposed_names() -> BTreeSet<String> {
    FAMILIES.iter().map(Family::sample_name).collect()
}

#[test]
fn alert_rules_are_valid_and_use_exposed_metrics() {
    let path = repo_root().join("deploy/prometheus/gnomon-alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (ok, out) = run_promtool(&["check", "rules", path.to_str().unwrap()], None);
    assert!(ok, "promtool check rules {}:\n{out}", path.display());
    let used = metric_names(&text);
    let unknown: Vec<_> = used.difference(&exposed_names()).cloned().collect();
    assert!(
        unknown.is_empty(),
        "rules use metrics gnomond does not expose: {unknown:?}"
    );
    // The alerts the brief names are all there.
    for alert in [
        "GnomonScrapeDown",
        "GnomonClockBeforeFloor",
        "GnomonNoUsableReference",
        "GnomonGpsInsane",
        "GnomonFallbacksEngaged",
        "GnomonSystemOffsetLarge",
    ] {
        assert!(text.contains(&format!("alert: {alert}\n")), "no {alert}");
    }
}

#[test]
fn dashboard_is_valid_and_uses_exposed_metrics() {
    let path = repo_root().join("deploy/grafana/gnomon-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(dashboard["title"].as_str().unwrap().contains("gnomon"));
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "expr" {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let used = metric_names(&exprs.join("\n"));
    let unknown: Vec<_> = used.difference(&exposed_names()).cloned().collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics gnomond does not expose: {unknown:?}"
    );
    assert!(used.len() >= 20, "{used:?}");
    // Every query is PromQL: wrapped as recording rules, with Grafana's
    // variables filled in, promtool parses them.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$instance", "host:9476")
            .replace("$job", "gnomon");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let (ok, out) = run_promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert!(ok, "dashboard queries:\n{out}\n{rules}");
}

#[test]
fn docs_describe_every_metric() {
    let doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let missing: Vec<String> = FAMILIES
        .iter()
        .map(Family::sample_name)
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/metrics.md does not describe {missing:?}"
    );
    let unknown: Vec<_> = metric_names(&doc)
        .difference(&exposed_names())
        .cloned()
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/metrics.md names unknown metrics {unknown:?}"
    );
}
