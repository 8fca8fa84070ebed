//! The per-connection cache of `cursor.description`s.

use std::sync::Arc;

use crate::dbapi::Column;

/// Descriptions kept per connection.
pub(super) const DESCRIPTIONS: usize = 16;

/// Recently built `cursor.description`s by SQL text, so a repeated query
/// shares one instead of allocating every column name again. An entry is
/// used only while the statement still has exactly those column names (a
/// schema change can change what `SELECT *` returns). Statements longer than
/// [`super::CACHED_SQL_MAX`] are not kept (their text, and column names
/// made of their expressions, could be megabytes).
#[derive(Default)]
pub(super) struct Descriptions {
    entries: Vec<(Box<str>, Arc<[Column]>)>,
    /// The entry replaced next once `entries` is full.
    next: usize,
}

impl Descriptions {
    /// The description of `stmt`, prepared from `sql`: the cached one if the
    /// columns are unchanged, else a new one (cached if `sql` is short).
    pub(super) fn get(&mut self, sql: &str, stmt: &rusqlite::Statement<'_>) -> Arc<[Column]> {
        let same = |d: &[Column]| {
            d.len() == stmt.column_count()
                && d.iter().zip(stmt.column_names()).all(|(c, n)| c.name == n)
        };
        let slot = self.entries.iter().position(|(s, _)| &**s == sql);
        if let Some(i) = slot {
            if same(&self.entries[i].1) {
                return Arc::clone(&self.entries[i].1);
            }
        }
        let d: Arc<[Column]> = stmt
            .column_names()
            .map(|n| Column {
                name: n.to_owned(),
                type_code: None,
            })
            .collect();
        if sql.len() > super::CACHED_SQL_MAX {
            return d;
        }
        let entry = (Box::from(sql), Arc::clone(&d));
        match slot {
            Some(i) => self.entries[i] = entry,
            None if self.entries.len() < DESCRIPTIONS => self.entries.push(entry),
            None => {
                self.entries[self.next] = entry;
                self.next = (self.next + 1) % DESCRIPTIONS;
            }
        }
        d
    }

    /// The total length of the SQL texts kept (for tests of the cap).
    #[cfg(test)]
    pub(super) fn sql_bytes(&self) -> usize {
        self.entries.iter().map(|(s, _)| s.len()).sum()
    }
}
