//! The Asynchronous Request-Reply pattern as an Azure Functions custom handler: the library
//! behind the `handler` binary. README.md has the flow and the file tree. Wiring runs one way,
//! `app` -> `edges`/`adapters` -> `domain`:
//!
//! - [`domain`]: operations, their states and transitions, the work, and the ports it needs;
//! - [`adapters`]: the ports implemented in memory and on Azure Storage;
//! - [`edges`]: forwarded HTTP, the Functions host's invocation protocol, the standalone worker;
//! - [`config`], [`telemetry`] and [`app`]: settings read once, logging, and the composition
//!   root that starts it all with the work it is given.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod edges;
pub mod telemetry;
