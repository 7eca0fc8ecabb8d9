//! What every HTTP handler shares: the service and the edge's own settings.

use std::sync::Arc;
use std::time::Duration;

use super::public_url::UrlPolicy;
use crate::domain::Service;

/// What the HTTP edge needs besides the service.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub urls: UrlPolicy,
    pub max_body_bytes: usize,
    /// `BODY_TIMEOUT_SECONDS`: how long a client may take to send its body.
    pub body_timeout: Duration,
    pub retry_after: Duration,
    pub sync_wait_max: Duration,
    /// `LOCATION_STREAMS_RESULT`: the `202`'s `Location` asks for the result itself
    /// (`?OnComplete=Stream`), for clients that follow `Location` to the first non-`202`.
    pub location_streams_result: bool,
    /// Under the Functions host: also serve the queue trigger's invocations.
    pub host_mode: bool,
}

pub struct HttpState {
    pub service: Arc<Service>,
    pub settings: HttpSettings,
}
