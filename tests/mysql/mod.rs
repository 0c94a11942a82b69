//! MySQL/MariaDB source tests.

mod crash;
mod stream;
mod types;
