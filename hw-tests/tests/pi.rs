//! On a Raspberry Pi with a GPS hat only: `GNOMON_HW=1 hw-tests/run`
//! (which runs `cargo test -p gnomon-hw-tests --release -- --ignored
//! --test-threads=1` and fills in the report). See hw-tests/README.md for
//! the set-up and what each test needs. Everywhere else these are ignored,
//! and run by mistake they stop at `require_hw` with that message.
//!
//! Settings (environment): GNOMON_HW_UART (default /dev/serial0),
//! GNOMON_HW_BAUD (9600), GNOMON_HW_PPS (/dev/pps0), GNOMON_HW_PPS_GPIO (18),
//! GNOMON_HW_MINUTES (10, the PPS comparison), GNOMON_HW_CHRONY_SOCKET
//! (/run/chrony/chronyd.sock).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use gnomon_chrony::client::{ChronyClient, ClientConfig};
use gnomon_core::{
    chrony::{ChronySourceId, SelectionState},
    time::WallTime,
};
use gnomon_gps::{decode::Decoder, pps};
use gnomon_hw_tests::{env_or, offset_summary, path_offsets, pulse_stats, report, require_hw};
use rppal::uart::{Parity, Uart};

const WHY: &str = "needs a Raspberry Pi with a GPS hat: GNOMON_HW=1 hw-tests/run";

/// The UART through rppal (the Pi's own UART driver binding), decoded by
/// gnomon's NMEA decoder: one epoch a second with a fix and sane dates.
#[test]
#[ignore = "needs a Raspberry Pi with a GPS hat: GNOMON_HW=1 hw-tests/run"]
fn uart_reads_nmea_through_rppal() {
    require_hw();
    let path: String = env_or("GNOMON_HW_UART", "/dev/serial0".to_owned());
    let baud: u32 = env_or("GNOMON_HW_BAUD", 9600);
    let mut uart = Uart::with_path(&path, baud, Parity::None, 8, 1)
        .unwrap_or_else(|e| panic!("opening {path} at {baud} baud through rppal: {e}"));
    uart.set_read_mode(0, Duration::from_millis(200)).unwrap();
    let floor = WallTime::from_unix_secs(1_767_225_600); // 2026-01-01
    let mut decoder = Decoder::new(floor);
    let mut epochs = Vec::new();
    let mut bytes = 0usize;
    let mut buf = [0u8; 512];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let n = uart
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading {path}: {e}"));
        if n > 0 {
            bytes += n;
            let (wall, mono) = pps::read_clocks();
            epochs.extend(decoder.push(buf.get(..n).unwrap_or_default(), wall, mono));
        }
    }
    let with_time = epochs.iter().filter(|e| e.utc.is_some()).count();
    let fixed = epochs.iter().filter(|e| e.rmc_valid == Some(true)).count();
    let last = epochs.iter().rev().find_map(|e| e.utc);
    let body = format!(
        "- device {path}, {baud} baud, 20 s\n- {bytes} bytes, {} epochs, {with_time} with a time, \
         {fixed} with RMC status A\n- last GPS time {}\n",
        epochs.len(),
        last.map_or_else(|| "-".to_owned(), |t| t.to_string())
    );
    println!("{body}");
    report("UART through rppal", &body).unwrap();
    assert!(epochs.len() >= 15, "{body}");
    assert!(with_time >= 15, "{body}");
    assert!(
        last.is_some_and(|t| t > floor),
        "the GPS's date is before 2026: {body}"
    );
}

