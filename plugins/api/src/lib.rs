//! # Writing a Harmony plugin
//!
//! A Harmony plugin is a dynamic library that reacts to the clinic's events, serves
//! routes under `/api/v1/plugins/{name}/…` and runs scheduled tasks. It is built with your
//! own toolchain against this crate only, and Harmony loads it without being recompiled.
//! By default it runs in a child process of its own: if it panics, aborts, crashes, loops
//! or eats memory, only that child dies, the call fails, and Harmony starts it again.
//!
//! ## 1. Create the crate
//!
//! ```text
//! cargo new --lib harmony-plugin-hello
//! ```
//!
//! In its `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # Not on crates.io: take it from the Harmony repository, at the tag of the Harmony
//! # release you target (the ABI version must match), or from a local checkout.
//! harmony-plugin-api = { git = "https://github.com/<your-fork>/harmony", tag = "v0.1.0" }
//! # harmony-plugin-api = { path = "../harmony/plugins/api" }
//! serde_json = "1"
//! ```
//!
//! ## 2. Implement [`Plugin`] and export it
//!
//! ```
//! use harmony_plugin_api::{Event, Failure, Host, Manifest, Plugin, Request, Response, RouteSpec};
//! use serde_json::json;
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest(&self) -> Manifest {
//!         Manifest {
//!             name: "hello".into(),
//!             version: "1.0.0".into(),
//!             description: "Counts completed appointments.".into(),
//!             events: vec!["appointment.completed".into()],
//!             routes: vec![RouteSpec {
//!                 method: "GET".into(),
//!                 path: "/count".into(),
//!                 summary: "How many appointments were completed".into(),
//!                 description: String::new(),
//!                 roles: vec![],
//!                 request_schema: None,
//!                 response_schema: Some(json!({"type": "object",
//!                     "properties": {"completed": {"type": "integer"}}})),
//!                 query: vec![],
//!             }],
//!             // Appointment events carry the clinic's data: the clinic must grant this.
//!             capabilities: vec!["appointments:read".into()],
//!             tasks: vec![],
//!         }
//!     }
//!
//!     fn on_event(&self, host: &Host<'_>, event: Event) -> Result<(), Failure> {
//!         // At least once: remember which events were counted.
//!         let seen = format!("seen:{}", event.id);
//!         if host.kv_get(&seen)?.is_some() {
//!             return Ok(());
//!         }
//!         let count = host.kv_get_as::<u64>("count")?.map_or(0, |(n, _)| n);
//!         host.kv_write(vec![
//!             harmony_plugin_api::KvWrite { key: seen, value: json!(true), if_version: Some(0) },
//!             harmony_plugin_api::KvWrite { key: "count".into(), value: json!(count + 1), if_version: None },
//!         ])
//!     }
//!
//!     fn on_request(&self, host: &Host<'_>, request: Request) -> Result<Response, Failure> {
//!         match (request.method.as_str(), request.route.as_str()) {
//!             ("GET", "/count") => {
//!                 let count = host.kv_get_as::<u64>("count")?.map_or(0, |(n, _)| n);
//!                 Ok(Response::ok(json!({ "completed": count })))
//!             }
//!             _ => Err(Failure::not_found("route")),
//!         }
//!     }
//! }
//!
//! harmony_plugin_api::export_plugin!(Hello);
//! ```
//!
//! Every method has a default, so implement only what the manifest announces. The plugin
//! value is created once per process with `Default` and shared by every call; calls for
//! different clinics may follow one another, so keep no clinic's data in the value: keep
//! it in the store ([`Host::kv_get`], [`Host::kv_write`]), which Harmony keeps per clinic.
//!
//! ## 3. Build it and note its hash
//!
//! ```text
//! cargo build --release
//! sha256sum target/release/libharmony_plugin_hello.so
//! ```
//!
//! ## 4. Install it
//!
//! Copy the library into Harmony's plugin directory and list it, with its SHA-256, in the
//! configuration. Harmony refuses (and logs) any file that is not listed or whose hash
//! differs, and any library built against another ABI version.
//!
//! ```toml
//! [plugins]
//! dir = "/var/lib/harmony/plugins"
//!
//! [[plugins.installed]]
//! file = "libharmony_plugin_hello.so"
//! sha256 = "9f86d08…"
//! # mode = "in_process"   # only for trusted first-party plugins: a crash takes Harmony down
//! ```
//!
//! ## 5. Turn it on for a clinic
//!
//! The clinic's owner or an admin sees it in `GET /api/v1/plugins` and enables it, granting
//! the capabilities it asks for (or refusing some):
//!
//! ```text
//! PUT /api/v1/plugins/hello   {"enabled": true, "granted": ["appointments:read"]}
//! GET /api/v1/plugins/hello/count
//! ```
//!
//! Harmony loads plugins when it starts: restart it after adding a library to the list.
//! From then on the plugin receives that clinic's events (those of the topics its granted
//! capabilities cover) and serves its routes to that clinic's staff. It acts as its own subject, through Harmony's RBAC and row-level
//! security: it reads only what a granted capability allows, and only in that clinic.
//!
//! ## Capabilities
//!
//! A topic in the manifest's `events` must be covered by a capability the manifest
//! requests (Harmony refuses the library otherwise), and a clinic that did not grant that
//! capability sends the plugin none of those events.
//!
//! | capability | host operations | events |
//! |---|---|---|
//! | (none needed) | `kv.get`, `kv.list`, `kv.write`, `kv.delete`: the plugin's own store in the clinic | |
//! | `services:read` | `services.list` | |
//! | `appointments:read` | `appointments.get` | `appointment.*`, `waitlist.*` |
//! | `patients:read` | `patients.get` (full name, first name or nickname, status; every read is in the patient's access log) | `patient.*` |
//! | `events:emit` | `events.emit` (topic `plugin.{name}.{topic}`) | `plugin.*` |
//!
//! ## Rules of the road
//!
//! - Every call has a time limit (5 s by default) and the process a memory limit; a call
//!   that exceeds them fails, and the process is restarted.
//! - Events arrive at least once and in order per clinic; make handlers idempotent. An
//!   event whose handler fails is retried with backoff, then parked.
//! - A route answers JSON; statuses 200–499 reach the caller as they are, a [`Failure`]
//!   becomes an RFC 9457 problem. Never put personal data in log lines.
//! - The ABI is C: the library may be built with any Rust toolchain (or another
//!   language); [`abi`] documents the tables.

pub mod abi;
#[doc(hidden)]
pub mod export;
mod host;
mod types;

pub use host::Host;
pub use types::{
    Event, Failure, HostRequest, KvEntry, KvPage, KvWrite, Manifest, QueryParam, Request, Response,
    RouteSpec, Task, TaskSpec,
};

/// A plugin: implement what its [`Manifest`] announces, then
/// [`export_plugin!`](crate::export_plugin) it.
pub trait Plugin: Send + Sync + 'static {
    /// What the plugin is and asks for. Called once, when Harmony loads the library.
    fn manifest(&self) -> Manifest;

    /// One outbox event of a topic in the manifest, for one clinic.
    fn on_event(&self, _host: &Host<'_>, _event: Event) -> Result<(), Failure> {
        Ok(())
    }

    /// One request to a route of the manifest.
    fn on_request(&self, _host: &Host<'_>, _request: Request) -> Result<Response, Failure> {
        Err(Failure::not_found("route"))
    }

    /// One scheduled run of a task of the manifest, for one clinic.
    fn run_task(&self, _host: &Host<'_>, _task: Task) -> Result<(), Failure> {
        Ok(())
    }
}
