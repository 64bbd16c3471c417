//! `gnomonctl check`: a live preflight of everything gnomon depends on,
//! judged from what the daemon saw in the last seconds (chrony is polled
//! every two seconds, the GPS every second).

use std::path::Path;

use gnomon_core::{
    chrony::ChronySnapshot,
    config::{Config, PpsKind, Role},
    engine::{Status, MIN_INDEPENDENT},
    ipc::{CheckItem, CheckOutcome, CheckReport, GpsReport},
    source::{plan_disagreement, SourcePlan},
    time::human_duration,
};

/// Files chrony reads its configuration from on Debian and elsewhere; only
/// consulted to explain a missing `sourcedir`.
const CHRONY_CONF_FILES: [&str; 2] = ["/etc/chrony/chrony.conf", "/etc/chrony.conf"];
const CHRONY_CONF_DIRS: [&str; 1] = ["/etc/chrony/conf.d"];

/// Everything the check looks at.
#[derive(Debug)]
pub struct CheckInputs<'a> {
    pub config: &'a Config,
    pub status: &'a Status,
    pub plan: &'a SourcePlan,
    pub snapshot: Option<&'a ChronySnapshot>,
    pub gps: Option<&'a GpsReport>,
    pub last_save_error: Option<&'a str>,
}

fn item(name: &str, outcome: CheckOutcome, detail: impl Into<String>) -> CheckItem {
    CheckItem {
        name: name.to_owned(),
        outcome,
        detail: detail.into(),
    }
}

pub fn report(i: &CheckInputs<'_>) -> CheckReport {
    let mut items = Vec::new();
    let paths = &i.config.paths;
    items.push(match (&i.status.chrony.error, i.status.chrony.reachable) {
        (_, true) => item(
            "chrony-socket",
            CheckOutcome::Pass,
            format!("chronyd answers on {}", paths.chrony_socket),
        ),
        (error, false) => item(
            "chrony-socket",
            CheckOutcome::Fail,
            format!(
                "chronyd does not answer on {}: {}",
                paths.chrony_socket,
                error.as_deref().unwrap_or("no answer yet")
            ),
        ),
    });
    items.push(sourcedir_item(i));
    for f in &i.status.fallbacks {
        let name = format!("fallback {}", f.address);
        items.push(if f.answering {
            let offset = f
                .offset
                .map_or_else(String::new, |o| format!(", offset {o}"));
            item(
                &name,
                CheckOutcome::Pass,
                format!(
                    "measured and answering ({}{offset})",
                    if f.selectable {
                        "selectable"
                    } else {
                        "noselect"
                    }
                ),
            )
        } else {
            item(
                &name,
                CheckOutcome::Warn,
                match f.silent_for {
                    Some(d) => format!("not answering for {}", human_duration(d)),
                    None => "not answering (no sample yet)".to_owned(),
                },
            )
        });
    }
    if i.status.fallbacks.is_empty() {
        items.push(item(
            "fallbacks",
            CheckOutcome::Warn,
            "no fallbacks configured: when the primary fails gnomon can only alert",
        ));
    }
    if i.config.role == Role::Gps {
        gps_items(i, &mut items);
    }
    items.push(match i.status.primary.healthy {
        Some(true) => item(
            "primary",
            CheckOutcome::Pass,
            i.status.primary.detail.clone(),
        ),
        Some(false) => item(
            "primary",
            CheckOutcome::Fail,
            i.status.primary.detail.clone(),
        ),
        None => item(
            "primary",
            CheckOutcome::Warn,
            i.status.primary.detail.clone(),
        ),
    });
    items.push(cross_check_item(i.status));
    let clock = &i.status.clock;
    items.push(if clock.before_floor {
        item(
            "clock",
            CheckOutcome::Fail,
            format!(
                "the system clock is before the time floor {} ({})",
                clock.floor.rfc3339_millis(),
                clock.floor_source
            ),
        )
    } else {
        item(
            "clock",
            CheckOutcome::Pass,
            format!("after the time floor {}", clock.floor.rfc3339_millis()),
        )
    });
    items.push(match i.last_save_error {
        None => item(
            "state-dir",
            CheckOutcome::Pass,
            format!("{} writable", paths.state_dir),
        ),
        Some(e) => item("state-dir", CheckOutcome::Fail, e.to_owned()),
    });
    CheckReport { items }
}

