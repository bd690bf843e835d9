//! How the client commands print: `-w simple`, `-w table` or `-w json`.
//!
//! - **simple** is for people and shell pipelines, in etcdctl's manner: `OK` after a write, a
//!   key and its value on two lines after a read.
//! - **table** has an upper-case header row and columns padded to their widest cell, separated
//!   by three spaces (as kubectl prints), so that `column -t` or `awk` can read it too.
//! - **json** is the API's own JSON (docs/http-api.md), one document per command.
//!
//! A command produces an [`Output`]: the bytes for stdout (a value may not be UTF-8, and simple
//! output prints it raw), lines for stderr, and whether the command failed. Rendering is kept
//! apart from printing so that the tests can compare rendered strings.

use clap::ValueEnum;

/// The output format chosen with `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteOut {
    /// For people and pipelines, in etcdctl's manner.
    Simple,
    /// Columns under an upper-case header row.
    Table,
    /// The API's JSON.
    Json,
}

/// What a command prints and how it ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The bytes for stdout.
    pub stdout: Vec<u8>,
    /// Lines for stderr (errors and notes), without their line ends.
    pub stderr: Vec<String>,
    /// Whether the command failed (exit status 1) even though it printed something, as
    /// `cluster status` does when one endpoint does not answer.
    pub failed: bool,
}

impl Output {
    /// An output of one text, with nothing for stderr.
    pub fn text(text: String) -> Output {
        Output { stdout: text.into_bytes(), ..Output::default() }
    }
}

/// Renders a table: the header row in upper case, then the rows, every column padded to its
/// widest cell. Every row must have as many cells as the header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        assert_eq!(row.len(), header.len(), "a table row must have one cell per column");
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|title| title.to_uppercase()).collect();
    let mut rendered = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if column > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        rendered.push_str(line.trim_end());
        rendered.push('\n');
    }
    rendered
}

/// A value as one table cell: invalid UTF-8 replaced, control characters (a newline, a tab)
/// escaped so that the row stays one line.
pub fn cell(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .flat_map(|symbol| {
            let escaped: Vec<char> =
                if symbol.is_control() { symbol.escape_default().collect() } else { vec![symbol] };
            escaped
        })
        .collect()
}

/// Renders a value as pretty JSON followed by a line end.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising the API's types cannot fail: their maps have string keys and they hold no
    // floats that could be NaN.
    let mut text = serde_json::to_string_pretty(value)
        .unwrap_or_else(|error| format!("{{\"error\": \"cannot render JSON: {error}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_an_upper_case_header_and_padded_columns() {
        let rows = vec![
            vec!["alpha".to_string(), "1".to_string(), "x".to_string()],
            vec!["b".to_string(), "12345".to_string(), String::new()],
        ];
        assert_eq!(
            table(&["key", "revision", "value"], &rows),
            "KEY     REVISION   VALUE\n\
             alpha   1          x\n\
             b       12345\n"
        );
    }

    #[test]
    fn a_table_without_rows_is_its_header() {
        assert_eq!(table(&["key", "value"], &[]), "KEY   VALUE\n");
    }

    #[test]
    fn a_cell_stays_on_one_line() {
        assert_eq!(cell(b"two\nlines\tand tab"), "two\\nlines\\tand tab");
        assert_eq!(cell(&[b'a', 0xff, b'b']), "a\u{fffd}b");
    }
}
