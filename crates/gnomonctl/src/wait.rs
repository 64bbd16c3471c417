//! `gnomonctl wait --synced`: chronyc `waitsync` for gnomon. Asks gnomond
//! for its status once a second until the clock can be trusted, keeping on
//! while gnomond is not up yet (as at boot), and gives up at `--timeout`.

use std::{
    thread,
    time::{Duration, Instant},
};

use clap::Args;
use gnomon_core::{
    engine::{EngineState, Status},
    ipc::{ErrorKind, Request, Response, StatusReport},
    time::human_duration,
};

use crate::{
    client::{self, ClientError},
    commands::{self, Context, DEFAULT_REQUEST_TIMEOUT},
    exit, render,
};

/// How often gnomond is asked.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// Wait until chrony is synchronised, gnomond is in state primary,
    /// fallback or recovering, and the clock is not before the time floor
    /// (for now the only condition; required so scripts say what they wait
    /// for).
    #[arg(long, required = true)]
    synced: bool,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
}

/// Why the clock cannot be trusted yet, or `Ok` when it can. A freeze does
/// not hide a synchronised clock: the state it would be in counts.
pub(crate) fn sync_verdict(s: &Status) -> Result<(), String> {
    let mut why = Vec::new();
    if !s.chrony.synchronised {
        why.push("chrony is not synchronised".to_owned());
    }
    let state = if s.state == EngineState::Frozen {
        s.underlying_state
    } else {
        s.state
    };
    if !matches!(
        state,
        EngineState::Primary | EngineState::Fallback | EngineState::Recovering
    ) {
        why.push(format!("gnomond is {state}"));
    }
    if s.clock.before_floor {
        why.push("the clock is before the time floor".to_owned());
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join(", "))
    }
}

/// chronyc-style progress: `try: 3, state: acquiring, chrony: ..., ...`.
pub(crate) fn progress_line(attempt: u32, s: &Status) -> String {
    let chrony = if !s.chrony.reachable {
        "unreachable".to_owned()
    } else if s.chrony.synchronised {
        format!(
            "synchronised to {}",
            s.chrony.reference.as_deref().unwrap_or("?")
        )
    } else {
        "not synchronised".to_owned()
    };
    format!(
        "try: {attempt}, state: {}, chrony: {chrony}, offset: {}, clock: {}",
        s.state,
        s.chrony
            .system_offset
            .map_or_else(|| "-".to_owned(), render::offset),
        if s.clock.before_floor {
            "before the floor"
        } else {
            "after the floor"
        }
    )
}

pub(crate) fn run(ctx: &Context, args: &WaitArgs) -> u8 {
    if !args.synced {
        commands::say("gnomonctl wait: say what to wait for: --synced");
        return exit::USAGE;
    }
    let start = Instant::now();
    let deadline = ctx.timeout.map(|t| start + t);
    // With --json the report goes to stdout, so progress goes to stderr.
    let progress = |line: &str| {
        if args.quiet {
            return;
        }
        if ctx.json {
            commands::say(line);
        } else {
            let _ = commands::emit(&format!("{line}\n"));
        }
    };
    let mut last: Option<StatusReport> = None;
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = remaining
            .map_or(DEFAULT_REQUEST_TIMEOUT, |r| r.min(DEFAULT_REQUEST_TIMEOUT))
            .max(Duration::from_millis(100));
        let why_not = match client::call(&ctx.socket, Request::Status, timeout) {
            Ok(Response::Status(report)) => {
                progress(&progress_line(attempt, &report.status));
                let verdict = sync_verdict(&report.status);
                last = Some(*report);
                match verdict {
                    Ok(()) => return finish(ctx, last.as_ref(), exit::OK),
                    Err(why) => why,
                }
            }
            Ok(Response::Error(e)) if e.kind == ErrorKind::Unavailable => {
                progress(&format!("try: {attempt}, gnomond: {}", e.message));
                e.message
            }
            Ok(Response::Error(e)) => return commands::refused("wait", &e),
            Ok(other) => return commands::unexpected("wait", &other),
            // Neither goes away by asking again.
            Err(e @ (ClientError::PermissionDenied { .. } | ClientError::Protocol { .. })) => {
                return commands::client_failed("wait", &e)
            }
            Err(e) => {
                progress(&format!("try: {attempt}, {e}"));
                e.to_string()
            }
        };
        let pause = match deadline {
            None => POLL_INTERVAL,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    commands::say(&format!(
                        "gnomonctl wait: not synchronised after {} ({attempt} tries): {why_not}",
                        human_duration(start.elapsed())
                    ));
                    return finish(ctx, last.as_ref(), exit::FAILURE);
                }
                left.min(POLL_INTERVAL)
            }
        };
        thread::sleep(pause);
    }
}

/// With `--json`, the last status report (if gnomond ever answered) goes
/// to stdout whether the wait succeeded or not.
fn finish(ctx: &Context, last: Option<&StatusReport>, code: u8) -> u8 {
    if !ctx.json {
        return code;
    }
    let Some(report) = last else {
        return code;
    };
    match serde_json::to_string_pretty(report) {
        Ok(json) => match commands::emit(&format!("{json}\n")) {
            exit::OK => code,
            failed => failed,
        },
        Err(e) => {
            commands::say(&format!(
                "gnomonctl wait: cannot encode the report as JSON: {e}"
            ));
            exit::SOFTWARE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn synced_needs_chrony_a_working_state_and_a_sane_clock() {
        let mut s = fixtures::status();
        assert_eq!(sync_verdict(&s), Ok(()));
        for state in [EngineState::Primary, EngineState::Recovering] {
            s.state = state;
            assert_eq!(sync_verdict(&s), Ok(()), "{state}");
        }
        s.state = EngineState::Acquiring;
        s.chrony.synchronised = false;
        s.clock.before_floor = true;
        assert_eq!(
            sync_verdict(&s),
            Err("chrony is not synchronised, gnomond is acquiring, the clock is before the time floor"
                .to_owned())
        );
        let mut s = fixtures::status();
        s.state = EngineState::NoReference;
        assert!(sync_verdict(&s).is_err());
    }

    #[test]
    fn a_freeze_is_judged_by_the_state_underneath() {
        let mut s = fixtures::status();
        s.state = EngineState::Frozen;
        s.underlying_state = EngineState::Primary;
        assert_eq!(sync_verdict(&s), Ok(()));
        s.underlying_state = EngineState::Degraded;
        assert_eq!(sync_verdict(&s), Err("gnomond is degraded".to_owned()));
    }

    #[test]
    fn progress_reads_like_waitsync() {
        let s = fixtures::status();
        assert_eq!(
            progress_line(3, &s),
            "try: 3, state: fallback, chrony: synchronised to 192.168.1.11, offset: -3.2ms, clock: after the floor"
        );
    }
}
