//! `Idempotency-Key` for POSTs: a retried request gets the first answer again instead of
//! creating a second resource.
//!
//! Keys are scoped to the clinic and the user of the bearer token. A key reused with a
//! different request is a 422; a key whose first request is still running is a 409. Answers
//! below 500 are stored and replayed for 24 hours; after a 5xx the key is released so that
//! the client can retry.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use scoped_futures::ScopedFutureExt;

use super::Problem;
use crate::Kernel;
use crate::db::{Db, TenantScope};
use crate::error::Error;
use crate::schema::idempotency_keys as ik;
use crate::sql::sql;
use crate::util::sha256;

pub const HEADER: &str = "idempotency-key";

enum Claim {
    /// This request owns the key: run it and store its answer.
    Owned,
    Replay {
        status: i32,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    InProgress,
    Mismatch,
}

/// Serves `req` through `next`, applying idempotency when the request asks for it.
pub async fn serve<E: Endpoint>(next: &E, kernel: &Kernel, mut req: Request) -> Response {
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.get_response(req).await;
    };
    if req.method() != Method::POST {
        return next.get_response(req).await;
    }
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => {
            return Problem::from(Error::invalid(
                "Idempotency-Key",
                "1 to 255 visible ASCII characters, e.g. a UUID",
            ))
            .into_response();
        }
    };
    // Without a valid token there is no one to scope the key to; the handler will refuse.
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| kernel.auth.verify_access_token(token).ok());
    let Some(claims) = bearer else {
        return next.get_response(req).await;
    };
    let scope = TenantScope {
        tenant_id: claims.tid,
        user_id: Some(claims.sub),
    };

    let body = match req.take_body().into_bytes().await {
        Ok(body) => body,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            )
            .into_response();
        }
    };
    let mut fingerprint = format!("{} {}\n", req.method(), req.uri()).into_bytes();
    fingerprint.extend_from_slice(&body);
    let hash = sha256(&fingerprint);

    let claim = match claim(&kernel.db, scope, &key, hash).await {
        Ok(claim) => claim,
        Err(err) => return Problem::from(err).into_response(),
    };
    match claim {
        Claim::Replay {
            status,
            content_type,
            body,
        } => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK))
                .header("idempotent-replayed", "true")
                .body(body);
            if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
        }
        Claim::InProgress => Problem::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response(),
        Claim::Mismatch => Problem::from(Error::invalid(
            "Idempotency-Key",
            "this key was used for a different request; use a new key for a new request",
        ))
        .into_response(),
        Claim::Owned => {
            req.set_body(Body::from_bytes(body));
            let mut response = next.get_response(req).await;
            let status = response.status();
            let bytes = response.take_body().into_vec().await.unwrap_or_default();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Err(err) = finish(&kernel.db, scope, &key, status, content_type, &bytes).await {
                tracing::warn!(error = %err, "could not store an idempotent response");
            }
            response.set_body(bytes);
            response
        }
    }
}

async fn claim(db: &Db, scope: TenantScope, key: &str, hash: Vec<u8>) -> Result<Claim, Error> {
    let key = key.to_owned();
    let user = scope.user_id.unwrap_or_default();
    db.tenant(scope, |conn| {
        async move {
            let inserted = diesel::insert_into(ik::table)
                .values((
                    ik::tenant_id.eq(scope.tenant_id),
                    ik::user_id.eq(user),
                    ik::key.eq(&key),
                    ik::request_hash.eq(&hash),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 1 {
                return Ok(Claim::Owned);
            }
            let (stored_hash, status, content_type, body): (
                Vec<u8>,
                Option<i32>,
                Option<String>,
                Option<Vec<u8>>,
            ) = ik::table
                .filter(ik::user_id.eq(user))
                .filter(ik::key.eq(&key))
                .select((
                    ik::request_hash,
                    ik::response_status,
                    ik::response_content_type,
                    ik::response_body,
                ))
                .first(conn)
                .await?;
            Ok::<_, Error>(match status {
                _ if stored_hash != hash => Claim::Mismatch,
                None => Claim::InProgress,
                Some(status) => Claim::Replay {
                    status,
                    content_type,
                    body: body.unwrap_or_default(),
                },
            })
        }
        .scope_boxed()
    })
    .await
}

async fn finish(
    db: &Db,
    scope: TenantScope,
    key: &str,
    status: StatusCode,
    content_type: Option<String>,
    body: &[u8],
) -> Result<(), Error> {
    let key = key.to_owned();
    let body = body.to_vec();
    let user = scope.user_id.unwrap_or_default();
    db.tenant(scope, |conn| {
        async move {
            let row = ik::table
                .filter(ik::user_id.eq(user))
                .filter(ik::key.eq(&key));
            if status.is_server_error() {
                diesel::delete(row).execute(conn).await?;
            } else {
                diesel::update(row)
                    .set((
                        ik::response_status.eq(i32::from(status.as_u16())),
                        ik::response_content_type.eq(content_type),
                        ik::response_body.eq(body),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, Error>(())
        }
        .scope_boxed()
    })
    .await
}

/// Forgets keys older than a day; run by a scheduled job across all clinics.
pub async fn prune(db: &Db) -> Result<usize, Error> {
    db.system("idempotency.prune", |conn| {
        async move {
            sql("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
                .execute(conn)
                .await
                .map_err(Error::from)
        }
        .scope_boxed()
    })
    .await
}
