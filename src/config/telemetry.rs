//! The telemetry settings: `APPLICATIONINSIGHTS_CONNECTION_STRING` (export on when set, as
//! deploy.json and the Functions platform set it), `OTEL_TRACES_SAMPLER_ARG` (the share of new
//! traces kept) and `OTEL_METRIC_EXPORT_INTERVAL`, the names OpenTelemetry gives the last two.
//! Checked even with export off: a bad value is a mistake worth stopping for either way.

use std::time::Duration;

use super::vars::{invalid, ConfigError, Vars};
use crate::telemetry::{check_connection_string, ExportSettings};

pub const CONNECTION_STRING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
pub const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
pub const METRIC_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";

/// The export settings, `None` without a connection string.
/// `extra_roots`: the certificates `SSL_CERT_FILE` names, trusted for the upload too.
pub fn export_settings(
    v: &Vars,
    extra_roots: &[reqwest::Certificate],
) -> Result<Option<ExportSettings>, ConfigError> {
    let sample_ratio = match v.get(SAMPLER_ARG) {
        None => 1.0,
        Some(s) => match s.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                return Err(invalid(
                    SAMPLER_ARG,
                    format!("`{s}` is not a ratio from 0 to 1 (the share of traces kept)"),
                ))
            }
        },
    };
    let metric_interval =
        Duration::from_millis(v.number(METRIC_INTERVAL, 60_000, 100, 3_600_000)?);
    let Some(connection_string) = v.get(CONNECTION_STRING) else {
        return Ok(None);
    };
    // The message never repeats the value: its instrumentation key authenticates uploads.
    check_connection_string(connection_string).map_err(|e| invalid(CONNECTION_STRING, e))?;
    Ok(Some(ExportSettings {
        connection_string: connection_string.to_string(),
        sample_ratio,
        metric_interval,
        extra_roots: extra_roots.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<ExportSettings>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        export_settings(&Vars(&map), &[])
    }

    #[test]
    fn off_without_a_connection_string_and_checked_either_way() {
        assert!(read(&[]).unwrap().is_none());
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let e = read(&[(SAMPLER_ARG, bad)]).unwrap_err();
            assert_eq!(e.setting, SAMPLER_ARG, "{bad}");
        }
        let e = read(&[(CONNECTION_STRING, "Key=hunter2")]).unwrap_err();
        assert_eq!(e.setting, CONNECTION_STRING);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let on = read(&[
            (
                CONNECTION_STRING,
                "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/",
            ),
            (SAMPLER_ARG, "0.25"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(on.sample_ratio, 0.25);
        assert_eq!(on.metric_interval, Duration::from_secs(60));
    }
}
