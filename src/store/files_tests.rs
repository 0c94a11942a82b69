use super::*;
use crate::event::BinlogPosition;
use crate::store::TableSnapshot;

fn pos(tx: u64, ev: u64) -> Position {
    Position::Binlog(BinlogPosition {
        file: "bin.000001".into(),
        tx_pos: tx,
        event_pos: ev,
        row: 0,
    })
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tidemark-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn commits_are_durable_and_monotonic() {
    let dir = dir("commits");
    {
        let s = FileOffsetStore::open(&dir).unwrap();
        assert_eq!(s.load("a").await.unwrap(), None);
        s.commit("a", &pos(100, 120)).await.unwrap();
        s.commit("a", &pos(50, 60)).await.unwrap(); // backward: ignored
        s.commit("b", &pos(7, 8)).await.unwrap();
    }
    let s = FileOffsetStore::open(&dir).unwrap();
    assert_eq!(s.load("a").await.unwrap().unwrap().position, pos(100, 120));
    // Backward after a reopen too (the check reads the file).
    s.commit("a", &pos(50, 60)).await.unwrap();
    assert_eq!(s.load("a").await.unwrap().unwrap().position, pos(100, 120));
    assert_eq!(s.list().await.unwrap().len(), 2);
    s.reset("a").await.unwrap();
    assert_eq!(s.load("a").await.unwrap(), None);
    assert!(s.was_reset("a").await.unwrap());
    assert!(!s.was_reset("b").await.unwrap());
    // A reset position may move backward; the reset mark goes with the commit.
    s.commit("a", &pos(1, 2)).await.unwrap();
    assert!(!s.was_reset("a").await.unwrap());
    assert_eq!(s.load("a").await.unwrap().unwrap().position, pos(1, 2));
    // Readable by another process while this one holds the lock.
    let ro = FileOffsetStore::open_read_only(&dir).unwrap();
    assert_eq!(ro.load("a").await.unwrap().unwrap().position, pos(1, 2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sled_data_dirs_are_migrated_without_loss() {
    let dir = dir("v1");
    {
        // What earlier versions wrote: sled, positions in the default
        // tree, resets in `reset`.
        let db = sled::open(dir.join("offsets")).unwrap();
        db.insert("shop", format!("1700000000000 {}", pos(4, 90)).as_bytes())
            .unwrap();
        db.insert("other", format!("1700000000001 {}", pos(5, 6)).as_bytes())
            .unwrap();
        db.open_tree("reset")
            .unwrap()
            .insert("gone", &b"reset"[..])
            .unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &b"2"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let s = FileOffsetStore::open(&dir).unwrap();
    let c = s.load("shop").await.unwrap().unwrap();
    assert_eq!(c.position, pos(4, 90));
    assert_eq!(c.committed_at_ms, 1_700_000_000_000);
    assert_eq!(s.load("other").await.unwrap().unwrap().position, pos(5, 6));
    assert!(s.was_reset("gone").await.unwrap());
    assert!(dir.join("offsets.migrated").exists());
    assert!(!dir.join("offsets").exists());
    drop(s);
    // A newer layout is refused rather than misread.
    std::fs::write(dir.join("state/FORMAT"), "9").unwrap();
    let e = FileOffsetStore::open(&dir).err().unwrap().to_string();
    assert!(e.contains("newer than this tidemark"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn snapshot_progress_and_claims() {
    let dir = dir("snap");
    let s = FileOffsetStore::open(&dir).unwrap();
    let mut p = SnapshotProgress {
        handoff: Some(pos(4, 0).to_string()),
        ..Default::default()
    };
    p.tables.insert(
        "shop.orders".into(),
        TableSnapshot {
            chunks_done: 3,
            rows: 3000,
            last_key: Some(vec![serde_json::json!(3000)]),
            done: false,
        },
    );
    s.save_snapshot("t", &p).await.unwrap();
    let got = s.snapshot("t").await.unwrap().unwrap();
    assert_eq!(got.tables["shop.orders"].chunks_done, 3);
    // A re-snapshot starts a table over: the record is replaced.
    p.tables
        .insert("shop.orders".into(), TableSnapshot::default());
    s.save_snapshot("t", &p).await.unwrap();
    let got = s.snapshot("t").await.unwrap().unwrap();
    assert_eq!(got.tables["shop.orders"].chunks_done, 0);
    s.clear_snapshot("t").await.unwrap();
    assert_eq!(s.snapshot("t").await.unwrap(), None);

    let far = crate::store::now_ms() + 60_000;
    let a = s.claim("t", "node-a", far).await.unwrap().unwrap();
    assert_eq!(a.epoch, 1);
    let refused = s.claim("t", "node-b", far).await.unwrap().unwrap_err();
    assert_eq!(refused.node, "node-a");
    let again = s.claim("t", "node-a", far).await.unwrap().unwrap();
    assert_eq!(again.epoch, 2);
    // An expired claim can be taken over.
    s.claim("u", "node-a", 0).await.unwrap().unwrap();
    let b = s.claim("u", "node-b", far).await.unwrap().unwrap();
    assert_eq!((b.node.as_str(), b.epoch), ("node-b", 2));
    assert_eq!(s.owner("u").await.unwrap(), Some(b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failed_write_keeps_the_previous_record() {
    let dir = dir("failed");
    let s = FileOffsetStore::open(&dir).unwrap();
    s.commit("a", &pos(10, 1)).await.unwrap();
    // A directory where the temporary file goes makes the write fail.
    let tmp = dir.join("state/tasks/a/.position.tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    assert!(s.commit("a", &pos(20, 1)).await.is_err());
    assert_eq!(s.load("a").await.unwrap().unwrap().position, pos(10, 1));
    std::fs::remove_dir_all(&tmp).unwrap();
    s.commit("a", &pos(20, 1)).await.unwrap();
    assert_eq!(s.load("a").await.unwrap().unwrap().position, pos(20, 1));
    let _ = std::fs::remove_dir_all(&dir);
}
