//! tidemark: log-based change data capture.
//!
//! Sources tail a database's log and turn committed changes into
//! [`event::ChangeEvent`]s; the stage filters them; sinks make them durable
//! and acknowledge positions, which the offset store keeps so that a restart
//! resumes exactly.

pub mod api;
pub mod config;
pub mod error;
pub mod event;
pub mod precheck;
pub mod retry;
pub mod select;
pub mod service;
pub mod sink;
pub mod source;
pub mod stage;
pub mod store;
pub mod task;
