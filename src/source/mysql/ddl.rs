//! Classifies statements seen in QUERY events: which kind of DDL, which
//! table, or not a schema change at all.
//!
//! A lexical classifier, not a SQL parser: it reads the leading keywords and
//! the first object name, which is what DDL policy and table selection need.

use crate::event::DdlKind;

/// The value of a MySQL string literal as written (`'it''s'`, `'a\\b'`):
/// quotes doubled or backslashed, backslash escapes. `None` if `quoted`
/// isn't one literal.
pub fn string_literal(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            // '' stands for one quote.
            '\'' => match chars.next() {
                Some('\'') => out.push('\''),
                _ => return None,
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\u{1a}'),
                Some(other) => out.push(other),
                None => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// What a QUERY event's statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Transaction control: BEGIN, COMMIT, ROLLBACK, SAVEPOINT...
    Begin,
    Commit,
    Rollback,
    /// A schema change; `db`/`table` as named in the statement (unquoted).
    Ddl {
        kind: DdlKind,
        db: Option<String>,
        table: Option<String>,
    },
    /// DML logged as a statement (binlog_format is not ROW for it), with
    /// the tables it writes as `[db.]table` when the statement's form makes
    /// them certain (INSERT/REPLACE/LOAD DATA into one table, single-table
    /// UPDATE/DELETE); `None` when it doesn't (multi-table forms).
    Dml {
        tables: Option<Vec<(Option<String>, String)>>,
    },
    /// Anything else (GRANT, FLUSH, SET, account management...): no data change.
    Other,
}

pub fn classify(sql: &str) -> Statement {
    let mut lx = Lexer::new(sql);
    let Some(first) = lx.word() else {
        return Statement::Other;
    };
    match first.as_str() {
        "BEGIN" => Statement::Begin,
        "START" if lx.peek_word().as_deref() == Some("TRANSACTION") => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "ROLLBACK" => {
            // ROLLBACK TO SAVEPOINT keeps the transaction going.
            if lx.peek_word().as_deref() == Some("TO") {
                Statement::Other
            } else {
                Statement::Rollback
            }
        }
        "INSERT" | "REPLACE" => {
            lx.skip_words(&["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"]);
            Statement::Dml {
                tables: lx.name().map(|n| vec![n]),
            }
        }
        "UPDATE" => {
            lx.skip_words(&["LOW_PRIORITY", "IGNORE"]);
            let name = lx.name();
            // Single-table form: `UPDATE t [[AS] alias] SET ...`.
            if lx.peek_word().as_deref() == Some("AS") {
                lx.word();
                lx.ident();
            } else if lx.peek_word().as_deref() != Some("SET") {
                lx.ident();
            }
            let single = lx.word().as_deref() == Some("SET");
            Statement::Dml {
                tables: name.filter(|_| single).map(|n| vec![n]),
            }
        }
        "DELETE" => {
            lx.skip_words(&["LOW_PRIORITY", "QUICK", "IGNORE"]);
            // Single-table form: `DELETE FROM t [WHERE|ORDER|LIMIT|RETURNING ...]`.
            let single = if lx.word().as_deref() == Some("FROM") {
                let name = lx.name();
                let next = lx.peek_word();
                name.filter(|_| {
                    matches!(
                        next.as_deref(),
                        None | Some("WHERE" | "ORDER" | "LIMIT" | "RETURNING" | "PARTITION" | ";")
                    )
                })
            } else {
                None
            };
            Statement::Dml {
                tables: single.map(|n| vec![n]),
            }
        }
        "LOAD" => {
            // LOAD DATA|XML ... INFILE 'file' [REPLACE|IGNORE] INTO TABLE t
            let mut tables = None;
            loop {
                lx.skip_string();
                let Some(w) = lx.word() else { break };
                if w == "INTO" && lx.peek_word().as_deref() == Some("TABLE") {
                    lx.word();
                    tables = lx.name().map(|n| vec![n]);
                    break;
                }
            }
            Statement::Dml { tables }
        }
        "TRUNCATE" => {
            if lx.peek_word().as_deref() == Some("TABLE") {
                lx.word();
            }
            ddl(DdlKind::TruncateTable, lx.name())
        }
        "RENAME" => match lx.word().as_deref() {
            Some("TABLE") => ddl(DdlKind::RenameTable, lx.name()),
            _ => Statement::Other,
        },
        "CREATE" | "ALTER" | "DROP" => {
            let verb = first;
            // Skip modifiers up to the object keyword.
            loop {
                let Some(w) = lx.word() else {
                    return Statement::Other;
                };
                let kind = match (verb.as_str(), w.as_str()) {
                    ("CREATE", "TABLE") => DdlKind::CreateTable,
                    ("ALTER", "TABLE") => DdlKind::AlterTable,
                    ("DROP", "TABLE") => DdlKind::DropTable,
                    ("CREATE", "DATABASE" | "SCHEMA") => DdlKind::CreateDatabase,
                    ("ALTER", "DATABASE" | "SCHEMA") => DdlKind::AlterDatabase,
                    ("DROP", "DATABASE" | "SCHEMA") => DdlKind::DropDatabase,
                    ("CREATE", "INDEX") => DdlKind::CreateIndex,
                    ("DROP", "INDEX") => DdlKind::DropIndex,
                    ("CREATE", "VIEW") => DdlKind::CreateView,
                    ("ALTER", "VIEW") => DdlKind::AlterView,
                    ("DROP", "VIEW") => DdlKind::DropView,
                    // Temporary tables are session-local: not replicated data.
                    (_, "TEMPORARY") => return Statement::Other,
                    (_, "USER" | "ROLE" | "SERVER" | "LOGFILE" | "TABLESPACE" | "RESOURCE") => {
                        return Statement::Other;
                    }
                    (
                        _,
                        "PROCEDURE" | "FUNCTION" | "TRIGGER" | "EVENT" | "SEQUENCE" | "PACKAGE",
                    ) => {
                        return ddl(DdlKind::Other, lx.name());
                    }
                    // OR REPLACE, ONLINE, IGNORE, UNIQUE, FULLTEXT, SPATIAL,
                    // ALGORITHM=..., DEFINER=..., SQL SECURITY ...
                    _ => continue,
                };
                return match kind {
                    DdlKind::CreateDatabase | DdlKind::AlterDatabase | DdlKind::DropDatabase => {
                        let db = lx.name().map(|(db, table)| db.unwrap_or(table));
                        Statement::Ddl {
                            kind,
                            db,
                            table: None,
                        }
                    }
                    DdlKind::CreateIndex | DdlKind::DropIndex => {
                        // CREATE INDEX i ON t / DROP INDEX i ON t
                        lx.name();
                        if lx.word().as_deref() == Some("ON") {
                            ddl(kind, lx.name())
                        } else {
                            ddl(kind, None)
                        }
                    }
                    _ => ddl(kind, lx.name()),
                };
            }
        }
        _ => Statement::Other,
    }
}

fn ddl(kind: DdlKind, name: Option<(Option<String>, String)>) -> Statement {
    let (db, table) = match name {
        Some((db, table)) => (db, Some(table)),
        None => (None, None),
    };
    Statement::Ddl { kind, db, table }
}

struct Lexer<'a> {
    s: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer { s }
    }

    fn skip_space(&mut self) {
        loop {
            let t = self.s.trim_start();
            if let Some(r) = t.strip_prefix("/*") {
                // MySQL's versioned comments /*!50001 ... */ hold real SQL: read into them.
                if let Some(inner) = r.strip_prefix('!') {
                    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
                    self.s = &inner[digits..];
                    continue;
                }
                self.s = r.find("*/").map_or("", |i| &r[i + 2..]);
            } else if let Some(r) = t.strip_prefix("*/") {
                self.s = r;
            } else if let Some(r) = t.strip_prefix("--").or_else(|| t.strip_prefix('#')) {
                self.s = r.find('\n').map_or("", |i| &r[i + 1..]);
            } else {
                self.s = t;
                return;
            }
        }
    }

    /// Next bare word, upper-cased (`ALGORITHM=MERGE` reads as one word; a
    /// quoted identifier reads as itself, as in DEFINER=`root`@`%`).
    fn word(&mut self) -> Option<String> {
        self.skip_space();
        if self.s.starts_with('`') {
            return self.ident();
        }
        let end = self
            .s
            .find(|c: char| c.is_whitespace() || c == '(' || c == ';' || c == '`' || c == '/')
            .unwrap_or(self.s.len());
        if end == 0 {
            return None;
        }
        let w = self.s[..end].to_ascii_uppercase();
        self.s = &self.s[end..];
        Some(w)
    }

    /// Skips a quoted string literal at the front ('…' or "…", with
    /// doubled quotes and backslash escapes), if there is one.
    fn skip_string(&mut self) {
        self.skip_space();
        let Some(q) = self.s.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            return;
        };
        let mut chars = self.s.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                chars.next();
            } else if c == q {
                if self.s[i + 1..].starts_with(q) {
                    chars.next();
                } else {
                    self.s = &self.s[i + 1..];
                    return;
                }
            }
        }
        self.s = "";
    }

    /// Skips any of `words` (upper case) at the front.
    fn skip_words(&mut self, words: &[&str]) {
        while self
            .peek_word()
            .is_some_and(|w| words.contains(&w.as_str()))
        {
            self.word();
        }
    }

    fn peek_word(&self) -> Option<String> {
        let mut copy = Lexer { s: self.s };
        copy.word()
    }

    /// An object name `[db.]name`, quoted or not, after `IF [NOT] EXISTS`.
    fn name(&mut self) -> Option<(Option<String>, String)> {
        if self.peek_word().as_deref() == Some("IF") {
            self.word();
            if self.peek_word().as_deref() == Some("NOT") {
                self.word();
            }
            self.word(); // EXISTS
        }
        let first = self.ident()?;
        if let Some(rest) = self.s.strip_prefix('.') {
            self.s = rest;
            let second = self.ident()?;
            return Some((Some(first), second));
        }
        Some((None, first))
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        if let Some(r) = self.s.strip_prefix('`') {
            // `a``b` is a quoted backtick.
            let mut out = String::new();
            let mut rest = r;
            loop {
                let i = rest.find('`')?;
                out.push_str(&rest[..i]);
                rest = &rest[i + 1..];
                if let Some(r2) = rest.strip_prefix('`') {
                    out.push('`');
                    rest = r2;
                } else {
                    break;
                }
            }
            self.s = rest;
            return Some(out);
        }
        let end = self
            .s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(self.s.len());
        if end == 0 {
            return None;
        }
        let id = self.s[..end].to_string();
        self.s = &self.s[end..];
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: DdlKind, db: Option<&str>, table: Option<&str>) -> Statement {
        Statement::Ddl {
            kind,
            db: db.map(String::from),
            table: table.map(String::from),
        }
    }

    #[test]
    fn classifies_ddl_and_names() {
        use DdlKind::*;
        for (sql, want) in [
            (
                "CREATE TABLE fxdb.types (id INT)",
                d(CreateTable, Some("fxdb"), Some("types")),
            ),
            (
                "create table if not exists `a b`.`c``d`(x int)",
                d(CreateTable, Some("a b"), Some("c`d")),
            ),
            (
                "CREATE OR REPLACE TABLE t1 (x int)",
                d(CreateTable, None, Some("t1")),
            ),
            (
                "ALTER ONLINE IGNORE TABLE t ADD c INT",
                d(AlterTable, None, Some("t")),
            ),
            (
                "DROP TABLE IF EXISTS `t` /* generated by server */",
                d(DropTable, None, Some("t")),
            ),
            ("RENAME TABLE a TO b", d(RenameTable, None, Some("a"))),
            (
                "TRUNCATE TABLE fxdb.tx_other",
                d(TruncateTable, Some("fxdb"), Some("tx_other")),
            ),
            ("truncate t", d(TruncateTable, None, Some("t"))),
            (
                "CREATE DATABASE fxdb CHARACTER SET utf8mb4",
                d(CreateDatabase, Some("fxdb"), None),
            ),
            (
                "DROP SCHEMA IF EXISTS shop",
                d(DropDatabase, Some("shop"), None),
            ),
            (
                "CREATE UNIQUE INDEX i ON shop.t (c)",
                d(CreateIndex, Some("shop"), Some("t")),
            ),
            (
                "/* c */ CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`%` SQL SECURITY DEFINER VIEW v AS SELECT 1",
                d(CreateView, None, Some("v")),
            ),
            (
                "CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN END",
                d(Other, None, Some("p")),
            ),
        ] {
            assert_eq!(classify(sql), want, "{sql}");
        }
    }

    #[test]
    fn transaction_control_and_non_ddl() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
        assert_eq!(classify("ROLLBACK TO SAVEPOINT s"), Statement::Other);
        let dml = |tables: Option<Vec<(Option<&str>, &str)>>| Statement::Dml {
            tables: tables.map(|v| {
                v.into_iter()
                    .map(|(d, t)| (d.map(String::from), t.to_string()))
                    .collect()
            }),
        };
        assert_eq!(
            classify("insert into t values (1)"),
            dml(Some(vec![(None, "t")]))
        );
        assert_eq!(
            classify("INSERT LOW_PRIORITY IGNORE INTO `other`.`x` VALUES (3),(4)"),
            dml(Some(vec![(Some("other"), "x")]))
        );
        assert_eq!(
            classify("replace into a.b select * from c.d"),
            dml(Some(vec![(Some("a"), "b")]))
        );
        assert_eq!(
            classify("UPDATE shop.t SET v = 1 WHERE id = 2"),
            dml(Some(vec![(Some("shop"), "t")]))
        );
        assert_eq!(
            classify("update t AS x set v = 1"),
            dml(Some(vec![(None, "t")]))
        );
        assert_eq!(
            classify("UPDATE a JOIN b ON a.id = b.id SET a.v = b.v"),
            dml(None)
        );
        assert_eq!(
            classify("DELETE FROM other.x WHERE id = 3"),
            dml(Some(vec![(Some("other"), "x")]))
        );
        assert_eq!(classify("delete from x"), dml(Some(vec![(None, "x")])));
        assert_eq!(
            classify("DELETE a, b FROM a JOIN b ON a.id = b.id"),
            dml(None)
        );
        assert_eq!(
            classify("DELETE FROM a USING a JOIN b ON a.id = b.id"),
            dml(None)
        );
        assert_eq!(
            classify(
                "LOAD DATA INFILE '/tmp/x.csv' IGNORE INTO TABLE db1.t1 FIELDS TERMINATED BY ','"
            ),
            dml(Some(vec![(Some("db1"), "t1")]))
        );
        assert_eq!(classify("GRANT ALL ON *.* TO x"), Statement::Other);
        assert_eq!(classify("CREATE USER x"), Statement::Other);
        assert_eq!(
            classify("CREATE TEMPORARY TABLE t (x int)"),
            Statement::Other
        );
        assert_eq!(classify("FLUSH PRIVILEGES"), Statement::Other);
        assert_eq!(classify(""), Statement::Other);
        assert_eq!(
            classify("/*!40000 ALTER TABLE `t` DISABLE KEYS */"),
            d(DdlKind::AlterTable, None, Some("t"))
        );
    }
}
