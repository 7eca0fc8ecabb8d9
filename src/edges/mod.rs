//! The edges: what the Functions host (or a client) sends over HTTP (`http`: forwarded requests,
//! and the host's invocation protocol for the queue triggers, `http::invocation`), and the
//! standalone queue worker (`worker`).

pub mod http;
pub mod worker;
