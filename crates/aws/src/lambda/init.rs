//! Init of a Lambda binary and the adapters it builds once.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use manuel_core::auth::IdentityConfig;
use manuel_core::config::ConfigError;
use manuel_core::http::serve_app;
use manuel_core::ports::{
    AnswerModel, IdempotencyStore, KnowledgeBase, ManualRepository, ObjectStore, RateLimitStore,
    ReplayGuard, Transcriber, UsageStore,
};
use manuel_core::resilience::Resilience;
use manuel_core::resilience::guarded::{Guarded, GuardedKnowledgeBase};
use manuel_core::security::{Security, SecurityConfig};
use manuel_core::telemetry;
use manuel_core::usage::{Pricing, QuotaLimits};

use super::Env;
use crate::bedrock::{
    BedrockAnswerModel, BedrockKnowledgeBase, ConverseSettings, KnowledgeBaseSettings, VectorStore,
};
use crate::config::Timeouts;
use crate::dynamodb::{
    DynamoErrors, DynamoIdempotency, DynamoLimits, DynamoManuals, DynamoUsageStore,
};
use crate::gateway::behind_api_gateway;
use crate::s3::S3ObjectStore;
use crate::sns::SnsNotifier;
use crate::sqs::DeadLetterQueue;
use crate::transcribe::{AwsTranscriber, TranscribeSettings};
use manuel_core::audio::AudioLimits;
use manuel_core::idempotency::IdempotencyConfig;

pub struct Init {
    pub function: &'static str,
    pub env: Env,
    pub sdk: aws_config::SdkConfig,
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
    resilience: OnceLock<Arc<Resilience>>,
}

