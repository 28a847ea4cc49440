//! Reading a dataset file into the columns a spec asks for, keeping each row's 1-based line number
//! so later stages (numeric parsing, label lookup) can still name `file:line` in their errors.
//! CSV and TSV have a header row; TSV is read without quoting (its fields cannot contain tabs or
//! newlines, and text such as `"great"` must stay as written). JSONL holds one object per line;
//! blank lines are not rows and are skipped. A UTF-8 byte-order mark at the start is ignored.

use crate::error::{ColumnRef, DataError};
use ringtrain_spec::DataFormat;
use std::path::Path;

/// One cell of a requested column.
#[derive(Debug, Clone)]
pub(crate) enum Cell {
    /// CSV/TSV field (always text).
    Text(String),
    /// JSONL value, or a builtin number.
    Json(serde_json::Value),
}

/// One data row: its line in the file and the requested cells in request order.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub line: u64,
    pub cells: Vec<Cell>,
}

/// The requested columns of a dataset.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub file: String,
    pub columns: Vec<ColumnRef>,
    pub rows: Vec<Record>,
}

impl Table {
    /// A table whose columns are known by name only (JSON keys, bundled series), not by position
    /// in a header.
    pub fn with_named_columns(file: String, columns: &[&str], rows: Vec<Record>) -> Table {
        Table {
            file,
            columns: columns
                .iter()
                .map(|c| ColumnRef {
                    name: c.to_string(),
                    index: None,
                })
                .collect(),
            rows,
        }
    }

    /// Parses cell `col` of row `row` as a finite f32-representable number.
    pub fn number(&self, row: usize, col: usize) -> Result<f64, DataError> {
        let rec = &self.rows[row];
        let column = &self.columns[col];
        let (value, shown) = match &rec.cells[col] {
            Cell::Text(s) => (s.trim().parse::<f64>().ok(), s.clone()),
            Cell::Json(serde_json::Value::Number(n)) => (n.as_f64(), n.to_string()),
            Cell::Json(serde_json::Value::String(s)) => (s.trim().parse::<f64>().ok(), s.clone()),
            Cell::Json(other) => (None, other.to_string()),
        };
        match value {
            None => Err(DataError::NonNumeric {
                file: self.file.clone(),
                line: rec.line,
                column: column.clone(),
                cell: shown,
            }),
            Some(v) if !v.is_finite() || !(v as f32).is_finite() => Err(DataError::NonFinite {
                file: self.file.clone(),
                line: rec.line,
                column: column.clone(),
                cell: shown,
            }),
            Some(v) => Ok(v),
        }
    }

    /// Reads cell `col` of row `row` as text. JSON strings are text; JSON integers are accepted
    /// only where `allow_integer` (labels), as their decimal form.
    pub fn text(&self, row: usize, col: usize, allow_integer: bool) -> Result<String, DataError> {
        let rec = &self.rows[row];
        match &rec.cells[col] {
            Cell::Text(s) => Ok(s.clone()),
            Cell::Json(serde_json::Value::String(s)) => Ok(s.clone()),
            Cell::Json(serde_json::Value::Number(n)) if allow_integer && !n.is_f64() => {
                Ok(n.to_string())
            }
            Cell::Json(other) => Err(DataError::WrongType {
                file: self.file.clone(),
                line: rec.line,
                column: self.columns[col].clone(),
                expected: if allow_integer {
                    "a string or an integer"
                } else {
                    "a string"
                },
                found: other.to_string(),
            }),
        }
    }
}

/// Reads the named columns of the file at `path` (named `file` in errors) in `format`.
pub(crate) fn read_file(
    file: String,
    path: &Path,
    format: DataFormat,
    columns: &[&str],
) -> Result<Table, DataError> {
    let bytes = read_regular(&file, path, u64::MAX)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match format {
        DataFormat::Csv => read_delimited(file, bytes, b',', true, columns),
        DataFormat::Tsv => read_delimited(file, bytes, b'\t', false, columns),
        DataFormat::Jsonl => read_jsonl(file, bytes, columns),
        DataFormat::Text => Err(DataError::NotATable { file }),
    }
}

