//! Real series bundled through the `augurs-testing` crate, so the forecasting examples run right
//! after clone without a download. A spec selects one with `path = "builtin:NAME"`; the format is
//! ignored. Errors name rows as if the series were a CSV file with a header on line 1, so the first
//! observation is "line 2".
//!
//! - `air-passengers`: Box & Jenkins monthly international airline passengers (thousands),
//!   January 1949 – December 1960, 144 rows. Columns `passengers` and `month` (1–12, the calendar
//!   month of the row, a seasonal feature).
//! - `vic-elec`: hourly electricity demand of Victoria, Australia, from 2012-01-01 00:00, 3,600
//!   rows. Columns `y` (demand, the crate's CSV column name) and `hour` (0–23, the hour of the
//!   row's `ds` timestamp; the bundled file is consecutive hours starting at midnight).

use crate::error::DataError;
use crate::table::{Cell, Record, Table};

/// A dataset bundled with the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Monthly airline passengers 1949–1960 (144 rows).
    AirPassengers,
    /// Hourly electricity demand, Victoria AU (3,600 rows).
    VicElec,
}

impl Builtin {
    /// Every bundled dataset.
    pub const ALL: [Builtin; 2] = [Builtin::AirPassengers, Builtin::VicElec];

    /// The name used after `builtin:`.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::AirPassengers => "air-passengers",
            Builtin::VicElec => "vic-elec",
        }
    }

    /// Looks a dataset up by the name after `builtin:`.
    ///
    /// # Errors
    /// [`DataError::UnknownBuiltin`] listing the available names.
    pub fn from_name(name: &str) -> Result<Builtin, DataError> {
        Builtin::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| DataError::UnknownBuiltin {
                name: name.to_string(),
                available: Builtin::ALL.iter().map(|b| b.name().to_string()).collect(),
            })
    }

    /// Column names, in order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Builtin::AirPassengers => &["passengers", "month"],
            Builtin::VicElec => &["y", "hour"],
        }
    }

    /// The columns as `(name, values)` pairs, one value per row.
    pub fn data(self) -> Vec<(&'static str, Vec<f64>)> {
        match self {
            Builtin::AirPassengers => {
                let y = augurs_testing::data::AIR_PASSENGERS.to_vec();
                // The series starts in January 1949.
                let month = (0..y.len()).map(|i| (i % 12 + 1) as f64).collect();
                vec![("passengers", y), ("month", month)]
            }
            Builtin::VicElec => {
                let y = augurs_testing::data::VIC_ELEC.clone();
                let hour = (0..y.len()).map(|i| (i % 24) as f64).collect();
                vec![("y", y), ("hour", hour)]
            }
        }
    }

    pub(crate) fn table(self, columns: &[&str]) -> Result<Table, DataError> {
        let file = format!("builtin:{}", self.name());
        let data = self.data();
        let mut picked = Vec::with_capacity(columns.len());
        for want in columns {
            match data.iter().find(|(n, _)| n == want) {
                Some((_, v)) => picked.push(v),
                None => {
                    return Err(DataError::MissingColumn {
                        file,
                        line: 1,
                        column: want.to_string(),
                        available: self.columns().iter().map(|c| c.to_string()).collect(),
                    });
                }
            }
        }
        let rows_n = data.first().map_or(0, |(_, v)| v.len());
        let rows = (0..rows_n)
            .map(|r| Record {
                line: r as u64 + 2,
                cells: picked
                    .iter()
                    .map(|col| Cell::Json(serde_json::Value::from(col[r])))
                    .collect(),
            })
            .collect();
        Ok(Table::with_named_columns(file, columns, rows))
    }
}
