//! Zero-latency stand-ins for the stores a router talks to that, unlike `manuel_core::testing`'s
//! in-memory fakes, never grow: uploads are not kept, deleted manuals are put back
//! ([`Manuals::refill`]), usage counters never move. A benchmark of 100,000 requests then
//! measures the same route at its first request and at its last, and what a route costs
//! in-process is our own work (routing, middleware, token verification, validation, JSON).
//! The knowledge base, the model and the speech recogniser are `manuel_core::testing`'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::domain::{
    ArrivedUpload, DocumentKind, Manual, ManualStatus, ProcessingOutcome, UserId,
};
use manuel_core::ports::{
    ArrivalOutcome, IngestionQueue, InsertOutcome, ListError, ManualPage, ManualRepository,
    ObjectStore, UploadLink, UsageState, UsageStore,
};
use manuel_core::usage::{
    CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation, UsageNumbers,
};

/// The manuals every fake user owns: `count` ready PDFs, newest first.
pub fn manuals(user: &UserId, count: usize) -> Vec<Manual> {
    let now = Utc::now();
    (0..count)
        .map(|n| Manual {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            user_id: user.clone(),
            name: format!("Manual {n}.pdf"),
            key: format!("manuals/{user}/00000000-0000-4000-8000-{n:012}.pdf"),
            kind: DocumentKind::Pdf,
            size_bytes: 1_000_000,
            sha256: format!("{n:064x}"),
            status: ManualStatus::Ready,
            status_reason: None,
            pages: Some(40),
            created_at: now - chrono::Duration::seconds(i64::try_from(n).unwrap_or(0)),
            updated_at: now,
        })
        .collect()
}

/// Manual records held in memory, per user; [`Manuals::refill`] puts back the initial ones
/// (the benchmark does so before every request, untimed, so that deletions always find them).
pub struct Manuals {
    current: Mutex<HashMap<UserId, Vec<Manual>>>,
    initial: HashMap<UserId, Vec<Manual>>,
}

impl Manuals {
    pub fn new(initial: HashMap<UserId, Vec<Manual>>) -> Self {
        Self {
            current: Mutex::new(initial.clone()),
            initial,
        }
    }

    pub fn refill(&self) {
        if let Ok(mut current) = self.current.lock() {
            current.clone_from(&self.initial);
        }
    }

