//! JSON-lines sink: one event per line, to a file or stdout.
//!
//! A file is authoritative for its own position: every line carries its
//! event's position, a batch is durable after write + fsync, and on open the
//! sink cuts a torn partial last line and reads the position of the last
//! complete one. A crash between the fsync and the offset commit therefore
//! neither duplicates nor loses events. Stdout can't be read back: there the
//! guarantee is at-least-once (events after the last committed offset are
//! written again after a crash).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::SinkError;
use crate::event::json::JsonEncoder;
use crate::event::{Batch, Position};

#[derive(Clone)]
enum Output {
    File { file: Arc<File>, path: PathBuf },
    Stdout,
}

/// A write started on the blocking pool: resolves when its bytes are durable.
struct InFlight {
    handle: tokio::task::JoinHandle<(Vec<u8>, Result<(), SinkError>)>,
    /// Position of the last event in it.
    last: Position,
}

pub struct JsonlSink {
    output: Output,
    encoder: JsonEncoder,
    /// Spare buffer for the next encoding (the other one is in flight).
    spare: Vec<u8>,
    inflight: Option<InFlight>,
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
        let (output, durable) = if path == "-" {
            (Output::Stdout, None)
        } else {
            let path = PathBuf::from(path);
            tokio::task::spawn_blocking(move || {
                open_and_recover(&path).map(|(f, d)| {
                    (
                        Output::File {
                            file: Arc::new(f),
                            path,
                        },
                        d,
                    )
                })
            })
            .await
            .map_err(|e| SinkError::Internal(format!("jsonl open task failed: {e}")))??
        };
        Ok(JsonlSink {
            output,
            encoder,
            spare: Vec::new(),
            inflight: None,
            durable,
            stall_while: std::env::var_os(STALL_FAILPOINT).map(PathBuf::from),
        })
    }

    /// Position of the last event known durable in the file.
    pub fn durable_position(&self) -> Option<&Position> {
        self.durable.as_ref()
    }

    /// Starts writing every event of `batches`; returns once everything
    /// submitted before is durable. Encoding this group overlaps the previous
    /// group's write and fsync; at most one write is in flight.
    pub async fn submit(&mut self, batches: &[Batch]) -> Result<(), SinkError> {
        if let Some(gate) = &self.stall_while {
            while gate.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let now_ns = now_ns();
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        let mut last = None;
        for batch in batches {
            for ev in &batch.events {
                self.encoder.encode(ev, now_ns, &mut buf);
                buf.push(b'\n');
                last = Some(&ev.position);
            }
        }
        self.finish_inflight().await?;
        if let Some(last) = last.cloned() {
            let output = self.output.clone();
            let handle = tokio::task::spawn_blocking(move || {
                let r = write_durably(&output, &buf);
                (buf, r)
            });
            self.inflight = Some(InFlight { handle, last });
        } else {
            self.spare = buf;
        }
        Ok(())
    }

    /// Waits until everything submitted is durable.
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        self.finish_inflight().await
    }

    async fn finish_inflight(&mut self) -> Result<(), SinkError> {
        let Some(inflight) = self.inflight.take() else {
            return Ok(());
        };
        let (mut buf, result) = inflight
            .handle
            .await
            .map_err(|e| SinkError::Internal(format!("jsonl write task failed: {e}")))?;
        result?;
        // Keep the larger buffer for reuse, but don't hold on to a huge one.
        if buf.capacity() <= MAX_SPARE_BYTES {
            buf.clear();
            self.spare = buf;
        }
        self.durable = Some(inflight.last);
        Ok(())
    }
}

/// Largest encoding buffer kept between writes.
const MAX_SPARE_BYTES: usize = 16 << 20;

fn write_durably(output: &Output, buf: &[u8]) -> Result<(), SinkError> {
    match output {
        Output::File { file, path } => {
            let io = |source| SinkError::Io {
                what: format!("writing {}", path.display()),
                source,
            };
            let mut f: &File = file;
            f.write_all(buf).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        Output::Stdout => {
            let mut out = std::io::stdout().lock();
            let io = |source| SinkError::Io {
                what: "writing to stdout".into(),
                source,
            };
            out.write_all(buf).map_err(io)?;
            out.flush().map_err(io)?;
        }
    }
    Ok(())
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
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| SinkError::Io { what, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io("opening"))?;
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
    fn foreign_file_is_a_clear_error() {
        let p = tmp("foreign");
        std::fs::write(&p, "hello world\n").unwrap();
        let e = open_and_recover(&p).unwrap_err().to_string();
        assert!(e.contains("not a JSON event"), "{e}");
        let _ = std::fs::remove_file(&p);
    }
}
