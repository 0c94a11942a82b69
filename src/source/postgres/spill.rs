//! On-disk spill of streamed in-progress transactions (pgoutput protocol v2).
//!
//! Between Stream Start and Stream Stop the server sends changes of a
//! transaction that has not committed yet, possibly interleaved with other
//! transactions and with its subtransactions. They can't be emitted before
//! the commit, and a large transaction must not be held in memory, so each
//! top-level transaction gets a file in the spill directory holding its
//! messages as received, in order:
//!
//! ```text
//! record = u32 length (big-endian) | u64 change LSN | pgoutput message bytes
//! ```
//!
//! The message bytes keep the subtransaction xid that protocol v2 puts after
//! the message type. A Stream Abort of a subtransaction truncates the file at
//! that subtransaction's first record: subtransactions nest, so everything
//! after it belongs to it or to its children (the same rule as PostgreSQL's
//! own apply worker). An abort of the whole transaction deletes the file. At
//! Stream Commit the driver reads the file back record by record.
//!
//! Only one file is open for writing at a time (streams don't overlap), and
//! the spill is never needed after a restart: the server streams every
//! unconfirmed transaction again from its start, so [`Spill::open`] clears
//! the directory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// One spilled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillRecord {
    /// LSN of the change (the XLogData start).
    pub lsn: u64,
    /// The pgoutput message, as received inside the stream block.
    pub data: Bytes,
}

/// What is known about one top-level transaction's file.
#[derive(Debug, Default)]
struct TxFile {
    len: u64,
    records: u64,
    /// Subtransaction xid → offset of its first record, in file order.
    subxacts: Vec<(u32, u64)>,
}

/// The spill directory of one source.
#[derive(Debug)]
pub struct Spill {
    /// The spill directory (public for error messages).
    pub dir: PathBuf,
    files: HashMap<u32, TxFile>,
    /// The file of the current stream block, open for appending.
    writing: Option<(u32, BufWriter<File>)>,
    /// Bytes written since the directory was opened, for the logs.
    pub bytes_written: u64,
}

/// Largest message accepted in a record (PostgreSQL's own limit is 1 GB).
const MAX_RECORD: usize = 1 << 30;

