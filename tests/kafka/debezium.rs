//! Debezium compatibility: MariaDB → Kafka records compared field by field
//! with what Debezium 3.6.3 emitted for the same SQL
//! (tests/fixtures/debezium/mariadb), with and without the Kafka Connect
//! `schema` part. Differences are the documented ones (docs/kafka.md).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use super::{Record, consume, prefix};
use crate::mysql::types::{expected, fixture_steps};
use crate::support::{Daemon, mariadb, scratch, server_id, tansu};

fn fixture(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(
        crate::support::repo_root()
            .join("tests/fixtures/debezium/mariadb")
            .join(file),
    )
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Field schemas by name.
fn fields(s: &Value) -> Vec<(String, Value)> {
    s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

/// tidemark's documented schema differences for a Debezium column schema.
fn expected_schema(col: &str, dbz: &Value, step: &str) -> Value {
    let mut want = dbz.clone();
    let o = want.as_object_mut().unwrap();
    // tidemark doesn't know column defaults.
    o.remove("default");
    match col {
        // Exact decimal text (decimal_handling = "string").
        "c_decimal" => return json!({"type": "string", "optional": true, "field": col}),
        // BOOLEAN is TINYINT(1) in the binlog.
        "c_bool" => return json!({"type": "int16", "optional": true, "field": col}),
        // The binlog has no ENUM/SET labels.
        "c_enum" | "c_set" => {
            o.remove("parameters");
        }
        // MariaDB's JSON is LONGTEXT in the binlog: a plain string.
        "c_json" => return json!({"type": "string", "optional": true, "field": col}),
        _ => {}
    }
    // Zero dates are written as text (zero_date_handling = "string").
    if step.starts_with("S06")
        && matches!(
            col,
            "c_date" | "c_date_nn" | "c_datetime0" | "c_datetime" | "c_timestamp"
        )
    {
        return json!({"type": "string", "optional": true, "field": col});
    }
    want
}

fn same_value(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64() && (a.is_f64() || a == b),
        _ => got == want,
    }
}

fn compare_rows(step: &str, ours: &Value, theirs: &Value) -> usize {
    let mut n = 0;
    for image in ["before", "after"] {
        match (&ours[image], &theirs[image]) {
            (Value::Null, Value::Null) => {}
            (Value::Object(o), Value::Object(t)) => {
                assert_eq!(o.len(), t.len(), "{step} {image}");
                for (col, dbz) in t {
                    let want = expected(col, dbz, step);
                    assert!(
                        same_value(&o[col], &want),
                        "{step} {image}.{col}: {} / {want}",
                        o[col]
                    );
                    n += 1;
                }
            }
            (a, b) => panic!("{step} {image}: tidemark {a} / Debezium {b}"),
        }
    }
    assert_eq!(ours["op"], theirs["op"], "{step} op");
    assert_eq!(
        ours["transaction"]["total_order"], theirs["transaction"]["total_order"],
        "{step}"
    );
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_records_match_debezium_with_and_without_schemas() {
    let db = "kfxdb";
    let m = mariadb();
    let b = tansu();
    m.exec(&format!("DROP DATABASE IF EXISTS {db}")).await;
    let (ps, pn) = (prefix("kfx-s"), prefix("kfx-n"));
    let dir = scratch("k_fixture");
    let task = |id: &str, p: &str, schemas: bool, sid: u32| {
        format!(
            r#"[[tasks]]
id = "{id}"
[tasks.source]
type = "mysql"
url = "{url}"
server_id = {sid}
heartbeat_secs = 1
[tasks.filter]
include = ["{db}.*"]
[tasks.sink]
type = "kafka"
brokers = "{brokers}"
topic_prefix = "{p}"
schemas = {schemas}
transaction_topic = "{{prefix}}.transaction"
"#,
            url = m.url(),
            brokers = b.addr()
        )
    };
    let config = format!(
        "[daemon]\ndata_dir = \"{}\"\n\n{}\n{}",
        dir.join("data").display(),
        task("ws", &ps, true, server_id("k_fixture_s")),
        task("ns", &pn, false, server_id("k_fixture_n"))
    );
    let out = dir.join("unused");
    let mut d = Daemon::with_config(dir, &config, out);
    d.start();
    crate::support::wait_until(Duration::from_secs(30), "both binlog readers", || {
        d.current_log().matches("reading binlog").count() >= 2
    });
    let mut conn = m.conn().await;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await
        .unwrap();
    for (_, body) in fixture_steps(db) {
        conn.query_drop(&body).await.unwrap();
    }
    drop(conn);

    for (file, p, schemas) in [
        ("schemas.jsonl", &ps, true),
        ("noschemas.jsonl", &pn, false),
    ] {
        let dbz: Vec<Value> = fixture(file)
            .into_iter()
            .filter(|r| !r["sql_step"].as_str().unwrap().starts_with("S00"))
            .collect();
        let mut compared = 0;
        for table in ["types", "tx_other"] {
            let theirs: Vec<&Value> = dbz
                .iter()
                .filter(|r| r["topic"] == format!("fx.fxdb.{table}"))
                .collect();
            let topic = format!("{p}.{db}.{table}");
            let mut ours: Vec<Record> =
                consume(&b.addr(), &[&topic], theirs.len(), Duration::from_secs(60));
            ours.sort_by_key(|r| (r.partition, r.offset));
            assert_eq!(ours.len(), theirs.len(), "{file} {topic}");
            for (o, t) in ours.iter().zip(&theirs) {
                let step = t["sql_step"].as_str().unwrap();
                let (okey, oval) = (o.key_json(), o.json());
                let (tkey, tval) = (&t["key"], &t["value"]);
                let (okp, ovp, tkp, tvp) = if schemas {
                    (
                        &okey["payload"],
                        &oval["payload"],
                        &tkey["payload"],
                        &tval["payload"],
                    )
                } else {
                    (&okey, &oval, tkey, tval)
                };
                assert_eq!(okp, tkp, "{file} {step} key");
                if tval.is_null() {
                    assert!(o.value.is_none(), "{step}: a tombstone");
                    continue;
                }
                compared += compare_rows(step, ovp, tvp);
                if !schemas {
                    continue;
                }
                // The schemas, field by field.
                let name = |s: &Value| {
                    s["name"]
                        .as_str()
                        .unwrap()
                        .replace(&format!("{p}.{db}."), "fx.fxdb.")
                };
                if !tkey.is_null() {
                    assert_eq!(name(&okey["schema"]), tkey["schema"]["name"], "{step}");
                    assert_eq!(
                        fields(&okey["schema"]),
                        fields(&tkey["schema"]),
                        "{step} key schema"
                    );
                }
                assert_eq!(name(&oval["schema"]), tval["schema"]["name"], "{step}");
                let (ofs, tfs) = (fields(&oval["schema"]), fields(&tval["schema"]));
                for (f, ts) in &tfs {
                    let os = &ofs
                        .iter()
                        .find(|(n, _)| n == f)
                        .unwrap_or_else(|| panic!("{step}: no field {f}"))
                        .1;
                    match f.as_str() {
                        // A MySQL TRUNCATE event carries no column list.
                        "before" | "after" if tvp["op"] == "t" => {}
                        "before" | "after" => {
                            for (col, tc) in fields(ts) {
                                let oc = fields(os)
                                    .into_iter()
                                    .find(|(n, _)| *n == col)
                                    .unwrap_or_else(|| panic!("{step}: no column {col} in {os}"))
                                    .1;
                                assert_eq!(
                                    oc,
                                    expected_schema(&col, &tc, step),
                                    "{step} {f}.{col}"
                                );
                            }
                        }
                        "source" => {
                            // Debezium's source fields, with tidemark's `task` beside them.
                            for (sf, tsf) in fields(ts) {
                                let osf = fields(os).into_iter().find(|(n, _)| *n == sf).unwrap().1;
                                assert_eq!(osf["type"], tsf["type"], "{step} source.{sf}");
                            }
                        }
                        _ => assert_eq!(os, ts, "{step} envelope field {f}"),
                    }
                }
            }
        }
        assert!(compared > 150, "{file}: compared only {compared} values");
        // Transaction metadata: same statuses and counts as Debezium's.
        let tdbz: Vec<&Value> = dbz
            .iter()
            .filter(|r| r["topic"] == "fx.transaction")
            .collect();
        let ends = |v: &Vec<Value>| -> Vec<(Value, Value)> {
            v.iter()
                .filter(|x| x["status"] == "END")
                .map(|x| {
                    (
                        x["event_count"].clone(),
                        json!(x["data_collections"].as_array().unwrap().len()),
                    )
                })
                .collect()
        };
        let theirs: Vec<Value> = tdbz
            .iter()
            .map(|r| {
                if schemas {
                    r["value"]["payload"].clone()
                } else {
                    r["value"].clone()
                }
            })
            .collect();
        let n_end = theirs.iter().filter(|x| x["status"] == "END").count();
        let ours = consume(
            &b.addr(),
            &[&format!("{p}.transaction")],
            n_end * 2,
            Duration::from_secs(30),
        );
        let mut ours: Vec<Value> = ours
            .iter()
            .map(|r| {
                if schemas {
                    r.json()["payload"].clone()
                } else {
                    r.json()
                }
            })
            .collect();
        // Debezium writes no END for a MariaDB TRUNCATE; tidemark does.
        let truncate = consume(
            &b.addr(),
            &[&format!("{p}.{db}.tx_other")],
            3,
            Duration::from_secs(30),
        )
        .iter()
        .map(|r| {
            if schemas {
                r.json()["payload"].clone()
            } else {
                r.json()
            }
        })
        .find(|v| v["op"] == "t")
        .map(|v| v["transaction"]["id"].clone())
        .expect("the truncate record");
        ours.retain(|x| x["status"] == "END" && x["id"] != truncate);
        assert_eq!(ends(&ours), ends(&theirs), "{file}: END records");
    }
    assert!(d.stop().success(), "{}", d.log());
}
