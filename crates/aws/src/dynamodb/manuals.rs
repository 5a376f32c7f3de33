//! The manuals table: PK `user_id`, SK `manual_id`, and a `SHA#<sha256>` item in the same
//! partition so duplicate detection is a conditional put. A sparse GSI `by_created`
//! (`user_id`, `created_sk` = `<created>#<manual_id>`) lists a user's manuals newest first.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::domain::{
    ArrivedUpload, DocumentKind, Manual, ManualStatus, ProcessingOutcome, UserId,
    duplicate_upload_reason, pending_sha256,
};
use manuel_core::ports::{
    ArrivalOutcome, Citations, InsertOutcome, ListError, ManualPage, ManualRepository,
};

use super::{Item, applied, get_n, get_s, n, s, sdk_error, unavailable};

pub const CREATED_INDEX: &str = "by_created";

pub struct DynamoManuals {
    client: Client,
    table: String,
}

fn sha_key(sha256: &str) -> String {
    format!("SHA#{sha256}")
}

fn key(user: &UserId, sort_key: &str) -> Item {
    HashMap::from([
        ("user_id".to_owned(), s(user.as_str())),
        ("manual_id".to_owned(), s(sort_key)),
    ])
}

fn time(value: &DateTime<Utc>) -> String {
    value.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn to_item(manual: &Manual) -> Item {
    let mut item = HashMap::from([
        ("user_id".to_owned(), s(manual.user_id.as_str())),
        ("manual_id".to_owned(), s(&manual.id)),
        ("name".to_owned(), s(&manual.name)),
        ("object_key".to_owned(), s(&manual.key)),
        ("kind".to_owned(), s(manual.kind.as_str())),
        ("size_bytes".to_owned(), n(manual.size_bytes)),
        ("sha256".to_owned(), s(&manual.sha256)),
        ("status".to_owned(), s(manual.status.as_str())),
        ("created_at".to_owned(), s(time(&manual.created_at))),
        ("updated_at".to_owned(), s(time(&manual.updated_at))),
        (
            "created_sk".to_owned(),
            s(format!("{}#{}", time(&manual.created_at), manual.id)),
        ),
    ]);
    if let Some(reason) = &manual.status_reason {
        item.insert("status_reason".to_owned(), s(reason));
    }
    if let Some(pages) = manual.pages {
        item.insert("pages".to_owned(), n(pages));
    }
    item
}

/// The manual in a listed row, or `None` (logged and counted) when the row cannot be read: one
/// damaged row leaves the list, never the whole list with it, and never silently.
fn readable(item: &Item) -> Option<Manual> {
    let manual = from_item(item);
    if manual.is_none() {
        tracing::error!(
            manual_id = get_s(item, "manual_id").unwrap_or_default(),
            "unreadable manual record: left out of the list"
        );
        manuel_core::telemetry::record_dependency(
            manuel_core::telemetry::Metric::UnreadableRecords,
            "dynamodb",
            1.0,
        );
    }
    manual
}

fn from_item(item: &Item) -> Option<Manual> {
    let parse_time = |name: &str| {
        get_s(item, name)
            .and_then(|value| DateTime::parse_from_rfc3339(value).ok())
            .map(|value| value.with_timezone(&Utc))
    };
    Some(Manual {
        id: get_s(item, "manual_id")?.to_owned(),
        user_id: UserId::parse(get_s(item, "user_id")?)?,
        name: get_s(item, "name")?.to_owned(),
        key: get_s(item, "object_key")?.to_owned(),
        kind: DocumentKind::parse(get_s(item, "kind")?)?,
        size_bytes: get_n(item, "size_bytes")?,
        sha256: get_s(item, "sha256")?.to_owned(),
        status: ManualStatus::parse(get_s(item, "status")?)?,
        status_reason: get_s(item, "status_reason").map(str::to_owned),
        pages: get_n(item, "pages"),
        created_at: parse_time("created_at")?,
        updated_at: parse_time("updated_at")?,
    })
}

/// Where a listing stopped: the last manual's id and created-index sort key. The user is not in
/// it (the caller's own partition is queried), so a cursor names no one and cannot reach into
/// another partition.
fn encode_token(key: &Item) -> Option<String> {
    let parts = ["manual_id", "created_sk"].map(|name| get_s(key, name).unwrap_or_default());
    Some(URL_SAFE_NO_PAD.encode(parts.join("\n")))
}

fn decode_token(user: &UserId, token: &str) -> Option<Item> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (manual_id, created_sk) = raw.split_once('\n')?;
    if created_sk.contains('\n') {
        return None;
    }
    Some(HashMap::from([
        ("user_id".to_owned(), s(user.as_str())),
        ("manual_id".to_owned(), s(manual_id)),
        ("created_sk".to_owned(), s(created_sk)),
    ]))
}

impl DynamoManuals {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn item(&self, user: &UserId, sort_key: &str) -> Result<Option<Item>, PortError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(user, sort_key)))
            .consistent_read(true)
            .send()
            .await
            .map(|output| output.item)
            .map_err(sdk_error)
    }
}

