//! gnomon's lab: everything needed to see gnomon work without a Pi.
//!
//! - [`outage`]: the outage lab, a small time infrastructure in network
//!   namespaces with a real chronyd per host and gnomond on three, broken
//!   the ways of SCENARIOS.md (`gnomon-lab run`, `demo`, `compare`);
//! - [`sim`] and [`scenarios`]: the decision engine alone in simulated
//!   time, for properties over days (`gnomon-lab sim`, `bench`);
//! - the harnesses both the lab and the end-to-end tests use: [`chronyd`],
//!   [`gnomond`], [`journald`], [`gps_hat`], [`gps_host`], [`netns`],
//!   [`tmpfs`], [`programs`];
//! - [`system`]: whole Debian 12 and 13 systems booted under
//!   systemd-nspawn, for installing gnomon's package as an operator would.

mod bad_input;
pub mod bench;
pub mod chronyd;
pub mod gnomond;
pub mod gps_hat;
pub mod gps_host;
pub mod journald;
pub mod netns;
pub mod outage;
pub mod programs;
pub mod scenarios;
pub mod sim;
pub mod system;
pub mod tmpfs;
