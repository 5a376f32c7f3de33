//! The L2 cache against a real redis-server that each test starts (and kills) itself.

use std::sync::Arc;
use std::time::Duration;

use manuel_core::cache::{Cache, CacheConfig, CacheStatus, EntryKind, L2Cache};
use manuel_redis::RedisL2;
use manuel_redis::test_server::RedisServer;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Waits until `l2` has connected. The first connection may time out on a busy machine (CI runs
/// tests side by side on 2 cores) and the next attempt comes a second later: the tests below
/// are about what is stored, not about the first attempt.
async fn connected(l2: &dyn L2Cache) -> TestResult {
    for _ in 0..100 {
        if l2.get("manuel:probe").await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("redis-server never accepted the connection".into())
}

#[tokio::test]
async fn values_round_trip_expire_and_delete_by_prefix() -> TestResult {
    let Some(server) = RedisServer::start(None)? else {
        return Ok(());
    };
    let l2 = RedisL2::new(&server.url())?;
    connected(&l2).await?;
    l2.set("manuel:answer:alice:v1:a", b"one", Duration::from_secs(60))
        .await?;
    l2.set(
        "manuel:answer:alice:v1:b",
        b"two",
        Duration::from_millis(200),
    )
    .await?;
    l2.set("manuel:answer:bob:v1:a", b"three", Duration::from_secs(60))
        .await?;
    assert_eq!(
        l2.get("manuel:answer:alice:v1:a").await?,
        Some(b"one".to_vec())
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(l2.get("manuel:answer:alice:v1:b").await?, None, "expired");
    assert_eq!(l2.delete_prefix("manuel:answer:alice:").await?, 1);
    assert_eq!(l2.get("manuel:answer:alice:v1:a").await?, None);
    assert_eq!(
        l2.get("manuel:answer:bob:v1:a").await?,
        Some(b"three".to_vec()),
        "other users untouched"
    );
    Ok(())
}

#[tokio::test]
async fn large_values_are_stored_compressed_and_shared_across_processes() -> TestResult {
    let Some(server) = RedisServer::start(None)? else {
        return Ok(());
    };
    let l2: Arc<dyn L2Cache> = Arc::new(RedisL2::new(&server.url())?);
    connected(l2.as_ref()).await?;
    let value = "Open the front cover and remove the cartridge. "
        .repeat(200)
        .into_bytes();
    let first = Cache::new(CacheConfig::default(), Some(l2.clone()));
    let key = Cache::key(EntryKind::Answer, "alice", "v1", "q");
    let expected = value.clone();
    let (_, status) = first
        .get_or_compute(EntryKind::Answer, &key, || async move { Ok(expected) })
        .await?;
    assert_eq!(status, CacheStatus::Miss);
    let stored = l2.get(&key).await?.ok_or("not in redis")?;
    assert_eq!(stored[0], 1, "lz4 marker");
    assert!(
        stored.len() < value.len() / 4,
        "{} vs {}",
        stored.len(),
        value.len()
    );

    let second = Cache::new(CacheConfig::default(), Some(l2));
    let (got, status) = second
        .get_or_compute(EntryKind::Answer, &key, || async { Ok(Vec::new()) })
        .await?;
    assert_eq!((status, &*got), (CacheStatus::Hit, value.as_slice()));
    Ok(())
}

#[tokio::test]
async fn a_killed_redis_is_bypassed_and_used_again_when_it_returns() -> TestResult {
    let Some(mut server) = RedisServer::start(None)? else {
        return Ok(());
    };
    let port = server.port();
    let l2: Arc<dyn L2Cache> = Arc::new(RedisL2::new(&server.url())?);
    connected(l2.as_ref()).await?;
    let cache = Cache::new(CacheConfig::default(), Some(l2.clone()));
    let (_, status) = cache
        .get_or_compute(EntryKind::Answer, "before", || async { Ok(b"v".to_vec()) })
        .await?;
    assert_eq!(status, CacheStatus::Miss);

    server.kill();
    for n in 0..5 {
        let key = format!("during-{n}");
        let (value, status) = cache
            .get_or_compute(EntryKind::Answer, &key, || async { Ok(b"fresh".to_vec()) })
            .await?;
        assert_eq!((status, &*value), (CacheStatus::Miss, &b"fresh"[..]));
    }
    assert!(cache.stats().l2_errors > 0);

    let _server = RedisServer::start(Some(port))?.ok_or("restart")?;
    let mut recovered = false;
    for _ in 0..40 {
        if l2.set("after", b"v", Duration::from_secs(60)).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the connection did not recover");
    assert_eq!(l2.get("after").await?, Some(b"v".to_vec()));
    Ok(())
}
