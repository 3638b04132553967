//! Authentication: argon2id password hashes, short-lived JWT access tokens bound to one
//! clinic, rotating refresh tokens stored hashed, and login throttling.

pub mod api;
pub(crate) mod extract;
mod refresh;
mod throttle;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::AuthConfig;
use crate::error::Error;

pub use extract::{Actor, ActorKind, BearerAuth};
pub use refresh::TokenPair;
pub(crate) use refresh::revoke_user as revoke_user_tokens;
pub(crate) use throttle::prune as prune_login_throttle;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user.
    pub sub: Uuid,
    /// The clinic this token acts in.
    pub tid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Hashes passwords and signs and verifies access tokens.
pub struct AuthService {
    config: AuthConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Verified against when the account does not exist, so that both answers take as long.
    dummy_hash: String,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn hasher() -> Argon2<'static> {
    // OWASP's recommended argon2id setting: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl AuthService {
    /// Needs `config.jwt_secret` (see [`crate::config::Config::ensure_secrets`]).
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let secret = config
            .jwt_secret
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no JWT signing key configured"))?;
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        validation.algorithms = vec![JwtAlgorithm::HS256];
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        validation.leeway = 5;
        let dummy_hash = hasher()
            .hash_password(b"not a real password; equalises login timing")
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        Ok(Self {
            config: config.clone(),
            encoding: EncodingKey::from_secret(key)?,
            decoding: DecodingKey::from_secret(key)?,
            validation,
            dummy_hash,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Hashes a password on a blocking thread (argon2 is deliberately slow).
    pub async fn hash_password(&self, password: &str) -> Result<String, Error> {
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            hasher()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::internal(anyhow::anyhow!("argon2: {e}")))
    }

    /// Checks a password against a stored hash; with no hash (unknown user, or an invitee
    /// who has not chosen a password) it does the same work and answers `false`.
    pub async fn verify_password(&self, hash: Option<String>, password: &str) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            hasher()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        known && verified
    }

    /// Signs an access token for `user` acting in `tenant`; returns it with its lifetime.
    pub fn issue_access_token(&self, user: Uuid, tenant: Uuid) -> Result<(String, i64), Error> {
        let now = chrono::Utc::now().timestamp();
        let ttl = self.config.access_token_ttl_secs;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user,
            tid: tenant,
            iat: now,
            exp: now + ttl,
            jti: Uuid::now_v7(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(JwtAlgorithm::HS256), &claims, &self.encoding)
                .map_err(Error::internal)?;
        Ok((token, ttl))
    }

    /// Verifies an access token: signature, algorithm, issuer, audience and expiry.
    pub fn verify_access_token(&self, token: &str) -> Result<Claims, Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Error::Unauthenticated {
                code: "invalid_token",
                detail: "the access token is invalid or expired",
            })
    }
}
