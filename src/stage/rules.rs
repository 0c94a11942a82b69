//! Processing rules: per-table plans built once from the rules and the
//! source's schema, then applied to every row of that schema.
//!
//! A plan is the composition of every rule that matches the source table,
//! in order: filters (on the source's values), column selection, masks,
//! column renames, added columns, the table's new name, and the merge
//! settings. Its output schema is one `Arc` per source schema, so sinks
//! that cache by table (Kafka schemas, database targets) see the output as
//! any other table.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;
use tracing::warn;

use super::filter::{Filter, Slot, Unknown};
use super::values::{bytes_form, text_form};
use crate::config::rules::{
    MaskConfig, MaskKind, MergeKeys, OnError, RenameTable, RuleConfig, SourceField,
};
use crate::event::{ChangeEvent, ColumnDef, ColumnDefault, Op, TableSchema, Value};
use crate::select::TablePattern;

mod merge;

use merge::Group;
pub use merge::MergeGroup;

/// A rename template: a regex on the source's `db.table`, and the output
/// `db.table` with its captures.
#[derive(Debug, Clone)]
pub struct TableRename {
    pattern: Option<Regex>,
    to: String,
}

impl TableRename {
    pub fn compile(r: &RenameTable) -> Result<TableRename, String> {
        let pattern = match &r.pattern {
            Some(p) => Some(Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                format!(
                    "match = {p:?} is not a regular expression: {}",
                    e.to_string().lines().last().unwrap_or_default().trim()
                )
            })?),
            None => None,
        };
        if !r.to.contains('.') || r.to.starts_with('.') || r.to.ends_with('.') {
            return Err(format!(
                "to = {:?} must name the output as db.table (PostgreSQL: schema.table), e.g. \"shop.orders\" or \"$1.orders\"",
                r.to
            ));
        }
        if let Some(p) = &pattern {
            for name in capture_refs(&r.to) {
                let known = match name.parse::<usize>() {
                    Ok(n) => n < p.captures_len(),
                    Err(_) => p.capture_names().flatten().any(|c| c == name),
                };
                if !known {
                    return Err(format!(
                        "to = {:?} uses ${name}, which match = {:?} doesn't capture",
                        r.to,
                        r.pattern.as_deref().unwrap_or_default()
                    ));
                }
            }
        } else if !capture_refs(&r.to).is_empty() {
            return Err(format!(
                "to = {:?} uses captures: give match = '<regex>' with the groups it names",
                r.to
            ));
        }
        Ok(TableRename {
            pattern,
            to: r.to.clone(),
        })
    }

    /// The output `(namespace, table)` of `qualified` (`db.table`), or
    /// `None` when the pattern doesn't match it.
    pub fn apply(&self, qualified: &str) -> Option<(String, String)> {
        let out = match &self.pattern {
            Some(p) => {
                let caps = p.captures(qualified)?;
                let mut s = String::new();
                caps.expand(&self.to, &mut s);
                s
            }
            None => self.to.clone(),
        };
        let (ns, name) = out.split_once('.')?;
        Some((ns.to_string(), name.to_string()))
    }
}