/// Whether the reference can be judged against independent sources.
fn cross_check_item(status: &Status) -> CheckItem {
    let c = &status.cross_check;
    if status.primary.distrusted {
        return item(
            "cross-check",
            CheckOutcome::Fail,
            format!(
                "the primary disagreed with the independent sources and is kept out of selection: {}",
                status.primary.detail
            ),
        );
    }
    if let Some(median) = c.judging_median() {
        return item(
            "cross-check",
            CheckOutcome::Pass,
            format!(
                "{} independent sources ({}), median {median}",
                c.counted(),
                c.counted_names()
            ),
        );
    }
    let left_out: Vec<String> = c
        .sources
        .iter()
        .filter_map(|s| Some(format!("{}: {}", s.address, s.excluded.as_deref()?)))
        .collect();
    item(
        "cross-check",
        CheckOutcome::Warn,
        format!(
            "{} independent source(s) answering, {MIN_INDEPENDENT} needed: a wrong time from the reference would not be caught{}",
            c.counted(),
            if left_out.is_empty() {
                String::new()
            } else {
                format!(" (not counted: {})", left_out.join("; "))
            }
        ),
    )
}

fn sourcedir_item(i: &CheckInputs<'_>) -> CheckItem {
    let dir = &i.config.paths.sources_dir;
    let Some(snapshot) = i.snapshot else {
        return item(
            "chrony-sourcedir",
            CheckOutcome::Warn,
            "cannot tell while chronyd does not answer",
        );
    };
    match plan_disagreement(i.plan, &snapshot.sources) {
        None => item(
            "chrony-sourcedir",
            CheckOutcome::Pass,
            format!("chrony has every source gnomon writes to {dir}"),
        ),
        Some(why) => {
            let configured = chrony_reads_sourcedir(Path::new(dir));
            let hint = match configured {
                Some(true) if apparmor_enabled() => format!(
                    "chrony's config names it, but AppArmor is enabled: chronyd's profile must let it read {dir} (the gnomon package adds that to /etc/apparmor.d/local/usr.sbin.chronyd; look for apparmor=\"DENIED\" in `journalctl -k`), then restart chrony"
                ),
                Some(true) => "chrony's config names it; chronyd may need a restart".to_owned(),
                Some(false) => format!("add `sourcedir {dir}` to chrony's configuration"),
                None => format!("make sure chrony's configuration has `sourcedir {dir}`"),
            };
            item(
                "chrony-sourcedir",
                CheckOutcome::Fail,
                format!("chrony's sources differ from gnomon's plan: {why}; {hint}"),
            )
        }
    }
}

/// Whether any of chrony's usual config files has a `sourcedir` line for
/// `dir`; `None` when none of them could be read.
fn chrony_reads_sourcedir(dir: &Path) -> Option<bool> {
    let mut files: Vec<std::path::PathBuf> = CHRONY_CONF_FILES
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    for d in CHRONY_CONF_DIRS {
        if let Ok(entries) = std::fs::read_dir(d) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    let mut read_any = false;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        read_any = true;
        if names_sourcedir(&text, dir) {
            return Some(true);
        }
    }
    read_any.then_some(false)
}

fn names_sourcedir(conf: &str, dir: &Path) -> bool {
    conf.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("sourcedir")
            && words
                .next()
                .is_some_and(|d| Path::new(d.trim_end_matches('/')) == dir)
    })
}

/// Whether the kernel enforces AppArmor (only to explain a failure).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// Whether gnomond may send samples to chrony's SOCK refclock: a datagram
/// `connect` needs the same write permission on the socket as a send, and
/// sends nothing to chrony.
fn refclock_item(path: &str) -> CheckItem {
    let name = "chrony-refclock";
    let connected =
        std::os::unix::net::UnixDatagram::unbound().and_then(|socket| socket.connect(path));
    match connected {
        Ok(()) => item(
            name,
            CheckOutcome::Pass,
            format!("gnomond can send NMEA samples to chrony's SOCK refclock {path}"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => item(
            name,
            CheckOutcome::Fail,
            format!(
                "gnomond may not send to chrony's SOCK refclock {path} ({}): chronyd creates it as root before it drops to _chrony; the gnomon package's chrony.service drop-in gives it group _chrony once chronyd has started: `systemctl restart chrony`",
                describe_owner(Path::new(path))
            ),
        ),
        Err(e) => item(
            name,
            CheckOutcome::Fail,
            format!(
                "cannot reach chrony's SOCK refclock {path}: {e}; chrony's configuration needs `refclock SOCK {path} refid NMEA` (deploy/chrony/gnomon-gps.conf) and chronyd must be running"
            ),
        ),
    }
}

/// `owner:group mode` of a file, for messages.
fn describe_owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "uid {} gid {} mode {:04o}",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
        Err(e) => e.to_string(),
    }
}

