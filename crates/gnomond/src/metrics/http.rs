//! The `/metrics` endpoint: a deliberately small HTTP/1.1 server. One
//! request per connection (`Connection: close`), `GET`/`HEAD /metrics`
//! only, a bounded request head, a deadline for reading it and for writing
//! the answer, and a cap on connections served at once. Whatever arrives,
//! the worst a client gets is an error status and a closed connection.
//!
//! A scrape asks the engine loop for a [`Scrape`] over a channel (only the
//! loop touches the engine) and renders it here, off the loop.

use std::{
    io,
    net::{SocketAddr, TcpListener as StdTcpListener},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::{timeout, timeout_at, Instant},
};
use tracing::{debug, error, info, warn};

use super::{render, Format, Scrape, ScrapeCall};

/// Back-off after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a client beyond the connection cap gets to take its 503.
const BUSY_REPLY_TIMEOUT: Duration = Duration::from_millis(100);
/// Refusals (503) being sent at once; beyond that a connection is just
/// closed. Each lasts at most `BUSY_REPLY_TIMEOUT` + `LINGER_TIME`.
const MAX_REFUSALS: usize = 16;
/// After answering, what is left of a request (a body nobody asked for) is
/// read and dropped for at most this long and this much, so that closing
/// does not reset the connection under the answer.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

/// Timeouts and caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// For the whole request head, from the connection's start.
    pub read_timeout: Duration,
    /// For the whole answer.
    pub write_timeout: Duration,
    /// For the engine loop to hand over a scrape.
    pub scrape_timeout: Duration,
    /// Largest request head (request line and headers) accepted.
    pub max_head: usize,
    /// Connections served at once; more get 503 and are closed.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            scrape_timeout: Duration::from_secs(5),
            max_head: 8 * 1024,
            max_connections: 8,
        }
    }
}

/// Why the metrics endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("binding the metrics endpoint to {addr} (metrics.listen): {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// A bound metrics endpoint, ready to [`serve`](MetricsServer::serve).
#[derive(Debug)]
pub struct MetricsServer {
    listener: StdTcpListener,
    addr: SocketAddr,
    limits: HttpLimits,
}

