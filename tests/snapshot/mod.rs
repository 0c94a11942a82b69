//! Snapshots against real servers: `snapshot + stream` must equal the
//! source table exactly, whatever is written meanwhile and however often
//! the daemon is killed.

mod fidelity;
mod incremental;
mod kafka;
mod mariadb;
mod postgres;
mod privileges;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::Daemon;

impl Daemon {
    /// Sets the task's `mode` and snapshot settings.
    pub fn with_mode(self, mode: &str, chunk_rows: u64, workers: usize) -> Daemon {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let new =
            text.replacen(
                "id = \"t\"\n",
                &format!("id = \"t\"\nmode = \"{mode}\"\n"),
                1,
            ) + &format!("[tasks.snapshot]\nchunk_rows = {chunk_rows}\nworkers = {workers}\n");
        std::fs::write(&self.config, new).unwrap();
        self
    }
}

/// A table's rows by key, as JSON objects.
pub type Rows = BTreeMap<String, Value>;

/// The key of a row image: its `key` columns' values.
fn key_of(row: &Value, key: &[&str]) -> String {
    key.iter()
        .map(|k| row[*k].to_string())
        .collect::<Vec<_>>()
        .join("|")
}

/// Replays the events of `table` (`db.table`'s short name) in order, as a
/// consumer applying them to a copy would: snapshot reads and inserts put
/// the row, updates move it (a key change deletes the old key), deletes
/// remove it. Panics on an event a copy couldn't apply exactly: an update
/// or delete of a row the copy doesn't have, after the copy holds it.
pub fn replay(lines: &[Value], table: &str, key: &[&str]) -> Rows {
    let mut rows = Rows::new();
    for l in lines {
        if l["source"]["table"] != table {
            continue;
        }
        let op = l["op"].as_str().unwrap_or_default();
        match op {
            "r" | "c" => {
                let after = &l["after"];
                rows.insert(key_of(after, key), after.clone());
            }
            "u" => {
                let after = &l["after"];
                if let Some(before) = l.get("before").filter(|b| !b.is_null()) {
                    rows.remove(&key_of(before, key));
                }
                rows.insert(key_of(after, key), after.clone());
            }
            "d" => {
                rows.remove(&key_of(&l["before"], key));
            }
            _ => {}
        }
    }
    rows
}

/// Compares a replayed table with the source's rows; the message lists
/// the first differences.
pub fn diff(got: &Rows, want: &Rows) -> Option<String> {
    if got == want {
        return None;
    }
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push(format!("missing {k}: {v}")),
            Some(g) if g != v => out.push(format!("differs {k}: got {g}, want {v}")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            out.push(format!("extra {k}: {v}"));
        }
    }
    let n = out.len();
    out.truncate(10);
    Some(format!(
        "{n} differences ({} rows replayed, {} in the source); first: \n{}",
        got.len(),
        want.len(),
        out.join("\n")
    ))
}

/// Snapshot reads in the output for `table`, and the `source.snapshot`
/// marks seen.
pub fn reads(lines: &[Value], table: &str) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut marks = Vec::new();
    for l in lines {
        if l["source"]["table"] == table && l["op"] == "r" {
            n += 1;
            let m = l["source"]["snapshot"].as_str().unwrap_or("").to_string();
            if !marks.contains(&m) {
                marks.push(m);
            }
        }
    }
    (n, marks)
}

/// [`replay`] over a JSONL file read line by line (a large output need not
/// fit in memory parsed); returns the rows and the number of snapshot
/// reads of `table`.
pub fn replay_file(path: &std::path::Path, table: &str, key: &[&str]) -> (Rows, usize) {
    use std::io::BufRead;
    let mut rows = Rows::new();
    let mut reads = 0;
    let Ok(f) = std::fs::File::open(path) else {
        return (rows, 0);
    };
    for line in std::io::BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        // A line being written is incomplete: stop there.
        let Ok(l) = serde_json::from_str::<Value>(&line) else {
            break;
        };
        if l["source"]["table"] != table {
            continue;
        }
        match l["op"].as_str().unwrap_or_default() {
            "r" | "c" => {
                if l["op"] == "r" {
                    reads += 1;
                }
                let after = l["after"].clone();
                rows.insert(key_of(&after, key), after);
            }
            "u" => {
                if let Some(before) = l.get("before").filter(|b| !b.is_null()) {
                    rows.remove(&key_of(before, key));
                }
                let after = l["after"].clone();
                rows.insert(key_of(&after, key), after);
            }
            "d" => {
                rows.remove(&key_of(&l["before"], key));
            }
            _ => {}
        }
    }
    (rows, reads)
}

/// Polls until the replayed output equals `want` (read fresh each time by
/// `source`), at most `timeout`; panics with the differences otherwise.
pub async fn wait_equal<F, Fut>(
    d: &Daemon,
    table: &str,
    key: &[&str],
    timeout: std::time::Duration,
    mut source: F,
) -> (Rows, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Rows>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let want = source().await;
        let (got, reads) = replay_file(&d.out, table, key);
        match diff(&got, &want) {
            None => return (got, reads),
            Some(d2) if std::time::Instant::now() > deadline => {
                panic!(
                    "{table}: the replayed output differs from the source: {d2}\nlog:\n{}",
                    d.log()
                )
            }
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}
