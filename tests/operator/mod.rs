//! Faults an operator hits running tidemark as a service: events larger
//! than the server's packet limit, statement-logged writes, a shutdown that
//! a blocked or stalled sink must not hold up, a server that goes silent,
//! positions read while the daemon runs, signals, misleading errors.

mod mysql;
mod postgres;
mod shutdown;
