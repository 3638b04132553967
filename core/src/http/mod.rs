//! HTTP plumbing shared by every route: request ids, the access log, body limits, security
//! headers, problem+json for every error, and cursor pagination.

pub mod idempotency;
pub mod json;
pub mod pagination;
pub mod problem;
mod retry;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt as _;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use uuid::Uuid;

pub use json::JsonBody;
pub use problem::{ApiResult, Problem, ProblemBody};

/// What the kernel knows about the request being served. Handlers reach it through
/// `poem::web::Data<&Arc<RequestContext>>` or through the authenticated actor.
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    principal: Mutex<Option<(Uuid, Uuid)>>,
}

impl RequestContext {
    pub fn new(request_id: String, ip: Option<IpAddr>, user_agent: Option<String>) -> Self {
        Self {
            request_id,
            ip,
            user_agent,
            principal: Mutex::new(None),
        }
    }

    /// Records who is calling, for the access log.
    pub fn set_principal(&self, tenant_id: Uuid, user_id: Uuid) {
        if let Ok(mut slot) = self.principal.lock() {
            *slot = Some((tenant_id, user_id));
        }
    }

    fn principal(&self) -> Option<(Uuid, Uuid)> {
        self.principal.lock().ok().and_then(|p| *p)
    }
}

/// The methods each documented path answers, for the `Allow` header of a 405.
#[derive(Debug, Default)]
pub struct Methods {
    /// Path templates split at `/` (`None` for a parameter), the ones with fewer
    /// parameters first, each with its `Allow` value.
    paths: Vec<(Vec<Option<String>>, HeaderValue)>,
}

impl Methods {
    /// The methods of every path of an OpenAPI document.
    pub fn of_document(document: &str) -> Self {
        let document: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
        let mut paths: Vec<(Vec<Option<String>>, HeaderValue)> = document["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(path, item)| {
                let segments = path
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect();
                let mut methods: Vec<String> = item
                    .as_object()?
                    .keys()
                    .filter(|m| matches!(m.as_str(), "get" | "put" | "post" | "delete" | "patch"))
                    .map(|m| m.to_uppercase())
                    .collect();
                methods.sort();
                Some((segments, HeaderValue::from_str(&methods.join(", ")).ok()?))
            })
            .collect();
        paths.sort_by_key(|(segments, _)| segments.iter().filter(|s| s.is_none()).count());
        Methods { paths }
    }

    /// The `Allow` value of the documented path `path` matches, if any.
    fn allow(&self, path: &str) -> Option<&HeaderValue> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .find(|(template, _)| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t.as_deref().is_none_or(|t| t == *s))
            })
            .map(|(_, allow)| allow)
    }
}

/// Wraps every request: assigns its id, enforces the body limit, turns any error into
/// problem+json, adds security headers, and writes one access-log event.
pub async fn serve_request<E: Endpoint>(
    next: Arc<E>,
    limits: BodyLimits,
    methods: &Methods,
    mut req: Request,
) -> Response {
    let started = Instant::now();
    let request_id = Uuid::now_v7().to_string();
    // FIXME: behind a reverse proxy this is the proxy's address; honouring
    // X-Forwarded-For needs a configured list of trusted proxies.
    let ip = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect());
    let ctx = Arc::new(RequestContext::new(request_id.clone(), ip, user_agent));
    req.extensions_mut().insert(ctx.clone());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let is_docs = uri.path().starts_with("/docs");

    // Refuse oversized bodies before reading them; cap the ones that do not say their size.
    let body_limit = limits.for_content_type(req.headers().get(header::CONTENT_TYPE));
    let overflowed = Arc::new(AtomicBool::new(false));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|len| len > body_limit as u64) {
        too_large(body_limit).into_response()
    } else {
        if declared.is_none() {
            let body = req.take_body();
            req.set_body(limit_body(body, body_limit, overflowed.clone()));
        }
        // Kept to repeat the request if need be: JSON-sized bodies and bodiless reads.
        let keepable = match declared {
            Some(len) => len <= limits.json as u64,
            None => matches!(method, Method::GET | Method::HEAD | Method::DELETE),
        };
        retry::serve(&*next, req, keepable).await
    };
    if overflowed.load(Ordering::Relaxed) {
        response = too_large(body_limit).into_response();
    }

    let operation = response
        .data::<poem_openapi::OperationId>()
        .map(|op| op.0)
        .unwrap_or("unmatched");
    let mut response = into_problem_if_error(response, &request_id).await;
    set_security_headers(&mut response, &request_id, is_docs);
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = methods.allow(uri.path())
    {
        response.headers_mut().insert(header::ALLOW, allow.clone());
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let principal = ctx.principal();
    tracing::info!(
        target: "harmony::access",
        http_method = %method,
        http_route = operation,
        http_status = status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request.id" = %request_id,
        "tenant.id" = principal.map(|p| p.0.to_string()),
        "user.id" = principal.map(|p| p.1.to_string()),
        "request"
    );
    let status_label = status.to_string();
    metrics::counter!("http_requests_total", "operation" => operation, "status" => status_label)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
    response
}

/// The largest bodies accepted: small for JSON, larger for file uploads.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub json: usize,
    pub upload: usize,
}

impl BodyLimits {
    /// Uploads are sent as the raw file (`image/*`, `application/pdf`,
    /// `application/octet-stream`); everything else gets the JSON limit.
    fn for_content_type(&self, content_type: Option<&HeaderValue>) -> usize {
        let ct = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
        let upload = ct.starts_with("image/")
            || ct.starts_with("application/pdf")
            || ct.starts_with("application/octet-stream");
        if upload {
            self.upload.max(self.json)
        } else {
            self.json
        }
    }
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// A body that stops with an error after `limit` bytes and raises `overflowed`.
fn limit_body(body: Body, limit: usize, overflowed: Arc<AtomicBool>) -> Body {
    let mut seen = 0usize;
    let stream = body.into_bytes_stream().map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > limit {
            overflowed.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("request body too large"));
        }
        Ok(chunk)
    });
    Body::from_bytes_stream(stream)
}

/// Rewrites an error response that is not problem+json yet (poem's own 404s and 405s,
/// poem-openapi's parse errors) into one, and stamps the request id into every problem.
async fn into_problem_if_error(response: Response, request_id: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(problem::PROBLEM_JSON.as_bytes()));
    let (parts, body) = response.into_parts();
    let bytes = body.into_bytes().await.unwrap_or_default();
    let mut problem = if is_problem {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(mut value) => {
                value["request_id"] = request_id.into();
                let mut response = Response::from_parts(
                    parts,
                    Body::from_vec(serde_json::to_vec(&value).unwrap_or_default()),
                );
                response.headers_mut().remove(header::CONTENT_LENGTH);
                return response;
            }
            Err(_) => Problem::new(status, "internal_error", "malformed error"),
        }
    } else {
        let text = String::from_utf8_lossy(&bytes);
        Problem::from_poem(&poem::Error::from_string(text.into_owned(), status))
    };
    problem.body.request_id = Some(request_id.to_owned());
    let mut response = problem.into_response();
    for (name, value) in parts.headers.iter() {
        if name == header::ALLOW || name == header::RETRY_AFTER || name == header::WWW_AUTHENTICATE
        {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

fn set_security_headers(response: &mut Response, request_id: &str, is_docs: bool) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    if !is_docs {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
}
