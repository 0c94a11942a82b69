//! Snapshots: copy the rows tables already hold, chunk by chunk, each chunk
//! placed in the change stream at the exact point it reflects.

pub mod mysql_values;
