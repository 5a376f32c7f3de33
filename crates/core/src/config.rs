//! Configuration from the environment, for the Lambda functions and manuel-local alike: the
//! variables read once ([`Env`]), each getter naming the variable in its error
//! ([`ConfigError`]). Each policy module reads its own section (`from_env`) through it.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// A variable that is set to something unusable, or missing when required.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("configuration variable {name} is not valid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars().collect())
    }

    pub fn from_vars(vars: HashMap<String, String>) -> Self {
        Self { vars }
    }

    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// The trimmed value, `None` when unset or empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError {
                name,
                reason: "it is required but not set".to_owned(),
            })
    }

    /// The parsed value, or `default` when unset.
    pub fn parsed_or<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| ConfigError {
                name,
                reason: format!("{value:?} is not a valid value"),
            }),
        }
    }

    /// A whole number within `range`, or `default` when unset.
    pub fn number_in(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value
                .parse::<u64>()
                .ok()
                .filter(|number| range.contains(number))
                .ok_or_else(|| ConfigError {
                    name,
                    reason: format!(
                        "{value:?} is not a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                }),
        }
    }

    /// `true`/`1`/`yes` or `false`/`0`/`no` (any case), or `default` when unset.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError {
                name,
                reason: format!("{other:?} is not true or false"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn errors_name_the_variable() {
        let env = env(&[("BEDROCK_MAX_TOKENS", "lots"), ("EMPTY", "  ")]);
        let missing = env.required("MANUALS_TABLE").unwrap_err().to_string();
        assert!(
            missing.contains("MANUALS_TABLE") && missing.contains("not set"),
            "{missing}"
        );
        assert!(env.required("EMPTY").is_err());
        let bad = env
            .parsed_or("BEDROCK_MAX_TOKENS", 800_i32)
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("BEDROCK_MAX_TOKENS") && bad.contains("lots"),
            "{bad}"
        );
        assert_eq!(env.parsed_or("RETRIEVAL_RESULTS", 8_usize), Ok(8));
        assert_eq!(env.flag("S3_FORCE_PATH_STYLE", false), Ok(false));
    }

    #[test]
    fn numbers_outside_their_range_are_refused_with_the_range() {
        let env = env(&[
            ("IDEMPOTENCY_TTL_SECONDS", "5"),
            ("MAX_AUDIO_BYTES", "2048"),
        ]);
        let error = env
            .number_in("IDEMPOTENCY_TTL_SECONDS", 3600, 60..=86_400)
            .unwrap_err();
        assert_eq!(error.name, "IDEMPOTENCY_TTL_SECONDS");
        assert!(error.reason.contains("from 60 to 86400"), "{error}");
        assert_eq!(env.number_in("MAX_AUDIO_BYTES", 1, 1024..=4096), Ok(2048));
        assert_eq!(env.number_in("UNSET", 7, 1..=10), Ok(7));
    }
}
