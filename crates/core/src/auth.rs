//! Identity: RS256 bearer tokens verified against a JWKS, and the authenticated user extractor.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use crate::domain::UserId;
use crate::error::ApiError;

/// The largest clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("A bearer token is required in the Authorization header.")]
    Missing,
    #[error("The bearer token is not valid: {0}.")]
    Invalid(&'static str),
    #[error("The bearer token has expired.")]
    Expired,
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Unauthorized(error.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    token_use: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, expected: &str) -> bool {
        match self {
            Self::One(aud) => aud == expected,
            Self::Many(auds) => auds.iter().any(|aud| aud == expected),
        }
    }
}

/// Where a verifier gets fresh keys when a token names a `kid` it does not know (Cognito's
/// JWKS URL in AWS). The local server has no source: its one key never rotates.
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, crate::PortError>;
}

/// Where tokens come from in a deployed stack: `JWT_ISSUER` (the user pool's issuer URL),
/// `JWT_AUDIENCE` (the app client id), `JWKS_URL` (defaults to the issuer's
/// `/.well-known/jwks.json`) and `VERIFY_JWT` (re-verify tokens API Gateway's authorizer
/// already checked; default true).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub verify_jwt: bool,
}

impl IdentityConfig {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, crate::config::ConfigError> {
        let env = crate::config::Env::from_vars(vars.clone());
        let issuer = env.required("JWT_ISSUER")?;
        let audience = env.required("JWT_AUDIENCE")?;
        let jwks_url = env
            .optional("JWKS_URL")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        let verify_jwt = env.flag("VERIFY_JWT", true)?;
        Ok(Self {
            issuer,
            audience,
            jwks_url,
            verify_jwt,
        })
    }
}

/// At most one JWKS refresh per this interval, however many unknown `kid`s arrive.
const UNKNOWN_KID: &str = "unknown key id";

const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Claims that API Gateway's Cognito authorizer already verified, put in the request
/// extensions by the Lambda adapter.
#[derive(Clone, Debug)]
pub struct GatewayClaims {
    pub sub: String,
}

/// Verifies RS256 tokens: signature by a known `kid`, `iss`, `aud` (ID tokens) or `client_id`
/// (access tokens), `token_use`, `exp` and `nbf`.
pub struct JwtVerifier {
    keys: std::sync::RwLock<HashMap<String, DecodingKey>>,
    validation: Validation,
    audience: String,
    source: Option<Arc<dyn JwksSource>>,
    last_refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Behind API Gateway's authorizer, use its claims instead of verifying again.
    trust_gateway_claims: bool,
}

fn rsa_keys(jwks: &JwkSet) -> HashMap<String, DecodingKey> {
    jwks.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            match &jwk.algorithm {
                AlgorithmParameters::RSA(rsa) => DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
                    .ok()
                    .map(|key| (kid, key)),
                _ => None,
            }
        })
        .collect()
}

