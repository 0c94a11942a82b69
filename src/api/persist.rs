//! Tasks created over the API, kept in `<data_dir>/api-tasks/<id>.json`:
//! the definition as the request gave it (`${VAR}` references stay
//! references: secrets given so never reach the disk) and the state the
//! operator left the task in (`running`, `paused`, `stopped`, `created`),
//! which it comes back in after a restart. Files are written whole
//! (temporary file, then rename), readable by the daemon's user only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One stored task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The definition as JSON, with the keys of a `[[tasks]]` entry.
    pub definition: serde_json::Value,
    /// What the operator asked last: `running`, `paused`, `stopped` or
    /// `created`.
    pub desired: String,
}

/// The directory of stored API tasks.
#[derive(Debug, Clone)]
pub struct ApiTasks {
    dir: PathBuf,
    data_dir: PathBuf,
    allowed: Vec<PathBuf>,
}

impl ApiTasks {
    /// `allowed`: directories the files of API tasks must be in (the data
    /// directory when empty).
    pub fn new(data_dir: &Path, allowed: &[PathBuf]) -> ApiTasks {
        let allowed = if allowed.is_empty() {
            vec![data_dir.to_path_buf()]
        } else {
            allowed.to_vec()
        };
        ApiTasks {
            dir: data_dir.join("api-tasks"),
            data_dir: data_dir.to_path_buf(),
            allowed,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn allowed_dirs(&self) -> Vec<PathBuf> {
        self.allowed.clone()
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Every stored task, by id (file name order); a file that can't be
    /// read is reported with its path.
    pub fn load(&self) -> Vec<(String, Result<Stored, String>)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Result<Stored, String>)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let id = name.strip_suffix(".json")?.to_string();
                let path = e.path();
                let read = std::fs::read(&path)
                    .map_err(|err| format!("{}: {err}", path.display()))
                    .and_then(|b| {
                        serde_json::from_slice::<Stored>(&b)
                            .map_err(|err| format!("{}: {err}", path.display()))
                    });
                Some((id, read))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn get(&self, id: &str) -> Option<Stored> {
        let bytes = std::fs::read(self.path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, id: &str, stored: &Stored) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!(".{id}.json.tmp"));
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.path(id))
    }

    /// Records the state the operator asked for (a task not stored here,
    /// one of the config file's, is left alone).
    pub fn set_desired(&self, id: &str, desired: &str) -> std::io::Result<()> {
        match self.get(id) {
            Some(mut s) => {
                s.desired = desired.to_string();
                self.save(id, &s)
            }
            None => Ok(()),
        }
    }

    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
