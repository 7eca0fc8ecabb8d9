//! Every setting, read once from the environment with its default. A bad value stops startup
//! with a message naming the variable; nothing else in the program reads the environment.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

mod callbacks;
mod storage;
mod telemetry;
mod vars;

pub use vars::ConfigError;
use vars::{invalid, Vars};

use crate::adapters::azure::{AzureSettings, StorageAuth, MAX_LINK_LIFE};
use crate::domain::callback::CallbackSettings;
use crate::domain::ServiceSettings;
use crate::edges::http::server::ConnectionLimits;
use crate::edges::worker::WorkerSettings;
use crate::telemetry::{ExportSettings, LogFormat};

/// How the handler is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Under the Functions host: listen where `FUNCTIONS_CUSTOMHANDLER_PORT` says; the host
    /// delivers queue messages through the invocation protocol.
    FunctionsHost { port: u16 },
    /// On its own: serve HTTP and run the queue worker in-process.
    Standalone { bind: IpAddr, port: u16 },
}

/// Where operations, results and the queue live.
#[derive(Debug)]
pub enum StorageConfig {
    Memory,
    Azure(Box<AzureSettings>),
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub storage: StorageConfig,
    /// `PUBLIC_BASE_URL`: the scheme and host clients use, e.g. `https://api.contoso.com`.
    pub public_base_url: Option<String>,
    /// `WEBSITE_HOSTNAME`: set by App Service (and by `func start` to `localhost:7071`).
    pub website_hostname: Option<String>,
    /// `TRUST_FORWARDED_HEADERS`: build URLs from `X-Forwarded-Proto`/`X-Forwarded-Host`.
    pub trust_forwarded_headers: bool,
    pub max_body_bytes: usize,
    /// `BODY_TIMEOUT_SECONDS`: how long a client may take to send its body (then `408`).
    pub body_timeout: Duration,
    pub retry_after: Duration,
    pub sync_wait_max: Duration,
    /// `LOCATION_STREAMS_RESULT`: the `202`'s `Location` ends in the result (`200`), not a `302`.
    pub location_streams_result: bool,
    /// `PROCESSING_DELAY_MS`: the sample work's delay (the binary builds `SampleWork` with it;
    /// the service itself never reads it).
    pub processing_delay: Duration,
    pub service: ServiceSettings,
    pub worker: WorkerSettings,
    pub purge_interval: Duration,
    pub shutdown_grace: Duration,
    pub connection_limits: ConnectionLimits,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// The completion callbacks' settings (`CALLBACK_*`, in `config/callbacks.rs`).
    pub callbacks: CallbackSettings,
    /// Export to Application Insights, when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set
    /// (`config/telemetry.rs`).
    pub export: Option<ExportSettings>,
}

