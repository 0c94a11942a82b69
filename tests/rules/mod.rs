//! Processing rules against real servers: every rule kind through the
//! snapshot and the stream into JSON lines; a filtered, renamed, masked
//! table into a PostgreSQL target kept equal to the filtered source while
//! rows move in and out; four shards merged into one target table through
//! a schema change on every shard; shards merged into one Kafka topic;
//! validation against the source's catalog.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::support::{Daemon, mariadb, postgres, tansu, wait_until};

const SECRET: &str = "mask-secret-for-the-tests-0123456789";

fn clear_emails(text: &str) -> Vec<String> {
    text.match_indices("@clear.example")
        .map(|(i, _)| text[i.saturating_sub(12)..i + 14].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rule_shapes_snapshot_and_stream_rows_alike() {
    let db = "rules_jsonl";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.orders (id INT PRIMARY KEY, region VARCHAR(8) NOT NULL, amount DECIMAL(10,2) NULL, email VARCHAR(64) NOT NULL, phone VARCHAR(20) NOT NULL, note TEXT);
         INSERT INTO {db}.orders VALUES
           (1, 'EU', 150.00, 'a1@clear.example', '5550001', 'n1'),
           (2, 'US', 500.00, 'a2@clear.example', '5550002', 'n2'),
           (3, 'EU', 50.00, 'a3@clear.example', '5550003', 'n3'),
           (4, 'EU', 999.00, 'a4@clear.example', '5550004', 'n4');"
    ))
    .await;
    let rules = format!(
        r#"[[tasks.rules]]
tables = ["{db}.orders"]
filter = 'row.region == "EU" && row.amount > 100'
on_error = "dead_letter"
exclude_columns = ["note"]
rename_columns = {{ amount = "total" }}
mask = {{ email = "hash", phone = {{ keep_first = 3 }} }}
mask_secret = "{SECRET}"
add_columns = [{{ name = "origin", source = "qualified_table" }}, {{ name = "tenant", value = "acme" }}, {{ name = "committed_at", source = "commit_time" }}]
rename_table = {{ match = '{db}\.(.*)', to = "{db}.eu_$1" }}
"#
    );
    let mut d = Daemon::mysql("rules_jsonl", &m.url(), &[&format!("{db}.*")], &rules).with_mode(
        "snapshot+stream",
        2,
        1,
    );
    // Validation against the catalog first: the rules fit the table.
    let out = d.cli(&["validate", "--connect"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("pass rules: {db}.orders → {db}.eu_orders (id (key), region, total, email, phone, origin, tenant, committed_at)")),
        "{text}"
    );
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    // The copy first (rows 1 and 4 pass the filter), then the changes.
    d.wait_lines(2, Duration::from_secs(30));
    // Moves in, moves out, stays in, stays out, deletes, and a row the
    // filter can't judge (NULL amount): a dead letter.
    m.exec(&format!(
        "UPDATE {db}.orders SET amount = 120 WHERE id = 3;
         UPDATE {db}.orders SET region = 'US' WHERE id = 1;
         UPDATE {db}.orders SET phone = '5550444' WHERE id = 4;
         UPDATE {db}.orders SET amount = 600 WHERE id = 2;
         INSERT INTO {db}.orders VALUES (5, 'EU', 101.00, 'a5@clear.example', '5550005', 'n5'), (6, 'US', 1.00, 'a6@clear.example', '5550006', 'n6');
         INSERT INTO {db}.orders VALUES (7, 'EU', NULL, 'a7@clear.example', '5550007', 'n7');
         DELETE FROM {db}.orders WHERE id IN (5, 6);
         INSERT INTO {db}.orders VALUES (8, 'EU', 300.00, 'a8@clear.example', '5550008', 'n8');"
    ))
    .await;
    let lines = d.wait_lines(8, Duration::from_secs(30));
    // Snapshot: 1 and 4 (2 reads); stream: 3 in, 1 out, 4 stays, 5 in, 5
    // out, 8 in.
    let shaped = crate::snapshot::replay(&lines, "eu_orders", &["id"]);
    let ids: Vec<i64> = shaped.values().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [3, 4, 8], "{lines:#?}");
    let ops: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            let img = if l["op"] == "d" {
                &l["before"]
            } else {
                &l["after"]
            };
            (
                l["op"].as_str().unwrap().to_string(),
                img["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = [
        ("r", 1),
        ("r", 4),
        ("c", 3),
        ("d", 1),
        ("u", 4),
        ("c", 5),
        ("d", 5),
        ("c", 8),
    ]
    .iter()
    .map(|(o, i)| (o.to_string(), *i))
    .collect();
    assert_eq!(ops, want, "{lines:#?}");
    let row4 = &shaped["4"];
    let cols: Vec<&String> = row4.as_object().unwrap().keys().collect();
    assert_eq!(
        cols,
        [
            "id",
            "region",
            "total",
            "email",
            "phone",
            "origin",
            "tenant",
            "committed_at"
        ],
        "{row4}"
    );
    assert_eq!(row4["phone"], "555****");
    assert_eq!(row4["origin"], format!("{db}.orders"));
    assert_eq!(row4["tenant"], "acme");
    assert!(row4["committed_at"].is_string(), "{row4}");
    let email = row4["email"].as_str().unwrap();
    assert_eq!(email.len(), 64);
    // The same value hashes alike in the snapshot and the stream.
    let snap4 = lines
        .iter()
        .find(|l| l["op"] == "r" && l["after"]["id"] == 4)
        .unwrap();
    assert_eq!(snap4["after"]["email"], email);
    for l in &lines {
        assert_eq!(l["source"]["table"], "eu_orders");
    }
    // The dead letter holds the row, masked.
    let dead = std::fs::read_to_string(d.dir.join("data/dead-letter/t.jsonl")).unwrap();
    let dl: Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(dl["after"]["id"], 7);
    assert_eq!(dl["rule"], 1);
    assert!(
        dl["error"].as_str().unwrap().contains("no operator"),
        "{dl}"
    );
    assert_eq!(dl["after"]["phone"], "555****");
    wait_until(
        Duration::from_secs(15),
        "the filter error in the progress",
        || d.progress().is_some_and(|p| p["rule_filter_errors"] == 1),
    );
    assert!(d.stop().success(), "{}", d.log());
    // No clear value anywhere: events, dead letters, logs.
    let everything = format!(
        "{}{}{}",
        std::fs::read_to_string(d.dir.join("out.jsonl")).unwrap(),
        dead,
        d.log()
    );
    assert!(
        clear_emails(&everything).is_empty(),
        "{:?}",
        clear_emails(&everything)
    );
    assert!(
        !everything.contains("5550004"),
        "a clear phone number leaked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_with_a_connection_names_the_rule_and_the_column() {
    let db = "rules_check";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, region VARCHAR(8), amount INT)"
    ))
    .await;
    let cases = [
        (
            "exclude_columns = [\"regoin\"]",
            "names column \"regoin\", which rules_check.t doesn't have",
        ),
        (
            "filter = 'row.region > 5'",
            "the filter \"row.region > 5\" fails on rules_check.t",
        ),
        ("exclude_columns = [\"id\"]", "drops key column \"id\""),
    ];
    for (i, (rule, want)) in cases.iter().enumerate() {
        let d = Daemon::mysql(
            &format!("rules_check{i}"),
            &m.url(),
            &[&format!("{db}.*")],
            &format!("[[tasks.rules]]\ntables = [\"{db}.*\"]\n{rule}\n"),
        );
        // Without a connection the config is fine.
        let plain = d.cli(&["validate"]);
        assert!(plain.status.success(), "{plain:?}");
        let out = d.cli(&["validate", "--connect"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{rule}: {text}");
        assert!(
            text.contains(want) && text.contains("rule 1"),
            "{rule}: {text}"
        );
    }
    // Without a connection: a broken expression, with the field.
    let d = Daemon::mysql(
        "rules_check_x",
        &m.url(),
        &[&format!("{db}.*")],
        "[[tasks.rules]]\ntables = [\"x.y\"]\nfilter = 'row.a =='\n",
    );
    let out = d.cli(&["validate"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("tasks[0].rules[0].filter") && text.contains("not a CEL expression"),
        "{text}"
    );
}

/// `(id, region, amount)` rows of the filtered source.
type Picked = Vec<(i64, String, i64)>;

#[tokio::test(flavor = "multi_thread")]
async fn a_filtered_target_stays_equal_to_the_filtered_source() {
    let db = "rules_pg";
    let m = mariadb();
    let pg = postgres();
    m.fresh_db(db).await;
    pg.fresh_db("rules_pg_dr").await;
    m.exec(&format!(
        "CREATE TABLE {db}.acct (id INT PRIMARY KEY, region VARCHAR(8) NOT NULL, amount INT NOT NULL, secret VARCHAR(40) NOT NULL);
         INSERT INTO {db}.acct SELECT seq, ELT(1 + seq % 3, 'EU', 'US', 'AP'), seq % 200, CONCAT('s', seq, '@clear.example') FROM {db}.seq_1_to_300;"
    ))
    .await;
    let rules = format!(
        r#"[[tasks.rules]]
tables = ["{db}.acct"]
filter = 'row.region == "EU" && row.amount >= 100'
mask = {{ secret = "redact" }}
rename_table = {{ to = "public.eu_accounts" }}
"#
    );
    let mut d = Daemon::mysql("rules_pg", &m.url(), &[&format!("{db}.*")], &rules)
        .with_sink(&format!(
            "type = \"postgres\"\nurl = \"{}\"\nmeta_schema = \"tm_rules_pg\"",
            pg.url("rules_pg_dr")
        ))
        .with_mode("snapshot+stream", 64, 2);
    d.start();
    // Random updates move rows in and out while the copy and the stream run.
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut c = m.conn().await;
    for _ in 0..400 {
        let id = rng.random_range(1..=320);
        let sql = match rng.random_range(0..4) {
            0 => format!(
                "UPDATE {db}.acct SET region = ELT(1 + FLOOR(RAND() * 3), 'EU', 'US', 'AP') WHERE id = {id}"
            ),
            1 => format!(
                "UPDATE {db}.acct SET amount = {} WHERE id = {id}",
                rng.random_range(0..200)
            ),
            2 => format!("DELETE FROM {db}.acct WHERE id = {id}"),
            _ => format!(
                "INSERT INTO {db}.acct VALUES ({id}, 'EU', {}, 'x{id}@clear.example') ON DUPLICATE KEY UPDATE amount = amount + 50",
                rng.random_range(0..200)
            ),
        };
        c.query_drop(sql).await.unwrap();
    }
    let want: Picked = c
        .query(format!(
            "SELECT id, region, amount FROM {db}.acct WHERE region = 'EU' AND amount >= 100 ORDER BY id"
        ))
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert!(want.len() > 20, "{} rows in the filter", want.len());
    let client = pg.client("rules_pg_dr").await;
    let mut got: Picked = Vec::new();
    wait_until(
        Duration::from_secs(60),
        "the target equals the filtered source",
        || {
            got = futures_util_block(&client);
            got == want
        },
    );
    // Masked on the target: no clear value.
    let leaked = client
        .query(
            "SELECT count(*) FROM public.eu_accounts WHERE secret <> '***'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(leaked[0].get::<_, i64>(0), 0);
    assert!(d.stop().success(), "{}", d.log());
}

fn futures_util_block(client: &tokio_postgres::Client) -> Picked {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            client
                .query("SELECT id::bigint, region::text, amount::bigint FROM public.eu_accounts ORDER BY id", &[])
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
                .unwrap_or_default()
        })
    })
}

