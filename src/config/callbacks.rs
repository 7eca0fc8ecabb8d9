//! The completion callbacks' settings (`CALLBACK_*`), read once like every other: the hosts
//! that may be called over `http` or at internal addresses, the signing secrets, and the
//! bounds on delivery (attempts, delays, age, the time one attempt may take).

use std::time::Duration;

use super::vars::{invalid, ConfigError, Vars};
use crate::domain::callback::address::CallbackPolicy;
use crate::domain::callback::signing::SigningKeys;
use crate::domain::callback::CallbackSettings;

pub const SIGNING_SECRET: &str = "CALLBACK_SIGNING_SECRET";
pub const PREVIOUS_SIGNING_SECRET: &str = "CALLBACK_SIGNING_SECRET_PREVIOUS";

/// Reads the `CALLBACK_*` settings.
pub fn callback_settings(v: &Vars) -> Result<CallbackSettings, ConfigError> {
    let defaults = CallbackSettings::default();
    let hosts: Vec<String> = v
        .get("CALLBACK_ALLOWED_HOSTS")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = hosts.iter().find(|h| h.contains(['/', ' ', '@', '?', '#'])) {
        return Err(invalid(
            "CALLBACK_ALLOWED_HOSTS",
            format!("`{bad}` is not a host name or IP address (a comma-separated list of them)"),
        ));
    }
    let current = v.get(SIGNING_SECRET);
    let previous = v.get(PREVIOUS_SIGNING_SECRET);
    if previous.is_some() && current.is_none() {
        return Err(invalid(
            PREVIOUS_SIGNING_SECRET,
            format!("is set without {SIGNING_SECRET}: rotation signs with both"),
        ));
    }
    // Each secret is checked on its own so the error names the right setting (never its value).
    SigningKeys::parse(current).map_err(|p| invalid(SIGNING_SECRET, p))?;
    SigningKeys::parse(previous).map_err(|p| invalid(PREVIOUS_SIGNING_SECRET, p))?;
    let signing = SigningKeys::parse(current.into_iter().chain(previous))
        .map_err(|p| invalid(SIGNING_SECRET, p))?;
    let first_retry_delay = Duration::from_millis(v.number(
        "CALLBACK_RETRY_DELAY_MS",
        defaults.first_retry_delay.as_millis() as u64,
        10,
        24 * 3_600_000,
    )?);
    let max_retry_delay = Duration::from_secs(v.number(
        "CALLBACK_MAX_RETRY_DELAY_SECONDS",
        defaults.max_retry_delay.as_secs(),
        1,
        7 * 86_400,
    )?);
    if max_retry_delay < first_retry_delay {
        return Err(invalid(
            "CALLBACK_MAX_RETRY_DELAY_SECONDS",
            "is shorter than CALLBACK_RETRY_DELAY_MS",
        ));
    }
    Ok(CallbackSettings {
        policy: CallbackPolicy::new(hosts),
        signing,
        max_attempts: v.number(
            "CALLBACK_MAX_ATTEMPTS",
            u64::from(defaults.max_attempts),
            1,
            100,
        )? as u32,
        first_retry_delay,
        max_retry_delay,
        max_age: Duration::from_secs(v.number(
            "CALLBACK_MAX_AGE_SECONDS",
            defaults.max_age.as_secs(),
            1,
            7 * 86_400,
        )?),
        timeout: Duration::from_secs(v.number(
            "CALLBACK_TIMEOUT_SECONDS",
            defaults.timeout.as_secs(),
            1,
            120,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<CallbackSettings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        callback_settings(&Vars(&map))
    }

    #[test]
    fn defaults_are_minutes_to_hours() {
        let s = read(&[]).unwrap();
        assert!(s.signing.is_empty());
        assert_eq!(s.max_attempts, 10);
        assert_eq!(s.first_retry_delay, Duration::from_secs(30));
        assert_eq!(s.max_age, Duration::from_secs(86_400));
    }

    #[test]
    fn bad_settings_name_themselves_and_never_the_secret() {
        let secret = "whsec_bm90LWxvbmctZW5vdWdo";
        for (name, value) in [
            (SIGNING_SECRET, secret),
            (SIGNING_SECRET, "plain-text"),
            ("CALLBACK_ALLOWED_HOSTS", "http://x/"),
            ("CALLBACK_MAX_ATTEMPTS", "0"),
            ("CALLBACK_TIMEOUT_SECONDS", "1000"),
        ] {
            let err = read(&[(name, value)]).unwrap_err();
            assert_eq!(err.setting, name, "{value}: {err}");
            assert!(!err.to_string().contains("bm90"), "{err}");
        }
        let err = read(&[(PREVIOUS_SIGNING_SECRET, secret)]).unwrap_err();
        assert_eq!(err.setting, PREVIOUS_SIGNING_SECRET);
    }
}
