//! Values through database targets: the Debezium fixture tables
//! round-trip bit-exact on the same engine (streamed, and copied into a
//! table the target creates), and follow docs/type-mapping.md across
//! engines; what a target can't hold is refused with the reason.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::{Side, maria_sink, pg_sink};
use crate::mysql::types::fixture_steps;
use crate::postgres::types::fixture_sql;
use crate::support::{Daemon, Mariadb, Postgres, mariadb, postgres};

/// Every row of `db.table` ordered by id, each value as text (hex for
/// bytes that aren't UTF-8), NULL as `None`.
async fn maria_table(m: &Mariadb, db: &str, table: &str) -> Vec<Vec<Option<String>>> {
    let mut c = m.conn().await;
    let rows: Vec<mysql_async::Row> = c
        .query(format!("SELECT * FROM `{db}`.`{table}` ORDER BY id"))
        .await
        .unwrap_or_default();
    let _ = c.disconnect().await;
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(match String::from_utf8(b.clone()) {
                        Ok(s) => s,
                        Err(_) => b.iter().map(|x| format!("{x:02x}")).collect(),
                    }),
                    other => Some(other.as_sql(true)),
                })
                .collect()
        })
        .collect()
}

/// Every row of `schema.table` as PostgreSQL's text of the whole row.
async fn pg_table(p: &Postgres, db: &str, table: &str) -> Vec<String> {
    let c = p.client(db).await;
    match c
        .query(&format!("SELECT t::text FROM {table} t ORDER BY id"), &[])
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(),
    }
}

