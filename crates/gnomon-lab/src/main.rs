//! `gnomon-lab`: run the incidents and watch gnomon handle them.
//!
//! ```text
//! gnomon-lab list              the scenarios
//! gnomon-lab run NAME          one scenario's timeline
//! gnomon-lab demo              the power-outage story, narrated
//! gnomon-lab bench             engine speed over simulated days
//! ```

use std::process::ExitCode;

use gnomon_lab::{demo, scenarios};

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["demo"] => {
            print!("{}", demo::narrate());
            ExitCode::SUCCESS
        }
        ["bench"] => {
            print!("{}", gnomon_lab::bench::run());
            ExitCode::SUCCESS
        }
        ["list"] => {
            for name in scenarios::NAMES {
                if let Some(s) = scenarios::build(name) {
                    println!("{:<30} {}", s.name, s.title);
                }
            }
            ExitCode::SUCCESS
        }
        ["run", name] => match scenarios::build(name) {
            Some(mut s) => {
                s.sim.run_until(s.duration);
                println!("# {} — {}", s.name, s.title);
                print!("{}", s.sim.render_timeline());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("gnomon-lab: no scenario named {name:?}; `gnomon-lab list` shows them");
                ExitCode::from(64)
            }
        },
        _ => {
            eprintln!("usage: gnomon-lab [demo | list | run NAME | bench]");
            ExitCode::from(64)
        }
    }
}
