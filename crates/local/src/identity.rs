//! The local server's own identity provider: an RSA key kept in the data directory, tokens
//! signed with it, and the JWKS that lets the server (and anyone else) verify them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::secrets::write_new_secret_file;

/// The `iss` of local tokens.
pub const ISSUER: &str = "manuel-local";
/// The `aud` of local ID tokens: the app client they are issued to.
pub const AUDIENCE: &str = "manuel-app";

const KEY_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write the signing key at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the signing key at {0} is not a valid RSA private key (PKCS#8 PEM); move it away to create a new one"
    )]
    BadKey(PathBuf),
    #[error("cannot create a signing key: {0}")]
    Crypto(String),
    #[error("the user name must be 1-64 letters, digits or . _ - @")]
    BadUser,
}

pub struct LocalIdentity {
    encoding_key: EncodingKey,
    kid: String,
    jwks: Value,
}

impl LocalIdentity {
    /// Loads the key from `<data_dir>/keys/jwt-signing-key.pem`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join("keys").join("jwt-signing-key.pem");
        let private_key = match std::fs::read_to_string(&path) {
            Ok(pem) => RsaPrivateKey::from_pkcs8_pem(&pem)
                .map_err(|_| IdentityError::BadKey(path.clone()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_key(&path)?,
            Err(source) => return Err(IdentityError::Io { path, source }),
        };
        let der = private_key
            .to_pkcs1_der()
            .map_err(|error| IdentityError::Crypto(error.to_string()))?;
        let encoding_key = EncodingKey::from_rsa_der(der.as_bytes());
        let n = private_key.n().to_bytes_be();
        let e = private_key.e().to_bytes_be();
        let kid = hex::encode(&Sha256::digest([n.as_slice(), e.as_slice()].concat())[..8]);
        let jwks = json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(&n),
                "e": URL_SAFE_NO_PAD.encode(&e),
            }]
        });
        Ok(Self {
            encoding_key,
            kid,
            jwks,
        })
    }

    pub fn jwks_json(&self) -> &Value {
        &self.jwks
    }

    pub fn jwk_set(&self) -> Result<JwkSet, IdentityError> {
        serde_json::from_value(self.jwks.clone())
            .map_err(|error| IdentityError::Crypto(error.to_string()))
    }

    /// An ID token for `user`, valid for `ttl_seconds`.
    pub fn issue_token(&self, user: &str, ttl_seconds: u64) -> Result<String, IdentityError> {
        let valid_user = !user.is_empty()
            && user.len() <= 64
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !valid_user {
            return Err(IdentityError::BadUser);
        }
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2);
        let claims = json!({
            "sub": user,
            "cognito:username": user,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "token_use": "id",
            "iat": now,
            "auth_time": now,
            "exp": now.saturating_add(ttl),
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .map_err(|error| IdentityError::Crypto(error.to_string()))
    }
}

fn create_key(path: &Path) -> Result<RsaPrivateKey, IdentityError> {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), KEY_BITS)
        .map_err(|error| IdentityError::Crypto(error.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| IdentityError::Crypto(error.to_string()))?;
    match write_new_secret_file(path, pem.as_bytes()) {
        Ok(true) => Ok(key),
        // Another process created it first: use theirs, so every token verifies.
        Ok(false) => {
            let pem = std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
                path: path.to_owned(),
                source,
            })?;
            RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|_| IdentityError::BadKey(path.to_owned()))
        }
        Err(source) => Err(IdentityError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manuel_core::auth::JwtVerifier;

    #[test]
    fn tokens_verify_against_the_published_jwks_and_the_key_persists()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let identity = LocalIdentity::load_or_create(dir.path())?;
        let token = identity.issue_token("alice", 60)?;
        let verifier = JwtVerifier::new(&identity.jwk_set()?, ISSUER, AUDIENCE);
        assert_eq!(
            verifier.verify_cached(&token).map(|u| u.to_string()),
            Ok("alice".to_owned())
        );

        let reloaded = LocalIdentity::load_or_create(dir.path())?;
        assert_eq!(reloaded.jwks_json(), identity.jwks_json());
        let other_audience = JwtVerifier::new(&identity.jwk_set()?, ISSUER, "someone-else");
        assert!(other_audience.verify_cached(&token).is_err());
        assert!(identity.issue_token("../etc", 60).is_err());
        Ok(())
    }
}
