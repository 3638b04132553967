//! Plugins' own routes, under `/api/v1/plugins/{name}/…`: authenticated, scoped to the
//! caller's clinic, JSON in and out, and described in the served OpenAPI document.

use std::collections::BTreeMap;
use std::sync::Arc;

use harmony_plugin_api::RouteSpec;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::auth::Bearer;
use scoped_futures::ScopedFutureExt;
use serde_json::{Map, Value, json};

use super::{CallError, CallKind, LoadedPlugin, installation, plugin_actor};
use crate::Kernel;
use crate::http::{Problem, RequestContext};
use crate::rbac::Role;
use crate::tenancy::perm;

/// The prefix every plugin route lives under.
pub const PREFIX: &str = "/api/v1/plugins/";

/// A route of a manifest, ready to match request paths.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    pub method: Method,
    pub spec: RouteSpec,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl RoutePattern {
    pub fn parse(spec: &RouteSpec) -> Result<RoutePattern, String> {
        let method = match spec.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => return Err(format!("route {}: unsupported method {other}", spec.path)),
        };
        let Some(rest) = spec.path.strip_prefix('/') else {
            return Err(format!("route {}: the path must start with '/'", spec.path));
        };
        let mut segments = Vec::new();
        for part in rest.split('/') {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if valid_word(name) => Segment::Param(name.to_owned()),
                Some(_) => return Err(format!("route {}: bad parameter {part}", spec.path)),
                None if valid_word(part)
                    || part.bytes().all(|b| b == b'-' || b.is_ascii_alphanumeric())
                        && !part.is_empty() =>
                {
                    Segment::Literal(part.to_owned())
                }
                None => return Err(format!("route {}: bad segment {part:?}", spec.path)),
            };
            segments.push(segment);
        }
        for role in &spec.roles {
            if Role::parse(role).is_none_or(|r| r == Role::Assistant) {
                return Err(format!("route {}: unknown staff role {role}", spec.path));
            }
        }
        Ok(RoutePattern {
            method,
            spec: spec.clone(),
            segments,
        })
    }

    /// The path parameters, if `path` (below the plugin) matches.
    fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(lit) if lit == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    let value = percent_decode(part)?;
                    params.insert(name.clone(), value);
                }
                _ => return None,
            }
        }
        Some(params)
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn query_map(req: &Request) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let plus = |s: &str| s.replace('+', " ");
        if let (Some(k), Some(v)) = (percent_decode(&plus(k)), percent_decode(&plus(v))) {
            map.entry(k).or_insert(v);
        }
    }
    map
}

/// Serves `/api/v1/plugins/{name}/{rest}`.
pub async fn serve(req: Request, body: Body) -> Response {
    // A plugin may act outside Harmony's database: never repeat its requests.
    crate::db::Attempt::acted_outside();
    let mut response = match handle(&req, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    };
    response.set_data(poem_openapi::OperationId("plugin_route"));
    response
}