const SHARDS: [(&str, &str); 4] = [
    ("rules_s1", "orders_1"),
    ("rules_s1", "orders_2"),
    ("rules_s2", "orders_3"),
    ("rules_s2", "orders_4"),
];

/// The merged rows: `shard|id` → `(v, note)`.
type Merged = BTreeMap<String, (i64, Option<String>)>;

#[tokio::test(flavor = "multi_thread")]
async fn four_shards_merge_into_one_target_table_through_a_schema_change() {
    let m = mariadb();
    m.fresh_db("rules_s1").await;
    m.fresh_db("rules_s2").await;
    m.fresh_db("rules_merged").await;
    m.exec("DROP DATABASE IF EXISTS tm_rules_merge").await;
    for (db, t) in SHARDS {
        // The same ids on every shard: only the shard column keeps them apart.
        m.exec(&format!(
            "CREATE TABLE {db}.{t} (id INT PRIMARY KEY, v INT NOT NULL);
             INSERT INTO {db}.{t} SELECT seq, seq * 10 FROM {db}.seq_1_to_50;"
        ))
        .await;
    }
    let rules = r#"[[tasks.rules]]
tables = ["rules_s*.orders_*"]
rename_table = { match = 'rules_s\d+\.orders_\d+', to = "rules_merged.orders" }
merge = { shard_column = "shard" }
"#;
    let mut d = Daemon::mysql(
        "rules_merge",
        &m.url(),
        &["rules_s1.*", "rules_s2.*"],
        rules,
    )
    .with_sink(&format!(
        "type = \"mysql\"\nurl = \"{}\"\nmeta_schema = \"tm_rules_merge\"",
        m.url()
    ))
    .with_mode("snapshot+stream", 16, 2);
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    // Every shard changes, one by one, with rows in between: the merged
    // table gains the column once, and no row is lost on the way.
    for (i, (db, t)) in SHARDS.iter().enumerate() {
        m.exec(&format!(
            "INSERT INTO {db}.{t} VALUES (100 + {i}, 1);
             UPDATE {db}.{t} SET v = v + 1 WHERE id <= 5;
             DELETE FROM {db}.{t} WHERE id = 50;
             ALTER TABLE {db}.{t} ADD COLUMN note VARCHAR(20) NULL;
             INSERT INTO {db}.{t} VALUES (200 + {i}, 2, 'after {i}');
             UPDATE {db}.{t} SET note = 'n' WHERE id = 1;"
        ))
        .await;
    }
    let want = merged_source(m).await;
    assert_eq!(want.len(), 4 * 51);
    let mut got = Merged::new();
    wait_until(
        Duration::from_secs(60),
        "the merged table equals the shards",
        || {
            got = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(merged_target(m))
            });
            got == want
        },
    );
    // The task's progress shows the merge: four shards, one change each.
    wait_until(Duration::from_secs(15), "the merge in the progress", || {
        d.progress().is_some_and(|p| {
            let g = &p["merge_groups"][0];
            g["table"] == "rules_merged.orders"
                && g["schema_changes"] == 1
                && g["shards"]
                    .as_object()
                    .is_some_and(|s| s.len() == 4 && s.values().all(|n| n == 1))
        })
    });
    let log = d.log();
    assert_eq!(
        log.matches("every shard of the merge ran the schema change")
            .count(),
        1,
        "{log}"
    );
    // A shard that changes alone, otherwise than the others, is named.
    m.exec("ALTER TABLE rules_s1.orders_1 ADD COLUMN a INT NULL; ALTER TABLE rules_s2.orders_3 ADD COLUMN b INT NULL")
        .await;
    d.wait_log("diverges", Duration::from_secs(30));
    let log = d.log();
    assert!(
        log.contains("shard rules_s2.orders_3 of the merge into rules_merged.orders diverges"),
        "{log}"
    );
    let _ = d.stop();
}

