//! gnomon's pure core: the domain types, the configuration schema and its
//! check, the decision engine and the alert model.
//!
//! Nothing in this crate does IO, reads a clock, spawns a task or logs: time
//! comes in as arguments and every effect goes out as an
//! [`engine::Action`], so the whole engine can be driven through a day of
//! simulated time in milliseconds.

pub mod alert;
pub mod certs;
pub mod chrony;
pub mod config;
pub mod engine;
pub mod gps;
pub mod ipc;
mod md5;
pub mod samples;
pub mod source;
pub mod time;
