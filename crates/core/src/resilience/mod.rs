//! Resilience around every remote dependency: retries with backoff for transient failures
//! ([`retry`]) inside a circuit breaker per dependency ([`breaker`]), applied to the ports by
//! decorators ([`guarded`]). Adapters only classify their failures (`PortError::Transient`
//! for throttling, 5xx and timeouts); the AWS SDK's own retries are off, so the two never
//! multiply.

pub mod breaker;
pub mod guarded;
pub mod retry;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::PortError;
use crate::config::ConfigError;
use crate::deadline;
use crate::telemetry::{self, Metric};

pub use breaker::{BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker};
pub use retry::{Backoff, RetryPolicy};

use breaker::{Permit, Transition};

/// Time kept back from the invocation's deadline for answering: no retry starts unless its pause
/// and another attempt as long as the last one fit before `deadline − margin`.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// One remote dependency: its retry policy and its circuit breaker.
#[derive(Debug)]
pub struct Dependency {
    name: &'static str,
    policy: RetryPolicy,
    breaker: CircuitBreaker,
}

impl Dependency {
    pub fn new(name: &'static str, policy: RetryPolicy, breaker: BreakerConfig) -> Self {
        Self {
            name,
            policy,
            breaker: CircuitBreaker::new(breaker),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs `operation` under the breaker, retrying transient failures per the policy. While the
    /// breaker is open the dependency is not called: `PortError::CircuitOpen` says when to retry.
    pub async fn call<T, F, Fut>(&self, mut operation: F) -> Result<T, PortError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PortError>>,
    {
        if let Permit::Refused { retry_after } = self.breaker.permit(Instant::now()) {
            return Err(PortError::CircuitOpen {
                service: self.name,
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let error = match operation().await {
                Ok(value) => {
                    self.note(self.breaker.record_success());
                    return Ok(value);
                }
                Err(error) => error,
            };
            if retry::is_retryable(&error) && attempt < self.policy.max_attempts {
                let pause = self.policy.delay(attempt);
                if fits_before_deadline(pause + started.elapsed()) {
                    telemetry::record_dependency(Metric::DependencyRetries, self.name, 1.0);
                    tracing::info!(dependency = self.name, attempt, pause_ms = pause.as_millis() as u64, %error, "retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                    continue;
                }
            }
            match error {
                PortError::Transient { .. } | PortError::Unavailable { .. } => {
                    self.note(self.breaker.record_failure(Instant::now()));
                }
                PortError::Failed(_)
                | PortError::Rejected { .. }
                | PortError::CircuitOpen { .. } => {
                    self.breaker.record_neutral();
                }
            }
            return Err(error);
        }
    }

    fn note(&self, transition: Transition) {
        match transition {
            Transition::Opened => {
                telemetry::record_dependency(Metric::CircuitOpened, self.name, 1.0);
                tracing::warn!(dependency = self.name, "circuit opened");
            }
            Transition::Closed => tracing::info!(dependency = self.name, "circuit closed"),
            Transition::None => {}
        }
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        self.breaker.snapshot(Instant::now())
    }
}

fn fits_before_deadline(needed: Duration) -> bool {
    deadline::leaves_time_for(needed, DEADLINE_MARGIN)
}

/// The dependencies of one process (a Lambda container or manuel-local), by the names metrics
/// use: each with the retry policy of its service and its own breaker.
#[derive(Debug)]
pub struct Resilience {
    dependencies: BTreeMap<&'static str, Arc<Dependency>>,
}

/// Which service's retry policy a dependency follows.
fn policy_family(dependency: &str) -> &str {
    if dependency.starts_with("bedrock") {
        "bedrock"
    } else {
        dependency
    }
}

impl Resilience {
    pub fn new(policies: &HashMap<&'static str, RetryPolicy>, breaker: BreakerConfig) -> Self {
        let dependencies = GUARDED_DEPENDENCIES
            .iter()
            .map(|name| {
                let family = policy_family(name);
                let policy = policies
                    .get(family)
                    .copied()
                    .unwrap_or_else(|| retry::default_policy(family));
                (*name, Arc::new(Dependency::new(name, policy, breaker)))
            })
            .collect();
        Self { dependencies }
    }

    /// No remote dependencies to guard (manuel-local's components are all in-process).
    pub fn none() -> Self {
        Self {
            dependencies: BTreeMap::new(),
        }
    }

    /// `RETRY_<SERVICE>` and `CIRCUIT_*` settings (see [`retry`] and [`BreakerConfig`]).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Ok(Self::new(
            &retry::policies_from_vars(vars)?,
            BreakerConfig::from_vars(vars)?,
        ))
    }

    /// The dependency by its metric name; an unknown name gets a breaker of its own, never
    /// shared and never retried (a programming slip must not share state by accident).
    pub fn dependency(&self, name: &'static str) -> Arc<Dependency> {
        self.dependencies.get(name).cloned().unwrap_or_else(|| {
            Arc::new(Dependency::new(
                name,
                retry::default_policy(name),
                BreakerConfig::default(),
            ))
        })
    }

    /// Every dependency's breaker, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, BreakerSnapshot)> {
        self.dependencies
            .iter()
            .map(|(name, dependency)| (*name, dependency.snapshot()))
            .collect()
    }
}

/// The dependencies guarded by a breaker (the `Dependency` metric values they report under).
pub const GUARDED_DEPENDENCIES: &[&str] = &[
    "bedrock-retrieve",
    "bedrock-converse",
    "bedrock-ingestion",
    "dynamodb",
    "s3",
    "transcribe",
];

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::SystemTime;