/// `$1`, `${name}` references of a template.
fn capture_refs(to: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = to.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            if b.get(i + 1) == Some(&b'$') {
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'{') {
                if let Some(end) = to[i + 2..].find('}') {
                    out.push(to[i + 2..i + 2 + end].to_string());
                    i += end + 3;
                    continue;
                }
            } else {
                let n: String = to[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !n.is_empty() {
                    i += n.len() + 1;
                    out.push(n);
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// A config constant as a value.
pub fn constant(v: &toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Double(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        other => {
            return Err(format!(
                "value = {other}: a constant column is a string, an integer, a float or a boolean"
            ));
        }
    })
}

/// One rule, compiled.
struct Rule {
    /// 1-based, as messages name it.
    number: usize,
    cfg: RuleConfig,
    patterns: Vec<TablePattern>,
    rename: Option<TableRename>,
    filter: Option<Filter>,
    hmac: Option<ring::hmac::Key>,
}

impl Rule {
    fn label(&self) -> String {
        format!("rule {} (tables {:?})", self.number, self.cfg.tables)
    }

    fn matches(&self, ns: &str, table: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(ns, table))
    }

    /// Changes more than which rows go on.
    fn reshapes(&self) -> bool {
        let c = &self.cfg;
        c.include_columns.is_some()
            || !c.exclude_columns.is_empty()
            || c.key.is_some()
            || !c.rename_columns.is_empty()
            || c.rename_table.is_some()
            || !c.add_columns.is_empty()
            || !c.mask.is_empty()
            || c.merge.is_some()
    }
}

/// Where an output column's value comes from.
#[derive(Debug, Clone)]
enum Src {
    Column(usize),
    Const(Value),
    Meta(SourceField),
}

#[derive(Debug, Clone)]
enum Mask {
    /// HMAC-SHA256 with the key of this rule (index into `Rules::rules`).
    Hash(usize),
    Redact,
    Null,
    KeepFirst(usize),
}

#[derive(Debug, Clone)]
struct OutCol {
    src: Src,
    mask: Option<Mask>,
}

/// Shard merge facts of a plan.
#[derive(Debug, Clone)]
struct MergeOf {
    /// The output's qualified name: the group.
    group: String,
    keys_unique: bool,
}

/// Everything the rules do to the rows of one source schema.
#[derive(Debug)]
pub struct Plan {
    out: Arc<TableSchema>,
    cols: Vec<OutCol>,
    /// The identity projection: values pass as they are.
    same_columns: bool,
    /// The source's columns in their places, some masked: values are
    /// masked where they are.
    in_place: bool,
    /// `(rule index, columns the filter reads)`.
    filters: Vec<(usize, Vec<(String, Slot)>)>,
    /// The source table's qualified name.
    source: String,
    merge: Option<MergeOf>,
}

/// A row left out because its filter failed, for the dead-letter file.
#[derive(Debug)]
pub struct DeadLetter {
    pub line: String,
}

/// What happened to an event.
enum Verdict {
    Keep,
    Drop,
}

/// The task's rules, with the plans built so far.
pub struct Rules {
    rules: Vec<Rule>,
    plans: HashMap<usize, (Arc<TableSchema>, Option<Arc<Plan>>)>,
    groups: HashMap<String, Group>,
    /// Renamed (not merged) outputs → the source table that has the name.
    outputs: HashMap<String, String>,
    truncate_skipped: bool,
    /// Where the merge groups are kept (`None`: in memory only).
    state_path: Option<std::path::PathBuf>,
    /// Rows whose filter failed under `on_error = "dead_letter"`.
    pub dead: Vec<DeadLetter>,
    /// Rows whose filter failed under `skip` or `dead_letter`.
    pub errors: u64,
    task: String,
}

const PLAN_CACHE: usize = 4_096;

impl Rules {
    /// Compiles validated rules (`RuleConfig::validate`).
    pub fn new(task: &str, cfg: &[RuleConfig], truncate_skipped: bool) -> Result<Rules, String> {
        let mut rules = Vec::with_capacity(cfg.len());
        for (i, c) in cfg.iter().enumerate() {
            let at = |m: String| format!("rules[{i}]: {m}");
            c.validate().map_err(|(k, m)| at(format!("{k}: {m}")))?;
            let patterns = c
                .tables
                .iter()
                .map(|p| TablePattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(at)?;
            let rename = c
                .rename_table
                .as_ref()
                .map(TableRename::compile)
                .transpose()
                .map_err(at)?;
            let filter = c
                .filter
                .as_deref()
                .map(Filter::compile)
                .transpose()
                .map_err(at)?;
            let hmac = c
                .mask_secret
                .as_ref()
                .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes()));
            rules.push(Rule {
                number: i + 1,
                cfg: c.clone(),
                patterns,
                rename,
                filter,
                hmac,
            });
        }
        Ok(Rules {
            rules,
            plans: HashMap::new(),
            groups: HashMap::new(),
            outputs: HashMap::new(),
            state_path: None,
            truncate_skipped,
            dead: Vec::new(),
            errors: 0,
            task: task.to_string(),
        })
    }

    /// Keeps the merge groups in `path` across restarts (loaded now).
    pub fn keep_state(mut self, path: std::path::PathBuf) -> Result<Rules, String> {
        self.state_path = Some(path);
        self.load_groups()?;
        Ok(self)
    }

    /// No rules.
    pub fn empty() -> Rules {
        Rules {
            rules: Vec::new(),
            plans: HashMap::new(),
            groups: HashMap::new(),
            outputs: HashMap::new(),
            state_path: None,
            truncate_skipped: false,
            dead: Vec::new(),
            errors: 0,
            task: String::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The plan of a source schema (`None`: no rule applies); errors name
    /// the rule and the column.
    pub fn plan_for(&mut self, t: &Arc<TableSchema>) -> Result<Option<Arc<Plan>>, String> {
        let id = Arc::as_ptr(t) as usize;
        if let Some((_, p)) = self.plans.get(&id) {
            return Ok(p.clone());
        }
        let plan = self.build(t)?.map(Arc::new);
        if let Some(p) = &plan {
            let out = p.out.qualified_name();
            match &p.merge {
                Some(m) => self.join(&m.group, &p.source, t.key.is_empty())?,
                None if out != p.source => {
                    let first = self.outputs.entry(out.clone()).or_insert(p.source.clone());
                    if *first != p.source {
                        return Err(format!(
                            "{} and {first} are both renamed to {out}: to merge shards into one table, add merge = {{ shard_column = \"shard\" }} (or merge = {{ keys = \"unique\" }} if their keys never overlap) to the rule; otherwise give them distinct names (e.g. to = \"$1.orders\")",
                            p.source
                        ));
                    }
                }
                None => {}
            }
        }
        if self.plans.len() >= PLAN_CACHE {
            self.plans.clear();
        }
        // The source schema is kept alive with its plan: its address
        // can't be reused by another schema while the entry exists.
        self.plans.insert(id, (t.clone(), plan.clone()));
        Ok(plan)
    }

    fn build(&self, t: &Arc<TableSchema>) -> Result<Option<Plan>, String> {
        let ns = t.schema.as_deref().unwrap_or(&t.db);
        let source = format!("{ns}.{}", t.name);
        let matching: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].matches(ns, &t.name))
            .collect();
        if matching.is_empty() {
            return Ok(None);
        }
        let pg = t.schema.is_some();
        // Columns as the rules so far left them.
        struct Col {
            name: String,
            out: OutCol,
            def: ColumnDef,
            default: Option<ColumnDefault>,
        }
        let mut cols: Vec<Col> = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Col {
                name: c.name.clone(),
                out: OutCol {
                    src: Src::Column(i),
                    mask: None,
                },
                def: c.clone(),
                default: t.defaults.get(i).cloned().flatten(),
            })
            .collect();
        let mut key: Vec<String> = t.key.iter().map(|&i| t.columns[i].name.clone()).collect();
        let mut uniques: Vec<Vec<String>> = t
            .uniques
            .iter()
            .map(|u| u.iter().map(|&i| t.columns[i].name.clone()).collect())
            .collect();
        let mut filters = Vec::new();
        let (mut out_ns, mut out_name) = (ns.to_string(), t.name.clone());
        let mut merge = None;
        let mut renamed = false;
        for &ri in &matching {
            let rule = &self.rules[ri];
            let c = &rule.cfg;
            let label = rule.label();
            let missing = |field: &str, name: &str, cols: &[Col]| {
                format!(
                    "{label}: {field} names column {name:?}, which {source} doesn't have (its columns: {})",
                    cols.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if rule.filter.is_some() {
                let names = cols
                    .iter()
                    .filter_map(|c| {
                        let slot = match &c.out.src {
                            Src::Column(i) => Slot::Column(*i),
                            Src::Const(v) => Slot::Fixed(v.clone()),
                            Src::Meta(f) if f.per_row() => {
                                Slot::Fixed(meta_per_row(*f, t, &source))
                            }
                            Src::Meta(_) => return None,
                        };
                        Some((c.name.clone(), slot))
                    })
                    .collect();
                filters.push((ri, names));
            }
            if let Some(inc) = &c.include_columns {
                for n in inc {
                    if !cols.iter().any(|c| &c.name == n) {
                        return Err(missing("include_columns", n, &cols));
                    }
                }
                // Key columns stay unless the rule names another key.
                let keep_key = c.key.is_none();
                cols.retain(|col| inc.contains(&col.name) || (keep_key && key.contains(&col.name)));
            }
            for n in &c.exclude_columns {
                if !cols.iter().any(|c| &c.name == n) {
                    return Err(missing("exclude_columns", n, &cols));
                }
            }
            cols.retain(|col| !c.exclude_columns.contains(&col.name));
            if let Some(k) = &c.key {
                for n in k {
                    if !cols.iter().any(|c| &c.name == n) {
                        return Err(missing("key", n, &cols));
                    }
                }
                key = k.clone();
            } else if let Some(gone) = key.iter().find(|k| !cols.iter().any(|c| &&c.name == k)) {
                return Err(format!(
                    "{label}: it drops key column {gone:?} of {source}: keep it, or name a replacement key (key = [\"…\"]) among the columns left"
                ));
            }
            uniques.retain(|u| u.iter().all(|n| cols.iter().any(|c| &c.name == n)));
            for (n, m) in &c.mask {
                let Some(col) = cols.iter_mut().find(|c| &c.name == n) else {
                    return Err(missing("mask", n, &cols));
                };
                let in_key = key.contains(n) || uniques.iter().any(|u| u.contains(n));
                let mask = match m {
                    MaskConfig::Kind(MaskKind::Hash) => Mask::Hash(ri),
                    MaskConfig::Kind(MaskKind::Redact) => Mask::Redact,
                    MaskConfig::Kind(MaskKind::Null) => Mask::Null,
                    MaskConfig::KeepFirst { keep_first } => Mask::KeepFirst(*keep_first),
                };
                if in_key && !matches!(mask, Mask::Hash(_)) {
                    return Err(format!(
                        "{label}: column {n:?} of {source} is part of a key: mask it with \"hash\" (equal values stay equal, distinct ones distinct), or name another key"
                    ));
                }
                match &mask {
                    Mask::Hash(_) => {
                        col.def.type_name = if pg { "bpchar(64)" } else { "char(64)" }.into();
                        col.default = None;
                    }
                    Mask::Redact | Mask::KeepFirst(_) => {
                        if !texty(&col.def.type_name) {
                            col.def.type_name = "text".into();
                        }
                        col.default = None;
                    }
                    Mask::Null => {
                        col.def.nullable = true;
                        col.default = None;
                    }
                }
                col.out.mask = Some(mask);
            }
            for (from, to) in &c.rename_columns {
                if from == to {
                    continue;
                }
                if !cols.iter().any(|c| &c.name == from) {
                    return Err(missing("rename_columns", from, &cols));
                }
                if cols.iter().any(|c| &c.name == to) && !c.rename_columns.contains_key(to) {
                    return Err(format!(
                        "{label}: rename_columns renames {from:?} to {to:?}, which {source} already has"
                    ));
                }
            }
            for col in cols.iter_mut() {
                if let Some(to) = c.rename_columns.get(&col.name) {
                    col.name = to.clone();
                    col.def.name = to.clone();
                }
            }
            for k in key.iter_mut().chain(uniques.iter_mut().flatten()) {
                if let Some(to) = c.rename_columns.get(k.as_str()) {
                    *k = to.clone();
                }
            }
            let mut added = Vec::new();
            for a in &c.add_columns {
                let src = match (&a.value, a.source) {
                    (Some(v), _) => Src::Const(constant(v)?),
                    (None, Some(f)) => Src::Meta(f),
                    (None, None) => continue,
                };
                added.push((a.name.clone(), src, a.key));
            }
            if let Some(m) = &c.merge
                && let Some(sc) = &m.shard_column
            {
                added.push((sc.clone(), Src::Meta(SourceField::QualifiedTable), true));
            }
            for (name, src, in_key) in added {
                if cols.iter().any(|c| c.name == name) {
                    return Err(format!(
                        "{label}: it adds column {name:?}, which {source} already has: name it otherwise"
                    ));
                }
                let (type_name, nullable) = added_type(&src, pg);
                let default = match &src {
                    Src::Const(v) => Some(ColumnDefault::Text(text_form(v))),
                    _ => None,
                };
                cols.push(Col {
                    def: ColumnDef {
                        name: name.clone(),
                        type_name,
                        nullable,
                    },
                    name: name.clone(),
                    out: OutCol { src, mask: None },
                    default,
                });
                if in_key {
                    key.push(name);
                }
            }
            if let Some(r) = &rule.rename
                && let Some((n, t)) = r.apply(&format!("{out_ns}.{out_name}"))
            {
                out_ns = n;
                out_name = t;
                renamed = true;
            }
            if let Some(m) = &c.merge
                && renamed
            {
                merge = Some(MergeOf {
                    group: format!("{out_ns}.{out_name}"),
                    keys_unique: m.keys == Some(MergeKeys::Unique),
                });
            }
        }
        if cols.is_empty() {
            return Err(format!(
                "rules leave {source} without columns: keep at least its key"
            ));
        }
        let columns: Vec<ColumnDef> = cols.iter().map(|c| c.def.clone()).collect();
        let pos = |n: &String| cols.iter().position(|c| &c.name == n);
        let key_idx: Vec<usize> = key.iter().filter_map(pos).collect();
        let unique_idx: Vec<Vec<usize>> = uniques
            .iter()
            .map(|u| u.iter().filter_map(pos).collect::<Vec<_>>())
            .filter(|u: &Vec<usize>| !u.is_empty())
            .collect();
        let in_place = cols.len() == t.columns.len()
            && cols
                .iter()
                .enumerate()
                .all(|(i, c)| matches!(c.out.src, Src::Column(j) if j == i));
        let same_columns = in_place && cols.iter().all(|c| c.out.mask.is_none());
        let out = TableSchema {
            db: if pg { t.db.clone() } else { out_ns.clone() },
            schema: pg.then(|| out_ns.clone()),
            name: out_name,
            version: TableSchema::fingerprint(&columns, &key_idx) ^ t.version.rotate_left(7),
            defaults: cols.iter().map(|c| c.default.clone()).collect(),
            columns,
            key: key_idx,
            uniques: unique_idx,
            before_complete: t.before_complete,
            merged: merge
                .as_ref()
                .filter(|m| m.keys_unique)
                .map(|_| Arc::from(source.as_str())),
        };
        let reshaped = matching.iter().any(|&i| self.rules[i].reshapes());
        Ok(Some(Plan {
            out: if reshaped { Arc::new(out) } else { t.clone() },
            cols: cols.into_iter().map(|c| c.out).collect(),
            same_columns: same_columns || !reshaped,
            in_place,
            filters,
            source,
            merge,
        }))
    }

    /// Applies the rules to one event. `Err` fails the task.
    pub fn apply(&mut self, ev: &mut ChangeEvent) -> Result<bool, String> {
        if ev.op == Op::Ddl {
            return self.ddl(ev);
        }
        let Some(t) = ev.table.clone() else {
            return Ok(true);
        };
        let Some(plan) = self.plan_for(&t)? else {
            return Ok(true);
        };
        if ev.op == Op::Truncate
            && let Some(m) = &plan.merge
        {
            if self.truncate_skipped {
                return Ok(false);
            }
            return Err(format!(
                "TRUNCATE of {} at {}: it is merged into {} with other shards, and emptying {} would remove their rows too. Delete {}'s rows on the target by hand and set [tasks.ddl] kinds.truncate_table = \"skip\"",
                plan.source, ev.position, m.group, m.group, plan.source
            ));
        }
        match self.filter(&plan, ev)? {
            Verdict::Keep => {}
            Verdict::Drop => return Ok(false),
        }
        self.project(&plan, ev);
        Ok(true)
    }

    /// Runs the plan's filters; turns updates that move a row in or out
    /// into inserts or deletes.
    fn filter(&mut self, plan: &Plan, ev: &mut ChangeEvent) -> Result<Verdict, String> {
        if plan.filters.is_empty() {
            return Ok(Verdict::Keep);
        }
        let incomplete_before = !plan.out.before_complete;
        // Some(true/false): the image is in / out; None: can't tell.
        let test = |rules: &Rules, vals: &[Value], before: Option<&[Value]>| {
            let mut all = Some(true);
            for (ri, names) in &plan.filters {
                let rule = &rules.rules[*ri];
                let Some(f) = rule.filter.as_ref() else {
                    continue;
                };
                let r = match f.eval(names, vals) {
                    Err(Unknown::Missing) if before.is_some() => {
                        // An update's unchanged values (TOAST) are the
                        // before image's.
                        let merged: Vec<Value> = vals
                            .iter()
                            .zip(before.unwrap_or_default())
                            .map(|(a, b)| if matches!(a, Value::Unchanged) { b } else { a })
                            .cloned()
                            .collect();
                        f.eval(names, &merged)
                    }
                    r => r,
                };
                match r {
                    Ok(true) => {}
                    Ok(false) => return Ok(Some(false)),
                    Err(Unknown::Missing) => all = None,
                    Err(Unknown::Error(m)) => return Err((*ri, m)),
                }
            }
            Ok(all)
        };
        let after = ev.after.as_deref();
        // A before image that holds only the key (its other columns are
        // NULLs standing for values not sent) can't be judged.
        let before = ev.before.as_deref().filter(|_| !incomplete_before);
        let r = match ev.op {
            Op::Create | Op::Read => after
                .map(|a| test(self, a, None))
                .transpose()
                .map(|x| (None, x.flatten())),
            Op::Delete => before
                .map(|b| test(self, b, None))
                .transpose()
                .map(|x| (x.flatten(), None)),
            Op::Update => {
                let b = match before {
                    Some(b) => test(self, b, None),
                    None => Ok(None),
                };
                b.and_then(|b| {
                    let a = match after {
                        Some(a) => test(self, a, before),
                        None => Ok(None),
                    };
                    a.map(|a| (b, a))
                })
            }
            _ => Ok((Some(true), Some(true))),
        };
        let (was_in, is_in) = match r {
            Ok(x) => x,
            Err((ri, why)) => return self.on_error(plan, ev, ri, &why),
        };
        // A before image that holds only the key can't tell whether the
        // row was in: taken as in (a delete of a row the target lacks is
        // harmless where an update's move out would be lost).
        let was_in = was_in.or(incomplete_before.then_some(true));
        Ok(match ev.op {
            Op::Create | Op::Read => match is_in {
                Some(false) => Verdict::Drop,
                Some(true) => Verdict::Keep,
                // The insert's own columns are all there: unknown is a
                // TOAST-less impossibility, kept.
                None => Verdict::Keep,
            },
            Op::Delete => match was_in {
                Some(false) => Verdict::Drop,
                _ => Verdict::Keep,
            },
            Op::Update => match (was_in, is_in) {
                (Some(false), Some(false)) => Verdict::Drop,
                (Some(false), _) => {
                    // Moves in: the filtered side never had it.
                    ev.op = Op::Create;
                    ev.before = None;
                    Verdict::Keep
                }
                (_, Some(false)) => {
                    // Moves out: the filtered side drops it.
                    ev.op = Op::Delete;
                    let after = ev.after.take();
                    if ev.before.is_none() {
                        // PostgreSQL sends no before image when the key
                        // didn't change: the delete carries the key.
                        let key = ev.table.as_ref().map(|t| t.key.clone()).unwrap_or_default();
                        ev.before = after.map(|a| {
                            a.into_iter()
                                .enumerate()
                                .map(|(i, v)| if key.contains(&i) { v } else { Value::Null })
                                .collect()
                        });
                    }
                    Verdict::Keep
                }
                _ => Verdict::Keep,
            },
            _ => Verdict::Keep,
        })
    }

    fn on_error(
        &mut self,
        plan: &Plan,
        ev: &mut ChangeEvent,
        ri: usize,
        why: &str,
    ) -> Result<Verdict, String> {
        let rule = &self.rules[ri];
        let label = rule.label();
        match rule.cfg.on_error {
            OnError::Fail => Err(format!(
                "{label}: the filter {:?} failed on a {} of {} at {}: {why}. Fix the expression (e.g. guard NULLs: row.amount != null && row.amount > 100), or set on_error = \"skip\" or \"dead_letter\" on the rule",
                rule.filter
                    .as_ref()
                    .map(|f| f.text.as_str())
                    .unwrap_or_default(),
                ev.op.code(),
                plan.source,
                ev.position
            )),
            how => {
                self.errors += 1;
                if self.errors <= 10 || self.errors.is_power_of_two() {
                    warn!(task = %self.task, rule = rule.number, table = %plan.source, position = %ev.position, error = why, rows = self.errors, "a row's filter failed: the row is left out (on_error = {})", if how == OnError::Skip { "skip" } else { "dead_letter" });
                }
                if how == OnError::DeadLetter {
                    let number = rule.number;
                    self.project(plan, ev);
                    self.dead
                        .push(dead_letter(&self.task, number, &plan.source, ev, why));
                }
                Ok(Verdict::Drop)
            }
        }
    }

    /// Builds the output images and names the output table.
    fn project(&self, plan: &Plan, ev: &mut ChangeEvent) {
        if !plan.same_columns {
            if let Some(a) = ev.after.take() {
                ev.after = Some(self.row(plan, ev, a, false));
            }
            if let Some(b) = ev.before.take() {
                ev.before = Some(self.row(plan, ev, b, true));
            }
        }
        ev.table = Some(plan.out.clone());
    }

    fn row(&self, plan: &Plan, ev: &ChangeEvent, mut vals: Vec<Value>, before: bool) -> Vec<Value> {
        if plan.in_place {
            // Same columns in the same places: only masks change values.
            for (v, c) in vals.iter_mut().zip(&plan.cols) {
                if let Some(m) = &c.mask {
                    let clear = std::mem::replace(v, Value::Null);
                    *v = self.mask(m, clear);
                }
            }
            return vals;
        }
        let mut out = Vec::with_capacity(plan.cols.len());
        for c in &plan.cols {
            let v = match &c.src {
                Src::Column(i) => vals
                    .get_mut(*i)
                    .map(|v| std::mem::replace(v, Value::Null))
                    .unwrap_or(Value::Null),
                Src::Const(v) => v.clone(),
                Src::Meta(f) if f.per_row() => {
                    let t = ev.table.as_deref();
                    t.map_or(Value::Null, |t| meta_per_row(*f, t, &plan.source))
                }
                // Facts of this change, not of the row's earlier state.
                Src::Meta(_) if before => Value::Unchanged,
                Src::Meta(f) => meta_of_change(*f, ev),
            };
            out.push(match &c.mask {
                None => v,
                Some(m) => self.mask(m, v),
            });
        }
        out
    }

    fn mask(&self, m: &Mask, v: Value) -> Value {
        if matches!(v, Value::Null | Value::Unchanged) {
            return v;
        }
        match m {
            Mask::Null => Value::Null,
            Mask::Redact => Value::Text("***".into()),
            Mask::KeepFirst(n) => {
                let s = text_form(&v);
                let mut out = String::with_capacity(s.len());
                for (i, ch) in s.chars().enumerate() {
                    out.push(if i < *n { ch } else { '*' });
                }
                Value::Text(out)
            }
            Mask::Hash(ri) => {
                let Some(key) = self.rules[*ri].hmac.as_ref() else {
                    return Value::Null;
                };
                let tag = ring::hmac::sign(key, &bytes_form(&v));
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut hex = String::with_capacity(64);
                for b in tag.as_ref() {
                    hex.push(char::from(HEX[usize::from(b >> 4)]));
                    hex.push(char::from(HEX[usize::from(b & 15)]));
                }
                Value::Text(hex)
            }
        }
    }

    /// Checks the rules against a table as the source's catalog tells it
    /// (validation with a connection): the plan builds, and each filter
    /// evaluates on a row of the columns' types. Returns what the table
    /// becomes, or the rule's error.
    pub fn check_table(&mut self, t: &Arc<TableSchema>) -> Result<Option<String>, String> {
        let Some(plan) = self.plan_for(t)? else {
            return Ok(None);
        };
        let sample: Vec<Value> = t.columns.iter().map(|c| sample(&c.type_name)).collect();
        for (ri, names) in &plan.filters {
            let rule = &self.rules[*ri];
            let Some(f) = rule.filter.as_ref() else {
                continue;
            };
            if let Err(Unknown::Error(why)) = f.eval(names, &sample) {
                return Err(format!(
                    "{}: the filter {:?} fails on {}: {why} (columns: {})",
                    rule.label(),
                    f.text,
                    plan.source,
                    names
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let out = &plan.out;
        Ok(Some(format!(
            "{} → {} ({})",
            plan.source,
            out.qualified_name(),
            out.columns
                .iter()
                .enumerate()
                .map(|(i, c)| if out.key.contains(&i) {
                    format!("{} (key)", c.name)
                } else {
                    c.name.clone()
                })
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// A value of a column type, for checking filters against a schema.
fn sample(type_name: &str) -> Value {
    let t = type_name.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    match base {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "int2" | "int4"
        | "int8" | "year" | "oid" => Value::Int(1),
        "decimal" | "numeric" | "money" => Value::Decimal("1".into()),
        "float" | "double" | "real" | "float4" | "float8" => Value::Double(1.0),
        "bool" | "boolean" => Value::Bool(true),
        "binary" | "varbinary" | "blob" | "tinyblob" | "mediumblob" | "longblob" | "bytea" => {
            Value::Bytes(vec![1])
        }
        "json" | "jsonb" => Value::Json("{}".into()),
        _ => Value::Text("x".into()),
    }
}

fn texty(type_name: &str) -> bool {
    let t = type_name.to_ascii_lowercase();
    [
        "char",
        "varchar",
        "text",
        "bpchar",
        "character",
        "tinytext",
        "mediumtext",
        "longtext",
        "citext",
    ]
    .iter()
    .any(|p| t == *p || t.starts_with(&format!("{p}(")) || t.starts_with(&format!("{p} ")))
}

fn added_type(src: &Src, pg: bool) -> (String, bool) {
    let text = if pg { "text" } else { "varchar(255)" };
    let (t, nullable) = match src {
        Src::Const(Value::Int(_)) => (if pg { "int8" } else { "bigint" }, false),
        Src::Const(Value::Double(_)) => (if pg { "float8" } else { "double" }, false),
        Src::Const(Value::Bool(_)) => (if pg { "bool" } else { "tinyint(1)" }, false),
        Src::Const(Value::Text(s)) if !pg && s.len() > 255 => ("text", false),
        Src::Const(_) => (text, false),
        Src::Meta(SourceField::ServerId) => (if pg { "int8" } else { "bigint" }, false),
        Src::Meta(SourceField::CommitTime) => {
            (if pg { "timestamptz(3)" } else { "timestamp(3)" }, true)
        }
        Src::Meta(SourceField::Transaction | SourceField::Position) => (text, true),
        Src::Meta(_) => (text, false),
        Src::Column(_) => (text, true),
    };
    (t.to_string(), nullable)
}

fn meta_per_row(f: SourceField, t: &TableSchema, source: &str) -> Value {
    Value::Text(match f {
        SourceField::Database => t.db.clone(),
        SourceField::Schema => t.schema.clone().unwrap_or_else(|| t.db.clone()),
        SourceField::Table => t.name.clone(),
        _ => source.to_string(),
    })
}

fn meta_of_change(f: SourceField, ev: &ChangeEvent) -> Value {
    match f {
        SourceField::ServerId => Value::Int(i64::from(ev.tx.server_id)),
        SourceField::CommitTime => Value::Timestamp {
            epoch_micros: ev.tx.commit_ts_ms.saturating_mul(1000),
            precision: 3,
        },
        SourceField::Position => Value::Text(ev.position.to_string()),
        SourceField::Transaction => match (&ev.tx.gtid, ev.tx.xid) {
            (Some(g), _) => Value::Text(g.clone()),
            (None, Some(x)) => Value::Text(x.to_string()),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// A dead letter: the row as it would have gone on (masked), the rule and
/// the reason; never the clear values of masked columns.
fn dead_letter(task: &str, rule: usize, source: &str, ev: &ChangeEvent, why: &str) -> DeadLetter {
    let row = |vals: Option<&Vec<Value>>| -> serde_json::Value {
        let (Some(vals), Some(t)) = (vals, ev.table.as_deref()) else {
            return serde_json::Value::Null;
        };
        let mut m = serde_json::Map::new();
        for (c, v) in t.columns.iter().zip(vals) {
            let j = match v {
                Value::Null | Value::Unchanged => serde_json::Value::Null,
                Value::Bool(b) => (*b).into(),
                Value::Int(i) => (*i).into(),
                Value::UInt(u) => (*u).into(),
                other => text_form(other).into(),
            };
            m.insert(c.name.clone(), j);
        }
        serde_json::Value::Object(m)
    };
    let line = serde_json::json!({
        "task": task,
        "rule": rule,
        "table": source,
        "op": ev.op.code(),
        "position": ev.position.to_string(),
        "error": why,
        "before": row(ev.before.as_ref()),
        "after": row(ev.after.as_ref()),
    });
    DeadLetter {
        line: line.to_string(),
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
