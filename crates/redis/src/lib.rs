//! The L2 cache over Redis. The connection is made lazily and re-made after failures (at most
//! once a second), so a Redis that is down at start-up or restarts later only costs bypasses.
//! `rediss://` URLs use TLS, as ElastiCache in-transit encryption needs.

#[cfg(feature = "test-support")]
pub mod test_server;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::cache::L2Cache;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

pub struct RedisL2 {
    client: redis::Client,
    connection: Mutex<Connection>,
}

struct Connection {
    manager: Option<ConnectionManager>,
    last_attempt: Option<Instant>,
}

fn unavailable(error: impl std::fmt::Display) -> PortError {
    PortError::Unavailable {
        service: "redis",
        message: error.to_string(),
    }
}

impl RedisL2 {
    /// Checks the URL now; connects on first use.
    pub fn new(url: &str) -> Result<Self, PortError> {
        let client = redis::Client::open(url)
            .map_err(|error| PortError::failed(format!("REDIS_URL is not valid: {error}")))?;
        Ok(Self {
            client,
            connection: Mutex::new(Connection {
                manager: None,
                last_attempt: None,
            }),
        })
    }

    async fn manager(&self) -> Result<ConnectionManager, PortError> {
        let mut connection = self.connection.lock().await;
        if let Some(manager) = &connection.manager {
            return Ok(manager.clone());
        }
        if connection
            .last_attempt
            .is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL)
        {
            return Err(unavailable(
                "not connected; waiting before the next attempt",
            ));
        }
        connection.last_attempt = Some(Instant::now());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(300)))
            .set_response_timeout(Some(Duration::from_millis(300)))
            .set_number_of_retries(1);
        let manager = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        connection.manager = Some(manager.clone());
        Ok(manager)
    }
}

#[async_trait]
impl L2Cache for RedisL2 {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        let mut manager = self.manager().await?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut manager)
            .await
            .map_err(unavailable)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), PortError> {
        let mut manager = self.manager().await?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut manager)
            .await
            .map_err(unavailable)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        let mut manager = self.manager().await?;
        let pattern = format!("{prefix}*");
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut manager)
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                let removed: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut manager)
                    .await
                    .map_err(unavailable)?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// The answer cache of a process: L1 always, L2 on Redis when `redis_url` is set (`REDIS_URL`).
pub fn answer_cache(
    redis_url: Option<&str>,
) -> Result<std::sync::Arc<manuel_core::cache::Cache>, manuel_core::config::ConfigError> {
    let l2: Option<std::sync::Arc<dyn manuel_core::cache::L2Cache>> = match redis_url {
        Some(url) => Some(std::sync::Arc::new(RedisL2::new(url).map_err(|error| {
            manuel_core::config::ConfigError {
                name: "REDIS_URL",
                reason: error.to_string(),
            }
        })?)),
        None => None,
    };
    Ok(std::sync::Arc::new(manuel_core::cache::Cache::new(
        manuel_core::cache::CacheConfig::default(),
        l2,
    )))
}
