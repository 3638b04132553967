//! Refresh tokens: opaque, stored as SHA-256 hashes, rotated on every use. Presenting a
//! token that was already exchanged means it was stolen or replayed, so its whole family
//! (every token descended from the same login) is revoked.
//!
//! A token reads `<tenant id>.<token id>.<secret>`: the tenant and id locate the row inside
//! the clinic's row-level-security scope, the secret proves possession.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use poem_openapi::Object;
use scoped_futures::ScopedFutureExt;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AuthService;
use crate::Kernel;
use crate::db::{Conn, TenantScope};
use crate::error::Error;
use crate::schema::{memberships, refresh_tokens as rt};
use crate::util::{b64url_decode, b64url_encode, random_bytes, sha256};

/// The tokens a client holds after logging in.
#[derive(Debug, Clone, Object)]
pub struct TokenPair {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    pub token_type: String,
    /// Lifetime of the access token, in seconds.
    pub expires_in: i64,
    /// Exchange at `POST /api/v1/auth/refresh` for a new pair; usable once.
    pub refresh_token: String,
    /// The clinic both tokens act in.
    pub tenant_id: Uuid,
}

struct ParsedToken {
    tenant_id: Uuid,
    id: Uuid,
    secret: Vec<u8>,
}

fn invalid() -> Error {
    Error::Unauthenticated {
        code: "invalid_refresh_token",
        detail: "the refresh token is invalid, expired or revoked; log in again",
    }
}

fn parse(token: &str) -> Result<ParsedToken, Error> {
    let mut parts = token.split('.');
    let (Some(tenant), Some(id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    Ok(ParsedToken {
        tenant_id: tenant.parse().map_err(|_| invalid())?,
        id: id.parse().map_err(|_| invalid())?,
        secret: b64url_decode(secret)
            .filter(|s| s.len() == 32)
            .ok_or_else(invalid)?,
    })
}

/// Inserts a new refresh token (in `family`, or a new family) and signs an access token.
/// Must run inside a tenant transaction of `tenant`.
pub(crate) async fn issue(
    conn: &mut Conn,
    auth: &AuthService,
    tenant: Uuid,
    user: Uuid,
    family: Option<Uuid>,
) -> Result<TokenPair, Error> {
    let id = Uuid::now_v7();
    let secret: [u8; 32] = random_bytes();
    let expires_at = Utc::now() + chrono::Duration::days(auth.config().refresh_token_ttl_days);
    diesel::insert_into(rt::table)
        .values((
            rt::tenant_id.eq(tenant),
            rt::id.eq(id),
            rt::family_id.eq(family.unwrap_or(id)),
            rt::user_id.eq(user),
            rt::token_hash.eq(sha256(&secret)),
            rt::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    let (access_token, expires_in) = auth.issue_access_token(user, tenant)?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
        refresh_token: format!("{tenant}.{id}.{}", b64url_encode(&secret)),
        tenant_id: tenant,
    })
}

enum Rotation {
    Rotated(TokenPair),
    Reused,
    Invalid,
}

/// Exchanges a refresh token for a new pair.
pub(crate) async fn rotate(kernel: &Kernel, token: &str) -> Result<TokenPair, Error> {
    let parsed = parse(token)?;
    let scope = TenantScope::clinic(parsed.tenant_id);
    let auth = &kernel.auth;
    let outcome = kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let row: Option<(
                    Uuid,
                    Uuid,
                    Vec<u8>,
                    DateTime<Utc>,
                    Option<DateTime<Utc>>,
                    Option<DateTime<Utc>>,
                )> = rt::table
                    .filter(rt::id.eq(parsed.id))
                    .select((
                        rt::family_id,
                        rt::user_id,
                        rt::token_hash,
                        rt::expires_at,
                        rt::used_at,
                        rt::revoked_at,
                    ))
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let Some((family, user, hash, expires_at, used_at, revoked_at)) = row else {
                    return Ok(Rotation::Invalid);
                };
                if !bool::from(hash.ct_eq(&sha256(&parsed.secret))) {
                    return Ok(Rotation::Invalid);
                }
                if used_at.is_some() {
                    revoke_family(conn, family).await?;
                    return Ok(Rotation::Reused);
                }
                if revoked_at.is_some() || expires_at <= Utc::now() {
                    return Ok(Rotation::Invalid);
                }
                let active: bool = diesel::select(diesel::dsl::exists(
                    memberships::table
                        .filter(memberships::user_id.eq(user))
                        .filter(memberships::status.eq("active")),
                ))
                .get_result(conn)
                .await?;
                if !active {
                    return Ok(Rotation::Invalid);
                }
                diesel::update(rt::table.filter(rt::id.eq(parsed.id)))
                    .set(rt::used_at.eq(Utc::now()))
                    .execute(conn)
                    .await?;
                let pair = issue(conn, auth, parsed.tenant_id, user, Some(family)).await?;
                Ok::<_, Error>(Rotation::Rotated(pair))
            }
            .scope_boxed()
        })
        .await?;
    match outcome {
        Rotation::Rotated(pair) => Ok(pair),
        Rotation::Reused => {
            tracing::warn!("tenant.id" = %parsed.tenant_id, "refresh token reused; family revoked");
            Err(Error::Unauthenticated {
                code: "refresh_token_reused",
                detail: "this refresh token was already used; every session of this login was ended",
            })
        }
        Rotation::Invalid => Err(invalid()),
    }
}

async fn revoke_family(conn: &mut Conn, family: Uuid) -> Result<(), Error> {
    diesel::update(
        rt::table
            .filter(rt::family_id.eq(family))
            .filter(rt::revoked_at.is_null()),
    )
    .set(rt::revoked_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the session a refresh token belongs to (logout). Unknown tokens are ignored, so
/// logout always succeeds.
pub(crate) async fn revoke(kernel: &Kernel, token: &str) -> Result<(), Error> {
    let Ok(parsed) = parse(token) else {
        return Ok(());
    };
    let scope = TenantScope::clinic(parsed.tenant_id);
    kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let row: Option<(Uuid, Vec<u8>)> = rt::table
                    .filter(rt::id.eq(parsed.id))
                    .select((rt::family_id, rt::token_hash))
                    .first(conn)
                    .await
                    .optional()?;
                if let Some((family, hash)) = row
                    && bool::from(hash.ct_eq(&sha256(&parsed.secret)))
                {
                    revoke_family(conn, family).await?;
                }
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await
}

/// Revokes every refresh token of `user` in the current tenant (suspension, role loss).
pub(crate) async fn revoke_user(conn: &mut Conn, user: Uuid) -> Result<(), Error> {
    diesel::update(
        rt::table
            .filter(rt::user_id.eq(user))
            .filter(rt::revoked_at.is_null()),
    )
    .set(rt::revoked_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(())
}
