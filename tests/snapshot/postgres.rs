//! PostgreSQL snapshots: chunks in REPEATABLE READ snapshots placed at
//! their WAL positions, reconciled with transactions they don't see.
