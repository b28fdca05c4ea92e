//! Aligned text tables for the terminal (run summary, run status, snapshot status), drawn by
//! comfy-table: no borders, columns two spaces apart, no trailing blanks, readable without
//! colour; colour only where the caller asks for it (it decides from NO_COLOR and the TTY).

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table as Inner, TableStyle};

pub use comfy_table::Color;

pub struct Table {
    inner: Inner,
    color: bool,
}

impl Table {
    /// A table with these column heads; `right` lists the columns aligned right (numbers,
    /// durations). `color` turns on the colours given to `row_colored`.
    pub fn new(head: &[&str], right: &[usize], color: bool) -> Table {
        let mut inner = Inner::new();
        // No border or separator characters at all: the columns are set apart by padding.
        inner
            .load_style(TableStyle::new())
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(head.iter().map(|h| Cell::new(*h)));
        if color {
            // The caller has checked NO_COLOR and that stdout is a terminal.
            inner.enforce_styling();
            // The status word in colour, not the blanks around it.
            inner.style_text_only();
        } else {
            inner.force_no_tty();
        }
        for (k, column) in inner.column_iter_mut().enumerate() {
            // Two spaces between columns: one after each, one before each but the first.
            column.set_padding((u16::from(k > 0), 1));
            if right.contains(&k) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        Table { inner, color }
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) -> &mut Table {
        self.inner.add_row(cells);
        self
    }

    /// A row whose cell `colored.0` is drawn in colour `colored.1` (when colour is on).
    pub fn row_colored(
        &mut self,
        cells: impl IntoIterator<Item = String>,
        colored: Option<(usize, Color)>,
    ) -> &mut Table {
        let cells = cells.into_iter().enumerate().map(|(k, c)| match colored {
            Some((at, color)) if at == k && self.color => Cell::new(c).fg(color),
            _ => Cell::new(c),
        });
        self.inner.add_row(cells.collect::<Vec<_>>());
        self
    }

    /// The lines, each ending in a newline.
    pub fn render(&self) -> String {
        self.inner
            .lines()
            .map(|l| l.trim_end().to_string() + "\n")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_two_spaces_apart_and_numbers_align_right() {
        let mut t = Table::new(&["STEP", "NODE", "DURATION"], &[2], false);
        t.row(["verify".to_string(), "local".into(), "0.12s".into()]);
        t.row_colored(
            ["restore".to_string(), "cp1".into(), "12.50s".into()],
            Some((1, Color::Red)),
        );
        assert_eq!(
            t.render(),
            "STEP     NODE   DURATION\nverify   local     0.12s\nrestore  cp1      12.50s\n"
        );
    }

    #[test]
    fn colour_is_drawn_only_when_asked_for() {
        let mut t = Table::new(&["A", "B"], &[], true);
        t.row_colored(["x".to_string(), "ok".into()], Some((1, Color::Green)));
        let out = t.render();
        assert!(out.contains("\u{1b}["), "{out:?}");
        assert!(out.starts_with("A  B\nx  "), "{out:?}");
    }
}
