//! Shard merges: the groups of source tables a rule merges into one
//! output, and the coordination of their schema changes (a statement
//! goes on once every shard has run it; a shard that diverges fails).

use std::collections::BTreeMap;

use tracing::info;

use super::Rules;
use crate::event::ChangeEvent;

/// A merge group: the shards seen, and the DDL each has run. Kept in
/// `<data_dir>/rules/<task>.json` across restarts: a restart in the middle
/// of a change that reached only some shards still counts the shards that
/// ran it before.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Group {
    /// Shard (source `db.table`) → what it has run.
    members: BTreeMap<String, Member>,
    /// The statements (normalized), with the shard that ran each first.
    statements: Vec<(String, String)>,
    /// How many of the statements have gone on.
    emitted: usize,
    /// Positions of the statements that went on: one read again after a
    /// restart (not yet committed downstream) goes on again.
    emitted_at: std::collections::BTreeSet<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Member {
    /// How many of the group's statements the shard has run.
    ran: usize,
    /// The position of the last statement counted for it: a statement at
    /// or before it is one read again after a restart.
    last: Option<String>,
}

impl Member {
    fn counted(&self, at: &crate::event::Position) -> bool {
        self.last
            .as_deref()
            .and_then(|l| l.parse::<crate::event::Position>().ok())
            .is_some_and(|l| *at <= l)
    }
}

/// A merge group as the task view shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergeGroup {
    /// The output table.
    pub table: String,
    /// Each shard seen, with how many of the group's schema changes it ran.
    pub shards: BTreeMap<String, usize>,
    /// Schema changes the shards have run so far.
    pub schema_changes: usize,
}

impl Rules {
    /// A shard joins its merge group.
    pub(super) fn join(&mut self, group: &str, shard: &str, keyless: bool) -> Result<(), String> {
        if keyless {
            return Err(format!(
                "{shard} has no primary key, so its rows can't be merged into {group}: a merged table needs keys to tell rows apart (add a primary key to the shards, or leave {shard} out of the rule)"
            ));
        }
        let g = self.groups.entry(group.to_string()).or_default();
        if !g.members.contains_key(shard) {
            // A shard first seen through its rows (a snapshot chunk, a
            // change) has run none of the group's statements yet: it may
            // be copied after another shard's change was streamed. (One
            // created later joins through its CREATE TABLE, caught up.)
            g.members.insert(shard.to_string(), Member::default());
            if g.members.len() > 1 {
                info!(task = %self.task, group, shard, shards = g.members.len(), "a shard joined the merge");
            }
        }
        Ok(())
    }

