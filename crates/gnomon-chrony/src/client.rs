//! chrony's command socket (cmdmon) as gnomon uses it: chrony-candm's
//! message types over our own Unix datagram socket, with configurable
//! paths, retries, and typed queries mapped into `gnomon-core` types.
//!
//! The client is level-triggered like the engine: any connection failure
//! drops the socket, and the next request builds a fresh one, so a chronyd
//! restart needs no action from the caller. Every `await` point is
//! cancel-safe: replies are matched by sequence number, so a reply left
//! over from a cancelled request is ignored by the next one.

use std::{
    fs::{self, Permissions},
    hash::{BuildHasher, Hasher},
    io,
    net::IpAddr,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::BytesMut;
use chrony_candm::{
    reply::{self, Reply, ReplyBody},
    request::{self, Request, RequestBody},
};
use gnomon_core::{
    chrony::{
        ChronySnapshot, ChronySourceId, RemoteReference, SourceReport, SourceStatistics, Tracking,
    },
    source::{NtpSource, PlannedSource},
    time::WallTime,
};
use tokio::{net::UnixDatagram, time::Instant};

use crate::{
    error::{ChronyError, ChronyStatus},
    map,
};

/// Where chronyd listens by default (chrony's `bindcmdaddress` default).
pub const DEFAULT_SERVER_SOCKET: &str = "/run/chrony/chronyd.sock";

/// chrony's command protocol version (`PROTO_VERSION_NUMBER`).
const PROTO_VERSION: u8 = 6;
const PKT_TYPE_REPLY: u8 = 2;
const REPLY_HEADER_LEN: usize = 28;
/// Larger than chrony's biggest reply (`CMD_Reply`).
const RECV_BUFFER: usize = 4096;
/// First pause before retrying after an immediate failure (no socket, no
/// listener); doubled per attempt and capped at the reply timeout.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// `burst` as `chronyc burst 4/8 ADDRESS` sends it.
const BURST_GOOD: i32 = 4;
const BURST_TOTAL: i32 = 8;

/// How to reach chronyd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// chronyd's `bindcmdaddress`.
    pub server_socket: PathBuf,
    /// Where our own socket is bound: writable by gnomon, and searchable by
    /// chrony's user, which sends the replies there.
    pub client_dir: PathBuf,
    /// How long one attempt waits for its reply.
    pub timeout: Duration,
    /// Attempts per request (at least one).
    pub attempts: u32,
}

impl ClientConfig {
    /// One-second timeout and three attempts, like chronyc.
    pub fn new(server_socket: impl Into<PathBuf>, client_dir: impl Into<PathBuf>) -> Self {
        ClientConfig {
            server_socket: server_socket.into(),
            client_dir: client_dir.into(),
            timeout: Duration::from_secs(1),
            attempts: 3,
        }
    }
}

/// A client of one chronyd's command socket. Not `Clone`: one socket, one
/// request at a time (`&mut self`).
#[derive(Debug)]
pub struct ChronyClient {
    config: ClientConfig,
    socket: Option<ClientSocket>,
    next_sequence: u32,
    /// chronyd answered "invalid command" to `selectdata` (chrony < 4.2).
    select_data_unsupported: bool,
    /// Zero bytes added to an `ntpdata` request. chronyd answers only a
    /// request at least as long as its reply, and chrony 4.4 and later
    /// reply with more (RPY_NTP_DATA2) than chrony-candm pads for (4.3's
    /// RPY_NTP_DATA): "bad packet length" until the request is longer.
    ntp_data_padding: usize,
}

/// What an `ntpdata` request is padded with once chronyd has said it is
/// too short: more than RPY_NTP_DATA2 adds to RPY_NTP_DATA.
const NTP_DATA_EXTRA_PADDING: usize = 128;

/// Our bound and connected socket; its file goes away with it.
#[derive(Debug)]
struct ClientSocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Drop for ClientSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Distinguishes our sockets within one process, as chronyc does with its pid.
static SOCKET_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How one attempt failed.
enum Failure {
    /// Worth another attempt (chronyd absent, restarting, or slow).
    Retry(ChronyError),
    /// Another attempt would fail the same way.
    Fatal(ChronyError),
}

/// What a received datagram is to the request waiting for it.
#[derive(Debug, PartialEq)]
enum Decoded {
    /// Not a reply to this request (stale, or not a chrony reply at all).
    NotOurs,
    Reply(Box<ReplyBody>),
    Status(u16),
    Malformed(String),
}