fn cancelled(
    error: &SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    matches!(error, SdkError::ServiceError(service) if matches!(service.err(), TransactWriteItemsError::TransactionCanceledException(_)))
}

#[async_trait]
impl ManualRepository for DynamoManuals {
    async fn find_by_sha256(
        &self,
        user: &UserId,
        sha256: &str,
    ) -> Result<Option<Manual>, PortError> {
        let Some(marker) = self.item(user, &sha_key(sha256)).await? else {
            return Ok(None);
        };
        match get_s(&marker, "points_to") {
            Some(manual_id) => self.get(user, manual_id).await,
            None => Ok(None),
        }
    }

    async fn insert(&self, manual: &Manual) -> Result<InsertOutcome, PortError> {
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(manual_id)")
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(PortError::failed)
        };
        let mut marker = key(&manual.user_id, &sha_key(&manual.sha256));
        marker.insert("points_to".to_owned(), s(&manual.id));
        let result = self
            .client
            .transact_write_items()
            .transact_items(put(to_item(manual))?)
            .transact_items(put(marker)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(error) if cancelled(&error) => {
                match self.find_by_sha256(&manual.user_id, &manual.sha256).await? {
                    Some(existing) => Ok(InsertOutcome::Duplicate(existing)),
                    None => Err(unavailable("a conflicting manual vanished during insert")),
                }
            }
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn get(&self, user: &UserId, manual_id: &str) -> Result<Option<Manual>, PortError> {
        if manual_id.starts_with("SHA#") {
            return Ok(None);
        }
        Ok(self
            .item(user, manual_id)
            .await?
            .as_ref()
            .and_then(from_item))
    }

    async fn list(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ManualPage, ListError> {
        let start = match after {
            Some(token) => Some(decode_token(user, token).ok_or(ListError::BadToken)?),
            None => None,
        };
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CREATED_INDEX)
            .key_condition_expression("user_id = :user")
            .expression_attribute_values(":user", s(user.as_str()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| ListError::Port(sdk_error(error)))?;
        let manuals: Vec<Manual> = output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(readable)
            .collect();
        let next_token = output
            .last_evaluated_key
            .filter(|key| !key.is_empty() && manuals.len() == limit)
            .and_then(|key| encode_token(&key));
        Ok(ManualPage {
            manuals,
            next_token,
        })
    }

    async fn list_ready(&self, user: &UserId) -> Result<Vec<Manual>, PortError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user")
            .filter_expression("#status = :ready")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":ready", s(ManualStatus::Ready.as_str()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_error)?;
        Ok(items.iter().filter_map(readable).collect())
    }

    async fn finish_processing(
        &self,
        user: &UserId,
        manual_id: &str,
        outcome: &ProcessingOutcome,
    ) -> Result<bool, PortError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user, manual_id)))
            .condition_expression("#status = :processing")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(ManualStatus::Processing.as_str()))
            .expression_attribute_values(":now", s(time(&Utc::now())));
        let request = match outcome {
            ProcessingOutcome::Ready { pages } => request
                .update_expression(
                    "SET #status = :status, pages = :pages, updated_at = :now REMOVE status_reason",
                )
                .expression_attribute_values(":status", s(ManualStatus::Ready.as_str()))
                .expression_attribute_values(":pages", n(pages)),
            ProcessingOutcome::Failed { reason } => request
                .update_expression(
                    "SET #status = :status, status_reason = :reason, updated_at = :now",
                )
                .expression_attribute_values(":status", s(ManualStatus::Failed.as_str()))
                .expression_attribute_values(":reason", s(reason)),
        };
        applied(request.send().await)
    }

    async fn upload_arrived(
        &self,
        user: &UserId,
        manual_id: &str,
        arrived: &ArrivedUpload,
    ) -> Result<ArrivalOutcome, PortError> {
        let now = time(&Utc::now());
        let record = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user, manual_id)))
            .condition_expression("#status = :uploading")
            .update_expression(
                "SET sha256 = :sha, size_bytes = :size, kind = :kind, #status = :processing, updated_at = :now",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":uploading", s(ManualStatus::Uploading.as_str()))
            .expression_attribute_values(":processing", s(ManualStatus::Processing.as_str()))
            .expression_attribute_values(":sha", s(&arrived.sha256))
            .expression_attribute_values(":size", n(arrived.size_bytes))
            .expression_attribute_values(":kind", s(arrived.kind.as_str()))
            .expression_attribute_values(":now", s(&now))
            .build()
            .map_err(PortError::failed)?;
        let mut marker = key(user, &sha_key(&arrived.sha256));
        marker.insert("points_to".to_owned(), s(manual_id));
        let marker = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(manual_id)")
            .build()
            .map_err(PortError::failed)?;
        let placeholder = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user, &sha_key(&pending_sha256(manual_id)))))
            .build()
            .map_err(PortError::failed)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(record).build())
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(TransactWriteItem::builder().delete(placeholder).build())
            .send()
            .await;
        match result {
            Ok(_) => match self.get(user, manual_id).await? {
                Some(manual) => Ok(ArrivalOutcome::Processing(manual)),
                None => Ok(ArrivalOutcome::NotAwaited),
            },
            Err(error) if cancelled(&error) => {
                // Either the manual is no longer awaited or the bytes are a duplicate.
                match self.get(user, manual_id).await? {
                    Some(manual) if manual.status == ManualStatus::Uploading => {}
                    _ => return Ok(ArrivalOutcome::NotAwaited),
                }
                let Some(existing) = self.find_by_sha256(user, &arrived.sha256).await? else {
                    return Err(unavailable(
                        "a conflicting manual vanished during an upload",
                    ));
                };
                let failed = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(user, manual_id)))
                    .condition_expression("#status = :uploading")
                    .update_expression(
                        "SET #status = :failed, status_reason = :reason, size_bytes = :size, updated_at = :now",
                    )
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":uploading", s(ManualStatus::Uploading.as_str()))
                    .expression_attribute_values(":failed", s(ManualStatus::Failed.as_str()))
                    .expression_attribute_values(":reason", s(duplicate_upload_reason(&existing)))
                    .expression_attribute_values(":size", n(arrived.size_bytes))
                    .expression_attribute_values(":now", s(&now))
                    .send()
                    .await;
                Ok(if applied(failed)? {
                    ArrivalOutcome::Duplicate(existing)
                } else {
                    ArrivalOutcome::NotAwaited
                })
            }
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn delete(&self, user: &UserId, manual_id: &str) -> Result<bool, PortError> {
        let Some(manual) = self.get(user, manual_id).await? else {
            return Ok(false);
        };
        let delete = |sort_key: &str| {
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(user, sort_key)))
                .build()
                .map(|delete| TransactWriteItem::builder().delete(delete).build())
                .map_err(PortError::failed)
        };
        self.client
            .transact_write_items()
            .transact_items(delete(manual_id)?)
            .transact_items(delete(&sha_key(&manual.sha256))?)
            .send()
            .await
            .map(|_| true)
            .map_err(sdk_error)
    }

    /// `query_count` and `last_queried` live on the manual's item, so deleting the manual
    /// deletes them; the condition keeps a citation of a manual deleted meanwhile from
    /// creating a bare item.
    async fn record_citations(
        &self,
        user: &UserId,
        manual_ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        for manual_id in manual_ids {
            if manual_id.starts_with("SHA#") {
                continue;
            }
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(user, manual_id)))
                .condition_expression("attribute_exists(manual_id)")
                .update_expression("ADD query_count :one SET last_queried = :at")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":at", s(time(&at)))
                .send()
                .await;
            // A manual deleted meanwhile has nothing left to count.
            applied(result)?;
        }
        Ok(())
    }

    async fn citations(&self, user: &UserId, manual_id: &str) -> Result<Citations, PortError> {
        if manual_id.starts_with("SHA#") {
            return Ok(Citations::default());
        }
        let item = self.item(user, manual_id).await?;
        Ok(item.map_or_else(Citations::default, |item| Citations {
            count: get_n(&item, "query_count").unwrap_or(0),
            last: get_s(&item, "last_queried")
                .and_then(|value| DateTime::parse_from_rfc3339(value).ok())
                .map(|value| value.with_timezone(&Utc)),
        }))
    }
}

