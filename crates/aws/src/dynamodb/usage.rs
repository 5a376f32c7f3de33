//! The usage table: PK `user_id`, SK `D#YYYY-MM-DD` (daily counter),
//! `M#YYYY-MM` (monthly counter), `C#<time>#<request_id>` (cost records). Counters live under
//! the user id's hash ([`quota_owner`], `quota#<hash>`), cost records under the user id: erasing
//! a user deletes the cost records and keeps the current day's and month's counters, which name
//! no one, so an erase does not reset the quota.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    DeleteRequest, KeysAndAttributes, TransactWriteItem, Update, WriteRequest,
};
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::domain::UserId;
use manuel_core::ports::{UsageState, UsageStore};
use manuel_core::usage::{
    CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation, UsageNumbers, quota_owner,
};

use super::{Item, get_n, get_s, n, s, sdk_error, unavailable};

/// Counters outlive the windows they count, long enough for the usage history.
const DAY_COUNTER_TTL_DAYS: i64 = 60;
const MONTH_COUNTER_TTL_DAYS: i64 = 400;
const COST_RECORD_TTL_DAYS: i64 = 400;
/// Concurrent transactions on the same counters can be cancelled as conflicts; those are retried.
const CONFLICT_ATTEMPTS: u32 = 6;

pub struct DynamoUsageStore {
    client: Client,
    table: String,
}

impl DynamoUsageStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The key of one of `user`'s counters.
    fn key(user: &UserId, sort_key: &str) -> Item {
        Self::item_key(&quota_owner(user), sort_key)
    }

    fn item_key(partition: &str, sort_key: &str) -> Item {
        HashMap::from([
            ("user_id".to_owned(), s(partition)),
            ("sk".to_owned(), s(sort_key)),
        ])
    }

    fn counter_update(
        &self,
        user: &UserId,
        sort_key: String,
        limit: u64,
        operation: Operation,
        ttl_days: i64,
    ) -> Result<TransactWriteItem, PortError> {
        let now = Utc::now();
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &sort_key)))
            .update_expression(
                "ADD #count :one SET #op = :op, #updated = :now, #ttl = if_not_exists(#ttl, :ttl)",
            )
            .condition_expression("attribute_not_exists(#count) OR #count < :limit")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#op", "last_operation")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":op", s(operation.as_str()))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(
                ":ttl",
                n((now + chrono::Duration::days(ttl_days)).timestamp()),
            )
            .expression_attribute_values(":limit", n(limit))
            .build()
            .map_err(PortError::failed)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn counter(&self, user: &UserId, sort_key: &str) -> Result<Option<Item>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, sort_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output.item)
    }

    async fn numbers(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<(UsageNumbers, Option<Item>), PortError> {
        let day = self.counter(user, &format!("D#{}", windows.day)).await?;
        let month = self.counter(user, &format!("M#{}", windows.month)).await?;
        let count = |item: &Option<Item>| {
            item.as_ref()
                .and_then(|item| get_n::<u64>(item, "count"))
                .unwrap_or(0)
        };
        Ok((
            UsageNumbers {
                daily_used: count(&day),
                daily_limit: limits.daily,
                monthly_used: count(&month),
                monthly_limit: limits.monthly,
            },
            day,
        ))
    }

    /// Every key in `partition` (a user id, or a [`quota_owner`]).
    async fn all_keys(&self, partition: &str) -> Result<Vec<Item>, PortError> {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user")
            .expression_attribute_values(":user", s(partition))
            .projection_expression("user_id, sk")
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_error)
    }
}

