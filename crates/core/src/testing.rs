//! In-memory stand-ins for the ports, for router tests that need no network (the
//! `test-support` feature). Each keeps real state where a router's behaviour depends on it:
//! quota counters and cost records ([`MemoryUsage`]), stored objects ([`MemoryObjects`]),
//! manual records with their citations ([`MemoryManuals`]).
//!
//! What they forgive: no latency, no throttling, no IAM; links are signed by nothing
//! (`memory://` URLs); rate limits, replay checks and idempotency never refuse
//! ([`Unlimited`]); retrieval returns the passages it was given whatever the question
//! ([`Passages`]). Failures happen only when a test asks for them ([`Passages::fail`],
//! [`FirstPassageModel::fail`]). Behaviour that depends on the real services is tested against
//! them (moto, the Lambda harness, manuel-local end to end).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::PortError;
use crate::audio::AudioClip;
use crate::auth::{GatewayClaims, JwtVerifier};
use crate::deadline::Deadline;
use crate::domain::{
    Answer, ArrivedUpload, Manual, ManualStatus, ProcessingOutcome, RetrievedChunk, UserId,
};
use crate::idempotency::{Claim, StoredResponse};
use crate::ports::{
    AnswerModel, ArrivalOutcome, Citations, IdempotencyStore, InsertOutcome, KnowledgeBase,
    ListError, ManualPage, ManualRepository, ObjectStore, RateLimitStore, ReplayGuard, Transcriber,
    UploadLink, UsageState, UsageStore,
};
use crate::security::{Security, SecurityConfig, SourceIp, Stage};
use crate::usage::{CostRecord, Operation, QuotaLimits, QuotaWindows, Reservation, UsageNumbers};

fn locked<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, PortError> {
    mutex
        .lock()
        .map_err(|_| PortError::failed("a fake's lock was poisoned"))
}

fn unavailable(service: &'static str) -> PortError {
    PortError::Unavailable {
        service,
        message: "failing as the test asked".to_owned(),
    }
}

/// The security layers with everything that could refuse turned off but authentication: a
/// request is the user its [`as_user`] claims say, as behind API Gateway's authorizer.
pub fn security() -> Security {
    let verifier = JwtVerifier::new(
        &jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
        "https://issuer.invalid",
        "test-client",
    )
    .trusting_gateway_claims(true);
    let unlimited = Arc::new(Unlimited);
    Security {
        config: Arc::new(SecurityConfig::defaults(Stage::Dev)),
        verifier: Arc::new(verifier),
        rate_limits: unlimited.clone(),
        replay_guard: unlimited.clone(),
        idempotency: unlimited,
        idempotency_config: Default::default(),
    }
}

/// `request` as `user` sends it from a client address, past API Gateway's authorizer.
pub fn as_user(mut request: Request<Body>, user: &str) -> Request<Body> {
    request.extensions_mut().insert(GatewayClaims {
        sub: user.to_owned(),
    });
    request
        .extensions_mut()
        .insert(SourceIp([203, 0, 113, 7].into()));
    request
}

/// Counters per user, day and month, and the cost records, as the usage table keeps them.
#[derive(Default)]
pub struct MemoryUsage {
    counters: Mutex<HashMap<(String, String), u64>>,
    costs: Mutex<Vec<(UserId, CostRecord)>>,
}

impl MemoryUsage {
    /// `user`'s questions counted in the day of `windows`.
    pub fn daily_used(&self, user: &UserId, windows: &QuotaWindows) -> u64 {
        self.count(user, &windows.day)
    }

