//! TOAST, replica identities, truncate and schema changes on a real server.

use std::time::Duration;

use serde_json::{Value, json};

use super::{exactly, wait_streaming};
use crate::support::{Daemon, postgres};

const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// 64000 characters / bytes, stored out of line (STORAGE EXTERNAL).
const BIG: &str = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g)";

#[tokio::test(flavor = "multi_thread")]
async fn toast_unchanged_values_are_marked_not_null() {
    let db = "pg_toast";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE d (id int PRIMARY KEY, v text, big text, blob bytea, arr text[]);
         ALTER TABLE d ALTER COLUMN big SET STORAGE EXTERNAL,
                       ALTER COLUMN blob SET STORAGE EXTERNAL,
                       ALTER COLUMN arr SET STORAGE EXTERNAL;
         CREATE TABLE f (id int PRIMARY KEY, v text, big text);
         ALTER TABLE f ALTER COLUMN big SET STORAGE EXTERNAL, REPLICA IDENTITY FULL;",
    )
    .await;
    let mut d = Daemon::postgres("pg_toast", &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);
    pg.exec(
        db,
        &format!(
            "INSERT INTO d VALUES (1, 'a', {BIG}, convert_to({BIG}, 'UTF8'), ARRAY[{BIG}, 'x']);
             UPDATE d SET v = 'b' WHERE id = 1;
             UPDATE d SET big = 'small' WHERE id = 1;
             INSERT INTO f VALUES (1, 'a', {BIG});
             UPDATE f SET v = 'b' WHERE id = 1;"
        ),
    )
    .await;
    let big: String = pg
        .client(db)
        .await
        .query_one(BIG.trim_start_matches('(').trim_end_matches(')'), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 64_000);
    let lines = d.wait_lines(5, Duration::from_secs(30));
    let ins = &lines[0]["after"];
    assert_eq!(ins["big"], json!(big));
    use base64::Engine as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ins["blob"].as_str().unwrap())
        .unwrap();
    assert_eq!(blob, big.as_bytes());
    assert_eq!(ins["arr"], json!([big, "x"]));

    // The update left the out-of-line values alone: the server did not send
    // them, and the event says so (not null, not empty).
    let upd = &lines[1];
    assert_eq!(upd["op"], json!("u"));
    assert_eq!(
        upd["before"],
        Value::Null,
        "REPLICA IDENTITY DEFAULT, key unchanged"
    );
    assert_eq!(upd["after"]["v"], json!("b"));
    for col in ["big", "blob", "arr"] {
        assert_eq!(upd["after"][col], json!(UNAVAILABLE), "{col}");
    }
    let upd2 = &lines[2]["after"];
    assert_eq!(upd2["big"], json!("small"));
    assert_eq!(upd2["blob"], json!(UNAVAILABLE));
    assert_eq!(upd2["arr"], json!(UNAVAILABLE));

    // REPLICA IDENTITY FULL: the old row is complete, the unchanged value in
    // the new row is still marked.
    let full = &lines[4];
    assert_eq!(full["before"]["v"], json!("a"));
    assert_eq!(full["before"]["big"], json!(big));
    assert_eq!(full["after"]["v"], json!("b"));
    assert_eq!(full["after"]["big"], json!(UNAVAILABLE));
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_identities_give_the_before_images_they_allow() {
    let db = "pg_identity";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE dflt (id int PRIMARY KEY, v text);
         CREATE TABLE full_t (id int PRIMARY KEY, v text);
         ALTER TABLE full_t REPLICA IDENTITY FULL;
         CREATE TABLE idx (id int PRIMARY KEY, code text NOT NULL, v text);
         CREATE UNIQUE INDEX idx_code ON idx (code);
         ALTER TABLE idx REPLICA IDENTITY USING INDEX idx_code;
         CREATE TABLE nothing (id int PRIMARY KEY, v text);
         ALTER TABLE nothing REPLICA IDENTITY NOTHING;",
    )
    .await;
    let mut d = Daemon::postgres("pg_identity", &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);
    pg.exec(
        db,
        "INSERT INTO dflt VALUES (1, 'a');
         UPDATE dflt SET v = 'b' WHERE id = 1;
         UPDATE dflt SET id = 2 WHERE id = 1;
         DELETE FROM dflt WHERE id = 2;
         INSERT INTO full_t VALUES (1, 'a');
         UPDATE full_t SET v = 'b' WHERE id = 1;
         DELETE FROM full_t WHERE id = 1;
         INSERT INTO idx VALUES (1, 'c1', 'x');
         UPDATE idx SET v = 'y' WHERE id = 1;
         UPDATE idx SET code = 'c2' WHERE id = 1;
         DELETE FROM idx WHERE id = 1;
         INSERT INTO nothing VALUES (1, 'x');",
    )
    .await;
    // With no replica identity the server itself refuses updates and
    // deletes of a published table: there is no before image to give.
    let refused = pg
        .client(db)
        .await
        .batch_execute("UPDATE nothing SET v = 'y'")
        .await
        .unwrap_err();
    let msg = format!("{refused:?}");
    assert!(msg.contains("replica identity"), "{msg}");

    let lines = exactly(&mut d, 12, pg, db, "INSERT INTO dflt VALUES (99, 'end')").await;
    let ev = |i: usize| {
        (
            lines[i]["op"].clone(),
            lines[i]["before"].clone(),
            lines[i]["after"].clone(),
        )
    };
    // DEFAULT: no before image unless the key changed; deletes give the key.
    assert_eq!(ev(1), (json!("u"), Value::Null, json!({"id": 1, "v": "b"})));
    assert_eq!(
        ev(2),
        (
            json!("u"),
            json!({"id": 1, "v": null}),
            json!({"id": 2, "v": "b"})
        )
    );
    assert_eq!(
        ev(3),
        (json!("d"), json!({"id": 2, "v": null}), Value::Null)
    );
    // FULL: the whole old row.
    assert_eq!(
        ev(5),
        (
            json!("u"),
            json!({"id": 1, "v": "a"}),
            json!({"id": 1, "v": "b"})
        )
    );
    assert_eq!(ev(6), (json!("d"), json!({"id": 1, "v": "b"}), Value::Null));
    // USING INDEX: the index columns, only when they change or on delete.
    assert_eq!(
        ev(8),
        (
            json!("u"),
            Value::Null,
            json!({"id": 1, "code": "c1", "v": "y"})
        )
    );
    assert_eq!(
        ev(9),
        (
            json!("u"),
            json!({"id": null, "code": "c1", "v": null}),
            json!({"id": 1, "code": "c2", "v": "y"})
        )
    );
    assert_eq!(
        ev(10),
        (
            json!("d"),
            json!({"id": null, "code": "c2", "v": null}),
            Value::Null
        )
    );
    // NOTHING: inserts only.
    assert_eq!(
        ev(11),
        (json!("c"), Value::Null, json!({"id": 1, "v": "x"}))
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_and_schema_changes() {
    let db = "pg_schema";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE s (id int PRIMARY KEY, v text);
         CREATE TABLE s2 (id int PRIMARY KEY);",
    )
    .await;
    let mut d = Daemon::postgres("pg_schema", &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);
    // One transaction per statement, except the explicit one.
    let c = pg.client(db).await;
    for sql in [
        "INSERT INTO s VALUES (1, 'a')",
        "ALTER TABLE s ADD COLUMN n int DEFAULT 5",
        "INSERT INTO s VALUES (2, 'b', 6)",
        "ALTER TABLE s RENAME COLUMN v TO w",
        "INSERT INTO s VALUES (3, 'c', 7)",
        "ALTER TABLE s DROP COLUMN n",
        "INSERT INTO s VALUES (4, 'dd')",
        "ALTER TABLE s ALTER COLUMN w TYPE int USING length(w)",
        "INSERT INTO s VALUES (5, 42)",
        "BEGIN;
         INSERT INTO s VALUES (6, 1);
         ALTER TABLE s ADD COLUMN z varchar(3);
         INSERT INTO s VALUES (7, 2, 'zz');
         COMMIT;",
        "INSERT INTO s2 VALUES (1)",
        "TRUNCATE s, s2",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    let lines = exactly(&mut d, 10, pg, db, "INSERT INTO s2 VALUES (99)").await;
    let after: Vec<Value> = lines.iter().take(8).map(|l| l["after"].clone()).collect();
    assert_eq!(
        after,
        vec![
            json!({"id": 1, "v": "a"}),
            json!({"id": 2, "v": "b", "n": 6}),
            json!({"id": 3, "w": "c", "n": 7}),
            json!({"id": 4, "w": "dd"}),
            json!({"id": 5, "w": 42}),
            json!({"id": 6, "w": 1}),
            json!({"id": 7, "w": 2, "z": "zz"}),
            json!({"id": 1}),
        ]
    );
    // One transaction around the ALTER: one transaction id, two schemas.
    assert_eq!(lines[5]["transaction"]["id"], lines[6]["transaction"]["id"]);
    assert_eq!(lines[6]["transaction"]["total_order"], json!(2));
    for (i, table) in [(8, "s"), (9, "s2")] {
        assert_eq!(lines[i]["op"], json!("t"), "{}", lines[i]);
        assert_eq!(lines[i]["source"]["table"], json!(table));
        assert_eq!(lines[i]["before"], Value::Null);
        assert_eq!(lines[i]["after"], Value::Null);
    }
    assert_eq!(lines[8]["transaction"]["id"], lines[9]["transaction"]["id"]);
    assert!(d.stop().success(), "{}", d.log());
}
