//! Charging a request against the user's quota: a place reserved before the paid work starts
//! ([`Charge::reserve`]), then either committed with what the work used and cost
//! ([`Charge::commit`]) or given back ([`Charge::refund`]). A charge dropped unsettled (the
//! work failed with an early return, or the request was cancelled because the client went
//! away) is refunded in the background, so no path can keep a place nobody was served for.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::ApiError;
use crate::domain::UserId;
use crate::ports::UsageStore;
use crate::usage::{CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation, UsageNumbers};

/// One reserved place in a user's daily and monthly quota.
pub struct Charge {
    usage: Arc<dyn UsageStore>,
    user: UserId,
    at: DateTime<Utc>,
    operation: Operation,
    numbers: UsageNumbers,
    settled: bool,
}

impl Charge {
    /// Reserves one `operation` for `user` in the windows of `at`; a full quota is the 429 the
    /// client sees ([`UsageNumbers::refusal`]).
    pub async fn reserve(
        usage: &Arc<dyn UsageStore>,
        user: &UserId,
        quota: QuotaLimits,
        at: DateTime<Utc>,
        operation: Operation,
    ) -> Result<Self, ApiError> {
        let windows = QuotaWindows::at(at);
        match usage.reserve(user, &windows, quota, operation).await? {
            Reservation::Granted(numbers) => Ok(Self {
                usage: Arc::clone(usage),
                user: user.clone(),
                at,
                operation,
                numbers,
                settled: false,
            }),
            Reservation::Refused(numbers) => Err(numbers.refusal(&windows)),
        }
    }

    /// When the place was reserved: the moment its cost is dated and its windows counted.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The counters with this place counted.
    pub fn numbers(&self) -> UsageNumbers {
        self.numbers
    }

    /// Keeps the place and records `cost`, what the work used. The work is done and counted
    /// by then: a cost that cannot be stored is logged, not turned into a failed request.
    pub async fn commit(mut self, cost: &CostRecord) -> UsageNumbers {
        self.settled = true;
        if let Err(error) = self.usage.record_cost(&self.user, cost).await {
            tracing::error!(%error, operation = cost.operation.as_str(), "could not record a cost");
        }
        self.numbers
    }

    /// Keeps the place without a cost record: the request was served nothing billable, but
    /// its attempt counts (a question refused for what the client sent).
    pub fn keep(mut self) -> UsageNumbers {
        self.settled = true;
        self.numbers
    }

    /// Gives the place back now.
    pub async fn refund(mut self) {
        self.settled = true;
        refund(self.usage.as_ref(), &self.user, &QuotaWindows::at(self.at)).await;
    }
}

async fn refund(usage: &dyn UsageStore, user: &UserId, windows: &QuotaWindows) {
    if let Err(error) = usage.refund(user, windows).await {
        tracing::error!(%error, "could not refund a quota reservation");
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (usage, user) = (Arc::clone(&self.usage), self.user.clone());
        let windows = QuotaWindows::at(self.at);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { refund(usage.as_ref(), &user, &windows).await });
            }
            Err(_) => {
                tracing::error!("a quota reservation was dropped outside a runtime: not refunded")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::PortError;
    use crate::ports::UsageState;
    use crate::usage::{Metered, Pricing};

    /// Counts reservations, refunds and cost records, against one daily limit.
    #[derive(Default)]
    struct Counter {
        used: Mutex<u64>,
        costs: Mutex<Vec<CostRecord>>,
    }

    #[async_trait]
    impl UsageStore for Counter {
        async fn reserve(
            &self,
            _: &UserId,
            _: &QuotaWindows,
            limits: QuotaLimits,
            _: Operation,
        ) -> Result<Reservation, PortError> {
            let mut used = self.used.lock().map_err(PortError::failed)?;
            let numbers = |used| UsageNumbers {
                daily_used: used,
                daily_limit: limits.daily,
                monthly_used: used,
                monthly_limit: limits.monthly,
            };
            if *used >= limits.daily {
                return Ok(Reservation::Refused(numbers(*used)));
            }
            *used += 1;
            Ok(Reservation::Granted(numbers(*used)))
        }
        async fn refund(&self, _: &UserId, _: &QuotaWindows) -> Result<(), PortError> {
            *self.used.lock().map_err(PortError::failed)? -= 1;
            Ok(())
        }
        async fn usage(
            &self,
            _: &UserId,
            _: &QuotaWindows,
            _: QuotaLimits,
        ) -> Result<UsageState, PortError> {
            Err(PortError::failed("not used here"))
        }
        async fn daily_counts(&self, _: &UserId, _: &[String]) -> Result<Vec<u64>, PortError> {
            Ok(Vec::new())
        }
        async fn record_cost(&self, _: &UserId, record: &CostRecord) -> Result<(), PortError> {
            self.costs
                .lock()
                .map_err(PortError::failed)?
                .push(record.clone());
            Ok(())
        }
        async fn costs_since(
            &self,
            _: &UserId,
            _: DateTime<Utc>,
        ) -> Result<Vec<CostRecord>, PortError> {
            Ok(Vec::new())
        }
        async fn erase(&self, _: &UserId, _: &QuotaWindows) -> Result<u64, PortError> {
            Ok(0)
        }
    }

    const QUOTA: QuotaLimits = QuotaLimits {
        daily: 2,
        monthly: 10,
    };

    fn used(counter: &Counter) -> u64 {
        *counter
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn reserve(store: &Arc<dyn UsageStore>) -> Result<Charge, ApiError> {
        let alice = UserId::parse("alice").ok_or_else(|| ApiError::internal("user"))?;
        Charge::reserve(store, &alice, QUOTA, Utc::now(), Operation::Query).await
    }

    #[tokio::test]
    async fn a_committed_charge_keeps_its_place_and_records_its_cost() {
        let counter = Arc::new(Counter::default());
        let store: Arc<dyn UsageStore> = counter.clone();
        let charge = reserve(&store).await.unwrap();
        assert_eq!(charge.numbers().daily_used, 1);
        let used_now = Metered {
            input_tokens: 321,
            output_tokens: 12,
            ..Metered::default()
        };
        let cost = Pricing::free().cost("r-1", charge.at(), charge.operation(), "m", used_now);
        let numbers = charge.commit(&cost).await;
        assert_eq!(numbers.daily_used, 1);
        assert_eq!(used(&counter), 1);
        let costs = counter.costs.lock().unwrap().clone();
        assert_eq!(costs.len(), 1);
        assert_eq!((costs[0].input_tokens, costs[0].output_tokens), (321, 12));
    }

    #[tokio::test]
    async fn a_refunded_or_dropped_charge_gives_its_place_back_and_a_full_quota_is_a_429() {
        let counter = Arc::new(Counter::default());
        let store: Arc<dyn UsageStore> = counter.clone();
        reserve(&store).await.unwrap().refund().await;
        assert_eq!(used(&counter), 0);

        // Dropped unsettled, as when the client goes away mid-answer: refunded in the background.
        drop(reserve(&store).await.unwrap());
        for _ in 0..100 {
            if used(&counter) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(used(&counter), 0, "a dropped charge was not refunded");

        let kept = (
            reserve(&store).await.unwrap(),
            reserve(&store).await.unwrap(),
        );
        assert_eq!(kept.1.keep().daily_used, 2);
        kept.0.keep();
        let refused = reserve(&store)
            .await
            .err()
            .map(|error| error.status().as_u16());
        assert_eq!(refused, Some(429));
        assert!(
            counter.costs.lock().unwrap().is_empty(),
            "nothing was billed"
        );
    }
}
