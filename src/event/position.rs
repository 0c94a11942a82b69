//! Positions: the totally ordered resume key of every event in a task.
//!
//! A position names a transaction in the source's log and an event inside
//! it. Restart resumes at the start of the transaction holding the committed
//! position and skips every event at or below it (design.md, "Positions").

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Resume key of one event, or of a whole transaction when the event part is
/// [`Position::END`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    Binlog(BinlogPosition),
    Lsn(LsnPosition),
    /// A snapshot row, placed in the stream just before the transaction
    /// that starts (MySQL) or commits (PostgreSQL) at `at`.
    Snapshot(SnapshotPosition),
}

/// Where a snapshot row sits among the stream's events: chunk `seq` of
/// the rows copied at stream point `at` (a start-of-transaction position:
/// [`BinlogPosition::start_of`], or an LSN position with index 0), row
/// `row` of it. Every event of the transaction at `at` sorts after it,
/// every event of an earlier transaction before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotPosition {
    pub at: Arc<Position>,
    pub seq: u64,
    pub row: u64,
}

/// MySQL/MariaDB: the transaction starts at (`file`, `tx_pos`); the event is
/// row `row` of the rows (or query) event at `event_pos` of the same file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinlogPosition {
    pub file: Arc<str>,
    pub tx_pos: u64,
    pub event_pos: u64,
    pub row: u32,
}

/// PostgreSQL: the transaction commits at `commit_lsn`; `index` counts the
/// changes inside it from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LsnPosition {
    pub commit_lsn: u64,
    pub index: u64,
}

impl Position {
    /// Event part of a position that covers its whole transaction.
    pub const END: u64 = u64::MAX;

    /// The position that covers every event of this event's transaction
    /// (of a snapshot row: every row of its chunk).
    pub fn tx_end(&self) -> Position {
        match self {
            Position::Snapshot(s) => Position::Snapshot(SnapshotPosition {
                at: s.at.clone(),
                seq: s.seq,
                row: Self::END,
            }),
            Position::Binlog(b) => Position::Binlog(BinlogPosition {
                file: b.file.clone(),
                tx_pos: b.tx_pos,
                event_pos: Self::END,
                row: u32::MAX,
            }),
            Position::Lsn(l) => Position::Lsn(LsnPosition {
                commit_lsn: l.commit_lsn,
                index: Self::END,
            }),
        }
    }

    /// True when this position covers its whole transaction.
    pub fn is_tx_end(&self) -> bool {
        match self {
            Position::Snapshot(s) => s.row == Self::END,
            Position::Binlog(b) => b.event_pos == Self::END,
            Position::Lsn(l) => l.index == Self::END,
        }
    }
}

impl Position {
    /// Where the stream resumes to deliver everything after `self`: the
    /// position itself, or for a snapshot row the stream point it sits at.
    pub fn stream_position(&self) -> &Position {
        match self {
            Position::Snapshot(s) => s.at.stream_position(),
            p => p,
        }
    }
}

impl BinlogPosition {
    /// A position before every event of the transaction at (`file`, `pos`):
    /// resuming here skips nothing.
    pub fn start_of(file: &str, pos: u64) -> Self {
        BinlogPosition {
            file: file.into(),
            tx_pos: pos,
            event_pos: 0,
            row: 0,
        }
    }
}

/// Sequence number of a binlog file name (`mysql-bin.000042` → 42).
pub fn binlog_file_seq(file: &str) -> u64 {
    file.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        binlog_file_seq(&self.file)
            .cmp(&binlog_file_seq(&other.file))
            .then_with(|| self.file.cmp(&other.file))
            .then(self.tx_pos.cmp(&other.tx_pos))
            .then(self.event_pos.cmp(&other.event_pos))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialOrd for Position {
    /// Positions of different source kinds are not comparable. A snapshot
    /// row sorts right after its stream point `at` and before every event
    /// past it (see [`SnapshotPosition`]).
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Position::Binlog(a), Position::Binlog(b)) => Some(a.cmp(b)),
            (Position::Lsn(a), Position::Lsn(b)) => Some(a.cmp(b)),
            (Position::Snapshot(a), Position::Snapshot(b)) => Some(
                a.at.partial_cmp(&b.at)?
                    .then(a.seq.cmp(&b.seq))
                    .then(a.row.cmp(&b.row)),
            ),
            (Position::Snapshot(a), b) => match a.at.as_ref().partial_cmp(b)? {
                Ordering::Less => Some(Ordering::Less),
                Ordering::Equal | Ordering::Greater => Some(Ordering::Greater),
            },
            (a, Position::Snapshot(_)) => other.partial_cmp(a).map(Ordering::reverse),
            _ => None,
        }
    }
}

