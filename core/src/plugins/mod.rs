//! The plugin host: loads third-party plugin libraries, lets each clinic enable them with
//! the capabilities it grants, delivers them events, serves their routes and runs their
//! scheduled tasks.
//!
//! A library is loaded only if it is listed in `plugins.installed` with its SHA-256, and
//! only if it speaks this Harmony's ABI (`harmony-plugin-api`). By default it runs in a
//! `harmony plugin-host` child process ([`process`]), so whatever it does wrong costs only
//! its own calls; `mode = "in_process"` loads it into the server for trusted plugins.
//!
//! A plugin acts in one clinic at a time as its own subject (`plugin_installations.
//! subject_id`), through the same RBAC (its granted capabilities are casbin roles
//! `cap:<name>`) and row-level security as everyone else.

pub mod api;
pub mod child;
mod native;
mod ops;
mod process;
mod protocol;
pub mod routes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use harmony_plugin_api::{Failure, Manifest};
use scoped_futures::ScopedFutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Kernel;
use crate::auth::{Actor, ActorKind};
use crate::config::{PluginMode, PluginsConfig};
use crate::db::{DbError, TenantScope};
use crate::error::Error;
use crate::events::Subscription;
use crate::http::RequestContext;
use crate::jobs::JobSpec;
use crate::rbac::Permission;
use crate::schema::plugin_installations as pi;

pub use native::CallKind;
use native::{HostSide, Library, Outcome};
pub use ops::kernel_capabilities;
use process::{ChildCommand, ProcessRunner};

/// A host operation a capability unlocks: runs for the plugin's subject in one clinic.
pub type HostOpFn = Arc<
    dyn Fn(Kernel, PluginCall, Value) -> BoxFuture<'static, Result<Value, Error>> + Send + Sync,
>;

/// Who a host operation runs for: the plugin, as its own subject in one clinic.
#[derive(Debug, Clone)]
pub struct PluginCall {
    pub plugin: Arc<str>,
    pub actor: Actor,
}

/// Something a plugin may ask a clinic for, declared by the module that provides it.
#[derive(Clone)]
pub struct Capability {
    /// e.g. `services:read`.
    pub name: &'static str,
    /// For the clinic owner deciding whether to grant it.
    pub description: &'static str,
    /// What the plugin's subject may do once granted: the policy of the role `cap:<name>`.
    pub permissions: &'static [Permission],
    /// The host operations it unlocks, by name (e.g. `services.list`).
    pub operations: Vec<(&'static str, HostOpFn)>,
    /// The outbox topics a plugin granted it receives: exact names, or a prefix ending in
    /// `.*` (`plugin.*`). A plugin gets an event only if its clinic granted a capability
    /// that covers the topic.
    pub topics: &'static [&'static str],
}

impl Capability {
    /// Whether this capability lets a plugin receive events of `topic`.
    pub fn covers(&self, topic: &str) -> bool {
        self.topics
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => *pattern == topic,
            })
    }
}

impl std::fmt::Debug for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capability")
            .field("name", &self.name)
            .finish()
    }
}

/// The casbin role a granted capability becomes.
pub fn capability_role(name: &str) -> String {
    format!("cap:{name}")
}

/// Why a plugin call did not produce a result.
#[derive(Debug)]
pub enum CallError {
    /// Another call held the plugin for the whole time limit.
    Busy,
    /// The plugin's process failed recently and will be started again after this.
    Restarting { retry_after: Duration },
    /// The plugin's process died (or could not start).
    Crashed(String),
    /// The call exceeded the time limit; the process was killed.
    TimedOut(Duration),
    /// The plugin panicked (caught at the ABI boundary).
    Panicked(String),
    /// The plugin answered with a failure of its own.
    Failed(Failure),
    /// The plugin answered something that is not the expected JSON.
    Malformed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Busy => f.write_str("the plugin is busy"),
            CallError::Restarting { retry_after } => write!(
                f,
                "the plugin is restarting; retry in {} ms",
                retry_after.as_millis()
            ),
            CallError::Crashed(why) => write!(f, "the plugin failed: {why}"),
            CallError::TimedOut(limit) => {
                write!(
                    f,
                    "the plugin did not answer within {} ms",
                    limit.as_millis()
                )
            }
            CallError::Panicked(message) => write!(f, "the plugin panicked: {message}"),
            CallError::Failed(failure) => write!(f, "{failure}"),
            CallError::Malformed(why) => write!(f, "the plugin answered malformed JSON: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Hex SHA-256 of a file.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Where a plugin's code runs.
enum Runner {
    Process(Box<ProcessRunner>),
    InProcess(Arc<Library>, Duration),
}

/// A plugin that was loaded, with its manifest.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    pub name: Arc<str>,
    pub mode: PluginMode,
    pub file: String,
    runner: Runner,
    routes: Vec<routes::RoutePattern>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .finish()
    }
}

