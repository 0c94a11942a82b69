//! The test servers: MariaDB, PostgreSQL and tansu, started by the
//! project's scripts (tests/servers/*.sh) on loopback ports.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::{port, repo_root};

/// A MariaDB instance from tests/servers/mariadb.sh.
pub struct Mariadb {
    pub dir: PathBuf,
    pub port: u16,
    pub flavour: &'static str,
}

impl Mariadb {
    pub fn url(&self) -> String {
        format!("mysql://tidemark:tidemark@127.0.0.1:{}", self.port)
    }

    pub fn start(&self) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/mariadb.sh"))
            .args([
                "start",
                self.dir.to_str().unwrap(),
                &self.port.to_string(),
                self.flavour,
            ])
            .output()
            .expect("running tests/servers/mariadb.sh");
        assert!(
            out.status.success(),
            "MariaDB did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/mariadb.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output()
            .expect("running tests/servers/mariadb.sh");
        assert!(out.status.success());
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::Opts::from_url(&self.url()).unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
        mysql_async::Conn::new(opts)
            .await
            .expect("connecting to the test MariaDB")
    }

    /// Runs statements on one connection (utf8mb4, UTC).
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        c.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
            .await
            .unwrap();
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        c.disconnect().await.unwrap();
    }

    /// Drops and creates database `db`.
    pub async fn fresh_db(&self, db: &str) {
        self.exec(&format!(
            "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4"
        ))
        .await;
    }
}

/// The shared ROW-format MariaDB on port 13306 (started once per process;
/// reused across runs).
pub fn mariadb() -> &'static Mariadb {
    static M: OnceLock<Mariadb> = OnceLock::new();
    M.get_or_init(|| {
        let m = Mariadb {
            dir: repo_root().join("target/servers/mariadb"),
            port: port(13306),
            flavour: "row",
        };
        m.start();
        m
    })
}

/// A private MariaDB for a test that restarts or misconfigures its server.
pub fn private_mariadb(name: &str, base_port: u16, flavour: &'static str) -> Mariadb {
    let m = Mariadb {
        dir: repo_root().join("target/servers").join(name),
        port: port(base_port),
        flavour,
    };
    m.start();
    m
}

/// A PostgreSQL instance from tests/servers/postgres.sh.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    pub flavour: &'static str,
}

impl Postgres {
    /// URL of database `db` as the superuser `tidemark`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://tidemark:tidemark@127.0.0.1:{}/{db}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/postgres.sh"))
            .args([
                cmd,
                self.dir.to_str().unwrap(),
                &self.port.to_string(),
                self.flavour,
            ])
            .output()
            .expect("running tests/servers/postgres.sh");
        assert!(
            out.status.success(),
            "postgres.sh {cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.script("start");
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    pub fn restart(&self) {
        self.script("restart");
    }

    /// A SQL connection to `db` (session in UTC).
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL ({db}): {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
        client
    }

    /// Runs statements in `db`.
    pub async fn exec(&self, db: &str, sql: &str) {
        self.client(db)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e:?}: {sql}"));
    }

    /// Drops (with its replication slots) and creates database `db`.
    pub async fn fresh_db(&self, db: &str) {
        let c = self.client("postgres").await;
        c.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL",
            &[&db],
        )
        .await
        .unwrap();
        for _ in 0..100 {
            let r = c
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
                    &[&db],
                )
                .await;
            if r.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{db}\""),
        ] {
            c.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    }

    /// `confirmed_flush_lsn` of `slot`, as a number.
    pub async fn confirmed_flush(&self, slot: &str) -> Option<u64> {
        let c = self.client("postgres").await;
        let row = c
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()?;
        let text: Option<String> = row.get(0);
        text.as_deref().map(parse_lsn)
    }
}

/// `16/B374D848` → number.
pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("an LSN");
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

/// The shared PostgreSQL (wal_level=logical) on port 15432, started once
/// per process and reused across runs.
pub fn postgres() -> &'static Postgres {
    static P: OnceLock<Postgres> = OnceLock::new();
    P.get_or_init(|| {
        let p = Postgres {
            dir: repo_root().join("target/servers/postgres"),
            port: port(15432),
            flavour: "logical",
        };
        p.start();
        p
    })
}

/// A private PostgreSQL for a test that restarts or misconfigures its server.
pub fn private_postgres(name: &str, base_port: u16, flavour: &'static str) -> Postgres {
    let p = Postgres {
        dir: repo_root().join("target/servers").join(name),
        port: port(base_port),
        flavour,
    };
    p.start();
    p
}

/// A Kafka-protocol broker (tansu) from tests/servers/tansu.sh.
pub struct Broker {
    pub dir: PathBuf,
    pub port: u16,
}

impl Broker {
    /// `host:port` for `bootstrap.servers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/tansu.sh"))
            .args([cmd, self.dir.to_str().unwrap(), &self.port.to_string()])
            .output()
            .expect("running tests/servers/tansu.sh");
        assert!(
            out.status.success(),
            "tansu.sh {cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.script("start");
    }

    /// SIGSTOP: the broker hangs (connections stay open, nothing answers).
    pub fn pause(&self) {
        self.script("pause");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.script("resume");
    }
}

/// The shared tansu broker on 127.0.0.1:19092 (started once per process,
/// reused across runs; tests use topics of their own).
pub fn tansu() -> &'static Broker {
    static B: OnceLock<Broker> = OnceLock::new();
    B.get_or_init(|| {
        let b = Broker {
            dir: repo_root().join("target/servers/tansu"),
            port: port(19092),
        };
        b.start();
        b
    })
}

/// A private tansu broker for a test that pauses its broker.
pub fn private_tansu(name: &str, base_port: u16) -> Broker {
    let b = Broker {
        dir: repo_root().join("target/servers").join(name),
        port: port(base_port),
    };
    b.start();
    b
}
