//! The ports behind a [`Dependency`]: every call retried and circuit-broken the same way,
//! whichever adapter is inside.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Dependency, Resilience};
use crate::PortError;
use crate::answer_text::AnswerText;
use crate::audio::AudioClip;
use crate::deadline::Deadline;
use crate::domain::{Answer, ArrivedUpload, Manual, ProcessingOutcome, RetrievedChunk, UserId};
use crate::idempotency::{Claim, StoredResponse};
use crate::ports::{
    AnswerModel, ArrivalOutcome, Citations, IdempotencyStore, InsertOutcome, KnowledgeBase,
    ListError, ManualPage, ManualRepository, ObjectStore, RateLimitStore, ReplayGuard, Transcriber,
    UploadLink, UsageState, UsageStore,
};
use crate::usage::{CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation};

/// `inner` with every call going through `dependency`.
pub struct Guarded<P: ?Sized> {
    inner: Arc<P>,
    dependency: Arc<Dependency>,
}

impl<P: ?Sized> Guarded<P> {
    pub fn new(inner: Arc<P>, dependency: Arc<Dependency>) -> Arc<Self> {
        Arc::new(Self { inner, dependency })
    }
}

/// A knowledge base whose retrieval and ingestion are separate dependencies (they fail apart).
pub struct GuardedKnowledgeBase {
    inner: Arc<dyn KnowledgeBase>,
    retrieval: Arc<Dependency>,
    ingestion: Arc<Dependency>,
}

impl GuardedKnowledgeBase {
    pub fn new(inner: Arc<dyn KnowledgeBase>, resilience: &Resilience) -> Arc<Self> {
        Arc::new(Self {
            inner,
            retrieval: resilience.dependency("bedrock-retrieve"),
            ingestion: resilience.dependency("bedrock-ingestion"),
        })
    }
}

#[async_trait]
impl KnowledgeBase for GuardedKnowledgeBase {
    async fn prepare(&self, manual: &Manual) -> Result<(), PortError> {
        self.ingestion.call(|| self.inner.prepare(manual)).await
    }

    async fn ingest(&self, manual: &Manual, pages: &[String]) -> Result<(), PortError> {
        self.ingestion
            .call(|| self.inner.ingest(manual, pages))
            .await
    }

    async fn retrieve(
        &self,
        user: &UserId,
        question: &str,
        manual_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        self.retrieval
            .call(|| self.inner.retrieve(user, question, manual_ids, limit))
            .await
    }

    async fn remove(&self, manual: &Manual) -> Result<(), PortError> {
        self.ingestion.call(|| self.inner.remove(manual)).await
    }

    async fn owner_of(&self, key: &str) -> Result<Option<UserId>, PortError> {
        self.ingestion.call(|| self.inner.owner_of(key)).await
    }

    async fn chunk_count(&self, manual: &Manual) -> Result<Option<u64>, PortError> {
        self.retrieval.call(|| self.inner.chunk_count(manual)).await
    }
}

#[async_trait]
impl AnswerModel for Guarded<dyn AnswerModel> {
    async fn answer(
        &self,
        user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
    ) -> Result<Answer, PortError> {
        self.dependency
            .call(|| self.inner.answer(user, question, passages))
            .await
    }

    /// Retried like [`AnswerModel::answer`]: the model's adapters fail transiently only when
    /// the request was refused before any word was produced.
    async fn answer_streaming(
        &self,
        user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
        text: AnswerText,
    ) -> Result<Answer, PortError> {
        self.dependency
            .call(|| {
                self.inner
                    .answer_streaming(user, question, passages, text.clone())
            })
            .await
    }
}