impl MetricsServer {
    /// Binds the TCP listener now, so that a taken port fails gnomond's
    /// start rather than a task later. Needs no async runtime.
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let bind_error = |source| MetricsError::Bind { addr, source };
        let listener = StdTcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(MetricsServer {
            listener,
            addr,
            limits: HttpLimits::default(),
        })
    }

    /// Other limits (tests use small ones).
    #[must_use]
    pub fn with_limits(mut self, limits: HttpLimits) -> MetricsServer {
        self.limits = limits;
        self
    }

    /// The address actually bound (the port, when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is true (or its sender is gone).
    pub async fn serve(
        self,
        scrapes: mpsc::Sender<ScrapeCall>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let MetricsServer {
            listener,
            addr,
            limits,
        } = self;
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                error!("serving the metrics endpoint on {addr}: {e}");
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = JoinSet::new();
        let mut refusals = JoinSet::new();
        info!("metrics endpoint listening on http://{addr}/metrics");
        while !*shutdown.borrow_and_update() {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            error!("a metrics connection task panicked: {e}");
                        }
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => {
                            connections.spawn(serve_connection(stream, peer, scrapes.clone(), limits, slot));
                        }
                        Err(_) => {
                            debug!(%peer, "metrics: all {} connection slots taken; refusing", limits.max_connections);
                            if refusals.len() < MAX_REFUSALS {
                                refusals.spawn(refuse_busy(stream));
                            }
                        }
                    },
                    Err(e) => {
                        warn!("accepting on the metrics endpoint {addr}: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(listener);
        refusals.shutdown().await;
        connections.shutdown().await;
        info!("metrics endpoint {addr} closed");
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    scrapes: mpsc::Sender<ScrapeCall>,
    limits: HttpLimits,
    _slot: OwnedSemaphorePermit,
) {
    let deadline = Instant::now() + limits.read_timeout;
    let (answer, head_only) = match read_head(&mut stream, limits.max_head, deadline).await {
        HeadRead::Head(bytes) => match parse_head(&bytes) {
            Ok(head) => match route(&head) {
                Route::Metrics { format, head_only } => (
                    scrape(&scrapes, format, limits.scrape_timeout).await,
                    head_only,
                ),
                Route::NotFound => (
                    Answer::error(404, "Not Found", "gnomond serves /metrics only\n"),
                    head.method == "HEAD",
                ),
                Route::MethodNotAllowed => (
                    Answer::error(405, "Method Not Allowed", "GET or HEAD only\n")
                        .with_header("Allow", "GET, HEAD"),
                    false,
                ),
            },
            Err(why) => {
                debug!(%peer, "metrics: bad request: {why}");
                (Answer::error(400, "Bad Request", "bad request\n"), false)
            }
        },
        HeadRead::TooLarge => {
            debug!(%peer, "metrics: request head over {} bytes", limits.max_head);
            (
                Answer::error(
                    431,
                    "Request Header Fields Too Large",
                    "request head too large\n",
                ),
                false,
            )
        }
        HeadRead::TimedOut => {
            debug!(%peer, "metrics: no complete request within {:?}", limits.read_timeout);
            (
                Answer::error(408, "Request Timeout", "request timeout\n"),
                false,
            )
        }
        HeadRead::Closed => return,
        HeadRead::Failed(e) => {
            debug!(%peer, "metrics: reading a request: {e}");
            return;
        }
    };
    let bytes = answer.bytes(head_only);
    match timeout(limits.write_timeout, stream.write_all(&bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!(%peer, "metrics: writing the answer: {e}");
            return;
        }
        Err(_) => {
            debug!(%peer, "metrics: the client did not take the answer within {:?}", limits.write_timeout);
            return;
        }
    }
    let _ = stream.shutdown().await;
    linger(&mut stream).await;
}

/// Tells a client beyond the connection cap to come back later.
async fn refuse_busy(mut stream: TcpStream) {
    let answer = Answer::error(
        503,
        "Service Unavailable",
        "too many connections; try again\n",
    );
    if let Ok(Ok(())) = timeout(BUSY_REPLY_TIMEOUT, stream.write_all(&answer.bytes(false))).await {
        let _ = stream.shutdown().await;
        linger(&mut stream).await;
    }
}

/// Reads and drops what the client still sends, briefly: closing a socket
/// with unread data resets it, and the client may lose the answer.
async fn linger(stream: &mut TcpStream) {
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained = drained.saturating_add(n),
            _ => return,
        }
    }
}

async fn scrape(scrapes: &mpsc::Sender<ScrapeCall>, format: Format, wait: Duration) -> Answer {
    let (tx, rx) = oneshot::channel();
    let asked = async {
        scrapes
            .send(ScrapeCall { reply: tx })
            .await
            .map_err(|_| ())?;
        rx.await.map_err(|_| ())
    };
    let scrape: Box<Scrape> = match timeout(wait, asked).await {
        Ok(Ok(scrape)) => scrape,
        Ok(Err(())) => {
            return Answer::error(503, "Service Unavailable", "gnomond is stopping\n");
        }
        Err(_) => {
            warn!("metrics: the engine loop did not hand over a scrape within {wait:?}");
            return Answer::error(
                503,
                "Service Unavailable",
                "gnomond's engine loop did not answer in time\n",
            );
        }
    };
    Answer {
        status: 200,
        reason: "OK",
        content_type: format.content_type(),
        extra: Vec::new(),
        body: render(&scrape, format).into_bytes(),
    }
}

// ---- reading and parsing the request head ----

enum HeadRead {
    /// The head, up to and including its blank line.
    Head(Vec<u8>),
    TooLarge,
    TimedOut,
    /// The client went away before sending a whole head.
    Closed,
    Failed(io::Error),
}

async fn read_head(stream: &mut TcpStream, max: usize, deadline: Instant) -> HeadRead {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return HeadRead::TimedOut,
            Ok(Err(e)) => return HeadRead::Failed(e),
            Ok(Ok(0)) => return HeadRead::Closed,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = head_end(&buf) {
            if end > max {
                return HeadRead::TooLarge;
            }
            buf.truncate(end);
            return HeadRead::Head(buf);
        }
        if buf.len() > max {
            return HeadRead::TooLarge;
        }
    }
}

/// Where the head ends: just after the first empty line (CRLF CRLF, or a
/// bare LF LF as lenient servers accept).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The parts of a request the endpoint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The path, without a query string.
    pub path: String,
    pub accept: Option<String>,
}

