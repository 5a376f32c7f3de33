//! Retry policies: exponential, linear or fixed backoff, each with jitter, per dependency.
//! Only transient failures ([`PortError::Transient`]: throttling, 5xx, timeouts) are retried,
//! and never past the invocation's deadline.

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

use crate::PortError;
use crate::config::ConfigError;

/// How the pause grows between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// `base × 2^(n-1)`.
    Exponential,
    /// `base × n`.
    Linear,
    /// `base` every time.
    Fixed,
}

impl Backoff {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "exponential" => Some(Self::Exponential),
            "linear" => Some(Self::Linear),
            "fixed" => Some(Self::Fixed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exponential => "exponential",
            Self::Linear => "linear",
            Self::Fixed => "fixed",
        }
    }
}

/// How often and how patiently one dependency is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const fn new(
        backoff: Backoff,
        max_attempts: u32,
        base_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        Self {
            backoff,
            max_attempts,
            base_delay,
            max_delay,
        }
    }

    /// The pause before retry number `retry` (1 for the first retry), before jitter.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        let delay = match self.backoff {
            Backoff::Exponential => self
                .base_delay
                .saturating_mul(2u32.saturating_pow(retry - 1)),
            Backoff::Linear => self.base_delay.saturating_mul(retry),
            Backoff::Fixed => self.base_delay,
        };
        delay.min(self.max_delay)
    }

    /// The pause actually taken: "equal jitter", half the nominal delay plus a random share of
    /// the other half, so concurrent callers spread out without any retrying at once.
    pub fn delay(&self, retry: u32) -> Duration {
        let nominal = self.nominal_delay(retry);
        let half = nominal / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(rand::thread_rng().gen_range(0..=spread))
    }

    /// Reads `<strategy>:<attempts>:<base ms>:<max ms>`, e.g. `exponential:3:200:2000`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split(':');
        let backoff = Backoff::parse(parts.next()?.trim())?;
        let max_attempts: u32 = parts.next()?.trim().parse().ok()?;
        let base: u64 = parts.next()?.trim().parse().ok()?;
        let max: u64 = parts.next()?.trim().parse().ok()?;
        if parts.next().is_some() || !(1..=10).contains(&max_attempts) || base > max {
            return None;
        }
        Some(Self::new(
            backoff,
            max_attempts,
            Duration::from_millis(base),
            Duration::from_millis(max),
        ))
    }
}

/// The dependencies with their own retry settings, as named in metrics and `RETRY_<NAME>`.
pub const RETRIED_DEPENDENCIES: [&str; 4] = ["bedrock", "dynamodb", "s3", "transcribe"];

/// The default policy per dependency: Bedrock throttles under load and recovers in seconds;
/// DynamoDB and S3 errors clear within milliseconds; a Transcribe call is slow anyway.
pub fn default_policy(dependency: &str) -> RetryPolicy {
    let ms = Duration::from_millis;
    match dependency {
        "bedrock" => RetryPolicy::new(Backoff::Exponential, 3, ms(200), ms(2000)),
        "dynamodb" => RetryPolicy::new(Backoff::Exponential, 3, ms(25), ms(500)),
        "s3" => RetryPolicy::new(Backoff::Exponential, 3, ms(50), ms(1000)),
        "transcribe" => RetryPolicy::new(Backoff::Linear, 3, ms(250), ms(1000)),
        _ => RetryPolicy::new(Backoff::Fixed, 1, ms(0), ms(0)),
    }
}

/// Each dependency's policy: the default, or `RETRY_<NAME>` (`RETRY_BEDROCK=linear:4:100:1000`).
pub fn policies_from_vars(
    vars: &HashMap<String, String>,
) -> Result<HashMap<&'static str, RetryPolicy>, ConfigError> {
    let env = crate::config::Env::from_vars(vars.clone());
    let mut policies = HashMap::new();
    for dependency in RETRIED_DEPENDENCIES {
        let name = retry_variable(dependency);
        let policy = match env.optional(name) {
            None => default_policy(dependency),
            Some(value) => RetryPolicy::parse(value).ok_or_else(|| ConfigError {
                name,
                reason: format!(
                    "{value:?} is not <exponential|linear|fixed>:<attempts 1-10>:<base ms>:<max ms>"
                ),
            })?,
        };
        policies.insert(dependency, policy);
    }
    Ok(policies)
}

fn retry_variable(dependency: &str) -> &'static str {
    match dependency {
        "bedrock" => "RETRY_BEDROCK",
        "dynamodb" => "RETRY_DYNAMODB",
        "s3" => "RETRY_S3",
        _ => "RETRY_TRANSCRIBE",
    }
}

/// Whether a failure is worth another attempt.
pub fn is_retryable(error: &PortError) -> bool {
    matches!(error, PortError::Transient { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backoff_grows_as_named_and_is_capped() {
        let ms = Duration::from_millis;
        let exponential = RetryPolicy::new(Backoff::Exponential, 5, ms(100), ms(500));
        let delays: Vec<_> = (1..=5).map(|n| exponential.nominal_delay(n)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        let linear = RetryPolicy::new(Backoff::Linear, 5, ms(100), ms(250));
        let delays: Vec<_> = (1..=4).map(|n| linear.nominal_delay(n)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(250), ms(250)]);
        let fixed = RetryPolicy::new(Backoff::Fixed, 5, ms(70), ms(500));
        assert_eq!(fixed.nominal_delay(4), ms(70));
        // Huge retry numbers saturate instead of overflowing.
        assert_eq!(exponential.nominal_delay(u32::MAX), ms(500));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_nominal_delay() {
        let policy = RetryPolicy::new(
            Backoff::Exponential,
            3,
            Duration::from_millis(200),
            Duration::from_secs(2),
        );
        let delays: Vec<Duration> = (0..200).map(|_| policy.delay(2)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "jitter spreads the delays");
    }

    #[test]
    fn policies_come_from_settings_and_bad_ones_name_the_variable() {
        let vars = HashMap::from([("RETRY_BEDROCK".to_owned(), "linear:4:100:900".to_owned())]);
        let policies = policies_from_vars(&vars).unwrap_or_default();
        assert_eq!(
            policies.get("bedrock"),
            Some(&RetryPolicy::new(
                Backoff::Linear,
                4,
                Duration::from_millis(100),
                Duration::from_millis(900)
            ))
        );
        assert_eq!(policies.get("s3"), Some(&default_policy("s3")));
        for bad in [
            "sometimes:3:1:2",
            "fixed:0:1:2",
            "fixed:3:10:1",
            "fixed:3:1",
            "fixed:3:1:2:3",
        ] {
            let vars = HashMap::from([("RETRY_DYNAMODB".to_owned(), bad.to_owned())]);
            let error = policies_from_vars(&vars).err().map(|e| e.name);
            assert_eq!(error, Some("RETRY_DYNAMODB"), "{bad}");
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(is_retryable(&PortError::Transient {
            service: "bedrock",
            message: "ThrottlingException".to_owned()
        }));
        assert!(!is_retryable(&PortError::Unavailable {
            service: "bedrock",
            message: "AccessDeniedException".to_owned()
        }));
        assert!(!is_retryable(&PortError::failed("bad request")));
    }
}
