//! The rate-limit table: PK `key` (`<scope>#<subject>#<window>`), an atomic counter and a TTL.
//! Used signatures live in the same table under `sig#<signature>`, written once conditionally.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;
use manuel_core::PortError;
use manuel_core::ports::{RateLimitStore, ReplayGuard};

use super::{applied, get_n, n, s, sdk_error, unavailable};

pub struct DynamoLimits {
    client: Client,
    table: String,
}

impl DynamoLimits {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl RateLimitStore for DynamoLimits {
    async fn hit(&self, key: &str, expires_at: i64) -> Result<u64, PortError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
            .update_expression(
                "ADD #count :one SET expires_at = if_not_exists(expires_at, :expires)",
            )
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        output
            .attributes
            .as_ref()
            .and_then(|attributes| get_n(attributes, "count"))
            .ok_or_else(|| unavailable("the counter was not returned"))
    }
}

#[async_trait]
impl ReplayGuard for DynamoLimits {
    async fn first_use(&self, signature: &str, expires_at: i64) -> Result<bool, PortError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", s(format!("sig#{signature}")))
            .item("expires_at", n(expires_at))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", "key")
            .send()
            .await;
        applied(result)
    }
}
