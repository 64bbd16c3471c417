//! `gnomonctl check`: the daemon's live preflight checks, one line each
//! with PASS, WARN or FAIL, and a count at the end.

use gnomon_core::ipc::{CheckOutcome, CheckReport};

use crate::{
    render::{Paint, Style},
    table::{Cell, Table},
};

pub(crate) fn outcome_cell(outcome: CheckOutcome) -> Cell {
    match outcome {
        CheckOutcome::Pass => Cell::painted("PASS", Paint::Good),
        CheckOutcome::Warn => Cell::painted("WARN", Paint::Warn),
        CheckOutcome::Fail => Cell::painted("FAIL", Paint::Bad),
    }
}

pub(crate) fn render(report: &CheckReport, style: Style) -> String {
    if report.items.is_empty() {
        return "No checks reported.\n".to_owned();
    }
    let mut t = Table::new(&[
        ("Result", crate::table::Align::Left),
        ("Check", crate::table::Align::Left),
        ("Detail", crate::table::Align::Left),
    ]);
    for item in &report.items {
        t.row(vec![
            outcome_cell(item.outcome),
            item.name.as_str().into(),
            item.detail.as_str().into(),
        ]);
    }
    let count = |o| report.items.iter().filter(|i| i.outcome == o).count();
    let (pass, warn, fail) = (
        count(CheckOutcome::Pass),
        count(CheckOutcome::Warn),
        count(CheckOutcome::Fail),
    );
    let mut out = t.render(style);
    out.push_str(&format!(
        "{pass} passed, {warn} warning(s), {fail} failure(s)\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use gnomon_core::ipc::CheckItem;

    use super::*;
    use crate::render::strip_ansi;

    fn report() -> CheckReport {
        let item = |name: &str, outcome, detail: &str| CheckItem {
            name: name.into(),
            outcome,
            detail: detail.into(),
        };
        CheckReport {
            items: vec![
                item(
                    "config",
                    CheckOutcome::Pass,
                    "/etc/gnomon/gnomon.toml is valid",
                ),
                item(
                    "chrony-sourcedir",
                    CheckOutcome::Fail,
                    "chrony.conf has no `sourcedir /run/gnomon/chrony`",
                ),
                item("pps-device", CheckOutcome::Warn, "/dev/pps0 is missing"),
            ],
        }
    }

    #[test]
    fn one_line_per_check_with_its_outcome() {
        let out = render(&report(), Style::plain());
        assert_eq!(
            out,
            "Result  Check             Detail\n\
             ===========================================================================\n\
             PASS    config            /etc/gnomon/gnomon.toml is valid\n\
             FAIL    chrony-sourcedir  chrony.conf has no `sourcedir /run/gnomon/chrony`\n\
             WARN    pps-device        /dev/pps0 is missing\n\
             1 passed, 1 warning(s), 1 failure(s)\n"
        );
    }

    #[test]
    fn outcomes_are_coloured_only_when_enabled() {
        let coloured = render(&report(), Style::coloured());
        assert!(coloured.contains("\x1b[32mPASS\x1b[0m"));
        assert!(coloured.contains("\x1b[31mFAIL\x1b[0m"));
        assert!(coloured.contains("\x1b[33mWARN\x1b[0m"));
        assert_eq!(strip_ansi(&coloured), render(&report(), Style::plain()));
    }
}
