//! [`OffsetStore`] in plain files under `<data_dir>/state`, one directory
//! per task, each record replaced atomically (write a temporary file,
//! fsync it, rename it over the record, fsync the directory).
//!
//! ```text
//! <data_dir>/tidemark.lock                 the daemon's lock (DataDirLock)
//! <data_dir>/state/FORMAT                  "3"
//! <data_dir>/state/tasks/<task>/position   <committed_at_ms> <position>
//! <data_dir>/state/tasks/<task>/reset      present between a reset and the next commit
//! <data_dir>/state/tasks/<task>/snapshot.json
//! <data_dir>/state/tasks/<task>/owner.json
//! <data_dir>/state/tasks/<task>/skips.json
//! ```
//!
//! Why files rather than an embedded database: a record is a few hundred
//! bytes written once per group commit; a rename is atomic, so a reader
//! (`tidemark offsets show` while the daemon runs) always sees a whole
//! record without any lock; and a failed write (a full disk) leaves the
//! previous record intact and the next write simply succeeds once space is
//! back. The embedded database used before (sled) refused every write after
//! one I/O error until it was reopened (see the README, "Dependencies").
//!
//! Data directories of earlier versions (sled, `<data_dir>/offsets`) are
//! migrated on open: every position and reset mark is copied, then the old
//! directory is renamed `offsets.migrated` (kept, not deleted).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    Committed, DataDirLock, OffsetStore, Ownership, Skip, SnapshotProgress, StoreError, StoreFuture,
};
use crate::event::Position;

/// The layout this code writes.
pub const FORMAT: u32 = 3;

struct Inner {
    /// `<data_dir>/state`.
    root: PathBuf,
    /// Last committed position per task, so a commit needn't read its file.
    positions: Mutex<HashMap<String, Position>>,
    /// Serializes claims (one process holds the data dir).
    claims: Mutex<()>,
}

pub struct FileOffsetStore {
    inner: Arc<Inner>,
    _lock: Option<DataDirLock>,
}

impl FileOffsetStore {
    /// Locks `data_dir` (see [`DataDirLock`]), then opens (creating or
    /// migrating) the store in it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let lock = DataDirLock::acquire(data_dir)?;
        let mut store = Self::open_unlocked(data_dir)?;
        store._lock = Some(lock);
        Ok(store)
    }

    /// Opens the store for reading while a daemon may hold the lock: only
    /// reads are safe through it (`tidemark offsets show`).
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("state");
        check_format(&root)?;
        Ok(FileOffsetStore {
            inner: Arc::new(Inner {
                root,
                positions: Mutex::new(HashMap::new()),
                claims: Mutex::new(()),
            }),
            _lock: None,
        })
    }

    /// Opens without taking the data directory's lock (tests, and callers
    /// that hold it already).
    pub fn open_unlocked(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("state");
        let fresh = !root.join("FORMAT").exists();
        if fresh {
            std::fs::create_dir_all(root.join("tasks"))
                .map_err(|e| StoreError::io("creating the offset store", &root, e))?;
        }
        check_format(&root)?;
        let store = FileOffsetStore {
            inner: Arc::new(Inner {
                root: root.clone(),
                positions: Mutex::new(HashMap::new()),
                claims: Mutex::new(()),
            }),
            _lock: None,
        };
        if fresh {
            super::migrate::from_sled(data_dir, &store)?;
            write_atomic(&root, "FORMAT", FORMAT.to_string().as_bytes())?;
        }
        Ok(store)
    }

    /// Runs `f` off the async runtime.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&inner))
                .await
                .map_err(|e| StoreError::Join(e.to_string()))?
        })
    }

    /// Writes a position as a migration does (no monotonic check).
    pub(super) fn put_position(&self, task: &str, c: &Committed) -> Result<(), StoreError> {
        let dir = self.inner.task_dir(task)?;
        write_atomic(
            &dir,
            "position",
            format!("{} {}", c.committed_at_ms, c.position).as_bytes(),
        )
    }

    pub(super) fn put_reset(&self, task: &str) -> Result<(), StoreError> {
        let dir = self.inner.task_dir(task)?;
        write_atomic(&dir, "reset", b"reset")
    }
}

fn check_format(root: &Path) -> Result<(), StoreError> {
    let path = root.join("FORMAT");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::io(
                "reading the offset store's format",
                &path,
                e,
            ));
        }
    };
    let found = text.trim().to_string();
    if found.parse::<u32>().map_or(true, |f| f > FORMAT) {
        return Err(StoreError::Format {
            path: root.display().to_string(),
            found,
            supported: FORMAT,
        });
    }
    Ok(())
}

impl Inner {
    fn task_path(&self, task: &str) -> PathBuf {
        self.root.join("tasks").join(task)
    }