impl LoadedPlugin {
    /// Whether the plugin can take calls now (its process is up, or it runs in process).
    pub fn is_running(&self) -> bool {
        match &self.runner {
            Runner::Process(p) => p.is_running(),
            Runner::InProcess(..) => true,
        }
    }

    /// How many times its process was started (1 + restarts); 1 in process.
    pub fn starts(&self) -> u64 {
        match &self.runner {
            Runner::Process(p) => p.starts(),
            Runner::InProcess(..) => 1,
        }
    }

    /// Calls the plugin with a JSON input for the clinic of `actor` (the plugin's subject).
    pub async fn call(
        self: &Arc<Self>,
        kernel: &Kernel,
        kind: CallKind,
        input: &impl serde::Serialize,
        actor: Actor,
    ) -> Result<Value, CallError> {
        let input = serde_json::to_vec(input).map_err(|e| CallError::Malformed(e.to_string()))?;
        let ctx = CallContext {
            kernel: kernel.clone(),
            call: PluginCall {
                plugin: self.name.clone(),
                actor,
            },
        };
        let started = std::time::Instant::now();
        let outcome = match &self.runner {
            Runner::Process(runner) => runner.call(kind, &input, &ctx).await,
            Runner::InProcess(library, timeout) => {
                in_process_call(library.clone(), *timeout, kind, input, ctx).await
            }
        };
        let kind_label = match kind {
            CallKind::Event => "event",
            CallKind::Request => "request",
            CallKind::Task => "task",
        };
        metrics::histogram!("plugin_call_duration_seconds", "plugin" => self.name.to_string(), "kind" => kind_label)
            .record(started.elapsed().as_secs_f64());
        match outcome? {
            Outcome::Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| CallError::Malformed(e.to_string()))
            }
            Outcome::Failed(bytes) => Err(CallError::Failed(
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Failure::internal(String::from_utf8_lossy(&bytes).into_owned())
                }),
            )),
            Outcome::Panicked(message) => {
                tracing::error!(plugin = %self.name, "plugin panicked: {message}");
                Err(CallError::Panicked(message))
            }
        }
    }
}

/// Runs a call on a blocking thread of this process. A time-out cannot stop the thread:
/// the call is abandoned and keeps its thread (in-process plugins must be trusted).
async fn in_process_call(
    library: Arc<Library>,
    timeout: Duration,
    kind: CallKind,
    input: Vec<u8>,
    ctx: CallContext,
) -> Result<Outcome, CallError> {
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let side = BlockingSide { runtime, ctx };
        library.call(kind, &input, &side)
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(join)) => Err(CallError::Crashed(join.to_string())),
        Err(_) => Err(CallError::TimedOut(timeout)),
    }
}

/// Host callbacks of an in-process call, made from a blocking thread.
struct BlockingSide {
    runtime: tokio::runtime::Handle,
    ctx: CallContext,
}

impl HostSide for BlockingSide {
    fn log(&self, level: u32, message: &str) {
        self.ctx.log(level, message);
    }

    fn call(&self, request: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
        self.runtime.block_on(self.ctx.host_call(request))
    }
}

/// Harmony's side of one plugin call: the kernel and the plugin's subject in one clinic.
#[derive(Debug)]
pub struct CallContext {
    kernel: Kernel,
    call: PluginCall,
}