/// Keeps the attribute helpers honest: an item written is an item read.
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn items_round_trip() {
        let now = Utc::now();
        let manual = Manual {
            id: "m1".into(),
            user_id: UserId::parse("alice").unwrap_or_else(|| unreachable!()),
            name: "Printer.pdf".into(),
            key: "manuals/alice/m1.pdf".into(),
            kind: DocumentKind::Pdf,
            size_bytes: 42,
            sha256: "ab".into(),
            status: ManualStatus::Failed,
            status_reason: Some("encrypted".into()),
            pages: None,
            created_at: now,
            updated_at: now,
        };
        let back = from_item(&to_item(&manual));
        assert_eq!(
            back.as_ref().map(|m| (&m.id, m.status, m.size_bytes)),
            Some((&manual.id, manual.status, 42))
        );
        let user = manual.user_id.clone();
        let token = encode_token(&HashMap::from([
            ("user_id".to_owned(), AttributeValue::S("alice".into())),
            ("manual_id".to_owned(), AttributeValue::S("m1".into())),
            ("created_sk".to_owned(), AttributeValue::S("t#m1".into())),
        ]));
        assert!(
            token
                .as_deref()
                .and_then(|t| decode_token(&user, t))
                .is_some()
        );
        // The cursor names no user: decoded for Bob, it starts in Bob's own partition (the
        // API seals tokens to their user before a store ever sees one).
        let bob = UserId::parse("bob").unwrap_or_else(|| unreachable!());
        let start = token.as_deref().and_then(|t| decode_token(&bob, t));
        assert_eq!(
            start.as_ref().and_then(|key| get_s(key, "user_id")),
            Some("bob")
        );
        let raw = URL_SAFE_NO_PAD
            .decode(token.unwrap_or_default())
            .unwrap_or_default();
        assert!(!String::from_utf8_lossy(&raw).contains("alice"));
    }
}
