//! `cargo bench -p gnomon-gps`: NMEA decoding throughput on the shared
//! receiver captures, side by side in one run with gpsd's own `gpsdecode`
//! on the same bytes. Prints figures; asserts nothing about speed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::{
    fs,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use gnomon_core::time::{MonoTime, WallTime};
use gnomon_gps::decode::Decoder;

const REPEAT: usize = 20;

fn captures() -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nmea-captures");
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    let mut all = Vec::new();
    for n in names {
        all.extend(fs::read(&n).unwrap());
        all.push(b'\n');
    }
    all
}

fn main() {
    let one = captures();
    let input: Vec<u8> = one.repeat(REPEAT);
    let sentences = input.iter().filter(|b| **b == b'$' || **b == b'!').count();
    let floor = WallTime::from_utc(1999, 8, 22, 0, 0, 0, 0).unwrap();

    // gnomon: the bytes in 256-byte reads, as from a UART.
    let mut best = f64::MAX;
    let mut epochs = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let mut d = Decoder::new(floor);
        let mut n = 0;
        for (i, chunk) in input.chunks(256).enumerate() {
            n += d
                .push(chunk, floor, MonoTime::from_nanos(i as u64 * 1_000_000))
                .len();
        }
        n += d.finish().len();
        best = best.min(t.elapsed().as_secs_f64());
        epochs = n;
    }
    println!(
        "input: shared captures x{REPEAT} = {:.1} MB, {sentences} sentences",
        input.len() as f64 / 1e6
    );
    println!(
        "gnomon Decoder   {:>8.1} ms  {:>10.0} epochs/s  {:>6.0} ns/sentence  ({epochs} epochs)",
        best * 1e3,
        epochs as f64 / best,
        best * 1e9 / sentences as f64
    );

    // gpsd's gpsdecode on the same bytes (one process; start-up amortised).
    let mut best = f64::MAX;
    let mut lines = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut child = Command::new("gpsdecode")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gpsdecode (package gpsd-clients) must be installed");
        let mut stdin = child.stdin.take().unwrap();
        let data = input.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        lines = out.stdout.iter().filter(|b| **b == b'\n').count();
    }
    println!(
        "gpsdecode        {:>8.1} ms  {:>10.0} lines/s   {:>6.0} ns/sentence  ({lines} JSON lines out)",
        best * 1e3,
        lines as f64 / best,
        best * 1e9 / sentences as f64
    );
}
