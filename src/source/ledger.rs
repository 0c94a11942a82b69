//! The batch ledger both log readers share: the events decoded since the
//! last batch, the position up to which everything read is covered, the
//! resume position below which nothing is delivered again, and Debezium's
//! per-transaction event numbering.
//!
//! Positions only move forward: a position at or below `resume_after` was
//! delivered by an earlier run (it is durable in the sink), so it neither
//! produces an event nor moves the batch end.

use crate::event::{Batch, ChangeEvent, Position, TxOrder};

/// What a reader's flush takes: everything decoded (nothing more is
/// waiting), or a full batch up to its last whole transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    All,
    Full,
}

#[derive(Debug, Default)]
pub struct BatchLedger {
    /// Events at or below this position were already delivered.
    resume_after: Option<Position>,
    pending: Vec<ChangeEvent>,
    /// Highest position handled (emitted or filtered out) not yet in a batch.
    end: Option<Position>,
    /// The last transaction end among the pending: how many pending events
    /// it covers, and its position.
    whole: Option<(usize, Position)>,
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
            if p.is_tx_end() {
                self.whole = Some((self.pending.len(), p.clone()));
            }
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
        let tx_end = ev.position.is_tx_end().then(|| ev.position.clone());
        self.pending.push(ev);
        if let Some(p) = tx_end {
            self.whole = Some((self.pending.len(), p));
        }
        true
    }

    /// Takes what was decoded so far: the events and the position up to
    /// which everything read is covered.
    pub fn take_batch(&mut self) -> Option<Batch> {
        self.whole = None;
        let end = self.end.take()?;
        Some(Batch {
            events: std::mem::take(&mut self.pending),
            end,
        })
    }

    /// Takes a full batch (the reader's size limit reached) up to the last
    /// transaction end among the pending events, leaving the transaction
    /// still open for the next batch: batches of whole transactions are
    /// what a database target applies in parallel. All of it when no
    /// transaction ended in it (one transaction larger than the limit).
    /// What stays pending is less than one transaction, so a batch holds
    /// at most the limit plus one transaction's start.
    pub fn take_full_batch(&mut self) -> Option<Batch> {
        match self.whole.take() {
            Some((n, end)) if n > 0 && n < self.pending.len() => {
                let rest = self.pending.split_off(n);
                let events = std::mem::replace(&mut self.pending, rest);
                Some(Batch { events, end })
            }
            _ => self.take_batch(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Connector, LsnPosition, Op, TxMeta};
    use std::sync::Arc;

    fn lsn(commit: u64, index: u64) -> Position {
        Position::Lsn(LsnPosition {
            commit_lsn: commit,
            index,
        })
    }

    fn ev(position: Position) -> ChangeEvent {
        ChangeEvent {
            op: Op::Create,
            position,
            tx: Arc::new(TxMeta::default()),
            table: None,
            before: None,
            after: None,
            ddl: None,
            source_offset: 0,
            tx_order: 1,
            table_order: 1,
            connector: Connector::Postgres,
            copying: false,
        }
    }

    #[test]
    fn a_full_batch_ends_at_the_last_whole_transaction() {
        let mut l = BatchLedger::new(None);
        l.push(ev(lsn(10, 1)));
        l.push(ev(lsn(10, 2)));
        l.advance(lsn(10, Position::END));
        l.push(ev(lsn(20, 1)));
        l.advance(lsn(20, Position::END));
        l.push(ev(lsn(30, 1)));
        l.push(ev(lsn(30, 2)));
        let b = l.take_full_batch().unwrap();
        assert_eq!(b.events.len(), 3);
        assert_eq!(b.end, lsn(20, Position::END));
        // The open transaction goes on in the next batch.
        assert_eq!(l.pending_events(), 2);
        l.push(ev(lsn(30, 3)));
        l.advance(lsn(30, Position::END));
        let b = l.take_full_batch().unwrap();
        assert_eq!(b.events.len(), 3);
        assert_eq!(b.events[0].position, lsn(30, 1));
        assert_eq!(b.end, lsn(30, Position::END));
        assert!(l.is_drained());
        // One transaction larger than a batch: cut inside it.
        l.push(ev(lsn(40, 1)));
        l.push(ev(lsn(40, 2)));
        let b = l.take_full_batch().unwrap();
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.end, lsn(40, 2));
        // A transaction end with nothing before it (a filtered one) is no
        // place to cut: everything goes.
        l.advance(lsn(50, Position::END));
        l.push(ev(lsn(60, 1)));
        let b = l.take_full_batch().unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.end, lsn(60, 1));
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
