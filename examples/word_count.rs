//! A service with work of its own, built on the library's public API only: it counts the words
//! of a submitted `{"text": "..."}` and stores `{"operationId": ..., "words": N}` as the result. Everything else
//! (the 202 and its status URL, the queue, retries, the poison queue, the SAS redirect, the
//! Functions host's protocol) is the library's. Run it as the handler would be run:
//!
//! ```sh
//! cargo run --example word_count
//! curl -i -X POST http://localhost:7071/api/AsyncProcessingWorkAcceptor \
//!   -H 'Content-Type: application/json' -d '{"text": "one two three"}'
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use async_request_reply::app;
use async_request_reply::config::Config;
use async_request_reply::domain::submission::InvalidSubmission;
use async_request_reply::domain::work::{Work, WorkContext, WorkError, WorkOutput};
use async_request_reply::telemetry;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Map, Value};

struct WordCount;

#[async_trait]
impl Work for WordCount {
    fn validate(&self, record: &Map<String, Value>) -> Result<(), InvalidSubmission> {
        match record.get("text") {
            Some(Value::String(_)) => Ok(()),
            Some(_) => Err(InvalidSubmission::field("text", "`text` must be a string")),
            None => Err(InvalidSubmission::field("text", "`text` is required")),
        }
    }

    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        let text = record.get("text").and_then(Value::as_str).unwrap_or("");
        let body = json!({
            "operationId": context.operation_id.to_string(),
            "words": text.split_whitespace().count(),
        });
        Ok(WorkOutput {
            body: Bytes::from(body.to_string()),
            content_type: "application/json".into(),
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("word_count: {e}");
            return ExitCode::from(2);
        }
    };
    let export = config.export.as_ref();
    let telemetry = match telemetry::start(config.log_format, &config.log_filter, export) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("word_count: {e}");
            return ExitCode::from(2);
        }
    };
    let grace = config.shutdown_grace;
    let running = match app::start(config, Arc::new(WordCount)).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("word_count: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
    telemetry.shutdown(grace).await;
    ExitCode::SUCCESS
}