impl Spill {
    /// Creates `dir` if needed and removes spill files left by an earlier run.
    pub fn open(dir: &Path) -> io::Result<Spill> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "spill") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Spill {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
            writing: None,
            bytes_written: 0,
        })
    }

    fn path(&self, xid: u32) -> PathBuf {
        self.dir.join(format!("xid-{xid}.spill"))
    }

    /// Stream Start of top-level transaction `xid`.
    pub fn start(&mut self, xid: u32, first_segment: bool) -> io::Result<()> {
        self.stop()?;
        let path = self.path(xid);
        let file = if first_segment || !self.files.contains_key(&xid) {
            if !first_segment {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the server continued streaming transaction {xid}, whose first chunk was not received"
                    ),
                ));
            }
            self.files.insert(xid, TxFile::default());
            File::create(&path)?
        } else {
            OpenOptions::new().append(true).open(&path)?
        };
        self.writing = Some((xid, BufWriter::with_capacity(64 * 1024, file)));
        Ok(())
    }

    /// Stream Stop: the current block ended.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some((_, mut w)) = self.writing.take() {
            w.flush()?;
        }
        Ok(())
    }

    /// The top-level xid of the open stream block, if any.
    pub fn current(&self) -> Option<u32> {
        self.writing.as_ref().map(|(xid, _)| *xid)
    }

    /// Appends a message of the open stream block. `subxid` is the xid the
    /// message carries (the transaction's or one of its subtransactions').
    pub fn append(&mut self, subxid: u32, lsn: u64, data: &[u8]) -> io::Result<()> {
        let Some((xid, w)) = self.writing.as_mut() else {
            return Err(io::Error::other("a streamed change outside a stream block"));
        };
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&l| l as usize <= MAX_RECORD)
            .ok_or_else(|| io::Error::other("a streamed message over 1 GB"))?;
        let tx = self.files.entry(*xid).or_default();
        if !tx.subxacts.iter().any(|(s, _)| *s == subxid) {
            tx.subxacts.push((subxid, tx.len));
        }
        w.write_all(&len.to_be_bytes())?;
        w.write_all(&lsn.to_be_bytes())?;
        w.write_all(data)?;
        let n = 12 + u64::from(len);
        tx.len += n;
        tx.records += 1;
        self.bytes_written += n;
        Ok(())
    }

    /// Stream Abort of `subxid` within `xid` (the whole transaction when
    /// they are equal).
    pub fn abort(&mut self, xid: u32, subxid: u32) -> io::Result<()> {
        if self.current() == Some(xid) {
            self.stop()?;
        }
        if xid == subxid {
            self.remove(xid)?;
            return Ok(());
        }
        let Some(tx) = self.files.get_mut(&xid) else {
            return Ok(());
        };
        let Some(i) = tx.subxacts.iter().position(|(s, _)| *s == subxid) else {
            // The subtransaction had no streamed change.
            return Ok(());
        };
        let offset = tx.subxacts[i].1;
        tx.subxacts.truncate(i);
        tx.len = offset;
        let file = OpenOptions::new().write(true).open(self.path(xid))?;
        file.set_len(offset)?;
        Ok(())
    }

    /// Takes the file of committed transaction `xid` for reading back.
    /// `None` when nothing of it was spilled.
    pub fn read(&mut self, xid: u32) -> io::Result<Option<SpillReader>> {
        if self.current() == Some(xid) {
            self.stop()?;
        }
        let Some(tx) = self.files.get(&xid) else {
            return Ok(None);
        };
        let path = self.path(xid);
        let mut file = File::open(&path)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Some(SpillReader {
            file: BufReader::with_capacity(64 * 1024, file.take(tx.len)),
            records: tx.records,
        }))
    }

    /// Deletes the file of `xid` (after its commit was emitted, or its abort).
    pub fn remove(&mut self, xid: u32) -> io::Result<()> {
        if self.current() == Some(xid) {
            self.writing = None;
        }
        if self.files.remove(&xid).is_some() {
            match std::fs::remove_file(self.path(xid)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Transactions with a spill file.
    pub fn open_transactions(&self) -> usize {
        self.files.len()
    }
}

/// Reads a transaction's records back in order.
pub struct SpillReader {
    file: BufReader<std::io::Take<File>>,
    /// Records written (before aborted subtransactions were cut: an upper bound).
    pub records: u64,
}

impl SpillReader {
    /// The next record, `None` at the end.
    pub fn next_record(&mut self) -> io::Result<Option<SpillRecord>> {
        let mut head = [0u8; 12];
        match self.file.read_exact(&mut head[..1]) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            r => r?,
        }
        self.file.read_exact(&mut head[1..])?;
        let (len, lsn) = head.split_at(4);
        let len = u32::from_be_bytes(len.try_into().map_err(io::Error::other)?) as usize;
        let lsn = u64::from_be_bytes(lsn.try_into().map_err(io::Error::other)?);
        if len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "corrupt spill record length",
            ));
        }
        let mut data = vec![0u8; len];
        self.file.read_exact(&mut data)?;
        Ok(Some(SpillRecord {
            lsn,
            data: Bytes::from(data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tidemark-spill-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn msg(subxid: u32, n: u8) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend_from_slice(&subxid.to_be_bytes());
        m.push(n);
        m
    }

    fn read_all(s: &mut Spill, xid: u32) -> Vec<(u64, Vec<u8>)> {
        let mut r = s.read(xid).unwrap().unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((rec.lsn, rec.data.to_vec()));
        }
        out
    }

    #[test]
    fn interleaved_transactions_read_back_in_order() {
        let d = dir("interleaved");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("xid-9.spill"), b"stale").unwrap();
        let mut s = Spill::open(&d).unwrap();
        assert!(!d.join("xid-9.spill").exists(), "stale files are removed");
        s.start(10, true).unwrap();
        s.append(10, 1, &msg(10, 1)).unwrap();
        s.stop().unwrap();
        s.start(20, true).unwrap();
        s.append(20, 2, &msg(20, 1)).unwrap();
        s.stop().unwrap();
        s.start(10, false).unwrap();
        s.append(11, 3, &msg(11, 2)).unwrap();
        s.stop().unwrap();
        assert_eq!(read_all(&mut s, 10), vec![(1, msg(10, 1)), (3, msg(11, 2))]);
        assert_eq!(read_all(&mut s, 20), vec![(2, msg(20, 1))]);
        s.remove(10).unwrap();
        assert!(!d.join("xid-10.spill").exists());
        assert_eq!(s.open_transactions(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn subtransaction_abort_cuts_it_and_its_children() {
        let d = dir("subabort");
        let mut s = Spill::open(&d).unwrap();
        s.start(10, true).unwrap();
        s.append(10, 1, &msg(10, 1)).unwrap();
        s.append(11, 2, &msg(11, 2)).unwrap();
        s.append(12, 3, &msg(12, 3)).unwrap();
        s.stop().unwrap();
        s.abort(10, 11).unwrap();
        s.start(10, false).unwrap();
        s.append(13, 4, &msg(13, 4)).unwrap();
        s.stop().unwrap();
        // An abort of a subtransaction that streamed nothing changes nothing.
        s.abort(10, 99).unwrap();
        assert_eq!(read_all(&mut s, 10), vec![(1, msg(10, 1)), (4, msg(13, 4))]);
        s.abort(10, 10).unwrap();
        assert!(s.read(10).unwrap().is_none());
        assert!(!d.join("xid-10.spill").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn continuing_an_unknown_transaction_is_an_error() {
        let d = dir("unknown");
        let mut s = Spill::open(&d).unwrap();
        assert!(s.start(5, false).is_err());
        assert!(s.append(5, 1, &msg(5, 1)).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
