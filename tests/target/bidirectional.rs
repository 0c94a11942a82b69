//! A bidirectional pair: A → B and B → A under writes on both sides
//! converge, and neither task sends the other's changes back (PostgreSQL:
//! replication origins; MariaDB: the skip-replication flag).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::{Side, maria_sink, pg_sink};
use crate::support::{mariadb, postgres};

/// Inserts new rows (ids from `base`) and updates its own rows until `stop`.
async fn side_writer(side: Side, base: i64, stop: Arc<AtomicBool>) -> i64 {
    let mut n = 0i64;
    let mut maria = match side {
        Side::Maria(m, _) => Some(m.conn().await),
        _ => None,
    };
    let pg = match side {
        Side::Pg(p, db) => Some(p.client(db).await),
        _ => None,
    };
    let t = match side {
        Side::Maria(_, db) => format!("`{db}`.t"),
        Side::Pg(..) => "t".into(),
    };
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = base + n;
        let sql = format!(
            "START TRANSACTION; INSERT INTO {t} (id, k, v) VALUES ({id}, 0, 'new'); UPDATE {t} SET k = k + 1 WHERE id = {}; COMMIT;",
            base + 1 + n / 2
        );
        if let Some(c) = maria.as_mut() {
            c.query_drop(sql).await.unwrap();
        } else if let Some(c) = pg.as_ref() {
            c.batch_execute(&sql).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    if let Some(c) = maria {
        let _ = c.disconnect().await;
    }
    n
}

async fn pair(a: Side, b: Side, ab_sink: &str, ba_sink: &str, names: (&str, &str), exclude: &str) {
    for s in [a, b] {
        s.fresh().await;
        s.load("t", 0).await;
    }
    a.forget_positions(names.1).await;
    b.forget_positions(names.0).await;
    let mut ab = a.daemon(names.0, ab_sink, "").with_source_option(exclude);
    let mut ba = b.daemon(names.1, ba_sink, "").with_source_option(exclude);
    ab.start();
    ba.start();
    for d in [&ab, &ba] {
        let what = if matches!(a, Side::Pg(..)) {
            "reading WAL"
        } else {
            "reading binlog"
        };
        d.wait_log(what, Duration::from_secs(30));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let wa = tokio::spawn(side_writer(a, 1_000_000, stop.clone()));
    let wb = tokio::spawn(side_writer(b, 2_000_000, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (na, nb) = (wa.await.unwrap(), wb.await.unwrap());
    assert!(na > 50 && nb > 50, "both sides wrote ({na}, {nb})");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (ra, rb) = (a.rows("", "t").await, b.rows("", "t").await);
        if ra == rb && ra.len() as i64 == na + nb {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sides did not converge: A has {} rows, B {} (written {na} + {nb})\nA→B:\n{}\nB→A:\n{}",
            ra.len(),
            rb.len(),
            ab.log(),
            ba.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // An echo would come back as conflicts (a row inserted twice) and
    // keep both tasks busy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for d in [&ab, &ba] {
        assert!(
            !d.log().contains("conflict"),
            "no change came back:\n{}",
            d.log()
        );
    }
    assert!(ab.stop().success(), "{}", ab.log());
    assert!(ba.stop().success(), "{}", ba.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_pair_converges_without_echo() {
    let m = mariadb();
    let (a, b) = (Side::Maria(m, "tg_bda"), Side::Maria(m, "tg_bdb"));
    let ab = maria_sink(m, "map = { tg_bda = \"tg_bdb\" }");
    let ba = maria_sink(m, "map = { tg_bdb = \"tg_bda\" }");
    pair(
        a,
        b,
        &ab,
        &ba,
        ("tg_bda", "tg_bdb"),
        "exclude_replicated = true",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_pair_converges_without_echo() {
    let p = postgres();
    let (a, b) = (Side::Pg(p, "tg_bpa"), Side::Pg(p, "tg_bpb"));
    let ab = pg_sink(p, "tg_bpb", "origin = \"tidemark_tg_bpa\"");
    let ba = pg_sink(p, "tg_bpa", "origin = \"tidemark_tg_bpb\"");
    pair(
        a,
        b,
        &ab,
        &ba,
        ("tg_bpa", "tg_bpb"),
        "exclude_replicated = true",
    )
    .await;
}
