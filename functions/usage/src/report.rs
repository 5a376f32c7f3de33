//! `GET /api/user/usage` and `GET /api/user/quota`, with the predecessor's fields and without its
//! bugs: a real monthly counter, `remaining` never negative, operations from real records.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::usage::{CostRecord, QuotaWindows};
use serde_json::{Value, json};

use crate::UsageDeps;

const HISTORY_DAYS: i64 = 7;
const RECENT: usize = 5;

fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

fn percent(used: u64, limit: u64) -> f64 {
    if limit == 0 {
        return 100.0;
    }
    ((used as f64 / limit as f64) * 1000.0).round() / 10.0
}

fn status(percent_used: f64) -> &'static str {
    match percent_used {
        p if p >= 100.0 => "EXCEEDED",
        p if p >= 90.0 => "CRITICAL",
        p if p >= 75.0 => "WARNING",
        p if p >= 50.0 => "MODERATE",
        _ => "OK",
    }
}

pub(crate) async fn quota(
    State(deps): State<UsageDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Json<Value>, ApiError> {
    let windows = QuotaWindows::at(deps.clock.now());
    let state = deps.usage.usage(&user, &windows, deps.quota).await?;
    let numbers = state.numbers;
    let daily_percent = percent(numbers.daily_used, numbers.daily_limit);
    let monthly_percent = percent(numbers.monthly_used, numbers.monthly_limit);
    Ok(Json(json!({
        "user_id": user.as_str(),
        "quotas": {
            "daily": {
                "limit": numbers.daily_limit,
                "used": numbers.daily_used,
                "remaining": numbers.daily_limit.saturating_sub(numbers.daily_used),
                "percent_used": daily_percent,
                "resets_in_seconds": windows.day_resets_in,
            },
            "monthly": {
                "limit": numbers.monthly_limit,
                "used": numbers.monthly_used,
                "remaining": numbers.monthly_limit.saturating_sub(numbers.monthly_used),
                "percent_used": monthly_percent,
                "resets_in_seconds": windows.month_resets_in,
            },
        },
        "status": status(daily_percent.max(monthly_percent)),
        "last_operation": state.last_operation.map(|operation| operation.as_str()),
        "last_updated": state.last_updated.map(|time| time.to_rfc3339()),
    })))
}

pub(crate) async fn usage(
    State(deps): State<UsageDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Json<Value>, ApiError> {
    let now = deps.clock.now();
    let windows = QuotaWindows::at(now);
    let today = now.date_naive();
    let month_start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let history_start = today - Duration::days(HISTORY_DAYS);
    let since = Utc.from_utc_datetime(
        &month_start
            .min(history_start)
            .and_time(chrono::NaiveTime::MIN),
    );

    let state = deps.usage.usage(&user, &windows, deps.quota).await?;
    let records = deps.usage.costs_since(&user, since).await?;
    let days: Vec<NaiveDate> = (1..=HISTORY_DAYS)
        .rev()
        .map(|back| today - Duration::days(back))
        .collect();
    let day_keys: Vec<String> = days
        .iter()
        .map(|day| day.format("%Y-%m-%d").to_string())
        .collect();
    let counts = deps.usage.daily_counts(&user, &day_keys).await?;

    let today_totals = Totals::of(records.iter().filter(|r| r.timestamp.date_naive() == today));
    let month_records: Vec<&CostRecord> = records
        .iter()
        .filter(|r| r.timestamp.date_naive() >= month_start)
        .collect();
    let month_totals = Totals::of(month_records.iter().copied());
    let breakdown = operation_counts(&month_records);
    let historical = history(&days, &day_keys, counts, &records);
    let numbers = state.numbers;
    let currency = deps.currency.as_str();
    Ok(Json(json!({
        "user_id": user.as_str(),
        "current_usage": {
            "daily_queries": numbers.daily_used,
            "daily_limit": numbers.daily_limit,
            "daily_remaining": numbers.daily_limit.saturating_sub(numbers.daily_used),
            "monthly_queries": numbers.monthly_used,
            "monthly_limit": numbers.monthly_limit,
            "monthly_remaining": numbers.monthly_limit.saturating_sub(numbers.monthly_used),
        },
        "daily_costs": {
            "total_cost": round(today_totals.total),
            "transcribe_cost": round(today_totals.transcribe),
            "bedrock_cost": round(today_totals.bedrock()),
            "lambda_cost": 0.0,
            "s3_cost": 0.0,
            "api_gateway_cost": 0.0,
            "currency": currency,
        },
        "monthly_costs": {
            "total_cost": round(month_totals.total),
            "service_breakdown": {
                "bedrock": round(month_totals.bedrock()),
                "transcribe": round(month_totals.transcribe),
            },
            "currency": currency,
        },
        "recent_queries": records.iter().take(RECENT).map(|record| json!({
            "timestamp": record.timestamp.to_rfc3339(),
            "operation": record.operation.as_str(),
            "cost": round(record.total_cost),
            "currency": currency,
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
        })).collect::<Vec<_>>(),
        "historical": historical,
        "breakdown": {
            "query": breakdown.0,
            "transcribe": breakdown.1,
            "total": breakdown.0 + breakdown.1,
        },
    })))
}

/// Costs summed by service.
#[derive(Default)]
struct Totals {
    total: f64,
    transcribe: f64,
    model: f64,
    embedding: f64,
}

impl Totals {
    fn of<'a>(records: impl Iterator<Item = &'a CostRecord>) -> Self {
        let mut totals = Self::default();
        for record in records {
            totals.total += record.total_cost;
            totals.transcribe += record.transcribe_cost;
            totals.model += record.model_cost;
            totals.embedding += record.embedding_cost;
        }
        totals
    }

    /// What Bedrock was paid: the answer model and embeddings.
    fn bedrock(&self) -> f64 {
        self.model + self.embedding
    }
}

/// (questions, transcriptions) among `records`.
fn operation_counts(records: &[&CostRecord]) -> (u64, u64) {
    let mut counts = (0u64, 0u64);
    for record in records {
        match record.operation {
            manuel_core::usage::Operation::Query => counts.0 += 1,
            manuel_core::usage::Operation::Transcribe => counts.1 += 1,
        }
    }
    counts
}

/// One entry per day: its date, its question count and its operations by kind.
fn history(
    days: &[NaiveDate],
    day_keys: &[String],
    counts: Vec<u64>,
    records: &[CostRecord],
) -> Vec<Value> {
    days.iter()
        .zip(day_keys.iter().zip(counts))
        .map(|(day, (key, count))| {
            let mut operations: BTreeMap<&str, u64> = BTreeMap::new();
            for record in records.iter().filter(|r| r.timestamp.date_naive() == *day) {
                *operations.entry(record.operation.as_str()).or_default() += 1;
            }
            json!({ "date": key, "daily_count": count, "operations": operations })
        })
        .collect()
}