    fn of(&self, user: &UserId) -> Vec<Manual> {
        self.current
            .lock()
            .map(|all| all.get(user).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

#[async_trait]
impl ManualRepository for Manuals {
    async fn find_by_sha256(
        &self,
        user: &UserId,
        sha256: &str,
    ) -> Result<Option<Manual>, PortError> {
        Ok(self.of(user).into_iter().find(|m| m.sha256 == sha256))
    }
    async fn insert(&self, _manual: &Manual) -> Result<InsertOutcome, PortError> {
        // Not kept: every benchmarked upload is a new manual, and the list stays the same size.
        Ok(InsertOutcome::Inserted)
    }
    async fn get(&self, user: &UserId, manual_id: &str) -> Result<Option<Manual>, PortError> {
        Ok(self.of(user).into_iter().find(|m| m.id == manual_id))
    }
    async fn list(
        &self,
        user: &UserId,
        limit: usize,
        _after: Option<&str>,
    ) -> Result<ManualPage, ListError> {
        let mut manuals = self.of(user);
        manuals.truncate(limit);
        Ok(ManualPage {
            manuals,
            next_token: None,
        })
    }
    async fn list_ready(&self, user: &UserId) -> Result<Vec<Manual>, PortError> {
        Ok(self.of(user))
    }
    async fn finish_processing(
        &self,
        _user: &UserId,
        _manual_id: &str,
        _outcome: &ProcessingOutcome,
    ) -> Result<bool, PortError> {
        Ok(true)
    }
    async fn upload_arrived(
        &self,
        _user: &UserId,
        _manual_id: &str,
        _arrived: &ArrivedUpload,
    ) -> Result<ArrivalOutcome, PortError> {
        Ok(ArrivalOutcome::NotAwaited)
    }
    async fn delete(&self, user: &UserId, manual_id: &str) -> Result<bool, PortError> {
        let mut current = self.current.lock().map_err(PortError::failed)?;
        let Some(manuals) = current.get_mut(user) else {
            return Ok(false);
        };
        let before = manuals.len();
        manuals.retain(|m| m.id != manual_id);
        Ok(manuals.len() < before)
    }
    async fn record_citations(
        &self,
        _user: &UserId,
        _manual_ids: &[String],
        _at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError> {
        // Not kept, like uploads: the benchmark measures the routes, not the statistics.
        Ok(())
    }
    async fn citations(
        &self,
        _user: &UserId,
        _manual_id: &str,
    ) -> Result<manuel_core::ports::Citations, PortError> {
        Ok(manuel_core::ports::Citations::default())
    }
}

/// Objects: stored nowhere, links made up.
pub struct Objects;

#[async_trait]
impl ObjectStore for Objects {
    async fn put(&self, _key: &str, _bytes: Bytes, _content_type: &str) -> Result<(), PortError> {
        Ok(())
    }
    async fn get(&self, _key: &str) -> Result<Option<Bytes>, PortError> {
        Ok(None)
    }
    async fn delete(&self, _key: &str) -> Result<(), PortError> {
        Ok(())
    }
    async fn delete_prefix(&self, _prefix: &str) -> Result<u64, PortError> {
        Ok(0)
    }
    fn key_of_link(&self, link: &str) -> Option<String> {
        let key = link.strip_prefix("https://objects.invalid/")?;
        Some(key.split('?').next()?.to_owned())
    }
    async fn download_link(
        &self,
        key: &str,
        _file_name: &str,
        _content_type: &str,
        _ttl: Duration,
    ) -> Result<String, PortError> {
        Ok(format!("https://objects.invalid/{key}?signature=0"))
    }
    async fn upload_link(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        _ttl: Duration,
    ) -> Result<UploadLink, PortError> {
        Ok(UploadLink {
            url: format!("https://objects.invalid/{key}?signature=0"),
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("Content-Length".into(), content_length.to_string()),
            ],
        })
    }
}

pub struct Ingestion;

#[async_trait]
impl IngestionQueue for Ingestion {
    async fn enqueue(&self, _user: &UserId, _manual_id: &str) -> Result<(), PortError> {
        Ok(())
    }
}

/// Quota counters that never refuse (rate limits, replay checks and idempotency records are
/// `manuel_core::testing::Unlimited`).
pub struct Tables;

fn numbers(limits: QuotaLimits) -> UsageNumbers {
    UsageNumbers {
        daily_used: 3,
        daily_limit: limits.daily,
        monthly_used: 12,
        monthly_limit: limits.monthly,
    }
}

#[async_trait]
impl UsageStore for Tables {
    async fn reserve(
        &self,
        _user: &UserId,
        _windows: &QuotaWindows,
        limits: QuotaLimits,
        _operation: Operation,
    ) -> Result<Reservation, PortError> {
        Ok(Reservation::Granted(numbers(limits)))
    }
    async fn refund(&self, _user: &UserId, _windows: &QuotaWindows) -> Result<(), PortError> {
        Ok(())
    }
    async fn usage(
        &self,
        _user: &UserId,
        _windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<UsageState, PortError> {
        Ok(UsageState {
            numbers: numbers(limits),
            last_operation: Some(Operation::Query),
            last_updated: Some(Utc::now()),
        })
    }
    async fn daily_counts(&self, _user: &UserId, days: &[String]) -> Result<Vec<u64>, PortError> {
        Ok(days.iter().map(|_| 2).collect())
    }
    async fn record_cost(&self, _user: &UserId, _record: &CostRecord) -> Result<(), PortError> {
        Ok(())
    }
    async fn costs_since(
        &self,
        _user: &UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<CostRecord>, PortError> {
        Ok((0..20)
            .map(|n| CostRecord {
                request_id: format!("request-{n}"),
                timestamp: since + chrono::Duration::hours(n),
                operation: Operation::Query,
                model_id: "model".into(),
                input_tokens: 900,
                output_tokens: 60,
                embedding_tokens: 20,
                audio_seconds: 0.0,
                model_cost: 0.003,
                embedding_cost: 0.0,
                transcribe_cost: 0.0,
                total_cost: 0.003,
            })
            .collect())
    }
    async fn erase(&self, _user: &UserId, _keep: &QuotaWindows) -> Result<u64, PortError> {
        Ok(0)
    }
}
