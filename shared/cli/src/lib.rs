//! What `orbhash`, `orbhash-edge` and `orbhash-ground` share on the terminal: [`Table`], the one
//! way their tables are laid out, [`error_chain`], the one way an error is written on a line, and
//! [`parse_duration`] and [`parse_probability`], the one way a duration and a probability are
//! written on the command line.
//! Machine-readable output is each command's `--json`, never a table.
//!
//! A few dozen lines, so no table crate: the board binary has a size budget, and a table crate
//! brings terminal detection and Unicode width tables with it.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// An error and every source under it on one line, `a: b: c`, exactly as anyhow's `{:#}` prints
/// what the binaries return: for what is logged rather than returned (per-tile reports, a
/// listener's per-connection errors). Every orbhash error names only its own cause, so nothing
/// repeats.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A command-line duration: a number and a unit, `500ms`, `2s`, `1.5min`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|at| text.split_at(at))
        .ok_or_else(|| format!("{text:?}: give a unit, e.g. 2s or 500ms"))?;
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: not a duration"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: units are ms, s, min, h")),
    };
    if !(0.0..1e9).contains(&seconds) {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A command-line probability, from 0 to 1.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{text:?}: give a probability from 0 to 1, e.g. 0.05"
        )),
    }
}

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// An aligned text table: a header line, then one line per row, columns two spaces apart, each
/// line indented by two. Text columns align left, numbers right ([`Table::new`] guesses from the
/// header, [`Table::align`] says it).
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names; the first column aligns left, the others right.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        let header: Vec<String> = header.into_iter().map(Into::into).collect();
        let align = (0..header.len())
            .map(|column| {
                if column == 0 {
                    Align::Left
                } else {
                    Align::Right
                }
            })
            .collect();
        Self {
            header,
            align,
            rows: Vec::new(),
        }
    }

    /// Sets how each column aligns, in column order; columns not named keep theirs.
    pub fn align(mut self, align: &[Align]) -> Self {
        for (slot, value) in self.align.iter_mut().zip(align) {
            *slot = *value;
        }
        self
    }

    /// Adds a row; a short row is padded with empty cells, extra cells are kept as extra columns.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn widths(&self) -> Vec<usize> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::from(" ");
            for (column, width) in widths.iter().enumerate() {
                let cell = line.get(column).map_or("", String::as_str);
                let pad = width.saturating_sub(cell.chars().count());
                text.push(' ');
                match self.align.get(column).copied().unwrap_or(Align::Right) {
                    Align::Left => {
                        text.push_str(cell);
                        text.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        text.extend(std::iter::repeat_n(' ', pad));
                        text.push_str(cell);
                    }
                }
                text.push(' ');
            }
            writeln!(f, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_in_order() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io)
            .context("pass.bin")
            .context("cannot ingest");
        assert_eq!(
            error_chain(error.as_ref()),
            "cannot ingest: pass.bin: no such file"
        );
        assert_eq!(error_chain(error.as_ref()), format!("{error:#}"));
    }

    #[test]
    fn columns_line_up_by_their_widest_cell() {
        let mut table = Table::new(["model", "ms/tile"]);
        table.row(["s2-int8", "12.5"]).row(["f32", "3"]);
        assert_eq!(
            table.to_string(),
            "  model    ms/tile\n  s2-int8     12.5\n  f32            3\n"
        );
    }

    #[test]
    fn alignment_can_be_chosen_and_ragged_rows_pad() {
        let mut table = Table::new(["n", "name"]).align(&[Align::Right, Align::Left]);
        table.row(["10", "water", "extra"]).row(["7"]);
        assert_eq!(table.to_string(), "   n  name\n  10  water  extra\n   7\n");
    }
}
