//! Value fidelity: a snapshot row carries exactly the JSON streaming gives
//! for the same row, for every type of Debezium's fixture tables and the
//! edge values beyond them. The same rows are captured twice — streamed as
//! they are written, then copied by a snapshot-only task — and compared
//! column by column.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Daemon, mariadb, postgres};

/// Rows per table: streamed changes replayed (an unchanged TOAST
/// placeholder keeps the value before), keyed by `id`.
fn streamed(lines: &[Value]) -> BTreeMap<(String, String), Value> {
    let mut rows: BTreeMap<(String, String), Value> = BTreeMap::new();
    for l in lines {
        let table = l["source"]["table"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match l["op"].as_str().unwrap_or_default() {
            "c" | "u" | "r" => {
                let mut after = l["after"].clone();
                let key = (table.clone(), after["id"].to_string());
                if let (Some(prev), Some(obj)) = (rows.get(&key), after.as_object_mut()) {
                    for (col, v) in obj.iter_mut() {
                        if v == "__debezium_unavailable_value" {
                            *v = prev.get(col).cloned().unwrap_or(Value::Null);
                        }
                    }
                }
                rows.insert(key, after);
            }
            "d" => {
                rows.remove(&(table, l["before"]["id"].to_string()));
            }
            // A truncate empties the table.
            "t" => rows.retain(|(t, _), _| *t != table),
            _ => {}
        }
    }
    rows
}

/// Compares every column of every row; returns the values compared.
fn compare(stream: &[Value], snapshot: &[Value]) -> usize {
    let want = streamed(stream);
    let got = streamed(snapshot);
    assert!(
        snapshot.iter().all(|l| l["op"] == "r"),
        "a snapshot-only task writes snapshot reads only"
    );
    let keys = |m: &BTreeMap<(String, String), Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&want), "the same rows");
    let mut values = 0;
    for (key, w) in &want {
        let g = &got[key];
        for (col, wv) in w.as_object().unwrap() {
            assert_eq!(&g[col], wv, "{key:?} column {col}: snapshot vs stream");
            values += 1;
        }
        // A column added after the row's last change (the fixture's ALTER
        // TABLE) is in the snapshot only.
        assert!(
            g.as_object().unwrap().len() >= w.as_object().unwrap().len(),
            "{key:?}"
        );
    }
    values
}

