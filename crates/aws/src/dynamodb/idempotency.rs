//! The idempotency table: partition key `user` (the user's hash, the part of the record key
//! before `#`, see [`manuel_core::idempotency::record_key`]) and sort key `key` (the whole
//! record key), so one user's records are found by a Query, never a Scan; `status`
//! (INPROGRESS/COMPLETED), `payload_hash`, the stored `response` as JSON, and `expires_at` (also
//! the table's TTL, which DynamoDB enforces lazily, so expiry is checked in the condition too).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use manuel_core::PortError;
use manuel_core::idempotency::{COMPLETED, Claim, IN_PROGRESS, StoredResponse};
use manuel_core::ports::IdempotencyStore;

use super::{applied, get_s, n, s, sdk_error};

/// The partition a record key lives in: its user's hash (everything before the first `#`).
fn partition(key: &str) -> &str {
    key.split_once('#').map_or(key, |(user, _)| user)
}

pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        now: i64,
        in_progress_until: i64,
    ) -> Result<Claim, PortError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("user", s(partition(key)))
            .item("key", s(key))
            .item("status", s(IN_PROGRESS))
            .item("payload_hash", s(payload_hash))
            .item("expires_at", n(in_progress_until))
            .condition_expression("attribute_not_exists(#key) OR expires_at < :now")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        if applied(result)? {
            return Ok(Claim::Claimed);
        }
        let existing = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("user", s(partition(key)))
            .key("key", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?
            .item
            .unwrap_or_default();
        Claim::from_record(
            get_s(&existing, "status"),
            get_s(&existing, "payload_hash")
                .unwrap_or_default()
                .to_owned(),
            get_s(&existing, "response"),
        )
    }

    async fn complete(
        &self,
        key: &str,
        payload_hash: &str,
        response: &StoredResponse,
        expires_at: i64,
    ) -> Result<(), PortError> {
        let response = serde_json::to_string(response).map_err(PortError::failed)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("user", s(partition(key)))
            .item("key", s(key))
            .item("status", s(COMPLETED))
            .item("payload_hash", s(payload_hash))
            .item("response", s(response))
            .item("expires_at", n(expires_at))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("user", s(partition(key)))
            .key("key", s(key))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// One Query of the user's partition (`prefix` is `<user hash>#`), then a delete per record.
    async fn erase_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        let mut removed = 0;
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#user = :user AND begins_with(#key, :prefix)")
            .expression_attribute_names("#user", "user")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":user", s(partition(prefix)))
            .expression_attribute_values(":prefix", s(prefix))
            .projection_expression("#key")
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error)?;
            for item in page.items() {
                if let Some(key) = get_s(item, "key") {
                    self.release(key).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
