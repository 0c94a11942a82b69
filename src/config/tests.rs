//! Tests of `config.rs`.

use super::*;

const ISSUE_EXAMPLE: &str = r#"
[daemon]
data_dir = "/var/lib/tidemark"
[[tasks]]
id = "shop"
[tasks.source]
type = "mysql"
url = "mysql://repl:${MYSQL_PASSWORD}@127.0.0.1:3306"
server_id = 5401
[tasks.filter]
include = ["shop.*"]
[tasks.sink]
type = "jsonl"
path = "/var/lib/tidemark/shop.jsonl"
"#;

fn parse_with(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse_with_env(text, "test.toml", |n| {
        vars.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    })
}

fn err(text: &str) -> String {
    parse_with(text, &[("MYSQL_PASSWORD", "pw")])
        .unwrap_err()
        .to_string()
}

#[test]
fn issue_example_parses() {
    let c = parse_with(ISSUE_EXAMPLE, &[("MYSQL_PASSWORD", "s3\"cret")]).unwrap();
    assert_eq!(c.tasks.len(), 1);
    let SourceConfig::Mysql(m) = &c.tasks[0].source else {
        panic!("not mysql")
    };
    assert_eq!(m.url, "mysql://repl:s3\"cret@127.0.0.1:3306");
    assert_eq!(m.start, StartPosition::Current);
    assert!(!format!("{m:?}").contains("s3"), "secret leaked into Debug");
    assert_eq!(
        c.tasks[0].ddl.action(DdlKind::DropDatabase),
        DdlAction::Skip
    );
    assert_eq!(c.tasks[0].ddl.action(DdlKind::AlterTable), DdlAction::Emit);
}

#[test]
fn unset_variable_is_an_error_naming_it() {
    let e = parse_with(ISSUE_EXAMPLE, &[]).unwrap_err().to_string();
    assert!(e.contains("MYSQL_PASSWORD is not set"), "{e}");
    assert!(e.contains("line 8"), "{e}");
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let e = err(&ISSUE_EXAMPLE.replace("server_id = 5401", "server_id = 5401\nserverid = 1"));
    assert!(e.contains("tasks[0].source"), "{e}");
    assert!(e.contains("serverid"), "{e}");
}

#[test]
fn wrong_types_name_key_and_expectation() {
    let e = err(&ISSUE_EXAMPLE.replace("server_id = 5401", "server_id = \"x\""));
    assert!(e.contains("tasks[0].source.server_id"), "{e}");
    assert!(e.contains("u32"), "{e}");
    assert!(e.starts_with("test.toml: "), "{e}");
}

#[test]
fn semantic_errors() {
    let e = err(&ISSUE_EXAMPLE.replace("server_id = 5401", "server_id = 0"));
    assert!(e.contains("tasks[0].source.server_id"), "{e}");
    let e = err(&ISSUE_EXAMPLE.replace("shop.*", "shop"));
    assert!(e.contains("tasks[0].filter.include[0]"), "{e}");
    let e = err(&ISSUE_EXAMPLE.replace("id = \"shop\"", "id = \"sh op\""));
    assert!(e.contains("tasks[0].id"), "{e}");
    let twice = format!(
        "{ISSUE_EXAMPLE}\n{}",
        &ISSUE_EXAMPLE[ISSUE_EXAMPLE.find("[[tasks]]").unwrap()..]
    );
    let e = err(&twice);
    assert!(e.contains("duplicate task id"), "{e}");
    let e = err(&ISSUE_EXAMPLE.replace("@127.0.0.1:3306", "@127.0.0.1:3306/shop"));
    assert!(e.contains("must not name a database"), "{e}");
    let e = err(&ISSUE_EXAMPLE.replace("type = \"jsonl\"", "type = \"kafkaa\""));
    assert!(e.contains("tasks[0].sink"), "{e}");
    assert!(e.contains("kafkaa"), "{e}");
}

