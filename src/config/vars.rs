//! Reading settings by name: whole numbers in a range, flags, storage names, prefixes; an
//! empty value counts as unset, and every refusal names the setting.

use std::collections::HashMap;

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

pub fn invalid(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        problem: problem.into(),
    }
}

/// Settings looked up by name; an empty value counts as unset.
pub struct Vars<'a>(pub &'a HashMap<String, String>);

impl Vars<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// The names of the set settings that start with `prefix` (case-insensitively, as App
    /// Service treats setting names), sorted.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter(|k| {
                k.len() > prefix.len()
                    && k.is_char_boundary(prefix.len())
                    && k[..prefix.len()].eq_ignore_ascii_case(prefix)
                    && self.get(k).is_some()
            })
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn number(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(s) = self.get(name) else {
            return Ok(default);
        };
        let n: u64 = s
            .parse()
            .map_err(|_| invalid(name, format!("`{s}` is not a whole number")))?;
        if n < min || n > max {
            return Err(invalid(name, format!("{n} is outside {min}..={max}")));
        }
        Ok(n)
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(invalid(name, format!("`{other}` is not true or false"))),
        }
    }

    /// An Azure Storage queue or container name: 3 to `max` lower-case letters, digits and
    /// single hyphens, starting and ending with a letter or digit.
    pub fn name(&self, name: &str, default: &str, max: usize) -> Result<String, ConfigError> {
        let Some(s) = self.get(name) else {
            return Ok(default.to_string());
        };
        let ok = (3..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if !ok {
            return Err(invalid(
                name,
                format!("`{s}` is not a valid storage name (3-{max} lower-case letters, digits, single hyphens)"),
            ));
        }
        Ok(s.to_string())
    }
}
