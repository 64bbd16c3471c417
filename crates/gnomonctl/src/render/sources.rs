//! `gnomonctl sources`: chrony's sources as `chronyc sources` shows them,
//! with gnomon's plan for each one in a last column, and the planned
//! sources chrony does not have at all.

use gnomon_core::{
    chrony::{ChronySourceId, ChronySourceMode, SelectionState, SourceReport},
    ipc::SourcesReport,
    source::{plan_disagreement, AssociationKind, PlannedSource, SourceRole},
};

use crate::{
    render::{last_rx, magnitude, offset, status::tier_name, Paint, Style},
    table::{width, Align, Cell, Table},
};

pub(crate) fn render(report: &SourcesReport, style: Style) -> String {
    let mut t = Table::new(&[
        ("MS", Align::Left),
        ("Name/IP address", Align::Left),
        ("Stratum", Align::Right),
        ("Poll", Align::Right),
        ("Reach", Align::Right),
        ("LastRx", Align::Right),
        ("Last sample", Align::Left),
        ("Plan", Align::Left),
    ])
    .gap(1);
    let chrony_sources = report
        .chrony
        .as_ref()
        .map_or(&[][..], |c| c.sources.as_slice());
    let samples: Vec<(String, String)> = chrony_sources
        .iter()
        .map(|s| {
            (
                s.offset.map_or_else(|| "-".to_owned(), offset),
                magnitude(s.error),
            )
        })
        .collect();
    // Offsets and error bounds each line up inside the "Last sample" column.
    let wo = samples.iter().map(|(o, _)| width(o)).max().unwrap_or(0);
    let we = samples.iter().map(|(_, e)| width(e)).max().unwrap_or(0);
    for (s, (o, e)) in chrony_sources.iter().zip(&samples) {
        let planned = report
            .plan
            .sources
            .iter()
            .find(|p| s.matches(&p.source.address));
        t.row(vec![
            Cell::painted(
                format!("{}{}", mode_symbol(s.mode), s.state.symbol()),
                state_paint(s.state),
            ),
            source_name(s).into(),
            s.stratum.to_string().into(),
            s.poll.to_string().into(),
            format!("{:o}", s.reach).into(),
            last_rx(s.last_sample_ago).into(),
            if s.offset.is_some() {
                format!("{o:>wo$} +/- {e:>we$}").into()
            } else {
                "-".into()
            },
            planned.map_or_else(|| Cell::new("-"), |p| plan_cell(p, "")),
        ]);
    }
    let missing_note = if report.chrony.is_some() {
        ", not in chrony"
    } else {
        ""
    };
    for p in &report.plan.sources {
        if chrony_sources.iter().any(|s| s.matches(&p.source.address)) {
            continue;
        }
        let mode = match p.source.kind {
            AssociationKind::Server => '^',
            AssociationKind::Peer => '=',
        };
        t.row(vec![
            format!("{mode} ").into(),
            p.source.address.to_string().into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            plan_cell(p, missing_note),
        ]);
    }

    let mut out = String::new();
    if report.chrony.is_none() {
        out.push_str(&style.paint(
            "chrony has not answered recently: only gnomon's plan is shown.\n",
            Paint::Warn,
        ));
    }
    out.push_str(&t.render(style));
    out.push('\n');
    out.push_str(&format!(
        "Plan: {}, written to {}\n",
        if report.plan_applied {
            "applied".to_owned()
        } else {
            style.paint("NOT applied yet", Paint::Warn)
        },
        report.sources_file
    ));
    if let Some(c) = &report.chrony {
        if let Some(why) = plan_disagreement(&report.plan, &c.sources) {
            out.push_str(&style.paint(&format!("{why}\n"), Paint::Warn));
        }
    }
    out
}

/// chronyc's `M` column.
fn mode_symbol(mode: ChronySourceMode) -> char {
    match mode {
        ChronySourceMode::Server => '^',
        ChronySourceMode::Peer => '=',
        ChronySourceMode::Refclock => '#',
    }
}

fn state_paint(state: SelectionState) -> Paint {
    match state {
        SelectionState::Selected | SelectionState::Combined => Paint::Good,
        SelectionState::Falseticker => Paint::Bad,
        SelectionState::Jittery => Paint::Warn,
        SelectionState::NotCombined | SelectionState::Unusable => Paint::Plain,
    }
}

