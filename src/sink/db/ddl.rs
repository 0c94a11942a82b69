//! DDL on database targets: the task's action per statement kind
//! (`apply` / `skip` / `fail` / `pause`), the same-engine replay with its
//! database qualifiers renamed (`rename_db`: outside string literals and
//! comments), and the cross-engine translation (`translate`).

use tokio::sync::watch;
use tracing::{debug, info};

use super::apply::{Applier, Stop, Target, my_ident, pg_ident};
use super::{DbErrorKind, DbSinkError, Durable};
use crate::config::DdlAction;
use crate::event::{ChangeEvent, Connector, DdlKind};

/// Rewrites every identifier that qualifies another (`x.`) and equals
/// `from` into `to`, quoted. Text in quotes and comments is left alone.
pub fn rename_db(sql: &str, from: &str, to: &str) -> String {
    if from == to {
        return sql.to_string();
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    let quoted_to = format!("`{}`", to.replace('`', "``"));
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = skip_string(b, i);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(b.len(), |e| i + e);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'#' => {
                let end = sql[i..].find('\n').map_or(b.len(), |e| i + e);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'`' => {
                // A quoted identifier: `` `a``b` ``.
                let mut j = i + 1;
                let mut name = String::new();
                while j < b.len() {
                    if b[j] == b'`' {
                        if b.get(j + 1) == Some(&b'`') {
                            name.push('`');
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    let ch_end = next_char(sql, j);
                    name.push_str(&sql[j..ch_end]);
                    j = ch_end;
                }
                let end = (j + 1).min(b.len());
                if name == from && qualifies(b, end) {
                    out.push_str(&quoted_to);
                } else {
                    out.push_str(&sql[i..end]);
                }
                i = end;
            }
            c if is_ident(c) && (i == 0 || !is_ident(b[i - 1]) && b[i - 1] != b'.') => {
                let mut j = i;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                if &sql[i..j] == from && qualifies(b, j) {
                    out.push_str(&quoted_to);
                } else {
                    out.push_str(&sql[i..j]);
                }
                i = j;
            }
            _ => {
                let e = next_char(sql, i);
                out.push_str(&sql[i..e]);
                i = e;
            }
        }
    }
    out
}

fn next_char(s: &str, i: usize) -> usize {
    let mut e = i + 1;
    while e < s.len() && !s.is_char_boundary(e) {
        e += 1;
    }
    e
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The identifier ending at `end` is followed by `.` and another name.
fn qualifies(b: &[u8], end: usize) -> bool {
    b.get(end) == Some(&b'.')
        && b.get(end + 1)
            .is_some_and(|&c| c == b'`' || is_ident(c) || c == b'*')
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut j = start + 1;
    while j < b.len() {
        if b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

impl<T: Target> Applier<T> {
    pub(super) async fn ddl(
        &mut self,
        ev: &ChangeEvent,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let Some(ddl) = ev.ddl.as_deref() else {
            return Ok(());
        };
        let action = self.s.ddl.action(ddl.kind);
        if action == DdlAction::Fail {
            return Err(Stop::Fail(DbSinkError::definite(format!(
                "DDL at {}: `{}`: the DDL policy for {} is \"fail\": apply it to the target by hand and set [tasks.ddl] kinds.{} = \"skip\" to go past it, or set it to \"apply\"",
                ev.position,
                one_line(&ddl.statement),
                ddl.kind.name(),
                ddl.kind.name(),
            ))));
        }
        if action == DdlAction::Skip {
            return Ok(());
        }
        if action == DdlAction::Pause && self.s.approved_ddl.as_ref() != Some(&ev.position) {
            return Err(Stop::Fail(DbSinkError::pause(
                format!(
                    "DDL at {} waits for an operator (the DDL policy for {} is \"pause\"): `{}`. Resume the task to apply it, or set [tasks.ddl] kinds.{} = \"skip\" (modify) and resume to pass over it",
                    ev.position,
                    ddl.kind.name(),
                    one_line(&ddl.statement),
                    ddl.kind.name()
                ),
                ev.position.clone(),
            )));
        }
        let same_engine = matches!(
            (self.s.source, self.target.engine()),
            (Connector::Mysql | Connector::Mariadb, super::Engine::Mysql)
                | (Connector::Postgres, super::Engine::Postgres)
        );
        let mapped_db = ddl.db.as_deref().map(|db| self.s.cfg.target_of(db, "").0);
        if !self.target.transactional_ddl() {
            // MySQL commits around DDL: what came before goes first, with
            // its position.
            if let Some(p) = self.applied.clone() {
                self.commit_at(p, durable).await.map_err(Stop::from)?;
            }
        }
        let r = if ddl.reshaped_from.is_some() {
            self.reshaped_ddl(ev).await
        } else if same_engine {
            if let (Some(db), Some(table)) = (&ddl.db, &ddl.table)
                && self.s.cfg.map.contains_key(&format!("{db}.{table}"))
            {
                return Err(Stop::Fail(DbSinkError::definite(format!(
                    "DDL at {} on {db}.{table}, which [tasks.sink.map] renames: `{}` is not rewritten; apply it to the target by hand and set [tasks.ddl] kinds.{} = \"skip\"",
                    ev.position,
                    one_line(&ddl.statement),
                    ddl.kind.name()
                ))));
            }
            self.same_engine_ddl(ddl, mapped_db.as_deref()).await
        } else {
            self.cross_engine_ddl(ev).await
        };
        match r {
            Ok(()) => {}
            Err(e) if self.first_after_open && e.kind() == DbErrorKind::InEffect => {
                info!(task = %self.s.task, position = %ev.position, error = %e, "DDL already in effect on the target (applied before a restart)");
            }
            Err(e) => {
                return Err(Stop::Fail(e.context(&format!(
                    "applying DDL at {} (`{}`); set [tasks.ddl] kinds.{} = \"skip\" to go past it",
                    ev.position,
                    one_line(&ddl.statement),
                    ddl.kind.name()
                ))));
            }
        }
        self.target.forget_tables();
        if !self.target.transactional_ddl() {
            self.applied = Some(ev.position.clone());
            self.commit_at(ev.position.clone(), durable)
                .await
                .map_err(Stop::from)?;
        }
        Ok(())
    }

    /// DDL from the same engine: as written, its database qualifiers
    /// renamed by the map; database-level statements name the mapped
    /// database.
    async fn same_engine_ddl(
        &mut self,
        ddl: &crate::event::Ddl,
        mapped: Option<&str>,
    ) -> Result<(), DbSinkError> {
        let renamed = ddl.db.as_deref().zip(mapped).filter(|(a, b)| a != b);
        match ddl.kind {
            DdlKind::CreateDatabase => {
                let db = mapped.unwrap_or_default();
                if db.is_empty() {
                    return self.target.ddl(None, &ddl.statement).await;
                }
                let sql = format!("CREATE DATABASE IF NOT EXISTS {}", my_ident(db));
                self.target.ddl(None, &sql).await
            }
            DdlKind::DropDatabase if mapped.is_some() => {
                let sql = format!(
                    "DROP DATABASE IF EXISTS {}",
                    my_ident(mapped.unwrap_or_default())
                );
                self.target.ddl(None, &sql).await
            }
            DdlKind::AlterDatabase if renamed.is_some() => {
                info!(task = %self.s.task, statement = %one_line(&ddl.statement), "ALTER DATABASE of a mapped database is not rewritten; the target database is left as is");
                Ok(())
            }
            _ => {
                let sql = match renamed {
                    Some((from, to)) => super::ddl::rename_db(&ddl.statement, from, to),
                    None => ddl.statement.clone(),
                };
                self.target.ddl(mapped, &sql).await
            }
        }
    }

    /// DDL of a table processing rules rename or reshape: the statement
    /// names the source's table and columns, so it isn't replayed. The
    /// target table follows the rows (created with the first, given new
    /// columns as rows bring them); dropping and emptying the table are
    /// carried out on the output table.
    async fn reshaped_ddl(&mut self, ev: &ChangeEvent) -> Result<(), DbSinkError> {
        let Some(ddl) = ev.ddl.as_deref() else {
            return Ok(());
        };
        let (Some(db), Some(table)) = (ddl.db.as_deref(), ddl.table.as_deref()) else {
            return Ok(());
        };
        let from = ddl.reshaped_from.as_deref().unwrap_or_default();
        let (schema, name) = self.s.cfg.target_of(db, table);
        match ddl.kind {
            DdlKind::DropTable => self.target.drop_table(&schema, &name).await,
            DdlKind::TruncateTable => {
                self.target
                    .ddl(None, &truncate_sql(self.target.engine(), &schema, &name))
                    .await
            }
            DdlKind::RenameTable => Err(DbSinkError::definite(format!(
                "RENAME of {from} at {}, whose rows processing rules write to {schema}.{name}: the rules decide the target's name, so the rename isn't carried over. Adjust the rules (rename_table) for the new name",
                ev.position
            ))),
            kind => {
                info!(task = %self.s.task, position = %ev.position, source_table = from, target_table = %format!("{schema}.{name}"), kind = kind.name(), "DDL of a table processing rules reshape: not replayed; the target table follows the rows");
                Ok(())
            }
        }
    }

    /// DDL from the other engine: what can be done without parsing the
    /// statement; table creation and new columns follow the rows.
    async fn cross_engine_ddl(&mut self, ev: &ChangeEvent) -> Result<(), DbSinkError> {
        let Some(ddl) = ev.ddl.as_deref() else {
            return Ok(());
        };
        let named = ddl.db.as_deref().zip(ddl.table.as_deref());
        match (ddl.kind, named) {
            (DdlKind::CreateTable, _) => {
                debug!(task = %self.s.task, position = %ev.position, "DDL from the other engine: the target table is created from the source's columns with its first row");
                Ok(())
            }
            (DdlKind::AlterTable | DdlKind::RenameTable, Some((db, table)))
                if self.target.engine() == super::Engine::Postgres =>
            {
                let (schema, name) = self.s.cfg.target_of(db, table);
                let stmts = super::translate::mysql_to_postgres(&ddl.statement, &schema, &name)
                    .map_err(|why| {
                        DbSinkError::definite(format!(
                            "{why}: set [tasks.ddl] kinds.{} = \"skip\" and change the target by hand",
                            ddl.kind.name()
                        ))
                    })?;
                for sql in stmts {
                    self.target.savepoint().await?;
                    match self.target.ddl(None, &sql).await {
                        Ok(()) => self.target.release().await?,
                        // The table isn't on the target yet (it comes with
                        // its rows), or the change is there already.
                        Err(e) if e.kind() == DbErrorKind::InEffect => {
                            info!(task = %self.s.task, position = %ev.position, statement = %sql, error = %e, "translated DDL not needed on the target");
                            self.target.rollback_to().await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            (DdlKind::AlterTable, _) => {
                debug!(task = %self.s.task, position = %ev.position, "DDL from the other engine: the target table follows the rows (given the new columns)");
                Ok(())
            }
            (DdlKind::TruncateTable, Some((db, table))) => {
                let (schema, name) = self.s.cfg.target_of(db, table);
                self.target
                    .ddl(None, &truncate_sql(self.target.engine(), &schema, &name))
                    .await
            }
            (DdlKind::DropTable, Some((db, table))) => {
                let (schema, name) = self.s.cfg.target_of(db, table);
                self.target.drop_table(&schema, &name).await
            }
            (
                DdlKind::CreateDatabase
                | DdlKind::CreateView
                | DdlKind::AlterView
                | DdlKind::DropView,
                _,
            ) => {
                info!(task = %self.s.task, position = %ev.position, kind = ddl.kind.name(), "DDL from the other engine not translated; the target is left as is");
                Ok(())
            }
            _ => Err(DbSinkError::definite(format!(
                "{} DDL is not translated between engines: set [tasks.ddl] kinds.{} = \"skip\" and change the target by hand",
                ddl.kind.name(),
                ddl.kind.name()
            ))),
        }
    }
}

fn truncate_sql(engine: super::Engine, schema: &str, table: &str) -> String {
    match engine {
        super::Engine::Postgres => format!("TRUNCATE {}.{}", pg_ident(schema), pg_ident(table)),
        super::Engine::Mysql => format!("TRUNCATE TABLE {}.{}", my_ident(schema), my_ident(table)),
    }
}

fn one_line(s: &str) -> String {
    let t: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.chars().count() > 200 {
        format!("{}…", t.chars().take(200).collect::<String>())
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::rename_db;

    #[test]
    fn qualifiers_are_renamed_and_nothing_else() {
        assert_eq!(
            rename_db("ALTER TABLE shop.orders ADD COLUMN shop INT", "shop", "dr"),
            "ALTER TABLE `dr`.orders ADD COLUMN shop INT"
        );
        assert_eq!(
            rename_db(
                "CREATE TABLE `shop`.`t` LIKE shop.u /* shop.x */ COMMENT 'shop.y'",
                "shop",
                "dr"
            ),
            "CREATE TABLE `dr`.`t` LIKE `dr`.u /* shop.x */ COMMENT 'shop.y'"
        );
        assert_eq!(
            rename_db("RENAME TABLE myshop.a TO shop.b", "shop", "dr"),
            "RENAME TABLE myshop.a TO `dr`.b"
        );
        assert_eq!(
            rename_db(
                "CREATE TABLE t (v VARCHAR(9) DEFAULT 'it''s shop.t')",
                "shop",
                "dr"
            ),
            "CREATE TABLE t (v VARCHAR(9) DEFAULT 'it''s shop.t')"
        );
        assert_eq!(
            rename_db("DROP TABLE x.shop.t", "shop", "dr"),
            "DROP TABLE x.shop.t"
        );
    }
}
