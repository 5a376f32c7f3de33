//! The answer cache: L1 in the process (moka, bounded by bytes, TTL per kind of entry) and an
//! optional L2 shared across processes (Redis), read through with promotion to L1, one
//! computation per key under concurrent misses. An L2 failure is counted and bypassed, never
//! an error to the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::PortError;
use crate::error::ApiError;

/// A store shared by every process (Redis in production and optionally locally).
#[async_trait]
pub trait L2Cache: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), PortError>;
    /// Deletes every key starting with `prefix`; returns how many were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Answer,
    ManualList,
    QuotaView,
}

impl EntryKind {
    fn name(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::ManualList => "manuals",
            Self::QuotaView => "quota",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub l1_max_bytes: u64,
    pub answer_ttl: Duration,
    pub manual_list_ttl: Duration,
    pub quota_view_ttl: Duration,
    /// L2 values larger than this are compressed.
    pub compress_above_bytes: usize,
    /// An L2 call slower than this is abandoned (and counted as an error).
    pub l2_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            l1_max_bytes: 64 * 1024 * 1024,
            answer_ttl: Duration::from_secs(3600),
            manual_list_ttl: Duration::from_secs(60),
            quota_view_ttl: Duration::from_secs(10),
            compress_above_bytes: 1024,
            l2_timeout: Duration::from_millis(150),
        }
    }
}

impl CacheConfig {
    fn ttl(&self, kind: EntryKind) -> Duration {
        match kind {
            EntryKind::Answer => self.answer_ttl,
            EntryKind::ManualList => self.manual_list_ttl,
            EntryKind::QuotaView => self.quota_view_ttl,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    Hit,
    Miss,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub l1_hits: u64,
    pub l2_hits: u64,
    pub misses: u64,
    pub l2_errors: u64,
}

#[derive(Default)]
struct Counters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    l2_errors: AtomicU64,
}

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct Cache {
    l1: moka::future::Cache<String, Entry>,
    l2: Option<Arc<dyn L2Cache>>,
    config: CacheConfig,
    counters: Counters,
}

const RAW: u8 = 0;
const LZ4: u8 = 1;

fn encode(bytes: &[u8], compress_above: usize) -> Vec<u8> {
    if bytes.len() > compress_above {
        let mut out = vec![LZ4];
        out.extend(lz4_flex::compress_prepend_size(bytes));
        out
    } else {
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(RAW);
        out.extend_from_slice(bytes);
        out
    }
}

fn decode(stored: &[u8]) -> Option<Vec<u8>> {
    match stored.split_first()? {
        (&RAW, rest) => Some(rest.to_vec()),
        (&LZ4, rest) => lz4_flex::decompress_size_prepended(rest).ok(),
        _ => None,
    }
}

impl Cache {
    pub fn new(config: CacheConfig, l2: Option<Arc<dyn L2Cache>>) -> Self {
        let l1 = moka::future::Cache::builder()
            .max_capacity(config.l1_max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.bytes.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .build();
        Self {
            l1,
            l2,
            config,
            counters: Counters::default(),
        }
    }

    /// The key of an entry: namespaced by kind, user and the user's corpus version.
    pub fn key(kind: EntryKind, user: &str, corpus_version: &str, detail: &str) -> String {
        format!("manuel:{}:{user}:{corpus_version}:{detail}", kind.name())
    }

    fn user_prefixes(user: &str) -> Vec<String> {
        [
            EntryKind::Answer,
            EntryKind::ManualList,
            EntryKind::QuotaView,
        ]
        .iter()
        .map(|kind| format!("manuel:{}:{user}:", kind.name()))
        .collect()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            l1_hits: self.counters.l1_hits.load(Ordering::Relaxed),
            l2_hits: self.counters.l2_hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            l2_errors: self.counters.l2_errors.load(Ordering::Relaxed),
        }
    }

    fn l2_failed(&self, operation: &str, error: &dyn std::fmt::Display) {
        self.counters.l2_errors.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::record(crate::telemetry::Metric::CacheL2Errors, 1.0);
        tracing::warn!(operation, %error, "L2 cache unavailable; bypassed");
    }

    async fn l2_get(&self, key: &str) -> Option<Vec<u8>> {
        let l2 = self.l2.as_ref()?;
        match tokio::time::timeout(self.config.l2_timeout, l2.get(key)).await {
            Ok(Ok(stored)) => stored.and_then(|stored| decode(&stored)),
            Ok(Err(error)) => {
                self.l2_failed("get", &error);
                None
            }
            Err(_) => {
                self.l2_failed("get", &"timed out");
                None
            }
        }
    }