#[test]
fn start_positions_and_ddl_kinds() {
    let c = parse_with(
        &ISSUE_EXAMPLE.replace(
            "server_id = 5401",
            "server_id = 5401\nstart = { file = \"mysql-bin.000003\", pos = 1234 }",
        ),
        &[("MYSQL_PASSWORD", "x")],
    )
    .unwrap();
    let SourceConfig::Mysql(m) = &c.tasks[0].source else {
        panic!("not mysql")
    };
    assert_eq!(
        m.start,
        StartPosition::File {
            file: "mysql-bin.000003".into(),
            pos: 1234
        }
    );
    for (text, expected) in [
        ("\"earliest\"", StartPosition::Named(NamedStart::Earliest)),
        (
            "{ gtid = \"0-1-100\" }",
            StartPosition::Gtid {
                gtid: "0-1-100".into(),
            },
        ),
    ] {
        let c = parse_with(
            &ISSUE_EXAMPLE.replace(
                "server_id = 5401",
                &format!("server_id = 5401\nstart = {text}"),
            ),
            &[("MYSQL_PASSWORD", "x")],
        )
        .unwrap();
        let SourceConfig::Mysql(m) = &c.tasks[0].source else {
            panic!("not mysql")
        };
        assert_eq!(m.start, expected);
    }
    let c = parse_with(
        &format!("{ISSUE_EXAMPLE}\n[tasks.ddl]\ndefault = \"skip\"\nkinds = {{ drop_database = \"emit\" }}\n"),
        &[("MYSQL_PASSWORD", "x")],
    )
    .unwrap();
    assert_eq!(
        c.tasks[0].ddl.action(DdlKind::DropDatabase),
        DdlAction::Emit
    );
    assert_eq!(c.tasks[0].ddl.action(DdlKind::CreateTable), DdlAction::Skip);
    let e = err(&format!(
        "{ISSUE_EXAMPLE}\n[tasks.ddl]\nkinds = {{ drop_everything = \"emit\" }}\n"
    ));
    assert!(e.contains("tasks[0].ddl.kinds"), "{e}");
}

#[test]
fn substitution_escapes_and_literal_dollars() {
    let out = substitute_env("a = \"${X}\" # $${Y} and $5", |_| Some("q\"\\".into())).unwrap();
    assert_eq!(out, "a = \"q\\\"\\\\\" # ${Y} and $5");
    assert!(substitute_env("a = \"${X\"", |_| None).is_err());
    // Comment lines are left alone.
    assert_eq!(
        substitute_env("# ${NOPE}\n", |_| None).unwrap(),
        "# ${NOPE}\n"
    );
}

const PG_EXAMPLE: &str = r#"
[daemon]
data_dir = "/var/lib/tidemark"
[[tasks]]
id = "Shop-EU"
[tasks.source]
type = "postgres"
url = "postgres://repl:${PG_PASSWORD}@127.0.0.1:5432/shop"
[tasks.filter]
include = ["public.*"]
[tasks.sink]
type = "jsonl"
path = "/var/lib/tidemark/shop.jsonl"
"#;

fn pg_err(text: &str) -> String {
    parse_with(text, &[("PG_PASSWORD", "pw")])
        .unwrap_err()
        .to_string()
}

#[test]
fn postgres_source_defaults() {
    let c = parse_with(PG_EXAMPLE, &[("PG_PASSWORD", "s3cret")]).unwrap();
    let SourceConfig::Postgres(p) = &c.tasks[0].source else {
        panic!("not postgres")
    };
    assert_eq!(p.slot, "tidemark_shop_eu");
    assert_eq!(p.publication, "tidemark_shop_eu");
    assert!(p.create_slot && p.create_publication && p.streaming);
    assert_eq!(p.status_interval_secs, 10);
    assert_eq!(p.max_batch_events, 2048);
    assert_eq!(
        p.state_dir,
        PathBuf::from("/var/lib/tidemark/postgres/Shop-EU")
    );
    assert_eq!(
        p.spill_dir.as_deref(),
        Some(Path::new("/var/lib/tidemark/postgres/Shop-EU/spill"))
    );
    assert!(
        !format!("{p:?}").contains("s3cret"),
        "secret leaked into Debug"
    );
    let long = PostgresSourceConfig::default_name(&"x".repeat(100));
    assert_eq!(long.len(), 63);
}

#[test]
fn postgres_source_validation_names_the_key() {
    let e = pg_err(&PG_EXAMPLE.replace("5432/shop", "5432"));
    assert!(e.contains("tasks[0].source.url"), "{e}");
    assert!(e.contains("must name the database"), "{e}");
    let e = pg_err(&PG_EXAMPLE.replace("5432/shop", "5432/shop?sslmode=require"));
    assert!(e.contains("[tasks.source.tls]"), "{e}");
    let e = pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\nslot = \"Bad-Slot\""));
    assert!(e.contains("tasks[0].source.slot"), "{e}");
    assert!(e.contains("not a valid slot name"), "{e}");
    let e = pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\nstatus_interval_secs = 0"));
    assert!(e.contains("tasks[0].source.status_interval_secs"), "{e}");
    let e =
        pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\ntls = { mode = \"required\" }"));
    assert!(e.contains("tasks[0].source.tls"), "{e}");
    assert!(e.contains("DNS name"), "{e}");
    let e = pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\nslots = \"x\""));
    assert!(e.contains("tasks[0].source") && e.contains("slots"), "{e}");
    // Two tasks on one database can't share a slot.
    let second = PG_EXAMPLE[PG_EXAMPLE.find("[[tasks]]").unwrap()..]
        .replace("Shop-EU", "shop_eu")
        .replace("shop.jsonl", "shop2.jsonl");
    let e = pg_err(&format!("{PG_EXAMPLE}\n{second}"));
    assert!(e.contains("tasks[1].source.slot"), "{e}");
    assert!(e.contains("already used by task"), "{e}");
}

