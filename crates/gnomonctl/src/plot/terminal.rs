//! `gnomonctl plot` in the terminal: one character cell per point, a glyph
//! (and, on a colour terminal, a colour) per series at its mean, the zero
//! line, a state strip under the time axis and a legend with each series'
//! latest value.

use gnomon_core::{
    engine::EngineState,
    ipc::PlotReport,
    samples::{PlotSeries, SeriesKind},
    time::WallTime,
};

use super::scale::{time_position, time_ticks, window_words, YScale};
use crate::render::{self, Style};

/// Plot glyphs, in series order after PPS/NMEA/chrony's own.
const SOURCE_GLYPHS: [char; 9] = ['o', 'x', '#', '%', '@', '&', '=', '^', '$'];
/// ANSI colours (SGR foreground codes), in the same order.
const SOURCE_COLOURS: [&str; 9] = ["35", "33", "36", "94", "95", "93", "96", "91", "92"];

/// A series' glyph and colour.
pub(crate) fn mark(series: &[PlotSeries], index: usize) -> (char, &'static str) {
    let Some(s) = series.get(index) else {
        return ('?', "0");
    };
    match s.kind {
        SeriesKind::Pps => ('*', "34"),
        SeriesKind::Nmea => ('+', "31"),
        SeriesKind::Chrony => ('~', "32"),
        SeriesKind::Source => {
            let nth = super::source_rank(series, index);
            (
                SOURCE_GLYPHS
                    .get(nth % SOURCE_GLYPHS.len())
                    .copied()
                    .unwrap_or('o'),
                SOURCE_COLOURS
                    .get(nth % SOURCE_COLOURS.len())
                    .copied()
                    .unwrap_or("0"),
            )
        }
    }
}

/// One letter per state for the strip under the time axis.
pub(crate) fn state_letter(state: EngineState) -> char {
    match state {
        EngineState::Primary => 'P',
        EngineState::Starting => 's',
        EngineState::Acquiring => 'a',
        EngineState::Recovering => 'r',
        EngineState::Degraded => 'd',
        EngineState::Fallback => 'F',
        EngineState::Frozen => 'Z',
        EngineState::NoReference => 'N',
    }
}

#[derive(Clone, Copy)]
struct Cell {
    ch: char,
    colour: Option<&'static str>,
}

const EMPTY: Cell = Cell {
    ch: ' ',
    colour: None,
};

struct Canvas {
    cols: usize,
    rows: usize,
    cells: Vec<Cell>,
}

impl Canvas {
    fn new(cols: usize, rows: usize) -> Self {
        Self {
            cols,
            rows,
            cells: vec![EMPTY; cols * rows],
        }
    }

    fn get(&self, col: usize, row: usize) -> Option<Cell> {
        (col < self.cols && row < self.rows)
            .then(|| self.cells.get(row * self.cols + col).copied())
            .flatten()
    }

    fn set(&mut self, col: usize, row: usize, cell: Cell) {
        if col < self.cols && row < self.rows {
            if let Some(c) = self.cells.get_mut(row * self.cols + col) {
                *c = cell;
            }
        }
    }
}