fn cancellation_codes(
    error: &SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Option<Vec<String>> {
    match error {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
                cancelled
                    .cancellation_reasons()
                    .iter()
                    .filter_map(|reason| reason.code().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

fn cost_item(user: &UserId, record: &CostRecord) -> Item {
    let time = record.timestamp.format("%Y-%m-%dT%H:%M:%S%.6fZ");
    HashMap::from([
        ("user_id".to_owned(), s(user.as_str())),
        (
            "sk".to_owned(),
            s(format!("C#{time}#{}", record.request_id)),
        ),
        ("timestamp".to_owned(), s(record.timestamp.to_rfc3339())),
        ("request_id".to_owned(), s(&record.request_id)),
        ("operation".to_owned(), s(record.operation.as_str())),
        ("model_id".to_owned(), s(&record.model_id)),
        ("input_tokens".to_owned(), n(record.input_tokens)),
        ("output_tokens".to_owned(), n(record.output_tokens)),
        ("embedding_tokens".to_owned(), n(record.embedding_tokens)),
        ("audio_seconds".to_owned(), n(record.audio_seconds)),
        ("model_cost".to_owned(), n(record.model_cost)),
        ("embedding_cost".to_owned(), n(record.embedding_cost)),
        ("transcribe_cost".to_owned(), n(record.transcribe_cost)),
        ("total_cost".to_owned(), n(record.total_cost)),
        (
            "ttl".to_owned(),
            n((record.timestamp + chrono::Duration::days(COST_RECORD_TTL_DAYS)).timestamp()),
        ),
    ])
}

fn cost_from_item(item: &Item) -> Option<CostRecord> {
    Some(CostRecord {
        request_id: get_s(item, "request_id")?.to_owned(),
        timestamp: DateTime::parse_from_rfc3339(get_s(item, "timestamp")?)
            .ok()?
            .with_timezone(&Utc),
        operation: Operation::parse(get_s(item, "operation")?)?,
        model_id: get_s(item, "model_id").unwrap_or_default().to_owned(),
        input_tokens: get_n(item, "input_tokens").unwrap_or(0),
        output_tokens: get_n(item, "output_tokens").unwrap_or(0),
        embedding_tokens: get_n(item, "embedding_tokens").unwrap_or(0),
        audio_seconds: get_n(item, "audio_seconds").unwrap_or(0.0),
        model_cost: get_n(item, "model_cost").unwrap_or(0.0),
        embedding_cost: get_n(item, "embedding_cost").unwrap_or(0.0),
        transcribe_cost: get_n(item, "transcribe_cost").unwrap_or(0.0),
        total_cost: get_n(item, "total_cost").unwrap_or(0.0),
    })
}

#[async_trait]
impl UsageStore for DynamoUsageStore {
    async fn reserve(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
        operation: Operation,
    ) -> Result<Reservation, PortError> {
        if limits.daily == 0 || limits.monthly == 0 {
            return Ok(Reservation::Refused(
                self.numbers(user, windows, limits).await?.0,
            ));
        }
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .transact_items(self.counter_update(
                    user,
                    format!("D#{}", windows.day),
                    limits.daily,
                    operation,
                    DAY_COUNTER_TTL_DAYS,
                )?)
                .transact_items(self.counter_update(
                    user,
                    format!("M#{}", windows.month),
                    limits.monthly,
                    operation,
                    MONTH_COUNTER_TTL_DAYS,
                )?)
                .send()
                .await;
            match result {
                Ok(_) => {
                    return Ok(Reservation::Granted(
                        self.numbers(user, windows, limits).await?.0,
                    ));
                }
                Err(error) => match cancellation_codes(&error) {
                    Some(codes) if codes.iter().any(|code| code == "ConditionalCheckFailed") => {
                        return Ok(Reservation::Refused(
                            self.numbers(user, windows, limits).await?.0,
                        ));
                    }
                    Some(_) if attempt < CONFLICT_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                    }
                    _ => return Err(sdk_error(error)),
                },
            }
        }
        Err(unavailable("the quota counters stayed contended"))
    }

    async fn refund(&self, user: &UserId, windows: &QuotaWindows) -> Result<(), PortError> {
        let mut request = self.client.transact_write_items();
        for sort_key in [format!("D#{}", windows.day), format!("M#{}", windows.month)] {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(user, &sort_key)))
                .update_expression("ADD #count :minus_one")
                .condition_expression("#count > :zero")
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":minus_one", n(-1))
                .expression_attribute_values(":zero", n(0))
                .build()
                .map_err(PortError::failed)?;
            request = request.transact_items(TransactWriteItem::builder().update(update).build());
        }
        request.send().await.map(|_| ()).map_err(sdk_error)
    }

    async fn usage(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<UsageState, PortError> {
        let (numbers, day) = self.numbers(user, windows, limits).await?;
        Ok(UsageState {
            numbers,
            last_operation: day
                .as_ref()
                .and_then(|item| get_s(item, "last_operation"))
                .and_then(Operation::parse),
            last_updated: day
                .as_ref()
                .and_then(|item| get_s(item, "updated_at"))
                .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
                .map(|time| time.with_timezone(&Utc)),
        })
    }

    async fn daily_counts(&self, user: &UserId, days: &[String]) -> Result<Vec<u64>, PortError> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Item> = days
            .iter()
            .map(|day| Self::key(user, &format!("D#{day}")))
            .collect();
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(PortError::failed)?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(sdk_error)?;
        let found: HashMap<String, u64> = output
            .responses
            .and_then(|mut tables| tables.remove(&self.table))
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                Some((
                    get_s(item, "sk")?.trim_start_matches("D#").to_owned(),
                    get_n(item, "count")?,
                ))
            })
            .collect();
        Ok(days
            .iter()
            .map(|day| found.get(day).copied().unwrap_or(0))
            .collect())
    }

    async fn record_cost(&self, user: &UserId, record: &CostRecord) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(cost_item(user, record)))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error)
    }

    async fn costs_since(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<CostRecord>, PortError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(
                ":from",
                s(format!("C#{}", since.format("%Y-%m-%dT%H:%M:%S%.6fZ"))),
            )
            .expression_attribute_values(":to", s("C#~"))
            .scan_index_forward(false)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_error)?;
        Ok(items.iter().filter_map(cost_from_item).collect())
    }

    async fn erase(&self, user: &UserId, keep: &QuotaWindows) -> Result<u64, PortError> {
        let kept = [format!("D#{}", keep.day), format!("M#{}", keep.month)];
        let mut keys = self.all_keys(user.as_str()).await?;
        keys.extend(
            self.all_keys(&quota_owner(user))
                .await?
                .into_iter()
                .filter(|key| get_s(key, "sk").is_none_or(|sk| !kept.iter().any(|k| k == sk))),
        );
        let total = keys.len() as u64;
        for batch in keys.chunks(25) {
            let mut pending: Vec<WriteRequest> = batch
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|delete| WriteRequest::builder().delete_request(delete).build())
                        .map_err(PortError::failed)
                })
                .collect::<Result<_, _>>()?;
            for attempt in 0..5u64 {
                if pending.is_empty() {
                    break;
                }
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                pending = output
                    .unprocessed_items
                    .and_then(|mut tables| tables.remove(&self.table))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
                }
            }
            if !pending.is_empty() {
                return Err(unavailable(
                    "some usage records could not be deleted; retry the erase",
                ));
            }
        }
        Ok(total)
    }
}
