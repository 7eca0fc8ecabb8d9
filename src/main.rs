//! The `handler` binary: reads the configuration, starts the service with the sample's work,
//! and stops it gracefully on Ctrl-C or SIGTERM. Everything else lives in the library; a crate
//! with work of its own writes this same file with its own `Work` (see `examples/`).

use std::process::ExitCode;
use std::sync::Arc;

use async_request_reply::domain::sample::SampleWork;
use async_request_reply::{app, config::Config, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("handler: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::start(
        config.log_format,
        &config.log_filter,
        config.export.as_ref(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("handler: {e}");
            return ExitCode::from(2);
        }
    };
    let grace = config.shutdown_grace;
    let work = Arc::new(SampleWork::new(config.processing_delay));
    let app = match app::start(config, work).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            eprintln!("handler: {e}");
            return ExitCode::from(1);
        }
    };
    shutdown_signal().await;
    // Export is flushed in what is left of the one grace period.
    let stopping = std::time::Instant::now();
    app.shutdown().await;
    telemetry
        .shutdown(grace.saturating_sub(stopping.elapsed()))
        .await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
