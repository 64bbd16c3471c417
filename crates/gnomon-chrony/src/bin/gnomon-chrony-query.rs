//! One query to chronyd's command socket with gnomon's client, printed as
//! JSON: the quickest way to see what gnomond would see, as the user
//! gnomond runs as (permissions included).
//!
//! ```text
//! gnomon-chrony-query [--socket PATH] [--client-dir DIR] [--timeout-ms N]
//!                     [--attempts N] [tracking|sources|snapshot]
//! ```
//!
//! Exit codes: 0 answered, 1 chrony error (message on stderr), 64 usage.

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gnomon_chrony::{
    client::{ChronyClient, ClientConfig, DEFAULT_SERVER_SOCKET},
    error::ChronyError,
};
use gnomon_core::time::WallTime;

const USAGE: &str = "usage: gnomon-chrony-query [--socket PATH] [--client-dir DIR] \
                     [--timeout-ms N] [--attempts N] [tracking|sources|snapshot]";
/// Not /tmp: chrony.service runs with PrivateTmp=yes, so chronyd could not
/// answer a socket there.
const DEFAULT_CLIENT_DIR: &str = "/run/gnomon";

#[derive(Debug, Clone, Copy)]
enum Query {
    Tracking,
    Sources,
    Snapshot,
}

fn parse_args() -> Result<(ClientConfig, Query), String> {
    let mut config = ClientConfig::new(DEFAULT_SERVER_SOCKET, DEFAULT_CLIENT_DIR);
    let mut query = Query::Tracking;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--socket" => config.server_socket = PathBuf::from(value("--socket")?),
            "--client-dir" => config.client_dir = PathBuf::from(value("--client-dir")?),
            "--timeout-ms" => {
                let ms = value("--timeout-ms")?;
                let ms: u64 = ms.parse().map_err(|_| format!("bad --timeout-ms {ms}"))?;
                config.timeout = Duration::from_millis(ms);
            }
            "--attempts" => {
                let n = value("--attempts")?;
                config.attempts = n.parse().map_err(|_| format!("bad --attempts {n}"))?;
            }
            "tracking" => query = Query::Tracking,
            "sources" => query = Query::Sources,
            "snapshot" => query = Query::Snapshot,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((config, query))
}

fn now() -> WallTime {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    WallTime::from_unix_nanos(nanos)
}

async fn run(config: ClientConfig, query: Query) -> Result<String, ChronyError> {
    let mut client = ChronyClient::new(config);
    let json = match query {
        Query::Tracking => serde_json::to_string_pretty(&client.tracking().await?),
        Query::Sources => serde_json::to_string_pretty(&client.sources().await?),
        Query::Snapshot => serde_json::to_string_pretty(&client.snapshot(now()).await?),
    };
    Ok(json.unwrap_or_else(|e| format!("{{\"error\": \"cannot render JSON: {e}\"}}")))
}

fn main() -> ExitCode {
    let (config, query) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            let mut err = io::stderr().lock();
            if !message.is_empty() {
                let _ = writeln!(err, "gnomon-chrony-query: {message}");
            }
            let _ = writeln!(err, "{USAGE}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(
                io::stderr().lock(),
                "gnomon-chrony-query: cannot start tokio: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, query)) {
        Ok(json) => {
            let _ = writeln!(io::stdout().lock(), "{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "gnomon-chrony-query: {e}");
            ExitCode::FAILURE
        }
    }
}
