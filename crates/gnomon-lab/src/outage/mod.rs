//! The outage lab: a small time infrastructure built on one machine from
//! network namespaces and real chronyd processes, broken the ways real
//! ones break (SCENARIOS.md), with gnomond doing its job on each host.
//!
//! - [`lab`]: the hosts and their processes;
//! - [`run`]: one scenario's observer, timeline, figures and checks;
//! - [`stories`]: the scenarios themselves;
//! - [`lies`]: the S10 scenarios, references that answer and are wrong;
//! - [`demo`]: the power outage told for a newcomer.
//!
//! Root only (namespaces, chronyd as root). docs/lab.md explains it.

pub mod demo;
pub mod lab;
pub mod lies;
pub mod run;
pub mod stories;

use std::io;

pub use run::{Output, Report, Run};

/// One scenario: what it is and how to play it.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The stable name (`gnomon-lab run <name>`).
    pub name: &'static str,
    /// The SCENARIOS.md incident it replays (`S1`...), or `-`.
    pub incident: &'static str,
    pub title: &'static str,
    /// How the lab starts.
    pub options: fn() -> lab::LabOptions,
    /// The story: actions, waits and checks.
    pub play: fn(&mut Run) -> io::Result<()>,
}

/// Every scenario, in the order `gnomon-lab list` shows them.
pub fn scenarios() -> &'static [Scenario] {
    stories::ALL
}

/// The scenario named `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    scenarios().iter().find(|s| s.name == name)
}

/// Plays `scenario` on a fresh lab. An error of the lab itself (a process
/// that would not start, Ctrl-C) is an error; a failed assertion is a
/// report that did not pass.
pub fn play(scenario: &Scenario, output: Output) -> io::Result<Report> {
    require_root()?;
    let mut run = Run::start(&(scenario.options)(), output)?;
    let outcome = (scenario.play)(&mut run);
    if let Err(e) = outcome {
        if e.kind() == io::ErrorKind::Interrupted {
            return Err(e);
        }
        run.check("the scenario ran to its end", false, e.to_string());
    }
    Ok(run.finish(scenario.name, scenario.title))
}

/// The lab makes namespaces and runs chronyd as root: say so plainly.
pub fn require_root() -> io::Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the outage lab needs root: it creates network namespaces (ip netns) and runs \
             chronyd, journald and gnomond as root inside them. It never touches the host's \
             clock, its chronyd or any address outside the lab's namespaces. Run it with sudo.",
        ))
    }
}
