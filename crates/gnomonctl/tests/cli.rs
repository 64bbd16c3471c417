//! gnomonctl's exit codes and output, run as a process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

const RMC: &str = "$GPRMC,193221.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A*2D\r\n";

fn gnomonctl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gnomonctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A gnomonctl that exits before reading (bad usage, missing file)
    // closes the pipe: that is not the test's failure.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("writing to gnomonctl: {e}"),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn decode_stdin_json() {
    let out = gnomonctl(&["decode", "-", "--json"], RMC);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"time\":\"2007-12-23T19:32:21.000Z\",\"mode\":2,\"sats_used\":null,\"hdop\":null,\"status\":\"A\"}\n"
    );
}

#[test]
fn exit_codes_follow_sysexits() {
    assert_eq!(
        gnomonctl(&["decode", "/nonexistent/capture.log"], "")
            .status
            .code(),
        Some(66)
    );
    assert_eq!(
        gnomonctl(&["decode", "-"], "no nmea here\n").status.code(),
        Some(65)
    );
    assert_eq!(
        gnomonctl(&["decode", "--floor", "soon", "-"], RMC)
            .status
            .code(),
        Some(64)
    );
    assert_eq!(gnomonctl(&["frobnicate"], "").status.code(), Some(64));
}

#[test]
fn rollover_is_reported_on_stderr() {
    let out = gnomonctl(
        &["decode", "--floor", "2019-04-01", "-"],
        &RMC.replace("231207", "220899").replace("*2D", "*20"),
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("1 of them 1024/2048 weeks back"), "{err}");
}
