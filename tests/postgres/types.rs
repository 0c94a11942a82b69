//! Every PostgreSQL type of Debezium's fixture against a real server,
//! compared field by field with Debezium's output for the same SQL
//! (tests/fixtures/debezium/postgres), plus edge values the fixture doesn't
//! cover. The differences are tidemark's lossless choices, each listed in
//! `expected` and in docs/json-format-postgres.md.

use std::time::Duration;

use serde_json::{Value, json};

use super::wait_streaming;
use crate::support::{Daemon, postgres, repo_root};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        repo_root()
            .join("tests/fixtures/debezium/postgres")
            .join(name),
    )
    .unwrap()
}

/// The loader's DDL (before the engine started) and the steps S01..S11.
pub fn fixture_sql() -> (String, Vec<(String, String)>) {
    let sql = fixture("setup.sql");
    let mut ddl = String::new();
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut in_ddl = false;
    for line in sql.lines() {
        if line.starts_with("SET TIME ZONE") {
            in_ddl = true;
        }
        if line.starts_with("-- The engine starts here") {
            in_ddl = false;
        }
        if let Some(rest) = line.strip_prefix("-- S") {
            steps.push((format!("S{}", &rest[..2]), String::new()));
            continue;
        }
        if line.starts_with("--") || line.trim().is_empty() {
            continue;
        }
        if in_ddl {
            ddl.push_str(line);
            ddl.push('\n');
        } else if let Some((_, body)) = steps.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    (ddl, steps)
}

/// Debezium's row records (no transaction records, no tombstones).
fn debezium_records() -> Vec<Value> {
    fixture("noschemas.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["topic"] != "fx.transaction" && !r["value"].is_null())
        .collect()
}

/// Where tidemark deliberately differs from Debezium's defaults because
/// those lose data: returns tidemark's expected value for `column` of row
/// `id` (delete before images carry only the key, so they pass through).
fn expected(column: &str, dbz: &Value, id: i64, op: &str) -> Value {
    if op == "d" {
        return dbz.clone();
    }
    match (column, id) {
        // numeric: exact text (decimal_handling string) instead of
        // VariableScaleDecimal / base64 bytes, and NaN kept where Debezium
        // writes null.
        ("c_numeric", 1) => json!("123456789012345678901234567890.123456789012"),
        ("c_numeric", 2) => json!("NaN"),
        ("c_numeric_p", 1) => json!("12345678901234567890123456789.123456789"),
        ("c_numeric_p", 2) => json!("-99999999999999999999999999999.999999999"),
        ("c_numeric_p", 3) => json!("NaN"),
        // money: exact text, not base64 bytes with scale 2.
        ("c_money", 1) => json!("12345.67"),
        ("c_money", 2) => json!("-92233720368547758.08"),
        // timetz keeps its offset; Debezium normalizes to UTC.
        ("c_timetz", 1) => json!("12:34:56.789012+05:30"),
        ("c_timetz", 2) => json!("00:00:00-08:00"),
        // timestamp ±infinity as text; Debezium writes pgjdbc's ms sentinels.
        ("c_timestamp", 2) => json!("-infinity"),
        ("c_timestamp", 3) => json!("infinity"),
        // interval as ISO-8601 (months kept exactly); Debezium's default is
        // microseconds with 30.4375-day months.
        ("c_interval", 1) => json!("P1Y2M3DT4H5M6.789S"),
        ("c_interval", 2) => json!("P0Y-1M-2DT3H4M5S"),
        // bit(n > 1) / varbit as '0'/'1' text: the length and leading zeros
        // survive, where Debezium's trimmed little-endian bytes lose them.
        ("c_bit10", 1) => json!("1010101011"),
        ("c_bit10", 2) => json!("0000000001"),
        ("c_varbit", 1) => json!("101"),
        ("c_varbit", 2) => json!(""),
        _ => dbz.clone(),
    }
}

fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        // Floats compare as the float4/float8 they are (Jackson writes
        // 3.4028235E38, serde_json the shortest f32 text).
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            a == b || (a as f32) == (b as f32)
        }
        _ => got == want,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_type_matches_debezium() {
    let db = "fx_types";
    let pg = postgres();
    pg.fresh_db(db).await;
    let (ddl, steps) = fixture_sql();
    pg.exec(db, &ddl).await;
    let mut d = Daemon::postgres("pg_fixture_types", &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);

    let c = pg.client(db).await;
    for (_, body) in &steps {
        c.batch_execute(body).await.unwrap();
    }
    let big: String = c
        .query_one("SELECT big FROM toast_t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let sha: String = c
        .query_one(
            "SELECT encode(sha256(big::bytea), 'hex') FROM toast_t WHERE id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sha, "26c6945fb040b30880d97d1dd6b094cb626a04d32d55134cec5c189fe6c05d5c",
        "the TOAST value is the fixture's"
    );

    let dbz = debezium_records();
    assert_eq!(dbz.len(), 12, "the fixture's row records");
    let ours = d.wait_lines(dbz.len(), Duration::from_secs(60));
    assert_eq!(ours.len(), dbz.len(), "{ours:#?}");
    let mut compared = 0;
    for (o, r) in ours.iter().zip(&dbz) {
        let step = r["sql_step"].as_str().unwrap();
        let v = &r["value"];
        assert_eq!(o["op"], v["op"], "{step}");
        for field in ["connector", "schema", "table", "snapshot"] {
            assert_eq!(
                o["source"][field], v["source"][field],
                "{step} source.{field}"
            );
        }
        assert_eq!(o["source"]["db"], json!(db), "{step}");
        assert!(o["source"]["txId"].is_u64(), "{step}");
        assert!(o["source"]["lsn"].is_u64(), "{step}");
        for f in ["total_order", "data_collection_order"] {
            assert_eq!(
                o["transaction"][f], v["transaction"][f],
                "{step} transaction.{f}"
            );
        }
        let pos = o["position"].as_str().unwrap();
        assert!(pos.starts_with("lsn:"), "{pos}");
        for image in ["before", "after"] {
            match (&o[image], &v[image]) {
                (Value::Null, Value::Null) => {}
                (Value::Object(ours), Value::Object(theirs)) => {
                    assert_eq!(ours.len(), theirs.len(), "{step} {image} column count");
                    for (col, dbz_value) in theirs {
                        let got = &ours[col];
                        if col == "big" && step.starts_with("S08") {
                            // The fixture holds a cut copy of the 20000 chars.
                            assert_eq!(got, &json!(big), "{step} big");
                            let prefix = dbz_value.as_str().unwrap().split("...").next().unwrap();
                            assert!(big.starts_with(prefix));
                            continue;
                        }
                        let id = theirs["id"].as_i64().unwrap();
                        let op = v["op"].as_str().unwrap();
                        let want = expected(col, dbz_value, id, op);
                        assert!(
                            same(got, &want),
                            "{step} {image}.{col}: tidemark {got} / expected {want} (Debezium {dbz_value})"
                        );
                        compared += 1;
                    }
                }
                (a, b) => panic!("{step} {image}: tidemark {a} / Debezium {b}"),
            }
        }
    }
    assert!(compared > 150, "compared only {compared} values");
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_values_beyond_the_fixture() {
    let db = "pg_edge_types";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE EXTENSION IF NOT EXISTS citext;
         CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN short_text AS varchar(5) CHECK (length(VALUE) > 0);
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
         CREATE TYPE address AS (street text, zip int4, tags text[], at timestamptz);
         CREATE TYPE wrapper AS (addr address, m mood, amount numeric);
         CREATE TABLE e (
           id int PRIMARY KEY,
           arr2 int[][], arr_null text[], arr_enum mood[], arr_date date[],
           dom short_text, dom_int posint, dom_arr posint[],
           comp address, comp_nested wrapper, comp_arr address[],
           ci citext, pt point, rng int4range, tsv tsvector,
           d_inf date, d_ninf date, d_bc date, ts_bc timestamp, tstz timestamptz(3),
           t24 time, tz timetz, iv interval, iv_neg interval,
           n_inf numeric, n_ninf numeric, n_small numeric(5,5), f4 float4, f8 float8,
           f8_small float8, mac8 macaddr8, jb jsonb, xm xml, ch \"char\", nm name,
           oid_col oid, lsn pg_lsn, b1 bit(1), vb varbit, by bytea
         );",
    )
    .await;
    let mut d = Daemon::postgres("pg_edge_types", &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);
    pg.exec(
        db,
        r#"INSERT INTO e VALUES (1,
            '{{1,2,3},{4,NULL,6}}', '{NULL,"a,b","c\"d",""}', '{sad,happy}', '{2024-01-01,infinity}',
            'abc', 7, '{1,2}',
            ROW('Main "St"', 12345, '{x,NULL}', '2024-01-02 03:04:05.5+02'),
            ROW(ROW('x', NULL, '{}', NULL), 'ok', 'NaN'),
            ARRAY[ROW('a', 1, NULL, NULL)::address, NULL],
            'MiXeD', '(1.5,-2)', '[1,10)', 'a fat:2 cat',
            'infinity', '-infinity', '0044-03-15 BC', '0044-03-15 12:00:00 BC', '2024-01-02 03:04:05.678+05',
            '24:00:00', '23:59:59.999999-15:59', '1 year 2 mons 3 days 04:05:06.000001', '-178000000 years',
            'Infinity', '-Infinity', 0.00001, '1.17549435e-38', '-0',
            '4.9e-324', '08:00:2b:01:02:03:04:05', '{"z": [1, 2.50, "\u00e9"], "a": null}', '<a>x</a>', 'q', 'nom',
            4294967295, '16/B374D848', B'1', B'0010', '\x00ff')"#,
    )
    .await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    let a = &lines[0]["after"];
    assert_eq!(a["arr2"], json!([[1, 2, 3], [4, null, 6]]));
    assert_eq!(a["arr_null"], json!([null, "a,b", "c\"d", ""]));
    assert_eq!(a["arr_enum"], json!(["sad", "happy"]));
    assert_eq!(a["arr_date"], json!([19723, "infinity"]));
    assert_eq!(a["dom"], json!("abc"));
    assert_eq!(a["dom_int"], json!(7));
    assert_eq!(a["dom_arr"], json!([1, 2]));
    let comp: Value = serde_json::from_str(a["comp"].as_str().unwrap()).unwrap();
    assert_eq!(
        comp,
        json!({"street": "Main \"St\"", "zip": 12345, "tags": ["x", null], "at": "2024-01-02T01:04:05.5Z"})
    );
    let nested: Value = serde_json::from_str(a["comp_nested"].as_str().unwrap()).unwrap();
    assert_eq!(
        nested,
        json!({"addr": {"street": "x", "zip": null, "tags": [], "at": null}, "m": "ok", "amount": "NaN"})
    );
    let first: Value = serde_json::from_str(a["comp_arr"][0].as_str().unwrap()).unwrap();
    assert_eq!(first["street"], json!("a"));
    assert_eq!(a["comp_arr"][1], Value::Null);
    // Types without a decoder (extension types, geometry, ranges, text
    // search) keep the server's text.
    assert_eq!(a["ci"], json!("MiXeD"));
    assert_eq!(a["pt"], json!("(1.5,-2)"));
    assert_eq!(a["rng"], json!("[1,10)"));
    assert_eq!(a["tsv"], json!("'a' 'cat' 'fat':2"));
    assert_eq!(a["d_inf"], json!("infinity"));
    assert_eq!(a["d_ninf"], json!("-infinity"));
    // 0044-03-15 BC is year -43 (proleptic Gregorian); the figures are the
    // server's own (`date - '1970-01-01'`, `extract(epoch ...)`).
    assert_eq!(a["d_bc"], json!(-735_160));
    assert_eq!(a["ts_bc"], json!(-63_517_780_800_000_000i64));
    assert_eq!(a["tstz"], json!("2024-01-01T22:04:05.678Z"));
    assert_eq!(a["t24"], json!(86_400_000_000i64));
    assert_eq!(a["tz"], json!("23:59:59.999999-15:59"));
    assert_eq!(a["iv"], json!("P1Y2M3DT4H5M6.000001S"));
    assert_eq!(a["iv_neg"], json!("P-178000000Y0M0DT0H0M0S"));
    assert_eq!(a["n_inf"], json!("Infinity"));
    assert_eq!(a["n_ninf"], json!("-Infinity"));
    assert_eq!(a["n_small"], json!("0.00001"));
    assert_eq!(
        a["f4"].as_f64().map(|f| f as f32),
        Some(1.175_494_4e-38_f32)
    );
    assert_eq!(a["f8"].as_f64(), Some(0.0));
    assert_eq!(a["f8_small"].as_f64(), Some(4.9e-324));
    assert_eq!(a["mac8"], json!("08:00:2b:01:02:03:04:05"));
    assert_eq!(a["jb"], json!(r#"{"a": null, "z": [1, 2.50, "é"]}"#));
    assert_eq!(a["xm"], json!("<a>x</a>"));
    assert_eq!(a["ch"], json!("q"));
    assert_eq!(a["nm"], json!("nom"));
    assert_eq!(a["oid_col"], json!(4_294_967_295u64));
    assert_eq!(a["lsn"], json!("16/B374D848"));
    assert_eq!(a["b1"], json!(true));
    assert_eq!(a["vb"], json!("0010"));
    assert_eq!(a["by"], json!("AP8="));
    // Type names keep their modifiers; user types their names.
    assert!(d.stop().success(), "{}", d.log());
}
