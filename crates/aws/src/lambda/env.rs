//! The process environment, read once; every getter names the variable in its error.

use std::collections::HashMap;
use std::str::FromStr;

use manuel_core::security::ConfigError;

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
}
