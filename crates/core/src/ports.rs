//! Ports: what the functions need from the outside world. AWS and local adapters implement them.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::answer_text::{AnswerText, passage_numbered, sentence_pieces};
use crate::audio::AudioClip;
use crate::deadline::Deadline;
use crate::domain::{
    Answer, ArrivedUpload, DocumentKind, Manual, ProcessingOutcome, RetrievedChunk, UserId,
};
use crate::error::PortError;
use crate::ingestion::{IngestionLimits, Limit};
use crate::usage::{CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation, UsageNumbers};

/// Manual files (S3 in AWS, files under the data directory locally).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), PortError>;
    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError>;
    async fn delete(&self, key: &str) -> Result<(), PortError>;
    /// Deletes every object whose key starts with `prefix` (which ends with `/`); returns how
    /// many there were.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError>;
    /// The key of the object a [`ObjectStore::download_link`] of this store names, expired or
    /// not; `None` for any other URL (another bucket or host, a forged or altered link). It
    /// says where a link points, not who may read it: callers check the key's owner.
    fn key_of_link(&self, link: &str) -> Option<String>;
    /// A short-lived link that downloads the object without further authentication.
    async fn download_link(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<String, PortError>;
    /// A short-lived link that stores exactly `content_length` bytes of `content_type` at `key`
    /// with one PUT carrying [`UploadLink::headers`]; any other request is refused.
    async fn upload_link(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<UploadLink, PortError>;
}

/// Where and how a client PUTs a file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadLink {
    pub url: String,
    /// Headers the PUT must carry exactly (they are part of the signature).
    pub headers: Vec<(String, String)>,
}

/// What became of an `uploading` manual when its bytes arrived.
#[derive(Debug)]
pub enum ArrivalOutcome {
    /// Recorded, now `processing`.
    Processing(Manual),
    /// The user already has these bytes as the given manual; this one is now `failed` and says so.
    Duplicate(Manual),
    /// The manual is gone or no longer `uploading`: nothing was changed.
    NotAwaited,
}

#[derive(Debug)]
pub enum InsertOutcome {
    Inserted,
    /// The same user already has a manual with these bytes.
    Duplicate(Manual),
}

/// One page of a user's manuals, newest first.
#[derive(Debug)]
pub struct ManualPage {
    pub manuals: Vec<Manual>,
    pub next_token: Option<String>,
}

