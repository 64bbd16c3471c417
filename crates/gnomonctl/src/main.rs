//! gnomonctl: gnomon's command-line client, like chronyc. Human tables by
//! default, `--json` for scripts, sysexits exit codes.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use gnomon_core::{engine::OperatorCommand, ipc::Request};

mod client;
mod commands;
mod decode;
mod plot;
mod render;
mod table;
mod wait;

use commands::{Context, FallbackArg};
use render::{ColorChoice, Style};

/// Exit codes: sysexits(3), plus 1 for "the answer is no" (a failed check,
/// a wait that timed out).
pub(crate) mod exit {
    pub(crate) const OK: u8 = 0;
    /// `check` found a failure; `wait` timed out.
    pub(crate) const FAILURE: u8 = 1;
    pub(crate) const USAGE: u8 = 64;
    pub(crate) const DATAERR: u8 = 65;
    pub(crate) const NOINPUT: u8 = 66;
    pub(crate) const SOFTWARE: u8 = 70;
    pub(crate) const IOERR: u8 = 74;
    pub(crate) const TEMPFAIL: u8 = 75;
    pub(crate) const PROTOCOL: u8 = 76;
    pub(crate) const NOPERM: u8 = 77;
}

/// The environment variable naming the control socket.
const SOCKET_ENV: &str = "GNOMON_SOCKET";

#[derive(Debug, Parser)]
#[command(
    name = "gnomonctl",
    version,
    about = "Query and drive gnomon, the GPS/NTP time-server watchdog",
    after_help = "Exit status: 0 ok; 1 check found a failure or wait timed out; 64 usage; \
                  69 gnomond unreachable; 75 timeout; 76 protocol; 77 permission denied. \
                  See gnomonctl(8)."
)]
struct Cli {
    /// gnomond's control socket [default: $GNOMON_SOCKET, else /run/gnomon/gnomon.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's report as JSON (pretty) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for gnomond's answer [default: 5s]; for `wait`, how
    /// long to wait for the condition [default: no limit]. Seconds, or a
    /// number with ms, s, m or h.
    #[arg(long, global = true, value_name = "TIME", value_parser = commands::parse_timeout)]
    timeout: Option<Duration>,
    /// Colour the output: auto (on a terminal, unless NO_COLOR is set),
    /// always or never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The engine's state and why, the primary's health, GPS and PPS,
    /// chrony's reference and offset, the clock against the time floor,
    /// the fallbacks' readiness, alerts and the last decisions.
    Status,
    /// chrony's sources, as `chronyc sources` shows them, with gnomon's
    /// plan for each.
    Sources,
    /// The GPS receiver: where NMEA comes from, the last fix, the verdict,
    /// the gate into chrony (role gps).
    Gps,
    /// The PPS line: pulses, intervals, jitter, recent edges (role gps).
    Pps,
    /// The engine's decisions, oldest first.
    History {
        /// Show the newest N decisions only.
        #[arg(short = 'n', long = "count", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
    },
    /// The TLS certificates of [certs]: their validity against the system
    /// clock and against trusted time. Exits 1 when one is not yet valid or
    /// expired.
    Certs,
    /// gnomond's live preflight checks: one line per check, PASS/WARN/FAIL.
    /// Exits 1 when a check fails.
    Check,
    /// Stop gnomond from touching chrony (it keeps observing and alerting).
    Freeze {
        /// Why, for status, history and the journal.
        #[arg(long, value_name = "TEXT", value_parser = commands::parse_reason)]
        reason: String,
    },
    /// Undo a freeze: gnomond drives chrony again.
    Thaw,
    /// Force the fallbacks selectable (engage) or noselect (release), or
    /// give the decision back to gnomond (auto).
    Fallback {
        #[arg(value_enum)]
        mode: FallbackArg,
    },
    /// Re-apply the source plan now and re-evaluate everything.
    Reassess,
    /// Plot the offset history (GPS/PPS, chrony and each source against the
    /// system clock, with the engine's state) in the terminal or as an SVG.
    Plot(plot::PlotArgs),
    /// Wait until the clock can be trusted, like `chronyc waitsync`.
    Wait(wait::WaitArgs),
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
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ctx = Context {
        socket: socket_path(cli.socket, std::env::var_os(SOCKET_ENV)),
        timeout: cli.timeout,
        json: cli.json,
        style: Style::choose(cli.color, std::io::stdout().is_terminal(), no_color),
    };
    let code = match cli.command {
        Command::Status => commands::query(&ctx, &Request::Status),
        Command::Sources => commands::query(&ctx, &Request::Sources),
        Command::Gps => commands::query(&ctx, &Request::Gps),
        Command::Pps => commands::query(&ctx, &Request::Pps),
        Command::History { count } => commands::query(
            &ctx,
            &Request::History {
                limit: count.and_then(|n| usize::try_from(n).ok()),
            },
        ),
        Command::Check => commands::query(&ctx, &Request::Check),
        Command::Certs => commands::query(&ctx, &Request::Certs),
        Command::Freeze { reason } => commands::operate(&ctx, OperatorCommand::Freeze { reason }),
        Command::Thaw => commands::operate(&ctx, OperatorCommand::Thaw),
        Command::Fallback { mode } => {
            commands::operate(&ctx, OperatorCommand::Fallback { mode: mode.into() })
        }
        Command::Reassess => commands::operate(&ctx, OperatorCommand::Reassess),
        Command::Plot(args) => plot::run(&ctx, &args),
        Command::Wait(args) => wait::run(&ctx, &args),
        Command::Decode(args) => decode::run(&args),
    };
    ExitCode::from(code)
}

