//! Shared helpers for the black-box tests: Azurite on free ports, and servers on port 0.
#![allow(dead_code)]

pub mod azurite;
