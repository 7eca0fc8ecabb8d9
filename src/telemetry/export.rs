//! Export to Application Insights with `opentelemetry-application-insights` (it speaks the
//! ingestion protocol: `POST <IngestionEndpoint>/v2/track`, gzip, retries): spans through a
//! batch span processor and metrics through a periodic reader, both tasks on the tokio runtime,
//! so a request never waits on export. Our own reqwest 0.12 client carries the uploads
//! (`opentelemetry-http`'s client trait), and a gate in front of the batch queue bounds what a
//! slow or dead endpoint can hold in memory: spans past it are dropped, counted, and reported
//! at warn level at most once a minute.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_application_insights::Exporter;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

/// What export needs (`APPLICATIONINSIGHTS_CONNECTION_STRING`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Clone)]
pub struct ExportSettings {
    /// The connection string (its instrumentation key authenticates the uploads): never
    /// printed, not even by `Debug`.
    pub connection_string: String,
    /// The share of new traces kept, 0 to 1; a caller's sampled flag is honoured.
    pub sample_ratio: f64,
    /// How often metrics are sent.
    pub metric_interval: Duration,
    /// Certificates trusted beside the built-in roots (`SSL_CERT_FILE`), as for storage: the
    /// exporter only speaks `https` (it rewrites an `http` endpoint), so a private CA is how
    /// an ingestion endpoint that is not Azure's gets trusted.
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl fmt::Debug for ExportSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportSettings")
            .field("connection_string", &"(hidden)")
            .field("sample_ratio", &self.sample_ratio)
            .field("metric_interval", &self.metric_interval)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

/// Whether `text` is a connection string the exporter can use (the error names no part of it).
pub fn check_connection_string(text: &str) -> Result<(), String> {
    Exporter::new_from_connection_string(text, ())
        .map(|_| ())
        .map_err(|_| {
            "not an Application Insights connection string (`InstrumentationKey=...;IngestionEndpoint=https://...`)".to_string()
        })
}

/// Spans waiting for export, at most: what a dead endpoint can hold in memory.
const MAX_QUEUED_SPANS: usize = 2048;
/// How long spans wait to be sent together.
const SPAN_DELAY: Duration = Duration::from_secs(5);
/// One upload's bound, retries included (the crate retries a failed upload for up to 35 s).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// One HTTP request to the ingestion endpoint.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often lost spans are reported, at most.
const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("APPLICATIONINSIGHTS_CONNECTION_STRING: {0}")]
    ConnectionString(String),
    #[error("cannot build the telemetry HTTP client: {0}")]
    Client(String),
}

/// The running pipelines; `shutdown` flushes them.
pub struct Pipelines {
    pub tracer: SdkTracerProvider,
    pub meter: SdkMeterProvider,
}

/// Builds both pipelines. Must run on the tokio runtime (their tasks are spawned on it).
pub fn pipelines(settings: &ExportSettings) -> Result<Pipelines, ExportError> {
    let mut http = reqwest::Client::builder()
        .timeout(UPLOAD_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none());
    for root in &settings.extra_roots {
        http = http.add_root_certificate(root.clone());
    }
    let http = http
        .build()
        .map_err(|e| ExportError::Client(e.to_string()))?;
    let exporter = |client: Ingestion| {
        Exporter::new_from_connection_string(&settings.connection_string, client)
            .map_err(|_| ExportError::ConnectionString("not a usable connection string".into()))
    };
    let resource = Resource::builder_empty()
        .with_service_name(env!("CARGO_PKG_NAME"))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let losses = Arc::new(Losses::default());
    let queued = Arc::new(AtomicUsize::new(0));
    let spans = Counted {
        // Application Insights scales counts by the rate it is told; at 0 only the traces a
        // caller sampled are exported, all of them.
        inner: exporter(Ingestion(http.clone()))?.with_sample_rate(
            if settings.sample_ratio > 0.0 {
                settings.sample_ratio
            } else {
                1.0
            },
        ),
        queued: queued.clone(),
        losses: losses.clone(),
    };
    let batch = BatchSpanProcessor::builder(spans, Tokio)
        .with_batch_config(
            BatchConfigBuilder::default()
                // Room beyond the gate's bound, so the processor itself never drops.
                .with_max_queue_size(MAX_QUEUED_SPANS * 2)
                .with_scheduled_delay(SPAN_DELAY)
                .with_max_export_timeout(EXPORT_TIMEOUT)
                .build(),
        )
        .build();
    let tracer = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_span_processor(Gate {
            inner: batch,
            queued,
            losses,
        })
        .build();
    let reader = PeriodicReader::builder(exporter(Ingestion(http))?, Tokio)
        .with_interval(settings.metric_interval)
        .with_timeout(EXPORT_TIMEOUT)
        .build();
    let meter = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build();
    Ok(Pipelines { tracer, meter })
}

