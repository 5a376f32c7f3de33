//! The local tables, in one SQLite file. Today: manuals.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::domain::{
    ArrivedUpload, DocumentKind, Manual, ManualStatus, ProcessingOutcome, UserId,
    duplicate_upload_reason,
};
use manuel_core::ports::{
    ArrivalOutcome, Citations, InsertOutcome, ListError, ManualPage, ManualRepository,
    RateLimitStore, ReplayGuard,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS manuals (
    user_id       TEXT    NOT NULL,
    manual_id     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    object_key    TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    status_reason TEXT,
    pages         INTEGER,
    created_us    INTEGER NOT NULL,
    updated_us    INTEGER NOT NULL,
    PRIMARY KEY (user_id, manual_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS manuals_by_content ON manuals (user_id, sha256);
CREATE INDEX IF NOT EXISTS manuals_by_age ON manuals (user_id, created_us DESC, manual_id DESC);
CREATE INDEX IF NOT EXISTS manuals_by_status ON manuals (status);
CREATE INDEX IF NOT EXISTS manuals_by_key ON manuals (object_key);
CREATE TABLE IF NOT EXISTS manual_citations (
    user_id         TEXT    NOT NULL,
    manual_id       TEXT    NOT NULL,
    query_count     INTEGER NOT NULL,
    last_queried_us INTEGER NOT NULL,
    PRIMARY KEY (user_id, manual_id)
);
CREATE TABLE IF NOT EXISTS rate_limits (
    key        TEXT    PRIMARY KEY,
    count      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_counters (
    user_id        TEXT    NOT NULL,
    window         TEXT    NOT NULL,
    count          INTEGER NOT NULL,
    last_operation TEXT,
    updated_us     INTEGER,
    PRIMARY KEY (user_id, window)
);
CREATE TABLE IF NOT EXISTS cost_records (
    user_id          TEXT    NOT NULL,
    timestamp_us     INTEGER NOT NULL,
    request_id       TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    model_id         TEXT    NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    embedding_tokens INTEGER NOT NULL,
    audio_seconds    REAL    NOT NULL,
    model_cost       REAL    NOT NULL,
    embedding_cost   REAL    NOT NULL,
    transcribe_cost  REAL    NOT NULL,
    total_cost       REAL    NOT NULL,
    PRIMARY KEY (user_id, timestamp_us, request_id)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT    PRIMARY KEY,
    status       TEXT    NOT NULL,
    payload_hash TEXT    NOT NULL,
    response     TEXT,
    expires_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS used_signatures (
    signature  TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
";

/// Expired counters and signatures are swept once every this many writes.
const SWEEP_EVERY: u64 = 1000;

const COLUMNS: &str = "user_id, manual_id, name, object_key, kind, size_bytes, sha256, status, status_reason, pages, created_us, updated_us";

pub struct SqliteStore {
    connection: Mutex<Connection>,
    writes: AtomicU64,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, PortError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(PortError::failed)?;
        }
        let connection = Connection::open(path).map_err(PortError::failed)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(PortError::failed)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(PortError::failed)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(PortError::failed)?;
        connection
            .execute_batch(SCHEMA)
            .map_err(PortError::failed)?;
        add_column_if_missing(
            &connection,
            "manuals",
            "ingest_attempts",
            "INTEGER NOT NULL DEFAULT 0",
        )?;
        Ok(Self {
            connection: Mutex::new(connection),
            writes: AtomicU64::new(0),
        })
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Connection>, PortError> {
        self.connection
            .lock()
            .map_err(|_| PortError::failed("the database lock was poisoned"))
    }

    /// Manuals whose processing has not finished, across all users: resumed at start-up
    /// (an `uploading` one whose bytes were stored just before a stop is among them).
    pub fn pending(&self) -> Result<Vec<Manual>, PortError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(&format!(
                "SELECT {COLUMNS} FROM manuals WHERE status IN ('processing', 'uploading') ORDER BY created_us"
            ))
            .map_err(PortError::failed)?;
        let rows = statement
            .query_map([], manual_from_row)
            .map_err(PortError::failed)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(PortError::failed)
    }

    /// Moves every `ready` manual back to `processing` (the search index was rebuilt, so they
    /// must be indexed again); they are then resumed like any unfinished manual. Returns how many.
    pub fn reprocess_all(&self) -> Result<usize, PortError> {
        let connection = self.lock()?;
        connection
            .execute(
                "UPDATE manuals SET status = 'processing', pages = NULL, ingest_attempts = 0 WHERE status = 'ready'",
                [],
            )
            .map_err(PortError::failed)
    }

    /// Counts one more ingestion attempt of a `processing` manual, before its worker starts:
    /// if the process dies during it, the count survives. Returns the count, or `None` when
    /// the manual is no longer `processing`.
    pub fn begin_attempt(&self, user: &UserId, manual_id: &str) -> Result<Option<u32>, PortError> {
        let connection = self.lock()?;
        connection
            .query_row(
                "UPDATE manuals SET ingest_attempts = ingest_attempts + 1
                 WHERE user_id = ?1 AND manual_id = ?2 AND status = 'processing'
                 RETURNING ingest_attempts",
                params![user.as_str(), manual_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(PortError::failed)
    }

    /// Takes back an attempt that was interrupted on purpose (a shutdown), so it does not count
    /// against the manual.
    pub fn undo_attempt(&self, user: &UserId, manual_id: &str) -> Result<(), PortError> {
        let connection = self.lock()?;
        connection
            .execute(
                "UPDATE manuals SET ingest_attempts = MAX(ingest_attempts - 1, 0)
                 WHERE user_id = ?1 AND manual_id = ?2",
                params![user.as_str(), manual_id],
            )
            .map(|_| ())
            .map_err(PortError::failed)
    }

    /// Marks `failed` every `processing` manual whose ingestion already started `attempts`
    /// times without finishing (it crashed the process, or failed): it is not resumed again.
    /// Returns those manuals.
    pub fn fail_exhausted(&self, attempts: u32, reason: &str) -> Result<Vec<Manual>, PortError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(&format!(
                "UPDATE manuals SET status = 'failed', status_reason = ?2, updated_us = ?3
                 WHERE status = 'processing' AND ingest_attempts >= ?1
                 RETURNING {COLUMNS}"
            ))
            .map_err(PortError::failed)?;
        let rows = statement
            .query_map(
                params![attempts, reason, micros(&Utc::now())],
                manual_from_row,
            )
            .map_err(PortError::failed)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(PortError::failed)
    }

    pub(crate) fn sweep_if_due(&self, connection: &Connection) -> Result<(), PortError> {
        if !self
            .writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            return Ok(());
        }
        let now = Utc::now().timestamp();
        connection
            .execute(
                "DELETE FROM rate_limits WHERE expires_at < ?1",
                params![now],
            )
            .and_then(|_| {
                connection.execute(
                    "DELETE FROM used_signatures WHERE expires_at < ?1",
                    params![now],
                )
            })
            .and_then(|_| {
                connection.execute(
                    "DELETE FROM idempotency WHERE expires_at < ?1",
                    params![now],
                )
            })
            .map(|_| ())
            .map_err(PortError::failed)
    }

    /// The manual whose file is at `key`, whoever owns it: how an upload link, which names
    /// only the key (its owner part a pseudonym), finds its manual.
    pub fn manual_at(&self, key: &str) -> Result<Option<Manual>, PortError> {
        let connection = self.lock()?;
        connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM manuals WHERE object_key = ?1"),
                params![key],
                manual_from_row,
            )
            .optional()
            .map_err(PortError::failed)
    }

    /// Every manual of every user (start-up maintenance only).
    pub fn all_manuals(&self) -> Result<Vec<Manual>, PortError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(&format!("SELECT {COLUMNS} FROM manuals"))
            .map_err(PortError::failed)?;
        let rows = statement
            .query_map([], manual_from_row)
            .map_err(PortError::failed)?;
        rows.collect::<Result<_, _>>().map_err(PortError::failed)
    }

    /// Points a manual's record at its file's new key.
    pub fn set_key(&self, user: &UserId, manual_id: &str, key: &str) -> Result<(), PortError> {
        self.lock()?
            .execute(
                "UPDATE manuals SET object_key = ?3 WHERE user_id = ?1 AND manual_id = ?2",
                params![user.as_str(), manual_id, key],
            )
            .map_err(PortError::failed)?;
        Ok(())
    }

    fn select_one(
        &self,
        sql: &str,
        user: &UserId,
        value: &str,
    ) -> Result<Option<Manual>, PortError> {
        let connection = self.lock()?;
        connection
            .query_row(sql, params![user.as_str(), value], manual_from_row)
            .optional()
            .map_err(PortError::failed)
    }
}

/// Adds a column an older database lacks (SQLite has no `ADD COLUMN IF NOT EXISTS`).
fn add_column_if_missing(
    connection: &Connection,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<(), PortError> {
    let present: bool = connection
        .query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |row| row.get(0),
        )
        .map_err(PortError::failed)?;
    if !present {
        connection
            .execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))
            .map_err(PortError::failed)?;
    }
    Ok(())
}

