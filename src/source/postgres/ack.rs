//! Which WAL position the server may be told is flushed: the slot's
//! `confirmed_flush_lsn`.
//!
//! The server skips, after a restart, every transaction that commits before
//! the confirmed position, and may recycle the WAL before it. So the
//! confirmed position only passes a transaction once the offset store holds
//! a position covering all of it (the task's `committed` channel), never
//! when its events were merely read or handed to the sink.
//!
//! An idle database (or one whose changes are all filtered out) sends no
//! transactions, only keepalives carrying the server's WAL position. When
//! nothing read is waiting to become durable and no transaction is open,
//! that position is confirmed too, so the slot keeps up and the server can
//! recycle WAL. This is safe: every transaction committing before a
//! keepalive's position was sent before the keepalive; one in progress
//! commits after it and is sent again in full after a restart (the server
//! restarts decoding at the slot's `restart_lsn`, before its start).

use std::collections::BTreeMap;

use crate::event::{LsnPosition, Position};

/// Tracks read, delivered and durable transactions; pure, no I/O.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Commit LSN → end LSN of transactions read but not yet durable.
    inflight: BTreeMap<u64, u64>,
    /// Highest position known durable (committed to the offset store, or
    /// the sink's own position at start).
    durable: Option<LsnPosition>,
    /// Highest LSN the server may be told is flushed.
    confirm: u64,
    /// Between Begin and Commit of a transaction.
    open: bool,
}

impl AckTracker {
    /// `durable`: the position everything up to which is durable at start.
    pub fn new(durable: Option<LsnPosition>) -> Self {
        AckTracker {
            durable,
            ..Default::default()
        }
    }

    /// A new replication session: the server sends again every transaction
    /// it has not been told is flushed.
    pub fn reset_session(&mut self) {
        self.inflight.clear();
        self.open = false;
    }

    /// The slot's current `confirmed_flush_lsn`: nothing below it is ever sent.
    pub fn start_at(&mut self, confirmed_flush: u64) {
        self.confirm = self.confirm.max(confirmed_flush);
    }

    /// A transaction started (Begin, or the replay of a streamed one).
    pub fn begin(&mut self) {
        self.open = true;
    }

    /// The transaction committing at `commit_lsn` was read up to its commit
    /// record, which ends at `end_lsn`.
    pub fn commit(&mut self, commit_lsn: u64, end_lsn: u64) {
        self.open = false;
        if self.is_durable(commit_lsn) {
            self.confirm = self.confirm.max(end_lsn);
        } else {
            self.inflight.insert(commit_lsn, end_lsn);
        }
    }

    /// The offset store committed `pos`.
    pub fn committed(&mut self, pos: &Position) {
        let Position::Lsn(p) = pos.stream_position() else {
            return;
        };
        if self.durable.is_none_or(|d| *p > d) {
            self.durable = Some(*p);
        }
        while let Some((&commit_lsn, &end_lsn)) = self.inflight.first_key_value() {
            if !self.is_durable(commit_lsn) {
                break;
            }
            self.inflight.remove(&commit_lsn);
            self.confirm = self.confirm.max(end_lsn);
        }
    }

    /// A keepalive reported the server's WAL position `wal_end`.
    /// `drained`: every change read so far was handed to the sink.
    pub fn keepalive(&mut self, wal_end: u64, drained: bool) {
        if drained && !self.open && self.inflight.is_empty() {
            self.confirm = self.confirm.max(wal_end);
        }
    }

    /// The LSN the server may be told is flushed.
    pub fn confirm(&self) -> u64 {
        self.confirm
    }

    /// Transactions read and not yet durable.
    pub fn pending(&self) -> usize {
        self.inflight.len()
    }

    fn is_durable(&self, commit_lsn: u64) -> bool {
        let whole = LsnPosition {
            commit_lsn,
            index: Position::END,
        };
        self.durable.is_some_and(|d| d >= whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(commit_lsn: u64, index: u64) -> Position {
        Position::Lsn(LsnPosition { commit_lsn, index })
    }

    #[test]
    fn confirms_only_durable_transactions() {
        let mut a = AckTracker::new(None);
        a.start_at(50);
        a.begin();
        a.commit(100, 110);
        a.begin();
        a.commit(200, 210);
        assert_eq!(a.confirm(), 50);
        // Half of the second transaction is durable: only the first is.
        a.committed(&at(200, 3));
        assert_eq!(a.confirm(), 110);
        a.committed(&at(200, 3).tx_end());
        assert_eq!(a.confirm(), 210);
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn keepalives_advance_only_when_nothing_is_waiting() {
        let mut a = AckTracker::new(None);
        a.keepalive(1000, true);
        assert_eq!(a.confirm(), 1000);
        a.begin();
        a.keepalive(2000, true);
        assert_eq!(a.confirm(), 1000, "a transaction is open");
        a.commit(2100, 2150);
        a.keepalive(3000, true);
        assert_eq!(a.confirm(), 1000, "a transaction is not durable yet");
        a.committed(&at(2100, 0).tx_end());
        assert_eq!(a.confirm(), 2150);
        a.keepalive(4000, false);
        assert_eq!(a.confirm(), 2150, "changes not yet handed to the sink");
        a.keepalive(4000, true);
        assert_eq!(a.confirm(), 4000);
    }

    #[test]
    fn transactions_durable_before_start_are_confirmed_when_read_again() {
        let mut a = AckTracker::new(Some(LsnPosition {
            commit_lsn: 300,
            index: Position::END,
        }));
        a.begin();
        a.commit(300, 320);
        assert_eq!(a.confirm(), 320);
        a.begin();
        a.commit(400, 420);
        assert_eq!(a.confirm(), 320);
    }

    #[test]
    fn never_moves_back() {
        let mut a = AckTracker::new(None);
        a.start_at(500);
        a.begin();
        a.commit(100, 110);
        a.committed(&at(100, 0).tx_end());
        assert_eq!(a.confirm(), 500);
        a.reset_session();
        a.keepalive(400, true);
        assert_eq!(a.confirm(), 500);
    }
}
