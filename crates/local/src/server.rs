//! Assembles manuel-local: the embedded adapters, every function's router, the local-only
//! routes (JWKS, signed file links) and the shared middleware.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use manuel_core::ApiError;
use manuel_core::auth::JwtVerifier;
use manuel_core::http::serve_app;
use manuel_core::ingestion::IngestionLimits;
use manuel_core::ports::{IngestionQueue, KnowledgeBase};
use manuel_core::security::{Security, SecurityConfig};
use manuel_core::usage::{Clock, Pricing, QuotaLimits, SystemClock};
use manuel_process_manual::Processor;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::extractive::ExtractiveAnswerModel;
use crate::identity::{AUDIENCE, ISSUER, LocalIdentity};
use crate::index::LocalIndex;
use crate::ingest::{LocalIngestionQueue, start_workers};
use crate::listener::ConnectionLimits;
use crate::objects::{FileObjectStore, LinkError, LinkSigner};
use crate::reader::PdfiumReader;
use crate::render_worker::{ContainedRenderer, RenderLimits};
use crate::secrets::load_or_create_secret;
use crate::store::SqliteStore;
use crate::worker::{ContainedIndexer, WorkerSetup};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

fn config_error(context: &str) -> impl Fn(String) -> StartError + '_ {
    move |message| StartError::Config(format!("{context}: {message}"))
}

/// Binds the listener, builds everything, resumes unfinished processing and serves until
/// Ctrl-C or SIGTERM.
/// Passages the extractive answerer weighs per question. More than a language model is given
/// (each passage costs it tokens; here only microseconds), so the further sources an answer
/// lists come from a wider choice: 12 rather than 8 found the right page for one more question
/// in `make eval` and changed nothing else.
const EXTRACTIVE_RETRIEVAL_LIMIT: usize = 12;

pub async fn run(config: ServeConfig) -> Result<(), StartError> {
    let address = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Listen { address, source })?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let (app, ingestion) = build(&config, &public_url).await?;
    // Tests and scripts read this line to learn the port.
    println!(
        "manuel-local listening on http://{bound} (data in {})",
        config.data_dir.display()
    );
    tracing::info!(address = %bound, "listening");
    let stop_ingestion = Arc::clone(&ingestion);
    // On the signal, ingestion stops first (its workers are killed at once; their manuals stay
    // `processing`, resumed at the next start), then the listener; open requests get a few
    // seconds.
    let signalled = async move {
        shutdown_signal().await;
        stop_ingestion.stop(INGESTION_STOP_GRACE).await;
    };
    let limits = ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(
            config.header_read_timeout_seconds.max(1),
        ),
        max_connections: config.max_connections.max(1),
    };
    crate::listener::serve(listener, app, limits, signalled, OPEN_REQUESTS_GRACE).await;
    ingestion.stop(INGESTION_STOP_GRACE).await;
    Ok(())
}

/// How long a shutdown waits for ingestion workers to be stopped and for open requests.
const INGESTION_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
const OPEN_REQUESTS_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

#[derive(Clone)]
struct LocalRoutes {
    jwks: Arc<Value>,
    objects: Arc<FileObjectStore>,
}

/// The reason of a manual whose ingestion started twice without finishing (it crashed or
/// stopped the server each time): it is not resumed again.
pub const NOT_PROCESSABLE: &str = "The manual could not be processed: its processing was interrupted twice (the file may be hostile or damaged). Delete it, or upload another copy.";
/// Ingestion attempts after which a manual is not resumed at start-up.
const MAX_INGEST_ATTEMPTS: u32 = 2;

