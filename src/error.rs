//! Error classes shared by every layer: source, sink, offset store, task.
//!
//! Each layer has its own error type (`SourceError`, `SinkError`,
//! `StoreError`, `TaskError`) that keeps its cause chain through
//! `#[source]`; each answers [`Classify`], so that the supervisor decides
//! between retrying and failing the task from the error's class, never from
//! its text. An error's `Display` says what failed at its own level only;
//! [`chain`] joins the levels into the one line an operator reads.

use std::error::Error;
use std::time::Duration;

/// A boxed cause, kept as the `#[source]` of a layer's error.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What the supervisor does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The cause may go away by itself (connection lost, server restarting,
    /// broker away, disk full): restart the task with backoff.
    Transient,
    /// Retrying can't help until the operator acts (misconfiguration,
    /// privileges, purged log, malformed data): the task fails and shows
    /// the error, which says what to do.
    Definite,
}

/// Classification of an error, answered by every layer's error type.
pub trait Classify {
    fn class(&self) -> ErrorClass;

    /// Least time to wait before retrying, when the error knows one (e.g.
    /// a server that said it is starting up). `None`: the supervisor's
    /// backoff alone decides.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// A transient error that keeps coming back for this long is a
    /// configuration problem after all (a host name that never resolves):
    /// the supervisor then fails the task. `None`: retry indefinitely.
    fn give_up_after(&self) -> Option<Duration> {
        None
    }

    fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}

/// The error and its causes on one line, `outer: inner: root`. Each level
/// contributes only its own words: a level whose text ends with its cause's
/// text (a wrapper that repeats its source) is cut back to its own part,
/// and a part equal to the one before it is dropped, so that no cause is
/// printed twice.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut texts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        texts.push(c.to_string());
        cur = c.source();
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let own = match texts.get(i + 1) {
            Some(next) if !next.is_empty() => match t.strip_suffix(next.as_str()) {
                Some(head) => head.trim_end_matches([' ', ':']).to_string(),
                None => t.clone(),
            },
            _ => t.clone(),
        };
        // Empty, or already shown by the level above (a wrapper that
        // quotes its source): left out.
        if own.is_empty() || parts.last().is_some_and(|p| p.contains(own.as_str())) {
            continue;
        }
        parts.push(own);
    }
    parts.join(": ")
}

/// True when `e` or one of its causes is a rustls error (a TLS handshake
/// or certificate failure), also when an `io::Error` wraps it.
pub fn is_tls_failure(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Classes an I/O error from local files (sink files, the data dir, spill
/// files): a full disk or quota is transient (the task recovers once space
/// is freed); missing permissions or a read-only file system need the
/// operator; other I/O errors are transient.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem | K::InvalidInput | K::IsADirectory => {
            ErrorClass::Definite
        }
        _ => ErrorClass::Transient,
    }
}

/// True for "no space left on device" and "disk quota exceeded".
pub fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::StorageFull | K::QuotaExceeded)
}

/// Free space on the file system holding `path` (or its nearest existing
/// ancestor), in bytes, for messages about a full disk.
pub fn free_space(path: &std::path::Path) -> Option<u64> {
    let mut p = path;
    loop {
        if p.exists() {
            break;
        }
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path; `st` is written by statvfs on success.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The message for a full disk at `path`: what, where, how much is free.
pub fn disk_full_message(what: &str, path: &std::path::Path) -> String {
    let free = free_space(path).map_or("unknown".to_string(), human_bytes);
    format!(
        "{what}: the file system holding {} is full ({free} free): free some space there; the task retries and resumes where it stopped",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("writing out.jsonl: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("Input/output error: {0}")]
    struct LibIo(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("Input/output error: {0}")]
    struct LibOuter(#[source] LibIo);

    #[test]
    fn chain_drops_repeated_levels() {
        let e = Outer2(LibOuter(LibIo(std::io::Error::other("Connection refused"))));
        assert_eq!(
            chain(&e),
            "connecting: Input/output error: Connection refused"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connecting")]
    struct Outer2(#[source] LibOuter);

    #[derive(Debug, thiserror::Error)]
    #[error("Server error: `{0}'")]
    struct Quotes(#[source] std::io::Error);

    #[test]
    fn chain_skips_a_cause_its_parent_quotes() {
        let e = Quotes(std::io::Error::other("ERROR 1045: Access denied"));
        assert_eq!(chain(&e), "Server error: `ERROR 1045: Access denied'");
    }

    #[test]
    fn chain_joins_causes_once() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&e), "outer: disk on fire");
        let e = Repeats(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&e), "writing out.jsonl: disk on fire");
    }

    #[test]
    fn io_errors_are_classed_by_kind() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_disk_full(&full));
        assert_eq!(io_class(&full), ErrorClass::Transient);
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_class(&denied), ErrorClass::Definite);
    }

    #[test]
    fn free_space_of_an_existing_ancestor() {
        let p = std::env::temp_dir().join("no/such/dir/file");
        assert!(free_space(&p).is_some());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