/// `--socket`, else a non-empty `$GNOMON_SOCKET`, else the default.
fn socket_path(flag: Option<PathBuf>, env: Option<std::ffi::OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(client::DEFAULT_SOCKET))
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind as ClapError;
    use gnomon_core::engine::FallbackMode;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gnomonctl").chain(args.iter().copied()))
    }

    #[test]
    fn freeze_needs_a_reason() {
        let e = parse(&["freeze"]).unwrap_err();
        assert_eq!(e.kind(), ClapError::MissingRequiredArgument);
        assert!(e.use_stderr(), "a usage error, exit 64");
        assert!(parse(&["freeze", "--reason", "  "]).is_err());
        let Command::Freeze { reason } = parse(&["freeze", "--reason", "swap the GPS hat"])
            .unwrap()
            .command
        else {
            panic!("not freeze");
        };
        assert_eq!(reason, "swap the GPS hat");
    }

    #[test]
    fn fallback_takes_engage_release_or_auto() {
        for (word, mode) in [
            ("engage", FallbackMode::Engaged),
            ("release", FallbackMode::Released),
            ("auto", FallbackMode::Auto),
        ] {
            let Command::Fallback { mode: m } = parse(&["fallback", word]).unwrap().command else {
                panic!("not fallback");
            };
            assert_eq!(FallbackMode::from(m), mode);
        }
        assert_eq!(
            parse(&["fallback", "on"]).unwrap_err().kind(),
            ClapError::InvalidValue
        );
        assert!(parse(&["fallback"]).is_err());
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let a = parse(&["--json", "--socket", "/tmp/x.sock", "status"]).unwrap();
        let b = parse(&["status", "--json", "--socket", "/tmp/x.sock"]).unwrap();
        for cli in [a, b] {
            assert!(cli.json);
            assert_eq!(cli.socket, Some(PathBuf::from("/tmp/x.sock")));
        }
        let cli = parse(&["--timeout", "2.5", "--color", "never", "check"]).unwrap();
        assert_eq!(cli.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(cli.color, ColorChoice::Never);
        assert!(parse(&["--color", "sometimes", "status"]).is_err());
        assert!(parse(&["--timeout", "0", "status"]).is_err());
    }

    #[test]
    fn history_count_and_wait_options() {
        let Command::History { count } = parse(&["history", "-n", "5"]).unwrap().command else {
            panic!("not history");
        };
        assert_eq!(count, Some(5));
        assert!(parse(&["history", "-n", "0"]).is_err());
        let cli = parse(&["wait", "--synced", "--timeout", "60", "-q"]).unwrap();
        assert_eq!(cli.timeout, Some(Duration::from_secs(60)));
        assert!(matches!(cli.command, Command::Wait(_)));
        assert_eq!(
            parse(&["wait"]).unwrap_err().kind(),
            ClapError::MissingRequiredArgument
        );
    }

    #[test]
    fn decode_keeps_its_own_json_flag() {
        let cli = parse(&["decode", "-", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Decode(_)));
    }

    #[test]
    fn socket_comes_from_flag_then_environment_then_default() {
        let env = Some(std::ffi::OsString::from("/tmp/env.sock"));
        assert_eq!(
            socket_path(Some("/tmp/flag.sock".into()), env.clone()),
            PathBuf::from("/tmp/flag.sock")
        );
        assert_eq!(socket_path(None, env), PathBuf::from("/tmp/env.sock"));
        assert_eq!(
            socket_path(None, Some("".into())),
            PathBuf::from("/run/gnomon/gnomon.sock")
        );
        assert_eq!(
            socket_path(None, None),
            PathBuf::from("/run/gnomon/gnomon.sock")
        );
    }

    #[test]
    fn every_command_has_help() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
