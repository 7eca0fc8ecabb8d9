//! Implementations of the domain's ports: in memory (the zero-setup default), on Azure
//! Storage, and the completion callbacks' HTTP sender.

pub mod azure;
pub mod memory;
pub mod webhook;
