//! JSON-lines sink: one event per line, to a file or stdout.
//!
//! A file is authoritative for its own position: every line carries its
//! event's position, a group is durable after write + fdatasync (done by
//! `writer.rs`, overlapping the next group's encoding), and on open the
//! sink cuts a torn partial last line and reads the position of the last
//! complete one. A crash between the fsync and the offset commit therefore
//! neither duplicates nor loses events. Stdout, a device or a pipe
//! (`/dev/null`, a FIFO) can't be read back: there the guarantee is
//! at-least-once (events after the last committed offset are written again
//! after a crash), and nothing is synced.
//!
//! The file is locked (`flock`) while a sink holds it: two tasks (or two
//! spellings of one path, or a run whose writer is still blocked) never
//! interleave their lines.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::SinkError;
use super::writer::{DurableWriter, Output};
use crate::event::json::JsonEncoder;
use crate::event::{Batch, Position};

pub struct JsonlSink {
    writer: DurableWriter,
    encoder: JsonEncoder,
    /// Ticket of the last group submitted.
    ticket: u64,
    bytes: u64,
    durable: Option<Position>,
    /// Test failpoint: while this file exists, submits wait, as a sink that
    /// can't make data durable would (see [`STALL_FAILPOINT`]).
    stall_while: Option<PathBuf>,
}

/// Environment variable naming a file: while it exists, every submit waits
/// before writing. For tests that check nothing is acknowledged before it
/// is durable; unset in production.
pub const STALL_FAILPOINT: &str = "TIDEMARK_FAILPOINT_SINK_STALL";