impl ChronyClient {
    /// No IO: the socket is created by the first request.
    pub fn new(config: ClientConfig) -> Self {
        ChronyClient {
            config,
            socket: None,
            next_sequence: random_u32(),
            select_data_unsupported: false,
            ntp_data_padding: 0,
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Our socket's path while one is open.
    pub fn client_socket(&self) -> Option<&Path> {
        self.socket.as_ref().map(|s| s.path.as_path())
    }

    /// Sends one request and returns the body of chronyd's successful
    /// reply; a non-success status is [`ChronyError::Status`].
    pub async fn request(&mut self, body: RequestBody) -> Result<ReplyBody, ChronyError> {
        let name = request_name(&body);
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let attempts = self.config.attempts.max(1);

        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 && self.socket.is_none() {
                // The last attempt failed at once (no socket, no listener):
                // give a restarting chronyd a moment before trying again.
                tokio::time::sleep(backoff(attempt, self.config.timeout)).await;
            }
            match self.attempt(name, body, sequence, attempt).await {
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if !matches!(e, ChronyError::Timeout { .. }) {
                        // Keep the socket across timeouts (a late reply to an
                        // earlier attempt still counts), drop it otherwise.
                        self.socket = None;
                    }
                    last = Some(e);
                }
            }
        }
        // Nothing worked: start from scratch next time.
        self.socket = None;
        Err(match last {
            Some(ChronyError::Timeout { .. }) | None => self.timeout_error(name, attempts),
            Some(e) => e,
        })
    }

