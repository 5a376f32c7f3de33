//! The errors table: PK `fingerprint`; `count`, `first_seen`, `last_seen`, `severity`, `service`,
//! `operation`, `error_kind`, `message` (normalised), `sample`, `malformed`, `expires_at` (TTL)
//! and `last_alert_at`. A GSI `by_severity` (PK `severity`, SK `last_seen`) lists recent errors
//! of one severity.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::failure::ErrorOccurrence;
use manuel_core::ports::ErrorStore;

use super::{applied, get_n, n, s, sdk_error, unavailable};

pub struct DynamoErrors {
    client: Client,
    table: String,
}

impl DynamoErrors {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ErrorStore for DynamoErrors {
    async fn record(
        &self,
        occurrence: &ErrorOccurrence,
        expires_at: i64,
    ) -> Result<u64, PortError> {
        let seen = occurrence.seen_at.to_rfc3339();
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(&occurrence.fingerprint))
            .update_expression(
                "ADD #count :one \
                 SET #first_seen = if_not_exists(#first_seen, :seen), #last_seen = :seen, \
                 #severity = :severity, #service = :service, #operation = :operation, \
                 #error_kind = :kind, #message = :message, #sample = :sample, \
                 #malformed = :malformed, #expires_at = :expires, #last_request_id = :request",
            )
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#first_seen", "first_seen")
            .expression_attribute_names("#last_seen", "last_seen")
            .expression_attribute_names("#severity", "severity")
            .expression_attribute_names("#service", "service")
            .expression_attribute_names("#operation", "operation")
            .expression_attribute_names("#error_kind", "error_kind")
            .expression_attribute_names("#message", "message")
            .expression_attribute_names("#sample", "sample")
            .expression_attribute_names("#malformed", "malformed")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_names("#last_request_id", "last_request_id")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":seen", s(seen))
            .expression_attribute_values(":severity", s(occurrence.severity.as_str()))
            .expression_attribute_values(":service", s(&occurrence.service))
            .expression_attribute_values(":operation", s(&occurrence.operation))
            .expression_attribute_values(":kind", s(&occurrence.error_kind))
            .expression_attribute_values(":message", s(&occurrence.normalized_message))
            .expression_attribute_values(":sample", s(&occurrence.sample))
            .expression_attribute_values(":malformed", AttributeValue::Bool(occurrence.malformed))
            .expression_attribute_values(":expires", n(expires_at))
            .expression_attribute_values(
                ":request",
                s(occurrence
                    .request_id
                    .clone()
                    .unwrap_or_else(|| "-".to_owned())),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        output
            .attributes
            .as_ref()
            .and_then(|attributes| get_n(attributes, "count"))
            .ok_or_else(|| unavailable("the count was not returned"))
    }

    async fn claim_alert(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<bool, PortError> {
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 4);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(fingerprint))
            .update_expression("SET last_alert_at = :now")
            .condition_expression("attribute_not_exists(last_alert_at) OR last_alert_at <= :before")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":before", n(now.timestamp() - window))
            .send()
            .await;
        applied(result)
    }
}
