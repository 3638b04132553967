//! The kernel's error type. It knows nothing of HTTP: `http::problem` maps it to RFC 9457.

use std::borrow::Cow;

/// One invalid field of a request, with what would have been accepted.
#[derive(Debug, Clone, serde::Serialize, poem_openapi::Object)]
pub struct FieldError {
    /// JSON pointer-like path of the field, e.g. `clinic.cnpj`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{detail}")]
    BadRequest {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// Invalid query parameters (filters, sort, pagination): a 400.
    #[error("the request has invalid query parameters")]
    InvalidQuery(Vec<FieldError>),
    #[error("authentication required")]
    Unauthenticated {
        code: &'static str,
        detail: &'static str,
    },
    #[error("not allowed")]
    Forbidden {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: Cow<'static, str>,
        extra: Option<serde_json::Value>,
    },
    #[error("too many attempts")]
    RateLimited { retry_after_secs: u64 },
    #[error("a dependency is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn invalid_query(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidQuery(vec![FieldError::new(field, message)])
    }

    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict {
            code,
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn forbidden(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into())
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error as D};
        match err {
            D::NotFound => Error::NotFound { what: "resource" },
            lost if crate::db::connection_lost(&lost) => Error::Unavailable,
            D::DatabaseError(Kind::SerializationFailure, _) => Error::conflict(
                "concurrent_update",
                "the resource changed concurrently; retry",
            ),
            // SQLSTATE 40P01, which diesel reports only by its message: PostgreSQL aborted
            // this transaction to break a lock cycle; the other one went on.
            D::DatabaseError(Kind::Unknown, info)
                if info.message().starts_with("deadlock detected") =>
            {
                Error::conflict(
                    "concurrent_update",
                    "the resource changed concurrently; retry",
                )
            }
            other => Error::Internal(other.into()),
        }
    }
}

impl From<crate::db::DbError> for Error {
    fn from(err: crate::db::DbError) -> Self {
        match err {
            crate::db::DbError::Unavailable(_) => Error::Unavailable,
            crate::db::DbError::Query(e) => e.into(),
        }
    }
}