    /// The task's directory, created if needed.
    fn task_dir(&self, task: &str) -> Result<PathBuf, StoreError> {
        let dir = self.task_path(task);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::io("creating a task's state directory", &dir, e))?;
            sync_dir(&self.root.join("tasks"))?;
        }
        Ok(dir)
    }

    fn read(&self, task: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.task_path(task).join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading the offset store", &path, e)),
        }
    }

    fn load_position(&self, task: &str) -> Result<Option<Committed>, StoreError> {
        match self.read(task, "position")? {
            Some(b) => Ok(Some(decode_position(task, &b)?)),
            None => Ok(None),
        }
    }

    fn remove(&self, task: &str, name: &str) -> Result<(), StoreError> {
        let path = self.task_path(task).join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.task_path(task)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("updating the offset store", &path, e)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Position>> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Replaces `dir/name` with `bytes` atomically and durably.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = write {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::io("writing the offset store", &path, e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing the offset store's directory", dir, e))
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
        .trim_end()
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

fn encode_json<T: serde::Serialize>(
    task: &str,
    what: &'static str,
    v: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt {
        task: task.to_string(),
        what,
        text: String::new(),
        reason: e.to_string(),
    })
}

impl OffsetStore for FileOffsetStore {
    fn load(&self, task: &str) -> StoreFuture<'_, Option<Committed>> {
        let task = task.to_string();
        self.blocking(move |s| s.load_position(&task))
    }

    fn commit(&self, task: &str, pos: &Position) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        let pos = pos.clone();
        self.blocking(move |s| {
            let cached = s.cache().get(&task).cloned();
            let old = match cached {
                Some(p) => Some(p),
                None => s.load_position(&task)?.map(|c| c.position),
            };
            if old
                .as_ref()
                .is_some_and(|o| o.partial_cmp(&pos).is_some_and(|o| o.is_ge()))
            {
                return Ok(());
            }
            let dir = s.task_dir(&task)?;
            let now = super::now_ms();
            write_atomic(&dir, "position", format!("{now} {pos}").as_bytes())?;
            s.cache().insert(task.clone(), pos);
            s.remove(&task, "reset")
        })
    }

    fn reset(&self, task: &str) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        self.blocking(move |s| {
            let dir = s.task_dir(&task)?;
            write_atomic(&dir, "reset", b"reset")?;
            s.remove(&task, "position")?;
            s.cache().remove(&task);
            Ok(())
        })
    }

    fn was_reset(&self, task: &str) -> StoreFuture<'_, bool> {
        let task = task.to_string();
        self.blocking(move |s| Ok(s.read(&task, "reset")?.is_some()))
    }

    fn list(&self) -> StoreFuture<'_, Vec<(String, Committed)>> {
        self.blocking(|s| {
            let dir = s.root.join("tasks");
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(StoreError::io("listing the offset store", &dir, e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry =
                    entry.map_err(|e| StoreError::io("listing the offset store", &dir, e))?;
                let task = entry.file_name().to_string_lossy().into_owned();
                if let Some(c) = s.load_position(&task)? {
                    out.push((task, c));
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn skips(&self, task: &str) -> StoreFuture<'_, Vec<Skip>> {
        let task = task.to_string();
        self.blocking(move |s| match s.read(&task, "skips.json")? {
            Some(b) => decode_json(&task, "skips", &b),
            None => Ok(Vec::new()),
        })
    }

    fn add_skip(&self, task: &str, skip: &Skip) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        let skip = skip.clone();
        self.blocking(move |s| {
            let mut all: Vec<Skip> = match s.read(&task, "skips.json")? {
                Some(b) => decode_json(&task, "skips", &b)?,
                None => Vec::new(),
            };
            if all.iter().any(|k| k.position == skip.position) {
                return Ok(());
            }
            all.push(skip);
            let dir = s.task_dir(&task)?;
            write_atomic(&dir, "skips.json", &encode_json(&task, "skips", &all)?)
        })
    }

    fn snapshot(&self, task: &str) -> StoreFuture<'_, Option<SnapshotProgress>> {
        let task = task.to_string();
        self.blocking(move |s| match s.read(&task, "snapshot.json")? {
            Some(b) => Ok(Some(decode_json(&task, "snapshot progress", &b)?)),
            None => Ok(None),
        })
    }

    fn save_snapshot(&self, task: &str, progress: &SnapshotProgress) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        let cur = progress.clone();
        self.blocking(move |s| {
            let dir = s.task_dir(&task)?;
            write_atomic(
                &dir,
                "snapshot.json",
                &encode_json(&task, "snapshot progress", &cur)?,
            )
        })
    }

    fn clear_snapshot(&self, task: &str) -> StoreFuture<'_, ()> {
        let task = task.to_string();
        self.blocking(move |s| s.remove(&task, "snapshot.json"))
    }

    fn owner(&self, task: &str) -> StoreFuture<'_, Option<Ownership>> {
        let task = task.to_string();
        self.blocking(move |s| match s.read(&task, "owner.json")? {
            Some(b) => Ok(Some(decode_json(&task, "owner", &b)?)),
            None => Ok(None),
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
        self.blocking(move |s| {
            let _one_at_a_time = s.claims.lock().unwrap_or_else(|p| p.into_inner());
            let current: Option<Ownership> = match s.read(&task, "owner.json")? {
                Some(b) => Some(decode_json(&task, "owner", &b)?),
                None => None,
            };
            if let Some(c) = &current
                && c.node != node
                && c.expires_at_ms > super::now_ms()
            {
                return Ok(Err(c.clone()));
            }
            let claim = Ownership {
                node,
                epoch: current.as_ref().map_or(1, |c| c.epoch + 1),
                expires_at_ms,
            };
            let dir = s.task_dir(&task)?;
            write_atomic(&dir, "owner.json", &encode_json(&task, "owner", &claim)?)?;
            Ok(Ok(claim))
        })
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
