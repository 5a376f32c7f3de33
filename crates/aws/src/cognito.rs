//! Cognito identity: the user pool's JWKS fetched over HTTPS (its URL configurable apart from
//! the expected issuer, so a moto pool works in tests), feeding the core JWT verifier.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use manuel_core::PortError;
use manuel_core::auth::{IdentityConfig, JwksSource, JwtVerifier};

const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_JWKS_BYTES: usize = 256 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub struct HttpJwksSource {
    client: HttpsClient,
    url: axum::http::Uri,
}

fn unavailable(error: impl std::fmt::Display) -> PortError {
    PortError::Unavailable {
        service: "jwks",
        message: error.to_string(),
    }
}

impl HttpJwksSource {
    pub fn new(url: &str) -> Result<Self, PortError> {
        let url: axum::http::Uri = url
            .parse()
            .map_err(|error| PortError::failed(format!("JWKS_URL is not a URL: {error}")))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|error| PortError::failed(format!("no TLS root certificates: {error}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url,
        })
    }
}

#[async_trait]
impl JwksSource for HttpJwksSource {
    async fn fetch(&self) -> Result<JwkSet, PortError> {
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.get(self.url.clone()))
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(response.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| unavailable("timed out reading the body"))?
        .map_err(unavailable)?
        .to_bytes();
        serde_json::from_slice(&body).map_err(|error| unavailable(format!("not a JWKS: {error}")))
    }
}

/// The verifier for a deployed stack: keys fetched now (a failure is logged and retried on the
/// first token), refreshed on unknown key ids, authorizer claims trusted unless `VERIFY_JWT`.
pub async fn verifier(config: &IdentityConfig) -> Result<JwtVerifier, PortError> {
    let source = Arc::new(HttpJwksSource::new(&config.jwks_url)?);
    let initial = match source.fetch().await {
        Ok(jwks) => jwks,
        Err(error) => {
            tracing::warn!(%error, "JWKS not available at init; it will be fetched on the first token");
            JwkSet { keys: Vec::new() }
        }
    };
    Ok(JwtVerifier::new(&initial, &config.issuer, &config.audience)
        .with_source(source)
        .trusting_gateway_claims(!config.verify_jwt))
}
