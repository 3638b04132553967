//! The JSON carried across the ABI. Every type is plain serde data, so a plugin written in
//! another language can speak the same protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a plugin is and what it asks for. Harmony reads it once, when it loads the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Lowercase letters, digits and `-`, 1 to 32 characters; the plugin's routes live under
    /// `/api/v1/plugins/{name}`.
    pub name: String,
    /// The plugin's own version (semantic versioning is suggested, not enforced).
    pub version: String,
    /// One sentence for the clinic owner deciding whether to turn it on.
    pub description: String,
    /// Outbox topics it wants, e.g. `appointment.completed`.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Capabilities it requests, e.g. `services:read`. A clinic may refuse any of them.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
}

/// A route the plugin serves, relative to `/api/v1/plugins/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Starts with `/`; `{param}` segments match one path segment, e.g.
    /// `/patients/{patient_id}/balance`.
    pub path: String,
    /// A short summary for the API documentation.
    pub summary: String,
    #[serde(default)]
    pub description: String,
    /// Staff roles that may call it (`owner`, `admin`, `professional`, `receptionist`,
    /// `finance`); empty means every staff role.
    #[serde(default)]
    pub roles: Vec<String>,
    /// JSON Schema of the request body, if it takes one.
    #[serde(default)]
    pub request_schema: Option<Value>,
    /// JSON Schema of a successful response body.
    #[serde(default)]
    pub response_schema: Option<Value>,
    /// Query parameters it reads, for the documentation.
    #[serde(default)]
    pub query: Vec<QueryParam>,
}

/// A documented query parameter of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryParam {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
}

/// A task Harmony runs on a schedule, once per tick, for every clinic that enabled the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    /// A cron expression with seconds: `sec min hour day-of-month month day-of-week`, in UTC.
    pub schedule: String,
}

/// An outbox event delivered to the plugin, for one clinic. Delivery is at least once:
/// handle the same `id` twice without harm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub tenant_id: String,
    pub topic: String,
    pub payload: Value,
    /// RFC 3339.
    pub occurred_at: String,
}

/// An authenticated HTTP request to one of the plugin's routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub tenant_id: String,
    /// The staff member calling.
    pub user_id: String,
    pub roles: Vec<String>,
    pub method: String,
    /// The [`RouteSpec::path`] that matched, e.g. `/patients/{patient_id}/balance`.
    pub route: String,
    /// The request's path below the plugin, e.g. `/patients/0190…/balance`.
    pub path: String,
    /// The `{param}` segments of the route.
    pub params: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    /// The JSON body, or `null`.
    pub body: Value,
}

impl Request {
    /// A path parameter, or a 422-ready failure naming it.
    pub fn param(&self, name: &str) -> Result<&str, Failure> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Failure::invalid(name, "is missing"))
    }
}

/// The plugin's answer to a [`Request`]. Statuses from 200 to 499 are passed on; anything
/// else counts as a failure of the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    pub fn ok(body: impl Serialize) -> Response {
        Response::with_status(200, body)
    }

    pub fn created(body: impl Serialize) -> Response {
        Response::with_status(201, body)
    }

    pub fn with_status(status: u16, body: impl Serialize) -> Response {
        Response {
            status,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }
}

/// A scheduled run of a [`TaskSpec`] for one clinic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub tenant_id: String,
    /// The tick being run, RFC 3339.
    pub tick: String,
}

/// Something that did not work, in the shape of an RFC 9457 problem: a route answers it
/// with `status`; from an event or a task it is logged and the delivery retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub status: u16,
    /// A stable machine-readable code, e.g. `insufficient_points`.
    pub code: String,
    pub detail: String,
    /// For 422s: the field that is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Failure {
    pub fn new(status: u16, code: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure {
            status,
            code: code.into(),
            detail: detail.into(),
            field: None,
        }
    }

    /// A 422 naming the field and what would be accepted.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Failure {
        let field = field.into();
        let message = message.into();
        Failure {
            status: 422,
            code: "validation_failed".into(),
            detail: format!("{field}: {message}"),
            field: Some(field),
        }
    }

    pub fn not_found(what: &str) -> Failure {
        Failure::new(404, "not_found", format!("{what} not found"))
    }

    pub fn conflict(code: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure::new(409, code, detail)
    }

    /// A failure of the plugin itself (a 500 to the caller, a retry for an event).
    pub fn internal(detail: impl Into<String>) -> Failure {
        Failure::new(500, "plugin_error", detail)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl std::error::Error for Failure {}

/// A request from the plugin to Harmony, as [`HostTable::call`](crate::abi::HostTable)
/// carries it: `{"op": "kv.get", "args": {...}}`. [`Host`](crate::Host) has a typed method
/// for each operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRequest {
    pub op: String,
    #[serde(default)]
    pub args: Value,
}

/// A stored value with its version, for compare-and-set writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: Value,
    /// Increases with every write of the key.
    pub version: i64,
}

/// One write of an atomic [`Host::kv_write`](crate::Host::kv_write).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvWrite {
    pub key: String,
    /// The new value; `null` deletes the key.
    pub value: Value,
    /// Only if the key is still at this version (`0`: only if it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i64>,
}

/// A page of [`Host::kv_list`](crate::Host::kv_list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvPage {
    pub entries: Vec<KvEntry>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default)]
    pub next: Option<String>,
}