impl Init {
    /// Logs as JSON, metrics as EMF lines named after `function`, and the SDK configuration
    /// from the standard AWS environment.
    pub async fn start(function: &'static str) -> Self {
        telemetry::init_json_logs("info");
        telemetry::install_emf(function);
        // rustls panics on first use when more than one crypto provider is compiled in and none
        // was chosen; choosing here keeps that from ever happening inside a request.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Self {
            function,
            env: Env::from_process(),
            sdk: crate::config::load().await,
            dynamodb: OnceLock::new(),
            resilience: OnceLock::new(),
        }
    }

    /// Retry policies and circuit breakers for this container (`RETRY_<SERVICE>`,
    /// `CIRCUIT_*`), shared by every port built here.
    pub fn resilience(&self) -> Result<Arc<Resilience>, ConfigError> {
        if let Some(resilience) = self.resilience.get() {
            return Ok(resilience.clone());
        }
        let built = Arc::new(Resilience::from_vars(self.env.vars())?);
        Ok(self.resilience.get_or_init(|| built).clone())
    }

    /// Logs a configuration error so the init failure names the variable, and hands it on.
    pub fn checked<T>(&self, result: Result<T, ConfigError>) -> Result<T, ConfigError> {
        if let Err(error) = &result {
            tracing::error!(function = self.function, variable = error.name, %error, "configuration error; init stopped");
        }
        result
    }

    /// The SDK configuration with the timeouts of one kind of call (see [`Timeouts`]).
    pub fn sdk_for(&self, timeouts: Timeouts) -> aws_config::SdkConfig {
        self.sdk
            .to_builder()
            .timeout_config(timeouts.config())
            .build()
    }

    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.dynamodb
            .get_or_init(|| aws_sdk_dynamodb::Client::new(&self.sdk_for(Timeouts::Quick)))
            .clone()
    }

    pub fn manuals(&self) -> Result<Arc<dyn ManualRepository>, ConfigError> {
        let table: Arc<dyn ManualRepository> = Arc::new(DynamoManuals::new(
            self.dynamodb(),
            self.env.required("MANUALS_TABLE")?,
        ));
        Ok(Guarded::new(
            table,
            self.resilience()?.dependency("dynamodb"),
        ))
    }

    pub fn usage(&self) -> Result<Arc<dyn UsageStore>, ConfigError> {
        let table: Arc<dyn UsageStore> = Arc::new(DynamoUsageStore::new(
            self.dynamodb(),
            self.env.required("USAGE_TABLE")?,
        ));
        Ok(Guarded::new(
            table,
            self.resilience()?.dependency("dynamodb"),
        ))
    }

    /// `MANUALS_BUCKET`; `S3_FORCE_PATH_STYLE=true` for emulators.
    /// The manuals bucket, guarded as the `s3` dependency.
    pub fn objects(&self) -> Result<Arc<dyn ObjectStore>, ConfigError> {
        let bucket: Arc<dyn ObjectStore> = self.manuals_bucket()?;
        Ok(Guarded::new(bucket, self.resilience()?.dependency("s3")))
    }

    fn manuals_bucket(&self) -> Result<Arc<S3ObjectStore>, ConfigError> {
        let bucket = self.env.required("MANUALS_BUCKET")?;
        let path_style = self.env.flag("S3_FORCE_PATH_STYLE", false)?;
        let storage = self.sdk_for(Timeouts::Storage);
        Ok(Arc::new(
            S3ObjectStore::new(crate::s3::client(&storage, path_style), bucket)
                .recognising_links(&storage, path_style),
        ))
    }

    /// `KNOWLEDGE_BASE_ID`, `KNOWLEDGE_BASE_DATA_SOURCE_ID`, and how long ingestion may be
    /// waited for (`INGESTION_WAIT_SECONDS`, 600 by default, cut to the invocation's deadline
    /// by the caller).
    pub fn knowledge_base(&self) -> Result<Arc<dyn KnowledgeBase>, ConfigError> {
        let settings = KnowledgeBaseSettings {
            knowledge_base_id: self.env.required("KNOWLEDGE_BASE_ID")?,
            data_source_id: self.env.required("KNOWLEDGE_BASE_DATA_SOURCE_ID")?,
            vector_store: {
                let value = self.env.required("VECTOR_STORE")?;
                VectorStore::parse(&value).ok_or_else(|| ConfigError {
                    name: "VECTOR_STORE",
                    reason: format!("must be S3Vectors or OpenSearchServerless, not {value:?}"),
                })?
            },
            ingestion_wait: Duration::from_secs(self.env.parsed_or("INGESTION_WAIT_SECONDS", 600)?),
            poll_interval: Duration::from_millis(
                self.env.parsed_or("INGESTION_POLL_MILLISECONDS", 2000)?,
            ),
        };
        let knowledge_base: Arc<dyn KnowledgeBase> = Arc::new(BedrockKnowledgeBase::new(
            aws_sdk_bedrockagentruntime::Client::new(&self.sdk_for(Timeouts::Retrieval)),
            aws_sdk_bedrockagent::Client::new(&self.sdk_for(Timeouts::Retrieval)),
            self.manuals_bucket()?,
            settings,
        ));
        Ok(GuardedKnowledgeBase::new(
            knowledge_base,
            &*self.resilience()?,
        ))
    }

    /// `BEDROCK_MODEL_ID` (a model or inference profile), `BEDROCK_TEMPERATURE` (0.1),
    /// `BEDROCK_MAX_TOKENS` (1000).
    pub fn answer_model(&self) -> Result<(Arc<dyn AnswerModel>, String), ConfigError> {
        let model_id = self.env.required("BEDROCK_MODEL_ID")?;
        let temperature: f32 = self.env.parsed_or("BEDROCK_TEMPERATURE", 0.1)?;
        if !(0.0..=1.0).contains(&temperature) {
            return Err(ConfigError {
                name: "BEDROCK_TEMPERATURE",
                reason: format!("{temperature} is not between 0 and 1"),
            });
        }
        let max_tokens: i32 = self.env.parsed_or("BEDROCK_MAX_TOKENS", 1000)?;
        if !(1..=65_536).contains(&max_tokens) {
            return Err(ConfigError {
                name: "BEDROCK_MAX_TOKENS",
                reason: format!("{max_tokens} is not between 1 and 65536"),
            });
        }
        let settings = ConverseSettings {
            temperature,
            max_tokens,
            ..ConverseSettings::new(model_id.clone())
        };
        let model: Arc<dyn AnswerModel> = Arc::new(BedrockAnswerModel::new(
            aws_sdk_bedrockruntime::Client::new(&self.sdk_for(Timeouts::BoundByDeadline)),
            settings,
        ));
        Ok((
            Guarded::new(model, self.resilience()?.dependency("bedrock-converse")),
            model_id,
        ))
    }

    pub fn errors(&self) -> Result<Arc<DynamoErrors>, ConfigError> {
        Ok(Arc::new(DynamoErrors::new(
            self.dynamodb(),
            self.env.required("ERRORS_TABLE")?,
        )))
    }

    pub fn notifier(&self) -> Result<Arc<SnsNotifier>, ConfigError> {
        Ok(Arc::new(SnsNotifier::new(
            aws_sdk_sns::Client::new(&self.sdk_for(Timeouts::Quick)),
            self.env.required("ALERTS_TOPIC_ARN")?,
        )))
    }

    pub fn dead_letter_queue(&self) -> Result<Arc<DeadLetterQueue>, ConfigError> {
        Ok(Arc::new(DeadLetterQueue::new(
            aws_sdk_sqs::Client::new(&self.sdk_for(Timeouts::Quick)),
            self.env.required("DLQ_URL")?,
        )))
    }

    /// Amazon Transcribe with clips and transcripts in `AUDIO_BUCKET`; `TRANSCRIBE_LANGUAGE`
    /// (`en-US`), `TRANSCRIBE_MAX_WAIT_SECONDS` (25, cut to the invocation's deadline) and
    /// `TRANSCRIBE_STREAMING` (`true`: WAV, FLAC and Ogg/Opus are streamed, the rest go to batch
    /// jobs; `false`: every clip goes to a batch job).
    pub fn transcriber(&self) -> Result<Arc<dyn Transcriber>, ConfigError> {
        let language = self
            .env
            .optional("TRANSCRIBE_LANGUAGE")
            .unwrap_or("en-US")
            .to_owned();
        if !aws_sdk_transcribe::types::LanguageCode::values().contains(&language.as_str()) {
            return Err(ConfigError {
                name: "TRANSCRIBE_LANGUAGE",
                reason: format!("{language:?} is not a language Amazon Transcribe knows"),
            });
        }
        let language = aws_sdk_transcribe::types::LanguageCode::from(language.as_str());
        let path_style = self.env.flag("S3_FORCE_PATH_STYLE", false)?;
        let streaming = self.env.flag("TRANSCRIBE_STREAMING", true)?;
        let settings = TranscribeSettings {
            bucket: self.env.required("AUDIO_BUCKET")?,
            language,
            max_wait: Duration::from_secs(self.env.parsed_or("TRANSCRIBE_MAX_WAIT_SECONDS", 25)?),
            ..TranscribeSettings::default()
        };
        let mut transcriber = AwsTranscriber::new(
            aws_sdk_transcribe::Client::new(&self.sdk_for(Timeouts::Quick)),
            crate::s3::client(&self.sdk_for(Timeouts::Storage), path_style),
            settings,
        );
        if streaming {
            transcriber = transcriber.with_streaming(aws_sdk_transcribestreaming::Client::new(
                &self.sdk_for(Timeouts::BoundByDeadline),
            ));
        }
        let transcriber: Arc<dyn Transcriber> = Arc::new(transcriber);
        Ok(Guarded::new(
            transcriber,
            self.resilience()?.dependency("transcribe"),
        ))
    }

    /// `MAX_AUDIO_DURATION_SECONDS` and `MAX_AUDIO_BYTES`.
    pub fn audio_limits(&self) -> Result<AudioLimits, ConfigError> {
        AudioLimits::from_vars(self.env.vars())
    }

    pub fn quota(&self) -> Result<QuotaLimits, ConfigError> {
        QuotaLimits::from_vars(self.env.vars())
    }

    pub fn pricing(&self) -> Result<Pricing, ConfigError> {
        Pricing::from_vars(Pricing::free(), self.env.vars())
    }

    /// The environment, with `HMAC_SIGNING_KEY` read from the Secrets Manager secret
    /// `HMAC_SIGNING_KEY_SECRET_ARN` names (once, at init), unless the key itself is set (as
    /// manuel-local and tests set it).
    async fn security_vars(&self) -> Result<HashMap<String, String>, ConfigError> {
        let mut vars = self.env.vars().clone();
        if self.env.optional("HMAC_SIGNING_KEY").is_none()
            && let Some(secret) = self.env.optional("HMAC_SIGNING_KEY_SECRET_ARN")
        {
            let client = aws_sdk_secretsmanager::Client::new(&self.sdk_for(Timeouts::Quick));
            let key = crate::secrets::secret_string(&client, secret)
                .await
                .map_err(|error| ConfigError {
                    name: "HMAC_SIGNING_KEY_SECRET_ARN",
                    reason: format!("the signing key could not be read: {error}"),
                })?;
            vars.insert("HMAC_SIGNING_KEY".to_owned(), key);
        }
        Ok(vars)
    }

    /// The security middleware: settings from the environment, tokens checked against the user
    /// pool (`JWT_ISSUER`, `JWT_AUDIENCE`, `JWKS_URL`, `VERIFY_JWT`), rate limits and used
    /// signatures in `RATE_LIMITS_TABLE`, idempotency records in `IDEMPOTENCY_TABLE`.
    pub async fn security(&self) -> Result<Security, ConfigError> {
        let config = SecurityConfig::from_vars(&self.security_vars().await?)?;
        let identity = IdentityConfig::from_vars(self.env.vars())?;
        let verifier = crate::cognito::verifier(&identity)
            .await
            .map_err(|error| ConfigError {
                name: "JWKS_URL",
                reason: error.to_string(),
            })?;
        let limits = Arc::new(DynamoLimits::new(
            self.dynamodb(),
            self.env.required("RATE_LIMITS_TABLE")?,
        ));
        let dynamodb = self.resilience()?.dependency("dynamodb");
        let rate_limits: Arc<dyn RateLimitStore> = limits.clone();
        let replay_guard: Arc<dyn ReplayGuard> = limits;
        let idempotency: Arc<dyn IdempotencyStore> = Arc::new(DynamoIdempotency::new(
            self.dynamodb(),
            self.env.required("IDEMPOTENCY_TABLE")?,
        ));
        Ok(Security {
            config: Arc::new(config),
            verifier: Arc::new(verifier),
            rate_limits: Guarded::new(rate_limits, dynamodb.clone()),
            replay_guard: Guarded::new(replay_guard, dynamodb.clone()),
            idempotency: Guarded::new(idempotency, dynamodb),
            idempotency_config: IdempotencyConfig::from_vars(self.env.vars())?,
        })
    }
}

