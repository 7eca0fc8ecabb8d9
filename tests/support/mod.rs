//! Shared helpers for the black-box tests: Azurite (one shared instance per run, or a private
//! one), servers on port 0 (in-process or the real binary), a bounded poll, the contract macro
//! that runs a suite on every backend, a plain HTTP client, and a webhook receiver.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod app;
pub mod azurite;
pub mod contract;
pub mod host;
pub mod identity;
pub mod ingestion;
pub mod poll;
pub mod queue;
pub mod receiver;
pub mod work;

pub(crate) use contract::contract;
pub use poll::eventually;

/// A free loopback port (bound, read, released): the only place tests pick one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Borrows owned settings as the `(&str, &str)` pairs the starters take.
pub fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
