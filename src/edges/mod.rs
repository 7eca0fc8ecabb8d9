//! The edges: forwarded HTTP (`http`), the Functions host's invocation protocol for the queue
//! trigger (`invocation`), and the standalone queue worker (`worker`).

pub mod http;
pub mod worker;