#[test]
fn redacts_passwords() {
    assert_eq!(
        redact_url("mysql://repl:secret@127.0.0.1:3306"),
        "mysql://repl:***@127.0.0.1:3306"
    );
    assert_eq!(redact_url("mysql://repl@h"), "mysql://repl@h");
}

#[test]
fn two_spellings_of_one_sink_file_conflict() {
    let second = ISSUE_EXAMPLE[ISSUE_EXAMPLE.find("[[tasks]]").unwrap()..]
        .replace("id = \"shop\"", "id = \"shop2\"")
        .replace("server_id = 5401", "server_id = 5402")
        .replace(
            "/var/lib/tidemark/shop.jsonl",
            "/var/lib/./tidemark/x/../shop.jsonl",
        );
    let e = err(&format!("{ISSUE_EXAMPLE}\n{second}"));
    assert!(e.contains("tasks[1].sink.path"), "{e}");
    assert!(e.contains("already the sink of task \"shop\""), "{e}");
}

#[test]
fn one_task_validates_on_its_own_with_key_paths() {
    let c = parse_with(ISSUE_EXAMPLE, &[("MYSQL_PASSWORD", "pw")]).unwrap();
    let mut t = c.tasks[0].clone();
    assert!(t.validate().is_ok());
    t.filter.exclude = vec!["nodot".into()];
    let (key, msg) = t.validate().unwrap_err();
    assert_eq!(key, "filter.exclude[0]");
    assert!(msg.contains("db.table"), "{msg}");
}

#[test]
fn fail_and_pause_ddl_actions_need_a_database_target() {
    let jsonl = ISSUE_EXAMPLE.replace(
        "[tasks.sink]",
        "[tasks.ddl]\nkinds = { alter_table = \"pause\" }\n[tasks.sink]",
    );
    let e = err(&jsonl);
    assert!(e.contains("tasks[0].ddl.kinds.alter_table"), "{e}");
    assert!(e.contains("act on database targets"), "{e}");
    let db = jsonl.replace(
        "type = \"jsonl\"\npath = \"/var/lib/tidemark/shop.jsonl\"",
        "type = \"mysql\"\nurl = \"mysql://u:p@127.0.0.1:3307\"",
    );
    assert!(
        db.contains("type = \"mysql\"\nurl = \"mysql://u:p@127.0.0.1:3307\""),
        "the sink was replaced: {db}"
    );
    let c = parse_with(&db, &[("MYSQL_PASSWORD", "pw")]).expect("valid with a database target");
    assert_eq!(c.tasks[0].ddl.action(DdlKind::AlterTable), DdlAction::Pause);
}

#[test]
fn the_api_needs_a_token_and_an_address() {
    let with = |api: &str| {
        ISSUE_EXAMPLE.replacen(
            "data_dir = \"/var/lib/tidemark\"\n",
            &format!("data_dir = \"/var/lib/tidemark\"\n[daemon.api]\n{api}\n"),
            1,
        )
    };
    let c = parse_with(
        &with("token = \"${TOKEN}\""),
        &[("MYSQL_PASSWORD", "pw"), ("TOKEN", "0123456789abcdef0123")],
    )
    .unwrap();
    let api = c.daemon.api.expect("api");
    assert_eq!(api.listen, "127.0.0.1:7070");
    assert_eq!(api.max_body_bytes, 1 << 20);
    let e = err(&with(""));
    assert!(e.contains("daemon.api") && e.contains("token"), "{e}");
    let e = err(&with("token = \"short\""));
    assert!(
        e.contains("daemon.api.token: must be at least 16 characters"),
        "{e}"
    );
    let e = err(&with(
        "token = \"0123456789abcdef0123\"\nlisten = \"localhost\"",
    ));
    assert!(e.contains("daemon.api.listen"), "{e}");
}

#[test]
fn a_task_definition_reads_from_json_with_the_config_keys() {
    let text = r#"{"id": "a", "source": {"type": "mysql", "url": "mysql://u:${PW}@h:3306", "server_id": 7},
                   "sink": {"type": "jsonl", "path": "/tmp/a.jsonl"}}"#;
    let c =
        TaskConfig::from_json_with_env(text, |n| (n == "PW").then(|| "p\"w".to_string())).unwrap();
    assert_eq!(c.id, "a");
    match &c.source {
        SourceConfig::Mysql(m) => assert_eq!(m.url, "mysql://u:p\"w@h:3306"),
        other => panic!("{other:?}"),
    }
    let e = TaskConfig::from_json_with_env(
        r#"{"id": "a", "source": {"type": "mysql"}, "sink": {"type": "jsonl", "path": "-"}}"#,
        |_| None,
    )
    .unwrap_err();
    assert!(e.0.starts_with("source"), "{e:?}");
    let e = TaskConfig::from_json_with_env(r#"{"id": "a", "sorce": {}}"#, |_| None).unwrap_err();
    assert!(e.1.contains("sorce"), "{e:?}");
}
