//! gnomond: the daemon. It wires the pure engine (`gnomon-core`) to the
//! world: chrony's command socket, the GPS hat, the control socket for
//! gnomonctl, the state directory, journald and systemd.
//!
//! The binary (`main.rs`) only parses arguments; everything else lives here
//! so the end-to-end tests and the lab can reach it.

pub mod certs;
pub mod check;
pub mod chrony_link;
pub mod config_file;
pub mod control;
pub mod daemon;
pub mod exit;
pub mod failsafe;
pub mod gps_feed;
pub mod journal;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod samples;
pub mod state_writer;