fn paint(style: Style, text: &str, colour: Option<&str>) -> String {
    match colour {
        Some(code) if style.is_coloured() && !text.trim().is_empty() => {
            format!("\x1b[{code}m{text}\x1b[0m")
        }
        _ => text.to_owned(),
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn index(fraction: f64, count: usize) -> usize {
    ((fraction * (count.saturating_sub(1)) as f64).round() as usize).min(count.saturating_sub(1))
}

/// The plot, `width` columns wide in all and `height` rows of plot area.
pub(crate) fn render(
    report: &PlotReport,
    y: &YScale,
    width: usize,
    height: usize,
    style: Style,
) -> String {
    let data = &report.data;
    let mut out = String::new();
    out.push_str(&style.paint(
        &format!(
            "gnomon on {} ({}): offsets, last {}",
            report.host,
            report.role,
            window_words(data.to.since(data.from).abs())
        ),
        render::Paint::Heading,
    ));
    out.push('\n');
    out.push_str(&format!(
        "{} scale, reference − system clock; {} samples every {}, {}/column; UTC\n",
        if y.is_log() {
            "symmetric log"
        } else {
            "linear"
        },
        data.samples,
        gnomon_core::time::human_duration(report.interval),
        gnomon_core::time::human_duration(data.bucket),
    ));
    if data.samples == 0 {
        out.push_str(&no_samples(report));
        return out;
    }

    let ticks = y.ticks(height / 3);
    let label_w = ticks
        .iter()
        .map(|t| t.label.chars().count())
        .max()
        .unwrap_or(1);
    let cols = width.saturating_sub(label_w + 2).max(20);
    let rows = height.max(5);
    let row_of = |f: f64| index(1.0 - f, rows);
    let col_of = |t: WallTime| index(time_position(t, data.from, data.to), cols);

    let mut canvas = Canvas::new(cols, rows);
    let zero_row = row_of(y.position(0.0));
    for c in 0..cols {
        canvas.set(
            c,
            zero_row,
            Cell {
                ch: '─',
                colour: Some("90"),
            },
        );
    }
    // Sources first, PPS last: the primary's trace stays on top.
    let mut order: Vec<usize> = (0..data.series.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(data.series.get(i).map(|s| s.kind)));
    for i in order {
        let Some(series) = data.series.get(i) else {
            continue;
        };
        let (glyph, colour) = mark(&data.series, i);
        for p in &series.points {
            let c = col_of(p.at);
            // The mean only: the spread of a dozen series in dots would
            // bury the traces (the SVG shades it instead).
            #[allow(clippy::cast_precision_loss)]
            let mid = row_of(y.position(p.mean.as_nanos() as f64));
            canvas.set(
                c,
                mid,
                Cell {
                    ch: glyph,
                    colour: Some(colour),
                },
            );
        }
    }

    let tick_rows: Vec<(usize, &str)> = ticks
        .iter()
        .map(|t| (row_of(t.at), t.label.as_str()))
        .collect();
    for r in 0..rows {
        let label = tick_rows.iter().find(|(row, _)| *row == r).map(|(_, l)| *l);
        let axis = match label {
            Some(_) if r == zero_row => '┼',
            Some(_) => '┤',
            None => '│',
        };
        out.push_str(&format!("{:>label_w$} {axis}", label.unwrap_or("")));
        for c in 0..cols {
            let cell = canvas.get(c, r).unwrap_or(EMPTY);
            out.push_str(&paint(style, &cell.ch.to_string(), cell.colour));
        }
        out.push('\n');
    }

    // The time axis: └ then ┬ at each tick, labels below.
    let times = time_ticks(data.from, data.to, (cols / 14).max(2));
    let mut axis: Vec<char> = vec!['─'; cols];
    let mut labels: Vec<char> = vec![' '; cols];
    let mut free_from = 0_usize;
    for (t, label) in &times {
        let c = col_of(*t);
        if let Some(a) = axis.get_mut(c) {
            *a = '┬';
        }
        // A label starts at its tick, or ends at the edge if it would overflow.
        let len = label.chars().count();
        let start = c.min(cols.saturating_sub(len));
        if start >= free_from {
            for (k, ch) in label.chars().enumerate() {
                if let Some(slot) = labels.get_mut(start + k) {
                    *slot = ch;
                }
            }
            free_from = start + len + 1;
        }
    }
    out.push_str(&format!(
        "{:>label_w$} └{}\n",
        "",
        axis.iter().collect::<String>()
    ));
    out.push_str(&format!(
        "{:>label_w$}  {}\n",
        "",
        labels.iter().collect::<String>().trim_end()
    ));

    // The state strip.
    let mut strip = String::new();
    let span = data.to.since(data.from).abs();
    for c in 0..cols {
        #[allow(clippy::cast_precision_loss)]
        let f = c as f64 / cols.saturating_sub(1).max(1) as f64;
        let t = data.from.plus(span.mul_f64(f));
        match data.states.iter().find(|s| s.from <= t && t <= s.to) {
            Some(span) => strip.push_str(&style.paint(
                &state_letter(span.state).to_string(),
                render::state_paint(span.state),
            )),
            None => strip.push(' '),
        }
    }
    out.push_str(&format!("{:>label_w$}  {strip}\n", "state"));

    // Legends: series with their latest value, then the states seen.
    let mut legend: Vec<String> = Vec::new();
    for (i, s) in data.series.iter().enumerate() {
        let (glyph, colour) = mark(&data.series, i);
        let last = s
            .points
            .last()
            .map(|p| render::offset(p.mean))
            .unwrap_or_default();
        legend.push(format!(
            "{} {} {last}",
            paint(style, &glyph.to_string(), Some(colour)),
            s.name
        ));
    }
    out.push_str(&wrap(&legend, width, "  "));
    let mut seen: Vec<EngineState> = data.states.iter().map(|s| s.state).collect();
    seen.sort_by_key(|s| gnomon_core::samples::state_severity(*s));
    seen.dedup();
    let states: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                style.paint(&state_letter(*s).to_string(), render::state_paint(*s)),
                s.name()
            )
        })
        .collect();
    out.push_str(&wrap(&states, width, "  state: "));
    out
}

/// Items on lines no wider than `width` (ANSI codes not counted).
fn wrap(items: &[String], width: usize, first_prefix: &str) -> String {
    let mut out = String::new();
    let mut line = first_prefix.to_owned();
    let mut line_w = first_prefix.chars().count();
    let indent = " ".repeat(first_prefix.chars().count());
    for item in items {
        let w = render::strip_ansi(item).chars().count();
        if line_w > indent.len() && line_w + w + 3 > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
            line_w = indent.len();
        }
        line.push_str(item);
        line.push_str("   ");
        line_w += w + 3;
    }
    if line_w > indent.len() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Why nothing is drawn.
pub(crate) fn no_samples(report: &PlotReport) -> String {
    match report.oldest {
        Some(oldest) => format!(
            "No samples in this window. gnomond holds {} samples, the oldest from {}.\n",
            report.kept,
            render::time(oldest)
        ),
        None => format!(
            "No samples yet: gnomond takes one every {} ([history] interval).\n",
            gnomon_core::time::human_duration(report.interval)
        ),
    }
}
