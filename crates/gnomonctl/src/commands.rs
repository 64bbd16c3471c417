//! The commands that talk to gnomond: one request each, the answer rendered
//! as text or as the report's JSON, and the exit code scripts rely on.

use std::{
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use gnomon_core::{
    engine::{FallbackMode, OperatorCommand},
    ipc::{CheckOutcome, ErrorKind, ErrorReply, Request, Response},
};
use serde::Serialize;

use crate::{client, exit, render, render::Style};

/// Time to wait for one answer when `--timeout` is not given.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What every command against gnomond needs from the global options.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) socket: PathBuf,
    /// `--timeout`: for one request, how long to wait for its answer; for
    /// `wait`, how long to wait for the condition.
    pub(crate) timeout: Option<Duration>,
    pub(crate) json: bool,
    pub(crate) style: Style,
}

impl Context {
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

/// `fallback`'s argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FallbackArg {
    /// Make the fallbacks selectable now, whatever the primary does.
    Engage,
    /// Keep the fallbacks `noselect`, whatever the primary does.
    Release,
    /// Give the decision back to gnomond.
    Auto,
}

impl From<FallbackArg> for FallbackMode {
    fn from(a: FallbackArg) -> Self {
        match a {
            FallbackArg::Engage => FallbackMode::Engaged,
            FallbackArg::Release => FallbackMode::Released,
            FallbackArg::Auto => FallbackMode::Auto,
        }
    }
}

/// A read request: status, sources, gps, pps, history or check.
pub(crate) fn query(ctx: &Context, request: &Request) -> u8 {
    let name = request.name();
    let response = match client::call(&ctx.socket, request.clone(), ctx.request_timeout()) {
        Ok(r) => r,
        Err(e) => return client_failed(name, &e),
    };
    let style = ctx.style;
    match (request, response) {
        (Request::Status, Response::Status(r)) => {
            show(ctx, &*r, || render::status::render(&r, style))
        }
        (Request::Sources, Response::Sources(r)) => {
            show(ctx, &*r, || render::sources::render(&r, style))
        }
        (Request::Gps, Response::Gps(r)) => show(ctx, &*r, || render::gps::render_gps(&r, style)),
        (Request::Pps, Response::Pps(r)) => show(ctx, &*r, || render::gps::render_pps(&r, style)),
        (Request::History { .. }, Response::History(r)) => {
            show(ctx, &r, || render::history::render(&r, style))
        }
        (Request::Certs, Response::Certs(r)) => {
            let code = show(ctx, &*r, || render::certs::render(&r, style));
            if code == exit::OK && render::certs::any_critical(&r) {
                exit::FAILURE
            } else {
                code
            }
        }
        (Request::Check, Response::Check(r)) => {
            let code = show(ctx, &r, || render::check::render(&r, style));
            if code == exit::OK && r.worst() == CheckOutcome::Fail {
                exit::FAILURE
            } else {
                code
            }
        }
        (_, Response::Error(e)) => refused(name, &e),
        (_, other) => unexpected(name, &other),
    }
}

/// A mutating command: freeze, thaw, fallback, reassess.
pub(crate) fn operate(ctx: &Context, command: OperatorCommand) -> u8 {
    let request = Request::Command(command);
    let name = request.name();
    let response = match client::call(&ctx.socket, request, ctx.request_timeout()) {
        Ok(r) => r,
        Err(e) => return client_failed(name, &e),
    };
    match response {
        Response::Done { ref message } => show(ctx, &response, || format!("{message}\n")),
        Response::Error(e) => refused(name, &e),
        other => unexpected(name, &other),
    }
}

/// The report as pretty JSON with `--json`, else the rendered text.
fn show<T: Serialize + ?Sized>(ctx: &Context, report: &T, text: impl FnOnce() -> String) -> u8 {
    if ctx.json {
        match serde_json::to_string_pretty(report) {
            Ok(mut json) => {
                json.push('\n');
                emit(&json)
            }
            Err(e) => {
                say(&format!("gnomonctl: cannot encode the report as JSON: {e}"));
                exit::SOFTWARE
            }
        }
    } else {
        emit(&text())
    }
}

/// Writes to standard output; a closed pipe (`gnomonctl history | head`) is
/// not an error.
pub(crate) fn emit(text: &str) -> u8 {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            say(&format!("gnomonctl: writing output: {e}"));
            exit::IOERR
        }
    }
}

/// One line on standard error.
pub(crate) fn say(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

pub(crate) fn client_failed(name: &str, e: &client::ClientError) -> u8 {
    say(&format!("gnomonctl {name}: {e}"));
    e.exit_code()
}

/// The exit code for a refusal from gnomond.
pub(crate) fn refusal_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Forbidden => exit::NOPERM,
        ErrorKind::Malformed | ErrorKind::TooLarge | ErrorKind::Version => exit::PROTOCOL,
        ErrorKind::Unsupported => exit::USAGE,
        ErrorKind::Unavailable => exit::TEMPFAIL,
    }
}

pub(crate) fn refused(name: &str, e: &ErrorReply) -> u8 {
    let why = match e.kind {
        ErrorKind::Forbidden => "not allowed",
        ErrorKind::Malformed | ErrorKind::TooLarge => "gnomond did not understand the request",
        ErrorKind::Version => "gnomond speaks another protocol version",
        ErrorKind::Unsupported => "not applicable on this host",
        ErrorKind::Unavailable => "gnomond cannot do it now",
    };
    say(&format!("gnomonctl {name}: {why}: {}", e.message));
    refusal_code(e.kind)
}

pub(crate) fn unexpected(name: &str, r: &Response) -> u8 {
    say(&format!(
        "gnomonctl {name}: gnomond answered with a {} response (protocol mismatch: use the gnomonctl that came with gnomond)",
        response_name(r)
    ));
    exit::PROTOCOL
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Status(_) => "status",
        Response::Sources(_) => "sources",
        Response::Gps(_) => "gps",
        Response::Pps(_) => "pps",
        Response::History(_) => "history",
        Response::Check(_) => "check",
        Response::Plot(_) => "plot",
        Response::Certs(_) => "certs",
        Response::Done { .. } => "done",
        Response::Error(_) => "error",
    }
}

/// `--timeout`'s value: seconds (`5`, `2.5`) or a number with a unit
/// (`500ms`, `30s`, `2m`, `1h`); more than zero.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a timeout like 5, 2.5, 500ms, 30s, 2m or 1h");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = n * scale;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}`: a timeout must be more than zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// `freeze --reason`: words an operator will read later, so not empty.
pub(crate) fn parse_reason(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the reason must say why (it is shown in status and kept in history)".to_owned())
    } else {
        Ok(s.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_and_without_units() {
        assert_eq!(parse_timeout("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0", "-1", "soon", "5 min", "1e3", "nan"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_map_to_sysexits() {
        assert_eq!(refusal_code(ErrorKind::Forbidden), 77);
        assert_eq!(refusal_code(ErrorKind::Version), 76);
        assert_eq!(refusal_code(ErrorKind::Malformed), 76);
        assert_eq!(refusal_code(ErrorKind::Unsupported), 64);
        assert_eq!(refusal_code(ErrorKind::Unavailable), 75);
    }

    #[test]
    fn fallback_words_map_to_modes() {
        assert_eq!(
            FallbackMode::from(FallbackArg::Engage),
            FallbackMode::Engaged
        );
        assert_eq!(
            FallbackMode::from(FallbackArg::Release),
            FallbackMode::Released
        );
        assert_eq!(FallbackMode::from(FallbackArg::Auto), FallbackMode::Auto);
    }
}
