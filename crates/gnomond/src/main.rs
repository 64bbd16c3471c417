//! gnomond: parses the command line and hands over to [`gnomond::daemon`].

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use gnomond::{
    config_file, daemon, exit, failsafe,
    journal::{self, LogTarget},
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogArg {
    /// journald when its socket answers, else stderr.
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Parser)]
#[command(
    name = "gnomond",
    version,
    about = "Keeps a GPS/NTP time server honest: watches the GPS and chrony, and rewrites \
             chrony's sources when the primary reference fails"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', env = "GNOMON_CONFIG", default_value = config_file::DEFAULT_PATH)]
    config: PathBuf,
    /// Check a configuration file (default: --config) and exit: 0 valid,
    /// 78 invalid.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// Leave chrony with every configured source selectable and exit: what
    /// systemd runs whenever gnomond stops (ExecStopPost=), so chrony never
    /// depends on a running gnomond. Uses the configuration if it loads,
    /// else the copy the last good one kept in the state directory.
    #[arg(long, conflicts_with = "check_config")]
    fail_safe: bool,
    /// Where logs and alerts go.
    #[arg(long, value_enum, default_value = "auto")]
    log: LogArg,
    /// Log debug detail too.
    #[arg(long, short = 'v')]
    verbose: bool,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn check_config(path: &std::path::Path) -> u8 {
    match config_file::load(path) {
        Ok((config, problems)) => {
            for p in &problems {
                eprintln!("{}: {p}", path.display());
            }
            println!(
                "{}: valid (role {}, {} primary server(s), {} fallback server(s), {} peer(s))",
                path.display(),
                config.role,
                config.primary.servers.len(),
                config.fallback.servers.len(),
                config.fallback.peers.len()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("gnomond: {e}");
            exit::CONFIG
        }
    }
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
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Some(path) = cli.check_config {
        return ExitCode::from(check_config(&path.unwrap_or(cli.config)));
    }
    let log = match cli.log {
        LogArg::Auto => LogTarget::Auto,
        LogArg::Journald => LogTarget::Journald,
        LogArg::Stderr => LogTarget::Stderr,
    };
    if cli.fail_safe {
        if let Err(e) = journal::init(log, cli.verbose) {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("gnomond: cannot set up logging: {e}");
            }
        }
        return ExitCode::from(failsafe::install(&cli.config));
    }
    ExitCode::from(daemon::run(daemon::Options {
        config_path: cli.config,
        log,
        verbose: cli.verbose,
    }))
}
