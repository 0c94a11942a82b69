//! MySQL/MariaDB source tests.

mod crash;
mod errors;
mod start;
pub mod stream;
pub mod types;
