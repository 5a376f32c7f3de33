//! A circuit breaker for one dependency: closed → open after `failure_threshold` failed calls
//! within `window` → half-open after `cooldown`, letting a single probe through → closed after
//! `success_threshold` successful probes in a row (a failed probe opens it again).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ConfigError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            success_threshold: 2,
        }
    }
}

impl BreakerConfig {
    /// `CIRCUIT_FAILURE_THRESHOLD` (5), `CIRCUIT_FAILURE_WINDOW_SECONDS` (60),
    /// `CIRCUIT_COOLDOWN_SECONDS` (30), `CIRCUIT_SUCCESS_THRESHOLD` (2).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let env = crate::config::Env::from_vars(vars.clone());
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            env.number_in(name, default, 1..=u64::MAX)
        };
        let count = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            number(name, u64::from(default)).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        Ok(Self {
            failure_threshold: count("CIRCUIT_FAILURE_THRESHOLD", defaults.failure_threshold)?,
            window: Duration::from_secs(number(
                "CIRCUIT_FAILURE_WINDOW_SECONDS",
                defaults.window.as_secs(),
            )?),
            cooldown: Duration::from_secs(number(
                "CIRCUIT_COOLDOWN_SECONDS",
                defaults.cooldown.as_secs(),
            )?),
            success_threshold: count("CIRCUIT_SUCCESS_THRESHOLD", defaults.success_threshold)?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What a caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Call the dependency and report the outcome.
    Call,
    /// Do not call it; try again after this long.
    Refused { retry_after: Duration },
}

/// What changed when an outcome was reported (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

/// A point-in-time view for the deep health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub recent_failures: u32,
    pub retry_after: Option<Duration>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: VecDeque<Instant>,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    probe_successes: u32,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: VecDeque::new(),
                opened_at: None,
                probe_in_flight: false,
                probe_successes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves counters only; they are still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn permit(&self, now: Instant) -> Permit {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Permit::Call,
            BreakerState::Open => {
                let opened = inner.opened_at.unwrap_or(now);
                let elapsed = now.saturating_duration_since(opened);
                if elapsed >= self.config.cooldown {
                    inner.state = BreakerState::HalfOpen;
                    inner.probe_in_flight = true;
                    inner.probe_successes = 0;
                    Permit::Call
                } else {
                    Permit::Refused {
                        retry_after: self.config.cooldown - elapsed,
                    }
                }
            }
            BreakerState::HalfOpen if inner.probe_in_flight => Permit::Refused {
                retry_after: Duration::from_secs(1),
            },
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                Permit::Call
            }
        }
    }

    pub fn record_success(&self) -> Transition {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::HalfOpen => {
                inner.probe_in_flight = false;
                inner.probe_successes += 1;
                if inner.probe_successes >= self.config.success_threshold {
                    inner.state = BreakerState::Closed;
                    inner.failures.clear();
                    inner.opened_at = None;
                    return Transition::Closed;
                }
                Transition::None
            }
            BreakerState::Closed | BreakerState::Open => Transition::None,
        }
    }

    pub fn record_failure(&self, now: Instant) -> Transition {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::HalfOpen => {
                inner.probe_in_flight = false;
                inner.state = BreakerState::Open;
                inner.opened_at = Some(now);
                Transition::Opened
            }
            BreakerState::Open => Transition::None,
            BreakerState::Closed => {
                inner.failures.push_back(now);
                let window = self.config.window;
                while inner
                    .failures
                    .front()
                    .is_some_and(|first| now.saturating_duration_since(*first) > window)
                {
                    inner.failures.pop_front();
                }
                if inner.failures.len() >= self.config.failure_threshold as usize {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(now);
                    inner.failures.clear();
                    return Transition::Opened;
                }
                Transition::None
            }
        }
    }

    /// A call that was let through but ended without telling anything about the dependency
    /// (our own error): a half-open probe slot is given back.
    pub fn record_neutral(&self) {
        let mut inner = self.lock();
        if inner.state == BreakerState::HalfOpen {
            inner.probe_in_flight = false;
        }
    }

    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let inner = self.lock();
        let retry_after = match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(opened)) => Some(
                self.config
                    .cooldown
                    .saturating_sub(now.saturating_duration_since(opened)),
            ),
            _ => None,
        };
        BreakerSnapshot {
            state: inner.state,
            recent_failures: u32::try_from(inner.failures.len()).unwrap_or(u32::MAX),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            success_threshold: 2,
        })
    }

    #[test]
    fn opens_after_enough_failures_within_the_window_only() {
        let b = breaker();
        let t0 = Instant::now();
        // Failures spread wider than the window never add up.
        for n in 0..5 {
            assert_eq!(
                b.record_failure(t0 + Duration::from_secs(11 * n)),
                Transition::None
            );
        }
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(b.record_failure(t1), Transition::None);
        assert_eq!(
            b.record_failure(t1 + Duration::from_secs(1)),
            Transition::None
        );
        assert_eq!(
            b.record_failure(t1 + Duration::from_secs(2)),
            Transition::Opened
        );
        assert_eq!(
            b.permit(t1 + Duration::from_secs(3)),
            Permit::Refused {
                retry_after: Duration::from_secs(4)
            }
        );
        assert_eq!(
            b.snapshot(t1 + Duration::from_secs(3)).state,
            BreakerState::Open
        );
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_after_enough_successes() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.permit(later), Permit::Call);
        assert!(
            matches!(b.permit(later), Permit::Refused { .. }),
            "one probe at a time"
        );
        assert_eq!(b.record_success(), Transition::None);
        assert_eq!(b.snapshot(later).state, BreakerState::HalfOpen);
        assert_eq!(b.permit(later), Permit::Call);
        assert_eq!(b.record_success(), Transition::Closed);
        assert_eq!(b.permit(later), Permit::Call);
        assert_eq!(b.snapshot(later).state, BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_full_cooldown() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let probe = t0 + Duration::from_secs(6);
        assert_eq!(b.permit(probe), Permit::Call);
        assert_eq!(b.record_failure(probe), Transition::Opened);
        assert_eq!(
            b.permit(probe + Duration::from_secs(1)),
            Permit::Refused {
                retry_after: Duration::from_secs(4)
            }
        );
    }

    #[test]
    fn settings_are_read_and_checked() {
        let vars = HashMap::from([
            ("CIRCUIT_COOLDOWN_SECONDS".to_owned(), "2".to_owned()),
            ("CIRCUIT_FAILURE_THRESHOLD".to_owned(), "4".to_owned()),
        ]);
        let config = BreakerConfig::from_vars(&vars).unwrap();
        assert_eq!(config.cooldown, Duration::from_secs(2));
        assert_eq!(config.failure_threshold, 4);
        assert_eq!(config.success_threshold, 2);
        let bad = HashMap::from([("CIRCUIT_SUCCESS_THRESHOLD".to_owned(), "0".to_owned())]);
        assert_eq!(
            BreakerConfig::from_vars(&bad).err().map(|e| e.name),
            Some("CIRCUIT_SUCCESS_THRESHOLD")
        );
    }
}
