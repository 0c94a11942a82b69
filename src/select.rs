//! Object selection: `db.table` glob patterns, used by the sources (which
//! tables to decode) and the stage (which events to keep).

/// One `db.table` pattern; `*` matches any run of characters, `?` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    db: String,
    table: String,
}

impl TablePattern {
    /// Parses `db.table`; the first `.` separates the two globs.
    pub fn parse(text: &str) -> Result<TablePattern, String> {
        match text.split_once('.') {
            Some((db, table)) if !db.is_empty() && !table.is_empty() => Ok(TablePattern {
                db: db.to_string(),
                table: table.to_string(),
            }),
            _ => Err(format!(
                "{text:?} is not a db.table pattern: write e.g. \"shop.orders\", \"shop.*\" or \"*.audit_?\""
            )),
        }
    }

    pub fn matches(&self, db: &str, table: &str) -> bool {
        glob(self.db.as_bytes(), db.as_bytes()) && glob(self.table.as_bytes(), table.as_bytes())
    }

    pub fn matches_db(&self, db: &str) -> bool {
        glob(self.db.as_bytes(), db.as_bytes())
    }
}

/// Include/exclude selection of tables.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    include: Vec<TablePattern>,
    exclude: Vec<TablePattern>,
}

impl TableFilter {
    /// Builds from validated pattern lists (see `Config::validate`).
    pub fn new(include: &[String], exclude: &[String]) -> Result<TableFilter, String> {
        let parse = |v: &[String]| -> Result<Vec<TablePattern>, String> {
            v.iter().map(|p| TablePattern::parse(p)).collect()
        };
        Ok(TableFilter {
            include: parse(include)?,
            exclude: parse(exclude)?,
        })
    }

    /// True when rows of `db.table` are captured.
    pub fn selects(&self, db: &str, table: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(db, table)))
            && !self.exclude.iter().any(|p| p.matches(db, table))
    }

    /// Databases the include patterns name literally (no wildcard).
    pub fn literal_dbs(&self) -> Vec<&str> {
        let mut dbs: Vec<&str> = self
            .include
            .iter()
            .map(|p| p.db.as_str())
            .filter(|d| !d.contains(['*', '?']))
            .collect();
        dbs.sort_unstable();
        dbs.dedup();
        dbs
    }

    /// True when some table of `db` may be captured (for DDL that names only
    /// a database). An exclude pattern drops the database only if it excludes
    /// every table (`db.*`).
    pub fn selects_db(&self, db: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches_db(db)))
            && !self
                .exclude
                .iter()
                .any(|p| p.table == "*" && p.matches_db(db))
    }
}

/// Glob match with `*` and `?`, iterative with single backtracking point.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"shop", b"shop"));
        assert!(!glob(b"shop", b"shops"));
        assert!(glob(b"sh*p", b"shop"));
        assert!(glob(b"*_log", b"audit_log"));
        assert!(!glob(b"*_log", b"audit_logs"));
        assert!(glob(b"a?c*", b"abcdef"));
        assert!(glob(b"*a*b*c", b"xxaxxbxxc"));
        assert!(!glob(b"*a*b*c", b"xxaxxcxxb"));
    }

    #[test]
    fn include_then_exclude() {
        let f = TableFilter::new(
            &["shop.*".into(), "crm.customers".into()],
            &["shop.tmp_*".into()],
        )
        .unwrap();
        assert!(f.selects("shop", "orders"));
        assert!(!f.selects("shop", "tmp_1"));
        assert!(f.selects("crm", "customers"));
        assert!(!f.selects("crm", "leads"));
        assert!(f.selects_db("shop"));
        assert!(f.selects_db("crm"));
        assert!(!f.selects_db("mysql"));
        let all = TableFilter::new(&[], &["mysql.*".into()]).unwrap();
        assert!(all.selects("x", "y"));
        assert!(!all.selects("mysql", "user"));
        assert!(!all.selects_db("mysql"));
    }

    #[test]
    fn rejects_patterns_without_a_table_part() {
        assert!(TablePattern::parse("shop").is_err());
        assert!(TablePattern::parse("shop.").is_err());
        assert!(TablePattern::parse(".x").is_err());
    }
}