impl CallContext {
    /// A log line from the plugin, tagged with its name and clinic.
    fn log(&self, level: u32, message: &str) {
        use harmony_plugin_api::abi::level;
        let message: String = message.chars().take(2000).collect();
        let plugin = &*self.call.plugin;
        let tenant = self.call.actor.tenant_id;
        match level {
            level::ERROR => tracing::error!(plugin, "tenant.id" = %tenant, "plugin: {message}"),
            level::WARN => tracing::warn!(plugin, "tenant.id" = %tenant, "plugin: {message}"),
            level::INFO => tracing::info!(plugin, "tenant.id" = %tenant, "plugin: {message}"),
            _ => tracing::debug!(plugin, "tenant.id" = %tenant, "plugin: {message}"),
        }
    }

    /// Serves one host request: JSON answer, or JSON failure.
    async fn host_call(&self, request: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
        let encode_failure = |f: Failure| serde_json::to_vec(&f).unwrap_or_default();
        let request: harmony_plugin_api::HostRequest = serde_json::from_slice(request)
            .map_err(|e| encode_failure(Failure::new(400, "bad_host_request", e.to_string())))?;
        let answer = ops::dispatch(&self.kernel, &self.call, &request.op, request.args).await;
        match answer {
            Ok(value) => Ok(serde_json::to_vec(&value).unwrap_or_default()),
            Err(failure) => Err(encode_failure(failure)),
        }
    }
}

/// A file in the plugin directory that was not loaded, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub file: String,
    pub reason: String,
}

/// Every loaded plugin and the capabilities the modules offer.
pub struct PluginHost {
    plugins: Vec<Arc<LoadedPlugin>>,
    refused: Vec<Refusal>,
    capabilities: Arc<Capabilities>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.plugins)
            .field("refused", &self.refused)
            .finish()
    }
}

/// The capabilities on offer and the operations they unlock.
#[derive(Default)]
pub struct Capabilities {
    by_name: HashMap<&'static str, Capability>,
    operations: HashMap<&'static str, (&'static str, HostOpFn)>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Capabilities {
    pub fn new(capabilities: Vec<Capability>) -> Self {
        let mut this = Capabilities::default();
        for capability in capabilities {
            for (op, f) in &capability.operations {
                this.operations.insert(op, (capability.name, f.clone()));
            }
            this.by_name.insert(capability.name, capability);
        }
        this
    }

    pub fn get(&self, name: &str) -> Option<&Capability> {
        self.by_name.get(name)
    }

    /// Whether one of the capabilities named in `among` covers `topic`.
    pub fn cover(&self, among: &[String], topic: &str) -> bool {
        among
            .iter()
            .filter_map(|name| self.get(name))
            .any(|c| c.covers(topic))
    }

    /// The capability an operation needs, and the operation.
    fn operation(&self, op: &str) -> Option<&(&'static str, HostOpFn)> {
        self.operations.get(op)
    }
}

impl PluginHost {
    /// No plugins (tools that do not serve, such as `harmony openapi`).
    pub fn empty() -> Self {
        PluginHost {
            plugins: Vec::new(),
            refused: Vec::new(),
            capabilities: Arc::new(Capabilities::default()),
        }
    }

