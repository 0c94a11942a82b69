//! MySQL/MariaDB source tests.

mod crash;
mod errors;
pub mod stream;
mod types;