impl JwtVerifier {
    /// Keeps the RSA keys of `jwks`; keys of other types are ignored because only RS256 is allowed.
    pub fn new(jwks: &JwkSet, issuer: &str, audience: &str) -> Self {
        let keys = rsa_keys(jwks);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            keys: std::sync::RwLock::new(keys),
            validation,
            audience: audience.to_owned(),
            source: None,
            last_refresh: tokio::sync::Mutex::new(None),
            trust_gateway_claims: false,
        }
    }

    /// Refreshes keys from `source` when a token names an unknown `kid` (rate-limited).
    pub fn with_source(mut self, source: Arc<dyn JwksSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Uses API Gateway authorizer claims when present (`VERIFY_JWT` off).
    pub fn trusting_gateway_claims(mut self, trust: bool) -> Self {
        self.trust_gateway_claims = trust;
        self
    }

    /// Verifies with the keys already known, refreshing them once (rate-limited) when the token
    /// names an unknown `kid`.
    pub async fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        match self.verify_cached(token) {
            Err(AuthError::Invalid(UNKNOWN_KID)) if self.source.is_some() => {
                self.refresh().await;
                self.verify_cached(token)
            }
            other => other,
        }
    }

    async fn refresh(&self) {
        let Some(source) = &self.source else {
            return;
        };
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
        match source.fetch().await {
            Ok(jwks) => {
                if let Ok(mut keys) = self.keys.write() {
                    *keys = rsa_keys(&jwks);
                }
            }
            Err(error) => tracing::warn!(%error, "JWKS refresh failed"),
        }
    }

    /// Verifies with the keys already known, without any refresh.
    pub fn verify_cached(&self, token: &str) -> Result<UserId, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Invalid("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid("algorithm not allowed"));
        }
        // RFC 7515 §4.1.11: a recipient that does not understand every listed extension must
        // refuse the token; this verifier understands none.
        if header.crit.is_some() {
            return Err(AuthError::Invalid(
                "critical header extensions are not supported",
            ));
        }
        let kid = header.kid.ok_or(AuthError::Invalid("no key id"))?;
        let keys = self
            .keys
            .read()
            .map_err(|_| AuthError::Invalid("key store unavailable"))?;
        let key = keys.get(&kid).ok_or(AuthError::Invalid(UNKNOWN_KID))?;
        let data = decode::<Claims>(token, key, &self.validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet"),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer"),
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing claim"),
                _ => AuthError::Invalid("malformed token"),
            }
        })?;
        let claims = data.claims;
        // Cognito's tokens are issued at the moment they are given out; one issued in the
        // future (beyond the clock leeway) was not minted by it.
        let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(60);
        if claims
            .iat
            .is_some_and(|iat| iat > chrono::Utc::now().timestamp() + leeway)
        {
            return Err(AuthError::Invalid("issued in the future"));
        }
        let audience_ok = match claims.token_use.as_deref() {
            Some("access") => claims.client_id.as_deref() == Some(self.audience.as_str()),
            Some("id") | None => claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains(&self.audience)),
            Some(_) => return Err(AuthError::Invalid("wrong token use")),
        };
        if !audience_ok {
            return Err(AuthError::Invalid("wrong audience"));
        }
        UserId::parse(&claims.sub).ok_or(AuthError::Invalid("unusable subject"))
    }
}

/// The verified caller of an `/api/*` route.
#[derive(Clone, Debug)]
pub struct AuthenticatedUser(pub UserId);

