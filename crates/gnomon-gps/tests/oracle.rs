//! gnomon's NMEA decoding against gpsd's, on gpsd's own regression captures
//! (`shared/data/nmea-captures/*.log` with gpsd's output in `*.log.chk`).
//! Method and figures: docs/gps-decoding.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use gnomon_core::{
    gps::FixMode,
    time::{WallTime, GPS_ROLLOVER},
};
use gnomon_gps::{
    decode::{decode_capture_with, DecoderStats},
    sentence::ParseStrategy,
};

fn captures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/nmea-captures"
    ))
}

/// The floor gnomonctl uses for files (see docs/gps-decoding.md).
fn floor() -> WallTime {
    WallTime::from_utc(1999, 8, 22, 0, 0, 0, 0).unwrap()
}

/// Captures where gpsd moves the receiver's date 1024 weeks forward (its
/// own rollover guess) and gnomon deliberately reports the date as the
/// receiver sent it: compared after adding 1024 weeks to gnomon's times.
const GPSD_ROLLOVER_SHIFTED: &[&str] = &["neo-m8n.log"];

/// gpsd's TPV reports: time → the best mode it reported for that time.
fn gpsd_tpv(chk: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in chk.lines() {
        if !line.contains("\"class\":\"TPV\"") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(t), Some(m)) = (v["time"].as_str(), v["mode"].as_u64()) else {
            continue;
        };
        let e = out.entry(t.to_owned()).or_insert(0);
        *e = (*e).max(m);
    }
    out
}

#[derive(Debug, Default, Clone)]
struct Row {
    name: String,
    gpsd_fixes: usize,
    matched: usize,
    false_fixes: usize,
    unconfirmed: usize,
    missed: Vec<String>,
    false_list: Vec<String>,
    unconfirmed_list: Vec<String>,
    stats: DecoderStats,
}

fn evaluate(strategy: ParseStrategy) -> Vec<Row> {
    let dir = captures_dir();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("captures at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    assert!(
        logs.len() >= 50,
        "expected gpsd's captures in {}",
        dir.display()
    );
    let mut rows = Vec::new();
    for log in logs {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
        let chk_path = log.with_extension("log.chk");
        let chk = std::fs::read_to_string(&chk_path)
            .unwrap_or_else(|e| panic!("{}: {e}", chk_path.display()));
        let gpsd = gpsd_tpv(&chk);
        let name = log.file_name().unwrap().to_string_lossy().into_owned();
        let (epochs, stats) = decode_capture_with(&text, floor(), strategy);
        let shifted = GPSD_ROLLOVER_SHIFTED.contains(&name.as_str());
        let ours: BTreeSet<String> = epochs
            .iter()
            .filter(|e| e.fix >= FixMode::Fix2D)
            .filter_map(|e| e.utc)
            .map(|t| if shifted { t.plus(GPS_ROLLOVER) } else { t })
            .map(WallTime::rfc3339_millis)
            .collect();
        let gpsd_fix: BTreeSet<&String> = gpsd
            .iter()
            .filter(|(_, m)| **m >= 2)
            .map(|(t, _)| t)
            .collect();
        let mut row = Row {
            name,
            stats,
            gpsd_fixes: gpsd_fix.len(),
            ..Row::default()
        };
        for t in &gpsd_fix {
            if ours.contains(*t) {
                row.matched += 1;
            } else {
                row.missed.push((*t).clone());
            }
        }
        for t in &ours {
            match gpsd.get(t) {
                Some(m) if *m < 2 => {
                    row.false_fixes += 1;
                    row.false_list.push(t.clone());
                }
                None => {
                    row.unconfirmed += 1;
                    row.unconfirmed_list.push(t.clone());
                }
                Some(_) => {}
            }
        }
        rows.push(row);
    }
    rows
}

fn totals(rows: &[Row]) -> (usize, usize, usize, usize) {
    rows.iter().fold((0, 0, 0, 0), |a, r| {
        (
            a.0 + r.gpsd_fixes,
            a.1 + r.matched,
            a.2 + r.false_fixes,
            a.3 + r.unconfirmed,
        )
    })
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        100.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

#[test]
fn agrees_with_gpsd_on_its_captures() {
    for strategy in [ParseStrategy::NmeaCrate, ParseStrategy::Tolerant] {
        let (g, m, f, u) = totals(&evaluate(strategy));
        println!(
            "strategy {strategy:?}: {m}/{g} = {:.2}% agreement, {f} false fixes, {u} unconfirmed",
            pct(m, g)
        );
    }
    let rows = evaluate(ParseStrategy::NmeaThenTolerant);
    println!(
        "{:<36} {:>5} {:>7} {:>6} {:>5} {:>6} {:>5} {:>5} {:>5} {:>6} {:>5}",
        "capture",
        "gpsd",
        "matched",
        "agree%",
        "false",
        "unconf",
        "tol",
        "rej",
        "badck",
        "nochk",
        "noise"
    );
    for r in &rows {
        println!(
            "{:<36} {:>5} {:>7} {:>6.1} {:>5} {:>6} {:>5} {:>5} {:>5} {:>6} {:>5}",
            r.name,
            r.gpsd_fixes,
            r.matched,
            pct(r.matched, r.gpsd_fixes),
            r.false_fixes,
            r.unconfirmed,
            r.stats.assembler.parsed_by_tolerant,
            r.stats.assembler.rejected,
            r.stats.framer.bad_checksum,
            r.stats.framer.missing_checksum,
            r.stats.framer.noise_bytes,
        );
        if !r.missed.is_empty() {
            println!(
                "    missed: {:?}",
                r.missed.iter().take(5).collect::<Vec<_>>()
            );
        }
        if !r.unconfirmed_list.is_empty() {
            println!(
                "    unconfirmed: {:?}",
                r.unconfirmed_list.iter().take(3).collect::<Vec<_>>()
            );
        }
        if !r.false_list.is_empty() {
            println!(
                "    false: {:?}",
                r.false_list.iter().take(5).collect::<Vec<_>>()
            );
        }
    }
    let (g, m, f, u) = totals(&rows);
    let agreement = pct(m, g);
    println!(
        "overall NmeaThenTolerant: {m}/{g} = {agreement:.2}% agreement, {f} false fixes, {u} unconfirmed"
    );
    assert_eq!(f, 0, "gnomon claims a fix where gpsd says none");
    assert!(agreement >= 99.0, "agreement {agreement:.2}% < 99%");
}