/// Manual records. Every call is scoped by the owner: no method can reach another user's row.
#[async_trait]
pub trait ManualRepository: Send + Sync {
    async fn find_by_sha256(
        &self,
        user: &UserId,
        sha256: &str,
    ) -> Result<Option<Manual>, PortError>;
    /// Inserts unless the user already has a manual with the same sha256 (checked atomically).
    async fn insert(&self, manual: &Manual) -> Result<InsertOutcome, PortError>;
    async fn get(&self, user: &UserId, manual_id: &str) -> Result<Option<Manual>, PortError>;
    /// `after` is a `next_token` from an earlier page; an unreadable one is [`ListError::BadToken`].
    async fn list(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ManualPage, ListError>;
    async fn list_ready(&self, user: &UserId) -> Result<Vec<Manual>, PortError>;
    /// Records the end of processing; only a manual still `processing` moves. Returns whether it moved.
    async fn finish_processing(
        &self,
        user: &UserId,
        manual_id: &str,
        outcome: &ProcessingOutcome,
    ) -> Result<bool, PortError>;
    /// Records the content of an `uploading` manual and moves it to `processing`, unless the
    /// user already has a manual with the same sha256 (checked atomically, as in `insert`).
    async fn upload_arrived(
        &self,
        user: &UserId,
        manual_id: &str,
        arrived: &ArrivedUpload,
    ) -> Result<ArrivalOutcome, PortError>;
    /// Returns whether a record was deleted.
    async fn delete(&self, user: &UserId, manual_id: &str) -> Result<bool, PortError>;
    /// Counts one answered question that cited each of `manual_ids` (the user's own; ids of
    /// manuals that no longer exist are skipped, never created).
    async fn record_citations(
        &self,
        user: &UserId,
        manual_ids: &[String],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError>;
    /// How many answered questions cited the manual, and when the last one did.
    async fn citations(&self, user: &UserId, manual_id: &str) -> Result<Citations, PortError>;
}

/// A manual's statistics shown on its detail (the predecessor's `queryCount`, `lastQueried`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Citations {
    pub count: u64,
    pub last: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the pagination token is not valid")]
    BadToken,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Search over a user's manuals. The user is a required argument: no call can skip the tenant filter.
#[async_trait]
pub trait KnowledgeBase: Send + Sync {
    /// Registers a manual before its file is stored (Bedrock reads a metadata sidecar that must
    /// exist when the file arrives). Nothing to do for an index that is fed the pages.
    async fn prepare(&self, _manual: &Manual) -> Result<(), PortError> {
        Ok(())
    }
    /// Makes a manual's pages searchable (replacing whatever was indexed for it before).
    async fn ingest(&self, manual: &Manual, pages: &[String]) -> Result<(), PortError>;
    /// Best passages for `question` among `user`'s manuals, optionally only within `manual_ids`.
    async fn retrieve(
        &self,
        user: &UserId,
        question: &str,
        manual_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<RetrievedChunk>, PortError>;
    /// Takes a manual out of search (its owner and key say where it is).
    async fn remove(&self, manual: &Manual) -> Result<(), PortError>;
    /// The owner [`KnowledgeBase::prepare`] recorded for the manual file at `key`, for an index
    /// that keeps one beside the file (Bedrock's metadata sidecar): how an event naming only
    /// the key (whose owner part is a pseudonym) finds its manual. `None` when nothing was
    /// recorded.
    async fn owner_of(&self, key: &str) -> Result<Option<UserId>, PortError>;
    /// How many passages the manual was split into for search, when this index knows (a managed
    /// knowledge base that chunks documents itself does not say: `None`).
    async fn chunk_count(&self, _manual: &Manual) -> Result<Option<u64>, PortError> {
        Ok(None)
    }
}

/// Turns retrieved passages into a grounded, cited answer.
#[async_trait]
pub trait AnswerModel: Send + Sync {
    /// `passages` are `user`'s, best first.
    async fn answer(
        &self,
        user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
    ) -> Result<Answer, PortError>;

    /// [`AnswerModel::answer`], with the words handed to `text` as they are produced, their
    /// `[n]` citing the n-th of `passages` (see [`crate::answer_text`]). Once `text` is closed
    /// the model stops and returns what it has. This default computes the whole answer, then
    /// hands it on a sentence at a time (a refusal hands on nothing).
    async fn answer_streaming(
        &self,
        user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
        text: AnswerText,
    ) -> Result<Answer, PortError> {
        let answer = self.answer(user, question, passages).await?;
        if answer.found {
            let numbered = passage_numbered(&answer.text, &answer.cited);
            for piece in sentence_pieces(&numbered) {
                if text.send(piece.to_owned()).await.is_err() {
                    break;
                }
            }
        }
        Ok(answer)
    }
}

/// Hands a stored manual to processing (in AWS the S3 event does this by itself).
#[async_trait]
pub trait IngestionQueue: Send + Sync {
    async fn enqueue(&self, user: &UserId, manual_id: &str) -> Result<(), PortError>;
}

/// Why a document's text could not be read.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ReadError {
    #[error("the PDF is encrypted or password-protected")]
    Encrypted,
    #[error("the file is damaged or not a valid {0}")]
    Damaged(&'static str),
    #[error("{0}")]
    Unavailable(String),
    /// The document is over one of the [`IngestionLimits`].
    #[error("the document exceeds the {0:?} limit")]
    Exceeds(Limit),
}

/// Text per page of a document. CPU-bound and synchronous: callers run it off the async runtime.
pub trait DocumentReader: Send + Sync {
    /// Stops with [`ReadError::Exceeds`] as soon as the page count, a page's text or the
    /// document's text is over `limits` (before reading the rest).
    fn read_pages(
        &self,
        kind: DocumentKind,
        bytes: &[u8],
        limits: &IngestionLimits,
    ) -> Result<Vec<String>, ReadError>;
}

/// A page drawn as an image, with the passages asked for highlighted.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedPage {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// How many pages the document has.
    pub page_count: u32,
    /// How many places on the page were highlighted (0 when the text was not found there).
    pub highlights: u32,
}

/// Why a page could not be drawn.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("the document has {page_count} pages")]
    NoSuchPage { page_count: u32 },
    #[error("the PDF is encrypted or password-protected")]
    Encrypted,
    #[error("the file is damaged or not a valid PDF")]
    Damaged,
    #[error("{0}")]
    Unavailable(String),
    /// Drawing it went past a limit of the renderer's (memory, time): this page cannot be drawn
    /// here, although the document is fine to read.
    #[error("{0}")]
    Exceeded(String),
}

/// Draws one page of a PDF (CPU-bound and synchronous: callers run it off the async runtime).
pub trait PageRenderer: Send + Sync {
    /// Page `page` (1-based) of `pdf` at `scale` × 72 dpi, every occurrence of `highlight`
    /// (when given) filled with `rgba` (its alpha is the fill's opacity).
    fn render(
        &self,
        pdf: &[u8],
        page: u32,
        scale: f32,
        highlight: Option<&str>,
        rgba: [u8; 4],
    ) -> Result<RenderedPage, RenderError>;
}

/// Atomic windowed counters for rate limiting (SQLite locally, DynamoDB in AWS).
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Adds one hit to `key`'s counter, which expires at `expires_at` (unix seconds), and
    /// returns the count including this hit.
    async fn hit(&self, key: &str, expires_at: i64) -> Result<u64, PortError>;
}

