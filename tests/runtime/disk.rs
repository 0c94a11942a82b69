//! A full disk under the sink's file and under the data directory: a clear
//! error naming the path and the free space, the task retrying (not
//! failed, not stalled silently), and an exact output once space is back.
//!
//! The full disk is a real one: a small tmpfs mounted for the test (which
//! needs root, as CI runs), filled up by a file the test then removes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tidemark::store::FileOffsetStore;
use tidemark::task::{Supervisor, TaskState};

use super::{mysql_task, recovers_exactly, settings, wait_lines, wait_streaming};
use crate::support::workload::Workload;
use crate::support::{mariadb, read_lines, scratch};

/// A tmpfs of `size` mounted at `dir` until dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            nix_is_root(),
            "this test mounts a tmpfs to fill a disk for real: run the suite as root (CI does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let _ = Command::new("umount").arg("-l").arg(dir).status();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs at {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the file system but `leave` bytes, with `filler`.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let free = free_bytes(&self.0);
        let size = free.saturating_sub(leave);
        let f = std::fs::File::create(&filler).unwrap();
        // tmpfs allocates on write: write the bytes, not a sparse file.
        use std::io::Write;
        let mut w = std::io::BufWriter::new(f);
        let chunk = vec![b'.'; 1 << 16];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        w.flush().unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_sink_file_is_named_and_recovered_from_exactly() {
    let db = "rt_diskfull";
    let m = mariadb();
    m.fresh_db(db).await;
    let mut load = Workload::new(&m.url(), db, 9).await;
    let dir = scratch("rt_diskfull");
    let fs = Tmpfs::mount(&dir.join("mnt"), "8m");
    let data = dir.join("data");
    let out = dir.join("mnt").join("out.jsonl");
    let store = Arc::new(FileOffsetStore::open(&data).unwrap());
    let sup = Supervisor::new(store, settings(&data));
    let t = sup
        .add(mysql_task("rt_diskfull", &m.url(), db, &out, &data), true)
        .unwrap();
    wait_streaming(&t).await;
    let mut expected = load.run(20).await;
    wait_lines(&out, expected.len(), &t, Duration::from_secs(60)).await;

    let filler = fs.fill(100 << 10);
    // About 1 MB of events for 100 KB of space.
    expected.extend(load.run(250).await);
    let s = t
        .wait_for(Duration::from_secs(30), |s| s.retry.is_some())
        .await
        .unwrap_or_else(|s| panic!("the full disk did not show: {s:?}"));
    let err = s.retry.unwrap().last_error;
    eprintln!("the task says: {err}");
    assert!(
        err.contains(&out.display().to_string()) && err.contains("is full") && err.contains("free"),
        "{err}"
    );
    assert_eq!(
        s.state,
        TaskState::Running,
        "a full disk is retried, not a failure"
    );
    assert!(read_lines(&out).len() < expected.len());

    std::fs::remove_file(&filler).unwrap();
    recovers_exactly(&t, &out, &expected, "after the disk was full").await;
    assert!(sup.shutdown(Duration::from_secs(20)).await.is_empty());
    drop(fs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_data_dir_is_named_and_recovered_from_exactly() {
    let db = "rt_datafull";
    let m = mariadb();
    m.fresh_db(db).await;
    let mut load = Workload::new(&m.url(), db, 10).await;
    let dir = scratch("rt_datafull");
    let fs = Tmpfs::mount(&dir.join("mnt"), "16m");
    let data = dir.join("mnt").join("data");
    let out = dir.join("out.jsonl");
    let store = Arc::new(FileOffsetStore::open(&data).unwrap());
    let sup = Supervisor::new(store, settings(&data));
    let t = sup
        .add(mysql_task("rt_datafull", &m.url(), db, &out, &data), true)
        .unwrap();
    wait_streaming(&t).await;
    let mut expected = load.run(20).await;
    wait_lines(&out, expected.len(), &t, Duration::from_secs(60)).await;

    let filler = fs.fill(0);
    expected.extend(load.run(200).await);
    let s = t
        .wait_for(Duration::from_secs(60), |s| s.retry.is_some())
        .await
        .unwrap_or_else(|s| panic!("the full data dir did not show: {s:?}"));
    let err = s.retry.unwrap().last_error;
    eprintln!("the task says: {err}");
    assert!(err.contains("offset store"), "{err}");
    assert!(
        err.contains(&data.display().to_string()) || err.contains("No space"),
        "{err}"
    );

    std::fs::remove_file(&filler).unwrap();
    recovers_exactly(&t, &out, &expected, "after the data dir was full").await;
    assert!(sup.shutdown(Duration::from_secs(20)).await.is_empty());
    drop(fs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spill_dir_is_named_and_recovered_from_exactly() {
    let db = "rt_spillfull";
    let pg = crate::support::postgres();
    pg.fresh_db(db).await;
    pg.exec(db, "CREATE TABLE r (id bigint PRIMARY KEY, pad text)")
        .await;
    // A role whose transactions stream from 64 kB on: they go to the spill.
    let url = crate::postgres::streaming_url(pg, db).await;
    let mut d = crate::support::Daemon::postgres(db, &url, &[], "");
    let fs = Tmpfs::mount(&d.dir.join("spill"), "2m");
    crate::postgres::source_option(&d, &format!("spill_dir = \"{}\"", fs.0.display()));
    d.once = false;
    d.start();
    crate::postgres::wait_streaming(&d);
    // One transaction of about 5 MB: more than the spill directory holds.
    pg.exec(
        db,
        "INSERT INTO r SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    )
    .await;
    d.wait_log("is full", Duration::from_secs(60));
    let log = d.current_log();
    assert!(
        log.contains(&format!("spill directory {}", fs.0.display())) && log.contains("free"),
        "{log}"
    );
    assert!(log.contains("restarting"), "retried, not failed: {log}");
    // Space comes back.
    let st = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&fs.0)
        .status()
        .unwrap();
    assert!(st.success());
    let lines = d.wait_lines(20_000, Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<i64> = d
        .lines()
        .iter()
        .map(|l| l["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len(), "extra events");
    assert_eq!(ids, (1..=20_000).collect::<Vec<_>>());
    assert!(d.stop().success(), "{}", d.log());
    drop(fs);
}