/// Waits until `d`'s output stops growing.
fn settled(d: &mut Daemon, at_least: usize) -> Vec<Value> {
    let mut last = d.wait_lines(at_least, Duration::from_secs(60)).len();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let n = d.lines().len();
        if n == last {
            return d.lines();
        }
        last = n;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_snapshot_rows_equal_streamed_rows_for_every_type() {
    use mysql_async::prelude::Queryable;
    let db = "snap_fx";
    let m = mariadb();
    m.exec(&format!("DROP DATABASE IF EXISTS {db}")).await;
    let mut stream = Daemon::mysql("snap_fx_stream", &m.url(), &[&format!("{db}.*")], "");
    stream.start();
    stream.wait_log("reading binlog", Duration::from_secs(30));
    let mut conn = m.conn().await;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await
        .unwrap();
    for (_, body) in crate::mysql::types::fixture_steps(db) {
        conn.query_drop(&body).await.unwrap();
    }
    conn.query_drop(format!(
        "SET sql_mode = '';
         CREATE TABLE {db}.e (
            id INT PRIMARY KEY, g GEOMETRY, cyr VARCHAR(20) CHARACTER SET cp1251,
            zh VARCHAR(20) CHARACTER SET gbk, u2 VARCHAR(20) CHARACTER SET ucs2,
            u32 VARCHAR(20) CHARACTER SET utf32, big_char CHAR(100) CHARACTER SET utf8mb4,
            long_latin VARCHAR(300) CHARACTER SET latin1, b64 BIT(64), t6 TIME(6), t0 TIME,
            dt3 DATETIME(3), ts0 TIMESTAMP NULL, d65 DECIMAL(65,30), d5 DECIMAL(5,5),
            dneg DECIMAL(10,0), f FLOAT, dbl DOUBLE, e ENUM('x','y'), s SET('a','b','c','d'),
            lb LONGBLOB, y YEAR, ti TINYINT UNSIGNED, mi MEDIUMINT, zd DATE, zdt DATETIME, bin BINARY(4)
         ) ENGINE=InnoDB;
         INSERT INTO {db}.e VALUES (1, ST_GeomFromText('POINT(1 2)'), 'Привет', '你好', 'Aé', 'A🦀',
            'ü', REPEAT('é', 300), x'FFFFFFFFFFFFFFFF', '-00:00:00.000001', '-838:59:59',
            '2024-01-01 00:00:00.123', '2024-01-01 00:00:00',
            '-12345678901234567890123456789012345.123456789012345678901234567890', 0.00001, -1234567890,
            -0.0, 2.2250738585072014E-308, 'nope', 'a,b,c,d', REPEAT(x'00FF', 5000), 1901, 255, -8388608,
            '0000-00-00', '0000-00-00 00:00:00', x'0100');
         INSERT INTO {db}.e (id, f, dbl) VALUES (2, 16777217, 0.1), (3, 3.4028235E38, -1.7976931348623157E308);"
    ))
    .await
    .unwrap();
    drop(conn);
    let streamed_lines = settled(&mut stream, 10);
    assert!(stream.stop().success(), "{}", stream.log());

    let mut copy = Daemon::mysql("snap_fx_copy", &m.url(), &[&format!("{db}.*")], "")
        .with_mode("snapshot", 2, 2);
    copy.start();
    assert!(
        copy.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        copy.log()
    );
    let values = compare(&streamed_lines, &copy.lines());
    assert!(values > 150, "compared {values} values only");
    eprintln!("{values} values: the snapshot's equal the stream's");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_snapshot_rows_equal_streamed_rows_for_every_type() {
    let db = "snap_fx_pg";
    let pg = postgres();
    pg.fresh_db(db).await;
    let (ddl, steps) = crate::postgres::types::fixture_sql();
    pg.exec(db, &ddl).await;
    pg.exec(
        db,
        "CREATE EXTENSION IF NOT EXISTS citext;
         CREATE TYPE snap_mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN snap_short AS varchar(5) CHECK (length(VALUE) > 0);
         CREATE TYPE snap_addr AS (street text, zip int4, tags text[], at timestamptz);
         CREATE TABLE e (
           id int PRIMARY KEY,
           arr2 int[][], arr_null text[], arr_enum snap_mood[], arr_date date[],
           dom snap_short, comp snap_addr, comp_arr snap_addr[],
           ci citext, pt point, rng int4range, tsv tsvector,
           d_inf date, d_bc date, ts_bc timestamp, tstz timestamptz(3),
           t24 time, tz timetz, iv interval, n_inf numeric, n_small numeric(5,5),
           f4 float4, f8 float8, mac8 macaddr8, jb jsonb, xm xml, ch \"char\",
           lsn pg_lsn, vb varbit, by bytea, u uuid, ip inet, money_col money
         );",
    )
    .await;
    let mut stream = Daemon::postgres("snap_fx_pg_s", &pg.url(db), &[], "");
    stream.start();
    crate::postgres::wait_streaming(&stream);
    for (_, body) in &steps {
        pg.exec(db, body).await;
    }
    pg.exec(
        db,
        r#"INSERT INTO e VALUES (1,
            '{{1,2,3},{4,NULL,6}}', '{NULL,"a,b","c\"d",""}', '{sad,happy}', '{2024-01-01,infinity}',
            'abc', ROW('Main "St"', 12345, '{x,NULL}', '2024-01-02 03:04:05.5+02'),
            ARRAY[ROW('a', 1, NULL, NULL)::snap_addr, NULL],
            'MiXeD', '(1.5,-2)', '[1,10)', 'a fat:2 cat',
            'infinity', '0044-03-15 BC', '0044-03-15 12:00:00 BC', '2024-01-02 03:04:05.678+05',
            '24:00:00', '23:59:59.999999-15:59', '1 year 2 mons 3 days 04:05:06.000001', 'NaN', 0.00001,
            '1.17549435e-38', '4.9e-324', '08:00:2b:01:02:03:04:05', '{"z": [1, 2.50, "\u00e9"], "a": null}',
            '<a>x</a>', 'q', '16/B374D848', B'0010', '\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            '192.168.0.1/24', 12.34)"#,
    )
    .await;
    let streamed_lines = settled(&mut stream, 10);
    assert!(stream.stop().success(), "{}", stream.log());

    let mut copy =
        Daemon::postgres("snap_fx_pg_c", &pg.url(db), &[], "").with_mode("snapshot", 2, 2);
    copy.start();
    assert!(
        copy.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        copy.log()
    );
    let values = compare(&streamed_lines, &copy.lines());
    assert!(values > 80, "compared {values} values only");
    eprintln!("{values} values: the snapshot's equal the stream's");
}
