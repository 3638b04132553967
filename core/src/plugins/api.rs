//! `/api/v1/plugins`: what plugins the server has, and each clinic's choice of which to
//! enable with which capabilities.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::{Installation, LoadedPlugin, capability_role, installation};
use crate::auth::{Actor, BearerAuth};
use crate::config::PluginMode;
use crate::error::{Error, FieldError};
use crate::http::ApiResult;
use crate::http::JsonBody;
use crate::schema::plugin_installations as pi;
use crate::tenancy::perm;
use crate::{ApiTags, Kernel};

/// A capability a plugin requests, and whether this clinic granted it.
#[derive(Debug, Clone, Object)]
pub struct CapabilityView {
    /// e.g. `services:read`.
    pub name: String,
    pub description: String,
    pub granted: bool,
}

/// A route a plugin serves, under `/api/v1/plugins/{name}`.
#[derive(Debug, Clone, Object)]
pub struct PluginRouteView {
    pub method: String,
    pub path: String,
    pub summary: String,
    /// Staff roles that may call it; empty: every staff role.
    pub roles: Vec<String>,
}

/// A plugin the server loaded, as this clinic has it.
#[derive(Debug, Clone, Object)]
pub struct PluginView {
    pub name: String,
    pub version: String,
    pub description: String,
    /// `process` (its own child process) or `in_process`.
    pub mode: String,
    /// Whether it can take calls now (false while its process restarts).
    pub running: bool,
    /// Whether this clinic enabled it.
    pub enabled: bool,
    /// Outbox topics it receives.
    pub events: Vec<String>,
    pub routes: Vec<PluginRouteView>,
    /// What it asks for, and what this clinic granted.
    pub capabilities: Vec<CapabilityView>,
}

/// The plugins on offer.
#[derive(Debug, Clone, Object)]
pub struct PluginList {
    pub items: Vec<PluginView>,
}

/// This clinic's choice for one plugin.
#[derive(Debug, Clone, Object)]
pub struct PluginSettings {
    pub enabled: bool,
    /// The requested capabilities the clinic grants; the others are refused.
    #[oai(default)]
    pub granted: Vec<String>,
}

fn view(kernel: &Kernel, plugin: &LoadedPlugin, installed: Option<&Installation>) -> PluginView {
    let granted = |name: &str| installed.is_some_and(|i| i.granted.iter().any(|g| g == name));
    PluginView {
        name: plugin.name.to_string(),
        version: plugin.manifest.version.clone(),
        description: plugin.manifest.description.clone(),
        mode: match plugin.mode {
            PluginMode::Process => "process".into(),
            PluginMode::InProcess => "in_process".into(),
        },
        running: plugin.is_running(),
        enabled: installed.is_some_and(|i| i.enabled),
        events: plugin.manifest.events.clone(),
        routes: plugin
            .manifest
            .routes
            .iter()
            .map(|r| PluginRouteView {
                method: r.method.to_ascii_uppercase(),
                path: r.path.clone(),
                summary: r.summary.clone(),
                roles: r.roles.clone(),
            })
            .collect(),
        capabilities: plugin
            .manifest
            .capabilities
            .iter()
            .map(|name| CapabilityView {
                name: name.clone(),
                description: kernel
                    .plugins
                    .capabilities()
                    .get(name)
                    .map(|c| c.description.to_owned())
                    .unwrap_or_default(),
                granted: granted(name),
            })
            .collect(),
    }
}

async fn installations(
    kernel: &Kernel,
    actor: &Actor,
) -> Result<Vec<(String, Installation)>, Error> {
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let rows: Vec<(String, Uuid, bool, Vec<String>)> = pi::table
                    .select((pi::plugin, pi::subject_id, pi::enabled, pi::granted))
                    .load(conn)
                    .await?;
                Ok::<_, Error>(
                    rows.into_iter()
                        .map(|(plugin, subject_id, enabled, granted)| {
                            (
                                plugin,
                                Installation {
                                    subject_id,
                                    enabled,
                                    granted,
                                },
                            )
                        })
                        .collect(),
                )
            }
            .scope_boxed()
        })
        .await
}

fn loaded<'k>(kernel: &'k Kernel, name: &str) -> Result<&'k std::sync::Arc<LoadedPlugin>, Error> {
    kernel
        .plugins
        .get(name)
        .ok_or(Error::NotFound { what: "plugin" })
}

