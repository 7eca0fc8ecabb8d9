//! The domain: operations and their lifecycle, the work, and the ports it needs.
//! Nothing here knows about HTTP, the Functions host or Azure Storage.

pub mod error;
pub mod message;
pub mod notifier;
pub mod operation;
pub mod ports;
pub mod service;
pub mod submission;
pub mod work;

pub use error::DomainError;
pub use operation::{Operation, OperationError, OperationId, Status};
pub use service::{Service, ServiceSettings};