/// Azure's front end cuts requests off at 230 s; synchronous waits stay well under.
pub const MAX_SYNC_WAIT_SECONDS: u64 = 200;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads settings from a map (the environment, or a test's own).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(vars);
        let mode = match v.get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(_) => Mode::FunctionsHost {
                port: v.number("FUNCTIONS_CUSTOMHANDLER_PORT", 0, 0, u16::MAX as u64)? as u16,
            },
            None => Mode::Standalone {
                bind: match v.get("BIND_ADDRESS") {
                    None => IpAddr::from([127, 0, 0, 1]),
                    Some(s) => s.parse().map_err(|_| {
                        invalid("BIND_ADDRESS", format!("`{s}` is not an IP address"))
                    })?,
                },
                port: v.number("PORT", 7071, 0, u16::MAX as u64)? as u16,
            },
        };
        // Storage settings are checked even when storage is in memory: a bad value is a mistake
        // worth stopping for whichever backend it would have met.
        // 46: room for the longest queue derived from it, `<name>-callbacks-poison`.
        let queue_name = v.name("WORK_QUEUE_NAME", "outqueue", 46)?;
        let results_container = v.name("RESULT_CONTAINER", "data", 63)?;
        let records_container = v.name("RECORDS_CONTAINER", "operations", 63)?;
        let request_timeout =
            Duration::from_millis(v.number("STORAGE_TIMEOUT_MS", 3000, 100, 120_000)?);
        let max_retries = v.number("STORAGE_MAX_RETRIES", 2, 0, 10)? as u32;
        let max_concurrent_calls = v.number("STORAGE_MAX_CONCURRENT_CALLS", 32, 1, 4096)? as usize;
        let worker_concurrency = v.number("WORKER_CONCURRENCY", 16, 1, 1024)? as usize;
        let sas_expiry = v.number("SAS_EXPIRY_SECONDS", 600, 1, 7 * 24 * 3600)?;
        let extra_roots = storage::extra_roots(&v)?;
        let export = telemetry::export_settings(&v, &extra_roots)?;
        let storage = match storage::account(&v)? {
            None => memory_allowed(&v, &mode)?,
            Some(account) => StorageConfig::Azure(Box::new(AzureSettings {
                link_life: link_life(&account, sas_expiry)?,
                account,
                extra_roots,
                queue_name,
                results_container,
                records_container,
                request_timeout,
                max_retries,
                max_concurrent_calls,
                work_max_in_flight: worker_concurrency,
            })),
        };
        let public_base_url = match v.get("PUBLIC_BASE_URL") {
            None => None,
            Some(u) => Some(parse_base_url(u)?),
        };
        let website_hostname = match v.get("WEBSITE_HOSTNAME") {
            None => None,
            Some(h) if crate::edges::http::public_url::valid_authority(h) => Some(h.to_string()),
            Some(h) => {
                return Err(invalid(
                    "WEBSITE_HOSTNAME",
                    format!("`{h}` is not a host[:port]"),
                ))
            }
        };
        let service = ServiceSettings {
            retention: Duration::from_secs(v.number(
                "RETENTION_SECONDS",
                86_400,
                1,
                365 * 86_400,
            )?),
            max_dequeue_count: v.number("MAX_DEQUEUE_COUNT", 5, 1, 1000)? as u32,
            sas_expiry: Duration::from_secs(sas_expiry),
            sync_poll_interval: Duration::from_millis(v.number("SYNC_POLL_MS", 500, 10, 60_000)?),
            max_sync_waits: v.number("MAX_SYNC_WAITS", 256, 0, 100_000)? as usize,
            running_after: Duration::from_millis(v.number(
                "RUNNING_AFTER_MS",
                1000,
                0,
                3_600_000,
            )?),
            ..ServiceSettings::default()
        };
        let callbacks = callbacks::callback_settings(&v)?;
        Ok(Config {
            callbacks,
            export,
            mode,
            storage,
            public_base_url,
            website_hostname,
            trust_forwarded_headers: v.flag("TRUST_FORWARDED_HEADERS", false)?,
            max_body_bytes: v.number("MAX_BODY_BYTES", 1024 * 1024, 1024, 128 * 1024 * 1024)?
                as usize,
            body_timeout: Duration::from_secs(v.number("BODY_TIMEOUT_SECONDS", 30, 1, 600)?),
            retry_after: Duration::from_secs(v.number("RETRY_AFTER_SECONDS", 1, 1, 3600)?),
            sync_wait_max: Duration::from_secs(v.number(
                "SYNC_WAIT_SECONDS",
                30,
                1,
                MAX_SYNC_WAIT_SECONDS,
            )?),
            location_streams_result: v.flag("LOCATION_STREAMS_RESULT", false)?,
            processing_delay: Duration::from_millis(v.number(
                "PROCESSING_DELAY_MS",
                0,
                0,
                3_600_000,
            )?),
            service,
            worker: WorkerSettings {
                concurrency: worker_concurrency,
                visibility_timeout: Duration::from_secs(v.number(
                    "VISIBILITY_TIMEOUT_SECONDS",
                    30,
                    1,
                    7 * 24 * 3600,
                )?),
                max_poll_interval: Duration::from_millis(v.number(
                    "QUEUE_MAX_POLL_MS",
                    2000,
                    100,
                    60_000,
                )?),
            },
            purge_interval: Duration::from_secs(v.number(
                "PURGE_INTERVAL_SECONDS",
                60,
                1,
                86_400,
            )?),
            shutdown_grace: Duration::from_secs(v.number("SHUTDOWN_GRACE_SECONDS", 20, 0, 600)?),
            connection_limits: ConnectionLimits {
                max_connections: v.number("MAX_CONNECTIONS", 1024, 1, 65_536)? as usize,
                max_header_bytes: v.number("MAX_HEADER_BYTES", 64 * 1024, 8 * 1024, 1024 * 1024)?
                    as usize,
                header_timeout: Duration::from_secs(v.number(
                    "HEADER_TIMEOUT_SECONDS",
                    10,
                    1,
                    300,
                )?),
            },
            log_format: match v.get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(invalid(
                        "LOG_FORMAT",
                        format!("`{other}` is not `text` or `json`"),
                    ))
                }
            },
            log_filter: match v.get("RUST_LOG") {
                None => "info".to_string(),
                Some(f) if crate::telemetry::valid_filter(f) => f.to_string(),
                Some(f) => {
                    return Err(invalid(
                        "RUST_LOG",
                        format!("`{f}` is not a tracing filter such as `info` or `warn,async_request_reply=debug`"),
                    ))
                }
            },
        })
    }
}

/// The setting that opts into in-memory storage under the Functions host (tests and demos).
pub const IN_MEMORY_UNDER_HOST: &str = "ALLOW_IN_MEMORY_STORAGE";

/// How long result links live (`SAS_EXPIRY_SECONDS`). A user-delegation key lives at most
/// seven days and must outlive every link it signs with room to be renewed, so links signed by
/// identity are limited to [`MAX_LINK_LIFE`].
fn link_life(
    account: &crate::adapters::azure::StorageAccount,
    sas_expiry: u64,
) -> Result<Duration, ConfigError> {
    let life = Duration::from_secs(sas_expiry);
    if matches!(account.auth(), StorageAuth::Identity(_)) && life > MAX_LINK_LIFE {
        return Err(invalid(
            "SAS_EXPIRY_SECONDS",
            format!(
                "{sas_expiry} is longer than a user-delegation link can live here (at most {} with identity-based storage)",
                MAX_LINK_LIFE.as_secs()
            ),
        ));
    }
    Ok(life)
}

