//! The Asynchronous Request-Reply pattern as an Azure Functions custom handler: the library
//! behind the `handler` binary. See README.md for the flow and ARCHITECTURE in the module docs.
//!
//! - [`domain`]: operations, their states and transitions, the work, and the ports it needs;
//! - [`adapters`]: the ports implemented in memory and on Azure Storage;
//! - [`edges`]: forwarded HTTP, the Functions host's invocation protocol, the standalone worker;
//! - [`config`] and [`app`]: settings read once, and the wiring that starts it all.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod edges;
pub mod telemetry;
