//! Integration tests against real servers (see tests/servers/), in one test
//! binary. Each test uses its own database and its own daemon.

mod support;

mod api;
mod cli;
mod kafka;
mod mysql;
mod operator;
mod postgres;
mod rules;
mod runtime;
mod service;
mod snapshot;
mod target;