    use super::*;
    use crate::deadline::Deadline;

    fn transient() -> PortError {
        PortError::Transient {
            service: "bedrock-converse",
            message: "ThrottlingException".to_owned(),
        }
    }

    fn quick(attempts: u32) -> Dependency {
        Dependency::new(
            "bedrock-converse",
            RetryPolicy::new(
                Backoff::Fixed,
                attempts,
                Duration::from_millis(1),
                Duration::from_millis(1),
            ),
            BreakerConfig {
                failure_threshold: 2,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(60),
                success_threshold: 1,
            },
        )
    }

    #[tokio::test]
    async fn throttling_that_clears_is_retried_to_success() {
        let dependency = quick(3);
        let calls = AtomicU32::new(0);
        let result = dependency
            .call(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(transient()),
                    _ => Ok("answer"),
                }
            })
            .await;
        assert_eq!(result.ok(), Some("answer"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(dependency.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_our_own_do_not_trip_the_breaker() {
        let dependency = quick(3);
        let calls = AtomicU32::new(0);
        for _ in 0..3 {
            let _ = dependency
                .call(|| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(PortError::failed("our bug"))
                })
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one call each, no retries");
        assert_eq!(dependency.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test]
    async fn persistent_failure_opens_the_breaker_and_stops_calling() {
        let dependency = quick(2);
        let calls = AtomicU32::new(0);
        for _ in 0..2 {
            let result = dependency
                .call(|| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(transient())
                })
                .await;
            assert!(matches!(result, Err(PortError::Transient { .. })));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let refused = dependency
            .call(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
        match refused {
            Err(PortError::CircuitOpen {
                service,
                retry_after_secs,
            }) => {
                assert_eq!(service, "bedrock-converse");
                assert!((59..=60).contains(&retry_after_secs));
            }
            other => panic!("expected an open circuit, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4, "not called while open");
    }

    #[tokio::test]
    async fn no_retry_starts_that_would_outlive_the_deadline() {
        let dependency = Dependency::new(
            "bedrock-converse",
            RetryPolicy::new(
                Backoff::Fixed,
                5,
                Duration::from_millis(800),
                Duration::from_millis(800),
            ),
            BreakerConfig::default(),
        );
        let calls = AtomicU32::new(0);
        let soon = Deadline(SystemTime::now() + Duration::from_millis(1200));
        let started = Instant::now();
        let result = deadline::within(Some(soon), async {
            dependency
                .call(|| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(transient())
                })
                .await
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
