//! `gnomonctl plot`: asks gnomond for a window of its offset history,
//! reduced to one point per terminal column or SVG pixel or two, and draws
//! it in the terminal or writes it as an SVG file.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use gnomon_core::ipc::{PlotReport, Request, Response};

use crate::{
    commands::{self, Context},
    exit,
};

pub(crate) mod scale;
pub(crate) mod svg;
pub(crate) mod terminal;

use scale::{ScaleChoice, YScale};

/// Points per series in an SVG (its plot area is 854 px wide).
const SVG_POINTS: usize = 600;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PlotArgs {
    /// How far back: a duration such as 30m, 6h, 24h, 7d.
    #[arg(long, value_name = "TIME", default_value = "24h", value_parser = parse_since)]
    since: Duration,
    /// Write the plot as an SVG file instead of drawing it here.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// The offset axis: auto (linear unless a few offsets dwarf the rest),
    /// linear, or log (symmetric logarithmic).
    #[arg(long, value_enum, value_name = "SCALE", default_value_t = ScaleChoice::Auto)]
    scale: ScaleChoice,
    /// Terminal columns to use [default: $COLUMNS, else 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(40..))]
    width: Option<u16>,
    /// Rows of the plot area in the terminal.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(5..=200))]
    height: u16,
}

/// Which chrony source (0, 1, ...) series `index` is, for its glyph and
/// colour: the same source looks the same in the terminal and the SVG.
pub(crate) fn source_rank(series: &[gnomon_core::samples::PlotSeries], index: usize) -> usize {
    series
        .iter()
        .take(index)
        .filter(|s| s.kind == gnomon_core::samples::SeriesKind::Source)
        .count()
}

fn parse_since(s: &str) -> Result<Duration, String> {
    let d = gnomon_core::config::parse_duration(s)?;
    if d < Duration::from_secs(10) {
        return Err(format!("\"{s}\" is too short: at least 10s"));
    }
    Ok(d)
}

pub(crate) fn run(ctx: &Context, args: &PlotArgs) -> u8 {
    let width = args.width.map_or_else(terminal_width, usize::from);
    let points = if args.svg.is_some() {
        SVG_POINTS
    } else {
        width.saturating_sub(12).max(20)
    };
    let request = Request::Plot {
        since: args.since,
        points,
    };
    let name = request.name();
    let report = match crate::client::call(&ctx.socket, request, ctx.request_timeout()) {
        Ok(Response::Plot(r)) => r,
        Ok(Response::Error(e)) => return commands::refused(name, &e),
        Ok(other) => return commands::unexpected(name, &other),
        Err(e) => return commands::client_failed(name, &e),
    };
    if ctx.json {
        return match serde_json::to_string_pretty(&*report) {
            Ok(json) => commands::emit(&format!("{json}\n")),
            Err(e) => {
                commands::say(&format!(
                    "gnomonctl plot: cannot encode the report as JSON: {e}"
                ));
                exit::SOFTWARE
            }
        };
    }
    let y = YScale::choose(&report.data, args.scale);
    match &args.svg {
        Some(path) => match write_svg(path, &svg::render(&report, &y)) {
            Ok(()) => commands::emit(&summary(path, &report)),
            Err(e) => {
                commands::say(&format!("gnomonctl plot: {e}"));
                exit::IOERR
            }
        },
        None => commands::emit(&terminal::render(
            &report,
            &y,
            width,
            usize::from(args.height),
            ctx.style,
        )),
    }
}

fn summary(path: &Path, report: &PlotReport) -> String {
    format!(
        "wrote {}: {} samples, {} series, {} state changes\n",
        path.display(),
        report.data.samples,
        report.data.series.len(),
        report.data.states.len().saturating_sub(1)
    )
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= 40)
        .unwrap_or(100)
}

/// Writes `text` to `path` through a temporary file beside it, so a reader
/// (a web page, an image viewer) never sees half a plot.
fn write_svg(path: &Path, text: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