#[async_trait]
impl ObjectStore for Guarded<dyn ObjectStore> {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), PortError> {
        // Bytes clones share the buffer: a retry does not copy the file.
        self.dependency
            .call(|| self.inner.put(key, bytes.clone(), content_type))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        self.dependency.call(|| self.inner.get(key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.dependency.call(|| self.inner.delete(key)).await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        self.dependency
            .call(|| self.inner.delete_prefix(prefix))
            .await
    }

    fn key_of_link(&self, link: &str) -> Option<String> {
        self.inner.key_of_link(link)
    }

    async fn download_link(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<String, PortError> {
        // Signing is local computation; nothing to guard.
        self.inner
            .download_link(key, file_name, content_type, ttl)
            .await
    }

    async fn upload_link(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<UploadLink, PortError> {
        self.inner
            .upload_link(key, content_type, content_length, ttl)
            .await
    }
}

#[async_trait]
impl ManualRepository for Guarded<dyn ManualRepository> {
    async fn find_by_sha256(
        &self,
        user: &UserId,
        sha256: &str,
    ) -> Result<Option<Manual>, PortError> {
        self.dependency
            .call(|| self.inner.find_by_sha256(user, sha256))
            .await
    }

    async fn insert(&self, manual: &Manual) -> Result<InsertOutcome, PortError> {
        self.dependency.call(|| self.inner.insert(manual)).await
    }

    async fn get(&self, user: &UserId, manual_id: &str) -> Result<Option<Manual>, PortError> {
        self.dependency
            .call(|| self.inner.get(user, manual_id))
            .await
    }

    async fn list(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ManualPage, ListError> {
        // A bad token is the caller's mistake, not the table's: it passes through untouched.
        let result = self
            .dependency
            .call(|| async {
                match self.inner.list(user, limit, after).await {
                    Ok(page) => Ok(Ok(page)),
                    Err(ListError::BadToken) => Ok(Err(ListError::BadToken)),
                    Err(ListError::Port(error)) => Err(error),
                }
            })
            .await;
        match result {
            Ok(listed) => listed,
            Err(error) => Err(ListError::Port(error)),
        }
    }

    async fn list_ready(&self, user: &UserId) -> Result<Vec<Manual>, PortError> {
        self.dependency.call(|| self.inner.list_ready(user)).await
    }

    async fn finish_processing(
        &self,
        user: &UserId,
        manual_id: &str,
        outcome: &ProcessingOutcome,
    ) -> Result<bool, PortError> {
        self.dependency
            .call(|| self.inner.finish_processing(user, manual_id, outcome))
            .await
    }

    async fn upload_arrived(
        &self,
        user: &UserId,
        manual_id: &str,
        arrived: &ArrivedUpload,
    ) -> Result<ArrivalOutcome, PortError> {
        self.dependency
            .call(|| self.inner.upload_arrived(user, manual_id, arrived))
            .await
    }

    async fn delete(&self, user: &UserId, manual_id: &str) -> Result<bool, PortError> {
        self.dependency
            .call(|| self.inner.delete(user, manual_id))
            .await
    }

    async fn record_citations(
        &self,
        user: &UserId,
        manual_ids: &[String],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError> {
        self.dependency
            .call(|| self.inner.record_citations(user, manual_ids, at))
            .await
    }

    async fn citations(&self, user: &UserId, manual_id: &str) -> Result<Citations, PortError> {
        self.dependency
            .call(|| self.inner.citations(user, manual_id))
            .await
    }
}

#[async_trait]
impl UsageStore for Guarded<dyn UsageStore> {
    async fn reserve(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
        operation: Operation,
    ) -> Result<Reservation, PortError> {
        self.dependency
            .call(|| self.inner.reserve(user, windows, limits, operation))
            .await
    }

    async fn refund(&self, user: &UserId, windows: &QuotaWindows) -> Result<(), PortError> {
        self.dependency
            .call(|| self.inner.refund(user, windows))
            .await
    }

    async fn usage(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<UsageState, PortError> {
        self.dependency
            .call(|| self.inner.usage(user, windows, limits))
            .await
    }

    async fn daily_counts(&self, user: &UserId, days: &[String]) -> Result<Vec<u64>, PortError> {
        self.dependency
            .call(|| self.inner.daily_counts(user, days))
            .await
    }

    async fn record_cost(&self, user: &UserId, record: &CostRecord) -> Result<(), PortError> {
        self.dependency
            .call(|| self.inner.record_cost(user, record))
            .await
    }

    async fn costs_since(
        &self,
        user: &UserId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CostRecord>, PortError> {
        self.dependency
            .call(|| self.inner.costs_since(user, since))
            .await
    }

    async fn erase(&self, user: &UserId, keep: &QuotaWindows) -> Result<u64, PortError> {
        self.dependency.call(|| self.inner.erase(user, keep)).await
    }
}

#[async_trait]
impl RateLimitStore for Guarded<dyn RateLimitStore> {
    async fn hit(&self, key: &str, expires_at: i64) -> Result<u64, PortError> {
        self.dependency
            .call(|| self.inner.hit(key, expires_at))
            .await
    }
}

#[async_trait]
impl ReplayGuard for Guarded<dyn ReplayGuard> {
    async fn first_use(&self, signature: &str, expires_at: i64) -> Result<bool, PortError> {
        self.dependency
            .call(|| self.inner.first_use(signature, expires_at))
            .await
    }
}

#[async_trait]
impl IdempotencyStore for Guarded<dyn IdempotencyStore> {
    async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        now: i64,
        in_progress_until: i64,
    ) -> Result<Claim, PortError> {
        self.dependency
            .call(|| self.inner.claim(key, payload_hash, now, in_progress_until))
            .await
    }

    async fn complete(
        &self,
        key: &str,
        payload_hash: &str,
        response: &StoredResponse,
        expires_at: i64,
    ) -> Result<(), PortError> {
        self.dependency
            .call(|| self.inner.complete(key, payload_hash, response, expires_at))
            .await
    }

    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.dependency.call(|| self.inner.release(key)).await
    }

    async fn erase_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        self.dependency
            .call(|| self.inner.erase_prefix(prefix))
            .await
    }
}

#[async_trait]
impl Transcriber for Guarded<dyn Transcriber> {
    fn accepts(&self, format: crate::audio::AudioFormat) -> bool {
        self.inner.accepts(format)
    }

    /// A retry starts a new job (the adapter cleans up a failed one), within the deadline.
    async fn transcribe(
        &self,
        user: &UserId,
        audio: Bytes,
        clip: &AudioClip,
        deadline: Option<Deadline>,
    ) -> Result<String, PortError> {
        self.dependency
            .call(|| self.inner.transcribe(user, audio.clone(), clip, deadline))
            .await
    }
}
