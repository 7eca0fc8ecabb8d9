//! A work queue that counts what a worker does with it, and the sample submission the worker
//! tests feed it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use async_request_reply::adapters::memory::MemoryWorkQueue;
use async_request_reply::domain::ports::{Delivery, Receipt, StoreError, WorkQueue};
use async_request_reply::domain::{OperationId, Service, SubmitRequest};

/// The memory queue, counting deliveries, renewals and deletes, and remembering how many
/// messages each receive that found some asked for.
#[derive(Default)]
pub struct CountingQueue {
    /// The queue itself, for looking without being counted.
    pub inner: MemoryWorkQueue,
    pub delivered: AtomicUsize,
    pub extended: AtomicUsize,
    pub deleted: AtomicUsize,
    asked: Mutex<Vec<usize>>,
}

impl CountingQueue {
    pub fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
    /// What the receives from the `from`th on asked for.
    pub fn asked_since(&self, from: usize) -> Vec<usize> {
        self.asked.lock().unwrap()[from..].to_vec()
    }
    /// Receives that found messages so far.
    pub fn receives(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

#[async_trait]
impl WorkQueue for CountingQueue {
    async fn send(&self, text: &str) -> Result<(), StoreError> {
        self.inner.send(text).await
    }
    async fn send_delayed(&self, text: &str, delay: Duration) -> Result<(), StoreError> {
        self.inner.send_delayed(text, delay).await
    }
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let got = self.inner.receive(max, visibility).await?;
        if !got.is_empty() {
            self.asked.lock().unwrap().push(max);
        }
        self.delivered.fetch_add(got.len(), Ordering::SeqCst);
        Ok(got)
    }
    async fn extend(
        &self,
        receipt: &Receipt,
        text: &str,
        visibility: Duration,
    ) -> Result<Receipt, StoreError> {
        let renewed = self.inner.extend(receipt, text, visibility).await?;
        self.extended.fetch_add(1, Ordering::SeqCst);
        Ok(renewed)
    }
    async fn delete(&self, receipt: &Receipt) -> Result<(), StoreError> {
        self.inner.delete(receipt).await?;
        self.deleted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.inner.dead_letter(delivery).await
    }
}

/// Submits the sample's record to `service` and answers its operation id.
pub async fn submit_sample(service: &Service) -> OperationId {
    let Value::Object(record) = json!({ "id": "1", "customername": "Contoso" }) else {
        unreachable!()
    };
    let request = SubmitRequest {
        record,
        idempotency_key: None,
        traceparent: None,
        callback_url: None,
    };
    let status_url = |id| format!("http://localhost/api/RequestStatus/{id}");
    service
        .submit(request, &status_url)
        .await
        .expect("accepted")
        .operation
        .id
}