/// Serves `routes` for API Gateway REST proxy events, with the same fallbacks and middleware as
/// the local server.
pub async fn run_http(routes: Router, security: &Security) -> Result<(), lambda_http::Error> {
    let app = behind_api_gateway::<lambda_http::Body>(serve_app(routes, security));
    lambda_http::run(app).await
}

/// How API Gateway invokes a function, from `RESPONSE_TRANSFER_MODE` (template.yaml sets it
/// next to the route's transfer mode; the two must agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// `Invoke`: the whole response as one JSON document (the default).
    Buffered,
    /// `InvokeWithResponseStream`: a JSON prelude, eight NUL bytes, then the body as it is
    /// written.
    Stream,
}

impl Init {
    pub fn transfer_mode(&self) -> Result<TransferMode, ConfigError> {
        match self.env.optional("RESPONSE_TRANSFER_MODE") {
            None | Some("BUFFERED") => Ok(TransferMode::Buffered),
            Some("STREAM") => Ok(TransferMode::Stream),
            Some(other) => Err(ConfigError {
                name: "RESPONSE_TRANSFER_MODE",
                reason: format!("must be BUFFERED or STREAM, not {other:?}"),
            }),
        }
    }
}

/// Serves `routes` as [`run_http`] does, in `mode`: streamed responses reach the client as they
/// are written, each header once (API Gateway's streaming prelude takes no repeated header).
pub async fn serve_http(
    routes: Router,
    security: &Security,
    mode: TransferMode,
) -> Result<(), lambda_http::Error> {
    match mode {
        TransferMode::Buffered => run_http(routes, security).await,
        TransferMode::Stream => {
            let app = serve_app(routes, security).layer(axum::middleware::map_response(
                crate::gateway::single_valued_headers,
            ));
            lambda_http::run_with_streaming_response(behind_api_gateway::<lambda_http::Body>(app))
                .await
        }
    }
}
