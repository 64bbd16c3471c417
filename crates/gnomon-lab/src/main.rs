//! `gnomon-lab`: run the incidents and watch gnomon handle them.
//!
//! ```text
//! gnomon-lab demo              the power outage, narrated for a newcomer (root)
//! gnomon-lab list              the scenarios
//! gnomon-lab run NAME...       scenarios on the real lab: timeline, figures, checks (root)
//! gnomon-lab run --all         every scenario
//! gnomon-lab compare           power-outage with gnomond vs baseline-stock (root)
//! gnomon-lab sim NAME          the engine alone, in simulated time (no root)
//! gnomon-lab bench             engine speed over simulated days
//! ```
//!
//! Exit status: 0 when every check passed, 1 when one failed, 64 for a
//! usage error, 77 without root, 70 when the lab itself failed.

use std::{io, process::ExitCode};

use gnomon_lab::{outage, scenarios};

const USAGE: &str =
    "usage: gnomon-lab [demo | list | run NAME... | run --all | compare | sim NAME | bench]";

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["demo"] => lab_result(outage::demo::run()),
        ["bench"] => {
            print!("{}", gnomon_lab::bench::run());
            ExitCode::SUCCESS
        }
        ["list"] => {
            println!("the outage lab (gnomon-lab run NAME, root):");
            for s in outage::scenarios() {
                println!("  {:<18} {:<3} {}", s.name, s.incident, s.title);
            }
            println!("the engine alone in simulated time (gnomon-lab sim NAME):");
            for name in scenarios::NAMES {
                if let Some(s) = scenarios::build(name) {
                    println!("  {:<28} {}", s.name, s.title);
                }
            }
            ExitCode::SUCCESS
        }
        ["run", "--all"] => run_scenarios(
            &outage::scenarios()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>(),
        ),
        ["run", names @ ..] if !names.is_empty() => run_scenarios(names),
        ["compare"] => lab_result(outage::demo::compare()),
        ["sim", name] => match scenarios::build(name) {
            Some(mut s) => {
                s.sim.run_until(s.duration);
                println!("# {} — {}", s.name, s.title);
                print!("{}", s.sim.render_timeline());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("gnomon-lab: no simulated scenario named {name:?}; `gnomon-lab list` shows them");
                ExitCode::from(64)
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(64)
        }
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn run_scenarios(names: &[&str]) -> ExitCode {
    let mut chosen = Vec::new();
    for name in names {
        match outage::find(name) {
            Some(s) => chosen.push(s),
            None => {
                eprintln!("gnomon-lab: no scenario named {name:?}; `gnomon-lab list` shows them");
                return ExitCode::from(64);
            }
        }
    }
    if let Err(e) = outage::require_root() {
        return lab_error(&e);
    }
    let mut failed = Vec::new();
    for scenario in chosen {
        println!(
            "# {} ({}) — {}",
            scenario.name, scenario.incident, scenario.title
        );
        println!("{}", outage::run::timeline_header());
        match outage::play(scenario, outage::Output::Timeline) {
            Ok(report) => {
                print!("{}", report.summary());
                if !report.passed() {
                    failed.push(scenario.name);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return lab_error(&e),
            Err(e) => {
                eprintln!("gnomon-lab: {}: the lab failed: {e}", scenario.name);
                failed.push(scenario.name);
            }
        }
        println!();
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("gnomon-lab: failed: {}", failed.join(", "));
        ExitCode::from(1)
    }
}

fn lab_result(result: io::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => lab_error(&e),
    }
}

#[allow(clippy::print_stderr)]
fn lab_error(e: &io::Error) -> ExitCode {
    eprintln!("gnomon-lab: {e}");
    match e.kind() {
        io::ErrorKind::PermissionDenied => ExitCode::from(77),
        io::ErrorKind::Interrupted => ExitCode::from(130),
        _ => ExitCode::from(70),
    }
}
