//! Logging: `tracing` as text or JSON lines, split across stdout and stderr the way the
//! Functions host classifies a custom handler's output, so warnings and errors reach
//! Application Insights as such.

use tracing::{Dispatch, Level};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written: `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Libraries that log whole requests (signed `Authorization` headers, SAS query strings) at
/// debug level: they never log below `info`, whatever `RUST_LOG` asks for.
const SECRET_BEARING_TARGETS: [&str; 4] = ["azure_core", "azure_storage", "reqwest", "hyper_util"];

/// Whether `filter` is a valid `RUST_LOG` value (config checks this at start-up).
pub fn valid_filter(filter: &str) -> bool {
    EnvFilter::try_new(filter).is_ok()
}

/// Installs the global subscriber with the `RUST_LOG` filter, less what could leak a secret.
pub fn init(format: LogFormat, filter: &str) {
    let mut filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in SECRET_BEARING_TARGETS {
        if let Ok(cap) = format!("{target}=info").parse() {
            filter = filter.add_directive(cap);
        }
    }
    let _ = subscriber(format, filter, by_level(std::io::stderr, std::io::stdout)).try_init();
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.finish().into(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .finish()
            .into(),
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