async fn handle(req: &Request, body: Body) -> Result<Response, Problem> {
    let kernel = req.data::<Kernel>().cloned().ok_or_else(|| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "kernel missing",
        )
    })?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required",
            )
        })?;
    let actor = crate::auth::extract::verify_bearer(req, Bearer { token })
        .await
        .map_err(|e| Problem::from_poem(&e))?;
    kernel.require(&actor, &perm::PLUGIN_ROUTES_CALL).await?;

    let path = req.uri().path();
    let below = path.strip_prefix(PREFIX).unwrap_or("");
    let (name, rest) = below.split_once('/').unwrap_or((below, ""));
    let rest = format!("/{rest}");
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "not_found", "no such plugin route");
    let plugin = kernel.plugins.get(name).cloned().ok_or_else(not_found)?;

    let plugin_name = plugin.name.clone();
    let found = kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move { installation(conn, &plugin_name).await }.scope_boxed()
        })
        .await?;
    let Some(found) = found.filter(|i| i.enabled) else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "plugin_not_enabled",
            format!("the plugin {name} is not enabled in this clinic"),
        ));
    };

    let mut allowed_methods = Vec::new();
    let mut matched = None;
    for route in &plugin.routes {
        if let Some(params) = route.matches(&rest) {
            if route.method == req.method() {
                matched = Some((route, params));
                break;
            }
            allowed_methods.push(route.method.as_str());
        }
    }
    let Some((route, params)) = matched else {
        if allowed_methods.is_empty() {
            return Err(not_found());
        }
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route answers {}", allowed_methods.join(", ")),
        ));
    };

    let roles = kernel.rbac.roles_of(actor.tenant_id, actor.user_id).await;
    if !route.spec.roles.is_empty()
        && !roles
            .iter()
            .any(|r| route.spec.roles.iter().any(|allowed| allowed == r.as_str()))
    {
        tracing::warn!("tenant.id" = %actor.tenant_id, "user.id" = %actor.user_id, plugin = %plugin.name,
            route = %route.spec.path, "permission denied");
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this route is for: {}", route.spec.roles.join(", ")),
        ));
    }

    let body = read_json(req, body).await?;
    let request = harmony_plugin_api::Request {
        tenant_id: actor.tenant_id.to_string(),
        user_id: actor.user_id.to_string(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        method: route.method.to_string(),
        route: route.spec.path.clone(),
        path: rest.clone(),
        params,
        query: query_map(req),
        body,
    };
    let context: Option<Arc<RequestContext>> = Some(actor.request.clone());
    let subject = plugin_actor(&plugin.name, actor.tenant_id, found.subject_id, context);
    let answer = plugin
        .call(&kernel, CallKind::Request, &request, subject)
        .await;
    Ok(respond(&plugin, answer))
}

/// The request body as JSON (`null` when empty); anything else is a 4xx.
async fn read_json(req: &Request, body: Body) -> Result<Value, Problem> {
    let bytes = body
        .into_bytes()
        .await
        .map_err(|e| Problem::from_poem(&e.into()))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The plugin's answer as an HTTP response: its own status and JSON body, a problem for
/// its failures.
fn respond(plugin: &LoadedPlugin, answer: Result<Value, CallError>) -> Response {
    let value = match answer {
        Ok(value) => value,
        Err(CallError::Failed(failure)) if (400..500).contains(&failure.status) => {
            let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut problem = Problem::new(status, &failure.code, failure.detail.clone());
            if let Some(field) = failure.field {
                problem.body.errors = vec![crate::error::FieldError::new(field, failure.detail)];
            }
            return problem.into_response();
        }
        Err(err) => return failure_problem(plugin, &err).into_response(),
    };
    let reply: harmony_plugin_api::Response = match serde_json::from_value(value) {
        Ok(reply) => reply,
        Err(e) => {
            return failure_problem(plugin, &CallError::Malformed(e.to_string())).into_response();
        }
    };
    if !(200..500).contains(&reply.status) {
        let why = CallError::Malformed(format!("status {}", reply.status));
        return failure_problem(plugin, &why).into_response();
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(body)
}

/// The problem a failed plugin call answers: 502 when the plugin failed, 504 when it took
/// too long, 503 while it restarts.
fn failure_problem(plugin: &LoadedPlugin, err: &CallError) -> Problem {
    tracing::warn!(plugin = %plugin.name, error = %err, "plugin call failed");
    let detail = format!("the plugin {} could not answer: {err}", plugin.name);
    match err {
        CallError::TimedOut(_) => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "plugin_timeout", detail)
        }
        CallError::Restarting { retry_after } => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_restarting", detail)
                .with_retry_after(retry_after.as_secs().max(1))
        }
        CallError::Busy => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_busy", detail).with_retry_after(1)
        }
        _ => Problem::new(StatusCode::BAD_GATEWAY, "plugin_failed", detail),
    }
}

