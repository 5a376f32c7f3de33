//! The local usage table in SQLite: daily and monthly counters moved together in one
//! transaction, and cost records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::domain::UserId;
use manuel_core::ports::{UsageState, UsageStore};
use manuel_core::usage::{
    CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation, UsageNumbers, quota_owner,
};
use rusqlite::{OptionalExtension, params};

use crate::store::SqliteStore;

fn day_key(windows: &QuotaWindows) -> String {
    format!("D#{}", windows.day)
}

fn month_key(windows: &QuotaWindows) -> String {
    format!("M#{}", windows.month)
}

fn count_of(
    connection: &rusqlite::Connection,
    user: &UserId,
    window: &str,
) -> Result<u64, PortError> {
    let count: Option<i64> = connection
        .query_row(
            "SELECT count FROM usage_counters WHERE user_id = ?1 AND window = ?2",
            params![quota_owner(user), window],
            |row| row.get(0),
        )
        .optional()
        .map_err(PortError::failed)?;
    Ok(count.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
}

fn numbers(
    connection: &rusqlite::Connection,
    user: &UserId,
    windows: &QuotaWindows,
    limits: QuotaLimits,
) -> Result<UsageNumbers, PortError> {
    Ok(UsageNumbers {
        daily_used: count_of(connection, user, &day_key(windows))?,
        daily_limit: limits.daily,
        monthly_used: count_of(connection, user, &month_key(windows))?,
        monthly_limit: limits.monthly,
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn reserve(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
        operation: Operation,
    ) -> Result<Reservation, PortError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction().map_err(PortError::failed)?;
        let now = Utc::now().timestamp_micros();
        let mut granted = true;
        for (window, limit) in [
            (day_key(windows), limits.daily),
            (month_key(windows), limits.monthly),
        ] {
            let moved = transaction
                .execute(
                    "INSERT INTO usage_counters (user_id, window, count, last_operation, updated_us)
                     VALUES (?1, ?2, 1, ?4, ?5)
                     ON CONFLICT (user_id, window) DO UPDATE
                        SET count = count + 1, last_operation = ?4, updated_us = ?5
                        WHERE count < ?3",
                    params![quota_owner(user), window, to_i64(limit), operation.as_str(), now],
                )
                .map_err(PortError::failed)?;
            if moved != 1 || limit == 0 {
                granted = false;
                break;
            }
        }
        if granted {
            let numbers = numbers(&transaction, user, windows, limits)?;
            transaction.commit().map_err(PortError::failed)?;
            Ok(Reservation::Granted(numbers))
        } else {
            transaction.rollback().map_err(PortError::failed)?;
            Ok(Reservation::Refused(numbers(
                &connection,
                user,
                windows,
                limits,
            )?))
        }
    }

    async fn refund(&self, user: &UserId, windows: &QuotaWindows) -> Result<(), PortError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction().map_err(PortError::failed)?;
        for window in [day_key(windows), month_key(windows)] {
            transaction
                .execute(
                    "UPDATE usage_counters SET count = count - 1 WHERE user_id = ?1 AND window = ?2 AND count > 0",
                    params![quota_owner(user), window],
                )
                .map_err(PortError::failed)?;
        }
        transaction.commit().map_err(PortError::failed)
    }

    async fn usage(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<UsageState, PortError> {
        let connection = self.lock()?;
        let numbers = numbers(&connection, user, windows, limits)?;
        let last: Option<(Option<String>, Option<i64>)> = connection
            .query_row(
                "SELECT last_operation, updated_us FROM usage_counters WHERE user_id = ?1 AND window LIKE 'D#%'
                 ORDER BY updated_us DESC LIMIT 1",
                params![quota_owner(user)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(PortError::failed)?;
        let (operation, updated) = last.unwrap_or((None, None));
        Ok(UsageState {
            numbers,
            last_operation: operation.as_deref().and_then(Operation::parse),
            last_updated: updated.and_then(DateTime::from_timestamp_micros),
        })
    }

    async fn daily_counts(&self, user: &UserId, days: &[String]) -> Result<Vec<u64>, PortError> {
        let connection = self.lock()?;
        days.iter()
            .map(|day| count_of(&connection, user, &format!("D#{day}")))
            .collect()
    }

    async fn record_cost(&self, user: &UserId, record: &CostRecord) -> Result<(), PortError> {
        let connection = self.lock()?;
        connection
            .execute(
                "INSERT OR REPLACE INTO cost_records (user_id, timestamp_us, request_id, operation, model_id,
                    input_tokens, output_tokens, embedding_tokens, audio_seconds,
                    model_cost, embedding_cost, transcribe_cost, total_cost)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    user.as_str(),
                    record.timestamp.timestamp_micros(),
                    record.request_id,
                    record.operation.as_str(),
                    record.model_id,
                    to_i64(record.input_tokens),
                    to_i64(record.output_tokens),
                    to_i64(record.embedding_tokens),
                    record.audio_seconds,
                    record.model_cost,
                    record.embedding_cost,
                    record.transcribe_cost,
                    record.total_cost,
                ],
            )
            .map(|_| ())
            .map_err(PortError::failed)
    }

    async fn costs_since(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<CostRecord>, PortError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT timestamp_us, request_id, operation, model_id, input_tokens, output_tokens,
                        embedding_tokens, audio_seconds, model_cost, embedding_cost, transcribe_cost, total_cost
                 FROM cost_records WHERE user_id = ?1 AND timestamp_us >= ?2 ORDER BY timestamp_us DESC",
            )
            .map_err(PortError::failed)?;
        let rows = statement
            .query_map(params![user.as_str(), since.timestamp_micros()], |row| {
                let tokens = |index: usize| {
                    row.get::<_, i64>(index)
                        .map(|v| u64::try_from(v).unwrap_or(0))
                };
                let operation: String = row.get(2)?;
                Ok(CostRecord {
                    timestamp: DateTime::from_timestamp_micros(row.get(0)?).unwrap_or_default(),
                    request_id: row.get(1)?,
                    operation: Operation::parse(&operation).unwrap_or(Operation::Query),
                    model_id: row.get(3)?,
                    input_tokens: tokens(4)?,
                    output_tokens: tokens(5)?,
                    embedding_tokens: tokens(6)?,
                    audio_seconds: row.get(7)?,
                    model_cost: row.get(8)?,
                    embedding_cost: row.get(9)?,
                    transcribe_cost: row.get(10)?,
                    total_cost: row.get(11)?,
                })
            })
            .map_err(PortError::failed)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(PortError::failed)
    }

    async fn erase(&self, user: &UserId, keep: &QuotaWindows) -> Result<u64, PortError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction().map_err(PortError::failed)?;
        // Counters under the raw id are from before counters were kept under its hash.
        let counters = transaction
            .execute(
                "DELETE FROM usage_counters
                 WHERE user_id = ?1 OR (user_id = ?2 AND window NOT IN (?3, ?4))",
                params![
                    user.as_str(),
                    quota_owner(user),
                    day_key(keep),
                    month_key(keep)
                ],
            )
            .map_err(PortError::failed)?;
        let costs = transaction
            .execute(
                "DELETE FROM cost_records WHERE user_id = ?1",
                params![user.as_str()],
            )
            .map_err(PortError::failed)?;
        transaction.commit().map_err(PortError::failed)?;
        Ok((counters + costs) as u64)
    }
}
