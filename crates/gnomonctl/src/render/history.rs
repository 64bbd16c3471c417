//! `gnomonctl history`: the engine's decisions, oldest first, one line each
//! (also the "Recent decisions" part of `status`).

use gnomon_core::{engine::Decision, ipc::HistoryReport};

use crate::{
    render::{state_paint, time, Style},
    table::{Align, Cell, Table},
};

/// Decisions as a table: when (the system clock then, or the daemon's
/// monotonic time when the wall clock was unknown), what, the state after,
/// and why.
pub(crate) fn decisions_table(decisions: &[Decision]) -> Table {
    let mut t = Table::new(&[
        ("Time", Align::Left),
        ("Decision", Align::Left),
        ("State", Align::Left),
        ("Why", Align::Left),
    ]);
    for d in decisions {
        t.row(vec![
            d.wall.map_or_else(|| d.at.to_string(), time).into(),
            d.kind.name().into(),
            Cell::painted(d.state.name(), state_paint(d.state)),
            d.reason.as_str().into(),
        ]);
    }
    t
}

pub(crate) fn render(report: &HistoryReport, style: Style) -> String {
    if report.decisions.is_empty() {
        return "No decisions recorded yet.\n".to_owned();
    }
    let mut out = decisions_table(&report.decisions).render(style);
    out.push_str(&format!(
        "{} of {} kept decision(s) shown\n",
        report.decisions.len(),
        report.kept
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn one_line_per_decision_with_wall_or_monotonic_time() {
        let report = HistoryReport {
            decisions: fixtures::decisions(),
            kept: 40,
        };
        let out = render(&report, Style::plain());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 + 3 + 1, "{out}");
        assert!(lines[0].starts_with("Time "), "{out}");
        assert!(lines[2].starts_with("T+0002.000s "), "{out}");
        assert!(
            lines[3].starts_with("2026-05-01T12:00:00.000Z  engage-fallbacks  fallback"),
            "{out}"
        );
        // The Why column starts at the same place on every line.
        let why = lines[0].find("Why").unwrap();
        assert!(
            lines[4][why..].starts_with("operator: maintenance"),
            "{out}"
        );
        assert_eq!(lines[5], "3 of 40 kept decision(s) shown");
    }

    #[test]
    fn empty_history_says_so() {
        let report = HistoryReport {
            decisions: vec![],
            kept: 0,
        };
        assert_eq!(
            render(&report, Style::plain()),
            "No decisions recorded yet.\n"
        );
    }
}