/// The same pulses through the kernel's pps-gpio driver (/dev/pps0) and
/// through rppal's GPIO interrupt, side by side for GNOMON_HW_MINUTES:
/// each path's jitter and phase, and how far apart they timestamp the
/// same pulse. Both are needed at once: leave pps-gpio loaded on the pin
/// and let rppal watch the same pin (reads do not conflict).
#[test]
#[ignore = "needs a Raspberry Pi with a GPS hat: GNOMON_HW=1 hw-tests/run"]
fn pps_kernel_and_gpio_side_by_side() {
    require_hw();
    let device: String = env_or("GNOMON_HW_PPS", "/dev/pps0".to_owned());
    let pin: u8 = env_or("GNOMON_HW_PPS_GPIO", 18);
    let minutes: u64 = env_or("GNOMON_HW_MINUTES", 10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (kernel, gpio) = runtime.block_on(async {
        let mut k = pps::spawn_kernel(PathBuf::from(&device)).unwrap();
        let mut g = pps::spawn_gpio(pin).unwrap();
        let (mut kernel, mut gpio) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(minutes * 60);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                e = k.next() => match e {
                    Some(Ok(edge)) => kernel.push(edge.wall),
                    Some(Err(e)) => panic!("kernel PPS {device}: {e}"),
                    None => panic!("kernel PPS {device}: the reader stopped"),
                },
                e = g.next() => match e {
                    Some(Ok(edge)) => gpio.push(edge.wall),
                    Some(Err(e)) => panic!("GPIO {pin} PPS: {e}"),
                    None => panic!("GPIO {pin} PPS: the reader stopped"),
                },
            }
        }
        (kernel, gpio)
    });
    let k = pulse_stats(&kernel).expect("no pulse from the kernel");
    let g = pulse_stats(&gpio).expect("no pulse through GPIO");
    let offsets = path_offsets(&kernel, &gpio);
    let (median, p99, max) = offset_summary(&offsets).expect("no pulse seen by both");
    let body = format!(
        "{minutes} min, {device} and GPIO {pin}\n\n\
         | path | pulses | missed | jitter | worst interval error | median phase |\n\
         |---|---|---|---|---|---|\n\
         | kernel {device} | {} | {} | {:?} | {:?} | {} |\n\
         | rppal GPIO {pin} | {} | {} | {:?} | {:?} | {} |\n\n\
         GPIO − kernel, same pulse: median {median}, p99 {p99:?}, max {max:?} ({} pairs)\n",
        k.pulses,
        k.missed,
        k.jitter,
        k.worst_interval_error,
        k.median_phase,
        g.pulses,
        g.missed,
        g.jitter,
        g.worst_interval_error,
        g.median_phase,
        offsets.len()
    );
    println!("{body}");
    report("PPS: kernel and GPIO side by side", &body).unwrap();
    let expected = usize::try_from(minutes * 60).unwrap();
    assert!(k.pulses * 100 >= expected * 95, "{body}");
    assert!(g.pulses * 100 >= expected * 95, "{body}");
    // A userspace interrupt is later and noisier than the kernel's stamp,
    // but by microseconds to a millisecond, not more.
    assert!(p99 < Duration::from_millis(5), "{body}");
}

/// The installed system: chrony (deploy/chrony/gnomon-gps.conf) selects its
/// PPS refclock, locked to the NMEA samples gnomond feeds, within ten
/// minutes. Read-only: the command socket's monitoring requests.
#[test]
#[ignore = "needs a Raspberry Pi with a GPS hat: GNOMON_HW=1 hw-tests/run"]
fn chrony_locks_pps_to_gnomons_nmea() {
    require_hw();
    let socket: String = env_or(
        "GNOMON_HW_CHRONY_SOCKET",
        "/run/chrony/chronyd.sock".to_owned(),
    );
    let client_dir = tempfile_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = ChronyClient::new(ClientConfig::new(&socket, &client_dir));
    let start = Instant::now();
    let mut last = String::new();
    let locked = runtime.block_on(async {
        while start.elapsed() < Duration::from_secs(600) {
            match client.sources().await {
                Ok(sources) => {
                    let state = |refid: &str| {
                        sources
                            .iter()
                            .find(|s| s.id == ChronySourceId::Refclock(refid.to_owned()))
                            .map(|s| (s.state, s.reach, s.offset))
                    };
                    last = format!("PPS {:?}, NMEA {:?}", state("PPS"), state("NMEA"));
                    let pps_selected =
                        state("PPS").is_some_and(|(s, _, _)| s == SelectionState::Selected);
                    let nmea_fed = state("NMEA").is_some_and(|(_, reach, _)| reach != 0);
                    if pps_selected && nmea_fed {
                        return Some(start.elapsed());
                    }
                }
                Err(e) => last = format!("chronyd on {socket}: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        None
    });
    let body = format!(
        "- chronyd {socket}: {}\n- last look: {last}\n",
        locked.map_or_else(
            || "PPS not selected within 10 min".to_owned(),
            |t| format!("PPS selected, NMEA fed, after {t:?}")
        )
    );
    println!("{body}");
    report("chrony locks PPS to gnomon's NMEA", &body).unwrap();
    assert!(locked.is_some(), "{body}");
}

/// A directory chronyd (user _chrony) can send replies into.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gnomon-hw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(
        &dir,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
    )
    .unwrap();
    dir
}

#[test]
fn every_hardware_test_is_ignored_without_the_hardware() {
    // The guard and the ignore reason say the same.
    assert!(WHY.contains("GNOMON_HW=1"));
    let source = include_str!("pi.rs");
    let tests = source.matches("#[test]\n#[ignore").count();
    assert_eq!(tests, 3, "every hardware test is #[ignore]d");
}
