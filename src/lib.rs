//! Harmony's composition: the kernel plus every feature module, in dependency order.
//!
//! Adding a module is one crate, one entry in [`modules`] and one element in [`Api`].

use harmony_agenda::AgendaModule;
use harmony_core::config::Config;
use harmony_core::module::{self, Module, ModuleApi};
use harmony_core::rbac;
use harmony_core::{Kernel, KernelModule};
use harmony_patients::PatientsModule;
use harmony_whatsapp::WhatsappModule;

/// The composed HTTP API of the kernel and every module: one element per module.
pub type Api = (
    <KernelModule as ModuleApi>::Api,
    <PatientsModule as ModuleApi>::Api,
    <AgendaModule as ModuleApi>::Api,
    <WhatsappModule as ModuleApi>::Api,
);

/// Builds the composed API.
pub fn api() -> Api {
    (
        KernelModule.api(),
        PatientsModule.api(),
        AgendaModule.api(),
        WhatsappModule.api(),
    )
}

/// Every module, kernel first, each after the modules it depends on.
pub fn modules() -> Vec<&'static dyn Module> {
    vec![
        &KernelModule,
        &PatientsModule,
        &AgendaModule,
        &WhatsappModule,
    ]
}

/// The OpenAPI document, as checked in at `openapi/harmony.json`.
pub fn openapi_document() -> String {
    harmony_core::server::openapi_document(api())
}

/// The role policy the modules declare, as checked in at `config/rbac_policy.csv`.
pub fn rbac_policy() -> String {
    let modules = modules();
    rbac::policy_csv(
        &module::permissions(&modules),
        &module::capabilities(&modules),
    )
}

/// Applies every module's pending migrations as the schema owner.
pub async fn migrate(config: &Config) -> anyhow::Result<usize> {
    let url = harmony_core::db::url_with_password(
        &config.database.owner_url,
        config.database.password.as_ref(),
    );
    harmony_core::db::migrate(url, module::migrations(&modules())).await
}

/// Starts the kernel on a migrated database, with the plugins the configuration lists,
/// and lets every module set itself up.
pub async fn start_kernel(config: Config) -> anyhow::Result<Kernel> {
    let modules = modules();
    let kernel = Kernel::start(config, rbac::POLICY, module::capabilities(&modules)).await?;
    for module in &modules {
        module.init(&kernel).await?;
    }
    Ok(kernel)
}