pub async fn build(
    config: &ServeConfig,
    public_url: &str,
) -> Result<(Router, Arc<LocalIngestionQueue>), StartError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|error| {
        StartError::Config(format!(
            "cannot create the data directory {}: {error}",
            data_dir.display()
        ))
    })?;

    let identity = LocalIdentity::load_or_create(data_dir)
        .map_err(|error| StartError::Config(error.to_string()))?;
    let jwk_set = identity
        .jwk_set()
        .map_err(|error| StartError::Config(error.to_string()))?;
    let verifier = Arc::new(JwtVerifier::new(&jwk_set, ISSUER, AUDIENCE));
    let config_env = manuel_core::config::Env::from_process();
    let env = config_env.vars();
    let max_upload_link_bytes = config.max_upload_link_mb.saturating_mul(1024 * 1024);
    let defaults = manuel_manuals::ManualsConfig::default();
    // Up to S3's seven days, so the same setting means the same in both modes.
    let upload_link_ttl = std::time::Duration::from_secs(
        config_env
            .number_in(
                "UPLOAD_LINK_TTL_SECONDS",
                defaults.upload_link_ttl.as_secs(),
                1..=7 * 24 * 3600,
            )
            .map_err(|error| StartError::Config(error.to_string()))?,
    );
    let manuals_config = manuel_manuals::ManualsConfig {
        max_upload_bytes: config.max_upload_mb.saturating_mul(1024 * 1024),
        max_upload_link_bytes: max_upload_link_bytes as u64,
        upload_link_ttl,
        ..defaults
    };
    let mut security_config =
        SecurityConfig::from_env().map_err(|error| StartError::Config(error.to_string()))?;
    // The upload limit is the local server's own setting; the outer limit must not undercut it.
    security_config.max_body_bytes = security_config
        .max_body_bytes
        .max(manuel_manuals::request_body_limit(&manuals_config))
        .max(max_upload_link_bytes);

    let link_secret =
        load_or_create_secret(&data_dir.join("keys").join("link-signing-secret"), || {
            use rand::RngCore;
            let mut secret = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut secret);
            secret
        })
        .map_err(|error| {
            StartError::Config(format!(
                "cannot read or create the link signing secret: {error}"
            ))
        })?;
    let objects = Arc::new(FileObjectStore::new(
        data_dir.join("objects"),
        LinkSigner::new(link_secret, public_url),
    ));
    let store = Arc::new(
        SqliteStore::open(&data_dir.join("manuel.sqlite3"))
            .map_err(|error| config_error("cannot open the database")(error.to_string()))?,
    );
    let moved =
        crate::key_migration::move_to_pseudonymous_keys(&store, &objects).map_err(|error| {
            config_error("cannot move manuals to their pseudonymous keys")(error.to_string())
        })?;
    if moved > 0 {
        tracing::info!(
            moved,
            "manuals moved from keys naming their owner to pseudonymous keys"
        );
    }
    let embedder = Arc::new(
        crate::embedding::Embedder::load(&config.embedding_model, &config.onnxruntime)
            .map_err(|error| StartError::Config(error.to_string()))?,
    );
    let (index, opened) = LocalIndex::open(&data_dir.join("index"), embedder)
        .map_err(|error| config_error("cannot open the search index")(error.to_string()))?;
    let index = Arc::new(index);
    if opened == crate::index::Opened::Rebuilt {
        let count = store.reprocess_all().map_err(|error| {
            config_error("cannot queue manuals for re-indexing")(error.to_string())
        })?;
        tracing::info!(count, "manuals queued to be indexed again");
    }
    let security = Security {
        config: Arc::new(security_config),
        verifier,
        rate_limits: store.clone(),
        replay_guard: store.clone(),
        idempotency: store.clone(),
        idempotency_config: manuel_core::idempotency::IdempotencyConfig::from_vars(env)
            .map_err(|error| StartError::Config(error.to_string()))?,
    };
    // Checked here so a missing library stops the start, not the first upload; the server
    // itself never reads a manual with it (its workers do).
    PdfiumReader::load(&config.pdfium_lib).map_err(StartError::Config)?;
    let limits =
        IngestionLimits::from_vars(env).map_err(|error| StartError::Config(error.to_string()))?;
    let program = std::env::current_exe().map_err(|error| {
        StartError::Config(format!(
            "cannot find the manuel-local executable for ingest workers: {error}"
        ))
    })?;
    let (stopping_sender, stopping) = tokio::sync::watch::channel(false);
    let processor = Processor {
        objects: objects.clone(),
        manuals: store.clone(),
        knowledge_base: index.clone(),
        indexer: Arc::new(ContainedIndexer {
            setup: WorkerSetup {
                program: program.clone(),
                pdfium_lib: config.pdfium_lib.clone(),
                embedding_model: config.embedding_model.clone(),
                onnxruntime: config.onnxruntime.clone(),
                limits,
            },
            index: index.clone(),
            store: store.clone(),
            stopping,
        }),
        // The local index has no per-file limit; uploads are capped by MANUEL_MAX_UPLOAD_*.
        max_document_bytes: None,
    };
    let ingestion = start_workers(processor, config.ingest_workers);
    let mut ingestion_stopping = ingestion.stopping();
    tokio::spawn(async move {
        let _ = ingestion_stopping.wait_for(|stopping| *stopping).await;
        let _ = stopping_sender.send(true);
    });
    let exhausted = store
        .fail_exhausted(MAX_INGEST_ATTEMPTS, NOT_PROCESSABLE)
        .map_err(|error| config_error("cannot read unfinished manuals")(error.to_string()))?;
    for manual in &exhausted {
        tracing::warn!(manual_id = %manual.id, "ingestion was interrupted twice; the manual is marked failed, not resumed");
        if let Err(error) = index.remove(manual).await {
            tracing::warn!(manual_id = %manual.id, %error, "could not remove a failed manual's passages");
        }
    }
    let pending = store
        .pending()
        .map_err(|error| config_error("cannot read unfinished manuals")(error.to_string()))?;
    if !pending.is_empty() {
        tracing::info!(count = pending.len(), "resuming unfinished processing");
    }
    for manual in pending {
        ingestion
            .enqueue(&manual.user_id, &manual.id)
            .await
            .map_err(|error| StartError::Config(error.to_string()))?;
    }

    let manuals = manuel_manuals::router(manuel_manuals::ManualsDeps {
        objects: objects.clone(),
        manuals: store.clone(),
        knowledge_base: index.clone(),
        ingestion: ingestion.clone(),
        fetcher: manuel_manuals::fetcher_from_vars(env)
            .map_err(|error| StartError::Config(error.to_string()))?,
        // pdfium draws in a worker process per page, with its own memory and time limits.
        renderer: Some(Arc::new(ContainedRenderer {
            program: program.clone(),
            pdfium_lib: config.pdfium_lib.clone(),
            limits: RenderLimits::from_env(&config_env)
                .map_err(|error| StartError::Config(error.to_string()))?,
        })),
        security: security.clone(),
        config: manuals_config,
    });
    let quota =
        QuotaLimits::from_vars(env).map_err(|error| StartError::Config(error.to_string()))?;
    let pricing = Pricing::from_vars(Pricing::free(), env)
        .map_err(|error| StartError::Config(error.to_string()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cache = manuel_redis::answer_cache(config_env.optional("REDIS_URL"))
        .map_err(|error| StartError::Config(error.to_string()))?;
    let audio_limits = manuel_core::audio::AudioLimits::from_vars(env)
        .map_err(|error| StartError::Config(error.to_string()))?;
    let transcriber = speech_recognition(config, index.clone(), &audio_limits)?;
    let query = manuel_query::router(manuel_query::QueryDeps {
        cache: cache.clone(),
        usage: store.clone(),
        quota,
        pricing: pricing.clone(),
        model_id: "local-extractive".to_owned(),
        clock: clock.clone(),
        manuals: store.clone(),
        knowledge_base: index.clone(),
        answer_model: Arc::new(ExtractiveAnswerModel::new(index.clone())),
        objects: objects.clone(),
        transcriber: transcriber.clone(),
        audio_limits,
        security: security.clone(),
        config: manuel_query::QueryConfig {
            retrieval_limit: EXTRACTIVE_RETRIEVAL_LIMIT,
            ..manuel_query::QueryConfig::default()
        },
    });
    let transcribe = manuel_transcribe::router(manuel_transcribe::TranscribeDeps {
        usage: store.clone(),
        quota,
        pricing: pricing.clone(),
        clock: clock.clone(),
        transcriber,
        limits: audio_limits,
        security: security.clone(),
    });
    let usage = manuel_usage::router(manuel_usage::UsageDeps {
        version: env!("CARGO_PKG_VERSION"),
        cache,
        usage: store.clone(),
        quota,
        currency: pricing.currency.clone(),
        clock,
        manuals: store.clone(),
        objects: objects.clone(),
        knowledge_base: index,
        resilience: Arc::new(manuel_core::resilience::Resilience::none()),
        security: security.clone(),
    });
    let uploads = crate::uploads::router(crate::uploads::UploadRoutes {
        objects: objects.clone(),
        manuals: store.clone(),
        ingestion: ingestion.clone(),
        max_bytes: max_upload_link_bytes,
    });
    let local = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/openapi.yaml", get(openapi))
        .route("/files/{*key}", get(download))
        .with_state(LocalRoutes {
            jwks: Arc::new(identity.jwks_json().clone()),
            objects,
        });
    let app = serve_app(
        manuals
            .merge(query)
            .merge(transcribe)
            .merge(usage)
            .merge(uploads)
            .merge(local),
        &security,
    );
    Ok((app, ingestion))
}

/// The API contract, as served to clients and contract tests.
const OPENAPI: &str = include_str!("../../../openapi.yaml");

/// Offline speech recognition, in builds with the `speech` feature; without it the transcribe
/// routes check the audio and answer 503.
#[cfg(feature = "speech")]
fn speech_recognition(
    config: &ServeConfig,
    index: Arc<LocalIndex>,
    limits: &manuel_core::audio::AudioLimits,
) -> Result<Option<Arc<dyn manuel_core::ports::Transcriber>>, StartError> {
    let transcriber = crate::speech::LocalTranscriber::new(
        &config.speech_model,
        index,
        limits.max_duration.as_secs_f64(),
    )
    .map_err(|error| StartError::Config(error.to_string()))?;
    Ok(Some(Arc::new(transcriber)))
}

#[cfg(not(feature = "speech"))]
fn speech_recognition(
    _config: &ServeConfig,
    _index: Arc<LocalIndex>,
    _limits: &manuel_core::audio::AudioLimits,
) -> Result<Option<Arc<dyn manuel_core::ports::Transcriber>>, StartError> {
    tracing::warn!("built without the `speech` feature: spoken questions get a 503");
    Ok(None)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}

async fn jwks(State(routes): State<LocalRoutes>) -> Json<Value> {
    Json(routes.jwks.as_ref().clone())
}

#[derive(Deserialize)]
struct LinkParams {
    name: String,
    expires: i64,
    sig: String,
}

async fn download(
    State(routes): State<LocalRoutes>,
    Path(key): Path<String>,
    params: Result<Query<LinkParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(params)) = params else {
        return Err(ApiError::Forbidden(
            "This download link is not valid.".to_owned(),
        ));
    };
    routes
        .objects
        .links()
        .verify(&key, &params.name, params.expires, &params.sig)
        .map_err(|error: LinkError| ApiError::Forbidden(error.to_string()))?;
    use manuel_core::ports::ObjectStore;
    let bytes = routes
        .objects
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found("This file no longer exists."))?;
    let content_type = match key.rsplit('.').next() {
        Some("pdf") => "application/pdf",
        Some("md") => "text/markdown; charset=utf-8",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    let disposition = manuel_core::http::content_disposition(&params.name);
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
