//! `gnomonctl certs`: the `[certs]` files, one row each (subject, end,
//! days left, state), then each one's standing in words, and what they
//! were judged against.

use gnomon_core::{
    certs::{CertState, CertStatus},
    ipc::CertsReport,
    time::human_duration,
};

use crate::{
    render::{offset, time, Paint, Style},
    table::{Align, Cell, Table},
};

fn state_paint(state: CertState) -> Paint {
    match state {
        CertState::Valid => Paint::Good,
        CertState::Expiring | CertState::Unreadable => Paint::Warn,
        CertState::NotYetValidByClock
        | CertState::NotYetValid
        | CertState::ExpiredByClock
        | CertState::Expired => Paint::Bad,
    }
}

/// Whether any certificate is critical (gnomonctl then exits 1).
pub(crate) fn any_critical(report: &CertsReport) -> bool {
    report.certs.iter().any(|c| c.state.is_critical())
}

fn days(c: &CertStatus) -> String {
    c.days_left
        .map_or_else(|| "-".to_owned(), |d| format!("{d}d"))
}

pub(crate) fn render(report: &CertsReport, style: Style) -> String {
    let mut out = String::new();
    let judged = match &report.trusted {
        Some(t) => format!(
            "Judged against {}{}: trusted time − system clock {}.",
            if t.lower_bound { "at least " } else { "" },
            t.basis,
            offset(t.offset)
        ),
        None => {
            "Judged against the system clock alone: gnomond has no trusted time yet.".to_owned()
        }
    };
    if report.certs.is_empty() {
        out.push_str("No certificates are watched ([certs] files in gnomon.toml).\n");
        return out;
    }
    let mut t = Table::new(&[
        ("Certificate", Align::Left),
        ("Subject", Align::Left),
        ("Not after", Align::Left),
        ("Left", Align::Right),
        ("State", Align::Left),
    ]);
    for c in &report.certs {
        let (subject, not_after) = c.info.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |i| (i.subject.clone(), time(i.not_after)),
        );
        t.row(vec![
            c.path.as_str().into(),
            subject.into(),
            not_after.into(),
            days(c).into(),
            Cell::painted(c.state.name(), state_paint(c.state)),
        ]);
    }
    out.push_str(&t.render(style));
    out.push('\n');
    for c in &report.certs {
        out.push_str(&format!(
            "{}: {}\n",
            c.path,
            style.paint(&c.detail, state_paint(c.state))
        ));
        if let Some(r) = c.renewed {
            out.push_str(&format!(
                "  renewed (new certificate seen at {})\n",
                time(r)
            ));
        }
    }
    out.push('\n');
    out.push_str(&judged);
    out.push_str(&format!(
        " Warning {} before the end; files read every {}.\n",
        human_duration(report.warn_before),
        human_duration(report.check_every)
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gnomon_core::{
        certs::{assess, CertInfo, TrustedTime},
        time::{Offset, WallTime},
    };

    use super::*;

    fn report() -> CertsReport {
        let now = WallTime::from_unix_secs(1_795_000_000);
        let info = |from: i64, to: i64| CertInfo {
            subject: "CN=dns.lan".into(),
            issuer: "CN=dns.lan".into(),
            serial: "01".into(),
            fingerprint: "ab".repeat(32),
            not_before: now
                .plus(Duration::from_secs(0))
                .offset_by(Offset::from_secs(from * 86_400)),
            not_after: now.offset_by(Offset::from_secs(to * 86_400)),
            certificates: 1,
        };
        let system = now.offset_by(Offset::from_secs(-730 * 86_400));
        let gps = TrustedTime {
            offset: Offset::from_secs(730 * 86_400),
            basis: "GPS".into(),
            lower_bound: false,
        };
        let warn = Duration::from_secs(21 * 86_400);
        let certs = vec![
            assess(
                "/etc/unbound/dot.pem",
                &Ok(info(-30, 335)),
                system,
                Some(&gps),
                warn,
            ),
            assess(
                "/etc/ssl/doh.pem",
                &Ok(info(-800, 4)),
                system,
                Some(&gps),
                warn,
            ),
            assess(
                "/etc/ssl/gone.pem",
                &Err("opening /etc/ssl/gone.pem: No such file or directory (os error 2)".into()),
                system,
                Some(&gps),
                warn,
            ),
        ];
        CertsReport {
            system: Some(system),
            trusted: Some(gps),
            warn_before: warn,
            check_every: Duration::from_secs(3600),
            certs,
        }
    }

    #[test]
    fn a_row_per_certificate_and_the_reason_in_words() {
        let r = report();
        let out = render(&r, Style::plain());
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("Certificate "), "{out}");
        assert!(
            lines[2].contains("/etc/unbound/dot.pem")
                && lines[2].contains("335d")
                && lines[2].ends_with("not-yet-valid-by-clock"),
            "{out}"
        );
        assert!(
            lines[3].contains("4d") && lines[3].ends_with("expiring"),
            "{out}"
        );
        assert!(lines[4].ends_with("unreadable"), "{out}");
        assert!(out.contains("/etc/unbound/dot.pem: not yet valid because the system clock is 2.0 years behind (GPS)"), "{out}");
        assert!(
            out.contains("Judged against GPS: trusted time − system clock +730d."),
            "{out}"
        );
        assert!(any_critical(&r));
        let coloured = render(&r, Style::coloured());
        assert!(
            coloured.contains("\x1b[31mnot-yet-valid-by-clock"),
            "{coloured}"
        );
    }

    #[test]
    fn nothing_watched() {
        let mut r = report();
        r.certs.clear();
        assert!(render(&r, Style::plain()).starts_with("No certificates are watched"));
        assert!(!any_critical(&r));
    }
}