    async fn attempt(
        &mut self,
        name: &'static str,
        body: RequestBody,
        sequence: u32,
        attempt: u32,
    ) -> Result<ReplyBody, Failure> {
        if self.socket.is_none() {
            self.socket = Some(self.open(name)?);
        }
        let Some(socket) = self.socket.as_ref() else {
            return Err(Failure::Retry(self.timeout_error(name, attempt + 1)));
        };

        let request = Request {
            sequence,
            attempt: u16::try_from(attempt).unwrap_or(u16::MAX),
            body,
        };
        let padding = if matches!(body, RequestBody::NtpData(_)) {
            self.ntp_data_padding
        } else {
            0
        };
        let mut packet = BytesMut::with_capacity(request.length() + padding);
        request.serialize(&mut packet);
        packet.resize(packet.len() + padding, 0);
        let command = request.cmd();

        let deadline = Instant::now() + self.config.timeout;
        match tokio::time::timeout_at(deadline, socket.socket.send(&packet)).await {
            Err(_elapsed) => return Err(Failure::Retry(self.timeout_error(name, attempt + 1))),
            Ok(Err(e)) => return Err(self.io_failure(name, e, "sending to")),
            Ok(Ok(_)) => {}
        }

        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let received = tokio::time::timeout_at(deadline, socket.socket.recv(&mut buf)).await;
            let len = match received {
                Err(_elapsed) => return Err(Failure::Retry(self.timeout_error(name, attempt + 1))),
                Ok(Err(e)) => return Err(self.io_failure(name, e, "receiving from")),
                Ok(Ok(len)) => len,
            };
            match decode(buf.get(..len).unwrap_or(&[]), sequence, command) {
                Decoded::NotOurs => {}
                Decoded::Reply(body) => return Ok(*body),
                Decoded::Status(code) => {
                    return Err(Failure::Fatal(ChronyError::Status {
                        request: name,
                        path: self.config.server_socket.clone(),
                        status: ChronyStatus(code),
                    }))
                }
                Decoded::Malformed(detail) => {
                    return Err(Failure::Fatal(self.malformed(name, detail)))
                }
            }
        }
    }

    /// Binds a fresh socket in the client directory and connects it.
    fn open(&self, name: &'static str) -> Result<ClientSocket, Failure> {
        let n = SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .config
            .client_dir
            .join(format!("gnomon.{}.{n}.sock", std::process::id()));
        let client_dir_error = |action, source| {
            Failure::Fatal(ChronyError::Io {
                request: name,
                action,
                path: path.clone(),
                fix: "gnomon's client socket directory must exist, be writable by gnomon and \
                      searchable by chrony's user (systemd: RuntimeDirectory=gnomon)",
                source,
            })
        };
        // Our name embeds our pid, so a file there is a leftover of ours.
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(client_dir_error("removing a stale client socket", e))
            }
            _ => {}
        }
        let socket = UnixDatagram::bind(&path)
            .map_err(|e| client_dir_error("binding gnomon's client socket", e))?;
        let socket = ClientSocket {
            socket,
            path: path.clone(),
        };
        // chronyd may run as its own user and must be able to answer.
        fs::set_permissions(&socket.path, Permissions::from_mode(0o666))
            .map_err(|e| client_dir_error("opening up gnomon's client socket", e))?;
        socket
            .socket
            .connect(&self.config.server_socket)
            .map_err(|e| self.io_failure(name, e, "connecting to"))?;
        Ok(socket)
    }

    fn io_failure(&self, name: &'static str, e: io::Error, action: &'static str) -> Failure {
        let path = self.config.server_socket.clone();
        match e.kind() {
            io::ErrorKind::NotFound => Failure::Retry(ChronyError::SocketNotFound {
                request: name,
                path,
            }),
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionReset => Failure::Retry(ChronyError::NotListening {
                request: name,
                path,
            }),
            io::ErrorKind::PermissionDenied => Failure::Fatal(permission_denied(name, path)),
            _ => Failure::Fatal(ChronyError::Io {
                request: name,
                action,
                path,
                fix: "check that this is chronyd's command socket",
                source: e,
            }),
        }
    }

    fn timeout_error(&self, name: &'static str, attempts: u32) -> ChronyError {
        ChronyError::Timeout {
            request: name,
            path: self.config.server_socket.clone(),
            attempts,
            timeout: self.config.timeout,
            client_dir: self.config.client_dir.clone(),
        }
    }

    fn malformed(&self, name: &'static str, detail: impl Into<String>) -> ChronyError {
        ChronyError::MalformedReply {
            request: name,
            path: self.config.server_socket.clone(),
            detail: detail.into(),
        }
    }

    fn unexpected_reply(&self, name: &'static str, body: &ReplyBody) -> ChronyError {
        self.malformed(name, format!("unexpected reply {}", reply_kind(body)))
    }

    /// A command whose successful reply carries no data.
    async fn command(&mut self, body: RequestBody) -> Result<(), ChronyError> {
        let name = request_name(&body);
        match self.request(body).await? {
            ReplyBody::Null => Ok(()),
            other => Err(self.unexpected_reply(name, &other)),
        }
    }

    /// chrony's `tracking` report.
    pub async fn tracking(&mut self) -> Result<Tracking, ChronyError> {
        match self.request(RequestBody::Tracking).await? {
            ReplyBody::Tracking(t) => {
                map::tracking(&t).map_err(|e| self.malformed("tracking", e.to_string()))
            }
            other => Err(self.unexpected_reply("tracking", &other)),
        }
    }

    /// chrony's `sources` report, with each NTP source's name
    /// (`ntpsourcename`) and `noselect` (`selectdata`, chrony ≥ 4.2) merged
    /// in. Sources whose hostname is not resolved yet are left out, as
    /// chronyc does without `-a`.
    pub async fn sources(&mut self) -> Result<Vec<SourceReport>, ChronyError> {
        let mut reports = Vec::new();
        for (index, data, id) in self.source_list("sources").await? {
            let name = match id {
                ChronySourceId::Address(ip) => self.source_name(ip).await?,
                ChronySourceId::Refclock(_) => None,
            };
            let noselect = self.noselect(index, &id).await?;
            let remote = match id {
                ChronySourceId::Address(ip) if data.reachability != 0 => self.remote(ip).await?,
                _ => None,
            };
            if let Some(mut report) = map::source_report(&data, name, noselect)
                .map_err(|e| self.malformed("sources", e.to_string()))?
            {
                report.remote = remote;
                reports.push(report);
            }
        }
        Ok(reports)
    }

    /// Every source chrony has, by index, with its `source_data` and
    /// identity; unresolved sources are left out. A source removed between
    /// the count and its turn ends the list early.
    async fn source_list(
        &mut self,
        what: &'static str,
    ) -> Result<Vec<(u32, reply::SourceData, ChronySourceId)>, ChronyError> {
        let n = match self.request(RequestBody::NSources).await? {
            ReplyBody::NSources(n) => n.n_sources,
            other => return Err(self.unexpected_reply(what, &other)),
        };
        let mut list = Vec::new();
        for index in 0..n {
            let Ok(wire_index) = i32::try_from(index) else {
                break;
            };
            let data = match self
                .request(RequestBody::SourceData(request::SourceData {
                    index: wire_index,
                }))
                .await
            {
                Ok(ReplyBody::SourceData(d)) => d,
                Ok(other) => return Err(self.unexpected_reply(what, &other)),
                Err(e) if e.status() == Some(ChronyStatus::NO_SUCH_SOURCE) => break,
                Err(e) => return Err(e),
            };
            if let Some(id) = map::source_id(data.mode, data.ip_addr) {
                list.push((index, data, id));
            }
        }
        Ok(list)
    }

    /// chrony's `sourcestats`: per source, the regression over its samples.
    pub async fn sourcestats(&mut self) -> Result<Vec<SourceStatistics>, ChronyError> {
        let mut stats = Vec::new();
        for (index, _, id) in self.source_list("sourcestats").await? {
            match self
                .request(RequestBody::SourceStats(request::SourceStats { index }))
                .await
            {
                Ok(ReplyBody::SourceStats(st)) => stats.extend(map::source_statistics(id, &st)),
                Ok(other) => return Err(self.unexpected_reply("sourcestats", &other)),
                Err(e) if e.status() == Some(ChronyStatus::NO_SUCH_SOURCE) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(stats)
    }

    /// The name chrony was given for an NTP source; `None` when chrony
    /// has none (or is too old to say).
    async fn source_name(&mut self, ip: IpAddr) -> Result<Option<String>, ChronyError> {
        let body = RequestBody::NtpSourceName(request::NtpSourceName { ip_addr: ip.into() });
        match self.request(body).await {
            Ok(ReplyBody::NtpSourceName(n)) => Ok(map::source_name(&n)),
            Ok(other) => Err(self.unexpected_reply("ntpsourcename", &other)),
            Err(ChronyError::Status { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where an NTP source takes its time from (`ntpdata`): its last
    /// packet's reference ID and this host's address on the association.
    /// `None` when chrony cannot say (no packet yet, a reply this client
    /// cannot read): independence is then judged by configuration alone.
    async fn remote(&mut self, ip: IpAddr) -> Result<Option<RemoteReference>, ChronyError> {
        let body = RequestBody::NtpData(request::NtpData { ip_addr: ip.into() });
        let mut reply = self.request(body).await;
        if self.ntp_data_padding == 0
            && matches!(&reply, Err(e) if e.status() == Some(ChronyStatus::BAD_PKT_LENGTH))
        {
            // chrony ≥ 4.4: ask again with room for its longer reply, and
            // from now on.
            self.ntp_data_padding = NTP_DATA_EXTRA_PADDING;
            reply = self.request(body).await;
        }
        match reply {
            Ok(ReplyBody::NtpData(d)) => Ok(Some(RemoteReference {
                ref_id: d.ref_id,
                local_address: map::ip_addr(d.local_addr),
            })),
            Ok(_) | Err(ChronyError::Status { .. } | ChronyError::MalformedReply { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn noselect(
        &mut self,
        index: u32,
        id: &ChronySourceId,
    ) -> Result<Option<bool>, ChronyError> {
        if self.select_data_unsupported {
            return Ok(None);
        }
        match self
            .request(RequestBody::SelectData(request::SelectData { index }))
            .await
        {
            Ok(ReplyBody::SelectData(s)) => {
                Ok(map::select_data_matches(&s, id).then(|| map::noselect(&s)))
            }
            Ok(other) => Err(self.unexpected_reply("selectdata", &other)),
            Err(ChronyError::Status { status, .. }) => {
                if status == ChronyStatus::INVALID {
                    self.select_data_unsupported = true;
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Tracking and sources, read one after the other.
    pub async fn snapshot(&mut self, taken_wall: WallTime) -> Result<ChronySnapshot, ChronyError> {
        let tracking = self.tracking().await?;
        let sources = self.sources().await?;
        Ok(ChronySnapshot {
            taken_wall,
            tracking,
            sources,
        })
    }

    /// How many sources are online, offline, bursting, unresolved.
    pub async fn activity(&mut self) -> Result<reply::Activity, ChronyError> {
        match self.request(RequestBody::Activity).await? {
            ReplyBody::Activity(a) => Ok(a),
            other => Err(self.unexpected_reply("activity", &other)),
        }
    }

    /// `chronyc reload sources`: re-reads the `sourcedir` files.
    pub async fn reload_sources(&mut self) -> Result<(), ChronyError> {
        self.command(RequestBody::ReloadSources).await
    }

    /// `chronyc add server|peer ...`, selectable.
    pub async fn add_source(&mut self, source: &NtpSource) -> Result<(), ChronyError> {
        self.add(source, false).await
    }

    /// Adds a planned source, `noselect` unless the plan makes it selectable.
    pub async fn add_planned_source(&mut self, planned: &PlannedSource) -> Result<(), ChronyError> {
        self.add(&planned.source, !planned.selectable).await
    }

    async fn add(&mut self, source: &NtpSource, noselect: bool) -> Result<(), ChronyError> {
        let request = map::add_source_request(source, noselect).map_err(|e| ChronyError::Io {
            request: "add source",
            action: "encoding the request for",
            path: self.config.server_socket.clone(),
            fix: "use an IP address or a hostname of at most 255 bytes",
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        self.command(RequestBody::AddSource(request)).await
    }

    /// `chronyc delete ADDRESS`.
    pub async fn delete_source(&mut self, address: IpAddr) -> Result<(), ChronyError> {
        self.command(RequestBody::DelSource(request::DelSource {
            ip_addr: address.into(),
        }))
        .await
    }

    /// `chronyc makestep`: step the clock by chrony's current correction.
    pub async fn makestep(&mut self) -> Result<(), ChronyError> {
        self.command(RequestBody::MakeStep).await
    }

    /// `chronyc burst 4/8 ADDRESS`.
    pub async fn burst(&mut self, address: IpAddr) -> Result<(), ChronyError> {
        self.command(RequestBody::Burst(request::Burst {
            mask: map::host_mask(address),
            address: address.into(),
            n_good_samples: BURST_GOOD,
            n_total_samples: BURST_TOTAL,
        }))
        .await
    }
}

/// The chronyc-like name of a request, for error messages.
pub fn request_name(body: &RequestBody) -> &'static str {
    match body {
        RequestBody::Null => "null",
        RequestBody::Tracking => "tracking",
        RequestBody::NSources | RequestBody::SourceData(_) => "sources",
        RequestBody::SourceStats(_) => "sourcestats",
        RequestBody::SelectData(_) => "selectdata",
        RequestBody::NtpSourceName(_) => "ntpsourcename",
        RequestBody::NtpData(_) => "ntpdata",
        RequestBody::Activity => "activity",
        RequestBody::ReloadSources => "reload sources",
        RequestBody::AddSource(_) => "add source",
        RequestBody::DelSource(_) => "delete source",
        RequestBody::MakeStep => "makestep",
        RequestBody::Burst(_) => "burst",
        RequestBody::Online(_) => "online",
        RequestBody::Offline(_) => "offline",
        RequestBody::Reselect => "reselect",
        RequestBody::Refresh => "refresh",
        RequestBody::ServerStats => "serverstats",
        _ => "cmdmon request",
    }
}

fn reply_kind(body: &ReplyBody) -> &'static str {
    match body {
        ReplyBody::Null => "null",
        ReplyBody::NSources(_) => "n_sources",
        ReplyBody::SourceData(_) => "source_data",
        ReplyBody::Tracking(_) => "tracking",
        ReplyBody::SourceStats(_) => "sourcestats",
        ReplyBody::Activity(_) => "activity",
        ReplyBody::NtpSourceName(_) => "ntp_source_name",
        ReplyBody::SelectData(_) => "select_data",
        _ => "of another kind",
    }
}

fn backoff(attempt: u32, cap: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(cap)
}

fn random_u32() -> u32 {
    // RandomState is seeded randomly per process and per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let bits = hasher.finish();
    u32::try_from(bits >> 32).unwrap_or_default()
        ^ u32::try_from(bits & 0xFFFF_FFFF).unwrap_or_default()
}

/// Why we may not write the socket, with the group that would help: the
/// group owning the socket's directory (chrony creates it for its user's
/// group), and the socket's mode when we can see it.
fn permission_denied(request: &'static str, path: PathBuf) -> ChronyError {
    let socket_mode = fs::metadata(&path).ok().map(|m| m.mode());
    let gid = path
        .parent()
        .and_then(|dir| fs::metadata(dir).ok())
        .map(|m| m.gid());
    let group = gid.map_or_else(|| "_chrony".to_owned(), group_name);
    let in_group = gid.and_then(|gid| own_groups().map(|groups| groups.contains(&gid)));
    ChronyError::PermissionDenied {
        request,
        path,
        group,
        in_group,
        socket_mode,
    }
}

/// This process's effective and supplementary group ids (Linux `/proc`).
fn own_groups() -> Option<Vec<u32>> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = status.lines().find_map(|l| l.strip_prefix(name))?;
        Some(
            line.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect(),
        )
    };
    // "Gid:" lists real, effective, saved and filesystem ids.
    let mut groups = field("Groups:")?;
    groups.extend(field("Gid:")?.get(1));
    Some(groups)
}

fn group_name(gid: u32) -> String {
    fs::read_to_string("/etc/group")
        .ok()
        .and_then(|groups| {
            groups.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == gid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

fn be_u16(packet: &[u8], at: usize) -> Option<u16> {
    let bytes = packet.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u32(packet: &[u8], at: usize) -> Option<u32> {
    let bytes = packet.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// `RPY_NTP_DATA` (chrony ≤ 4.3) and `RPY_NTP_DATA2` (4.4 and later), in
/// chrony's `candm.h`.
const RPY_NTP_DATA: u16 = 16;
const RPY_NTP_DATA2: u16 = 26;

/// Byte offsets (from the start of the packet) of the timestamps in the
/// replies chrony-candm decodes, per reply code (`RPY_*` in `candm.h`).
fn timestamp_offsets(reply_code: u16) -> Vec<usize> {
    const HEADER: usize = REPLY_HEADER_LEN;
    match reply_code {
        // tracking: ref_id, IPAddr (20 bytes), stratum, leap_status.
        5 => vec![HEADER + 28],
        // rtc: the timestamp comes first.
        7 => vec![HEADER],
        // ntp_data (and ntp_data2, the same up to its counters): two
        // IPAddr, port, six bytes, three 32-bit fields.
        RPY_NTP_DATA | RPY_NTP_DATA2 => vec![HEADER + 60],
        // manual_list2: n_samples, then 16 samples of 24 bytes.
        18 => (0..16).map(|i| HEADER + 4 + 24 * i).collect(),
        _ => Vec::new(),
    }
}

/// chrony-candm's timestamp decoding panics on a negative high word
/// (arithmetic overflow); chrony never sends one, so it marks garbage.
fn timestamps_sane(packet: &[u8], reply_code: u16) -> bool {
    timestamp_offsets(reply_code)
        .into_iter()
        .all(|at| be_u32(packet, at).is_none_or(|high| high <= 0x7FFF_FFFF))
}

/// Classifies one datagram for the request `sequence` / `command`.
fn decode(packet: &[u8], sequence: u32, command: u16) -> Decoded {
    if packet.len() < REPLY_HEADER_LEN || be_u32(packet, 16) != Some(sequence) {
        return Decoded::NotOurs;
    }
    let (Some(&version), Some(&pkt_type)) = (packet.first(), packet.get(1)) else {
        return Decoded::NotOurs;
    };
    if pkt_type != PKT_TYPE_REPLY {
        return Decoded::NotOurs;
    }
    if version != PROTO_VERSION {
        return Decoded::Malformed(format!(
            "protocol version {version}, gnomon speaks {PROTO_VERSION}"
        ));
    }
    let echoed = be_u16(packet, 4).unwrap_or_default();
    if echoed != command {
        return Decoded::Malformed(format!("reply to command {echoed}, expected {command}"));
    }
    match be_u16(packet, 8) {
        Some(0) => {}
        Some(status) => return Decoded::Status(status),
        None => return Decoded::NotOurs,
    }
    let reply_code = be_u16(packet, 6).unwrap_or_default();
    if !timestamps_sane(packet, reply_code) {
        return Decoded::Malformed("timestamp out of range".to_owned());
    }
    // chrony 4.4 and later answer `ntpdata` with RPY_NTP_DATA2: 4.3's
    // RPY_NTP_DATA with more counters after it. chrony-candm knows only
    // the first; read the shared part as it.
    let renamed;
    let mut buf = if reply_code == RPY_NTP_DATA2 {
        let mut copy = packet.to_vec();
        if let Some(code) = copy.get_mut(6..8) {
            code.copy_from_slice(&RPY_NTP_DATA.to_be_bytes());
        }
        renamed = copy;
        renamed.as_slice()
    } else {
        packet
    };
    match Reply::deserialize(&mut buf) {
        Ok(reply) => Decoded::Reply(Box::new(reply.body)),
        Err(e) => Decoded::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use chrony_candm::{common::ChronyAddr, reply::Status};

    use super::*;

    fn reply_packet(sequence: u32, command: u16, body: ReplyBody) -> Vec<u8> {
        let reply = Reply {
            status: Status::Success,
            cmd: command,
            sequence,
            body,
        };
        let mut buf = BytesMut::new();
        reply.serialize(&mut buf);
        buf.to_vec()
    }

    /// chrony ≥ 4.4 answers `ntpdata` with RPY_NTP_DATA2 (code 26): 4.3's
    /// layout with more counters after it. Read as 4.3's.
    #[test]
    fn ntp_data2_is_read_as_ntp_data() {
        let body = ReplyBody::NtpData(reply::NtpData {
            remote_addr: Ipv4Addr::new(192, 0, 2, 10).into(),
            local_addr: Ipv4Addr::new(192, 0, 2, 11).into(),
            remote_port: 123,
            leap: 0,
            version: 4,
            mode: 4,
            stratum: 1,
            poll: 6,
            precision: -20,
            root_delay: 0.0.into(),
            root_dispersion: 0.0.into(),
            ref_id: 0x4750_5300,
            ref_time: std::time::UNIX_EPOCH,
            offset: 0.0.into(),
            peer_delay: 0.0.into(),
            peer_dispersion: 0.0.into(),
            response_time: 0.0.into(),
            jitter_asymmetry: 0.0.into(),
            flags: reply::NtpFlags::empty(),
            tx_tss_char: 0,
            rx_tss_char: 0,
            total_tx_count: 1,
            total_rx_count: 1,
            total_valid_count: 1,
        });
        let command = Request {
            sequence: 7,
            attempt: 0,
            body: RequestBody::NtpData(request::NtpData {
                ip_addr: Ipv4Addr::new(192, 0, 2, 10).into(),
            }),
        }
        .cmd();
        let mut packet = reply_packet(7, command, body);
        packet[6..8].copy_from_slice(&RPY_NTP_DATA2.to_be_bytes());
        packet.extend_from_slice(&[0u8; 40]);
        match decode(&packet, 7, command) {
            Decoded::Reply(r) => match *r {
                ReplyBody::NtpData(d) => {
                    assert_eq!(d.ref_id, 0x4750_5300);
                    assert_eq!(
                        map::ip_addr(d.local_addr),
                        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)))
                    );
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn tracking_body() -> ReplyBody {
        ReplyBody::Tracking(reply::Tracking {
            ref_id: 1,
            ip_addr: ChronyAddr::Unspec,
            stratum: 1,
            leap_status: 0,
            ref_time: std::time::UNIX_EPOCH,
            current_correction: 0.0.into(),
            last_offset: 0.0.into(),
            rms_offset: 0.0.into(),
            freq_ppm: 0.0.into(),
            resid_freq_ppm: 0.0.into(),
            skew_ppm: 0.0.into(),
            root_delay: 0.0.into(),
            root_dispersion: 0.0.into(),
            last_update_interval: 0.0.into(),
        })
    }

    const TRACKING: u16 = 33;

    #[test]
    fn replies_are_matched_by_sequence_and_command() {
        let packet = reply_packet(7, TRACKING, tracking_body());
        assert_eq!(
            decode(&packet, 7, TRACKING),
            Decoded::Reply(Box::new(tracking_body()))
        );
        assert_eq!(decode(&packet, 8, TRACKING), Decoded::NotOurs);
        assert!(matches!(decode(&packet, 7, 14), Decoded::Malformed(_)));
    }

    #[test]
    fn status_is_read_even_when_chrony_candm_does_not_know_it() {
        // STT_INVALIDNAME (21) is off by one in chrony-candm's Status enum.
        let mut packet = reply_packet(7, 64, ReplyBody::Null);
        packet[8..10].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(decode(&packet, 7, 64), Decoded::Status(21));
    }

    #[test]
    fn garbage_never_panics() {
        let good = reply_packet(7, TRACKING, tracking_body());
        // Every truncation, and every byte flipped to every value it can take
        // in the header and timestamp.
        for len in 0..good.len() {
            let _ = decode(&good[..len], 7, TRACKING);
        }
        for at in 0..good.len() {
            for value in [0u8, 1, 0x7F, 0x80, 0xFF] {
                let mut p = good.clone();
                p[at] = value;
                let _ = decode(&p, 7, TRACKING);
            }
        }
        // The negative timestamp chrony-candm would panic on.
        let mut p = good.clone();
        p[56..60].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        assert!(matches!(decode(&p, 7, TRACKING), Decoded::Malformed(_)));
        let mut p = good;
        p[56..60].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
        p[60..68].copy_from_slice(&[0xFF; 8]);
        assert!(matches!(decode(&p, 7, TRACKING), Decoded::Malformed(_)));
    }

    #[test]
    fn backoff_doubles_up_to_the_timeout() {
        let cap = Duration::from_secs(1);
        assert_eq!(backoff(1, cap), Duration::from_millis(100));
        assert_eq!(backoff(2, cap), Duration::from_millis(200));
        assert_eq!(backoff(4, cap), Duration::from_millis(800));
        assert_eq!(backoff(5, cap), cap);
        assert_eq!(backoff(100, cap), cap);
    }

    #[tokio::test]
    async fn missing_client_dir_is_reported_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut client = ChronyClient::new(ClientConfig {
            timeout: Duration::from_millis(50),
            ..ClientConfig::new(dir.path().join("chronyd.sock"), dir.path().join("missing"))
        });
        let e = client.tracking().await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("tracking: binding gnomon's client socket"),
            "{text}"
        );
        assert!(text.contains("RuntimeDirectory"), "{text}");
    }

    #[tokio::test]
    async fn missing_server_socket_is_not_found_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("chronyd.sock");
        let mut client = ChronyClient::new(ClientConfig {
            timeout: Duration::from_millis(50),
            ..ClientConfig::new(&server, dir.path())
        });
        let e = client.tracking().await.unwrap_err();
        assert!(matches!(e, ChronyError::SocketNotFound { .. }), "{e}");
        assert!(e.to_string().contains(&server.display().to_string()));
        // No client socket left behind.
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn silent_server_times_out_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let server_path = dir.path().join("chronyd.sock");
        let server = UnixDatagram::bind(&server_path).unwrap();
        let mut client = ChronyClient::new(ClientConfig {
            timeout: Duration::from_millis(100),
            attempts: 2,
            ..ClientConfig::new(&server_path, dir.path())
        });
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut seen = 0;
            // Answer each request with junk and a reply to another sequence.
            while seen < 2 {
                let (_, from) = server.recv_from(&mut buf).await.unwrap();
                let to = from.as_pathname().unwrap().to_owned();
                server.send_to(b"junk", &to).await.unwrap();
                let seq = u32::from_be_bytes(buf[8..12].try_into().unwrap());
                let stale = reply_packet(seq.wrapping_sub(1), TRACKING, tracking_body());
                server.send_to(&stale, &to).await.unwrap();
                seen += 1;
            }
        });
        let e = client.tracking().await.unwrap_err();
        assert!(matches!(e, ChronyError::Timeout { attempts: 2, .. }), "{e}");
        answer.await.unwrap();
    }

    #[tokio::test]
    async fn a_fake_chronyd_reply_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let server_path = dir.path().join("chronyd.sock");
        let server = UnixDatagram::bind(&server_path).unwrap();
        let mut client = ChronyClient::new(ClientConfig::new(&server_path, dir.path()));
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let (_, from) = server.recv_from(&mut buf).await.unwrap();
            let seq = u32::from_be_bytes(buf[8..12].try_into().unwrap());
            let reply = reply_packet(seq, TRACKING, tracking_body());
            server
                .send_to(&reply, from.as_pathname().unwrap())
                .await
                .unwrap();
        });
        let t = client.tracking().await.unwrap();
        assert_eq!((t.ref_id, t.stratum), (1, 1));
        let own = client.client_socket().unwrap().to_owned();
        assert!(own.exists());
        let mode = fs::metadata(&own).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o666);
        drop(client);
        assert!(!own.exists(), "client socket removed on drop");
    }
}
