//! Every MySQL/MariaDB column type against a real MariaDB, compared field by
//! field with Debezium's output for the same SQL (tests/fixtures/debezium),
//! plus edge values the fixture doesn't cover.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Daemon, mariadb};

/// The fixture's SQL steps (S01..S12), with the database renamed.
pub fn fixture_steps(db: &str) -> Vec<(String, String)> {
    let sql = std::fs::read_to_string(
        crate::support::repo_root().join("tests/fixtures/debezium/mariadb/setup.sql"),
    )
    .unwrap();
    let mut steps = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in sql.lines() {
        if let Some(rest) = line.strip_prefix("-- S") {
            if let Some(c) = current.take() {
                steps.push(c);
            }
            current = Some((format!("S{}", &rest[..2]), String::new()));
        } else if line.starts_with("-- variant") {
            break;
        } else if let Some((_, body)) = current.as_mut()
            && !line.starts_with("--")
        {
            body.push_str(&line.replace("fxdb", db));
            body.push('\n');
        }
    }
    steps.extend(current);
    steps
}

fn wait_streaming(d: &Daemon) {
    d.wait_log("reading binlog", Duration::from_secs(30));
}

/// Debezium records that carry row data or DDL, in order (no transaction
/// metadata, no tombstones).
fn debezium_records() -> Vec<Value> {
    let text = std::fs::read_to_string(
        crate::support::repo_root().join("tests/fixtures/debezium/mariadb/noschemas.jsonl"),
    )
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["topic"] != "fx.transaction" && !r["value"].is_null())
        .filter(|r| {
            r["sql_step"] != json!("S00 engine start (initial snapshot)")
                && !r["sql_step"].as_str().unwrap().starts_with("S00")
        })
        .collect()
}