/// The name chrony was given, else the address; a refclock's refid.
fn source_name(s: &SourceReport) -> String {
    match (&s.id, s.name.as_deref()) {
        (ChronySourceId::Address(_), Some(name)) if !name.is_empty() => name.to_owned(),
        (ChronySourceId::Address(ip), _) => ip.to_string(),
        (ChronySourceId::Refclock(refid), _) => refid.clone(),
    }
}

/// `primary`, `fallback:peer selectable`, `fallback:public noselect`.
pub(crate) fn plan_text(p: &PlannedSource) -> String {
    match p.role {
        SourceRole::Primary if p.selectable => "primary".to_owned(),
        SourceRole::Primary => "primary noselect".to_owned(),
        SourceRole::Fallback(tier) => format!(
            "fallback:{} {}",
            tier_name(tier),
            if p.selectable {
                "selectable"
            } else {
                "noselect"
            }
        ),
    }
}

fn plan_cell(p: &PlannedSource, note: &str) -> Cell {
    let paint = match p.role {
        SourceRole::Fallback(_) if p.selectable => Paint::Warn,
        _ if !note.is_empty() => Paint::Warn,
        _ => Paint::Plain,
    };
    Cell::painted(format!("{}{note}", plan_text(p)), paint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{fixtures, strip_ansi};

    #[test]
    fn chronyc_columns_plus_the_plan() {
        let out = render(&fixtures::sources_report(), Style::plain());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "MS Name/IP address Stratum Poll Reach LastRx Last sample      Plan"
        );
        assert!(lines[1].chars().all(|c| c == '='), "{out}");
        assert_eq!(
            &lines[2..7],
            [
                "#* NMEA                  0    4   377     11 -479ns +/- 134ns -",
                "=? 192.168.1.12          2    6   377     40 -3.2ms +/- 5.0ms fallback:peer selectable",
                "^? 206.108.0.131         1   10     1    20h  +45ms +/-  20ms fallback:public noselect",
                "^? 206.108.0.133         0   10     0      - -                fallback:public noselect",
                "^  206.108.0.132         -    -     -      - -                fallback:public noselect, not in chrony",
            ]
        );
        assert!(out.contains("Plan: applied, written to /run/gnomon/chrony/gnomon.sources\n"));
        assert!(
            out.contains("chrony disagrees with the plan: 206.108.0.132 missing"),
            "{out}"
        );
    }

    #[test]
    fn every_column_starts_under_its_header() {
        let out = render(&fixtures::sources_report(), Style::plain());
        let lines: Vec<&str> = out.lines().collect();
        let header = lines[0];
        // Right-aligned numeric columns end where their header ends.
        for col in ["Stratum", "Poll", "Reach", "LastRx"] {
            let end = header.find(col).unwrap() + col.len();
            for row in &lines[2..7] {
                let cell_end = row[..end].trim_end().len();
                assert_eq!(cell_end, end, "{col} in {row:?}");
            }
        }
        let plan = header.find("Plan").unwrap();
        for row in &lines[2..7] {
            assert_ne!(&row[plan - 1..plan], "-", "{row:?}");
            assert_eq!(&row[plan - 1..plan], " ", "{row:?}");
        }
    }

    #[test]
    fn primary_role_and_colour_only_when_enabled() {
        let mut r = fixtures::sources_report();
        r.plan = fixtures::client_plan();
        let chrony = r.chrony.as_mut().unwrap();
        let mut primary = chrony.sources[1].clone();
        primary.id = ChronySourceId::Address("192.168.1.11".parse().unwrap());
        primary.mode = ChronySourceMode::Server;
        primary.state = SelectionState::Combined;
        primary.noselect = Some(false);
        chrony.sources.push(primary);
        let plain = render(&r, Style::plain());
        assert!(
            plain.contains(
                "^+ 192.168.1.11          2    6   377     40 -3.2ms +/- 5.0ms primary\n"
            ),
            "{plain}"
        );
        assert!(!plain.contains('\x1b'));
        let coloured = render(&r, Style::coloured());
        assert!(coloured.contains("\x1b[32m#*\x1b[0m"), "{coloured}");
        assert_eq!(strip_ansi(&coloured), plain);
    }

    #[test]
    fn without_chrony_the_plan_is_still_shown() {
        let mut r = fixtures::sources_report();
        r.chrony = None;
        r.plan_applied = false;
        let out = render(&r, Style::plain());
        assert!(out.starts_with("chrony has not answered recently"), "{out}");
        assert!(out.contains("Plan: NOT applied yet"), "{out}");
        assert_eq!(out.matches("fallback:").count(), 4, "{out}");
        assert!(!out.contains("not in chrony"), "{out}");
    }
}
