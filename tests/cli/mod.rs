//! The command line: `validate` on good and bad configs, `offsets show` on
//! a new task.

use std::process::Command;

use crate::support::{BIN, scratch};

fn validate(name: &str, text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = scratch(name);
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", "--config", path.to_str().unwrap()]);
    cmd.env_remove("MYSQL_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        text.replace(path.to_str().unwrap(), "FILE"),
    )
}

const GOOD: &str = r#"[daemon]
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

#[test]
fn the_documented_example_validates() {
    let (ok, out) = validate("cli_good", GOOD, &[("MYSQL_PASSWORD", "pw")]);
    assert!(ok, "{out}");
    assert!(out.contains("ok (1 task)"), "{out}");
}

#[test]
fn every_shipped_example_config_validates() {
    let dir = crate::support::repo_root().join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let (ok, out) = validate(
                "cli_examples",
                &text,
                &[
                    ("MYSQL_PASSWORD", "pw"),
                    ("PGPASSWORD", "pw"),
                    ("KAFKA_PASSWORD", "pw"),
                    ("SRC_PASSWORD", "pw"),
                    ("DR_PASSWORD", "pw"),
                    ("PG_PASSWORD", "pw"),
                    ("A_PASSWORD", "pw"),
                    ("B_PASSWORD", "pw"),
                    ("MASK_SECRET", "a-mask-secret-of-24-chars"),
                ],
            );
            assert!(ok, "{}: {out}", path.display());
            n += 1;
        }
    }
    assert!(n >= 1, "no example configs in config/");
}

#[test]
fn bad_configs_name_file_key_and_expectation() {
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "unset secret",
            GOOD.to_string(),
            &[],
            &["FILE", "MYSQL_PASSWORD is not set"],
        ),
        (
            "unknown key",
            GOOD.replace("server_id = 5401", "server_id = 5401\nserverid = 3"),
            &[("MYSQL_PASSWORD", "pw")],
            &["FILE", "tasks[0].source", "serverid"],
        ),
        (
            "wrong type",
            GOOD.replace("server_id = 5401", "server_id = \"5401\""),
            &[("MYSQL_PASSWORD", "pw")],
            &["tasks[0].source.server_id", "u32"],
        ),
        (
            "unknown sink type",
            GOOD.replace("type = \"jsonl\"", "type = \"jsonll\""),
            &[("MYSQL_PASSWORD", "pw")],
            &["tasks[0].sink.type", "jsonll", "jsonl"],
        ),
        (
            "missing url",
            GOOD.replace(
                "url = \"mysql://repl:${MYSQL_PASSWORD}@127.0.0.1:3306\"\n",
                "",
            ),
            &[],
            &["tasks[0].source", "url"],
        ),
        (
            "bad pattern",
            GOOD.replace("shop.*", "shop"),
            &[("MYSQL_PASSWORD", "pw")],
            &["tasks[0].filter.include[0]", "db.table"],
        ),
        (
            "bad url scheme",
            GOOD.replace("mysql://", "postgres://"),
            &[("MYSQL_PASSWORD", "pw")],
            &["tasks[0].source.url", "mysql://"],
        ),
        (
            "syntax",
            GOOD.replace("[daemon]", "[daemon"),
            &[("MYSQL_PASSWORD", "pw")],
            &["FILE", "line 1"],
        ),
        (
            "bad ddl kind",
            format!("{GOOD}[tasks.ddl]\nkinds = {{ drop_everything = \"skip\" }}\n"),
            &[("MYSQL_PASSWORD", "pw")],
            &["tasks[0].ddl.kinds", "drop_everything"],
        ),
        (
            "zero server id",
            GOOD.replace("server_id = 5401", "server_id = 0"),
            &[("MYSQL_PASSWORD", "pw")],
            &["tasks[0].source.server_id", "non-zero"],
        ),
    ];
    for (what, text, env, needles) in cases {
        let (ok, out) = validate("cli_bad", &text, env);
        assert!(!ok, "{what}: accepted");
        for n in needles {
            assert!(out.contains(n), "{what}: {n:?} missing from: {out}");
        }
        assert!(!out.contains("panicked"), "{what}: {out}");
    }
}

#[test]
fn offsets_show_for_a_task_that_never_ran() {
    let dir = scratch("cli_offsets");
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        GOOD.replace("/var/lib/tidemark", dir.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["offsets", "show", "--config", path.to_str().unwrap()])
        .env("MYSQL_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("shop: no committed position"));
}
