//! `[metrics]`: the optional Prometheus/OpenMetrics endpoint. Off by
//! default; on loopback unless the operator says the endpoint may be
//! reached from other hosts, because it has no authentication.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

/// The port `listen` defaults to. Not one of the ports the usual exporters
/// of a Pi time server take (node_exporter 9100, chrony_exporter 9123).
pub const DEFAULT_METRICS_PORT: u16 = 9476;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` over HTTP.
    #[serde(default)]
    pub enabled: bool,
    /// `IP:port` to listen on (`[v6]:port` for IPv6).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Let `listen` be an address other hosts can reach.
    #[serde(default)]
    pub allow_remote: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_listen(),
            allow_remote: false,
        }
    }
}

fn default_listen() -> String {
    format!("127.0.0.1:{DEFAULT_METRICS_PORT}")
}

impl MetricsConfig {
    /// `listen` as a socket address; `None` when it does not parse (the
    /// check reports that as an error).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.trim().parse().ok()
    }

    pub(super) fn check(&self, out: &mut Vec<ConfigProblem>) {
        let Some(addr) = self.listen_addr() else {
            out.push(ConfigProblem::error(
                "metrics.listen",
                format!(
                    "\"{}\" is not IP:port (e.g. \"127.0.0.1:{DEFAULT_METRICS_PORT}\", \
                     \"[::1]:{DEFAULT_METRICS_PORT}\"); host names are not accepted",
                    self.listen
                ),
            ));
            return;
        };
        if addr.port() == 0 {
            out.push(ConfigProblem::error(
                "metrics.listen",
                format!(
                    "port 0 would listen on a random port no scraper knows; \
                     use e.g. {DEFAULT_METRICS_PORT}"
                ),
            ));
        }
        if !addr.ip().is_loopback() && !self.allow_remote {
            out.push(ConfigProblem::error(
                "metrics.listen",
                format!(
                    "{addr} can be reached from other hosts and the metrics endpoint has no \
                     authentication; listen on 127.0.0.1 or [::1], or set \
                     metrics.allow-remote = true (and let the scraper through gnomond.service's \
                     IPAddressAllow=, see docs/metrics.md)"
                ),
            ));
        }
    }
}
