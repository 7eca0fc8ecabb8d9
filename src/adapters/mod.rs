//! Implementations of the domain's ports: in memory (the zero-setup default) and on Azure Storage.

pub mod azure;
pub mod memory;
