//! gnomon's lab: everything needed to see gnomon work without a Pi. For
//! now a discrete-event simulator that drives the real decision engine
//! through the incidents of SCENARIOS.md in simulated time; real chronyd,
//! gpsd, the simulated GPS hat on a pty and network namespaces come next.

mod bad_input;
pub mod bench;
pub mod chronyd;
pub mod demo;
pub mod gnomond;
pub mod gps_hat;
pub mod gps_host;
pub mod journald;
pub mod netns;
pub mod programs;
pub mod scenarios;
pub mod sim;
pub mod tmpfs;
