use std::sync::Arc;

use super::*;
use crate::event::{BinlogPosition, Ddl, DdlKind, Position, TxMeta};

fn table(db: &str, name: &str) -> Arc<TableSchema> {
    let col = |n: &str, t: &str| ColumnDef {
        name: n.into(),
        type_name: t.into(),
        nullable: n != "id",
    };
    let columns = vec![
        col("id", "int"),
        col("region", "varchar(8)"),
        col("amount", "decimal(10,2)"),
        col("email", "varchar(64)"),
    ];
    Arc::new(TableSchema {
        merged: None,
        db: db.into(),
        schema: None,
        name: name.into(),
        version: TableSchema::fingerprint(&columns, &[0]),
        columns,
        key: vec![0],
        uniques: Vec::new(),
        before_complete: true,
        defaults: Vec::new(),
    })
}

fn row(id: i64, region: &str, amount: &str, email: &str) -> Vec<Value> {
    vec![
        Value::Int(id),
        Value::Text(region.into()),
        Value::Decimal(amount.into()),
        Value::Text(email.into()),
    ]
}

fn event(
    t: &Arc<TableSchema>,
    op: Op,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
) -> ChangeEvent {
    ChangeEvent {
        op,
        position: Position::Binlog(BinlogPosition::start_of("b.000001", 4)),
        tx: Arc::new(TxMeta {
            server_id: 7,
            commit_ts_ms: 1_700_000_000_000,
            ..Default::default()
        }),
        table: Some(t.clone()),
        before,
        after,
        ddl: None,
        source_offset: 0,
        tx_order: 1,
        table_order: 1,
        connector: crate::event::Connector::Mariadb,
        copying: false,
    }
}

fn rules(toml_text: &str) -> Rules {
    #[derive(serde::Deserialize)]
    struct R {
        rules: Vec<RuleConfig>,
    }
    let r: R = toml::from_str(toml_text).unwrap();
    Rules::new("t", &r.rules, false).unwrap()
}

