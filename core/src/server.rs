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
    let mut spec = plain_refs(&openapi_service(api).spec());
    spec.push('\n');
    spec
}

/// `spec` with every property that refers to another schema written
/// `{"allOf": [{"$ref": ...}], "description": ..., "nullable": true}`: poem puts the
/// description and nullability in a second `allOf` member, which says the same but which
/// some client generators (openapi-python-client) cannot read for an enum.
fn plain_refs(spec: &str) -> String {
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
    let Ok(mut document) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    walk(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| spec.to_owned())
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
        &plain_refs(&service.spec()),
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