    /// Loads the listed plugins of `config.dir`, refusing (and logging) every other file,
    /// every file whose SHA-256 differs, and every library that is not a valid plugin.
    pub async fn load(config: &PluginsConfig, capabilities: Vec<Capability>) -> Self {
        let capabilities = Arc::new(Capabilities::new(capabilities));
        let mut host = PluginHost {
            plugins: Vec::new(),
            refused: Vec::new(),
            capabilities,
        };
        if config
            .installed
            .iter()
            .any(|p| p.mode == PluginMode::Process)
        {
            forbid_inspection();
        }
        let listed: HashMap<&str, _> = config
            .installed
            .iter()
            .map(|p| (p.file.as_str(), p))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&config.dir) {
            // Every entry counts, symbolic links and folders too: only listed files load.
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if !listed.contains_key(name.as_str()) {
                    host.refuse(&name, "not listed in plugins.installed".into());
                }
            }
        }
        for installed in &config.installed {
            let plain = Path::new(&installed.file)
                .file_name()
                .is_some_and(|name| name == installed.file.as_str());
            if !plain {
                host.refuse(
                    &installed.file,
                    "plugins.installed names a file inside plugins.dir, not a path".into(),
                );
                continue;
            }
            let path = config.dir.join(&installed.file);
            match host.load_one(config, &path, installed).await {
                Ok(plugin) => {
                    tracing::info!(plugin = %plugin.name, version = %plugin.manifest.version,
                        mode = ?plugin.mode, file = %installed.file, "plugin loaded");
                    host.plugins.push(Arc::new(plugin));
                }
                Err(reason) => host.refuse(&installed.file, reason),
            }
        }
        host
    }

    fn refuse(&mut self, file: &str, reason: String) {
        tracing::error!(file, reason = %reason, "plugin refused");
        self.refused.push(Refusal {
            file: file.to_owned(),
            reason,
        });
    }

    async fn load_one(
        &self,
        config: &PluginsConfig,
        path: &Path,
        installed: &crate::config::InstalledPlugin,
    ) -> Result<LoadedPlugin, String> {
        let actual = sha256_of(path).map_err(|e| format!("cannot read the file: {e}"))?;
        if !actual.eq_ignore_ascii_case(installed.sha256.trim()) {
            return Err(format!(
                "its SHA-256 is {actual}, not the {} listed",
                installed.sha256.trim()
            ));
        }
        let timeout = Duration::from_millis(config.call_timeout_ms.max(1));
        let (runner, manifest) = match installed.mode {
            PluginMode::Process => {
                let executable = match &config.host_executable {
                    Some(path) => path.clone(),
                    None => std::env::current_exe()
                        .map_err(|e| format!("cannot find the harmony executable: {e}"))?,
                };
                let command = ChildCommand {
                    executable,
                    library: absolute(path),
                    sha256: actual,
                    memory_limit_mb: config.memory_limit_mb,
                };
                let (runner, manifest) = ProcessRunner::start(command, timeout).await?;
                (Runner::Process(Box::new(runner)), manifest)
            }
            PluginMode::InProcess => {
                let library = Library::open(path)?;
                let manifest = match library.describe() {
                    Outcome::Ok(json) => json,
                    Outcome::Failed(why) => return Err(String::from_utf8_lossy(&why).into()),
                    Outcome::Panicked(why) => return Err(format!("describe panicked: {why}")),
                };
                (Runner::InProcess(Arc::new(library), timeout), manifest)
            }
        };
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| format!("its manifest is not valid: {e}"))?;
        self.check_manifest(&manifest)?;
        let routes = manifest
            .routes
            .iter()
            .map(routes::RoutePattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let runner = match runner {
            Runner::Process(p) => Runner::Process(Box::new(p.named(&manifest.name))),
            other => other,
        };
        Ok(LoadedPlugin {
            name: Arc::from(manifest.name.as_str()),
            manifest,
            mode: installed.mode,
            file: installed.file.clone(),
            runner,
            routes,
        })
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        let name_ok = !manifest.name.is_empty()
            && manifest.name.len() <= 32
            && manifest
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !manifest.name.starts_with('-');
        if !name_ok {
            return Err(format!(
                "its name {:?} is not 1 to 32 lowercase letters, digits or '-'",
                manifest.name
            ));
        }
        if self.plugins.iter().any(|p| *p.name == *manifest.name) {
            return Err(format!("another plugin is already named {}", manifest.name));
        }
        for capability in &manifest.capabilities {
            if self.capabilities.get(capability).is_none() {
                return Err(format!("it requests the unknown capability {capability}"));
            }
        }
        // Events carry clinic data: each topic needs a capability the plugin asks for.
        for topic in &manifest.events {
            if !self.capabilities.cover(&manifest.capabilities, topic) {
                let needed: Vec<&str> = self
                    .capabilities
                    .by_name
                    .values()
                    .filter(|c| c.covers(topic))
                    .map(|c| c.name)
                    .collect();
                return Err(match needed.as_slice() {
                    [] => format!("it subscribes to {topic}, which no capability offers"),
                    names => format!(
                        "it subscribes to {topic} without requesting a capability that covers it ({})",
                        names.join(" or ")
                    ),
                });
            }
        }
        for task in &manifest.tasks {
            croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Required)
                .dom_and_dow(true)
                .build()
                .parse(&task.schedule)
                .map_err(|e| format!("task {}: bad schedule: {e}", task.name))?;
        }
        Ok(())
    }

    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|p| &*p.name == name)
    }

    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// One outbox subscription per plugin that asks for events, its progress kept under
    /// `plugin:<name>`.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.plugins
            .iter()
            .filter(|p| !p.manifest.events.is_empty())
            .map(|plugin| {
                // Plugins are loaded once per process: their names live as long as it.
                let name: &'static str =
                    Box::leak(format!("plugin:{}", plugin.name).into_boxed_str());
                let topics: Vec<&'static str> = plugin
                    .manifest
                    .events
                    .iter()
                    .map(|t| &*Box::leak(t.clone().into_boxed_str()))
                    .collect();
                let plugin = plugin.clone();
                Subscription {
                    name,
                    topics: Box::leak(topics.into_boxed_slice()),
                    handler: Arc::new(move |kernel, event| {
                        let plugin = plugin.clone();
                        async move { deliver(&kernel, &plugin, event).await }.boxed()
                    }),
                }
            })
            .collect()
    }

    /// One job per plugin task, run for every clinic that enabled the plugin.
    pub fn jobs(&self) -> Vec<JobSpec> {
        let mut jobs = Vec::new();
        for plugin in &self.plugins {
            for task in &plugin.manifest.tasks {
                let name: &'static str =
                    Box::leak(format!("plugin.{}.{}", plugin.name, task.name).into_boxed_str());
                let schedule: &'static str = Box::leak(task.schedule.clone().into_boxed_str());
                let plugin = plugin.clone();
                let task_name = task.name.clone();
                jobs.push(JobSpec {
                    name,
                    schedule,
                    run: Arc::new(move |kernel, run| {
                        let plugin = plugin.clone();
                        let task_name = task_name.clone();
                        async move { run_task(&kernel, &plugin, &task_name, run.tick).await }
                            .boxed()
                    }),
                });
            }
        }
        jobs
    }
}

