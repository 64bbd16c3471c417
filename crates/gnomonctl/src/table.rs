//! Aligned text tables for gnomonctl's human output: column widths from the
//! widest cell, counted in characters, with colour applied around the text
//! so escape codes never disturb the alignment.

use crate::render::{Paint, Style};

/// How a column's cells are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// One cell: plain text and how to paint it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    text: String,
    paint: Paint,
}

impl Cell {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            paint: Paint::Plain,
        }
    }

    pub(crate) fn painted(text: impl Into<String>, paint: Paint) -> Self {
        Self {
            text: text.into(),
            paint,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::new(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::new(text)
    }
}

#[derive(Debug, Clone)]
struct Column {
    header: String,
    align: Align,
}

/// A table with a header row, a `=` rule under it (as chronyc draws one),
/// and rows of cells.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    /// Spaces between columns.
    gap: usize,
}

impl Table {
    pub(crate) fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(h, a)| Column {
                    header: (*h).to_owned(),
                    align: *a,
                })
                .collect(),
            rows: Vec::new(),
            gap: 2,
        }
    }

    /// Columns separated by `gap` spaces instead of two.
    pub(crate) fn gap(mut self, gap: usize) -> Self {
        self.gap = gap;
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        let mut cells = cells;
        cells.resize(self.columns.len(), Cell::new(""));
        self.rows.push(cells);
    }

    /// The table as lines, each ending in a newline; no trailing spaces.
    pub(crate) fn render(&self, style: Style) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|cell| width(&cell.text))
                    .chain(std::iter::once(width(&c.header)))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<Cell> = self
            .columns
            .iter()
            .map(|c| Cell::painted(c.header.clone(), Paint::Heading))
            .collect();
        self.line(&mut out, &header, &widths, style);
        let total = widths.iter().sum::<usize>() + self.gap * widths.len().saturating_sub(1);
        out.push_str(&"=".repeat(total));
        out.push('\n');
        for row in &self.rows {
            self.line(&mut out, row, &widths, style);
        }
        out
    }

    fn line(&self, out: &mut String, cells: &[Cell], widths: &[usize], style: Style) {
        let mut line = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, ((cell, col), w)) in cells.iter().zip(&self.columns).zip(widths).enumerate() {
            if i > 0 {
                line.push_str(&" ".repeat(self.gap));
            }
            let pad = " ".repeat(w.saturating_sub(width(&cell.text)));
            let text = style.paint(&cell.text, cell.paint);
            match col.align {
                Align::Left if i == last => line.push_str(&text),
                Align::Left => {
                    line.push_str(&text);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(&text);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Display width: one column per character (gnomonctl prints no wide
/// characters).
pub(crate) fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = Table::new(&[("Name", Align::Left), ("N", Align::Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer name".into(), "12345".into()]);
        let out = t.render(Style::plain());
        assert_eq!(
            out,
            "Name             N\n\
             ==================\n\
             a                1\n\
             longer name  12345\n"
        );
    }

    #[test]
    fn colour_does_not_move_columns() {
        let mut t = Table::new(&[("S", Align::Left), ("Value", Align::Right)]);
        t.row(vec![Cell::painted("FAIL", Paint::Bad), "1".into()]);
        t.row(vec!["ok".into(), "22".into()]);
        let plain = t.render(Style::plain());
        let coloured = t.render(Style::coloured());
        assert!(coloured.contains("\x1b[31m"), "{coloured:?}");
        assert_eq!(crate::render::strip_ansi(&coloured), plain);
    }

    #[test]
    fn short_rows_are_padded_and_lines_have_no_trailing_space() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]).gap(1);
        t.row(vec!["x".into()]);
        t.row(vec!["y".into(), "z".into()]);
        for line in t.render(Style::plain()).lines() {
            assert_eq!(line, line.trim_end());
        }
        assert!(t.render(Style::plain()).ends_with("y z\n"));
    }
}