fn micros(time: &DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

fn from_micros(value: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, value))
}

fn manual_from_row(row: &Row<'_>) -> rusqlite::Result<Manual> {
    let bad = |index: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unexpected {what}").into(),
        )
    };
    let user: String = row.get(0)?;
    let kind: String = row.get(4)?;
    let status: String = row.get(7)?;
    Ok(Manual {
        user_id: UserId::parse(&user).ok_or_else(|| bad(0, "user id"))?,
        id: row.get(1)?,
        name: row.get(2)?,
        key: row.get(3)?,
        kind: DocumentKind::parse(&kind).ok_or_else(|| bad(4, "kind"))?,
        size_bytes: u64::try_from(row.get::<_, i64>(5)?).map_err(|_| bad(5, "size"))?,
        sha256: row.get(6)?,
        status: ManualStatus::parse(&status).ok_or_else(|| bad(7, "status"))?,
        status_reason: row.get(8)?,
        pages: row.get(9)?,
        created_at: from_micros(row.get(10)?)?,
        updated_at: from_micros(row.get(11)?)?,
    })
}

fn encode_cursor(manual: &Manual) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", micros(&manual.created_at), manual.id))
}

fn decode_cursor(token: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (created, id) = raw.split_once(':')?;
    Some((created.parse().ok()?, id.to_owned()))
}

