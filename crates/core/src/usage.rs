//! Quotas and cost accounting: the windows a reservation counts in, the usage numbers clients
//! see, and prices for the quantities a request used.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;

/// What gets counted against a user's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Query,
    Transcribe,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Transcribe => "transcribe",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "query" => Some(Self::Query),
            "transcribe" => Some(Self::Transcribe),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLimits {
    pub daily: u64,
    pub monthly: u64,
}

impl QuotaLimits {
    /// `DAILY_QUOTA_LIMIT` and `MONTHLY_QUOTA_LIMIT`, 50 and 1000 when unset.
    pub fn from_vars(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let env = crate::config::Env::from_vars(vars.clone());
        Ok(Self {
            daily: env.parsed_or("DAILY_QUOTA_LIMIT", 50)?,
            monthly: env.parsed_or("MONTHLY_QUOTA_LIMIT", 1000)?,
        })
    }
}

/// Whose quota counters these are: the user id's hash ([`crate::telemetry::user_hash`]), not
/// the id. Erasing a user's data keeps the counters of the current day and month (so erasing
/// does not reset the quota), and what is kept names no one.
pub fn quota_owner(user: &crate::domain::UserId) -> String {
    format!("quota#{}", crate::telemetry::user_hash(user))
}

/// The UTC day and month a moment falls in: the windows of the daily and monthly counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaWindows {
    pub day: String,
    pub month: String,
    /// Seconds until the earliest of the two windows resets.
    pub day_resets_in: u64,
    pub month_resets_in: u64,
}

impl QuotaWindows {
    pub fn at(now: DateTime<Utc>) -> Self {
        let today = now.date_naive();
        let tomorrow = today + Duration::days(1);
        let next_month = if today.month() == 12 {
            NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
        }
        .unwrap_or(tomorrow);
        let seconds_until = |date: NaiveDate| {
            let midnight = Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN));
            u64::try_from((midnight - now).num_seconds())
                .unwrap_or(0)
                .max(1)
        };
        Self {
            day: today.format("%Y-%m-%d").to_string(),
            month: today.format("%Y-%m").to_string(),
            day_resets_in: seconds_until(tomorrow),
            month_resets_in: seconds_until(next_month),
        }
    }
}

/// Counters as of now, with the limits they are measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UsageNumbers {
    pub daily_used: u64,
    pub daily_limit: u64,
    pub monthly_used: u64,
    pub monthly_limit: u64,
}

impl UsageNumbers {
    /// Seconds until a refused user may try again: the next reset of whichever window is full.
    pub fn retry_after(&self, windows: &QuotaWindows) -> u64 {
        if self.monthly_used >= self.monthly_limit {
            windows.month_resets_in
        } else {
            windows.day_resets_in
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    Granted(UsageNumbers),
    Refused(UsageNumbers),
}

/// What one request used, to be priced ([`Pricing::cost`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metered {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub audio_seconds: f64,
}

/// What one request used, and what that cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostRecord {
    pub request_id: String,
    pub timestamp: DateTime<Utc>,
    pub operation: Operation,
    pub model_id: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Always 0, as is `embedding_cost`: retrieval's embeddings are not metered (Bedrock's
    /// Retrieve reports no tokens). Kept so stored records and reports keep their shape.
    pub embedding_tokens: u64,
    pub audio_seconds: f64,
    /// Per service, in the pricing's currency: `bedrock`, `embedding`, `transcribe`.
    pub model_cost: f64,
    pub embedding_cost: f64,
    pub transcribe_cost: f64,
    pub total_cost: f64,
}

/// Prices in EUR, per 1,000 tokens or per audio minute.
#[derive(Clone, Debug, PartialEq)]
pub struct Pricing {
    pub currency: String,
    pub input_per_1k_tokens: f64,
    pub output_per_1k_tokens: f64,
    pub transcribe_per_minute: f64,
}

impl Pricing {
    /// Everything free: the local components cost nothing unless prices are configured.
    pub fn free() -> Self {
        Self {
            currency: "EUR".to_owned(),
            input_per_1k_tokens: 0.0,
            output_per_1k_tokens: 0.0,
            transcribe_per_minute: 0.0,
        }
    }