fn names(ev: &ChangeEvent) -> Vec<String> {
    ev.table
        .as_ref()
        .unwrap()
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn columns_are_selected_renamed_added_and_masked() {
    let mut r = rules(
        r#"
[[rules]]
tables = ["shop.orders"]
exclude_columns = ["region"]
rename_columns = { amount = "total" }
mask = { email = "hash" }
mask_secret = "0123456789abcdef0123"
add_columns = [
  { name = "src", source = "qualified_table" },
  { name = "at", source = "commit_time" },
  { name = "tenant", value = 42 },
]
rename_table = { to = "dw.orders" }
"#,
    );
    let t = table("shop", "orders");
    let mut ev = event(
        &t,
        Op::Update,
        Some(row(1, "EU", "5.00", "a@x")),
        Some(row(1, "EU", "6.00", "a@x")),
    );
    assert!(r.apply(&mut ev).unwrap());
    let out = ev.table.as_ref().unwrap();
    assert_eq!((out.db.as_str(), out.name.as_str()), ("dw", "orders"));
    assert_eq!(names(&ev), ["id", "total", "email", "src", "at", "tenant"]);
    assert_eq!(out.key, vec![0]);
    assert_eq!(out.columns[2].type_name, "char(64)");
    let after = ev.after.as_ref().unwrap();
    assert_eq!(after[1], Value::Decimal("6.00".into()));
    let Value::Text(h) = &after[2] else {
        panic!("{after:?}")
    };
    assert_eq!(h.len(), 64);
    assert!(!h.contains("a@x"));
    // Equal values hash alike: the before image's too.
    assert_eq!(ev.before.as_ref().unwrap()[2], after[2]);
    assert_eq!(after[3], Value::Text("shop.orders".into()));
    assert_eq!(
        after[4],
        Value::Timestamp {
            epoch_micros: 1_700_000_000_000_000,
            precision: 3
        }
    );
    assert_eq!(after[5], Value::Int(42));
    // A change's facts aren't the before image's.
    assert_eq!(ev.before.as_ref().unwrap()[4], Value::Unchanged);
    // One output schema per source schema.
    let mut ev2 = event(&t, Op::Create, None, Some(row(2, "US", "1.00", "b@x")));
    r.apply(&mut ev2).unwrap();
    assert!(Arc::ptr_eq(
        ev.table.as_ref().unwrap(),
        ev2.table.as_ref().unwrap()
    ));
}

#[test]
fn other_masks_keep_nothing_of_the_value() {
    let mut r = rules(
        r#"
[[rules]]
tables = ["shop.*"]
mask = { email = { keep_first = 2 }, region = "redact", amount = "null" }
"#,
    );
    let t = table("shop", "orders");
    let mut ev = event(
        &t,
        Op::Create,
        None,
        Some(row(1, "EU", "5.00", "alice@example.com")),
    );
    r.apply(&mut ev).unwrap();
    let a = ev.after.unwrap();
    assert_eq!(a[1], Value::Text("***".into()));
    assert_eq!(a[2], Value::Null);
    assert_eq!(a[3], Value::Text("al***************".into()));
    assert!(ev.table.unwrap().columns[2].nullable);
}

#[test]
fn filters_turn_moves_into_inserts_and_deletes() {
    let mut r = rules(
        r#"
[[rules]]
tables = ["shop.orders"]
filter = 'row.region == "EU" && row.amount > 100'
"#,
    );
    let t = table("shop", "orders");
    let eu = || row(1, "EU", "150.00", "a");
    let us = || row(1, "US", "150.00", "a");
    // Insert in / out.
    assert!(
        r.apply(&mut event(&t, Op::Create, None, Some(eu())))
            .unwrap()
    );
    assert!(
        !r.apply(&mut event(&t, Op::Create, None, Some(us())))
            .unwrap()
    );
    // Update staying in, moving in, moving out, staying out.
    let mut e = event(&t, Op::Update, Some(eu()), Some(eu()));
    assert!(r.apply(&mut e).unwrap());
    assert_eq!(e.op, Op::Update);
    let mut e = event(&t, Op::Update, Some(us()), Some(eu()));
    assert!(r.apply(&mut e).unwrap());
    assert_eq!((e.op, e.before.is_none()), (Op::Create, true));
    let mut e = event(&t, Op::Update, Some(eu()), Some(us()));
    assert!(r.apply(&mut e).unwrap());
    assert_eq!((e.op, e.after.is_none()), (Op::Delete, true));
    assert!(
        !r.apply(&mut event(&t, Op::Update, Some(us()), Some(us())))
            .unwrap()
    );
    // Deletes read the before image.
    assert!(
        r.apply(&mut event(&t, Op::Delete, Some(eu()), None))
            .unwrap()
    );
    assert!(
        !r.apply(&mut event(&t, Op::Delete, Some(us()), None))
            .unwrap()
    );
    // A table the rule doesn't name passes.
    let other = table("shop", "items");
    assert!(
        r.apply(&mut event(&other, Op::Create, None, Some(us())))
            .unwrap()
    );
}

#[test]
fn filter_errors_follow_the_rules_policy_and_never_quote_values() {
    let text = |policy: &str| {
        format!(
            r#"
[[rules]]
tables = ["shop.orders"]
filter = 'row.amount > 100'
on_error = "{policy}"
mask = {{ email = "redact" }}
"#
        )
    };
    let t = table("shop", "orders");
    let secret = || {
        let mut v = row(1, "EU", "1", "secret@example.com");
        v[2] = Value::Null;
        v
    };
    let mut r = rules(&text("fail"));
    let e = r
        .apply(&mut event(&t, Op::Create, None, Some(secret())))
        .unwrap_err();
    assert!(
        e.contains("rule 1") && e.contains("shop.orders") && e.contains("on_error"),
        "{e}"
    );
    assert!(!e.contains("secret@"), "{e}");
    let mut r = rules(&text("skip"));
    assert!(
        !r.apply(&mut event(&t, Op::Create, None, Some(secret())))
            .unwrap()
    );
    assert_eq!((r.errors, r.dead.len()), (1, 0));
    let mut r = rules(&text("dead_letter"));
    assert!(
        !r.apply(&mut event(&t, Op::Create, None, Some(secret())))
            .unwrap()
    );
    assert_eq!(r.dead.len(), 1);
    let line = &r.dead[0].line;
    assert!(
        line.contains("\"rule\":1") && line.contains("***"),
        "{line}"
    );
    assert!(!line.contains("secret@"), "{line}");
}

#[test]
fn key_columns_stay_unless_replaced() {
    let t = table("shop", "orders");
    let bad = [
        (r#"exclude_columns = ["id"]"#, "drops key column"),
        (r#"mask = { id = "null" }"#, "part of a key"),
        (r#"exclude_columns = ["nope"]"#, "doesn't have"),
        (r#"rename_columns = { region = "amount" }"#, "already has"),
    ];
    for (rule, want) in bad {
        let mut r = rules(&format!("[[rules]]\ntables = [\"shop.*\"]\n{rule}\n"));
        let e = r
            .apply(&mut event(
                &t,
                Op::Create,
                None,
                Some(row(1, "EU", "1", "a")),
            ))
            .unwrap_err();
        assert!(e.contains(want) && e.contains("rule 1"), "{rule}: {e}");
    }
    let mut r =
        rules("[[rules]]\ntables = [\"shop.*\"]\nexclude_columns = [\"id\"]\nkey = [\"email\"]\n");
    let mut ev = event(&t, Op::Create, None, Some(row(1, "EU", "1", "a")));
    r.apply(&mut ev).unwrap();
    let out = ev.table.unwrap();
    assert_eq!(out.key, vec![2]);
    // include_columns keeps the key.
    let mut r = rules("[[rules]]\ntables = [\"shop.*\"]\ninclude_columns = [\"amount\"]\n");
    let mut ev = event(&t, Op::Create, None, Some(row(1, "EU", "1", "a")));
    r.apply(&mut ev).unwrap();
    assert_eq!(names(&ev), ["id", "amount"]);
}

fn ddl(db: &str, table: &str, stmt: &str, kind: DdlKind) -> ChangeEvent {
    // Each statement later in the log than the one before.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
    let mut ev = event(&self::table(db, table), Op::Ddl, None, None);
    ev.position = Position::Binlog(BinlogPosition::start_of(
        "b.000001",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    ));
    ev.table = None;
    ev.ddl = Some(Box::new(Ddl {
        db: Some(db.into()),
        table: Some(table.into()),
        statement: stmt.into(),
        kind,
        reshaped_from: None,
    }));
    ev
}

const MERGE: &str = r#"
[[rules]]
tables = ["shop_*.orders_*"]
rename_table = { match = 'shop_(\d+)\.orders_(\d+)', to = "shop.orders" }
merge = { shard_column = "shard" }
"#;

#[test]
fn shards_merge_into_one_table_with_the_shard_in_the_key() {
    let mut r = rules(MERGE);
    let mut out = Vec::new();
    for s in ["shop_1.orders_1", "shop_1.orders_2", "shop_2.orders_3"] {
        let (db, name) = s.split_once('.').unwrap();
        let mut ev = event(
            &table(db, name),
            Op::Create,
            None,
            Some(row(1, "EU", "1", "a")),
        );
        assert!(r.apply(&mut ev).unwrap());
        out.push(ev);
    }
    for ev in &out {
        let t = ev.table.as_ref().unwrap();
        assert_eq!(t.qualified_name(), "shop.orders");
        assert_eq!(t.key, vec![0, 4]);
    }
    assert_eq!(
        out[2].after.as_ref().unwrap()[4],
        Value::Text("shop_2.orders_3".into())
    );
    // Renamed into one without a merge: refused.
    let mut r = rules(
        r#"
[[rules]]
tables = ["shop_*.orders_*"]
rename_table = { match = 'shop_(\d+)\.orders_(\d+)', to = "shop.orders" }
"#,
    );
    r.apply(&mut event(
        &table("shop_1", "orders_1"),
        Op::Create,
        None,
        Some(row(1, "EU", "1", "a")),
    ))
    .unwrap();
    let e = r
        .apply(&mut event(
            &table("shop_2", "orders_2"),
            Op::Create,
            None,
            Some(row(1, "EU", "1", "a")),
        ))
        .unwrap_err();
    assert!(e.contains("merge = { shard_column"), "{e}");
}

#[test]
fn a_merged_tables_schema_changes_once_every_shard_has_changed() {
    let mut r = rules(MERGE);
    let shards = [
        "shop_1.orders_1",
        "shop_1.orders_2",
        "shop_2.orders_1",
        "shop_2.orders_2",
    ];
    for s in shards {
        let (db, name) = s.split_once('.').unwrap();
        r.apply(&mut event(
            &table(db, name),
            Op::Create,
            None,
            Some(row(1, "EU", "1", "a")),
        ))
        .unwrap();
    }
    let mut passed = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let (db, name) = s.split_once('.').unwrap();
        let mut ev = ddl(
            db,
            name,
            &format!("ALTER TABLE `{name}` ADD COLUMN note  TEXT"),
            DdlKind::AlterTable,
        );
        if r.apply(&mut ev).unwrap() {
            passed.push(i);
            let d = ev.ddl.as_ref().unwrap();
            assert_eq!(
                (d.db.as_deref(), d.table.as_deref()),
                (Some("shop"), Some("orders"))
            );
            assert_eq!(d.reshaped_from.as_deref(), Some(*s));
        }
    }
    assert_eq!(passed, [3], "the change goes on once, with the last shard");
    // A shard that changes otherwise is named.
    let mut ev = ddl(
        "shop_1",
        "orders_1",
        "ALTER TABLE orders_1 ADD COLUMN x INT",
        DdlKind::AlterTable,
    );
    assert!(!r.apply(&mut ev).unwrap());
    let mut ev = ddl(
        "shop_2",
        "orders_1",
        "ALTER TABLE orders_1 ADD COLUMN y INT",
        DdlKind::AlterTable,
    );
    let e = r.apply(&mut ev).unwrap_err();
    assert!(
        e.contains("shop_2.orders_1") && e.contains("diverges") && e.contains("shop_1.orders_1"),
        "{e}"
    );
    // A truncate of one shard would empty the others' rows.
    let t = table("shop_1", "orders_1");
    let e = r
        .apply(&mut event(&t, Op::Truncate, None, None))
        .unwrap_err();
    assert!(e.contains("truncate_table"), "{e}");
}

#[test]
fn config_errors_name_the_field() {
    let bad = [
        ("tables = []", "tables"),
        ("tables = [\"x\"]", "tables"),
        ("tables = [\"a.b\"]\nfilter = \"row.a ==\"", "filter"),
        ("tables = [\"a.b\"]\nfilter = \"a == 1\"", "filter"),
        ("tables = [\"a.b\"]\nmask = { c = \"hash\" }", "mask_secret"),
        (
            "tables = [\"a.b\"]\nrename_table = { match = '(', to = \"x.y\" }",
            "rename_table",
        ),
        (
            "tables = [\"a.b\"]\nrename_table = { match = 'a\\.(b)', to = \"x.$2\" }",
            "rename_table",
        ),
        (
            "tables = [\"a.b\"]\nrename_table = { to = \"xy\" }",
            "rename_table",
        ),
        ("tables = [\"a.b\"]\nmerge = { keys = \"unique\" }", "merge"),
        (
            "tables = [\"a.b\"]\nadd_columns = [{ name = \"c\" }]",
            "add_columns[0]",
        ),
        (
            "tables = [\"a.b\"]\nadd_columns = [{ name = \"c\", source = \"position\", key = true }]",
            "add_columns[0]",
        ),
    ];
    for (text, key) in bad {
        let r: RuleConfig = toml::from_str(text).unwrap();
        let (k, m) = r.validate().unwrap_err();
        assert_eq!(k, key, "{text}: {m}");
        assert!(!m.is_empty());
    }
}

#[test]
fn a_shard_copied_after_anothers_change_still_counts() {
    let mut r = rules(MERGE);
    let shards = [
        "shop_1.orders_1",
        "shop_1.orders_2",
        "shop_2.orders_1",
        "shop_2.orders_2",
    ];
    let alter = |r: &mut Rules, s: &str| {
        let (db, name) = s.split_once('.').unwrap();
        let mut ev = ddl(
            db,
            name,
            &format!("ALTER TABLE {name} ADD COLUMN note TEXT"),
            DdlKind::AlterTable,
        );
        r.apply(&mut ev).unwrap()
    };
    let rows = |r: &mut Rules, s: &str| {
        let (db, name) = s.split_once('.').unwrap();
        r.apply(&mut event(
            &table(db, name),
            Op::Read,
            None,
            Some(row(1, "EU", "1", "a")),
        ))
        .unwrap();
    };
    for s in &shards[..3] {
        rows(&mut r, s);
    }
    assert!(!alter(&mut r, shards[0]));
    // The fourth shard's snapshot rows arrive after the first's change.
    rows(&mut r, shards[3]);
    assert!(!alter(&mut r, shards[1]));
    assert!(!alter(&mut r, shards[2]));
    assert!(alter(&mut r, shards[3]), "the last shard's change goes on");
    let g = &r.groups()[0];
    assert_eq!(g.schema_changes, 1);
    assert!(g.shards.values().all(|&n| n == 1), "{g:?}");
}

#[test]
fn a_before_image_of_the_key_only_is_not_judged() {
    let mut r = rules("[[rules]]\ntables = [\"shop.orders\"]\nfilter = 'row.region == \"EU\"'\n");
    let mut t = (*table("shop", "orders")).clone();
    t.before_complete = false;
    let t = Arc::new(t);
    // PostgreSQL's default identity: the key, then NULLs.
    let key_only = || vec![Value::Int(1), Value::Null, Value::Null, Value::Null];
    let mut del = event(&t, Op::Delete, Some(key_only()), None);
    assert!(r.apply(&mut del).unwrap(), "a delete is passed on");
    let mut out = event(
        &t,
        Op::Update,
        Some(key_only()),
        Some(row(1, "US", "1", "a")),
    );
    assert!(r.apply(&mut out).unwrap());
    assert_eq!(out.op, Op::Delete, "moving out (or never in): deleted");
    let mut stay = event(
        &t,
        Op::Update,
        Some(key_only()),
        Some(row(1, "EU", "1", "a")),
    );
    assert!(r.apply(&mut stay).unwrap());
    assert_eq!(stay.op, Op::Update);
}

#[test]
fn a_restart_in_the_middle_of_a_shard_change_keeps_the_count() {
    let path =
        std::env::temp_dir().join(format!("tidemark-rules-state-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let open = || {
        #[derive(serde::Deserialize)]
        struct R {
            rules: Vec<RuleConfig>,
        }
        let r: R = toml::from_str(MERGE).unwrap();
        Rules::new("t", &r.rules, false)
            .unwrap()
            .keep_state(path.clone())
            .unwrap()
    };
    let shards = [
        "shop_1.orders_1",
        "shop_1.orders_2",
        "shop_2.orders_1",
        "shop_2.orders_2",
    ];
    let at = |n: u64| Position::Binlog(BinlogPosition::start_of("b.000001", 1000 + n));
    let alter = |r: &mut Rules, s: &str, col: &str, n: u64| {
        let (db, name) = s.split_once('.').unwrap();
        let mut ev = ddl(
            db,
            name,
            &format!("ALTER TABLE {name} ADD COLUMN {col} TEXT"),
            DdlKind::AlterTable,
        );
        ev.position = at(n);
        r.apply(&mut ev)
    };
    let mut r = open();
    for s in shards {
        let (db, name) = s.split_once('.').unwrap();
        r.apply(&mut event(
            &table(db, name),
            Op::Read,
            None,
            Some(row(1, "EU", "1", "a")),
        ))
        .unwrap();
    }
    assert!(!alter(&mut r, shards[0], "a", 1).unwrap());
    assert!(!alter(&mut r, shards[1], "a", 2).unwrap());
    // Restart: the position committed was before the second shard's change.
    let mut r = open();
    assert!(
        !alter(&mut r, shards[1], "a", 2).unwrap(),
        "read again: counted once"
    );
    assert!(!alter(&mut r, shards[2], "a", 3).unwrap());
    assert!(
        alter(&mut r, shards[3], "a", 4).unwrap(),
        "goes on with the last shard"
    );
    // Restart before that was committed: it goes on again.
    let mut r = open();
    assert!(alter(&mut r, shards[3], "a", 4).unwrap());
    // The next change compares with the right statement: no false divergence.
    for (i, s) in shards.iter().enumerate() {
        let last = i == 3;
        assert_eq!(alter(&mut r, s, "b", 10 + i as u64).unwrap(), last, "{s}");
    }
    let g = &r.groups()[0];
    assert_eq!(g.schema_changes, 2);
    assert!(g.shards.values().all(|&n| n == 2), "{g:?}");
    let _ = std::fs::remove_file(&path);
}