/// The clinic's plugins.
#[derive(Debug, Clone, Copy, Default)]
pub struct PluginsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Plugins")]
impl PluginsApi {
    /// List the plugins on offer
    ///
    /// Every plugin this server loaded, with whether this clinic enabled it and which of
    /// the capabilities it requests were granted.
    ///
    /// Permission: `plugins:read`.
    #[oai(path = "/plugins", method = "get", operation_id = "list_plugins")]
    async fn list_plugins(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<PluginList>> {
        let actor = kernel.authorize(&auth, &perm::PLUGINS_READ).await?;
        let installed = installations(&kernel, &actor).await?;
        let items = kernel
            .plugins
            .plugins()
            .iter()
            .map(|p| {
                let mine = installed
                    .iter()
                    .find(|(name, _)| *name == *p.name)
                    .map(|(_, i)| i);
                view(&kernel, p, mine)
            })
            .collect();
        Ok(Json(PluginList { items }))
    }

    /// Get a plugin
    ///
    /// Permission: `plugins:read`.
    #[oai(path = "/plugins/:name", method = "get", operation_id = "get_plugin")]
    async fn get_plugin(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<PluginView>> {
        let actor = kernel.authorize(&auth, &perm::PLUGINS_READ).await?;
        let plugin = loaded(&kernel, &name.0)?;
        let plugin_name = plugin.name.clone();
        let mine = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move { installation(conn, &plugin_name).await }.scope_boxed()
            })
            .await
            .map_err(Error::from)?;
        Ok(Json(view(&kernel, plugin, mine.as_ref())))
    }

    /// Enable or disable a plugin, granting capabilities
    ///
    /// `granted` must be a subset of the capabilities the plugin requests; the others are
    /// refused. Disabling keeps the plugin's data in this clinic but stops its events,
    /// routes and tasks, and withdraws every grant.
    ///
    /// Permission: `plugins:manage`.
    #[oai(
        path = "/plugins/:name",
        method = "put",
        operation_id = "configure_plugin"
    )]
    async fn configure_plugin(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        name: Path<String>,
        body: JsonBody<PluginSettings>,
    ) -> ApiResult<Json<PluginView>> {
        let actor = kernel.authorize(&auth, &perm::PLUGINS_MANAGE).await?;
        let plugin = loaded(&kernel, &name.0)?;
        let mut granted: Vec<String> = Vec::new();
        let mut errors = Vec::new();
        for (i, capability) in body.0.granted.iter().enumerate() {
            if !plugin.manifest.capabilities.contains(capability) {
                errors.push(FieldError::new(
                    format!("granted[{i}]"),
                    format!(
                        "{capability} is not requested by {}; it requests: {}",
                        plugin.name,
                        if plugin.manifest.capabilities.is_empty() {
                            "nothing".to_owned()
                        } else {
                            plugin.manifest.capabilities.join(", ")
                        }
                    ),
                ));
            } else if !granted.contains(capability) {
                granted.push(capability.clone());
            }
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors).into());
        }
        granted.sort();
        let enabled = body.0.enabled;
        let tenant = actor.tenant_id;
        let by = actor.user_id;
        let plugin_name = plugin.name.to_string();
        let stored_grants = granted.clone();
        let saved: Installation = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let (subject_id, enabled, granted) = diesel::insert_into(pi::table)
                        .values((
                            pi::tenant_id.eq(tenant),
                            pi::plugin.eq(&plugin_name),
                            pi::subject_id.eq(Uuid::now_v7()),
                            pi::enabled.eq(enabled),
                            pi::granted.eq(&stored_grants),
                            pi::changed_by.eq(by),
                        ))
                        .on_conflict((pi::tenant_id, pi::plugin))
                        .do_update()
                        .set((
                            pi::enabled.eq(excluded(pi::enabled)),
                            pi::granted.eq(excluded(pi::granted)),
                            pi::changed_by.eq(excluded(pi::changed_by)),
                            pi::changed_at.eq(diesel::dsl::now),
                        ))
                        .returning((pi::subject_id, pi::enabled, pi::granted))
                        .get_result::<(Uuid, bool, Vec<String>)>(conn)
                        .await?;
                    Ok::<_, Error>(Installation {
                        subject_id,
                        enabled,
                        granted,
                    })
                }
                .scope_boxed()
            })
            .await?;
        let roles: Vec<String> = if saved.enabled {
            saved.granted.iter().map(|c| capability_role(c)).collect()
        } else {
            Vec::new()
        };
        kernel
            .rbac
            .set_links(tenant, saved.subject_id, &roles)
            .await
            .map_err(Error::internal)?;
        tracing::info!("tenant.id" = %tenant, "user.id" = %by, plugin = %plugin.name,
            enabled = saved.enabled, granted = ?saved.granted, "plugin settings changed");
        Ok(Json(view(&kernel, plugin, Some(&saved))))
    }
}