async fn until<F, Fut, T>(d: &Daemon, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: timed out\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_fixture_streams_bit_exact_to_mariadb() {
    let m = mariadb();
    let (db, dr) = ("tg_tym", "tg_tym_dr");
    m.exec(&format!(
        "DROP DATABASE IF EXISTS `{db}`; DROP DATABASE IF EXISTS `{dr}`"
    ))
    .await;
    Side::Maria(m, dr).forget_positions(db).await;
    m.exec(&format!("CREATE DATABASE `{db}`")).await;
    let sink = maria_sink(m, &format!("map = {{ {db} = \"{dr}\" }}"));
    let mut d = Side::Maria(m, db).daemon(db, &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    m.exec(&format!("DROP DATABASE `{db}`")).await;
    for (_, sql) in fixture_steps(db) {
        m.exec(&sql).await;
    }
    for table in ["types", "tx_other"] {
        let want = maria_table(m, db, table).await;
        assert!(
            table == "tx_other" || !want.is_empty(),
            "{table} has rows on the source"
        );
        until(&d, table, || async {
            let got = maria_table(m, dr, table).await;
            (got == want).then_some(())
        })
        .await;
    }
    assert_eq!(
        maria_table(m, dr, "types").await.len(),
        3,
        "rows 1, 3 and 4"
    );
    assert!(d.stop().success(), "{}", d.log());
    assert!(
        !d.log().contains("conflict"),
        "every before image matched the target row:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_fixture_copies_bit_exact_into_a_created_table() {
    let m = mariadb();
    let (db, dr) = ("tg_tyc", "tg_tyc_dr");
    m.exec(&format!(
        "DROP DATABASE IF EXISTS `{db}`; DROP DATABASE IF EXISTS `{dr}`"
    ))
    .await;
    Side::Maria(m, dr).forget_positions(db).await;
    for (_, sql) in fixture_steps(db) {
        m.exec(&sql).await;
    }
    let sink = maria_sink(m, &format!("map = {{ {db} = \"{dr}\" }}"));
    let mut d = Side::Maria(m, db)
        .daemon(db, &sink, "")
        .with_mode("snapshot", 100, 2);
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", d.log());
    for table in ["types", "tx_other"] {
        let want = maria_table(m, db, table).await;
        assert!(
            table == "tx_other" || !want.is_empty(),
            "{table} has rows on the source"
        );
        assert_eq!(maria_table(m, dr, table).await, want, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_fixture_streams_bit_exact_to_postgres() {
    let p = postgres();
    let (db, dr) = ("tg_typ", "tg_typ_dr");
    let (ddl, steps) = fixture_sql();
    for d in [db, dr] {
        p.fresh_db(d).await;
        p.exec(d, &ddl).await;
    }
    // Whole before images: every column of the updated rows is compared
    // with the target's (conflict.compare_before).
    p.exec(db, "ALTER TABLE types REPLICA IDENTITY FULL").await;
    let sink = pg_sink(p, dr, "");
    let mut d = Side::Pg(p, db)
        .daemon(db, &sink, "")
        .with_mode("snapshot+stream", 100, 2);
    d.start();
    d.wait_log("reading WAL", Duration::from_secs(30));
    for (step, sql) in &steps {
        if step == "S10" {
            // Logical decoding carries no DDL: as with PostgreSQL's own
            // subscriptions, the operator alters the target too.
            p.exec(dr, sql).await;
        }
        p.exec(db, sql).await;
    }
    for table in ["types", "tx_other", "toast_t"] {
        let want = pg_table(p, db, table).await;
        assert!(
            table == "tx_other" || !want.is_empty(),
            "{table} has rows on the source"
        );
        until(&d, table, || async {
            let got = pg_table(p, dr, table).await;
            (got == want).then_some(())
        })
        .await;
    }
    assert!(
        pg_table(p, dr, "toast_t").await[0].len() > 20_000,
        "the unchanged TOAST value stayed on the target"
    );
    assert!(d.stop().success(), "{}", d.log());
    assert!(
        !d.log().contains("conflict"),
        "every before image matched the target row:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_values_follow_the_mapping_into_postgres() {
    let (m, p) = (mariadb(), postgres());
    let (db, dr) = ("tg_tymp", "tg_tymp_dr");
    m.exec(&format!("DROP DATABASE IF EXISTS `{db}`")).await;
    p.fresh_db(dr).await;
    // Rows 1 and 2 (the extremes); row 3's zero dates are refused below.
    for (step, sql) in fixture_steps(db) {
        if ["S01", "S02", "S03", "S04", "S05"].contains(&step.as_str()) {
            m.exec(&sql).await;
        }
    }
    let sink = pg_sink(p, dr, "");
    let mut d = Side::Maria(m, db)
        .daemon(db, &sink, "")
        .with_mode("snapshot", 100, 2);
    d.start();
    assert!(
        d.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        d.log()
    );
    let c = p.client(dr).await;
    let q = |col: &str, id: i32| {
        let c = &c;
        let sql = format!("SELECT {col}::text FROM {db}.types WHERE id = {id}");
        async move {
            c.query_one(&sql, &[])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
        }
    };
    for (col, id, want) in [
        ("c_bigint_u", 1, "18446744073709551615"),
        ("c_tinyint_u", 1, "255"),
        ("c_decimal", 1, "12345678901234567890123456789.123456789"),
        ("c_decimal", 2, "-99999999999999999999999999999.999999999"),
        ("c_double", 1, "1.7976931348623157e+308"),
        ("c_bit10", 1, "1010101011"),
        ("c_enum", 1, "medium"),
        ("c_set", 1, "a,c"),
        ("c_varchar", 1, "🦀 tide 🌊 ünï"),
        ("c_varchar_latin1", 1, "café"),
        ("c_blob", 1, "\\x0001020304"),
        ("c_date", 2, "1000-01-01"),
        ("c_time", 1, "12:34:56.789"),
        ("c_time", 2, "-838:59:59.999"),
        ("c_datetime", 2, "9999-12-31 23:59:59.999999"),
        ("c_timestamp", 1, "2038-01-19 03:14:07.999999+00"),
        ("c_year", 1, "2155"),
        ("c_json", 2, "[]"),
    ] {
        assert_eq!(q(col, id).await.as_deref(), Some(want), "{col} of row {id}");
    }
    assert_eq!(q("c_null", 1).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_values_follow_the_mapping_into_mariadb() {
    let (m, p) = (mariadb(), postgres());
    let (db, dr) = ("tg_typm", "tg_typm_dr");
    let (ddl, steps) = fixture_sql();
    p.fresh_db(db).await;
    p.exec(db, &ddl).await;
    m.exec(&format!("DROP DATABASE IF EXISTS `{dr}`")).await;
    Side::Maria(m, dr).forget_positions(db).await;
    // Row 1 only: row 2's NaN/infinity values are refused (see below).
    p.exec(db, &steps[0].1).await;
    let sink = maria_sink(m, &format!("map = {{ public = \"{dr}\" }}"));
    let mut d = Side::Pg(p, db)
        .daemon(db, &sink, "")
        .with_mode("snapshot", 100, 2);
    d.start();
    assert!(
        d.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        d.log()
    );
    let row = maria_table(m, dr, "types").await;
    let names: Vec<String> = {
        let mut c = m.conn().await;
        let n: Vec<String> = c
            .query(format!("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{dr}' AND TABLE_NAME = 'types' ORDER BY ORDINAL_POSITION"))
            .await
            .unwrap();
        let _ = c.disconnect().await;
        n
    };
    let get = |col: &str| {
        let i = names
            .iter()
            .position(|n| n == col)
            .unwrap_or_else(|| panic!("column {col}"));
        row[0][i].clone()
    };
    for (col, want) in [
        ("c_bool", "1"),
        ("c_int8", "9223372036854775807"),
        ("c_numeric_p", "12345678901234567890123456789.123456789"),
        ("c_text", "🦀 tide 🌊 ünï"),
        ("c_bytea", "deadbeef00"),
        ("c_date", "2024-02-29"),
        ("c_time", "12:34:56.789012"),
        ("c_timestamp", "2024-02-29 23:59:59.999999"),
        ("c_timestamptz", "2024-02-29 21:59:59.999999"),
        ("c_interval", "P1Y2M3DT4H5M6.789S"),
        ("c_uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("c_inet", "2001:db8::1"),
        ("c_int_arr", "[1,null,3]"),
        ("c_text_arr", "[\"a\",\"b c\",\"\"]"),
        ("c_enum", "happy"),
    ] {
        assert_eq!(get(col).as_deref(), Some(want), "{col}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_the_target_cannot_hold_is_refused_with_the_reason() {
    let (m, p) = (mariadb(), postgres());
    let (db, dr) = ("tg_tyz", "tg_tyz_dr");
    m.exec(&format!("DROP DATABASE IF EXISTS `{db}`")).await;
    p.fresh_db(dr).await;
    m.exec(&format!(
        "CREATE DATABASE `{db}`; SET SESSION sql_mode = ''; CREATE TABLE `{db}`.z (id INT PRIMARY KEY, d DATE); INSERT INTO `{db}`.z VALUES (1, '0000-00-00');"
    ))
    .await;
    let sink = pg_sink(p, dr, "");
    let mut d = Side::Maria(m, db)
        .daemon(db, &sink, "")
        .with_mode("snapshot", 100, 1);
    d.start();
    assert!(!d.wait_exit(Duration::from_secs(60)).success());
    let log = d.log();
    assert!(
        log.contains("column d (date) of tg_tyz.z: zero date 0000-00-00 has no PostgreSQL value"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_edge_values_stream_bit_exact_to_mariadb() {
    // Charsets, geometry, BIT(64), negative TIME fractions, DECIMAL(65,30),
    // -0.0, a 1 MB text, a 100 kB blob: replayed DDL, values bit-exact.
    let m = mariadb();
    let (db, dr) = ("tg_edge", "tg_edge_dr");
    m.exec(&format!(
        "DROP DATABASE IF EXISTS `{db}`; DROP DATABASE IF EXISTS `{dr}`; CREATE DATABASE `{db}`"
    ))
    .await;
    Side::Maria(m, dr).forget_positions(db).await;
    let sink = maria_sink(m, &format!("map = {{ {db} = \"{dr}\" }}"));
    let mut d = Side::Maria(m, db).daemon(db, &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    m.exec(&format!(
        "CREATE TABLE {db}.e (
            id INT PRIMARY KEY, g GEOMETRY, cyr VARCHAR(20) CHARACTER SET cp1251,
            zh VARCHAR(20) CHARACTER SET gbk, u2 VARCHAR(20) CHARACTER SET ucs2,
            u32 VARCHAR(20) CHARACTER SET utf32, big_char CHAR(100) CHARACTER SET utf8mb4,
            long_latin VARCHAR(300) CHARACTER SET latin1, b64 BIT(64), t6 TIME(6), t0 TIME,
            dt3 DATETIME(3), ts0 TIMESTAMP NULL, d65 DECIMAL(65,30), d5 DECIMAL(5,5),
            dneg DECIMAL(10,0), f FLOAT, dbl DOUBLE, s SET('a','b','c','d'), lb LONGBLOB,
            lt LONGTEXT, y YEAR, ti TINYINT UNSIGNED, mi MEDIUMINT
        ) ENGINE=InnoDB"
    ))
    .await;
    let big_text = "ü".repeat(1_000_000);
    let mut conn = m.conn().await;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await
        .unwrap();
    conn.exec_drop(
        format!(
            "INSERT INTO {db}.e VALUES (1, ST_GeomFromText('POINT(1 2)', 4326), 'Привет', '你好', 'Aé', 'A🦀',
                'ü', REPEAT('é', 300), x'FFFFFFFFFFFFFFFF', '-00:00:00.000001', '-12:00:00',
                '2024-01-01 00:00:00.123', '2024-01-01 00:00:00',
                '-12345678901234567890123456789012345.123456789012345678901234567890', 0.00001, -1234567890,
                -0.0, 2.2250738585072014E-308, 'a,b,c,d', REPEAT(x'00FF', 50000), ?, 1901, 255, -8388608)"
        ),
        (big_text.as_str(),),
    )
    .await
    .unwrap();
    conn.query_drop(format!(
        "UPDATE {db}.e SET t0 = '838:59:59', y = 2155 WHERE id = 1"
    ))
    .await
    .unwrap();
    let _ = conn.disconnect().await;
    let want = maria_table(m, db, "e").await;
    assert_eq!(want.len(), 1);
    until(&d, "the edge row", || async {
        (maria_table(m, dr, "e").await == want).then_some(())
    })
    .await;
    assert!(d.stop().success(), "{}", d.log());
    assert!(
        !d.log().contains("conflict"),
        "every before image matched the target row:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn created_tables_carry_the_postgres_sources_unique_keys() {
    let (m, p) = (mariadb(), postgres());
    let db = "tg_uniq";
    p.fresh_db(db).await;
    p.fresh_db("tg_uniq_dr").await;
    p.exec(
        db,
        "CREATE TABLE u (id int PRIMARY KEY, code text NOT NULL UNIQUE, a int, b int, v int, UNIQUE (a, b));
         INSERT INTO u VALUES (1, 'x', 1, 1, 0), (2, 'y', 1, 2, 0);",
    )
    .await;
    m.exec("DROP DATABASE IF EXISTS tg_uniq_dr").await;
    Side::Maria(m, "tg_uniq_dr")
        .forget_positions("tg_uniqm")
        .await;
    // PostgreSQL → MariaDB and PostgreSQL → PostgreSQL, both creating `u`.
    let to_maria = maria_sink(m, "map = { public = \"tg_uniq_dr\" }");
    let mut d = Side::Pg(p, db)
        .daemon("tg_uniqm", &to_maria, "")
        .with_mode("snapshot", 100, 1);
    d.start();
    assert!(
        d.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        d.log()
    );
    let to_pg = pg_sink(p, "tg_uniq_dr", "");
    let mut d = Side::Pg(p, db)
        .daemon("tg_uniqp", &to_pg, "")
        .with_mode("snapshot", 100, 1);
    d.start();
    assert!(
        d.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        d.log()
    );
    let mut c = m.conn().await;
    let maria: Vec<(String, String)> = c
        .query(
            "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS
              WHERE TABLE_SCHEMA = 'tg_uniq_dr' AND TABLE_NAME = 'u' AND NON_UNIQUE = 0
              GROUP BY INDEX_NAME ORDER BY 2",
        )
        .await
        .unwrap();
    let _ = c.disconnect().await;
    let cols: Vec<&str> = maria.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(cols, vec!["a,b", "code", "id"], "{maria:?}");
    let pc = p.client("tg_uniq_dr").await;
    let rows = pc
        .query(
            "SELECT array_to_string(array_agg(a.attname::text ORDER BY k.ord), ',')
               FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = 'public.u'::regclass AND i.indisunique
              GROUP BY i.indexrelid ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let pg: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(pg, vec!["a,b", "code", "id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_created_by_a_mariadb_snapshot_carry_its_unique_keys() {
    let (m, p) = (mariadb(), postgres());
    let db = "tg_uniqmb";
    m.exec(&format!(
        "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`;
         CREATE TABLE `{db}`.u (id INT PRIMARY KEY, code VARCHAR(20) NOT NULL UNIQUE, a INT, b INT, UNIQUE KEY ab (a, b));
         INSERT INTO `{db}`.u VALUES (1, 'x', 1, 1), (2, 'y', 1, 2);"
    ))
    .await;
    p.fresh_db("tg_uniqmb_dr").await;
    let sink = pg_sink(p, "tg_uniqmb_dr", "");
    let mut d = Side::Maria(m, db)
        .daemon(db, &sink, "")
        .with_mode("snapshot", 100, 1);
    d.start();
    assert!(
        d.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        d.log()
    );
    let pc = p.client("tg_uniqmb_dr").await;
    let rows = pc
        .query(
            "SELECT array_to_string(array_agg(a.attname::text ORDER BY k.ord), ',')
               FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = 'tg_uniqmb.u'::regclass AND i.indisunique
              GROUP BY i.indexrelid ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let pg: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(pg, vec!["a,b", "code", "id"]);
}

/// `SELECT <cols>` of row `id` on PostgreSQL database `db`, each as text.
async fn pg_row(p: &Postgres, db: &str, sql: &str) -> Vec<Option<String>> {
    let c = p.client(db).await;
    let row = c.query_one(sql, &[]).await.unwrap();
    (0..row.len()).map(|i| row.get(i)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn created_tables_and_columns_carry_the_postgres_sources_defaults() {
    // Constants and the insert time travel; a sequence doesn't. A column
    // the source gains with a default gives the target's existing rows
    // that default, as the source's got it (no row change carries it).
    let (m, p) = (mariadb(), postgres());
    let db = "tg_defp";
    p.fresh_db(db).await;
    p.fresh_db("tg_defp_dr").await;
    p.exec(
        db,
        "CREATE TABLE u (id int PRIMARY KEY, s text DEFAULT 'it''s', n numeric(6,2) DEFAULT 1.5,
                         b boolean DEFAULT true, j jsonb DEFAULT '{}', t timestamptz DEFAULT now(),
                         q bigserial);
         INSERT INTO u (id) VALUES (1), (2);
         CREATE TABLE w (id int PRIMARY KEY, x numeric DEFAULT 'NaN', y int DEFAULT 4);
         INSERT INTO w (id, x) VALUES (1, 1);",
    )
    .await;
    m.exec("DROP DATABASE IF EXISTS tg_defp_dr").await;
    Side::Maria(m, "tg_defp_dr")
        .forget_positions("tg_defpm")
        .await;
    let to_maria = maria_sink(m, "map = { public = \"tg_defp_dr\" }");
    let mut dm =
        Side::Pg(p, db)
            .daemon("tg_defpm", &to_maria, "")
            .with_mode("snapshot+stream", 100, 1);
    let mut dp = Side::Pg(p, db)
        .daemon("tg_defpp", &pg_sink(p, "tg_defp_dr", ""), "")
        .with_mode("snapshot+stream", 100, 1);
    for d in [&mut dm, &mut dp] {
        d.start();
        d.wait_log(
            "initial snapshot: every table copied",
            Duration::from_secs(60),
        );
    }
    p.exec(
        db,
        "ALTER TABLE u ADD COLUMN extra int DEFAULT 7; INSERT INTO u (id) VALUES (3)",
    )
    .await;
    // PostgreSQL target: the declared defaults, and the new column's.
    until(&dp, "row 3 on PostgreSQL", || async {
        let c = p.client("tg_defp_dr").await;
        let n = c
            .query_one("SELECT count(*) FROM u WHERE id = 3", &[])
            .await
            .ok()?
            .get::<_, i64>(0);
        (n == 1).then_some(())
    })
    .await;
    p.exec("tg_defp_dr", "INSERT INTO u (id, q) VALUES (100, 0)")
        .await;
    assert_eq!(
        pg_row(
            p,
            "tg_defp_dr",
            "SELECT s, n::text, b::text, j::text, (t IS NOT NULL)::text FROM u WHERE id = 100"
        )
        .await,
        ["it's", "1.50", "true", "{}", "true"].map(|s| Some(s.to_string()))
    );
    assert_eq!(
        pg_row(
            p,
            "tg_defp_dr",
            "SELECT string_agg(extra::text, ',' ORDER BY id) FROM u WHERE id < 100"
        )
        .await,
        vec![Some("7,7,7".to_string())],
        "existing rows took the new column's default"
    );
    let c = p.client("tg_defp_dr").await;
    let q: Option<String> = c
        .query_one(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = 'public.u'::regclass AND a.attname = 'q'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(q, None, "a sequence stays on the source");
    // MariaDB target.
    until(&dm, "row 3 on MariaDB", || async {
        let mut c = m.conn().await;
        let n: Option<i64> = c
            .query_first("SELECT count(*) FROM tg_defp_dr.u WHERE id = 3")
            .await
            .ok()
            .flatten();
        let _ = c.disconnect().await;
        (n == Some(1)).then_some(())
    })
    .await;
    let mut c = m.conn().await;
    c.query_drop("INSERT INTO tg_defp_dr.u (id, q) VALUES (100, 0)")
        .await
        .unwrap();
    let row: Option<(String, String, i64, String, i64)> = c
        .query_first(
            "SELECT s, CAST(n AS CHAR), b, j, t IS NOT NULL FROM tg_defp_dr.u WHERE id = 100",
        )
        .await
        .unwrap();
    let extra: Option<String> = c
        .query_first("SELECT GROUP_CONCAT(extra ORDER BY id) FROM tg_defp_dr.u WHERE id < 100")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert_eq!(row, Some(("it's".into(), "1.50".into(), 1, "{}".into(), 1)));
    assert_eq!(extra.as_deref(), Some("7,7,7"));
    // MariaDB has no numeric NaN: `w` is created without its defaults.
    let mut c = m.conn().await;
    let w: Option<i64> = c
        .query_first("SELECT count(*) FROM tg_defp_dr.w")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert_eq!(w, Some(1));
    assert!(
        dm.log()
            .contains("the target refused a default of the source's columns"),
        "{}",
        dm.log()
    );
    for d in [&mut dm, &mut dp] {
        assert!(d.stop().success(), "{}", d.log());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn created_tables_and_columns_carry_the_mariadb_sources_defaults() {
    let (m, p) = (mariadb(), postgres());
    let db = "tg_defm";
    m.exec(&format!(
        "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`;
         CREATE TABLE `{db}`.u (id INT PRIMARY KEY, s VARCHAR(20) DEFAULT 'it''s', n DECIMAL(6,2) DEFAULT 1.50,
                                e ENUM('x','y') DEFAULT 'y', dt DATETIME(3) DEFAULT CURRENT_TIMESTAMP(3),
                                h INT DEFAULT (1 + 2));
         INSERT INTO `{db}`.u (id) VALUES (1), (2);"
    ))
    .await;
    p.fresh_db("tg_defm_dr").await;
    let mut d = Side::Maria(m, db)
        .daemon(db, &pg_sink(p, "tg_defm_dr", ""), "")
        .with_mode("snapshot+stream", 100, 1);
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(60),
    );
    m.exec(&format!(
        "ALTER TABLE `{db}`.u ADD COLUMN extra INT NOT NULL DEFAULT 7; INSERT INTO `{db}`.u (id) VALUES (3)"
    ))
    .await;
    until(&d, "row 3", || async {
        let c = p.client("tg_defm_dr").await;
        let n = c
            .query_one("SELECT count(*) FROM tg_defm.u WHERE id = 3", &[])
            .await
            .ok()?
            .get::<_, i64>(0);
        (n == 1).then_some(())
    })
    .await;
    p.exec("tg_defm_dr", "INSERT INTO tg_defm.u (id) VALUES (100)")
        .await;
    assert_eq!(
        pg_row(
            p,
            "tg_defm_dr",
            "SELECT s, n::text, e, (dt IS NOT NULL)::text, h::text FROM tg_defm.u WHERE id = 100"
        )
        .await,
        vec![
            Some("it's".into()),
            Some("1.50".into()),
            Some("y".into()),
            Some("true".into()),
            None
        ],
        "an expression default stays on the source"
    );
    assert_eq!(
        pg_row(
            p,
            "tg_defm_dr",
            "SELECT string_agg(extra::text, ',' ORDER BY id) FROM tg_defm.u WHERE id < 100"
        )
        .await,
        vec![Some("7,7,7".to_string())],
        "existing rows took the new column's default"
    );
    assert!(d.stop().success(), "{}", d.log());
}
