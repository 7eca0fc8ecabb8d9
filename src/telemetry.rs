//! Logging: `tracing` to stdout, where the Functions host collects it, as text or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