/// Makes this process non-dumpable: processes of the same user (plugin children among
/// them) can then no longer read its memory or `/proc/<pid>/environ` without ptrace rights.
fn forbid_inspection() {
    #[cfg(target_os = "linux")]
    if let Err(err) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %err, "could not make the server non-dumpable");
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A clinic's settings for one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub subject_id: Uuid,
    pub enabled: bool,
    pub granted: Vec<String>,
}

/// The clinic's installation of `plugin`, if it ever configured it.
pub async fn installation(
    conn: &mut crate::db::Conn,
    plugin: &str,
) -> Result<Option<Installation>, DbError> {
    let row: Option<(Uuid, bool, Vec<String>)> = pi::table
        .filter(pi::plugin.eq(plugin))
        .select((pi::subject_id, pi::enabled, pi::granted))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(subject_id, enabled, granted)| Installation {
        subject_id,
        enabled,
        granted,
    }))
}

/// The plugin's own identity in a clinic, for a call made on behalf of `request`.
pub fn plugin_actor(
    plugin: &str,
    tenant_id: Uuid,
    subject_id: Uuid,
    request: Option<Arc<RequestContext>>,
) -> Actor {
    let request = request.unwrap_or_else(|| {
        Arc::new(RequestContext::new(
            Uuid::now_v7().to_string(),
            None,
            Some(format!("plugin:{plugin}")),
        ))
    });
    Actor {
        kind: ActorKind::Plugin,
        user_id: subject_id,
        tenant_id,
        request,
    }
}

