//! Helpers shared by gnomond's process-level tests: gnomonctl's JSON,
//! waiting for a condition with a useful failure, READY.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    process::Output,
    thread,
    time::{Duration, Instant},
};

use gnomon_lab::gnomond::Gnomond;
use serde_json::Value;

pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// gnomonctl's `--json` output; fails the test if it failed or printed no JSON.
pub(crate) fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "gnomonctl failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gnomonctl printed no JSON ({e}): {}", text(&out.stdout)))
}

/// Polls `f` every 100 ms until it returns `Ok`, or fails the test with
/// what it last saw.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// gnomond's output, for failure messages.
pub(crate) fn output(d: &Gnomond) -> String {
    format!("\n--- gnomond output ---\n{}", d.output())
}

/// Waits for READY=1 on the notify socket.
pub(crate) fn wait_ready(d: &Gnomond) {
    if d.notify()
        .wait_for("READY", READY_TIMEOUT, |v| v == "1")
        .is_none()
    {
        panic!(
            "no READY=1 within {READY_TIMEOUT:?}; notifications {:?}{}",
            d.notify().all(),
            output(d)
        );
    }
}

/// `gnomonctl status --json`.
pub(crate) fn status(d: &Gnomond) -> Value {
    json(&d.gnomonctl(&["status", "--json"]).unwrap())
}