/// Formats an LSN as PostgreSQL does: `16/B374D848`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Parses PostgreSQL's `16/B374D848` form.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return None;
    }
    Some(hi << 32 | lo)
}

/// Text form, used in JSON output, Kafka headers and `offsets show`:
/// `binlog:<file>:<tx_pos>:<event_pos>:<row>` (event part `*` for a whole
/// transaction) or `lsn:<commit LSN>:<index>` (`*` likewise).
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Binlog(b) if b.event_pos == Self::END => {
                write!(f, "binlog:{}:{}:*", b.file, b.tx_pos)
            }
            Position::Binlog(b) => {
                write!(
                    f,
                    "binlog:{}:{}:{}:{}",
                    b.file, b.tx_pos, b.event_pos, b.row
                )
            }
            Position::Lsn(l) if l.index == Self::END => {
                write!(f, "lsn:{}:*", format_lsn(l.commit_lsn))
            }
            Position::Lsn(l) => write!(f, "lsn:{}:{}", format_lsn(l.commit_lsn), l.index),
            Position::Snapshot(s) if s.row == Self::END => {
                write!(f, "snapshot:{}:{}:*", s.at, s.seq)
            }
            Position::Snapshot(s) => write!(f, "snapshot:{}:{}:{}", s.at, s.seq, s.row),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid position {text:?}: expected binlog:<file>:<pos>:<event_pos>:<row> or lsn:<X/Y>:<index> (`*` for a whole transaction)"
)]
pub struct ParsePositionError {
    text: String,
}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePositionError {
            text: s.to_string(),
        };
        if let Some(rest) = s.strip_prefix("snapshot:") {
            let mut parts = rest.rsplitn(3, ':');
            let row = match parts.next().ok_or_else(err)? {
                "*" => Self::END,
                r => r.parse().map_err(|_| err())?,
            };
            let seq = parts.next().and_then(|x| x.parse().ok()).ok_or_else(err)?;
            let at: Position = parts.next().ok_or_else(err)?.parse()?;
            if matches!(at, Position::Snapshot(_)) {
                return Err(err());
            }
            return Ok(Position::Snapshot(SnapshotPosition {
                at: Arc::new(at),
                seq,
                row,
            }));
        }
        if let Some(rest) = s.strip_prefix("binlog:") {
            // The file name may itself contain ':'; split from the right.
            if let Some(head) = rest.strip_suffix(":*") {
                let (file, pos) = head.rsplit_once(':').ok_or_else(err)?;
                let tx_pos = pos.parse().map_err(|_| err())?;
                return Ok(Position::Binlog(BinlogPosition {
                    file: file.into(),
                    tx_pos,
                    event_pos: Self::END,
                    row: u32::MAX,
                }));
            }
            let mut parts = rest.rsplitn(4, ':');
            let row = parts.next().and_then(|x| x.parse().ok()).ok_or_else(err)?;
            let event_pos = parts.next().and_then(|x| x.parse().ok()).ok_or_else(err)?;
            let tx_pos = parts.next().and_then(|x| x.parse().ok()).ok_or_else(err)?;
            let file = parts.next().filter(|f| !f.is_empty()).ok_or_else(err)?;
            return Ok(Position::Binlog(BinlogPosition {
                file: file.into(),
                tx_pos,
                event_pos,
                row,
            }));
        }
        if let Some(rest) = s.strip_prefix("lsn:") {
            let (lsn, idx) = rest.rsplit_once(':').ok_or_else(err)?;
            let commit_lsn = parse_lsn(lsn).ok_or_else(err)?;
            let index = if idx == "*" {
                Self::END
            } else {
                idx.parse().map_err(|_| err())?
            };
            return Ok(Position::Lsn(LsnPosition { commit_lsn, index }));
        }
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(file: &str, tx: u64, ev: u64, row: u32) -> Position {
        Position::Binlog(BinlogPosition {
            file: file.into(),
            tx_pos: tx,
            event_pos: ev,
            row,
        })
    }

    #[test]
    fn binlog_positions_order_by_file_sequence_then_offsets() {
        assert!(b("bin.000009", 900, 950, 3) < b("bin.000010", 4, 10, 0));
        assert!(b("bin.000010", 4, 10, 0) < b("bin.000010", 4, 10, 1));
        assert!(b("bin.000010", 4, 10, 1) < b("bin.000010", 4, 20, 0));
        assert!(b("bin.000010", 4, 20, 0) < b("bin.000010", 4, 20, 0).tx_end());
        assert!(b("bin.000010", 4, 20, 0).tx_end() < b("bin.000010", 300, 310, 0));
        // Sequence 1000000 sorts after 999999 although the text sorts before.
        assert!(b("bin.999999", 4, 5, 0) < b("bin.1000000", 4, 5, 0));
    }

    fn snap(at: Position, seq: u64, row: u64) -> Position {
        Position::Snapshot(SnapshotPosition {
            at: Arc::new(at),
            seq,
            row,
        })
    }

    #[test]
    fn snapshot_rows_sit_between_the_transactions_around_their_point() {
        let at = Position::Binlog(BinlogPosition::start_of("bin.000010", 300));
        let r = snap(at.clone(), 2, 5);
        assert!(b("bin.000010", 4, 20, 0).tx_end() < r);
        assert!(at < r, "after the stream point itself");
        assert!(
            r < b("bin.000010", 300, 310, 0),
            "before the transaction at the point"
        );
        assert!(r > b("bin.000010", 300, 0, 0));
        assert!(snap(at.clone(), 2, 4) < r && r < snap(at.clone(), 3, 0));
        assert!(r < r.tx_end() && r.tx_end() < snap(at.clone(), 3, 0));
        assert!(r.tx_end().is_tx_end() && !r.is_tx_end());
        let lsn = |c, i| {
            Position::Lsn(LsnPosition {
                commit_lsn: c,
                index: i,
            })
        };
        let s = snap(lsn(100, 0), 0, 1);
        assert!(lsn(99, Position::END) < s && s < lsn(100, 1));
        assert!(s.partial_cmp(&b("f.1", 1, 1, 1)).is_none());
        assert_eq!(s.stream_position(), &lsn(100, 0));
    }

    #[test]
    fn different_kinds_are_not_comparable() {
        let l = Position::Lsn(LsnPosition {
            commit_lsn: 1,
            index: 1,
        });
        assert_eq!(l.partial_cmp(&b("f.1", 1, 1, 1)), None);
    }

    #[test]
    fn text_form_round_trips() {
        for p in [
            b("mysql-bin.000003", 4567, 4890, 2),
            b("odd:name.000001", 4, 5, 6),
            b("mysql-bin.000003", 4567, 0, 0).tx_end(),
            Position::Lsn(LsnPosition {
                commit_lsn: 0x16_B374_D848,
                index: 7,
            }),
            Position::Lsn(LsnPosition {
                commit_lsn: 5,
                index: 0,
            })
            .tx_end(),
            snap(b("odd:name.000001", 4, 0, 0), 7, 9),
            snap(b("odd:name.000001", 4, 0, 0), 7, 9).tx_end(),
            snap(
                Position::Lsn(LsnPosition {
                    commit_lsn: 5,
                    index: 0,
                }),
                0,
                0,
            ),
        ] {
            let s = p.to_string();
            assert_eq!(s.parse::<Position>().unwrap(), p, "{s}");
        }
        assert_eq!(
            b("mysql-bin.000003", 4567, 4890, 2).to_string(),
            "binlog:mysql-bin.000003:4567:4890:2"
        );
        for bad in [
            "",
            "binlog:",
            "binlog:f:1:2",
            "lsn:zz:1",
            "lsn:1/2",
            "other:1",
            "snapshot:lsn:0/5:0",
            "snapshot:snapshot:lsn:0/5:0:1:1:1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
