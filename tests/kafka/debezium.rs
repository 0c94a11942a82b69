//! Debezium fixture comparison.