/// Middleware: refuses requests without a valid bearer token, and hands the user to handlers.
pub async fn require_user(
    State(verifier): State<Arc<JwtVerifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let gateway_sub = verifier
        .trust_gateway_claims
        .then(|| {
            request
                .extensions()
                .get::<GatewayClaims>()
                .map(|claims| claims.sub.clone())
        })
        .flatten();
    let verified = match gateway_sub {
        Some(sub) => UserId::parse(&sub).ok_or(AuthError::Invalid("unusable subject")),
        None => {
            let token = bearer_token(request.headers()).map(str::to_owned);
            match token {
                Ok(token) => verifier.verify(&token).await,
                Err(error) => Err(error),
            }
        }
    };
    match verified {
        Ok(user) => {
            request.extensions_mut().insert(AuthenticatedUser(user));
            next.run(request).await
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("unreadable header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Invalid("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid("expected `Bearer <token>`"));
    }
    Ok(token.trim())
}

impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthenticatedUser>()
            .cloned()
            .ok_or_else(|| AuthError::Missing.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use serde_json::{Value, json};

    struct Keys {
        encoding: EncodingKey,
        jwks: JwkSet,
        public_der_b64: String,
    }

    fn keys(kid: &str) -> Keys {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .unwrap_or_else(|_| unreachable!());
        let der = private.to_pkcs1_der().unwrap_or_else(|_| unreachable!());
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n, "e": e}]}))
            .unwrap_or_else(|_| unreachable!());
        Keys {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwks,
            public_der_b64: n,
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(overrides: Value) -> Value {
        let mut claims = json!({"sub": "alice", "iss": "issuer", "aud": "app", "token_use": "id", "iat": now(), "exp": now() + 600});
        if let (Some(map), Some(extra)) = (claims.as_object_mut(), overrides.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    map.remove(key);
                } else {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        claims
    }

    fn sign(keys: &Keys, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        encode(&header, claims, &keys.encoding).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn only_well_formed_tokens_from_the_expected_issuer_and_audience_pass() {
        let good = keys("k1");
        let other = keys("k1");
        let verifier = JwtVerifier::new(&good.jwks, "issuer", "app");
        let ok = |token: &str| verifier.verify_cached(token).map(|user| user.to_string());

        assert_eq!(
            ok(&sign(&good, "k1", &claims(json!({})))),
            Ok("alice".to_owned())
        );
        assert_eq!(
            ok(&sign(
                &good,
                "k1",
                &claims(json!({"token_use": "access", "aud": null, "client_id": "app"}))
            )),
            Ok("alice".to_owned())
        );
        // Within the leeway.
        assert!(ok(&sign(&good, "k1", &claims(json!({"exp": now() - 30})))).is_ok());
        assert!(ok(&sign(&good, "k1", &claims(json!({"iat": now() + 30})))).is_ok());

        let refused = [
            ("other key", sign(&other, "k1", &claims(json!({})))),
            ("unknown kid", sign(&good, "k2", &claims(json!({})))),
            (
                "expired",
                sign(&good, "k1", &claims(json!({"exp": now() - 120}))),
            ),
            (
                "not yet valid",
                sign(&good, "k1", &claims(json!({"nbf": now() + 600}))),
            ),
            (
                "wrong issuer",
                sign(&good, "k1", &claims(json!({"iss": "evil"}))),
            ),
            (
                "wrong audience",
                sign(&good, "k1", &claims(json!({"aud": "other"}))),
            ),
            (
                "no audience",
                sign(&good, "k1", &claims(json!({"aud": null}))),
            ),
            (
                "access token for another client",
                sign(
                    &good,
                    "k1",
                    &claims(json!({"token_use": "access", "client_id": "other"})),
                ),
            ),
            (
                "odd token_use",
                sign(&good, "k1", &claims(json!({"token_use": "refresh"}))),
            ),
            ("no exp", sign(&good, "k1", &claims(json!({"exp": null})))),
            (
                "unsafe sub",
                sign(&good, "k1", &claims(json!({"sub": "../bob"}))),
            ),
            ("empty sub", sign(&good, "k1", &claims(json!({"sub": ""})))),
            (
                "issued in the future",
                sign(&good, "k1", &claims(json!({"iat": now() + 3600}))),
            ),
            ("critical header", {
                let mut header = Header::new(Algorithm::RS256);
                header.kid = Some("k1".to_owned());
                header.crit = Some(vec!["exp".to_owned()]);
                encode(&header, &claims(json!({})), &good.encoding)
                    .unwrap_or_else(|_| unreachable!())
            }),
        ];
        for (why, token) in refused {
            assert!(ok(&token).is_err(), "{why} was accepted");
        }

        // alg=none and HS256 signed with the public key are refused before any signature check.
        let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
        );
        assert_eq!(ok(&none), Err(AuthError::Invalid("malformed token")));
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.kid = Some("k1".to_owned());
        let hs = encode(
            &hs_header,
            &claims(json!({})),
            &EncodingKey::from_secret(good.public_der_b64.as_bytes()),
        )
        .unwrap_or_else(|_| unreachable!());
        assert_eq!(ok(&hs), Err(AuthError::Invalid("algorithm not allowed")));
        assert!(ok("").is_err());
        assert!(ok("a.b.c").is_err());
    }

    struct CountingSource {
        jwks: JwkSet,
        fetches: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl JwksSource for CountingSource {
        async fn fetch(&self) -> Result<JwkSet, crate::PortError> {
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.jwks.clone())
        }
    }

    #[tokio::test]
    async fn an_unknown_kid_triggers_one_rate_limited_refresh() {
        let old = keys("old");
        let rotated = keys("new");
        let source = Arc::new(CountingSource {
            jwks: rotated.jwks.clone(),
            fetches: std::sync::atomic::AtomicUsize::new(0),
        });
        let verifier = JwtVerifier::new(&old.jwks, "issuer", "app").with_source(source.clone());
        let fresh = sign(&rotated, "new", &claims(json!({})));
        assert_eq!(
            verifier.verify(&fresh).await.map(|u| u.to_string()),
            Ok("alice".to_owned())
        );
        let forged = sign(&old, "unknown", &claims(json!({})));
        for _ in 0..5 {
            assert!(verifier.verify(&forged).await.is_err());
        }
        assert_eq!(source.fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
