use super::*;

fn col(ty: &str) -> ColumnDef {
    ColumnDef {
        name: "c".into(),
        type_name: ty.into(),
        nullable: true,
    }
}

fn ty(t: &str, connector: Connector, opts: &JsonOptions) -> J {
    J::Object(column_schema(&col(t), None, connector, opts))
}

#[test]
fn mysql_types_follow_debezium() {
    let o = JsonOptions::default();
    let m = Connector::Mariadb;
    assert_eq!(ty("tinyint unsigned", m, &o), json!({"type": "int16"}));
    assert_eq!(ty("smallint unsigned", m, &o), json!({"type": "int32"}));
    assert_eq!(ty("int unsigned", m, &o), json!({"type": "int64"}));
    assert_eq!(ty("decimal(38,9)", m, &o), json!({"type": "string"}));
    let precise = JsonOptions {
        decimal_handling: DecimalHandling::Precise,
        ..Default::default()
    };
    assert_eq!(
        ty("decimal(38,9)", m, &precise),
        json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
               "parameters": {"scale": "9", "connect.decimal.precision": "38"}})
    );
    assert_eq!(ty("bit(1)", m, &o), json!({"type": "boolean"}));
    assert_eq!(ty("bit(10)", m, &o)["parameters"], json!({"length": "10"}));
    assert_eq!(
        ty("datetime(3)", m, &o)["name"],
        json!("io.debezium.time.Timestamp")
    );
    assert_eq!(
        ty("datetime(6)", m, &o)["name"],
        json!("io.debezium.time.MicroTimestamp")
    );
    assert_eq!(
        ty("time(3)", m, &o)["name"],
        json!("io.debezium.time.MicroTime")
    );
    assert_eq!(ty("timestamp(6)", m, &o)["type"], json!("string"));
}

#[test]
fn postgres_types_follow_debezium() {
    let o = JsonOptions::default();
    let p = Connector::Postgres;
    assert_eq!(ty("int2", p, &o), json!({"type": "int16"}));
    assert_eq!(ty("time(3)", p, &o)["name"], json!("io.debezium.time.Time"));
    assert_eq!(
        ty("time", p, &o)["name"],
        json!("io.debezium.time.MicroTime")
    );
    assert_eq!(
        ty("timestamp(3)", p, &o)["name"],
        json!("io.debezium.time.Timestamp")
    );
    assert_eq!(
        ty("interval", p, &o)["name"],
        json!("io.debezium.time.Interval")
    );
    assert_eq!(
        ty("int4[]", p, &o),
        json!({"type": "array", "items": {"type": "int32", "optional": true}})
    );
    assert_eq!(ty("varbit(16)", p, &o), json!({"type": "string"}));
    let precise = JsonOptions {
        decimal_handling: DecimalHandling::Precise,
        ..Default::default()
    };
    assert_eq!(
        ty("numeric", p, &precise)["name"],
        json!("io.debezium.data.VariableScaleDecimal")
    );
    assert_eq!(
        ty("money", p, &precise)["parameters"],
        json!({"scale": "2"})
    );
    // An enum type is only known by its values.
    let e = column_schema(&col("mood"), Some(&Value::Enum("ok".into())), p, &o);
    assert_eq!(e["name"], json!("io.debezium.data.Enum"));
}

#[test]
fn text_written_values_make_the_field_a_string() {
    let t = TableSchema {
        merged: None,
        db: "d".into(),
        schema: None,
        name: "t".into(),
        columns: vec![ColumnDef {
            name: "d".into(),
            type_name: "date".into(),
            nullable: false,
        }],
        key: vec![],
        uniques: Vec::new(),
        before_complete: true,
        defaults: Vec::new(),
        version: 1,
    };
    let zero = [Value::Date(crate::event::value::Date {
        year: 0,
        month: 0,
        day: 0,
    })];
    let o = JsonOptions::default();
    let q = Quirks::of(&t, &[&zero], &o);
    assert!(!q.is_plain());
    let s = row_schema(&t, &[&zero], &q, Connector::Mariadb, &o, "x.Value", None);
    assert_eq!(
        s["fields"][0],
        json!({"type": "string", "optional": true, "field": "d"})
    );
    let ok = [Value::Date(crate::event::value::Date {
        year: 2024,
        month: 1,
        day: 1,
    })];
    let q = Quirks::of(&t, &[&ok], &o);
    let s = row_schema(&t, &[&ok], &q, Connector::Mariadb, &o, "x.Value", None);
    assert_eq!(
        s["fields"][0],
        json!({"type": "int32", "optional": false, "name": "io.debezium.time.Date", "version": 1, "field": "d"})
    );
}