impl Pipelines {
    /// Sends what is pending, within `within` (a dead endpoint costs that much, no more).
    pub async fn shutdown(self, within: Duration) -> bool {
        // The SDK's shutdown blocks its thread until its tasks answer: off the runtime's.
        let flush = tokio::task::spawn_blocking(move || {
            let traces = self.tracer.shutdown_with_timeout(within).is_ok();
            let metrics = self.meter.shutdown_with_timeout(within).is_ok();
            traces && metrics
        });
        matches!(tokio::time::timeout(within, flush).await, Ok(Ok(true)))
    }
}

/// Our reqwest client as the exporter's HTTP client.
#[derive(Debug)]
struct Ingestion(reqwest::Client);

#[async_trait]
impl HttpClient for Ingestion {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let answer = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        let headers = answer.headers().clone();
        let mut response = http::Response::new(answer.bytes().await?);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// Spans lost (queue full, or an upload that failed for good), reported now and then.
#[derive(Debug, Default)]
struct Losses {
    since_report: AtomicU64,
    last_report: Mutex<Option<Instant>>,
}

impl Losses {
    fn lost(&self, spans: u64, why: &'static str) {
        self.since_report.fetch_add(spans, Ordering::Relaxed);
        let mut last = self.last_report.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let dropped = self.since_report.swap(0, Ordering::Relaxed);
        tracing::warn!(
            dropped_spans = dropped,
            reason = why,
            "telemetry export is behind: spans dropped (the Application Insights ingestion \
             endpoint is slow or unreachable); requests are not affected"
        );
    }
}

/// In front of the batch processor: at most `MAX_QUEUED_SPANS` wait for export.
#[derive(Debug)]
struct Gate<P> {
    inner: P,
    queued: Arc<AtomicUsize>,
    losses: Arc<Losses>,
}

impl<P: SpanProcessor> SpanProcessor for Gate<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_SPANS {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.losses.lost(1, "queue full");
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, counting spans out of the gate's queue and those an upload lost.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    losses: Arc<Losses>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
        // Counted as lost unless the upload succeeds, also when the processor gives up on it
        // (its export timeout drops this future).
        let mut in_flight = InFlight {
            spans: n as u64,
            losses: &self.losses,
            delivered: false,
        };
        let result = self.inner.export(batch).await;
        in_flight.delivered = result.is_ok();
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// One upload's spans, lost when dropped undelivered.
struct InFlight<'a> {
    spans: u64,
    losses: &'a Losses,
    delivered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.delivered {
            self.losses.lost(self.spans, "upload failed or timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_connection_string_is_refused_without_being_repeated() {
        let secret = "NotAKey=abc123secret";
        let e = check_connection_string(secret).unwrap_err();
        assert!(!e.contains("abc123secret"), "{e}");
        assert!(check_connection_string(
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
        )
        .is_ok());
        let s = ExportSettings {
            connection_string: secret.into(),
            sample_ratio: 1.0,
            metric_interval: Duration::from_secs(60),
            extra_roots: Vec::new(),
        };
        assert!(!format!("{s:?}").contains("abc123secret"));
    }

    #[test]
    fn losses_are_reported_once_in_a_while_not_per_span() {
        let losses = Losses::default();
        losses.lost(1, "queue full");
        for _ in 0..1000 {
            losses.lost(1, "queue full");
        }
        // The first loss was reported at once; the rest wait for the next report.
        assert_eq!(losses.since_report.load(Ordering::Relaxed), 1000);
    }
}
