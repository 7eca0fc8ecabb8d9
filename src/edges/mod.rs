//! The edges: what the Functions host (or a client) sends over HTTP (`http`: forwarded requests,
//! and the host's invocation protocol for the queue triggers, `http::invocation`), and the
//! standalone consumers (`consumer`) of the work queue (`worker`) and the callbacks queue
//! (`callback_worker`).

pub mod callback_worker;
pub mod consumer;
pub mod http;
pub mod worker;