#[async_trait]
impl ManualRepository for SqliteStore {
    async fn find_by_sha256(
        &self,
        user: &UserId,
        sha256: &str,
    ) -> Result<Option<Manual>, PortError> {
        self.select_one(
            &format!("SELECT {COLUMNS} FROM manuals WHERE user_id = ?1 AND sha256 = ?2"),
            user,
            sha256,
        )
    }

    async fn insert(&self, manual: &Manual) -> Result<InsertOutcome, PortError> {
        let inserted = {
            let connection = self.lock()?;
            connection
                .execute(
                    &format!(
                        "INSERT INTO manuals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (user_id, sha256) DO NOTHING"
                    ),
                    params![
                        manual.user_id.as_str(),
                        manual.id,
                        manual.name,
                        manual.key,
                        manual.kind.as_str(),
                        i64::try_from(manual.size_bytes).unwrap_or(i64::MAX),
                        manual.sha256,
                        manual.status.as_str(),
                        manual.status_reason,
                        manual.pages,
                        micros(&manual.created_at),
                        micros(&manual.updated_at),
                    ],
                )
                .map_err(PortError::failed)?
        };
        if inserted == 1 {
            return Ok(InsertOutcome::Inserted);
        }
        self.find_by_sha256(&manual.user_id, &manual.sha256)
            .await?
            .map(InsertOutcome::Duplicate)
            .ok_or_else(|| PortError::failed("a conflicting manual vanished during insert"))
    }

