//! Assembling and running the HTTP server: the composed OpenAPI service, the middleware
//! stack, the operational endpoints and the background workers.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use poem::endpoint::make_sync;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route, Server, get};
use poem_openapi::{OpenApi, OpenApiService};

use crate::Kernel;
use crate::events::Dispatcher;
use crate::http::{self, idempotency};
use crate::jobs::Scheduler;
use crate::module::Module;

/// The OpenAPI service of a composed API. The document names no server: clients choose
/// the base URL.
pub fn openapi_service<A: OpenApi>(api: A) -> OpenApiService<A, ()> {
    OpenApiService::new(api, "Harmony", env!("CARGO_PKG_VERSION")).description(
        "The API of Harmony, the management platform of aesthetics clinics. Every error is \
         an RFC 9457 problem (`application/problem+json`) with a stable `code`.",
    )
}

/// The OpenAPI document of a composed API, as written to `openapi/harmony.json`.
pub fn openapi_document<A: OpenApi>(api: A) -> String {
    let mut spec = finished(&openapi_service(api).spec());
    spec.push('\n');
    spec
}

/// poem's document, with plain references ([`plain_refs`]) and the links from what
/// creates a resource to what acts on it ([`add_links`]).
fn finished(spec: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    plain_refs(&mut document);
    add_links(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| spec.to_owned())
}

