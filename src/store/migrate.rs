//! Migration of data directories written by earlier versions, whose offset
//! store was sled (`<data_dir>/offsets`: positions `<ms> <position>` in the
//! default tree, reset marks in the `reset` tree).

use std::path::Path;

use super::files::FileOffsetStore;
use super::{Committed, StoreError};

/// Copies the positions and reset marks of an old sled store into `to`,
/// then renames the old directory `offsets.migrated`. Nothing to do when
/// there is none.
pub fn from_sled(data_dir: &Path, to: &FileOffsetStore) -> Result<(), StoreError> {
    let old = data_dir.join("offsets");
    if !old.join("db").exists() && !old.join("conf").exists() {
        return Ok(());
    }
    let sled_err = |what: &'static str| move |source| StoreError::Sled { what, source };
    let db = sled::Config::new()
        .path(&old)
        .open()
        .map_err(|source| StoreError::Open {
            path: old.display().to_string(),
            source,
        })?;
    let mut migrated = 0usize;
    for kv in db.iter() {
        let (k, v) = kv.map_err(sled_err("reading the old offset store"))?;
        let task = String::from_utf8_lossy(&k).into_owned();
        let corrupt = |reason: &str| StoreError::Corrupt {
            task: task.clone(),
            what: "position (old store)",
            text: String::from_utf8_lossy(&v).into_owned(),
            reason: reason.to_string(),
        };
        let text = std::str::from_utf8(&v).map_err(|_| corrupt("not UTF-8"))?;
        let (at, pos) = text
            .split_once(' ')
            .ok_or_else(|| corrupt("missing timestamp"))?;
        let c = Committed {
            committed_at_ms: at.parse().map_err(|_| corrupt("bad timestamp"))?,
            position: pos.parse().map_err(|_| corrupt("bad position"))?,
        };
        to.put_position(&task, &c)?;
        migrated += 1;
    }
    let resets = db
        .open_tree("reset")
        .map_err(sled_err("reading the old offset store"))?;
    for kv in resets.iter() {
        let (k, _) = kv.map_err(sled_err("reading the old offset store"))?;
        to.put_reset(&String::from_utf8_lossy(&k))?;
    }
    drop(resets);
    drop(db);
    let done = data_dir.join("offsets.migrated");
    std::fs::rename(&old, &done)
        .map_err(|e| StoreError::io("renaming the migrated offset store", &old, e))?;
    tracing::info!(
        from = %old.display(),
        positions = migrated,
        kept_as = %done.display(),
        "migrated the offset store to the file layout"
    );
    Ok(())
}
