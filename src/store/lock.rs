//! The data directory's lock: one daemon (or offline command that writes)
//! per data directory, with an error that names the holder or the real
//! cause (permissions, a full disk), never a guess.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held while the process uses the data directory; released on drop (or
/// when the process dies: `flock` locks go with their file descriptor).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock
    /// (`<dir>/tidemark.lock`, holding the holder's pid).
    pub fn acquire(dir: &Path) -> Result<DataDirLock, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io("creating daemon.data_dir", dir, e))?;
        let path = dir.join("tidemark.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("opening the data directory's lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = match text.trim() {
                    "" => String::new(),
                    p => format!(" (pid {p})"),
                };
                return Err(StoreError::Locked {
                    path: dir.display().to_string(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io("locking the data directory", &path, e));
            }
        }
        let pid = std::process::id().to_string();
        let write = (|| {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(pid.as_bytes())?;
            file.sync_data()
        })();
        write.map_err(|e| StoreError::io("writing the data directory's lock file", &path, e))?;
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = std::env::temp_dir().join(format!("tidemark-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = DataDirLock::acquire(&dir).unwrap();
        let e = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains("in use by another tidemark process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        assert!(DataDirLock::acquire(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