/// Remembers signatures already used, so a captured signed request cannot be replayed.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Records `signature` until `expires_at`; returns false when it was already recorded.
    async fn first_use(&self, signature: &str, expires_at: i64) -> Result<bool, PortError>;
}

/// Per-user counters and cost records (the usage table).
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Counts one `operation` in both the day and the month of `windows`, atomically and only if
    /// neither is at its limit; otherwise changes nothing.
    async fn reserve(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
        operation: Operation,
    ) -> Result<Reservation, PortError>;
    /// Gives back a reservation made in `windows` (after a failure on our side).
    async fn refund(&self, user: &UserId, windows: &QuotaWindows) -> Result<(), PortError>;
    /// The counters of `windows` and when they last moved.
    async fn usage(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<UsageState, PortError>;
    /// The daily counts of the given days (`YYYY-MM-DD`), missing days as 0.
    async fn daily_counts(&self, user: &UserId, days: &[String]) -> Result<Vec<u64>, PortError>;
    async fn record_cost(&self, user: &UserId, record: &CostRecord) -> Result<(), PortError>;
    /// Cost records at or after `since`, newest first.
    async fn costs_since(
        &self,
        user: &UserId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CostRecord>, PortError>;
    /// Deletes every cost record of `user` and every counter but those of `keep` (the current
    /// day and month, kept under [`crate::usage::quota_owner`] so the quota holds across an
    /// erase); returns how many records were removed.
    async fn erase(&self, user: &UserId, keep: &QuotaWindows) -> Result<u64, PortError>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct UsageState {
    pub numbers: UsageNumbers,
    pub last_operation: Option<Operation>,
    pub last_updated: Option<chrono::DateTime<chrono::Utc>>,
}

/// The errors table: one record per fingerprint, counted (error-processor).
#[async_trait]
pub trait ErrorStore: Send + Sync {
    /// Counts `occurrence` under its fingerprint (creating the record the first time, keeping it
    /// until `expires_at`, unix seconds); returns the count including this one.
    async fn record(
        &self,
        occurrence: &crate::failure::ErrorOccurrence,
        expires_at: i64,
    ) -> Result<u64, PortError>;
    /// True for at most one caller per `fingerprint` per `window`: who may send the alert.
    async fn claim_alert(
        &self,
        fingerprint: &str,
        now: chrono::DateTime<chrono::Utc>,
        window: Duration,
    ) -> Result<bool, PortError>;
}

/// Where work that failed for good is reported (the SQS dead-letter queue in AWS).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn send(&self, report: &crate::failure::FailureReport) -> Result<(), PortError>;
}

/// Alerts for people on call (SNS in AWS).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), PortError>;
}

/// Speech to text (Amazon Transcribe in AWS, Whisper locally).
#[async_trait]
pub trait Transcriber: Send + Sync {
    /// Whether this transcriber can hear `format` (the AWS one hears every format
    /// [`crate::audio::check`] accepts; the offline one decodes fewer).
    fn accepts(&self, _format: crate::audio::AudioFormat) -> bool {
        true
    }
    /// The words spoken in `audio`, which [`crate::audio::check`] has already accepted as
    /// `clip`. Gives up with [`PortError::Unavailable`] rather than run past `deadline`.
    async fn transcribe(
        &self,
        user: &UserId,
        audio: Bytes,
        clip: &AudioClip,
        deadline: Option<Deadline>,
    ) -> Result<String, PortError>;
}

/// Records of idempotent requests (SQLite locally, DynamoDB in AWS), by hashed record key.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Marks `key` in progress until `in_progress_until` (unix seconds) unless a record that
    /// has not expired by `now` exists, atomically; otherwise returns that record.
    async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        now: i64,
        in_progress_until: i64,
    ) -> Result<crate::idempotency::Claim, PortError>;
    /// Stores the response of a request that claimed `key`, kept until `expires_at`.
    async fn complete(
        &self,
        key: &str,
        payload_hash: &str,
        response: &crate::idempotency::StoredResponse,
        expires_at: i64,
    ) -> Result<(), PortError>;
    /// Frees `key` after a failed request.
    async fn release(&self, key: &str) -> Result<(), PortError>;
    /// Deletes every record whose key starts with `prefix` (one user's, see
    /// [`crate::idempotency::user_prefix`]); returns how many there were.
    async fn erase_prefix(&self, prefix: &str) -> Result<u64, PortError>;
}