    fn count(&self, user: &UserId, window: &str) -> u64 {
        self.counters
            .lock()
            .map(|counters| {
                counters
                    .get(&(user.as_str().to_owned(), window.to_owned()))
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Every cost recorded for `user`, oldest first.
    pub fn costs(&self, user: &UserId) -> Vec<CostRecord> {
        self.costs
            .lock()
            .map(|costs| {
                costs
                    .iter()
                    .filter(|(owner, _)| owner == user)
                    .map(|(_, cost)| cost.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn numbers(&self, user: &UserId, windows: &QuotaWindows, limits: QuotaLimits) -> UsageNumbers {
        UsageNumbers {
            daily_used: self.count(user, &windows.day),
            daily_limit: limits.daily,
            monthly_used: self.count(user, &windows.month),
            monthly_limit: limits.monthly,
        }
    }
}

#[async_trait]
impl UsageStore for MemoryUsage {
    async fn reserve(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
        _operation: Operation,
    ) -> Result<Reservation, PortError> {
        let mut counters = locked(&self.counters)?;
        let key = |window: &str| (user.as_str().to_owned(), window.to_owned());
        let day = counters.get(&key(&windows.day)).copied().unwrap_or(0);
        let month = counters.get(&key(&windows.month)).copied().unwrap_or(0);
        let numbers = |day, month| UsageNumbers {
            daily_used: day,
            daily_limit: limits.daily,
            monthly_used: month,
            monthly_limit: limits.monthly,
        };
        if day >= limits.daily || month >= limits.monthly {
            return Ok(Reservation::Refused(numbers(day, month)));
        }
        counters.insert(key(&windows.day), day + 1);
        counters.insert(key(&windows.month), month + 1);
        Ok(Reservation::Granted(numbers(day + 1, month + 1)))
    }

    async fn refund(&self, user: &UserId, windows: &QuotaWindows) -> Result<(), PortError> {
        let mut counters = locked(&self.counters)?;
        for window in [&windows.day, &windows.month] {
            if let Some(count) = counters.get_mut(&(user.as_str().to_owned(), window.clone())) {
                *count = count.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn usage(
        &self,
        user: &UserId,
        windows: &QuotaWindows,
        limits: QuotaLimits,
    ) -> Result<UsageState, PortError> {
        Ok(UsageState {
            numbers: self.numbers(user, windows, limits),
            last_operation: None,
            last_updated: None,
        })
    }

    async fn daily_counts(&self, user: &UserId, days: &[String]) -> Result<Vec<u64>, PortError> {
        Ok(days.iter().map(|day| self.count(user, day)).collect())
    }

    async fn record_cost(&self, user: &UserId, record: &CostRecord) -> Result<(), PortError> {
        locked(&self.costs)?.push((user.clone(), record.clone()));
        Ok(())
    }

    async fn costs_since(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<CostRecord>, PortError> {
        let mut costs: Vec<CostRecord> = self
            .costs(user)
            .into_iter()
            .filter(|cost| cost.timestamp >= since)
            .collect();
        costs.reverse();
        Ok(costs)
    }

    async fn erase(&self, user: &UserId, keep: &QuotaWindows) -> Result<u64, PortError> {
        let mut removed = 0;
        {
            let mut costs = locked(&self.costs)?;
            let before = costs.len();
            costs.retain(|(owner, _)| owner != user);
            removed += (before - costs.len()) as u64;
        }
        let mut counters = locked(&self.counters)?;
        let before = counters.len();
        counters.retain(|(owner, window), _| {
            owner != user.as_str() || *window == keep.day || *window == keep.month
        });
        removed += (before - counters.len()) as u64;
        Ok(removed)
    }
}

/// Objects in memory; links are `memory://objects/<key>?expires=<seconds>`, recognised again
/// by [`ObjectStore::key_of_link`].
#[derive(Default)]
pub struct MemoryObjects {
    objects: Mutex<HashMap<String, Bytes>>,
}

const LINK_PREFIX: &str = "memory://objects/";

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), PortError> {
        locked(&self.objects)?.insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        Ok(locked(&self.objects)?.get(key).cloned())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        locked(&self.objects)?.remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        let mut objects = locked(&self.objects)?;
        let before = objects.len();
        objects.retain(|key, _| !key.starts_with(prefix));
        Ok((before - objects.len()) as u64)
    }

    fn key_of_link(&self, link: &str) -> Option<String> {
        let rest = link.strip_prefix(LINK_PREFIX)?;
        Some(rest.split(['?', '#']).next()?.to_owned())
    }

    async fn download_link(
        &self,
        key: &str,
        _file_name: &str,
        _content_type: &str,
        ttl: Duration,
    ) -> Result<String, PortError> {
        Ok(format!("{LINK_PREFIX}{key}?expires={}", ttl.as_secs()))
    }

    async fn upload_link(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<UploadLink, PortError> {
        Ok(UploadLink {
            url: format!("{LINK_PREFIX}{key}?expires={}", ttl.as_secs()),
            headers: vec![
                ("Content-Type".to_owned(), content_type.to_owned()),
                ("Content-Length".to_owned(), content_length.to_string()),
            ],
        })
    }
}

/// Manual records per user, with the questions that cited each.
#[derive(Default)]
pub struct MemoryManuals {
    manuals: Mutex<Vec<Manual>>,
    citations: Mutex<HashMap<(String, String), Citations>>,
}

impl MemoryManuals {
    pub fn with(manuals: Vec<Manual>) -> Self {
        Self {
            manuals: Mutex::new(manuals),
            citations: Mutex::default(),
        }
    }

    fn of(&self, user: &UserId) -> Vec<Manual> {
        let mut manuals: Vec<Manual> = self
            .manuals
            .lock()
            .map(|all| all.iter().filter(|m| &m.user_id == user).cloned().collect())
            .unwrap_or_default();
        manuals.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        manuals
    }
}

#[async_trait]
impl ManualRepository for MemoryManuals {
    async fn find_by_sha256(
        &self,
        user: &UserId,
        sha256: &str,
    ) -> Result<Option<Manual>, PortError> {
        Ok(self.of(user).into_iter().find(|m| m.sha256 == sha256))
    }

    async fn insert(&self, manual: &Manual) -> Result<InsertOutcome, PortError> {
        if let Some(existing) = self.find_by_sha256(&manual.user_id, &manual.sha256).await? {
            return Ok(InsertOutcome::Duplicate(existing));
        }
        locked(&self.manuals)?.push(manual.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, user: &UserId, manual_id: &str) -> Result<Option<Manual>, PortError> {
        Ok(self.of(user).into_iter().find(|m| m.id == manual_id))
    }

    /// Pages by position: `after` is the id of the last manual of the previous page.
    async fn list(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ManualPage, ListError> {
        let manuals = self.of(user);
        let start = match after {
            None => 0,
            Some(id) => {
                manuals
                    .iter()
                    .position(|m| m.id == id)
                    .ok_or(ListError::BadToken)?
                    + 1
            }
        };
        let page: Vec<Manual> = manuals.iter().skip(start).take(limit).cloned().collect();
        let next_token = (start + page.len() < manuals.len())
            .then(|| page.last().map(|m| m.id.clone()))
            .flatten();
        Ok(ManualPage {
            manuals: page,
            next_token,
        })
    }

    async fn list_ready(&self, user: &UserId) -> Result<Vec<Manual>, PortError> {
        Ok(self
            .of(user)
            .into_iter()
            .filter(|m| m.status == ManualStatus::Ready)
            .collect())
    }

    async fn finish_processing(
        &self,
        user: &UserId,
        manual_id: &str,
        outcome: &ProcessingOutcome,
    ) -> Result<bool, PortError> {
        let mut manuals = locked(&self.manuals)?;
        let Some(manual) = manuals.iter_mut().find(|m| {
            &m.user_id == user && m.id == manual_id && m.status == ManualStatus::Processing
        }) else {
            return Ok(false);
        };
        match outcome {
            ProcessingOutcome::Ready { pages } => {
                manual.status = ManualStatus::Ready;
                manual.pages = Some(*pages);
                manual.status_reason = None;
            }
            ProcessingOutcome::Failed { reason } => {
                manual.status = ManualStatus::Failed;
                manual.status_reason = Some(reason.clone());
            }
        }
        manual.updated_at = Utc::now();
        Ok(true)
    }

    async fn upload_arrived(
        &self,
        user: &UserId,
        manual_id: &str,
        arrived: &ArrivedUpload,
    ) -> Result<ArrivalOutcome, PortError> {
        let mut manuals = locked(&self.manuals)?;
        let Some(manual) = manuals.iter_mut().find(|m| {
            &m.user_id == user && m.id == manual_id && m.status == ManualStatus::Uploading
        }) else {
            return Ok(ArrivalOutcome::NotAwaited);
        };
        manual.status = ManualStatus::Processing;
        manual.size_bytes = arrived.size_bytes;
        manual.sha256.clone_from(&arrived.sha256);
        manual.kind = arrived.kind;
        manual.updated_at = Utc::now();
        Ok(ArrivalOutcome::Processing(manual.clone()))
    }

    async fn delete(&self, user: &UserId, manual_id: &str) -> Result<bool, PortError> {
        let mut manuals = locked(&self.manuals)?;
        let before = manuals.len();
        manuals.retain(|m| !(&m.user_id == user && m.id == manual_id));
        Ok(manuals.len() < before)
    }

    async fn record_citations(
        &self,
        user: &UserId,
        manual_ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut citations = locked(&self.citations)?;
        for id in manual_ids {
            let entry = citations
                .entry((user.as_str().to_owned(), id.clone()))
                .or_default();
            entry.count += 1;
            entry.last = Some(at);
        }
        Ok(())
    }

    async fn citations(&self, user: &UserId, manual_id: &str) -> Result<Citations, PortError> {
        Ok(locked(&self.citations)?
            .get(&(user.as_str().to_owned(), manual_id.to_owned()))
            .cloned()
            .unwrap_or_default())
    }
}

/// A knowledge base that finds the given passages for every question (at most `limit`), of
/// whichever user; the routers must keep to the caller's own manuals themselves. It remembers
/// the owner of each manual it prepared, as Bedrock's metadata sidecar does.
pub struct Passages {
    passages: Vec<RetrievedChunk>,
    failing: AtomicBool,
    owners: Mutex<HashMap<String, UserId>>,
}

impl Passages {
    pub fn new(passages: Vec<RetrievedChunk>) -> Self {
        Self {
            passages,
            failing: AtomicBool::new(false),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// From now on retrieval fails as an unavailable service does (`false` heals it).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl KnowledgeBase for Passages {
    async fn prepare(&self, manual: &Manual) -> Result<(), PortError> {
        locked(&self.owners)?.insert(manual.key.clone(), manual.user_id.clone());
        Ok(())
    }

    async fn ingest(&self, _manual: &Manual, _pages: &[String]) -> Result<(), PortError> {
        Ok(())
    }

    async fn retrieve(
        &self,
        _user: &UserId,
        _question: &str,
        manual_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(unavailable("knowledge base"));
        }
        Ok(self
            .passages
            .iter()
            .filter(|p| manual_ids.is_none_or(|ids| ids.contains(&p.manual_id)))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn remove(&self, _manual: &Manual) -> Result<(), PortError> {
        Ok(())
    }

    async fn owner_of(&self, key: &str) -> Result<Option<UserId>, PortError> {
        Ok(locked(&self.owners)?.get(key).cloned())
    }
}

/// A model that answers with the first passage, cited as `[1]`, and reports fixed token counts
/// (321 in, 12 out); it answers `found: false` without passages.
#[derive(Default)]
pub struct FirstPassageModel {
    failing: AtomicBool,
}

impl FirstPassageModel {
    /// From now on the model fails as an unavailable service does (`false` heals it).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl AnswerModel for FirstPassageModel {
    async fn answer(
        &self,
        _user: &UserId,
        _question: &str,
        passages: &[RetrievedChunk],
    ) -> Result<Answer, PortError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(unavailable("answer model"));
        }
        Ok(match passages.first() {
            Some(first) => Answer {
                text: format!("{} [1]", first.text),
                cited: vec![0],
                found: true,
                ranking: Vec::new(),
                input_tokens: 321,
                output_tokens: 12,
            },
            None => Answer {
                text: crate::domain::NOT_FOUND_ANSWER.to_owned(),
                cited: Vec::new(),
                found: false,
                ranking: Vec::new(),
                input_tokens: 321,
                output_tokens: 12,
            },
        })
    }
}

/// A model that streams the first passage a word at a time, `pause` apart (a generating model,
/// slowed down), cited `[1]`, and can fail after some words. It counts the words it produced:
/// once nobody listens it stops, as a model whose stream is closed stops generating.
///
/// What it forgives: a word is a token; its input count is fixed (321) and its output count is
/// the words it produced; it takes no time before the first word but `pause`.
pub struct PacedModel {
    pause: Duration,
    fail_after: Option<usize>,
    produced: std::sync::atomic::AtomicUsize,
}

impl PacedModel {
    pub fn new(pause: Duration) -> Self {
        Self {
            pause,
            fail_after: None,
            produced: Default::default(),
        }
    }

    /// A model that fails (unavailable) once it has produced `words` words.
    pub fn failing_after(words: usize, pause: Duration) -> Self {
        Self {
            fail_after: Some(words),
            ..Self::new(pause)
        }
    }

    /// How many words it has produced, over all its answers.
    pub fn produced(&self) -> usize {
        self.produced.load(Ordering::SeqCst)
    }

    fn answer_of(passages: &[RetrievedChunk], words: usize) -> Answer {
        let found = !passages.is_empty();
        Answer {
            text: match passages.first() {
                Some(first) => format!("{} [1]", first.text),
                None => crate::domain::NOT_FOUND_ANSWER.to_owned(),
            },
            cited: if found { vec![0] } else { Vec::new() },
            found,
            ranking: Vec::new(),
            input_tokens: 321,
            output_tokens: words as u64,
        }
    }
}

#[async_trait]
impl AnswerModel for PacedModel {
    async fn answer(
        &self,
        _user: &UserId,
        _question: &str,
        passages: &[RetrievedChunk],
    ) -> Result<Answer, PortError> {
        let words = passages
            .first()
            .map_or(0, |first| first.text.split_whitespace().count() + 1);
        Ok(Self::answer_of(passages, words))
    }

    async fn answer_streaming(
        &self,
        _user: &UserId,
        _question: &str,
        passages: &[RetrievedChunk],
        text: crate::answer_text::AnswerText,
    ) -> Result<Answer, PortError> {
        let Some(first) = passages.first() else {
            return Ok(Self::answer_of(passages, 0));
        };
        let cited = format!("{} [1]", first.text);
        let mut words = 0;
        for word in cited.split_inclusive(' ') {
            tokio::time::sleep(self.pause).await;
            if text.send(word.to_owned()).await.is_err() {
                break;
            }
            words += 1;
            self.produced.fetch_add(1, Ordering::SeqCst);
            if self.fail_after == Some(words) {
                return Err(unavailable("answer model"));
            }
        }
        Ok(Self::answer_of(passages, words))
    }
}

/// An ingestion queue that records what it was given, `(user, manual id)` in order.
#[derive(Default)]
pub struct RecordingQueue {
    queued: Mutex<Vec<(String, String)>>,
}

impl RecordingQueue {
    pub fn queued(&self) -> Vec<(String, String)> {
        self.queued
            .lock()
            .map(|queued| queued.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl crate::ports::IngestionQueue for RecordingQueue {
    async fn enqueue(&self, user: &UserId, manual_id: &str) -> Result<(), PortError> {
        locked(&self.queued)?.push((user.as_str().to_owned(), manual_id.to_owned()));
        Ok(())
    }
}

/// Speech recognition that hears the same words in every clip.
pub struct FixedSpeech(pub String);

#[async_trait]
impl Transcriber for FixedSpeech {
    async fn transcribe(
        &self,
        _user: &UserId,
        _audio: Bytes,
        _clip: &AudioClip,
        _deadline: Option<Deadline>,
    ) -> Result<String, PortError> {
        Ok(self.0.clone())
    }
}

/// Rate limits, replay checks and idempotency records that never refuse (their own tests run
/// against SQLite, DynamoDB on moto and Redis).
pub struct Unlimited;

#[async_trait]
impl RateLimitStore for Unlimited {
    async fn hit(&self, _key: &str, _expires_at: i64) -> Result<u64, PortError> {
        Ok(1)
    }
}

#[async_trait]
impl ReplayGuard for Unlimited {
    async fn first_use(&self, _signature: &str, _expires_at: i64) -> Result<bool, PortError> {
        Ok(true)
    }
}

#[async_trait]
impl IdempotencyStore for Unlimited {
    async fn claim(
        &self,
        _key: &str,
        _payload_hash: &str,
        _now: i64,
        _in_progress_until: i64,
    ) -> Result<Claim, PortError> {
        Ok(Claim::Claimed)
    }

    async fn complete(
        &self,
        _key: &str,
        _payload_hash: &str,
        _response: &StoredResponse,
        _expires_at: i64,
    ) -> Result<(), PortError> {
        Ok(())
    }

    async fn release(&self, _key: &str) -> Result<(), PortError> {
        Ok(())
    }

    async fn erase_prefix(&self, _prefix: &str) -> Result<u64, PortError> {
        Ok(0)
    }
}