    /// Reads `PRICE_INPUT_PER_1K_TOKENS`, `PRICE_OUTPUT_PER_1K_TOKENS`,
    /// `PRICE_TRANSCRIBE_PER_MINUTE` and `PRICE_CURRENCY`
    /// over `defaults`.
    pub fn from_vars(
        defaults: Self,
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let env = crate::config::Env::from_vars(vars.clone());
        let mut pricing = defaults;
        let fields: [(&'static str, &mut f64); 3] = [
            (
                "PRICE_INPUT_PER_1K_TOKENS",
                &mut pricing.input_per_1k_tokens,
            ),
            (
                "PRICE_OUTPUT_PER_1K_TOKENS",
                &mut pricing.output_per_1k_tokens,
            ),
            (
                "PRICE_TRANSCRIBE_PER_MINUTE",
                &mut pricing.transcribe_per_minute,
            ),
        ];
        for (name, field) in fields {
            if let Some(value) = env.optional(name) {
                *field = value
                    .parse::<f64>()
                    .ok()
                    .filter(|price| price.is_finite() && *price >= 0.0)
                    .ok_or_else(|| crate::config::ConfigError {
                        name,
                        reason: format!("{value:?} is not a non-negative price"),
                    })?;
            }
        }
        if let Some(currency) = env.optional("PRICE_CURRENCY") {
            pricing.currency = currency.to_owned();
        }
        Ok(pricing)
    }

    pub fn cost(
        &self,
        request_id: &str,
        timestamp: DateTime<Utc>,
        operation: Operation,
        model_id: &str,
        used: Metered,
    ) -> CostRecord {
        let Metered {
            input_tokens,
            output_tokens,
            audio_seconds,
        } = used;
        let per_1k = |tokens: u64, price: f64| tokens as f64 / 1000.0 * price;
        let model_cost = per_1k(input_tokens, self.input_per_1k_tokens)
            + per_1k(output_tokens, self.output_per_1k_tokens);
        let transcribe_cost = audio_seconds / 60.0 * self.transcribe_per_minute;
        CostRecord {
            request_id: request_id.to_owned(),
            timestamp,
            operation,
            model_id: model_id.to_owned(),
            input_tokens,
            output_tokens,
            embedding_tokens: 0,
            audio_seconds,
            model_cost,
            embedding_cost: 0.0,
            transcribe_cost,
            total_cost: model_cost + transcribe_cost,
        }
    }
}

/// Where "now" comes from, so tests can move across day and month boundaries.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl UsageNumbers {
    /// The 429 a refused reservation answers with.
    pub fn refusal(self, windows: &QuotaWindows) -> crate::ApiError {
        let monthly_full = self.monthly_used >= self.monthly_limit;
        let (used, limit, window) = if monthly_full {
            (self.monthly_used, self.monthly_limit, "monthly")
        } else {
            (self.daily_used, self.daily_limit, "daily")
        };
        crate::ApiError::QuotaExceeded {
            used,
            limit,
            window,
            usage: self,
            retry_after_secs: self.retry_after(windows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn windows_follow_utc_days_and_months() {
        let windows = QuotaWindows::at(at("2026-12-31T23:59:30Z"));
        assert_eq!(
            (windows.day.as_str(), windows.month.as_str()),
            ("2026-12-31", "2026-12")
        );
        assert_eq!((windows.day_resets_in, windows.month_resets_in), (30, 30));
        let windows = QuotaWindows::at(at("2027-01-01T00:00:00+02:00"));
        assert_eq!(windows.day, "2026-12-31", "UTC, not the caller's zone");
        let windows = QuotaWindows::at(at("2026-02-10T12:00:00Z"));
        assert_eq!(windows.day_resets_in, 12 * 3600);
        assert_eq!(windows.month_resets_in, (18 * 24 + 12) * 3600);
    }

    #[test]
    fn costs_come_from_quantities_and_prices() {
        let pricing = Pricing {
            currency: "EUR".into(),
            input_per_1k_tokens: 0.003,
            output_per_1k_tokens: 0.015,
            transcribe_per_minute: 0.024,
        };
        let used = Metered {
            input_tokens: 2000,
            output_tokens: 500,
            audio_seconds: 30.0,
        };
        let record = pricing.cost("r", Utc::now(), Operation::Query, "m", used);
        assert!((record.model_cost - (0.006 + 0.0075)).abs() < 1e-12);
        assert_eq!(record.embedding_cost, 0.0);
        assert!((record.transcribe_cost - 0.012).abs() < 1e-12);
        assert!((record.total_cost - 0.0255).abs() < 1e-12);
        let free = Pricing::free().cost("r", Utc::now(), Operation::Query, "m", used);
        assert_eq!(free.total_cost, 0.0);
    }
}
