//! The domain: operations and their lifecycle, the work, and the ports it needs.
//! Nothing here knows about HTTP, the Functions host or Azure Storage. The service's use cases
//! are one to a file: `submit`, `status`, `process`, `poison`, `retention`, and the delivery
//! of completion callbacks (`callback::delivery`).

pub mod callback;
pub mod error;
pub mod load;
pub mod message;
pub mod monitor;
pub mod notifier;
pub mod operation;
pub mod operations;
pub mod poison;
pub mod ports;
pub mod process;
pub mod progress;
pub mod retention;
pub mod sample;
pub mod service;
pub mod status;
pub mod submission;
pub mod submit;
pub mod work;

pub use error::DomainError;
pub use operation::{Operation, OperationError, OperationId, Status};
pub use process::Outcome;
pub use service::{Service, ServiceSettings};
pub use submit::{Accepted, SubmitRequest};