/// Adds every loaded plugin's routes to the OpenAPI document `base`.
pub fn document_with_plugins(base: &str, plugins: &[Arc<LoadedPlugin>]) -> String {
    if plugins.is_empty() {
        return base.to_owned();
    }
    let Ok(mut doc) = serde_json::from_str::<Value>(base) else {
        return base.to_owned();
    };
    let security = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
        .and_then(|s| s.keys().next().cloned())
        .unwrap_or_else(|| "BearerAuth".into());
    let mut tags = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for plugin in plugins {
            let tag = format!("Plugin: {}", plugin.name);
            tags.push(json!({ "name": tag, "description": plugin.manifest.description }));
            for route in &plugin.routes {
                let path = format!("{PREFIX}{}{}", plugin.name, route.spec.path);
                let item = paths
                    .entry(path)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(item) = item.as_object_mut() {
                    item.insert(
                        route.method.as_str().to_ascii_lowercase(),
                        operation(plugin, route, &tag, &security),
                    );
                }
            }
        }
    }
    if let Some(list) = doc.get_mut("tags").and_then(Value::as_array_mut) {
        list.extend(tags);
    } else if let Some(object) = doc.as_object_mut() {
        object.insert("tags".into(), Value::Array(tags));
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| base.to_owned())
}

fn operation(plugin: &LoadedPlugin, route: &RoutePattern, tag: &str, security: &str) -> Value {
    let spec = &route.spec;
    let mut parameters: Vec<Value> = route
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Param(name) => Some(json!({
                "name": name, "in": "path", "required": true, "schema": {"type": "string"}
            })),
            Segment::Literal(_) => None,
        })
        .collect();
    parameters.extend(spec.query.iter().map(|q| {
        json!({
            "name": q.name, "in": "query", "required": q.required,
            "description": q.description, "schema": {"type": "string"}
        })
    }));
    let operation_id = format!(
        "plugin_{}_{}{}",
        plugin.name.replace('-', "_"),
        route.method.as_str().to_ascii_lowercase(),
        spec.path.replace(['/', '-'], "_").replace(['{', '}'], "")
    );
    // The host's checks, in the order it makes them, as Harmony's own operations state
    // theirs: the permission every plugin route needs, then the plugin's roles, if any.
    let mut paragraphs = vec![spec.description.clone()];
    if !spec.roles.is_empty() {
        paragraphs.push(format!("Roles: {}.", spec.roles.join(", ")));
    }
    paragraphs.push(format!(
        "Permission: `{}:{}`.",
        perm::PLUGIN_ROUTES_CALL.resource,
        perm::PLUGIN_ROUTES_CALL.action
    ));
    paragraphs.retain(|p| !p.is_empty());
    let description = paragraphs.join("\n\n");
    let problem = json!({
        "description": "An error, as RFC 9457 problem details",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    });
    let mut op = json!({
        "tags": [tag],
        "summary": spec.summary,
        "description": description,
        "operationId": operation_id,
        "parameters": parameters,
        "security": [{ security: [] }],
        "responses": {
            "200": {
                "description": "Success",
                "content": {"application/json": {"schema": spec.response_schema.clone().unwrap_or(json!({}))}}
            },
            "default": problem
        }
    });
    if let Some(schema) = &spec.request_schema {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}}
        });
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: &str, path: &str) -> RouteSpec {
        RouteSpec {
            method: method.into(),
            path: path.into(),
            summary: String::new(),
            description: String::new(),
            roles: vec![],
            request_schema: None,
            response_schema: None,
            query: vec![],
        }
    }

    #[test]
    fn a_route_matches_its_literals_and_decodes_its_parameters() {
        let route = RoutePattern::parse(&spec("post", "/patients/{patient_id}/redeem")).unwrap();
        assert_eq!(route.method, Method::POST);
        let params = route.matches("/patients/a%20b/redeem").unwrap();
        assert_eq!(params["patient_id"], "a b");
        assert!(route.matches("/patients//redeem").is_none());
        assert!(route.matches("/patients/x/balance").is_none());
        assert!(route.matches("/patients/x/redeem/more").is_none());
    }

    #[test]
    fn bad_routes_are_refused_at_load() {
        assert!(RoutePattern::parse(&spec("TRACE", "/x")).is_err());
        assert!(RoutePattern::parse(&spec("GET", "x")).is_err());
        assert!(RoutePattern::parse(&spec("GET", "/{a b}")).is_err());
        let mut assistant = spec("GET", "/x");
        assistant.roles = vec!["assistant".into()];
        assert!(RoutePattern::parse(&assistant).is_err());
    }
}
