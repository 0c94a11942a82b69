//! [`OffsetStore`] on sled, in `<data_dir>/offsets`.
//!
//! Layout (format 2):
//! - default tree: task id → `<committed_at_ms> <position>` (as in format 1);
//! - `reset`: task id → `reset` while a reset awaits the task's next commit;
//! - `snapshots`: task id → [`SnapshotProgress`] as JSON;
//! - `owners`: task id → [`Ownership`] as JSON;
//! - `meta`: `format` → `2`.
//!
//! Format 1 (no `meta` tree) is format 2 without snapshots and owners: it is
//! upgraded in place on open by writing the format marker; nothing moves.
//! A newer format is refused rather than misread.

use std::path::Path;

use super::{
    Committed, DataDirLock, OffsetStore, Ownership, SnapshotProgress, StoreError, StoreFuture,
};
use crate::event::Position;

/// The format this code writes.
pub const FORMAT: u32 = 2;

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    reset: sled::Tree,
    snapshots: sled::Tree,
    owners: sled::Tree,
}

pub struct SledOffsetStore {
    trees: Trees,
    _lock: Option<DataDirLock>,
}

fn sled_err(what: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { what, source }
}

impl SledOffsetStore {
    /// Locks `data_dir` (see [`DataDirLock`]) and opens the store in it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let lock = DataDirLock::acquire(data_dir)?;
        let mut store = Self::open_unlocked(data_dir)?;
        store._lock = Some(lock);
        Ok(store)
    }

    /// Opens the store without the data directory's lock (tests, and
    /// callers that hold it already).
    pub fn open_unlocked(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("offsets");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(4 << 20)
            .open()
            .map_err(|source| match source {
                sled::Error::Io(e) => StoreError::io("opening the offset store", &path, e),
                source => StoreError::Open {
                    path: path.display().to_string(),
                    source,
                },
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err("opening a tree"));
        let meta = tree("meta")?;
        let trees = Trees {
            reset: tree("reset")?,
            snapshots: tree("snapshots")?,
            owners: tree("owners")?,
            db: db.clone(),
        };
        match meta.get("format").map_err(sled_err("reading the format"))? {
            None => {
                // Format 1 (or a new store): upgrade in place.
                meta.insert("format", FORMAT.to_string().as_bytes())
                    .map_err(sled_err("writing the format"))?;
                db.flush().map_err(sled_err("flushing"))?;
            }
            Some(v) => {
                let found = String::from_utf8_lossy(&v).into_owned();
                if found.parse::<u32>().map_or(true, |f| f > FORMAT) {
                    return Err(StoreError::Format {
                        path: path.display().to_string(),
                        found,
                        supported: FORMAT,
                    });
                }
            }
        }
        Ok(SledOffsetStore { trees, _lock: None })
    }

    /// Runs `f` on the trees off the async runtime.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Trees) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let trees = self.trees.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&trees))
                .await
                .map_err(|e| StoreError::Join(e.to_string()))?
        })
    }
}

fn decode_position(task: &str, bytes: &[u8]) -> Result<Committed, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        task: task.to_string(),
        what: "position",
        text: String::from_utf8_lossy(bytes).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt(e.to_string()))?;
    // `<committed_at_ms> <position>`
    let (at, pos) = text
        .split_once(' ')
        .ok_or_else(|| corrupt("missing timestamp".into()))?;
    Ok(Committed {
        committed_at_ms: at.parse().map_err(|_| corrupt("bad timestamp".into()))?,
        position: pos
            .parse()
            .map_err(|e: crate::event::position::ParsePositionError| corrupt(e.to_string()))?,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(
    task: &str,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        task: task.to_string(),
        what,
        text: String::from_utf8_lossy(bytes).into_owned(),
        reason: e.to_string(),
    })
}

fn load_position(t: &Trees, task: &str) -> Result<Option<Committed>, StoreError> {
    match t.db.get(task.as_bytes()).map_err(sled_err("reading a position"))? {
        Some(v) => Ok(Some(decode_position(task, &v)?)),
        None => Ok(None),
    }
}