/// Links from each operation that creates a resource (`POST /things` answering 201) to
/// every operation on it (`/things/{id}` and below), with the new resource's `id` (or the
/// field the path names, such as `code`) and the creating request's own path parameters.
/// Clients learn where a new id goes, and schemathesis's stateful phase follows them.
fn add_links(document: &mut serde_json::Value) {
    use serde_json::{Map, Value, json};
    let schemas = document["components"]["schemas"].clone();
    let fields_of = |schema: &Value| -> Vec<String> {
        let schema = match schema["$ref"].as_str() {
            Some(name) => &schemas[name.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let Some(paths) = document["paths"].as_object().cloned() else {
        return;
    };
    for (path, item) in &paths {
        let created = &item["post"]["responses"]["201"]["content"];
        let Some(media) = created.as_object().and_then(|c| c.values().next()) else {
            continue;
        };
        let fields = fields_of(&media["schema"]);
        let own: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut links = Map::new();
        for (target, operations) in &paths {
            let Some((param, tail)) = target
                .strip_prefix(path.as_str())
                .and_then(|rest| rest.strip_prefix("/{"))
                .and_then(|rest| rest.split_once('}'))
            else {
                continue;
            };
            let field = if fields.iter().any(|f| f == param) {
                param
            } else {
                "id"
            };
            if tail.contains('{') || !fields.iter().any(|f| f == field) {
                continue;
            }
            let mut parameters = Map::new();
            parameters.insert(param.to_owned(), json!(format!("$response.body#/{field}")));
            for name in &own {
                parameters.insert((*name).to_owned(), json!(format!("$request.path.{name}")));
            }
            for operation in operations.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(id) = operation["operationId"].as_str() {
                    links.insert(
                        id.to_owned(),
                        json!({"operationId": id, "parameters": parameters}),
                    );
                }
            }
        }
        if !links.is_empty() {
            document["paths"][path]["post"]["responses"]["201"]["links"] = Value::Object(links);
        }
    }
}

/// Every property that refers to another schema written
/// `{"allOf": [{"$ref": ...}], "description": ..., "nullable": true}`: poem puts the
/// description and nullability in a second `allOf` member, which says the same but which
/// some client generators (openapi-python-client) cannot read for an enum.
fn plain_refs(document: &mut serde_json::Value) {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(object) => {
                let patch = match object.get_mut("allOf") {
                    Some(serde_json::Value::Array(members))
                        if members.len() == 2
                            && members[0].get("$ref").is_some()
                            && members[1].as_object().is_some_and(|m| {
                                m.keys().all(|k| {
                                    matches!(
                                        k.as_str(),
                                        "description"
                                            | "nullable"
                                            | "default"
                                            | "readOnly"
                                            | "writeOnly"
                                            | "deprecated"
                                    )
                                })
                            }) =>
                    {
                        members.pop()
                    }
                    _ => None,
                };
                if let Some(serde_json::Value::Object(patch)) = patch {
                    object.extend(patch);
                }
                object.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(document);
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Several servers may share a process (tests): only the first installs the recorder.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Every route of the server, wrapped in the kernel's middleware.
pub fn routes<A: OpenApi + 'static>(kernel: Kernel, api: A) -> impl Endpoint + 'static {
    let metrics = prometheus();
    let service = openapi_service(api);
    // The served document describes the loaded plugins' routes as well.
    let document = crate::plugins::routes::document_with_plugins(
        &finished(&service.spec()),
        kernel.plugins.plugins(),
    );
    let methods = std::sync::Arc::new(http::Methods::of_document(&document));
    let spec = make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let docs = service.swagger_ui();
    let db = kernel.db.clone();
    let metrics_endpoint = make_sync(move |_| {
        let status = db.pool_status();
        metrics::gauge!("db_pool_size").set(status.size as f64);
        metrics::gauge!("db_pool_available").set(status.available as f64);
        metrics::gauge!("db_pool_waiting").set(status.waiting as f64);
        metrics.render()
    });

    let cors = Cors::new()
        .allow_origins(
            kernel
                .config
                .server
                .cors_allowed_origins
                .iter()
                .map(String::as_str),
        )
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers(["authorization", "content-type", "idempotency-key"])
        .expose_headers(["x-request-id", "retry-after"])
        .max_age(600);
    let limits = http::BodyLimits {
        json: kernel.config.server.body_limit_bytes,
        upload: kernel.config.storage.max_upload_bytes,
    };
    let idem_kernel = kernel.clone();

    Route::new()
        .nest("/", service)
        .at("/openapi.json", get(spec))
        .at(
            "/api/v1/plugins/:plugin/*rest",
            poem::endpoint::make(|mut req: poem::Request| async move {
                let body = req.take_body();
                Ok::<_, poem::Error>(crate::plugins::routes::serve(req, body).await)
            }),
        )
        .nest("/docs", docs)
        .at("/metrics", get(metrics_endpoint))
        .data(kernel)
        .around(move |ep, req| {
            let kernel = idem_kernel.clone();
            async move { Ok::<_, poem::Error>(idempotency::serve(&*ep, &kernel, req).await) }
        })
        .with(cors)
        .around(move |ep, req| {
            let methods = methods.clone();
            async move {
                let response = http::serve_request(ep, limits, &methods, req).await;
                Ok::<_, poem::Error>(response)
            }
        })
        .into_endpoint()
}

/// The workers that run beside the HTTP server.
pub struct Background {
    /// The modules' dispatcher, then one per plugin that takes events.
    dispatchers: Vec<tokio::task::JoinHandle<()>>,
    rbac_refresh: tokio::task::JoinHandle<()>,
    scheduler: tokio_cron_scheduler::JobScheduler,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Background")
    }
}

impl Background {
    /// Starts the event dispatcher, the job scheduler and the periodic RBAC reload.
    pub async fn start(kernel: &Kernel, modules: &[&dyn Module]) -> anyhow::Result<Self> {
        let subscriptions: Vec<_> = modules.iter().flat_map(|m| m.subscriptions()).collect();
        let mut dispatchers = vec![Dispatcher::new(kernel.clone(), subscriptions).spawn()];
        // Each plugin waits on its own dispatcher: one that hangs or fails on every event
        // delays nobody else's deliveries.
        for subscription in kernel.plugins.subscriptions() {
            dispatchers.push(Dispatcher::new(kernel.clone(), vec![subscription]).spawn());
        }
        let mut jobs: Vec<_> = modules.iter().flat_map(|m| m.jobs()).collect();
        jobs.extend(kernel.plugins.jobs());
        let instance = format!("{}-{}", hostname(), std::process::id());
        let scheduler = Scheduler::new(kernel.clone(), jobs, instance)
            .start()
            .await?;
        // Role changes made through another replica reach this one within a minute; access
        // tokens expire sooner than refresh tokens, which stop at once.
        let rbac = kernel.rbac.clone();
        let rbac_refresh = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(err) = rbac.reload().await {
                    tracing::warn!(error = %err, "could not reload role links");
                }
            }
        });
        Ok(Self {
            dispatchers,
            rbac_refresh,
            scheduler,
        })
    }

    pub async fn stop(mut self) {
        for dispatcher in &self.dispatchers {
            dispatcher.abort();
        }
        self.rbac_refresh.abort();
        let _ = self.scheduler.shutdown().await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "harmony".into())
}

/// Serves `api` on an already bound listener until `shutdown` completes.
pub async fn serve<A, F>(
    kernel: Kernel,
    api: A,
    listener: std::net::TcpListener,
    shutdown: F,
) -> std::io::Result<()>
where
    A: OpenApi + 'static,
    F: Future<Output = ()> + Send,
{
    listener.set_nonblocking(true)?;
    let acceptor = TcpAcceptor::from_std(listener)?;
    let local = acceptor.local_addr();
    tracing::info!(address = ?local.first(), "listening");
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            routes(kernel, api),
            shutdown,
            Some(std::time::Duration::from_secs(10)),
        )
        .await
}