async fn merged_source(m: &crate::support::Mariadb) -> Merged {
    let mut c = m.conn().await;
    let mut out = Merged::new();
    for (db, t) in SHARDS {
        let rows: Vec<(i64, i64, Option<String>)> = c
            .query(format!("SELECT id, v, note FROM {db}.{t}"))
            .await
            .unwrap();
        for (id, v, note) in rows {
            out.insert(format!("{db}.{t}|{id}"), (v, note));
        }
    }
    let _ = c.disconnect().await;
    out
}

async fn merged_target(m: &crate::support::Mariadb) -> Merged {
    let mut c = m.conn().await;
    let rows: Vec<(String, i64, i64, Option<String>)> = c
        .query("SELECT shard, id, v, note FROM rules_merged.orders")
        .await
        .unwrap_or_default();
    let _ = c.disconnect().await;
    rows.into_iter()
        .map(|(s, id, v, note)| (format!("{s}|{id}"), (v, note)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_merge_into_one_kafka_topic_with_the_shard_in_the_key() {
    let m = mariadb();
    let b = tansu();
    m.fresh_db("rules_k1").await;
    m.fresh_db("rules_k2").await;
    for db in ["rules_k1", "rules_k2"] {
        m.exec(&format!(
            "CREATE TABLE {db}.users (id INT PRIMARY KEY, email VARCHAR(40) NOT NULL)"
        ))
        .await;
    }
    let p = crate::kafka::prefix("rules-k");
    let rules = format!(
        r#"[[tasks.rules]]
tables = ["rules_k*.users"]
rename_table = {{ match = 'rules_k\d\.users', to = "rules_all.users" }}
merge = {{ shard_column = "shard" }}
mask = {{ email = "hash" }}
mask_secret = "{SECRET}"
"#
    );
    let mut d = Daemon::mysql("rules_k", &m.url(), &["rules_k1.*", "rules_k2.*"], &rules)
        .with_sink(&format!(
            "type = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"{p}\"\nschemas = true",
            b.addr()
        ));
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(
        "INSERT INTO rules_k1.users VALUES (1, 'u1@clear.example');
         INSERT INTO rules_k2.users VALUES (1, 'u1@clear.example'), (2, 'u2@clear.example');",
    )
    .await;
    let topic = format!("{p}.rules_all.users");
    let recs =
        crate::kafka::consume_owned(b.addr(), vec![topic.clone()], 3, Duration::from_secs(60))
            .await;
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let mut keys = std::collections::BTreeSet::new();
    for r in &recs {
        let k = r.key_json();
        keys.insert(format!("{}|{}", k["payload"]["shard"], k["payload"]["id"]));
        let v = r.json();
        let after = &v["payload"]["after"];
        assert_eq!(after["email"].as_str().unwrap().len(), 64, "{v}");
        let fields: Vec<String> = v["schema"]["fields"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(fields, ["id", "email", "shard"], "{v}");
        let text = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
        assert!(clear_emails(&text).is_empty(), "{text}");
    }
    // The two shards' id 1 are two rows.
    assert_eq!(keys.len(), 3, "{keys:?}");
    // Equal values hash alike across shards.
    let u1: Vec<String> = recs
        .iter()
        .map(|r| r.json()["payload"]["after"].clone())
        .filter(|a| a["id"] == 1)
        .map(|a| a["email"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(u1.len(), 2);
    assert_eq!(u1[0], u1[1]);
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_rows_are_shaped_alike_and_key_only_before_images_are_not_judged() {
    let pg = postgres();
    let db = "rules_pgsrc";
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE acct (id INT PRIMARY KEY, region TEXT NOT NULL, email TEXT NOT NULL);
         INSERT INTO acct VALUES (1, 'EU', 'p1@clear.example'), (2, 'US', 'p2@clear.example');",
    )
    .await;
    let rules = r#"[[tasks.rules]]
tables = ["public.acct"]
filter = 'row.region == "EU"'
mask = { email = "redact" }
add_columns = [{ name = "origin", source = "qualified_table" }]
rename_table = { to = "public.eu_acct" }
"#;
    let mut d = Daemon::postgres("rules_pgsrc", &pg.url(db), &["public.*"], rules).with_mode(
        "snapshot+stream",
        100,
        1,
    );
    d.start();
    d.wait_log("reading WAL", Duration::from_secs(60));
    // The copy first (its one chunk holds row 1), then the changes.
    d.wait_lines(1, Duration::from_secs(30));
    pg.exec(
        db,
        "INSERT INTO acct VALUES (3, 'EU', 'p3@clear.example');
         UPDATE acct SET region = 'US' WHERE id = 1;
         UPDATE acct SET region = 'EU' WHERE id = 2;
         DELETE FROM acct WHERE id = 3;",
    )
    .await;
    // Snapshot: 1. Stream: insert 3; 1 moves out (a delete); 2 moves in,
    // but the key-only before image can't tell it wasn't in: an update;
    // the delete of 3 is passed on.
    let lines = d.wait_lines(5, Duration::from_secs(30));
    let ops: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            let img = if l["op"] == "d" {
                &l["before"]
            } else {
                &l["after"]
            };
            (
                l["op"].as_str().unwrap().to_string(),
                img["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = [("r", 1), ("c", 3), ("d", 1), ("u", 2), ("d", 3)]
        .iter()
        .map(|(o, i)| (o.to_string(), *i))
        .collect();
    assert_eq!(ops, want, "{lines:#?}");
    let shaped = crate::snapshot::replay(&lines, "eu_acct", &["id"]);
    assert_eq!(shaped.len(), 1, "{shaped:?}");
    assert_eq!(shaped["2"]["email"], "***");
    assert_eq!(shaped["2"]["origin"], "public.acct");
    assert!(d.stop().success(), "{}", d.log());
    let everything = format!(
        "{}{}",
        std::fs::read_to_string(d.dir.join("out.jsonl")).unwrap(),
        d.log()
    );
    assert!(
        clear_emails(&everything).is_empty(),
        "{:?}",
        clear_emails(&everything)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_in_the_middle_of_a_shard_change_keeps_the_merge_exact() {
    let m = mariadb();
    m.fresh_db("rules_r1").await;
    m.fresh_db("rules_r2").await;
    let shards = [
        ("rules_r1", "t_1"),
        ("rules_r1", "t_2"),
        ("rules_r2", "t_3"),
        ("rules_r2", "t_4"),
    ];
    for (db, t) in shards {
        m.exec(&format!("CREATE TABLE {db}.{t} (id INT PRIMARY KEY)"))
            .await;
    }
    let rules = r#"[[tasks.rules]]
tables = ["rules_r*.t_*"]
rename_table = { match = 'rules_r\d\.t_\d', to = "rules_all.t" }
merge = { shard_column = "shard" }
"#;
    let mut d = Daemon::mysql(
        "rules_restart",
        &m.url(),
        &["rules_r1.*", "rules_r2.*"],
        rules,
    );
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    for (db, t) in shards {
        m.exec(&format!("INSERT INTO {db}.{t} VALUES (1)")).await;
    }
    d.wait_lines(4, Duration::from_secs(30));
    for (db, t) in &shards[..2] {
        m.exec(&format!("ALTER TABLE {db}.{t} ADD COLUMN a INT NULL"))
            .await;
    }
    wait_until(Duration::from_secs(30), "two shards' changes", || {
        d.log().matches("a shard ran a schema change").count() == 2
    });
    d.kill9();
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    for (db, t) in &shards[2..] {
        m.exec(&format!("ALTER TABLE {db}.{t} ADD COLUMN a INT NULL"))
            .await;
    }
    for (db, t) in shards {
        m.exec(&format!(
            "ALTER TABLE {db}.{t} ADD COLUMN b INT NULL; INSERT INTO {db}.{t} VALUES (2, 2, 2)"
        ))
        .await;
    }
    // Four inserts before, four after; one schema change record per change.
    let lines = d.wait_lines(10, Duration::from_secs(30));
    let ddl: Vec<&Value> = lines.iter().filter(|l| l["ddl"].is_string()).collect();
    assert_eq!(ddl.len(), 2, "{lines:#?}\n{}", d.log());
    assert!(ddl[0]["ddl"].as_str().unwrap().contains("ADD COLUMN a"));
    assert!(ddl[1]["ddl"].as_str().unwrap().contains("ADD COLUMN b"));
    let rows: Vec<&Value> = lines.iter().filter(|l| l["op"] == "c").collect();
    assert_eq!(rows.len(), 8);
    assert!(!d.log().contains("diverges"), "{}", d.log());
    assert!(d.stop().success(), "{}", d.log());
}