    /// DDL of a table the rules reshape: named as the output, marked so a
    /// database target follows the rows; a merge's shards coordinated.
    pub(super) fn ddl(&mut self, ev: &mut ChangeEvent) -> Result<bool, String> {
        let Some(ddl) = ev.ddl.as_deref_mut() else {
            return Ok(true);
        };
        let (Some(db), Some(table)) = (ddl.db.clone(), ddl.table.clone()) else {
            return Ok(true);
        };
        let matching: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].matches(&db, &table))
            .collect();
        if !matching.iter().any(|&i| self.rules[i].reshapes()) {
            return Ok(true);
        }
        let source = format!("{db}.{table}");
        let (mut ns, mut name) = (db.clone(), table.clone());
        let mut merged = false;
        for &i in &matching {
            let r = &self.rules[i];
            if let Some(rn) = &r.rename
                && let Some((n, t)) = rn.apply(&format!("{ns}.{name}"))
            {
                ns = n;
                name = t;
                merged |= r.cfg.merge.is_some();
            }
        }
        ddl.reshaped_from = Some(source.clone());
        ddl.db = Some(ns.clone());
        ddl.table = Some(name.clone());
        if !merged {
            return Ok(true);
        }
        let group_name = format!("{ns}.{name}");
        let kind = ddl.kind;
        let statement = normalize(&ddl.statement, &db, &table);
        let at = ev.position.to_string();
        let g = self.groups.entry(group_name.clone()).or_default();
        if g.members
            .get(&source)
            .is_some_and(|m| m.counted(&ev.position))
        {
            // Read again after a restart: counted already; it goes on
            // again only if it went on before (it wasn't committed).
            return Ok(g.emitted_at.contains(&at));
        }
        use crate::event::DdlKind;
        let r = match kind {
            DdlKind::CreateTable => {
                // A new shard: it starts with the group's schema.
                let first = g.members.is_empty();
                let n = g.statements.len();
                let m = g
                    .members
                    .entry(source.clone())
                    .or_insert(Member { ran: n, last: None });
                m.last = Some(at.clone());
                if !first {
                    info!(task = %self.task, group = %group_name, shard = %source, "a new shard of the merge was created; the merged table is left as is");
                }
                Ok(first)
            }
            DdlKind::DropTable => {
                g.members.remove(&source);
                if g.members.is_empty() {
                    Ok(true)
                } else {
                    info!(task = %self.task, group = %group_name, shard = %source, shards = g.members.len(), "a shard of the merge was dropped; the merged table stays for the others");
                    Ok(false)
                }
            }
            DdlKind::RenameTable | DdlKind::TruncateTable => Err(format!(
                "{} of {source} at {}: it is a shard merged into {group_name}, and the statement can't be carried over to the merged table. Apply what it means on the target by hand and set [tasks.ddl] kinds.{} = \"skip\"",
                kind.name(),
                ev.position,
                kind.name()
            )),
            _ => {
                let ran = g.members.entry(source.clone()).or_default().ran;
                match g.statements.get(ran) {
                    Some((expected, first)) if *expected != statement => {
                        return Err(format!(
                            "shard {source} of the merge into {group_name} diverges at {}: its schema change `{}` differs from `{expected}`, which shard {first} ran as its change #{}. Shards merged into one table must change alike: change {source} the same way (or undo it), or leave it out of the merge",
                            ev.position,
                            statement,
                            ran + 1
                        ));
                    }
                    Some(_) => {}
                    None => g.statements.push((statement.clone(), source.clone())),
                }
                g.members.insert(
                    source.clone(),
                    Member {
                        ran: ran + 1,
                        last: Some(at.clone()),
                    },
                );
                let waiting: Vec<&String> = g
                    .members
                    .iter()
                    .filter(|(_, m)| m.ran <= ran)
                    .map(|(s, _)| s)
                    .collect();
                if waiting.is_empty() && ran < g.emitted {
                    // Gone on already (before a shard seen later ran it).
                    Ok(false)
                } else if waiting.is_empty() {
                    g.emitted = ran + 1;
                    info!(task = %self.task, group = %group_name, statement = %statement, shards = g.members.len(), "every shard of the merge ran the schema change: it goes on once");
                    Ok(true)
                } else {
                    info!(task = %self.task, group = %group_name, shard = %source, waiting = ?waiting, "a shard ran a schema change; the merged table changes when every shard has");
                    Ok(false)
                }
            }
        };
        if let Ok(true) = r {
            g.emitted_at.insert(at);
        }
        self.save_groups()?;
        r
    }

    /// Loads the merge groups a previous run kept.
    pub(super) fn load_groups(&mut self) -> Result<(), String> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                self.groups = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{} (the shard merges' schema changes) is not readable: {e}; remove it if the shards' schemas are all alike again",
                        path.display()
                    )
                })?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// Keeps the merge groups on disk (written whole, synced, renamed).
    pub(super) fn save_groups(&self) -> Result<(), String> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        let fail = |e: std::io::Error| {
            format!(
                "keeping the shard merges' schema changes in {}: {e}; free space or fix the directory's permissions, then resume",
                path.display()
            )
        };
        let text = serde_json::to_vec(&self.groups).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(fail)?;
            f.write_all(&text).map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(fail)?;
        Ok(())
    }

    /// The merge groups seen so far.
    pub fn groups(&self) -> Vec<MergeGroup> {
        let mut v: Vec<MergeGroup> = self
            .groups
            .iter()
            .map(|(g, s)| MergeGroup {
                table: g.clone(),
                shards: s.members.iter().map(|(m, n)| (m.clone(), n.ran)).collect(),
                schema_changes: s.statements.len(),
            })
            .collect();
        v.sort_by(|a, b| a.table.cmp(&b.table));
        v
    }
}

/// A statement with the shard's own names taken out, so shards' changes
/// compare equal: `ALTER TABLE orders_3 ADD c int` → `alter table <table> add c int`.
fn normalize(stmt: &str, db: &str, table: &str) -> String {
    let mut out = String::with_capacity(stmt.len());
    for word in stmt.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let mut w = word.to_string();
        for q in ["`", "\""] {
            w = w.replace(&format!("{q}{db}{q}"), db);
            w = w.replace(&format!("{q}{table}{q}"), table);
        }
        let parts: Vec<String> = w
            .split('.')
            .map(|p| {
                if p == table {
                    "<table>".to_string()
                } else if p == db {
                    "<db>".to_string()
                } else {
                    p.to_ascii_lowercase()
                }
            })
            .collect();
        let joined = parts.join(".");
        out.push_str(joined.strip_prefix("<db>.").unwrap_or(&joined));
    }
    out
}
