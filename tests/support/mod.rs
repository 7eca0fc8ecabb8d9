//! Shared helpers for the black-box tests: Azurite on free ports, servers on port 0
//! (in-process or the real binary), and a plain HTTP client.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod host;
pub mod work;