/// Delivers one outbox event to a plugin, if the event's clinic enabled it.
async fn deliver(
    kernel: &Kernel,
    plugin: &Arc<LoadedPlugin>,
    event: crate::events::Event,
) -> anyhow::Result<()> {
    let name = plugin.name.clone();
    let scope = TenantScope::clinic(event.tenant_id);
    let found = kernel
        .db
        .tenant(scope, |conn| {
            async move { installation(conn, &name).await }.scope_boxed()
        })
        .await?;
    let Some(found) = found.filter(|i| i.enabled) else {
        return Ok(());
    };
    // The clinic decides what the plugin may learn, events included.
    if !kernel
        .plugins
        .capabilities()
        .cover(&found.granted, &event.topic)
    {
        return Ok(());
    }
    let input = harmony_plugin_api::Event {
        id: event.id.to_string(),
        tenant_id: event.tenant_id.to_string(),
        topic: event.topic.clone(),
        payload: event.payload.clone(),
        occurred_at: event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
    };
    let actor = plugin_actor(&plugin.name, event.tenant_id, found.subject_id, None);
    plugin
        .call(kernel, CallKind::Event, &input, actor)
        .await
        .map(drop)
        .map_err(anyhow::Error::from)
}

/// Runs one tick of a plugin task for every clinic that enabled the plugin.
async fn run_task(
    kernel: &Kernel,
    plugin: &Arc<LoadedPlugin>,
    task: &str,
    tick: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let name = plugin.name.to_string();
    let clinics: Vec<(Uuid, Uuid)> = kernel
        .db
        .system("plugins.tasks", |conn| {
            async move {
                pi::table
                    .filter(pi::plugin.eq(name).and(pi::enabled.eq(true)))
                    .select((pi::tenant_id, pi::subject_id))
                    .load(conn)
                    .await
                    .map_err(DbError::from)
            }
            .scope_boxed()
        })
        .await?;
    let mut failed = 0usize;
    for (tenant_id, subject_id) in clinics {
        let input = harmony_plugin_api::Task {
            name: task.to_owned(),
            tenant_id: tenant_id.to_string(),
            tick: tick.to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let actor = plugin_actor(&plugin.name, tenant_id, subject_id, None);
        if let Err(err) = plugin.call(kernel, CallKind::Task, &input, actor).await {
            failed += 1;
            tracing::warn!(plugin = %plugin.name, task, "tenant.id" = %tenant_id, error = %err, "plugin task failed");
        }
    }
    if failed > 0 {
        anyhow::bail!("plugin task failed for {failed} clinic(s)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_offering(capabilities: Vec<Capability>) -> PluginHost {
        PluginHost {
            plugins: Vec::new(),
            refused: Vec::new(),
            capabilities: Arc::new(Capabilities::new(capabilities)),
        }
    }

    fn capability(name: &'static str, topics: &'static [&'static str]) -> Capability {
        Capability {
            name,
            description: "",
            permissions: &[],
            operations: Vec::new(),
            topics,
        }
    }

    fn manifest(events: &[&str], capabilities: &[&str]) -> Manifest {
        Manifest {
            name: "survey".into(),
            version: "1.0.0".into(),
            description: String::new(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            routes: Vec::new(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            tasks: Vec::new(),
        }
    }

    #[test]
    fn a_subscription_needs_a_requested_capability_that_covers_its_topic() {
        let host = host_offering(vec![
            capability("appointments:read", &["appointment.*"]),
            capability("services:read", &[]),
        ]);
        let covered = manifest(&["appointment.completed"], &["appointments:read"]);
        assert_eq!(host.check_manifest(&covered), Ok(()));

        let uncovered = manifest(&["appointment.completed"], &["services:read"]);
        let why = host.check_manifest(&uncovered).unwrap_err();
        assert!(why.contains("appointments:read"), "{why}");

        let nobody = manifest(&["payroll.closed"], &["appointments:read"]);
        let why = host.check_manifest(&nobody).unwrap_err();
        assert!(why.contains("no capability offers"), "{why}");
    }

    #[test]
    fn topic_patterns_match_exact_names_and_prefixes() {
        let events = capability("events:emit", &["plugin.*", "exact.topic"]);
        assert!(events.covers("plugin.nps.answered"));
        assert!(events.covers("exact.topic"));
        assert!(!events.covers("exact.topic.more"));
        assert!(!events.covers("pluginx"));
        assert!(!events.covers("appointment.booked"));
    }
}
