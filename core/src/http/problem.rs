//! RFC 9457 problem details: the one place where errors become HTTP responses.
//!
//! Every error answer of the API, including the ones poem and poem-openapi produce on their
//! own (unknown route, malformed JSON, wrong content type), leaves as `application/problem+json`
//! with a stable snake_case `code`. A 500 says only that something failed and carries the
//! request id; its cause is logged once, here.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type as _;
use poem_openapi::{ApiResponse, Object};

use crate::error::{Error, FieldError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename = "Problem")]
pub struct ProblemBody {
    /// A URI reference naming the problem type.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened in this occurrence, for a human.
    pub detail: String,
    /// A stable machine-readable code, e.g. `not_found` or `invalid_fields`.
    pub code: String,
    /// The request id, also sent as `X-Request-Id`; quote it when reporting a problem.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(nullable)]
    pub request_id: Option<String>,
    /// The invalid fields, for `invalid_fields`.
    #[oai(skip_serializing_if_is_empty, default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra data some problems carry (e.g. the id of an existing duplicate).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(nullable)]
    pub extra: Option<serde_json::Value>,
}

/// An error answer. Handlers return `Result<_, Problem>`.
#[derive(Debug)]
pub struct Problem {
    pub body: ProblemBody,
    retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        Self {
            body: ProblemBody {
                kind: format!("https://docs.harmony.app/problems/{code}"),
                title,
                status: status.as_u16(),
                detail: detail.into(),
                code: code.to_owned(),
                request_id: None,
                errors: Vec::new(),
                extra: None,
            },
            retry_after: None,
        }
    }

    /// Asks the client to wait `secs` before retrying.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem for an error response poem produced without our help.
    pub fn from_poem(err: &poem::Error) -> Self {
        let status = err.status();
        let (code, detail) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", err.to_string()),
            StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", err.to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                format!("{err}; send `Content-Type: application/json`"),
            ),
            StatusCode::UNAUTHORIZED => {
                ("unauthenticated", "a valid bearer token is required".into())
            }
            s if s.is_client_error() => ("bad_request", err.to_string()),
            _ => {
                tracing::error!(error = %err, "unhandled error");
                (
                    "internal_error",
                    "the server failed to answer; quote the request id".into(),
                )
            }
        };
        Problem::new(status, code, detail)
    }
}

impl From<Error> for Problem {
    fn from(err: Error) -> Self {
        match err {
            Error::BadRequest { code, detail } => {
                Problem::new(StatusCode::BAD_REQUEST, code, detail)
            }
            Error::Validation(errors) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                let detail = format!("invalid fields: {}", fields.join(", "));
                let mut p =
                    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields", detail);
                p.body.errors = errors;
                p
            }
            Error::InvalidQuery(errors) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                let detail = format!("invalid query parameters: {}", fields.join(", "));
                let mut p = Problem::new(StatusCode::BAD_REQUEST, "invalid_query", detail);
                p.body.errors = errors;
                p
            }
            Error::Unauthenticated { code, detail } => {
                Problem::new(StatusCode::UNAUTHORIZED, code, detail)
            }
            Error::Forbidden { code, detail } => Problem::new(StatusCode::FORBIDDEN, code, detail),
            Error::NotFound { what } => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Error::Conflict {
                code,
                detail,
                extra,
            } => {
                let mut p = Problem::new(StatusCode::CONFLICT, code, detail);
                p.body.extra = extra;
                p
            }
            Error::RateLimited { retry_after_secs } => {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many attempts; retry in {retry_after_secs} s"),
                );
                p.retry_after = Some(retry_after_secs);
                p
            }
            Error::Unavailable => {
                tracing::warn!("database unavailable");
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable; retry shortly",
                );
                p.retry_after = Some(1);
                p
            }
            Error::Internal(cause) => {
                // The cause chain, without the backtrace: symbolising one loads the
                // binary's debug information (well over 100 MB) into memory.
                tracing::error!(error = %format_args!("{cause:#}"), "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server failed to answer; quote the request id",
                )
            }
        }
    }
}

impl From<crate::db::DbError> for Problem {
    fn from(err: crate::db::DbError) -> Self {
        Error::from(err).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(body);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Problem> for poem::Error {
    fn from(problem: Problem) -> Self {
        poem::Error::from_response(problem.into_response())
    }
}

impl ApiResponse for Problem {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "An error, as RFC 9457 problem details",
                status: None,
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_JSON,
                    schema: ProblemBody::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        <ProblemBody as poem_openapi::types::Type>::register(registry);
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, Problem>;