/// A kernel PPS device that is missing: chronyd would not start with a PPS
/// refclock on it, so the drop-in left the refclock out.
fn pps_device_item(device: &str) -> Option<CheckItem> {
    if Path::new(device).exists() {
        return None;
    }
    Some(item(
        "pps-device",
        CheckOutcome::Fail,
        format!(
            "{device} does not exist: chrony was started without its PPS refclock (the gnomon drop-in leaves out a PPS refclock whose device is missing, or chronyd would not start at all); load the pps-gpio overlay (`dtoverlay=pps-gpio,gpiopin=18` in /boot/firmware/config.txt), reboot, and check `ppstest {device}`"
        ),
    ))
}

fn gps_items(i: &CheckInputs<'_>, items: &mut Vec<CheckItem>) {
    let t = &i.config.thresholds;
    if let Some(gps) = &i.config.gps {
        items.push(refclock_item(&gps.sock_refclock));
        if gps.pps == PpsKind::Kernel {
            items.extend(pps_device_item(&gps.pps_device));
        }
    }
    let Some(gps) = i.gps else {
        return;
    };
    let observation = gps.status.as_ref().map(|s| &s.observation);
    let epoch_age = observation.and_then(|o| o.last_epoch_age);
    items.push(match (gps.connected, epoch_age) {
        (true, Some(age)) if age <= t.nmea_timeout => item(
            "gps-device",
            CheckOutcome::Pass,
            format!(
                "{} readable, last NMEA epoch {} ago",
                gps.device,
                human_duration(age)
            ),
        ),
        (true, _) => item(
            "gps-device",
            CheckOutcome::Fail,
            format!("{} is open but sends no NMEA epochs", gps.device),
        ),
        (false, _) => item(
            "gps-device",
            CheckOutcome::Fail,
            format!(
                "{} not readable: {}",
                gps.device,
                gps.last_error.as_deref().unwrap_or("not opened yet")
            ),
        ),
    });
    if i.config
        .gps
        .as_ref()
        .is_some_and(|g| g.pps != PpsKind::None)
    {
        let pulse_age = observation.and_then(|o| o.last_pulse_age);
        items.push(match pulse_age {
            Some(age) if age <= t.pps_timeout => item(
                "pps",
                CheckOutcome::Pass,
                format!(
                    "pulsing, last pulse {} ago{}",
                    human_duration(age),
                    observation
                        .and_then(|o| o.pps_jitter)
                        .map_or_else(String::new, |j| format!(", jitter {}", human_duration(j)))
                ),
            ),
            Some(age) => item(
                "pps",
                CheckOutcome::Fail,
                format!("no pulse for {}", human_duration(age)),
            ),
            None => item("pps", CheckOutcome::Fail, "no pulse seen since start"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refclock_permission_is_tested_without_sending() {
        use std::os::unix::{fs::PermissionsExt, net::UnixDatagram};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nmea.sock");
        let missing = refclock_item(&path.display().to_string());
        assert_eq!(missing.outcome, CheckOutcome::Fail);
        assert!(
            missing.detail.contains("refclock SOCK"),
            "{}",
            missing.detail
        );
        let chrony = UnixDatagram::bind(&path).unwrap();
        let ok = refclock_item(&path.display().to_string());
        assert_eq!(ok.outcome, CheckOutcome::Pass, "{}", ok.detail);
        // Nothing reached the refclock.
        chrony.set_nonblocking(true).unwrap();
        assert!(chrony.recv(&mut [0; 64]).is_err());
        if rustix::process::geteuid().is_root() {
            // root may write whatever the mode: the refusal as installed
            // (gnomond as user gnomon) is checked on the booted systems.
            return;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let refused = refclock_item(&path.display().to_string());
        assert_eq!(refused.outcome, CheckOutcome::Fail);
    }

    #[test]
    fn a_missing_pps_device_is_named() {
        assert!(pps_device_item("/").is_none());
        let missing = pps_device_item("/dev/pps-gnomon-test-missing").unwrap();
        assert_eq!(missing.outcome, CheckOutcome::Fail);
        assert!(missing.detail.contains("without its PPS refclock"));
    }

    #[test]
    fn sourcedir_lines_are_recognised() {
        let dir = Path::new("/run/gnomon/chrony");
        assert!(names_sourcedir(
            "pool x\nsourcedir /run/gnomon/chrony\n",
            dir
        ));
        assert!(names_sourcedir("sourcedir   /run/gnomon/chrony/", dir));
        assert!(!names_sourcedir("#sourcedir /run/gnomon/chrony", dir));
        assert!(!names_sourcedir("sourcedir /etc/chrony/sources.d", dir));
    }
}
