//! The service's metrics, as OpenTelemetry instruments on the global meter: operations accepted
//! and ended (by final status), processing time, queue wait, dequeue count at the end,
//! callbacks delivered or failed, and the standalone worker's in-flight count and limit. With
//! export off the global meter is OpenTelemetry's no-op one and every call here returns at
//! once; with it on, the exporter sends them to Application Insights (`customMetrics`).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use opentelemetry::KeyValue;

use super::spans::exporting;

/// The meter (instrumentation scope) every instrument here belongs to.
pub const METER: &str = "async-request-reply";

struct Instruments {
    accepted: Counter<u64>,
    ended: Counter<u64>,
    processing: Histogram<f64>,
    queue_wait: Histogram<f64>,
    dequeue_count: Histogram<u64>,
    callbacks: Counter<u64>,
}

/// Seconds, from a millisecond to past the longest message visibility a worker would use.
const SECONDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn instruments() -> Option<&'static Instruments> {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    if !exporting() {
        return None;
    }
    Some(INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter(METER);
        Instruments {
            accepted: meter
                .u64_counter("operations.accepted")
                .with_description(
                    "Operations accepted (202), replays of an idempotent submit not counted",
                )
                .build(),
            ended: meter
                .u64_counter("operations.ended")
                .with_description("Operations that reached a final status, by `status`")
                .build(),
            processing: meter
                .f64_histogram("operation.processing.duration")
                .with_unit("s")
                .with_description("Time one delivery of a work message took, by `outcome`")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            queue_wait: meter
                .f64_histogram("queue.wait")
                .with_unit("s")
                .with_description("From the enqueue to the message's first delivery")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            dequeue_count: meter
                .u64_histogram("operation.dequeue_count")
                .with_description("The delivery that ended an operation (1: the first)")
                .with_boundaries(vec![1.0, 2.0, 3.0, 4.0, 5.0, 10.0])
                .build(),
            callbacks: meter
                .u64_counter("callbacks.attempts")
                .with_description("Completion callback attempts, by `result` (delivered, failed)")
                .build(),
        }
    }))
}

/// An operation was accepted.
pub fn accepted() {
    if let Some(i) = instruments() {
        i.accepted.add(1, &[]);
    }
}

/// An operation reached its final `status` (`Succeeded`, `Failed`, `Canceled`).
pub fn ended(status: &'static str) {
    if let Some(i) = instruments() {
        i.ended.add(1, &[KeyValue::new("status", status)]);
    }
}

/// One delivery of a work message took `took`, ending in `outcome` (`done`, `retry`).
pub fn processed(took: Duration, outcome: &'static str) {
    if let Some(i) = instruments() {
        i.processing
            .record(took.as_secs_f64(), &[KeyValue::new("outcome", outcome)]);
    }
}

/// A message's first delivery came `wait` after its enqueue.
pub fn queue_wait(wait: Duration) {
    if let Some(i) = instruments() {
        i.queue_wait.record(wait.as_secs_f64(), &[]);
    }
}

/// An operation ended on delivery number `dequeue_count`.
pub fn ended_on_delivery(dequeue_count: u32) {
    if let Some(i) = instruments() {
        i.dequeue_count.record(u64::from(dequeue_count), &[]);
    }
}

/// A completion callback attempt was `delivered` (a 2xx from the receiver), or not.
pub fn callback_attempt(delivered: bool) {
    if let Some(i) = instruments() {
        let result = if delivered { "delivered" } else { "failed" };
        i.callbacks.add(1, &[KeyValue::new("result", result)]);
    }
}

/// Registers the worker gauges `worker.in_flight` and `worker.limit` for `queue` (an attribute
/// of both): `read` answers (messages in flight, current concurrency limit) whenever the
/// metrics are collected (once per export interval, on the exporter's task), so it must be
/// cheap and must not block, e.g. two atomic loads. Call it once per worker, after telemetry
/// is started; with export off it registers nothing and `read` is never called.
pub fn observe_worker(queue: &'static str, read: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
    if exporting() {
        observe_worker_on(&opentelemetry::global::meter(METER), queue, read);
    }
}

/// The gauges are kept for the life of the process: an instrument's callbacks live with it.
fn observe_worker_on(
    meter: &Meter,
    queue: &'static str,
    read: impl Fn() -> (u64, u64) + Send + Sync + 'static,
) {
    static GAUGES: Mutex<Vec<ObservableGauge<u64>>> = Mutex::new(Vec::new());
    let read = Arc::new(read);
    let attrs = [KeyValue::new("queue", queue)];
    let (r, a) = (read.clone(), attrs.clone());
    let in_flight = meter
        .u64_observable_gauge("worker.in_flight")
        .with_description("Messages the standalone worker is processing now")
        .with_callback(move |o| o.observe(r().0, &a))
        .build();
    let limit = meter
        .u64_observable_gauge("worker.limit")
        .with_description("The standalone worker's current (adaptive) concurrency limit")
        .with_callback(move |o| o.observe(read().1, &attrs))
        .build();
    let mut gauges = GAUGES.lock().unwrap_or_else(|p| p.into_inner());
    gauges.push(in_flight);
    gauges.push(limit);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::*;

    /// The gauges read the worker's numbers at each collection, labelled with the queue.
    #[test]
    fn worker_gauges_report_what_the_worker_says_at_each_collection() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let in_flight = Arc::new(AtomicU64::new(3));
        let seen = in_flight.clone();
        observe_worker_on(&provider.meter(METER), "outqueue", move || {
            (seen.load(Ordering::Relaxed), 8)
        });
        let gauge = |name: &str| -> Vec<(u64, String)> {
            provider.force_flush().unwrap();
            let exported = exporter.get_finished_metrics().unwrap();
            let last = exported.last().expect("a collection");
            let mut out = Vec::new();
            for scope in last.scope_metrics() {
                for metric in scope.metrics().filter(|m| m.name() == name) {
                    if let AggregatedMetrics::U64(MetricData::Gauge(g)) = metric.data() {
                        for p in g.data_points() {
                            let queue = p
                                .attributes()
                                .find(|kv| kv.key.as_str() == "queue")
                                .map(|kv| kv.value.to_string())
                                .unwrap_or_default();
                            out.push((p.value(), queue));
                        }
                    }
                }
            }
            out
        };
        assert_eq!(gauge("worker.in_flight"), [(3, "outqueue".to_string())]);
        assert_eq!(gauge("worker.limit"), [(8, "outqueue".to_string())]);
        in_flight.store(5, Ordering::Relaxed);
        assert_eq!(gauge("worker.in_flight"), [(5, "outqueue".to_string())]);
        provider.shutdown().unwrap();
    }

    #[test]
    fn with_export_off_nothing_is_registered_or_read() {
        observe_worker("outqueue", || panic!("read with export off"));
        accepted();
        ended("Succeeded");
    }
}