    async fn get(&self, user: &UserId, manual_id: &str) -> Result<Option<Manual>, PortError> {
        self.select_one(
            &format!("SELECT {COLUMNS} FROM manuals WHERE user_id = ?1 AND manual_id = ?2"),
            user,
            manual_id,
        )
    }

    async fn list(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<ManualPage, ListError> {
        let (created, id) = match after {
            Some(token) => decode_cursor(token).ok_or(ListError::BadToken)?,
            None => (i64::MAX, String::new()),
        };
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(&format!(
                "SELECT {COLUMNS} FROM manuals
                 WHERE user_id = ?1 AND (created_us < ?2 OR (created_us = ?2 AND (?3 = '' OR manual_id < ?3)))
                 ORDER BY created_us DESC, manual_id DESC LIMIT ?4"
            ))
            .map_err(PortError::failed)?;
        let mut manuals = statement
            .query_map(params![user.as_str(), created, id, fetch], manual_from_row)
            .map_err(PortError::failed)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(PortError::failed)?;
        let next_token = if manuals.len() > limit {
            manuals.truncate(limit);
            manuals.last().map(encode_cursor)
        } else {
            None
        };
        Ok(ManualPage {
            manuals,
            next_token,
        })
    }

    async fn list_ready(&self, user: &UserId) -> Result<Vec<Manual>, PortError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM manuals WHERE user_id = ?1 AND status = 'ready'"
            ))
            .map_err(PortError::failed)?;
        let rows = statement
            .query_map(params![user.as_str()], manual_from_row)
            .map_err(PortError::failed)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(PortError::failed)
    }

    async fn finish_processing(
        &self,
        user: &UserId,
        manual_id: &str,
        outcome: &ProcessingOutcome,
    ) -> Result<bool, PortError> {
        let (status, pages, reason) = match outcome {
            ProcessingOutcome::Ready { pages } => (ManualStatus::Ready, Some(*pages), None),
            ProcessingOutcome::Failed { reason } => {
                (ManualStatus::Failed, None, Some(reason.as_str()))
            }
        };
        let connection = self.lock()?;
        let changed = connection
            .execute(
                "UPDATE manuals SET status = ?3, pages = ?4, status_reason = ?5, updated_us = ?6
                 WHERE user_id = ?1 AND manual_id = ?2 AND status = 'processing'",
                params![
                    user.as_str(),
                    manual_id,
                    status.as_str(),
                    pages,
                    reason,
                    micros(&Utc::now())
                ],
            )
            .map_err(PortError::failed)?;
        Ok(changed == 1)
    }

    async fn upload_arrived(
        &self,
        user: &UserId,
        manual_id: &str,
        arrived: &ArrivedUpload,
    ) -> Result<ArrivalOutcome, PortError> {
        let now = micros(&Utc::now());
        let updated = {
            let connection = self.lock()?;
            connection.execute(
                "UPDATE manuals SET sha256 = ?3, size_bytes = ?4, kind = ?5, status = 'processing', updated_us = ?6
                 WHERE user_id = ?1 AND manual_id = ?2 AND status = 'uploading'",
                params![
                    user.as_str(),
                    manual_id,
                    arrived.sha256,
                    i64::try_from(arrived.size_bytes).unwrap_or(i64::MAX),
                    arrived.kind.as_str(),
                    now,
                ],
            )
        };
        match updated {
            Ok(0) => Ok(ArrivalOutcome::NotAwaited),
            Ok(_) => match self.get(user, manual_id).await? {
                Some(manual) => Ok(ArrivalOutcome::Processing(manual)),
                None => Ok(ArrivalOutcome::NotAwaited),
            },
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let Some(existing) = self.find_by_sha256(user, &arrived.sha256).await? else {
                    return Err(PortError::failed(
                        "a conflicting manual vanished during an upload",
                    ));
                };
                let connection = self.lock()?;
                connection
                    .execute(
                        "UPDATE manuals SET status = 'failed', status_reason = ?3, size_bytes = ?4, updated_us = ?5
                         WHERE user_id = ?1 AND manual_id = ?2 AND status = 'uploading'",
                        params![
                            user.as_str(),
                            manual_id,
                            duplicate_upload_reason(&existing),
                            i64::try_from(arrived.size_bytes).unwrap_or(i64::MAX),
                            now,
                        ],
                    )
                    .map_err(PortError::failed)?;
                Ok(ArrivalOutcome::Duplicate(existing))
            }
            Err(error) => Err(PortError::failed(error)),
        }
    }

    async fn delete(&self, user: &UserId, manual_id: &str) -> Result<bool, PortError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction().map_err(PortError::failed)?;
        let deleted = transaction
            .execute(
                "DELETE FROM manuals WHERE user_id = ?1 AND manual_id = ?2",
                params![user.as_str(), manual_id],
            )
            .map_err(PortError::failed)?;
        transaction
            .execute(
                "DELETE FROM manual_citations WHERE user_id = ?1 AND manual_id = ?2",
                params![user.as_str(), manual_id],
            )
            .map_err(PortError::failed)?;
        transaction.commit().map_err(PortError::failed)?;
        Ok(deleted == 1)
    }

    async fn record_citations(
        &self,
        user: &UserId,
        manual_ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "INSERT INTO manual_citations (user_id, manual_id, query_count, last_queried_us)
                 SELECT user_id, manual_id, 1, ?3 FROM manuals WHERE user_id = ?1 AND manual_id = ?2
                 ON CONFLICT (user_id, manual_id) DO UPDATE SET
                     query_count = query_count + 1,
                     last_queried_us = MAX(last_queried_us, excluded.last_queried_us)",
            )
            .map_err(PortError::failed)?;
        for manual_id in manual_ids {
            statement
                .execute(params![user.as_str(), manual_id, micros(&at)])
                .map_err(PortError::failed)?;
        }
        Ok(())
    }

    async fn citations(&self, user: &UserId, manual_id: &str) -> Result<Citations, PortError> {
        let connection = self.lock()?;
        let row: Option<(i64, i64)> = connection
            .query_row(
                "SELECT query_count, last_queried_us FROM manual_citations
                 WHERE user_id = ?1 AND manual_id = ?2",
                params![user.as_str(), manual_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(PortError::failed)?;
        Ok(match row {
            None => Citations::default(),
            Some((count, last)) => Citations {
                count: u64::try_from(count).unwrap_or(0),
                last: DateTime::from_timestamp_micros(last),
            },
        })
    }
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn hit(&self, key: &str, expires_at: i64) -> Result<u64, PortError> {
        let connection = self.lock()?;
        self.sweep_if_due(&connection)?;
        let count: i64 = connection
            .prepare_cached(
                "INSERT INTO rate_limits (key, count, expires_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (key) DO UPDATE SET count = count + 1 RETURNING count",
            )
            .and_then(|mut statement| {
                statement.query_row(params![key, expires_at], |row| row.get(0))
            })
            .map_err(PortError::failed)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[async_trait]
impl ReplayGuard for SqliteStore {
    async fn first_use(&self, signature: &str, expires_at: i64) -> Result<bool, PortError> {
        let connection = self.lock()?;
        self.sweep_if_due(&connection)?;
        let inserted = connection
            .execute(
                "INSERT INTO used_signatures (signature, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (signature) DO NOTHING",
                params![signature, expires_at],
            )
            .map_err(PortError::failed)?;
        Ok(inserted == 1)
    }
}