/// Where tidemark deliberately differs from Debezium's defaults because
/// those lose data (docs/json-format.md): returns tidemark's expected value.
pub fn expected(column: &str, dbz: &Value, step: &str) -> Value {
    match (column, step) {
        // BIGINT UNSIGNED max: exact, where Debezium's `long` mode wraps to -1.
        ("c_bigint_u", _) if dbz == &json!(-1) => json!(18446744073709551615u64),
        // DECIMAL: exact text (decimal.handling.mode=string), not base64 bytes.
        ("c_decimal", _) if dbz == &json!("CUmw9vACMxPESZBQ5NhfFQ==") => {
            json!("12345678901234567890123456789.123456789")
        }
        ("c_decimal", _) if dbz == &json!("tMSzV6V5O4X2dd3AAAAAAQ==") => {
            json!("-99999999999999999999999999999.999999999")
        }
        // Zero dates are kept (Debezium: null, or the column default).
        ("c_date" | "c_date_nn", s) if s.starts_with("S06") => json!("0000-00-00"),
        ("c_datetime0", s) if s.starts_with("S06") => json!("0000-00-00 00:00:00"),
        ("c_datetime" | "c_timestamp", s) if s.starts_with("S06") => {
            json!("0000-00-00 00:00:00.000000")
        }
        // YEAR 0 is MySQL's '0000', not 1900.
        ("c_year", s) if s.starts_with("S06") => json!(0),
        // BOOLEAN is TINYINT(1): the binlog says TINYINT, so the number is
        // written (as Debezium does when it learns the table from the server).
        ("c_bool", _) if dbz == &json!(true) => json!(1),
        ("c_bool", _) if dbz == &json!(false) => json!(0),
        _ => dbz.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_type_matches_debezium() {
    let db = "fx_types";
    let m = mariadb();
    m.exec(&format!("DROP DATABASE IF EXISTS {db}")).await;
    let mut d = Daemon::mysql("fixture_types", &m.url(), &[&format!("{db}.*")], "");
    d.start();
    wait_streaming(&d);

    let mut conn = m.conn().await;
    use mysql_async::prelude::Queryable;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await
        .unwrap();
    for (_, body) in fixture_steps(db) {
        conn.query_drop(&body).await.unwrap();
    }
    drop(conn);

    let dbz = debezium_records();
    let ours = d.wait_lines(dbz.len(), Duration::from_secs(30));
    assert_eq!(ours.len(), dbz.len(), "{ours:#?}");
    let mut rows_compared = 0;
    for (o, r) in ours.iter().zip(&dbz) {
        let step = r["sql_step"].as_str().unwrap();
        let v = &r["value"];
        if v.get("ddl").is_some() {
            assert_eq!(
                o["ddl"],
                json!(v["ddl"].as_str().unwrap().replace("fxdb", db)),
                "{step}"
            );
            assert_eq!(o["databaseName"], json!(db), "{step}");
            continue;
        }
        assert_eq!(o["op"], v["op"], "{step}");
        for (field, want) in [
            ("connector", json!("mariadb")),
            ("db", json!(db)),
            ("table", v["source"]["table"].clone()),
            ("server_id", json!(1)),
            ("snapshot", json!("false")),
            ("row", v["source"]["row"].clone()),
        ] {
            assert_eq!(o["source"][field], want, "{step} source.{field}");
        }
        let gtid = o["source"]["gtid"].as_str().unwrap();
        assert!(gtid.starts_with("0-1-"), "{gtid}");
        assert_eq!(o["transaction"]["id"], json!(gtid));
        assert_eq!(
            o["transaction"]["total_order"], v["transaction"]["total_order"],
            "{step}"
        );
        assert_eq!(
            o["transaction"]["data_collection_order"], v["transaction"]["data_collection_order"],
            "{step}"
        );
        for image in ["before", "after"] {
            match (&o[image], &v[image]) {
                (Value::Null, Value::Null) => {}
                (Value::Object(ours), Value::Object(theirs)) => {
                    assert_eq!(ours.len(), theirs.len(), "{step} {image} column count");
                    for (col, dbz_value) in theirs {
                        let want = expected(col, dbz_value, step);
                        let got = &ours[col];
                        let same = match (got, &want) {
                            // Floats compare as numbers: Jackson writes 1.7976931348623157E308.
                            (Value::Number(a), Value::Number(b)) => {
                                a.as_f64() == b.as_f64() && (a.is_f64() || a == b)
                            }
                            _ => got == &want,
                        };
                        assert!(
                            same,
                            "{step} {image}.{col}: tidemark {got} / expected {want} (Debezium {dbz_value})"
                        );
                        rows_compared += 1;
                    }
                }
                (a, b) => panic!("{step} {image}: tidemark {a} / Debezium {b}"),
            }
        }
    }
    assert!(rows_compared > 200, "compared only {rows_compared} values");
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_values_beyond_the_fixture() {
    let db = "edge_types";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.e (
            id INT PRIMARY KEY,
            g GEOMETRY,
            cyr VARCHAR(20) CHARACTER SET cp1251,
            zh VARCHAR(20) CHARACTER SET gbk,
            u2 VARCHAR(20) CHARACTER SET ucs2,
            u32 VARCHAR(20) CHARACTER SET utf32,
            big_char CHAR(100) CHARACTER SET utf8mb4,
            long_latin VARCHAR(300) CHARACTER SET latin1,
            b64 BIT(64),
            t6 TIME(6),
            t0 TIME,
            dt3 DATETIME(3),
            ts0 TIMESTAMP NULL,
            d65 DECIMAL(65,30),
            d5 DECIMAL(5,5),
            dneg DECIMAL(10,0),
            f FLOAT,
            dbl DOUBLE,
            e ENUM('x','y'),
            s SET('a','b','c','d'),
            lb LONGBLOB,
            lt LONGTEXT,
            y YEAR,
            ti TINYINT UNSIGNED,
            mi MEDIUMINT
        ) ENGINE=InnoDB"
    ))
    .await;
    let mut d = Daemon::mysql("edge_types", &m.url(), &[&format!("{db}.*")], "");
    d.start();
    wait_streaming(&d);
    let big_text = "ü".repeat(1_000_000);
    let mut conn = m.conn().await;
    use mysql_async::prelude::Queryable;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = ''")
        .await
        .unwrap();
    conn.exec_drop(
        format!(
            "INSERT INTO {db}.e VALUES (1, ST_GeomFromText('POINT(1 2)'), 'Привет', '你好', 'Aé', 'A🦀',
                'ü', REPEAT('é', 300), x'FFFFFFFFFFFFFFFF', '-00:00:00.000001', '-12:00:00',
                '2024-01-01 00:00:00.123', '2024-01-01 00:00:00',
                '-12345678901234567890123456789012345.123456789012345678901234567890', 0.00001, -1234567890,
                -0.0, 2.2250738585072014E-308, 'nope', 'a,b,c,d', REPEAT(x'00FF', 50000), ?, 1901, 255, -8388608)"
        ),
        (big_text.as_str(),),
    )
    .await
    .unwrap();
    drop(conn);
    let lines = d.wait_lines(1, Duration::from_secs(30));
    let a = &lines[0]["after"];
    assert_eq!(
        a["g"],
        json!({"wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": 0})
    );
    assert_eq!(a["cyr"], json!("Привет"));
    assert_eq!(a["zh"], json!("你好"));
    assert_eq!(a["u2"], json!("Aé"));
    assert_eq!(a["u32"], json!("A🦀"));
    assert_eq!(a["big_char"], json!("ü"));
    assert_eq!(a["long_latin"], json!("é".repeat(300)));
    assert_eq!(a["b64"], json!("//////////8="));
    assert_eq!(a["t6"], json!(-1));
    assert_eq!(a["t0"], json!(-43_200_000_000i64));
    assert_eq!(a["dt3"], json!(1_704_067_200_123i64));
    assert_eq!(a["ts0"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(
        a["d65"],
        json!("-12345678901234567890123456789012345.123456789012345678901234567890")
    );
    assert_eq!(a["d5"], json!("0.00001"));
    assert_eq!(a["dneg"], json!("-1234567890"));
    assert_eq!(a["f"].as_f64(), Some(0.0));
    assert_eq!(a["dbl"].as_f64(), Some(2.2250738585072014E-308));
    // An invalid ENUM value inserted without strict mode is index 0: ''.
    assert_eq!(a["e"], json!(""));
    assert_eq!(a["s"], json!("a,b,c,d"));
    let lb = a["lb"].as_str().unwrap();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(lb)
        .unwrap();
    assert_eq!(raw.len(), 100_000);
    assert!(raw.chunks(2).all(|c| c == [0x00, 0xff]));
    assert_eq!(a["lt"].as_str().map(|s| s.chars().count()), Some(1_000_000));
    assert_eq!(a["y"], json!(1901));
    assert_eq!(a["ti"], json!(255));
    assert_eq!(a["mi"], json!(-8388608));
    assert!(d.stop().success(), "{}", d.log());
}
