//! The Harmony kernel: what every feature module stands on.
//!
//! It owns configuration, the database and its tenant isolation, identity and
//! authentication, RBAC, the audit and consent logs, events, scheduled jobs and the HTTP
//! plumbing, and knows nothing about any feature. See `ARCHITECTURE.md`.

pub mod audit;
pub mod auth;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod module;
mod ops;
pub mod plugins;
pub mod rbac;
pub mod schema;
pub mod server;
pub mod sql;
pub mod storage;
pub mod tenancy;
pub mod util;
pub mod validate;

use std::ops::Deref;
use std::sync::Arc;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use futures::FutureExt as _;

pub use error::{Error, Result};
pub use module::{DemoClinic, Module, ModuleApi};

use crate::auth::{Actor, AuthService, BearerAuth};
use crate::config::Config;
use crate::crypto::Crypto;
use crate::db::Db;
use crate::jobs::JobSpec;
use crate::rbac::{Permission, Rbac};
use crate::storage::Storage;

/// The kernel's migrations (`migrations/kernel`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/kernel");

/// Tags grouping the kernel's operations in the OpenAPI document.
#[derive(Debug, poem_openapi::Tags)]
pub enum ApiTags {
    /// Sign up, log in, refresh and log out.
    Auth,
    /// The clinic, its members and professionals.
    Clinic,
    /// Who accessed whose personal data.
    Audit,
    /// Health, readiness.
    Operations,
    /// Third-party plugins and each clinic's choice of them.
    Plugins,
}

/// The running kernel, shared by every handler (`poem::web::Data<&Kernel>`).
#[derive(Clone)]
pub struct Kernel(Arc<KernelParts>);

/// What the kernel is made of.
#[derive(Debug)]
pub struct KernelParts {
    pub config: Config,
    pub db: Db,
    pub auth: AuthService,
    pub rbac: Rbac,
    pub crypto: Crypto,
    pub storage: Storage,
    /// The clinics' time zones.
    pub zones: tenancy::ZoneCache,
    /// Audit records of reads, written in batches.
    pub audit: audit::AuditJournal,
    /// The loaded plugins.
    pub plugins: plugins::PluginHost,
    /// What modules keep while the server runs (clients of external services, caches),
    /// one value per type, installed by [`Module::init`].
    pub extensions: Extensions,
}

/// A map from a type to the one value of it that a module installed.
#[derive(Default)]
pub struct Extensions(
    std::sync::RwLock<
        std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
    >,
);

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Extensions")
    }
}

impl Extensions {
    /// Installs `value`, replacing any earlier value of its type.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) {
        if let Ok(mut map) = self.0.write() {
            map.insert(std::any::TypeId::of::<T>(), Arc::new(value));
        }
    }

    /// The installed value of type `T`.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let map = self.0.read().ok()?;
        map.get(&std::any::TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kernel")
    }
}

impl Deref for Kernel {
    type Target = KernelParts;

    fn deref(&self) -> &KernelParts {
        &self.0
    }
}

impl Kernel {
    /// Connects to the (migrated) database, loads the RBAC policy and the plugins (which
    /// may ask for `capabilities`).
    pub async fn start(
        config: Config,
        policy: &str,
        capabilities: Vec<plugins::Capability>,
    ) -> anyhow::Result<Kernel> {
        let db = Db::connect(&config.database)?;
        let auth = AuthService::new(&config.auth)?;
        let crypto = crypto_from(&config)?;
        let storage = Storage::local(&config.storage.path)?;
        let rbac = Rbac::load(db.clone(), policy).await?;
        let zones = tenancy::ZoneCache::default();
        let audit = audit::AuditJournal::start(Db::connect(&config::DatabaseConfig {
            pool_size: audit::WRITERS,
            ..config.database.clone()
        })?);
        let plugins = plugins::PluginHost::load(&config.plugins, capabilities).await;
        Ok(Kernel(Arc::new(KernelParts {
            config,
            db,
            auth,
            rbac,
            crypto,
            storage,
            zones,
            audit,
            plugins,
            extensions: Extensions::default(),
        })))
    }

    /// Verifies that the caller may use `permission` in their clinic.
    ///
    /// Every endpoint calls this first. A refusal is a 403, and is logged.
    pub async fn authorize(&self, auth: &BearerAuth, permission: &Permission) -> Result<Actor> {
        self.require(&auth.0, permission).await?;
        Ok(auth.0.clone())
    }

    /// Verifies that `actor` may use `permission`: for code acting for someone without a
    /// bearer token (modules' service APIs). A refusal is a 403, and is logged.
    pub async fn require(&self, actor: &Actor, permission: &Permission) -> Result<()> {
        if self
            .rbac
            .is_allowed(actor.tenant_id, actor.user_id, permission)
            .await
        {
            return Ok(());
        }
        tracing::warn!(
            "tenant.id" = %actor.tenant_id,
            "user.id" = %actor.user_id,
            resource = permission.resource,
            action = permission.action,
            "request.id" = %actor.request.request_id,
            "permission denied"
        );
        Err(Error::forbidden(
            "forbidden",
            format!(
                "your role may not {} {}",
                permission.action, permission.resource
            ),
        ))
    }
}

/// The encryption service from the configured master keys.
pub fn crypto_from(config: &Config) -> anyhow::Result<Crypto> {
    use secrecy::{ExposeSecret, SecretString};
    let master =
        config.crypto.master_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!("no master key configured (HARMONY__CRYPTO__MASTER_KEY)")
        })?;
    let previous: Vec<SecretString> = config
        .crypto
        .previous_master_keys
        .as_ref()
        .map(|list| {
            list.expose_secret()
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| SecretString::from(k.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Crypto::new(master, &previous)
}

/// The kernel's own endpoints, permissions and jobs, registered like any module's.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelModule;

impl Module for KernelModule {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn migrations(&self) -> Option<EmbeddedMigrations> {
        Some(MIGRATIONS)
    }

    fn permissions(&self) -> &'static [Permission] {
        tenancy::perm::ALL
    }

    fn jobs(&self) -> Vec<JobSpec> {
        vec![
            JobSpec {
                name: "kernel.prune_login_throttle",
                schedule: "0 */10 * * * *",
                run: Arc::new(|kernel, _| {
                    async move {
                        let window = kernel.config.auth.login_window_secs;
                        auth::prune_login_throttle(&kernel.db, window).await?;
                        Ok(())
                    }
                    .boxed()
                }),
            },
            JobSpec {
                name: "kernel.prune_idempotency_keys",
                schedule: "0 17 * * * *",
                run: Arc::new(|kernel, _| {
                    async move {
                        http::idempotency::prune(&kernel.db).await?;
                        Ok(())
                    }
                    .boxed()
                }),
            },
        ]
    }

    fn capabilities(&self) -> Vec<plugins::Capability> {
        plugins::kernel_capabilities()
    }

    fn seed_demo<'a>(
        &'a self,
        kernel: &'a Kernel,
        clinic: &'a DemoClinic,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        demo::seed_kernel(kernel, clinic).boxed()
    }
}

impl ModuleApi for KernelModule {
    type Api = (
        auth::api::AuthApi,
        tenancy::api::TenancyApi,
        audit::AuditApi,
        ops::OpsApi,
        plugins::api::PluginsApi,
    );

    fn api(&self) -> Self::Api {
        (
            auth::api::AuthApi,
            tenancy::api::TenancyApi,
            audit::AuditApi,
            ops::OpsApi,
            plugins::api::PluginsApi,
        )
    }
}
