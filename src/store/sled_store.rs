//! [`OffsetStore`] on sled, in `<data_dir>/offsets`.

use std::path::Path;

use super::{Committed, OffsetStore, StoreError};
use crate::event::Position;

pub struct SledOffsetStore {
    /// Default tree: task id → `<committed_at_ms> <position>`.
    db: sled::Db,
    /// Task id → `reset` while a reset awaits the task's next commit.
    meta: sled::Tree,
}

impl SledOffsetStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("offsets");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(4 << 20)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let meta = db.open_tree("reset")?;
        Ok(SledOffsetStore { db, meta })
    }

    fn decode(task: &str, bytes: &[u8]) -> Result<Committed, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            task: task.to_string(),
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
}

impl OffsetStore for SledOffsetStore {
    fn load(&self, task: &str) -> Result<Option<Committed>, StoreError> {
        match self.db.get(task.as_bytes())? {
            Some(v) => Ok(Some(Self::decode(task, &v)?)),
            None => Ok(None),
        }
    }

    fn commit(&self, task: &str, pos: &Position) -> Result<(), StoreError> {
        if let Some(old) = self.load(task)?
            && old.position.partial_cmp(pos).is_some_and(|o| o.is_ge())
        {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        self.db
            .insert(task.as_bytes(), format!("{now} {pos}").into_bytes())?;
        self.meta.remove(task.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    fn reset(&self, task: &str) -> Result<(), StoreError> {
        self.db.remove(task.as_bytes())?;
        self.meta.insert(task.as_bytes(), &b"reset"[..])?;
        self.db.flush()?;
        Ok(())
    }

    fn was_reset(&self, task: &str) -> Result<bool, StoreError> {
        Ok(self.meta.get(task.as_bytes())?.is_some())
    }

    fn list(&self) -> Result<Vec<(String, Committed)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db.iter() {
            let (k, v) = kv?;
            let task = String::from_utf8_lossy(&k).into_owned();
            let c = Self::decode(&task, &v)?;
            out.push((task, c));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BinlogPosition;

    fn pos(tx: u64, ev: u64) -> Position {
        Position::Binlog(BinlogPosition {
            file: "bin.000001".into(),
            tx_pos: tx,
            event_pos: ev,
            row: 0,
        })
    }

    #[test]
    fn commits_are_durable_and_monotonic() {
        let dir = std::env::temp_dir().join(format!("tidemark-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = SledOffsetStore::open(&dir).unwrap();
            assert_eq!(s.load("a").unwrap(), None);
            s.commit("a", &pos(100, 120)).unwrap();
            s.commit("a", &pos(50, 60)).unwrap(); // backward: ignored
            s.commit("b", &pos(7, 8)).unwrap();
        }
        let s = SledOffsetStore::open(&dir).unwrap();
        assert_eq!(s.load("a").unwrap().unwrap().position, pos(100, 120));
        assert_eq!(s.list().unwrap().len(), 2);
        s.reset("a").unwrap();
        assert_eq!(s.load("a").unwrap(), None);
        assert!(s.was_reset("a").unwrap());
        assert!(!s.was_reset("b").unwrap());
        // A reset position may move backward; the reset mark goes with the commit.
        s.commit("a", &pos(1, 2)).unwrap();
        assert!(!s.was_reset("a").unwrap());
        assert_eq!(s.load("a").unwrap().unwrap().position, pos(1, 2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
