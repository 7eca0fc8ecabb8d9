//! Putting a `tracing` span into a W3C trace: the caller's (a request's `traceparent`, a queue
//! message's), or a new one; and reading back the span's own `traceparent`, which a `202`
//! answers in `traceresponse` and a queue message carries to its consumer. With export on, the
//! ids are OpenTelemetry's (`tracing-opentelemetry`); with it off no OpenTelemetry layer
//! exists and the ids are made here, so the headers and the `trace_id` on log lines cost a
//! couple of random numbers, not a tracer.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::w3c::TraceParent;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (`APPLICATIONINSIGHTS_CONNECTION_STRING` set). Spans made only
/// for export (storage calls, the enqueue) are not made at all when it is off.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

pub(super) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// With export on, gives `span` its OpenTelemetry kind (`server`, `consumer`, ...) and name
/// (fields it declares `Empty`), so that log lines with export off stay as they were. Call it
/// before `begin`.
pub fn for_export(span: &Span, kind: &str, name: &str) {
    if exporting() {
        span.record("otel.kind", kind);
        span.record("otel.name", name);
    }
}

/// Makes `span` the child of `parent` (or the root of a new trace), records its `trace_id`
/// field (declared `Empty` by the span), and returns the span's own `traceparent`. Call it
/// before the span is first entered: OpenTelemetry fixes a span's parent when it starts.
pub fn begin(span: &Span, parent: Option<TraceParent>) -> TraceParent {
    let own = if exporting() {
        if let Some(p) = parent {
            let _ = span.set_parent(remote(p));
        }
        of(span)
    } else {
        None
    };
    let own = own.unwrap_or_else(|| match parent {
        Some(p) => p.child(),
        None => TraceParent::new_root(),
    });
    span.record("trace_id", own.trace_id_hex().as_str());
    own
}

/// `begin` for a `traceparent` given as text (a queue message's), ignored when malformed.
pub fn begin_from(span: &Span, parent: Option<&str>) -> TraceParent {
    begin(span, parent.and_then(TraceParent::parse))
}

/// The exported span's own `traceparent` (`None` with export off, or for a span the exporter
/// does not see).
pub fn of(span: &Span) -> Option<TraceParent> {
    if !exporting() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    })
}

fn remote(p: TraceParent) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(p.trace_id),
        SpanId::from_bytes(p.span_id),
        TraceFlags::new(p.flags),
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_a_span_joins_the_callers_trace_with_an_id_of_its_own() {
        let caller =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = tracing::info_span!("t", trace_id = tracing::field::Empty);
        let own = begin(&span, Some(caller));
        assert_eq!(own.trace_id, caller.trace_id);
        assert_ne!(own.span_id, caller.span_id);
        assert_eq!(own.flags, caller.flags);
        let fresh = begin_from(&span, Some("not a traceparent"));
        assert_ne!(fresh.trace_id, caller.trace_id);
        assert_eq!(of(&span), None);
    }
}
