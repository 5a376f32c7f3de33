//! Security settings, read once from the environment, with defaults per stage: a dev stage may
//! relax, production is strict.

use std::collections::HashMap;
use std::str::FromStr;

use ipnet::IpNet;

use crate::config::ConfigError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Dev,
    Staging,
    Production,
}

impl FromStr for Stage {
    type Err = ();

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" | "test" => Ok(Self::Dev),
            "staging" | "stage" => Ok(Self::Staging),
            "prod" | "production" => Ok(Self::Production),
            _ => Err(()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SecurityConfig {
    pub stage: Stage,
    /// Exact origins allowed by CORS; `*` only without credentials.
    pub cors_allowed_origins: Vec<String>,
    pub cors_allow_credentials: bool,
    /// Empty means every address may call.
    pub ip_allowlist: Vec<IpNet>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Requests per minute; 0 turns the limit off.
    pub rate_limit_per_ip: u32,
    pub rate_limit_per_user: u32,
    /// When set, sensitive routes need an `X-Manuel-Signature`.
    pub hmac_signing_key: Option<Vec<u8>>,
    /// The largest request body any route accepts, checked while reading.
    pub max_body_bytes: usize,
}

impl SecurityConfig {
    pub fn defaults(stage: Stage) -> Self {
        let (per_ip, per_user) = match stage {
            Stage::Dev => (6000, 3000),
            Stage::Staging => (600, 300),
            Stage::Production => (300, 120),
        };
        Self {
            stage,
            cors_allowed_origins: Vec::new(),
            cors_allow_credentials: false,
            ip_allowlist: Vec::new(),
            trusted_proxies: Vec::new(),
            rate_limit_per_ip: per_ip,
            rate_limit_per_user: per_user,
            hmac_signing_key: None,
            max_body_bytes: 36 * 1024 * 1024,
        }
    }

    /// Reads `STAGE`, `CORS_ALLOWED_ORIGINS`, `CORS_ALLOW_CREDENTIALS`, `IP_ALLOWLIST`,
    /// `TRUSTED_PROXIES`, `RATE_LIMIT_PER_IP_PER_MINUTE`, `RATE_LIMIT_PER_USER_PER_MINUTE`,
    /// `HMAC_SIGNING_KEY` and `MAX_REQUEST_BODY_BYTES`; anything unset takes the stage default.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = crate::config::Env::from_vars(vars.clone());
        let get = |name: &str| env.optional(name);
        let stage = match get("STAGE") {
            None => Stage::Dev,
            Some(value) => value.parse().map_err(|()| ConfigError {
                name: "STAGE",
                reason: "expected dev, staging or production".to_owned(),
            })?,
        };
        let mut config = Self::defaults(stage);
        if let Some(origins) = get("CORS_ALLOWED_ORIGINS") {
            config.cors_allowed_origins = list(origins).map(str::to_owned).collect();
        }
        config.cors_allow_credentials =
            env.flag("CORS_ALLOW_CREDENTIALS", config.cors_allow_credentials)?;
        for origin in &config.cors_allowed_origins {
            let valid = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/')
                    && origin.bytes().all(|b| b.is_ascii_graphic()));
            if !valid {
                return Err(ConfigError {
                    name: "CORS_ALLOWED_ORIGINS",
                    reason: format!("{origin:?} is not an origin like https://app.example.com"),
                });
            }
        }
        if config.cors_allowed_origins.iter().any(|o| o == "*")
            && (config.cors_allow_credentials || stage == Stage::Production)
        {
            return Err(ConfigError {
                name: "CORS_ALLOWED_ORIGINS",
                reason: "`*` is not allowed with credentials or in production; list the origins"
                    .to_owned(),
            });
        }
        if let Some(value) = get("IP_ALLOWLIST") {
            config.ip_allowlist = parse_nets("IP_ALLOWLIST", value)?;
        }
        if let Some(value) = get("TRUSTED_PROXIES") {
            config.trusted_proxies = parse_nets("TRUSTED_PROXIES", value)?;
        }
        config.rate_limit_per_ip =
            env.parsed_or("RATE_LIMIT_PER_IP_PER_MINUTE", config.rate_limit_per_ip)?;
        config.rate_limit_per_user =
            env.parsed_or("RATE_LIMIT_PER_USER_PER_MINUTE", config.rate_limit_per_user)?;
        config.max_body_bytes = env.parsed_or("MAX_REQUEST_BODY_BYTES", config.max_body_bytes)?;
        if let Some(key) = get("HMAC_SIGNING_KEY") {
            if key.len() < 32 {
                return Err(ConfigError {
                    name: "HMAC_SIGNING_KEY",
                    reason: "must be at least 32 characters".to_owned(),
                });
            }
            config.hmac_signing_key = Some(key.as_bytes().to_vec());
        }
        Ok(config)
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn parse_nets(name: &'static str, value: &str) -> Result<Vec<IpNet>, ConfigError> {
    list(value)
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError {
                    name,
                    reason: format!("{item:?} is not an IP address or CIDR"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn stages_set_defaults_and_variables_override_them() {
        let dev = SecurityConfig::from_vars(&vars(&[])).map_err(|e| e.to_string());
        assert_eq!(dev.as_ref().map(|c| c.stage), Ok(Stage::Dev));
        let prod = SecurityConfig::from_vars(&vars(&[
            ("STAGE", "production"),
            ("RATE_LIMIT_PER_USER_PER_MINUTE", "7"),
        ]));
        assert_eq!(
            prod.as_ref()
                .map(|c| (c.rate_limit_per_ip, c.rate_limit_per_user)),
            Ok((300, 7))
        );
        let nets = SecurityConfig::from_vars(&vars(&[(
            "IP_ALLOWLIST",
            "10.0.0.0/8, 2001:db8::/32,192.0.2.7",
        )]));
        assert_eq!(nets.map(|c| c.ip_allowlist.len()), Ok(3));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("STAGE", "moon"),
            ("IP_ALLOWLIST", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "nope"),
            ("RATE_LIMIT_PER_IP_PER_MINUTE", "-1"),
            ("CORS_ALLOWED_ORIGINS", "app.example.com"),
            ("CORS_ALLOW_CREDENTIALS", "maybe"),
            ("HMAC_SIGNING_KEY", "short"),
        ] {
            let error = SecurityConfig::from_vars(&vars(&[(name, value)])).err();
            assert_eq!(error.map(|e| e.name), Some(name), "{name}={value}");
        }
        let wildcard_with_credentials = SecurityConfig::from_vars(&vars(&[
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOW_CREDENTIALS", "true"),
        ]));
        assert!(wildcard_with_credentials.is_err());
        let wildcard_in_production =
            SecurityConfig::from_vars(&vars(&[("CORS_ALLOWED_ORIGINS", "*"), ("STAGE", "prod")]));
        assert!(wildcard_in_production.is_err());
    }
}
