//! Idempotency records in the SQLite file: one row per hashed record key, claimed with a single
//! conditional upsert so two concurrent requests with one key cannot both run.

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::idempotency::{COMPLETED, Claim, IN_PROGRESS, StoredResponse};
use manuel_core::ports::IdempotencyStore;
use rusqlite::{OptionalExtension, params};

use crate::store::SqliteStore;

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        now: i64,
        in_progress_until: i64,
    ) -> Result<Claim, PortError> {
        let connection = self.lock()?;
        self.sweep_if_due(&connection)?;
        let claimed = connection
            .execute(
                "INSERT INTO idempotency (key, status, payload_hash, response, expires_at)
                 VALUES (?1, ?2, ?3, NULL, ?4)
                 ON CONFLICT (key) DO UPDATE SET
                     status = excluded.status, payload_hash = excluded.payload_hash,
                     response = NULL, expires_at = excluded.expires_at
                 WHERE idempotency.expires_at < ?5",
                params![key, IN_PROGRESS, payload_hash, in_progress_until, now],
            )
            .map_err(PortError::failed)?;
        if claimed == 1 {
            return Ok(Claim::Claimed);
        }
        let existing: Option<(String, String, Option<String>)> = connection
            .query_row(
                "SELECT status, payload_hash, response FROM idempotency WHERE key = ?1",
                params![key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(PortError::failed)?;
        match existing {
            Some((status, payload_hash, response)) => {
                Claim::from_record(Some(&status), payload_hash, response.as_deref())
            }
            None => Claim::from_record(None, String::new(), None),
        }
    }

    async fn complete(
        &self,
        key: &str,
        payload_hash: &str,
        response: &StoredResponse,
        expires_at: i64,
    ) -> Result<(), PortError> {
        let response = serde_json::to_string(response).map_err(PortError::failed)?;
        self.lock()?
            .execute(
                "INSERT INTO idempotency (key, status, payload_hash, response, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET status = excluded.status,
                     payload_hash = excluded.payload_hash, response = excluded.response,
                     expires_at = excluded.expires_at",
                params![key, COMPLETED, payload_hash, response, expires_at],
            )
            .map_err(PortError::failed)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.lock()?
            .execute("DELETE FROM idempotency WHERE key = ?1", params![key])
            .map_err(PortError::failed)?;
        Ok(())
    }

    async fn erase_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        let removed = self
            .lock()?
            .execute(
                "DELETE FROM idempotency WHERE substr(key, 1, length(?1)) = ?1",
                params![prefix],
            )
            .map_err(PortError::failed)?;
        Ok(removed as u64)
    }
}