impl JsonlSink {
    /// Opens (creating if needed) the file, repairs a torn tail and reads the
    /// position of the last complete line. `-` writes to stdout.
    pub async fn open(path: &str, encoder: JsonEncoder) -> Result<JsonlSink, SinkError> {
        let device = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
        let (output, durable) = if path == "-" {
            (Output::Stdout, None)
        } else if device {
            let path = PathBuf::from(path);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| SinkError::io("opening", &path, e))?;
            (Output::Device { file, path }, None)
        } else {
            let path = PathBuf::from(path);
            tokio::task::spawn_blocking(move || {
                open_and_recover(&path).map(|(file, d)| (Output::File { file, path }, d))
            })
            .await
            .map_err(|e| SinkError::Stopped(format!("opening the JSONL file failed: {e}")))??
        };
        Ok(JsonlSink {
            writer: DurableWriter::spawn(output)?,
            encoder,
            ticket: 0,
            bytes: 0,
            durable,
            stall_while: std::env::var_os(STALL_FAILPOINT).map(PathBuf::from),
        })
    }

    /// Position of the last event durable in the file when it was opened.
    pub fn durable_position(&self) -> Option<&Position> {
        self.durable.as_ref()
    }

    /// Encodes every event of `batches` and queues them for writing; returns
    /// the group's ticket. Waits only while the writer's queue is full.
    pub async fn submit(&mut self, batches: &[Batch]) -> Result<u64, SinkError> {
        if let Some(gate) = &self.stall_while {
            while gate.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let now_ns = now_ns();
        let mut buf = self.writer.buffer();
        for batch in batches {
            for ev in &batch.events {
                self.encoder.encode(ev, now_ns, &mut buf);
                buf.push(b'\n');
            }
        }
        self.ticket += 1;
        self.bytes += buf.len() as u64;
        self.writer.write(self.ticket, buf).await?;
        Ok(self.ticket)
    }

    /// Closes the writer and waits for its threads to end (which releases
    /// the file and its lock).
    pub async fn close(&mut self) {
        self.writer.close().await;
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Waits for more groups to become durable; returns the durable ticket.
    pub async fn durable(&mut self) -> Result<u64, SinkError> {
        self.writer.durable().await
    }

    /// Waits until every submitted group is durable; returns the last ticket.
    pub async fn flush(&mut self) -> Result<u64, SinkError> {
        self.writer.wait_for(self.ticket).await?;
        Ok(self.ticket)
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Opens `path` for appending, cuts a partial last line, and returns the
/// position of the last complete line.
fn open_and_recover(path: &PathBuf) -> Result<(File, Option<Position>), SinkError> {
    let io = |what: &'static str| move |e| SinkError::io(what, path, e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io("opening"))?;
    lock(&file, path)?;
    let len = file.metadata().map_err(io("reading metadata of"))?.len();
    let complete_end = last_newline_end(&mut file, len).map_err(io("reading"))?;
    if complete_end < len {
        tracing::warn!(
            path = %path.display(),
            cut_bytes = len - complete_end,
            "cutting a torn partial line left by a crash"
        );
        file.set_len(complete_end).map_err(io("truncating"))?;
        file.sync_all().map_err(io("syncing"))?;
    }
    let last_line = read_last_line(&mut file, complete_end).map_err(io("reading"))?;
    let durable = match last_line {
        None => None,
        Some(line) => Some(
            parse_line_position(&line).map_err(|reason| SinkError::Corrupt {
                path: path.display().to_string(),
                reason,
            })?,
        ),
    };
    Ok((file, durable))
}

/// Takes the file's exclusive lock, held until every handle of it closes.
fn lock(file: &File, path: &std::path::Path) -> Result<(), SinkError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(SinkError::Locked {
            path: path.display().to_string(),
            detail: String::new(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(SinkError::io("locking", path, e)),
    }
}

const CHUNK: u64 = 64 * 1024;

/// Offset just past the last `\n` in the first `len` bytes (0 if none).
fn last_newline_end(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The last line of the first `end` bytes, which end with `\n`.
fn read_last_line(file: &mut File, end: u64) -> std::io::Result<Option<Vec<u8>>> {
    if end == 0 {
        return Ok(None);
    }
    let start = last_newline_end(file, end - 1)?;
    let mut line = vec![0u8; (end - 1 - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut line)?;
    Ok(Some(line))
}

fn parse_line_position(line: &[u8]) -> Result<Position, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        position: Option<String>,
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|e| {
        format!("the last line is not a JSON event ({e}); was the file written by another program?")
    })?;
    let text = parsed
        .position
        .ok_or("the last line has no \"position\"; was the file written by another program?")?;
    text.parse().map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tidemark-jsonl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn recovers_last_complete_line_and_cuts_torn_tail() {
        let p = tmp("torn");
        let l1 = r#"{"op":"c","position":"binlog:b.000001:4:10:0"}"#;
        let l2 = r#"{"op":"c","position":"binlog:b.000001:4:10:1"}"#;
        std::fs::write(&p, format!("{l1}\n{l2}\n{{\"op\":\"c\",\"posi")).unwrap();
        let (_, pos) = open_and_recover(&p).unwrap();
        assert_eq!(pos.unwrap().to_string(), "binlog:b.000001:4:10:1");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{l1}\n{l2}\n")
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn empty_and_single_line_files() {
        let p = tmp("empty");
        let (_, pos) = open_and_recover(&p).unwrap();
        assert!(pos.is_none());
        // A torn first line leaves an empty file.
        std::fs::write(&p, "{\"op\"").unwrap();
        let (_, pos) = open_and_recover(&p).unwrap();
        assert!(pos.is_none());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn long_last_line_spanning_chunks() {
        let p = tmp("long");
        let pad = "x".repeat(200_000);
        let line = format!(r#"{{"pad":"{pad}","position":"lsn:0/10:3"}}"#);
        std::fs::write(&p, format!("{line}\n")).unwrap();
        let (_, pos) = open_and_recover(&p).unwrap();
        assert_eq!(pos.unwrap().to_string(), "lsn:0/10:3");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_locked_file_is_refused() {
        let p = tmp("locked");
        let (held, _) = open_and_recover(&p).unwrap();
        let e = open_and_recover(&p).unwrap_err();
        assert!(matches!(e, SinkError::Locked { .. }), "{e}");
        drop(held);
        assert!(open_and_recover(&p).is_ok());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn foreign_file_is_a_clear_error() {
        let p = tmp("foreign");
        std::fs::write(&p, "hello world\n").unwrap();
        let e = open_and_recover(&p).unwrap_err().to_string();
        assert!(e.contains("not a JSON event"), "{e}");
        let _ = std::fs::remove_file(&p);
    }
}