/// Parses a request head (request line and header fields). Refuses what is
/// not HTTP/1.x text: no request line, control characters, a header line
/// without a colon, an unknown version.
pub fn parse_head(bytes: &[u8]) -> Result<RequestHead, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {request_line:?}"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("bad method {method:?}"));
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(format!("unsupported version {version:?}"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("bad request target {target:?}"));
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let mut accept = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("bad header name {name:?}"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!("control character in header {name}"));
        }
        if name.eq_ignore_ascii_case("accept") {
            // Several Accept fields make one list.
            let value = value.trim();
            accept = Some(match accept {
                None => value.to_owned(),
                Some(before) => format!("{before}, {value}"),
            });
        }
    }
    Ok(RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        accept,
    })
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics { format: Format, head_only: bool },
    NotFound,
    MethodNotAllowed,
}

pub fn route(head: &RequestHead) -> Route {
    let head_only = match head.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if head.path != "/metrics" {
        return Route::NotFound;
    }
    Route::Metrics {
        format: Format::negotiate(head.accept.as_deref()),
        head_only,
    }
}

// ---- answers ----

/// An HTTP answer, always closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub extra: Vec<(&'static str, &'static str)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn error(status: u16, reason: &'static str, body: &str) -> Answer {
        Answer {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn with_header(mut self, name: &'static str, value: &'static str) -> Answer {
        self.extra.push((name, value));
        self
    }

    /// The bytes on the wire; `head_only` (a HEAD request) leaves the
    /// body out but keeps its length.
    pub fn bytes(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn head(text: &str) -> Result<RequestHead, String> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_prometheus_scrape_parses_and_routes_to_openmetrics() {
        let h = head(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9476\r\nUser-Agent: Prometheus/2.42.0\r\n\
             Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/metrics");
        assert_eq!(
            route(&h),
            Route::Metrics {
                format: Format::OpenMetrics,
                head_only: false
            }
        );
    }

    #[test]
    fn routes() {
        let r = |t: &str| route(&head(t).unwrap());
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics {
                format: Format::Prometheus,
                head_only: false
            }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1\nAccept: text/plain\n\n"),
            Route::Metrics {
                format: Format::Prometheus,
                head_only: true
            }
        );
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metrics/ HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(r("DELETE / HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for bad in [
            "",
            "\r\n\r\n",
            "GET\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET /met\u{7f}rics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nAccept: a\u{1}b\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_head(b"GET /metrics HTTP/1.1\r\nX: \xff\r\n\r\n").is_err());
        // Every prefix and some noise: never a panic.
        let full = b"GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n";
        for i in 0..full.len() {
            let _ = parse_head(&full[..i]);
            let _ = head_end(&full[..i]);
        }
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = parse_head(&noise);
    }

    /// What a client reads on a fresh connection after sending `request`.
    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_get_503_until_one_closes() {
        let server = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap()
            .with_limits(HttpLimits {
                max_connections: 2,
                ..HttpLimits::default()
            });
        let addr = server.local_addr();
        let (scrapes, _calls) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(server.serve(scrapes, shutdown));
        let idle = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(200)).await;
        let busy = ask(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(busy.starts_with("HTTP/1.1 503 "), "{busy}");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let free = ask(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(free.starts_with("HTTP/1.1 404 "), "{free}");
    }

    #[test]
    fn head_end_finds_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn answers_close_and_head_keeps_the_length() {
        let a = Answer::error(405, "Method Not Allowed", "GET or HEAD only\n")
            .with_header("Allow", "GET, HEAD");
        let full = String::from_utf8(a.bytes(false)).unwrap();
        assert!(
            full.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{full}"
        );
        assert!(full.contains("\r\nAllow: GET, HEAD\r\n"), "{full}");
        assert!(full.contains("\r\nConnection: close\r\n"), "{full}");
        assert!(full.contains("\r\nContent-Length: 17\r\n"), "{full}");
        assert!(full.ends_with("\r\n\r\nGET or HEAD only\n"), "{full}");
        let head_only = String::from_utf8(a.bytes(true)).unwrap();
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");
        assert!(head_only.contains("Content-Length: 17"), "{head_only}");
    }
}