impl OffsetStore for SledOffsetStore {
    fn load(&self, task: &str) -> StoreFuture<'_, Option<Committed>> {
        let task = task.to_string();
        self.blocking(move |t| load_position(t, &task))
    }

    fn commit(&self, task: &str, pos: &Position) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        let pos = pos.clone();
        self.blocking(move |t| {
            if let Some(old) = load_position(t, &task)?
                && old.position.partial_cmp(&pos).is_some_and(|o| o.is_ge())
            {
                return Ok(());
            }
            let now = super::now_ms();
            t.db.insert(task.as_bytes(), format!("{now} {pos}").into_bytes())
                .map_err(sled_err("writing a position"))?;
            t.reset
                .remove(task.as_bytes())
                .map_err(sled_err("clearing a reset"))?;
            t.db.flush().map_err(sled_err("flushing a position"))?;
            Ok(())
        })
    }

    fn reset(&self, task: &str) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        self.blocking(move |t| {
            t.db.remove(task.as_bytes())
                .map_err(sled_err("removing a position"))?;
            t.reset
                .insert(task.as_bytes(), &b"reset"[..])
                .map_err(sled_err("marking a reset"))?;
            t.db.flush().map_err(sled_err("flushing a reset"))?;
            Ok(())
        })
    }

    fn was_reset(&self, task: &str) -> StoreFuture<'_, bool> {
        let task = task.to_string();
        self.blocking(move |t| {
            Ok(t.reset
                .get(task.as_bytes())
                .map_err(sled_err("reading a reset"))?
                .is_some())
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<(String, Committed)>> {
        self.blocking(|t| {
            let mut out = Vec::new();
            for kv in t.db.iter() {
                let (k, v) = kv.map_err(sled_err("listing positions"))?;
                let task = String::from_utf8_lossy(&k).into_owned();
                let c = decode_position(&task, &v)?;
                out.push((task, c));
            }
            Ok(out)
        })
    }

    fn snapshot(&self, task: &str) -> StoreFuture<'_, Option<SnapshotProgress>> {
        let task = task.to_string();
        self.blocking(move |t| {
            match t
                .snapshots
                .get(task.as_bytes())
                .map_err(sled_err("reading snapshot progress"))?
            {
                Some(v) => Ok(Some(decode_json(&task, "snapshot progress", &v)?)),
                None => Ok(None),
            }
        })
    }

    fn save_snapshot(&self, task: &str, progress: &SnapshotProgress) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        let newer = progress.clone();
        self.blocking(move |t| {
            let mut cur: SnapshotProgress = match t
                .snapshots
                .get(task.as_bytes())
                .map_err(sled_err("reading snapshot progress"))?
            {
                Some(v) => decode_json(&task, "snapshot progress", &v)?,
                None => SnapshotProgress::default(),
            };
            cur.merge(&newer);
            let bytes = serde_json::to_vec(&cur).map_err(|e| StoreError::Corrupt {
                task: task.clone(),
                what: "snapshot progress",
                text: String::new(),
                reason: e.to_string(),
            })?;
            t.snapshots
                .insert(task.as_bytes(), bytes)
                .map_err(sled_err("writing snapshot progress"))?;
            t.db.flush().map_err(sled_err("flushing snapshot progress"))?;
            Ok(())
        })
    }

    fn clear_snapshot(&self, task: &str) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        self.blocking(move |t| {
            t.snapshots
                .remove(task.as_bytes())
                .map_err(sled_err("clearing snapshot progress"))?;
            t.db.flush().map_err(sled_err("flushing"))?;
            Ok(())
        })
    }

    fn owner(&self, task: &str) -> StoreFuture<'_, Option<Ownership>> {
        let task = task.to_string();
        self.blocking(move |t| {
            match t
                .owners
                .get(task.as_bytes())
                .map_err(sled_err("reading the owner"))?
            {
                Some(v) => Ok(Some(decode_json(&task, "owner", &v)?)),
                None => Ok(None),
            }
        })
    }

    fn claim(
        &self,
        task: &str,
        node: &str,
        expires_at_ms: i64,
    ) -> StoreFuture<'_, Result<Ownership, Ownership>> {
        let task = task.to_string();
        let node = node.to_string();
        self.blocking(move |t| {
            loop {
                let old = t
                    .owners
                    .get(task.as_bytes())
                    .map_err(sled_err("reading the owner"))?;
                let current: Option<Ownership> = match &old {
                    Some(v) => Some(decode_json(&task, "owner", v)?),
                    None => None,
                };
                if let Some(c) = &current
                    && c.node != node
                    && c.expires_at_ms > super::now_ms()
                {
                    return Ok(Err(c.clone()));
                }
                let claim = Ownership {
                    node: node.clone(),
                    epoch: current.as_ref().map_or(1, |c| c.epoch + 1),
                    expires_at_ms,
                };
                let bytes = serde_json::to_vec(&claim).unwrap_or_default();
                let swapped = t
                    .owners
                    .compare_and_swap(task.as_bytes(), old, Some(bytes))
                    .map_err(sled_err("claiming the task"))?;
                if swapped.is_ok() {
                    t.db.flush().map_err(sled_err("flushing the claim"))?;
                    return Ok(Ok(claim));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
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

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tidemark-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn commits_are_durable_and_monotonic() {
        let dir = dir("commits");
        {
            let s = SledOffsetStore::open(&dir).unwrap();
            assert_eq!(s.load("a").await.unwrap(), None);
            s.commit("a", &pos(100, 120)).await.unwrap();
            s.commit("a", &pos(50, 60)).await.unwrap(); // backward: ignored
            s.commit("b", &pos(7, 8)).await.unwrap();
        }
        let s = SledOffsetStore::open(&dir).unwrap();
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
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn format_1_data_dirs_are_upgraded_without_loss() {
        let dir = dir("v1");
        {
            // What format 1 wrote: positions in the default tree, resets
            // in `reset`, no `meta`.
            let db = sled::open(dir.join("offsets")).unwrap();
            db.insert("shop", format!("1700000000000 {}", pos(4, 90)).as_bytes())
                .unwrap();
            db.open_tree("reset")
                .unwrap()
                .insert("other", &b"reset"[..])
                .unwrap();
            db.flush().unwrap();
        }
        let s = SledOffsetStore::open(&dir).unwrap();
        let c = s.load("shop").await.unwrap().unwrap();
        assert_eq!(c.position, pos(4, 90));
        assert_eq!(c.committed_at_ms, 1_700_000_000_000);
        assert!(s.was_reset("other").await.unwrap());
        assert_eq!(s.snapshot("shop").await.unwrap(), None);
        drop(s);
        let db = sled::open(dir.join("offsets")).unwrap();
        let format = db.open_tree("meta").unwrap().get("format").unwrap();
        assert_eq!(format.as_deref(), Some(&b"2"[..]));
        // A newer format is refused.
        db.open_tree("meta").unwrap().insert("format", "9").unwrap();
        db.flush().unwrap();
        drop(db);
        let e = SledOffsetStore::open(&dir).err().unwrap().to_string();
        assert!(e.contains("newer than this tidemark"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn snapshot_progress_and_claims() {
        let dir = dir("snap");
        let s = SledOffsetStore::open(&dir).unwrap();
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
        p.tables.get_mut("shop.orders").unwrap().chunks_done = 2;
        s.save_snapshot("t", &p).await.unwrap();
        let got = s.snapshot("t").await.unwrap().unwrap();
        assert_eq!(got.tables["shop.orders"].chunks_done, 3);
        s.clear_snapshot("t").await.unwrap();
        assert_eq!(s.snapshot("t").await.unwrap(), None);

        let far = super::super::now_ms() + 60_000;
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
}
