//! gnomonctl: gnomon's command-line client, like chronyc. Human tables by
//! default, `--json` for scripts, sysexits exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod decode;

/// sysexits(3) codes used by gnomonctl.
pub(crate) mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const USAGE: u8 = 64;
    pub(crate) const DATAERR: u8 = 65;
    pub(crate) const NOINPUT: u8 = 66;
    pub(crate) const IOERR: u8 = 74;
}

#[derive(Debug, Parser)]
#[command(
    name = "gnomonctl",
    version,
    about = "Query and drive gnomon, the GPS/NTP time-server watchdog"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode an NMEA capture into one epoch per receiver second, the way
    /// gnomond reads the GPS hat.
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            // clap prints help/version to stdout and errors to stderr.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Decode(args) => decode::run(&args),
    };
    ExitCode::from(code)
}
