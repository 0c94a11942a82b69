pub mod pgoutput;
pub mod types;
