//! Logging and tracing: `tracing` as text or JSON lines, split across stdout and stderr the way
//! the Functions host classifies a custom handler's output, so warnings and errors reach
//! Application Insights as such; and, with `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the
//! service's spans and metrics exported to Application Insights (`export`), one W3C trace per
//! submission (`spans`, `w3c`), with the trace id on every log line inside a span.

mod export;
pub mod metrics;
mod spans;
mod w3c;

use std::time::Duration;

use opentelemetry::trace::TracerProvider;
use tracing::{Dispatch, Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use export::{check_connection_string, ExportError, ExportSettings};
pub use spans::{begin, begin_from, exporting, for_export, of as traceparent_of};
pub use w3c::TraceParent;

/// How log lines are written: `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Libraries that log whole requests (signed `Authorization` headers, SAS query strings) at
/// debug level: they never log below `info`, whatever `RUST_LOG` asks for.
const SECRET_BEARING_TARGETS: [&str; 4] = ["azure_core", "azure_storage", "reqwest", "hyper_util"];

/// The name of the span an invocation from the Functions host runs in: not exported (the
/// delivery's own consumer span, in the submitter's trace, stands for it).
pub const INVOCATION_SPAN: &str = "invocation";

/// The name of the span `GET /` (the liveness probe) runs in: not exported either.
pub const PROBE_SPAN: &str = "probe";

/// Whether `filter` is a valid `RUST_LOG` value (config checks this at start-up).
pub fn valid_filter(filter: &str) -> bool {
    EnvFilter::try_new(filter).is_ok()
}

/// Installs the global subscriber with the `RUST_LOG` filter, less what could leak a secret:
/// logs only, nothing exported.
pub fn init(format: LogFormat, filter: &str) {
    let writer = by_level(std::io::stderr, std::io::stdout);
    let _ = subscriber(format, log_filter(filter), writer).try_init();
}

/// Telemetry as started: `shutdown` flushes what export has pending.
pub struct Telemetry {
    pipelines: Option<export::Pipelines>,
}

/// As `init`, and with `export` set, spans and metrics go to Application Insights as well.
/// Without it no exporter, no tracer and no background task exists. Runs on the tokio runtime.
pub fn start(
    format: LogFormat,
    filter: &str,
    export: Option<&ExportSettings>,
) -> Result<Telemetry, ExportError> {
    let Some(settings) = export else {
        init(format, filter);
        return Ok(Telemetry { pipelines: None });
    };
    let pipelines = export::pipelines(settings)?;
    opentelemetry::global::set_meter_provider(pipelines.meter.clone());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(pipelines.tracer.tracer(metrics::METER))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(exported));
    let logs = fmt_layer(format, by_level(std::io::stderr, std::io::stdout))
        .with_filter(log_filter(filter));
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init();
    if installed.is_ok() {
        spans::set_exporting();
    }
    Ok(Telemetry {
        pipelines: Some(pipelines),
    })
}

impl Telemetry {
    /// Sends what export has pending, within `within`; nothing to do with export off.
    pub async fn shutdown(self, within: Duration) {
        let Some(pipelines) = self.pipelines else {
            return;
        };
        if !pipelines.shutdown(within).await {
            tracing::warn!(
                within_ms = within.as_millis() as u64,
                "telemetry not all sent at shutdown"
            );
        }
    }
}

/// What is exported: this crate's spans at info level or above; not events (logs stay lines
/// on stdout/stderr), not the host's invocation span or the probe's, and never a library's span, whose
/// fields may hold what the log filter keeps out of the lines.
fn exported(meta: &Metadata<'_>) -> bool {
    meta.is_span()
        && *meta.level() <= Level::INFO
        && meta.target().starts_with(env!("CARGO_CRATE_NAME"))
        && meta.name() != INVOCATION_SPAN
        && meta.name() != PROBE_SPAN
}

/// `RUST_LOG`, less what could leak a secret.
fn log_filter(filter: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in SECRET_BEARING_TARGETS {
        if let Ok(cap) = format!("{target}=info").parse() {
            filter = filter.add_directive(cap);
        }
    }
    filter
}

/// Warnings and errors to `warnings`, everything else to `rest`. The host (`WorkerProcess.
/// ParseErrorMessageAndLog`) logs every stdout line as Information; a stderr line containing
/// "warn" (any case) as a Warning, checked first; and any other stderr line as an Error (a
/// custom handler's `UseStdErrorStreamForErrorsOnly`; language workers, and some older hosts,
/// take only lines saying "error", "fail" or "severe" for Errors). The level word in every line
/// ("WARN" / "ERROR" in text, `"level":"WARN"` / `"level":"ERROR"` in JSON) therefore lands
/// each on its own severity under either rule, whatever else the line says; only an ERROR
/// event whose own text says "warn" would show as a Warning.
fn by_level<W, R>(warnings: W, rest: R) -> impl for<'w> MakeWriter<'w> + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    R: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // `with_max_level(WARN)`: WARN and the less verbose ERROR.
    warnings.with_max_level(Level::WARN).or_else(rest)
}

/// One subscriber for both destinations, so tests format exactly as the binary does.
fn subscriber<M>(format: LogFormat, filter: EnvFilter, writer: M) -> Dispatch
where
    M: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Registry::default()
        .with(fmt_layer(format, writer).with_filter(filter))
        .into()
}

/// The log lines' layer. JSON lines carry the current span and the list of spans around it,
/// the outermost of which (a request's, a delivery's) holds `trace_id`.
fn fmt_layer<M>(format: LogFormat, writer: M) -> Box<dyn Layer<Registry> + Send + Sync>
where
    M: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An in-memory stream standing in for stdout or stderr.
    #[derive(Clone, Default)]
    struct Stream(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Stream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    /// Each level lands on its stream, with its level word, in both formats.
    #[test]
    fn warnings_and_errors_go_to_stderr_the_rest_to_stdout() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let (stdout, stderr) = (Stream::default(), Stream::default());
            let (out, err) = (stdout.clone(), stderr.clone());
            let dispatch = subscriber(
                format,
                EnvFilter::new("trace"),
                by_level(move || err.clone(), move || out.clone()),
            );
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::trace!("a trace");
                tracing::debug!("a debug");
                tracing::info!("an info");
                tracing::warn!("a warning");
                tracing::error!("an error");
            });
            let (stdout, stderr) = (stdout.lines(), stderr.lines());
            assert_eq!(stdout.len(), 3, "{format:?}: {stdout:?}");
            for (line, level) in stdout.iter().zip(["TRACE", "DEBUG", "INFO"]) {
                assert!(line.contains(level), "{format:?}: {line}");
            }
            assert_eq!(stderr.len(), 2, "{format:?}: {stderr:?}");
            assert!(
                stderr[0].contains("WARN") && stderr[0].contains("a warning"),
                "{format:?}: {}",
                stderr[0]
            );
            assert!(
                stderr[1].contains("ERROR") && stderr[1].contains("an error"),
                "{format:?}: {}",
                stderr[1]
            );
        }
    }
}