    async fn l2_set(&self, key: &str, value: &[u8], ttl: Duration) {
        let Some(l2) = self.l2.as_ref() else { return };
        let encoded = encode(value, self.config.compress_above_bytes);
        match tokio::time::timeout(self.config.l2_timeout, l2.set(key, &encoded, ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.l2_failed("set", &error),
            Err(_) => self.l2_failed("set", &"timed out"),
        }
    }

    /// The cached value of `key`, or the value `compute` produces (stored in L1 and L2). Under
    /// concurrent misses only one caller computes; the others wait and receive its value as a
    /// hit. Errors are not cached.
    pub async fn get_or_compute<F, Fut>(
        &self,
        kind: EntryKind,
        key: &str,
        compute: F,
    ) -> Result<(Arc<[u8]>, CacheStatus), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, ApiError>>,
    {
        let ttl = self.config.ttl(kind);
        let looked_up = AtomicBool::new(false);
        let computed = AtomicBool::new(false);
        let entry = self
            .l1
            .try_get_with(key.to_owned(), async {
                looked_up.store(true, Ordering::Relaxed);
                if let Some(bytes) = self.l2_get(key).await {
                    self.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Entry {
                        bytes: bytes.into(),
                        ttl,
                    });
                }
                computed.store(true, Ordering::Relaxed);
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                let bytes = compute().await?;
                self.l2_set(key, &bytes, ttl).await;
                Ok::<_, ApiError>(Entry {
                    bytes: bytes.into(),
                    ttl,
                })
            })
            .await
            .map_err(|error: Arc<ApiError>| (*error).clone())?;
        if !looked_up.load(Ordering::Relaxed) {
            self.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
        }
        let status = if computed.load(Ordering::Relaxed) {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        Ok((entry.bytes, status))
    }

    /// The cached value of `key` (L1, then L2, which fills L1), without computing it: for
    /// callers that produce the value piece by piece and [`Cache::put`] it when done.
    pub async fn get(&self, kind: EntryKind, key: &str) -> Option<Arc<[u8]>> {
        if let Some(entry) = self.l1.get(key).await {
            self.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            return Some(entry.bytes);
        }
        let Some(bytes) = self.l2_get(key).await else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            bytes: bytes.into(),
            ttl: self.config.ttl(kind),
        };
        self.l1.insert(key.to_owned(), entry.clone()).await;
        Some(entry.bytes)
    }

    /// Stores `bytes` under `key` in L1 and L2.
    pub async fn put(&self, kind: EntryKind, key: &str, bytes: Vec<u8>) {
        let ttl = self.config.ttl(kind);
        self.l2_set(key, &bytes, ttl).await;
        let entry = Entry {
            bytes: bytes.into(),
            ttl,
        };
        self.l1.insert(key.to_owned(), entry).await;
    }

    /// Forgets every entry of `user`, in L1 and L2 (erasure). Returns how many L2 keys went.
    pub async fn purge_user(&self, user: &str) -> Result<u64, PortError> {
        let prefixes = Self::user_prefixes(user);
        let l1_prefixes = prefixes.clone();
        self.l1
            .invalidate_entries_if(move |key, _| {
                l1_prefixes.iter().any(|prefix| key.starts_with(prefix))
            })
            .map_err(PortError::failed)?;
        let mut removed = 0;
        if let Some(l2) = &self.l2 {
            for prefix in &prefixes {
                removed += l2.delete_prefix(prefix).await?;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemoryL2 {
        values: Mutex<HashMap<String, Vec<u8>>>,
        broken: AtomicBool,
    }

    #[async_trait]
    impl L2Cache for MemoryL2 {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(PortError::failed("down"));
            }
            Ok(self
                .values
                .lock()
                .ok()
                .and_then(|values| values.get(key).cloned()))
        }
        async fn set(&self, key: &str, value: &[u8], _ttl: Duration) -> Result<(), PortError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(PortError::failed("down"));
            }
            if let Ok(mut values) = self.values.lock() {
                values.insert(key.to_owned(), value.to_vec());
            }
            Ok(())
        }
        async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError> {
            let mut values = self
                .values
                .lock()
                .map_err(|_| PortError::failed("poisoned"))?;
            let before = values.len();
            values.retain(|key, _| !key.starts_with(prefix));
            Ok((before - values.len()) as u64)
        }
    }

    #[test]
    fn encoding_round_trips_and_compresses_large_values() {
        let small = b"short".to_vec();
        assert_eq!(encode(&small, 16)[0], RAW);
        assert_eq!(decode(&encode(&small, 16)), Some(small));
        let large = "the same sentence again. ".repeat(400).into_bytes();
        let encoded = encode(&large, 1024);
        assert_eq!(encoded[0], LZ4);
        assert!(encoded.len() < large.len() / 4);
        assert_eq!(decode(&encoded), Some(large));
        assert_eq!(decode(&[9, 1, 2]), None);
        assert_eq!(decode(&[]), None);
    }

