//! The work queue on Azure Storage queues. Message text is base64 on the wire, as the
//! Functions queue trigger expects by default (`messageEncoding: base64`).

use std::time::Duration;

use async_trait::async_trait;
use azure_storage_queues::prelude::{NumberOfMessages, PopReceipt, QueueClient, VisibilityTimeout};
use azure_storage_queues::PopReceiptClient;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::errors::{is_missing_parent, status_of, store_error};
use crate::domain::ports::{Delivery, Receipt, StoreError, WorkQueue};

pub struct StorageQueue {
    queue: QueueClient,
    /// `None` for a poison queue itself.
    poison: Option<Box<StorageQueue>>,
}

impl StorageQueue {
    /// The work queue and its poison queue.
    pub fn new(queue: QueueClient, poison: QueueClient) -> Self {
        let poison = StorageQueue {
            queue: poison,
            poison: None,
        };
        Self {
            queue,
            poison: Some(Box::new(poison)),
        }
    }

    pub async fn create_queues(&self) -> Result<(), StoreError> {
        let poison = self.poison.as_ref().map(|p| &p.queue);
        for q in std::iter::once(&self.queue).chain(poison) {
            match q.create().await {
                Ok(_) => {}
                Err(e) if status_of(&e).map(u16::from) == Some(409) => {}
                Err(e) => return Err(store_error("create queue", &e)),
            }
        }
        Ok(())
    }

    /// The client for one delivered message, addressed by its receipt.
    fn delivered(&self, receipt: &Receipt) -> PopReceiptClient {
        self.queue.pop_receipt_client(PopReceipt::new(
            receipt.message_id.clone(),
            receipt.pop_receipt.clone(),
        ))
    }

    /// Re-creates the queues found missing, so work can be queued again.
    async fn heal(&self) -> Result<(), StoreError> {
        tracing::warn!("queue missing; re-creating it");
        self.create_queues().await
    }
}

fn encode(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

/// Decodes base64 message text; text that is not base64 (or not UTF-8 inside) is delivered as
/// it is, so the domain can fail it with a clear reason instead of it vanishing.
fn decode(raw: &str) -> String {
    STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| raw.to_string())
}

#[async_trait]
impl WorkQueue for StorageQueue {
    async fn send(&self, text: &str) -> Result<(), StoreError> {
        self.send_delayed(text, Duration::ZERO).await
    }

    async fn send_delayed(&self, text: &str, delay: Duration) -> Result<(), StoreError> {
        // The service takes whole seconds of initial invisibility; round up, never down to
        // "now" for a retry that asked to wait.
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        let put = || {
            let put = self.queue.put_message(encode(text));
            if seconds == 0 {
                put.into_future()
            } else {
                put.visibility_timeout(VisibilityTimeout::new(Duration::from_secs(seconds)))
                    .into_future()
            }
        };
        match put().await {
            Err(e) if is_missing_parent(&e) => {
                self.heal().await?;
                put().await
            }
            other => other,
        }
        .map(|_| ())
        .map_err(|e| match status_of(&e).map(u16::from) {
            Some(413) => {
                StoreError::Fatal("the message is larger than a queue message may be".into())
            }
            _ => store_error("enqueue", &e),
        })
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let n = max.clamp(1, 32) as u8;
        let got = self
            .queue
            .get_messages()
            .number_of_messages(NumberOfMessages::new(n))
            .visibility_timeout(VisibilityTimeout::new(visibility))
            .await;
        let got = match got {
            Err(e) if is_missing_parent(&e) => {
                // Heal for the next poll; this one reports the outage.
                let _ = self.heal().await;
                return Err(store_error("receive", &e));
            }
            other => other.map_err(|e| store_error("receive", &e))?,
        };
        Ok(got
            .messages
            .into_iter()
            .map(|m| Delivery {
                text: decode(&m.message_text),
                dequeue_count: u32::try_from(m.dequeue_count).unwrap_or(u32::MAX),
                receipt: Receipt {
                    message_id: m.message_id,
                    pop_receipt: m.pop_receipt,
                },
            })
            .collect())
    }

    async fn extend(
        &self,
        receipt: &Receipt,
        text: &str,
        visibility: Duration,
    ) -> Result<Receipt, StoreError> {
        // The crate's Update Message always sends a body; it is the text as it was sent.
        self.delivered(receipt)
            .update(encode(text), VisibilityTimeout::new(visibility))
            .await
            .map(|r| Receipt {
                message_id: receipt.message_id.clone(),
                pop_receipt: r.pop_receipt,
            })
            .map_err(|e| store_error("extend message visibility", &e))
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), StoreError> {
        self.delivered(receipt)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| store_error("delete message", &e))
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let poison = self
            .poison
            .as_ref()
            .ok_or_else(|| StoreError::Fatal("a poison queue has no poison queue".into()))?;
        poison.send(&delivery.text).await.map_err(|e| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("move to poison queue: {m}"))
            }
            other => other,
        })?;
        self.delete(&delivery.receipt).await
    }

    fn poison(&self) -> Option<&dyn WorkQueue> {
        self.poison.as_deref().map(|p| p as &dyn WorkQueue)
    }
}