/// Without a storage account, storage is in memory, but only where that cannot be a mistake:
/// standalone, or under the host when asked for by name. Under the host, work kept in memory
/// is never delivered (the host reads the queue in storage), so starting would accept work
/// that never runs.
fn memory_allowed(v: &Vars, mode: &Mode) -> Result<StorageConfig, ConfigError> {
    if matches!(mode, Mode::FunctionsHost { .. }) && !v.flag(IN_MEMORY_UNDER_HOST, false)? {
        return Err(invalid(
            "AzureWebJobsStorage",
            format!(
                "is required under the Functions host (FUNCTIONS_CUSTOMHANDLER_PORT is set): the \
                 host delivers queue messages from storage, so work kept in memory would never \
                 run; set it to a connection string (UseDevelopmentStorage=true for Azurite) or use \
                 identity-based settings (AzureWebJobsStorage__accountName), or \
                 {IN_MEMORY_UNDER_HOST}=true for a test or demo without storage"
            ),
        ));
    }
    Ok(StorageConfig::Memory)
}

fn parse_base_url(u: &str) -> Result<String, ConfigError> {
    let u = u.trim_end_matches('/');
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| invalid("PUBLIC_BASE_URL", "must start with https:// or http://"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !crate::edges::http::public_url::valid_authority(authority)
        || path
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(invalid(
            "PUBLIC_BASE_URL",
            format!("`{u}` is not a base URL such as https://api.contoso.com"),
        ));
    }
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_standalone_in_memory_on_7071() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(
            c.mode,
            Mode::Standalone {
                bind: IpAddr::from([127, 0, 0, 1]),
                port: 7071
            }
        );
        assert!(matches!(c.storage, StorageConfig::Memory));
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.service.retention, Duration::from_secs(86_400));
        assert_eq!(c.service.sas_expiry, Duration::from_secs(600));
        assert_eq!(c.sync_wait_max, Duration::from_secs(30));
    }

    #[test]
    fn host_mode_follows_the_custom_handler_port() {
        let c = Config::from_vars(&vars(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "40123"),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ]))
        .unwrap();
        assert_eq!(c.mode, Mode::FunctionsHost { port: 40123 });
    }

    #[test]
    fn host_mode_never_falls_back_to_memory_unasked() {
        let err = Config::from_vars(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "1")])).unwrap_err();
        assert_eq!(err.setting, "AzureWebJobsStorage");
        assert!(err.problem.contains(IN_MEMORY_UNDER_HOST), "{err}");
        let c = Config::from_vars(&vars(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
            (IN_MEMORY_UNDER_HOST, "true"),
        ]))
        .unwrap();
        assert!(matches!(c.storage, StorageConfig::Memory));
        let err = Config::from_vars(&vars(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
            (IN_MEMORY_UNDER_HOST, "perhaps"),
        ]))
        .unwrap_err();
        assert_eq!(err.setting, IN_MEMORY_UNDER_HOST);
    }

    #[test]
    fn bad_settings_name_themselves() {
        for (name, value) in [
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "http"),
            ("PORT", "70000"),
            ("BIND_ADDRESS", "localhost"),
            ("AzureWebJobsStorage", "AccountName=x"),
            ("WORK_QUEUE_NAME", "Out_Queue"),
            ("RESULT_CONTAINER", "a"),
            ("PUBLIC_BASE_URL", "ftp://x"),
            ("PUBLIC_BASE_URL", "https://exa mple.com"),
            ("WEBSITE_HOSTNAME", "bad host"),
            ("SAS_EXPIRY_SECONDS", "0"),
            ("SYNC_WAIT_SECONDS", "231"),
            ("RETENTION_SECONDS", "-1"),
            ("MAX_BODY_BYTES", "1k"),
            ("BODY_TIMEOUT_SECONDS", "0"),
            ("TRUST_FORWARDED_HEADERS", "maybe"),
            ("LOCATION_STREAMS_RESULT", "sometimes"),
            ("LOG_FORMAT", "xml"),
        ] {
            let mut env = vars(&[(name, value)]);
            if name != "AzureWebJobsStorage" && name.starts_with(char::is_uppercase) {
                // Storage-only settings are checked when storage is configured.
                env.insert(
                    "AzureWebJobsStorage".into(),
                    "UseDevelopmentStorage=true".into(),
                );
            }
            let err = Config::from_vars(&env).unwrap_err();
            assert_eq!(err.setting, name, "{value}: {err}");
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        let c =
            Config::from_vars(&vars(&[("PUBLIC_BASE_URL", "https://api.contoso.com/")])).unwrap();
        assert_eq!(
            c.public_base_url.as_deref(),
            Some("https://api.contoso.com")
        );
    }
}