    #[tokio::test]
    async fn a_put_value_is_got_from_l1_and_from_l2_in_another_process() {
        let l2 = Arc::new(MemoryL2::default());
        let cache = Cache::new(CacheConfig::default(), Some(l2.clone()));
        let key = Cache::key(EntryKind::Answer, "alice", "v1", "q");
        assert!(cache.get(EntryKind::Answer, &key).await.is_none());
        cache
            .put(EntryKind::Answer, &key, b"streamed".to_vec())
            .await;
        assert_eq!(
            cache.get(EntryKind::Answer, &key).await.as_deref(),
            Some(&b"streamed"[..])
        );
        let other = Cache::new(CacheConfig::default(), Some(l2.clone()));
        assert_eq!(
            other.get(EntryKind::Answer, &key).await.as_deref(),
            Some(&b"streamed"[..])
        );
        assert_eq!((other.stats().l2_hits, other.stats().l1_hits), (1, 0));
        // The same entry serves get_or_compute as a hit.
        let (_, status) = other
            .get_or_compute(EntryKind::Answer, &key, || async {
                Err(ApiError::internal("must not run"))
            })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(status, CacheStatus::Hit);
        let bob = Cache::key(EntryKind::Answer, "bob", "v1", "q");
        assert!(other.get(EntryKind::Answer, &bob).await.is_none());
    }

    #[tokio::test]
    async fn misses_compute_once_and_hits_come_from_l1_then_l2() {
        let l2 = Arc::new(MemoryL2::default());
        let cache = Cache::new(CacheConfig::default(), Some(l2.clone()));
        let key = Cache::key(EntryKind::Answer, "alice", "v1", "q");
        let (value, status) = cache
            .get_or_compute(EntryKind::Answer, &key, || async { Ok(b"answer".to_vec()) })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!((&*value, status), (&b"answer"[..], CacheStatus::Miss));
        let (_, status) = cache
            .get_or_compute(EntryKind::Answer, &key, || async {
                Err(ApiError::internal("must not run"))
            })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(status, CacheStatus::Hit);

        // A second process (empty L1) finds it in L2.
        let other = Cache::new(CacheConfig::default(), Some(l2.clone()));
        let (value, status) = other
            .get_or_compute(EntryKind::Answer, &key, || async {
                Err(ApiError::internal("must not run"))
            })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!((&*value, status), (&b"answer"[..], CacheStatus::Hit));
        assert_eq!(other.stats().l2_hits, 1);
    }

    #[tokio::test]
    async fn concurrent_misses_compute_once() {
        let cache = Arc::new(Cache::new(CacheConfig::default(), None));
        let runs = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, runs) = (cache.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute(EntryKind::Answer, "k", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(b"v".to_vec())
                    })
                    .await
                    .map(|(_, status)| status)
            }));
        }
        let mut misses = 0;
        for task in tasks {
            if matches!(task.await, Ok(Ok(CacheStatus::Miss))) {
                misses += 1;
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1);
    }

    #[tokio::test]
    async fn a_broken_l2_is_bypassed_and_errors_are_not_cached() {
        let l2 = Arc::new(MemoryL2::default());
        l2.broken.store(true, Ordering::SeqCst);
        let cache = Cache::new(CacheConfig::default(), Some(l2));
        let failed = cache
            .get_or_compute(EntryKind::Answer, "k", || async {
                Err(ApiError::internal("boom"))
            })
            .await;
        assert!(failed.is_err());
        let (value, status) = cache
            .get_or_compute(EntryKind::Answer, "k", || async { Ok(b"v".to_vec()) })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!((&*value, status), (&b"v"[..], CacheStatus::Miss));
        assert!(cache.stats().l2_errors >= 2);
    }

    #[tokio::test]
    async fn entries_expire_and_purge_forgets_one_user() {
        let config = CacheConfig {
            answer_ttl: Duration::from_millis(100),
            ..CacheConfig::default()
        };
        let l2 = Arc::new(MemoryL2::default());
        let cache = Cache::new(config, Some(l2.clone()));
        let alice = Cache::key(EntryKind::Answer, "alice", "v", "q");
        let bob = Cache::key(EntryKind::Answer, "bob", "v", "q");
        for key in [&alice, &bob] {
            let _ = cache
                .get_or_compute(EntryKind::Answer, key, || async { Ok(b"v".to_vec()) })
                .await;
        }
        assert_eq!(cache.purge_user("alice").await.ok(), Some(1));
        let (_, status) = cache
            .get_or_compute(EntryKind::Answer, &bob, || async { Ok(b"v".to_vec()) })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(status, CacheStatus::Hit);
        let (_, status) = cache
            .get_or_compute(EntryKind::Answer, &alice, || async { Ok(b"v".to_vec()) })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(status, CacheStatus::Miss, "purged");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let fresh = Cache::new(
            CacheConfig {
                answer_ttl: Duration::from_millis(100),
                ..CacheConfig::default()
            },
            None,
        );
        let (_, status) = fresh
            .get_or_compute(EntryKind::Answer, &bob, || async { Ok(b"v".to_vec()) })
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(status, CacheStatus::Miss);
        // L1 expired, so the value comes from L2 (whose own TTL this fake ignores).
        let l2_hits = cache.stats().l2_hits;
        let _ = cache
            .get_or_compute(EntryKind::Answer, &bob, || async { Ok(b"v".to_vec()) })
            .await;
        assert_eq!(cache.stats().l2_hits, l2_hits + 1);
    }
}
