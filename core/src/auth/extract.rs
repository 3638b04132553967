//! The authenticated caller, extracted from the `Authorization: Bearer` header.

use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use uuid::Uuid;

use crate::Kernel;
use crate::db::TenantScope;
use crate::error::Error;
use crate::http::{Problem, RequestContext};

/// What kind of principal is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Assistant,
    Plugin,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Assistant => "assistant",
            ActorKind::Plugin => "plugin",
        }
    }
}

/// A verified caller acting in one clinic, with the request it came in.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub request: Arc<RequestContext>,
}

impl Actor {
    /// The scope of this actor's tenant transactions.
    pub fn scope(&self) -> TenantScope {
        TenantScope {
            tenant_id: self.tenant_id,
            user_id: Some(self.user_id),
        }
    }
}

/// A JWT access token obtained from `POST /api/v1/auth/login`.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "verify_bearer")]
pub struct BearerAuth(pub Actor);

pub(crate) async fn verify_bearer(req: &Request, bearer: Bearer) -> Result<Actor, poem::Error> {
    let kernel = req.data::<Kernel>().ok_or_else(|| {
        poem::Error::from_string(
            "kernel missing",
            poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        )
    })?;
    let context = req
        .extensions()
        .get::<Arc<RequestContext>>()
        .cloned()
        .ok_or_else(|| {
            poem::Error::from_string(
                "context missing",
                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
            )
        })?;
    let claims = kernel
        .auth
        .verify_access_token(&bearer.token)
        .map_err(Problem::from)?;
    context.set_principal(claims.tid, claims.sub);
    Ok(Actor {
        kind: ActorKind::User,
        user_id: claims.sub,
        tenant_id: claims.tid,
        request: context,
    })
}

impl From<Error> for poem::Error {
    fn from(err: Error) -> Self {
        Problem::from(err).into()
    }
}
