//! Database targets against real servers: MariaDB and PostgreSQL sources
//! applied to MariaDB and PostgreSQL targets (a second database on the
//! test servers), compared row by row with the source.

mod bidirectional;
mod conflict;
mod crash;
mod ddl;
mod faults;
mod replicate;
mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};

use crate::support::{Daemon, Mariadb, Postgres};

/// One side of a replication: a MariaDB database or a PostgreSQL
/// database (tables in `public`).
#[derive(Clone, Copy)]
pub enum Side {
    Maria(&'static Mariadb, &'static str),
    Pg(&'static Postgres, &'static str),
}

/// `(id, k, v)` rows ordered by id.
pub type Rows = Vec<(i64, i64, String)>;

impl Side {
    pub async fn fresh(&self) {
        match self {
            Side::Maria(m, db) => m.fresh_db(db).await,
            Side::Pg(p, db) => p.fresh_db(db).await,
        }
    }

    /// Drops a target's position table of test `name` (a MariaDB target
    /// keeps it in database `tm_<name>`, outside the fresh database).
    pub async fn forget_positions(&self, name: &str) {
        match self {
            Side::Maria(m, _) => {
                m.exec(&format!("DROP DATABASE IF EXISTS `tm_{name}`"))
                    .await
            }
            Side::Pg(p, db) => {
                p.exec(db, &format!("DROP SCHEMA IF EXISTS tm_{name} CASCADE"))
                    .await
            }
        }
    }

    pub async fn exec(&self, sql: &str) {
        match self {
            Side::Maria(m, db) => m.exec(&format!("USE `{db}`; {sql}")).await,
            Side::Pg(p, db) => p.exec(db, sql).await,
        }
    }

    /// Creates `t (id, k, v)` with `n` rows, and a unique key on `u`.
    pub async fn load(&self, table: &str, n: u64) {
        match self {
            Side::Maria(m, db) => {
                m.exec(&format!(
                    "CREATE TABLE `{db}`.`{table}` (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL)"
                ))
                .await;
                if n > 0 {
                    m.exec(&format!(
                        "INSERT INTO `{db}`.`{table}` SELECT seq, seq % 1000, CONCAT('row', seq) FROM `{db}`.seq_1_to_{n}"
                    ))
                    .await;
                }
            }
            Side::Pg(p, db) => {
                p.exec(
                    db,
                    &format!(
                        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT NOT NULL);
                         INSERT INTO {table} SELECT g, g % 1000, 'row' || g FROM generate_series(1, {n}) g;"
                    ),
                )
                .await
            }
        }
    }

    /// The rows of `table` (`schema` for PostgreSQL targets), or empty if
    /// the table doesn't exist yet.
    pub async fn rows(&self, schema: &str, table: &str) -> Rows {
        match self {
            Side::Maria(m, db) => {
                let mut c = m.conn().await;
                let ns = if schema.is_empty() { *db } else { schema };
                let r: Vec<(i64, i64, String)> = c
                    .query(format!("SELECT id, k, v FROM `{ns}`.`{table}` ORDER BY id"))
                    .await
                    .unwrap_or_default();
                let _ = c.disconnect().await;
                r
            }
            Side::Pg(p, db) => {
                let c = p.client(db).await;
                let ns = if schema.is_empty() { "public" } else { schema };
                match c
                    .query(
                        &format!("SELECT id, k, v::text FROM \"{ns}\".\"{table}\" ORDER BY id"),
                        &[],
                    )
                    .await
                {
                    Ok(rows) => rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect(),
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// The daemon reading this side into `sink` (the body of `[tasks.sink]`).
    pub fn daemon(&self, name: &str, sink: &str, extra: &str) -> Daemon {
        // Each test keeps its positions apart (every test's task is `t`).
        let sink = format!("meta_schema = \"tm_{name}\"\n{sink}");
        let sink = sink.as_str();
        match self {
            Side::Maria(m, db) => {
                Daemon::mysql(name, &m.url(), &[&format!("{db}.*")], extra).with_sink(sink)
            }
            Side::Pg(p, db) => {
                Daemon::postgres(name, &p.url(db), &["public.*"], extra).with_sink(sink)
            }
        }
    }
}

/// Random small transactions on `table` until `stop`: inserts, updates of
/// `k`, key changes, deletes, on ids up to `max_id`. Returns the count.
pub async fn writer(
    side: Side,
    table: String,
    max_id: i64,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_new = max_id * 10 + seed as i64 * 1_000_000;
    let mut txs = 0;
    let mut maria = match side {
        Side::Maria(m, _) => Some(m.conn().await),
        _ => None,
    };
    let pg = match side {
        Side::Pg(p, db) => Some(p.client(db).await),
        _ => None,
    };
    let qualified = match side {
        Side::Maria(_, db) => format!("`{db}`.`{table}`"),
        Side::Pg(..) => table.clone(),
    };
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("START TRANSACTION;");
        for _ in 0..rng.random_range(1..4) {
            let id = rng.random_range(1..=max_id);
            sql.push_str(&match rng.random_range(0..4) {
                0 => {
                    next_new += 1;
                    format!("INSERT INTO {qualified} (id, k, v) VALUES ({next_new}, {id}, 'new');")
                }
                1 => format!("UPDATE {qualified} SET k = k + 1, v = 'upd' WHERE id = {id};"),
                2 => {
                    next_new += 1;
                    format!("UPDATE {qualified} SET id = {next_new}, v = 'moved' WHERE id = {id};")
                }
                _ => format!("DELETE FROM {qualified} WHERE id = {id};"),
            });
        }
        sql.push_str("COMMIT;");
        if let Some(c) = maria.as_mut() {
            c.query_drop(sql).await.unwrap();
        } else if let Some(c) = pg.as_ref() {
            c.batch_execute(&sql).await.unwrap();
        }
        txs += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(c) = maria {
        let _ = c.disconnect().await;
    }
    txs
}

/// Polls until `target`'s table equals `source`'s, at most `timeout`;
/// panics with the first differences and the daemon's log otherwise.
pub async fn wait_same(
    d: &Daemon,
    source: Side,
    target: Side,
    table: &str,
    target_schema: &str,
    timeout: Duration,
) -> Rows {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let want = source.rows("", table).await;
        let got = target.rows(target_schema, table).await;
        if want == got {
            return got;
        }
        if std::time::Instant::now() > deadline {
            let diff: Vec<String> = want
                .iter()
                .filter(|r| !got.contains(r))
                .take(5)
                .map(|r| format!("missing {r:?}"))
                .chain(
                    got.iter()
                        .filter(|r| !want.contains(r))
                        .take(5)
                        .map(|r| format!("extra {r:?}")),
                )
                .collect();
            panic!(
                "{table}: target ({} rows) differs from source ({} rows): {}\nlog:\n{}",
                got.len(),
                want.len(),
                diff.join("; "),
                d.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `[tasks.sink]` body for a MariaDB target.
pub fn maria_sink(m: &Mariadb, extra: &str) -> String {
    format!("type = \"mysql\"\nurl = \"{}\"\n{extra}", m.url())
}

/// `[tasks.sink]` body for a PostgreSQL target database.
pub fn pg_sink(p: &Postgres, db: &str, extra: &str) -> String {
    format!("type = \"postgres\"\nurl = \"{}\"\n{extra}", p.url(db))
}
