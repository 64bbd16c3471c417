//! A Stratum 1 host on one machine, for gnomond in role `gps`: the
//! simulated hat (NMEA on a pty, pulses into gnomond's PPS socket), the
//! host's own private chronyd with gnomon's SOCK refclock and sourcedir,
//! and a loopback NTP server standing in for a public fallback.

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    thread::JoinHandle,
};

use gnomon_core::config::{Config, NtpServerConfig};
use tempfile::TempDir;

use crate::{
    chronyd::{free_loopback_udp_port, Chronyd, ChronydSpec},
    gps_hat::{forward_pps, GpsHat, HatMode},
};

/// Everything around a gps-role gnomond; dropping it stops all of it.
#[derive(Debug)]
pub struct GpsHost {
    pub hat: GpsHat,
    /// The host's chronyd (SOCK refclock `NMEA`, gnomon's sourcedir).
    pub chrony: Chronyd,
    /// The fallback server, on `fallback_address`.
    pub fallback: Chronyd,
    pub fallback_address: Ipv4Addr,
    pub fallback_port: u16,
    pub refclock: PathBuf,
    pub pps_socket: PathBuf,
    _pulses: JoinHandle<()>,
    // Last: removed after the processes that use its sockets.
    _sockets: TempDir,
}

impl GpsHost {
    /// Starts the hat in `mode`, the fallback on `fallback_address`
    /// (an address of 127.0.0.0/8) and the host's chronyd; `name` tags
    /// their directories.
    pub fn start(name: &str, mode: HatMode, fallback_address: Ipv4Addr) -> io::Result<GpsHost> {
        let fallback_port = free_loopback_udp_port()?;
        let mut fallback_spec = ChronydSpec::ntp_server(&format!("{name}-fb"), fallback_port);
        fallback_spec.bind_address = Some(IpAddr::V4(fallback_address));
        let fallback = Chronyd::start(fallback_spec)?;

        let sockets = tempfile::Builder::new()
            .prefix("gnomon-gpshost")
            .tempdir()?;
        let refclock = sockets.path().join("nmea.sock");
        let pps_socket = sockets.path().join("pps.sock");
        let mut chrony_spec = ChronydSpec::client(name);
        chrony_spec.with_sourcedir = true;
        chrony_spec.extra_conf.push(format!(
            "refclock SOCK {} refid NMEA poll 0 filter 1",
            refclock.display()
        ));
        let chrony = Chronyd::start(chrony_spec)?;

        let hat = GpsHat::start(mode)?;
        let pulses = hat
            .take_pps()
            .ok_or_else(|| io::Error::other("the hat's PPS line was already taken"))?;
        let pulses = forward_pps(pulses, pps_socket.clone())?;
        Ok(GpsHost {
            hat,
            chrony,
            fallback,
            fallback_address,
            fallback_port,
            refclock,
            pps_socket,
            _pulses: pulses,
            _sockets: sockets,
        })
    }

    /// gnomond's configuration for this host, with default thresholds: the
    /// hat as a serial receiver, PPS from the socket, the SOCK refclock and
    /// chrony's socket and sourcedir, the fallback polled every 1/16 s, and
    /// reads open to every local user.
    pub fn config(&self) -> Config {
        let mut config = Config::example_gps();
        config.gps = Some(self.hat.gps_config(&self.pps_socket, &self.refclock));
        config.fallback.servers = vec![NtpServerConfig {
            port: Some(self.fallback_port),
            minpoll: Some(-4),
            maxpoll: Some(-4),
            ..NtpServerConfig::new(self.fallback_address.to_string())
        }];
        config.fallback.peers = Vec::new();
        config.paths.chrony_socket = self.chrony.socket().display().to_string();
        config.paths.sources_dir = self.chrony.sources_dir().display().to_string();
        config.control.read_group = String::new();
        config
    }
}
