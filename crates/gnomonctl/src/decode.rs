//! `gnomonctl decode`: an NMEA capture (gpsd's `.log` format or a raw
//! serial dump) through gnomon's decoder, one line per epoch.

use std::{
    io::{self, Read, Write},
    path::PathBuf,
};

use clap::Args;
use gnomon_core::{gps::GpsEpoch, time::WallTime};
use gnomon_gps::decode::decode_capture_with;
use serde::Serialize;

use crate::exit;

/// Default time floor for files: 1999-08-22, the start of the second GPS
/// week era. Captures are usually old; a floor near "now" would turn every
/// 2005–2015 capture into a rollover suspect and place two-digit years in
/// the wrong century for none of them, but the flag would be noise. With
/// this floor two-digit years land in 1950..2049 and nothing a working
/// receiver since 1999 sent is before the floor.
pub(crate) const DEFAULT_FLOOR: &str = "1999-08-22T00:00:00Z";

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Capture file, or `-` for standard input.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// One JSON object per epoch and line instead of a table.
    #[arg(long)]
    json: bool,
    /// Time floor (RFC 3339, e.g. 2026-01-01T00:00:00Z, or a date) against
    /// which two-digit years and week rollovers are judged.
    #[arg(long, default_value = DEFAULT_FLOOR, value_parser = parse_rfc3339)]
    floor: WallTime,
}

#[derive(Debug, Serialize)]
struct EpochLine {
    time: Option<String>,
    mode: u8,
    sats_used: Option<u8>,
    hdop: Option<f32>,
    status: Option<&'static str>,
}

impl From<&GpsEpoch> for EpochLine {
    fn from(e: &GpsEpoch) -> Self {
        Self {
            time: e.utc.map(WallTime::rfc3339_millis),
            mode: e.fix.gpsd_mode(),
            sats_used: e.sats_used,
            hdop: e.hdop,
            status: e.rmc_valid.map(|v| if v { "A" } else { "V" }),
        }
    }
}

pub(crate) fn run(args: &DecodeArgs) -> u8 {
    let bytes = match read_input(args) {
        Ok(b) => b,
        Err((code, msg)) => {
            let _ = writeln!(io::stderr(), "gnomonctl decode: {msg}");
            return code;
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let (epochs, stats) = decode_capture_with(&text, args.floor, Default::default());
    if stats.framer.sentences == 0 {
        let _ = writeln!(
            io::stderr(),
            "gnomonctl decode: {}: no NMEA sentence with a valid checksum",
            args.file.display()
        );
        return exit::DATAERR;
    }
    let a = stats.assembler;
    if a.before_floor > 0 {
        let _ = writeln!(
            io::stderr(),
            "gnomonctl decode: {} epoch(s) before the floor {}, {} of them 1024/2048 weeks back (GPS week rollover?)",
            a.before_floor,
            args.floor,
            a.rollover_suspects
        );
    }
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    let written = if args.json {
        write_json(&mut out, &epochs)
    } else {
        write_table(&mut out, &epochs)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        // `gnomonctl decode x | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            let _ = writeln!(io::stderr(), "gnomonctl decode: writing output: {e}");
            exit::IOERR
        }
    }
}

fn read_input(args: &DecodeArgs) -> Result<Vec<u8>, (u8, String)> {
    let mut bytes = Vec::new();
    if args.file.as_os_str() == "-" {
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| (exit::IOERR, format!("reading standard input: {e}")))?;
        return Ok(bytes);
    }
    std::fs::read(&args.file).map_err(|e| {
        let code = match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => exit::NOINPUT,
            _ if args.file.is_dir() => exit::NOINPUT,
            _ => exit::IOERR,
        };
        (code, format!("{}: {e}", args.file.display()))
    })
}

fn write_json(out: &mut impl Write, epochs: &[GpsEpoch]) -> io::Result<()> {
    for e in epochs {
        serde_json::to_writer(&mut *out, &EpochLine::from(e))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, epochs: &[GpsEpoch]) -> io::Result<()> {
    writeln!(
        out,
        "{:<24}  {:<6}  {:>6}  {:>4}  {:>5}",
        "UTC", "Fix", "Status", "Sats", "HDOP"
    )?;
    writeln!(out, "{}", "=".repeat(24 + 2 + 6 + 2 + 6 + 2 + 4 + 2 + 5))?;
    for e in epochs {
        let l = EpochLine::from(e);
        writeln!(
            out,
            "{:<24}  {:<6}  {:>6}  {:>4}  {:>5}",
            l.time.as_deref().unwrap_or("(no date)"),
            e.fix.to_string(),
            l.status.unwrap_or("-"),
            l.sats_used
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            l.hdop.map_or_else(|| "-".to_owned(), |h| format!("{h:.1}")),
        )?;
    }
    Ok(())
}

/// RFC 3339 (`2026-01-01T00:00:00Z`, `…T00:00:00.5+01:00`, space for `T`)
/// or a bare date (`2026-01-01`, midnight UTC).
pub(crate) fn parse_rfc3339(s: &str) -> Result<WallTime, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time like 2026-01-01T00:00:00Z");
    let num = |t: &str| -> Result<u32, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let s = s.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (s.get(..i).ok_or_else(bad)?, s.get(i + 1..).ok_or_else(bad)?),
        None => (s, "00:00:00Z"),
    };
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    if y.len() != 4 {
        return Err(bad());
    }
    let year = i32::try_from(num(y)?).map_err(|_| bad())?;
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let i = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (c, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off
            .get(1..)
            .and_then(|o| o.split_once(':'))
            .ok_or_else(bad)?;
        (c, sign * i64::from(num(oh)? * 3600 + num(om)? * 60))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        num(&digits)?
    };
    let local = WallTime::from_utc(
        year,
        num(mo)?,
        num(day)?,
        num(h)?,
        num(mi)?,
        num(sec)?,
        nanos,
    )
    .ok_or_else(bad)?;
    Ok(local.offset_by(gnomon_core::time::Offset::from_secs(-offset_secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_parse() {
        let t = parse_rfc3339(DEFAULT_FLOOR).unwrap();
        assert_eq!(t.rfc3339_millis(), "1999-08-22T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2026-11-22").unwrap().rfc3339_millis(),
            "2026-11-22T00:00:00.000Z"
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T02:47:55.123+01:00")
                .unwrap()
                .rfc3339_millis(),
            "2026-11-22T01:47:55.123Z"
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "26-01-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_line_has_the_documented_shape() {
        let e = GpsEpoch {
            utc: WallTime::from_utc(2007, 12, 23, 19, 32, 21, 0),
            fix: gnomon_core::gps::FixMode::Fix3D,
            rmc_valid: Some(true),
            gga_quality: Some(1),
            sats_used: Some(4),
            hdop: Some(1.7),
            received_wall: WallTime::UNIX_EPOCH,
            received_mono: gnomon_core::time::MonoTime::ZERO,
        };
        let mut out = Vec::new();
        write_json(&mut out, &[e]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"2007-12-23T19:32:21.000Z\",\"mode\":3,\"sats_used\":4,\"hdop\":1.7,\"status\":\"A\"}\n"
        );
    }
}
