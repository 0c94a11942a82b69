//! MySQL/MariaDB source tests.

mod types;
