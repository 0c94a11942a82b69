//! Commit-to-consumer latency of a running tidemark task that writes a
//! source table to Kafka (used by scripts/bench-kafka.sh).
//!
//! Inserts rows into `<table>` at a fixed rate, each row carrying the wall
//! clock just before its transaction commits (`sent_ns`), while a consumer
//! reads the task's topic (all partitions, assigned, `fetch.wait.max.ms=5`)
//! and records `receive time - sent_ns` per row. Prints count, p50, p99 and
//! max in milliseconds. The figure bounds commit-to-broker latency from
//! above: it includes the consumer's fetch.
//!
//!   cargo run --release --example kafka_latency -- \
//!     mysql|postgres <source url> <table> <brokers> <topic> <rows per second> <seconds>

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

fn consume(brokers: String, topic: String, expected: usize, deadline: Instant) -> Vec<f64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "tidemark-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("consumer");
    let partitions = loop {
        if let Ok(md) = c.fetch_metadata(Some(&topic), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && !t.partitions().is_empty()
        {
            break t.partitions().len() as i32;
        }
        assert!(Instant::now() < deadline, "topic {topic} did not appear");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected && Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let received = now_ns();
        let Some(payload) = m.payload() else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            continue;
        };
        let after = if v.get("payload").is_some() {
            &v["payload"]["after"]
        } else {
            &v["after"]
        };
        if let Some(sent) = after["sent_ns"].as_i64() {
            out.push((received - sent) as f64 / 1e6);
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!(
            "usage: kafka_latency mysql|postgres <source url> <table> <brokers> <topic> <rows/s> <seconds>"
        );
        std::process::exit(2);
    }
    let (kind, url, table, brokers, topic) = (&args[1], &args[2], &args[3], &args[4], &args[5]);
    let rate: usize = args[6].parse().expect("rows/s");
    let seconds: u64 = args[7].parse().expect("seconds");
    // Ten transactions a second per 1,000 rows/s… as 100 ticks a second.
    let per_tick = rate.div_ceil(100);
    let ticks = seconds * 100;
    let expected = per_tick * ticks as usize;
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    let consumer = {
        let (b, t) = (brokers.clone(), topic.clone());
        std::thread::spawn(move || consume(b, t, expected, deadline))
    };

    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut id: i64 = 0;
    let insert_sql = |id: &mut i64| {
        let now = now_ns();
        let rows: Vec<String> = (0..per_tick)
            .map(|_| {
                *id += 1;
                format!("({id}, {now}, 'x')")
            })
            .collect();
        format!(
            "INSERT INTO {table} (id, sent_ns, pad) VALUES {}",
            rows.join(", ")
        )
    };
    match kind.as_str() {
        "mysql" => {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(url).expect("url"))
                .await
                .expect("connect");
            for _ in 0..ticks {
                interval.tick().await;
                c.query_drop(insert_sql(&mut id)).await.expect("insert");
            }
        }
        "postgres" => {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            for _ in 0..ticks {
                interval.tick().await;
                c.batch_execute(&insert_sql(&mut id)).await.expect("insert");
            }
        }
        other => panic!("unknown source {other}"),
    }
    let mut lat = consumer.join().expect("consumer");
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "rate {rate} rows/s for {seconds} s: {} of {expected} rows; latency ms p50 {:.1} p99 {:.1} max {:.1}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}
