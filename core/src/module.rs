//! The module interface: how a feature module plugs into the kernel.
//!
//! A module contributes plain data at run time through [`Module`] (migrations, permissions,
//! jobs, event subscriptions, demo data), collected from a list of `dyn Module`. Its HTTP
//! API travels separately through [`ModuleApi`], because poem-openapi's `OpenApi` trait is
//! not object-safe: `src/main.rs` composes every module's API into one tuple at compile time.

use diesel_migrations::EmbeddedMigrations;
use futures::future::BoxFuture;
use poem_openapi::OpenApi;
use uuid::Uuid;

use crate::Kernel;
use crate::events::Subscription;
use crate::jobs::JobSpec;
use crate::plugins::Capability;
use crate::rbac::{Permission, Role};

/// The demo clinic, as handed to each module's demo seeding.
#[derive(Debug, Clone)]
pub struct DemoClinic {
    pub tenant_id: Uuid,
    /// One demo member per staff role.
    pub members: Vec<(Role, Uuid)>,
}

impl DemoClinic {
    pub fn member(&self, role: Role) -> Option<Uuid> {
        self.members
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, id)| *id)
    }
}

/// What a feature module registers with the kernel at start-up.
pub trait Module: Send + Sync + 'static {
    /// Short, unique, stable: `patients`, `agenda`.
    fn name(&self) -> &'static str;

    /// The module's own migrations (its folder under `migrations/`), applied after the
    /// kernel's and those of the modules listed before it.
    fn migrations(&self) -> Option<EmbeddedMigrations> {
        None
    }

    /// The permissions the module's endpoints check, with their default grants per role.
    fn permissions(&self) -> &'static [Permission] {
        &[]
    }

    fn jobs(&self) -> Vec<JobSpec> {
        Vec::new()
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        Vec::new()
    }

    /// What plugins may be granted by a clinic to reach this module's data.
    fn capabilities(&self) -> Vec<Capability> {
        Vec::new()
    }

    /// Runs once when the kernel has started, before the server serves: the place to
    /// install what the module keeps while running (`kernel.extensions`).
    fn init<'a>(&'a self, _kernel: &'a Kernel) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Adds the module's part of the demo clinic. Must be idempotent.
    fn seed_demo<'a>(
        &'a self,
        _kernel: &'a Kernel,
        _clinic: &'a DemoClinic,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A module's HTTP API, composed into the one OpenAPI service at compile time.
pub trait ModuleApi: Module {
    type Api: OpenApi + 'static;

    fn api(&self) -> Self::Api;
}

/// Every module's migrations, in the order of `modules`.
pub fn migrations(modules: &[&dyn Module]) -> Vec<EmbeddedMigrations> {
    modules.iter().filter_map(|m| m.migrations()).collect()
}

/// Every module's permissions.
pub fn permissions(modules: &[&dyn Module]) -> Vec<Permission> {
    modules
        .iter()
        .flat_map(|m| m.permissions().iter().copied())
        .collect()
}

/// Every module's plugin capabilities.
pub fn capabilities(modules: &[&dyn Module]) -> Vec<Capability> {
    modules.iter().flat_map(|m| m.capabilities()).collect()
}
