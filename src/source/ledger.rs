//! The batch ledger both log readers share: the events decoded since the
//! last batch, the position up to which everything read is covered, the
//! resume position below which nothing is delivered again, and Debezium's
//! per-transaction event numbering.
//!
//! Positions only move forward: a position at or below `resume_after` was
//! delivered by an earlier run (it is durable in the sink), so it neither
//! produces an event nor moves the batch end.

use crate::event::{Batch, ChangeEvent, Position, TxOrder};

#[derive(Debug, Default)]
pub struct BatchLedger {
    /// Events at or below this position were already delivered.
    resume_after: Option<Position>,
    pending: Vec<ChangeEvent>,
    /// Highest position handled (emitted or filtered out) not yet in a batch.
    end: Option<Position>,
    /// Numbering of the open transaction's events.
    pub order: TxOrder,
}

impl BatchLedger {
    pub fn new(resume_after: Option<Position>) -> BatchLedger {
        BatchLedger {
            resume_after,
            ..BatchLedger::default()
        }
    }

    /// Events waiting for the next batch.
    pub fn pending_events(&self) -> usize {
        self.pending.len()
    }

    /// True when everything handled was taken in a batch.
    pub fn is_drained(&self) -> bool {
        self.end.is_none() && self.pending.is_empty()
    }

    /// True when `p` was delivered by an earlier run.
    pub fn covered(&self, p: &Position) -> bool {
        self.resume_after
            .as_ref()
            .is_some_and(|r| r.partial_cmp(p).is_some_and(|o| o.is_ge()))
    }

    /// Everything up to `p` was handled (a transaction end, a filtered
    /// change): the next batch may acknowledge it.
    pub fn advance(&mut self, p: Position) {
        if !self.covered(&p) {
            self.end = Some(p);
        }
    }

    /// Adds an event unless it was delivered before; moves the end to it.
    /// Returns false when it was skipped as delivered.
    pub fn push(&mut self, ev: ChangeEvent) -> bool {
        if self.covered(&ev.position) {
            return false;
        }
        self.end = Some(ev.position.clone());
        self.pending.push(ev);
        true
    }

    /// Takes what was decoded so far: the events and the position up to
    /// which everything read is covered.
    pub fn take_batch(&mut self) -> Option<Batch> {
        let end = self.end.take()?;
        Some(Batch {
            events: std::mem::take(&mut self.pending),
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LsnPosition;

    fn lsn(commit: u64, index: u64) -> Position {
        Position::Lsn(LsnPosition {
            commit_lsn: commit,
            index,
        })
    }

    #[test]
    fn skips_what_was_delivered_and_never_moves_back() {
        let mut l = BatchLedger::new(Some(lsn(100, 2)));
        assert!(l.covered(&lsn(100, 1)));
        assert!(l.covered(&lsn(100, 2)));
        assert!(!l.covered(&lsn(100, 3)));
        l.advance(lsn(90, Position::END));
        assert!(l.take_batch().is_none(), "a covered end makes no batch");
        l.advance(lsn(100, Position::END));
        let b = l.take_batch().unwrap();
        assert!(b.events.is_empty());
        assert_eq!(b.end, lsn(100, Position::END));
        assert!(l.is_drained());
    }
}