/// Reads a regular file of at most `max_bytes`: the type and size are checked on the open
/// handle before reading, and the read itself stops at the size seen then, so neither a device
/// nor a file growing underneath is read without bound.
pub(crate) fn read_regular(file: &str, path: &Path, max_bytes: u64) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let io = |e| DataError::Io {
        file: file.to_string(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(DataError::NotRegular {
            file: file.to_string(),
        });
    }
    if meta.len() > max_bytes {
        return Err(DataError::TooLarge {
            file: file.to_string(),
            bytes: meta.len(),
            limit: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(meta.len()).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

fn utf8<'a>(
    file: &str,
    line: u64,
    bytes: &'a [u8],
    column: Option<ColumnRef>,
) -> Result<&'a str, DataError> {
    std::str::from_utf8(bytes).map_err(|_| DataError::InvalidUtf8 {
        file: file.to_string(),
        line,
        column,
    })
}

fn read_delimited(
    file: String,
    bytes: &[u8],
    delimiter: u8,
    quoting: bool,
    columns: &[&str],
) -> Result<Table, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quoting(quoting)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let csv_err = |file: &str, e: csv::Error| DataError::Csv {
        file: file.to_string(),
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    };
    let header = match records.next() {
        None => return Err(DataError::EmptyFile { file }),
        Some(r) => r.map_err(|e| csv_err(&file, e))?,
    };
    let header_line = header.position().map_or(1, |p| p.line());
    let mut names = Vec::with_capacity(header.len());
    for field in header.iter() {
        names.push(utf8(&file, header_line, field, None)?.trim().to_string());
    }
    let mut picks = Vec::with_capacity(columns.len());
    for want in columns {
        let mut hits = names.iter().enumerate().filter(|(_, n)| n == want);
        let Some((first, _)) = hits.next() else {
            return Err(DataError::MissingColumn {
                file,
                line: header_line,
                column: want.to_string(),
                available: names,
            });
        };
        if let Some((second, _)) = hits.next() {
            return Err(DataError::DuplicateColumn {
                file,
                line: header_line,
                column: want.to_string(),
                first: first + 1,
                second: second + 1,
            });
        }
        picks.push(first);
    }
    let column_refs: Vec<ColumnRef> = picks
        .iter()
        .map(|&i| ColumnRef {
            name: names[i].clone(),
            index: Some(i + 1),
        })
        .collect();
    let mut rows = Vec::new();
    for rec in records {
        let rec = rec.map_err(|e| csv_err(&file, e))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != names.len() {
            return Err(DataError::Ragged {
                file,
                line,
                expected: names.len(),
                found: rec.len(),
            });
        }
        for (i, field) in rec.iter().enumerate() {
            let col = ColumnRef {
                name: names[i].clone(),
                index: Some(i + 1),
            };
            utf8(&file, line, field, Some(col))?;
        }
        let cells = picks
            .iter()
            .map(|&i| Cell::Text(String::from_utf8_lossy(&rec[i]).into_owned()))
            .collect();
        rows.push(Record { line, cells });
    }
    if rows.is_empty() {
        return Err(DataError::NoRows {
            file,
            line: header_line,
        });
    }
    Ok(Table {
        file,
        columns: column_refs,
        rows,
    })
}

fn read_jsonl(file: String, bytes: &[u8], columns: &[&str]) -> Result<Table, DataError> {
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = utf8(&file, line, raw, None)?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DataError::InvalidJson {
                file: file.clone(),
                line,
                message: e.to_string(),
            })?;
        let serde_json::Value::Object(obj) = value else {
            return Err(DataError::InvalidJson {
                file,
                line,
                message: format!("expected an object, found `{}`", truncate(text, 60)),
            });
        };
        let mut cells = Vec::with_capacity(columns.len());
        for want in columns {
            match obj.get(*want) {
                Some(v) => cells.push(Cell::Json(v.clone())),
                None => {
                    return Err(DataError::MissingColumn {
                        file,
                        line,
                        column: want.to_string(),
                        available: obj.keys().cloned().collect(),
                    });
                }
            }
        }
        rows.push(Record { line, cells });
    }
    if rows.is_empty() {
        return Err(DataError::EmptyFile { file });
    }
    Ok(Table::with_named_columns(file, columns, rows))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
