//! Completion callbacks: a submission may name a URL (`Callback-Url`), and when its operation
//! ends the service POSTs one signed CloudEvent there, durably and at least once. The end is
//! queued on the callbacks queue before it is written (`operations`), and each delivery
//! attempt is one message of that queue, the next one scheduled with a visibility delay.

pub mod address;
pub mod delivery;
pub mod event;
pub mod message;
pub mod record;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use address::CallbackPolicy;
use signing::SigningKeys;

use super::ports::Webhooks;

/// The knobs of callback delivery (read from the environment by `config`).
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    pub policy: CallbackPolicy,
    /// `CALLBACK_SIGNING_SECRET` (and the previous one while rotating); none: unsigned.
    pub signing: SigningKeys,
    /// Deliveries tried at most, the first included.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles each time (with jitter).
    pub first_retry_delay: Duration,
    /// The longest wait between two attempts that the service chooses itself.
    pub max_retry_delay: Duration,
    /// No attempt is made later than this after the operation ended.
    pub max_age: Duration,
    /// How long one attempt may take (connecting, sending, the receiver's answer).
    pub timeout: Duration,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            policy: CallbackPolicy::default(),
            signing: SigningKeys::default(),
            max_attempts: 10,
            first_retry_delay: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Callback delivery as the service is given it: the settings and the sender.
#[derive(Clone)]
pub struct Callbacks {
    pub settings: CallbackSettings,
    pub webhooks: Arc<dyn Webhooks>,
}
