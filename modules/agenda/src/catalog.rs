//! The services catalog, rooms and equipment, and the clinic's scheduling settings.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::auth::BearerAuth;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use harmony_core::tenancy::active_professionals;
use harmony_core::validate::Fields;
use harmony_core::{DemoClinic, Kernel};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::schema::{
    agenda_settings, resources, service_professionals, service_resources, services,
};
use crate::{AgendaTags, perm};
use harmony_core::http::JsonBody;

pub const CATEGORIES: [&str; 9] = [
    "facial",
    "body",
    "injectables",
    "laser",
    "consultation",
    "hair_removal",
    "massage",
    "nails",
    "other",
];

/// A service the clinic offers.
#[derive(Debug, Clone, Object)]
pub struct Service {
    pub id: Uuid,
    pub name: String,
    #[oai(nullable)]
    pub description: Option<String>,
    /// `facial`, `body`, `injectables`, `laser`, `consultation`, `hair_removal`, `massage`,
    /// `nails` or `other`.
    pub category: String,
    pub duration_minutes: i32,
    /// Cleanup time after the service, during which the professional (and room) stay busy.
    pub buffer_after_minutes: i32,
    /// In cents of `currency`.
    pub price_cents: i64,
    pub currency: String,
    /// `#rrggbb`, for the calendar.
    #[oai(nullable)]
    pub color: Option<String>,
    pub active: bool,
    /// Who performs it.
    pub professional_ids: Vec<Uuid>,
    /// The rooms or equipment it needs (any one of them); empty when it needs none.
    pub resource_ids: Vec<Uuid>,
}

#[derive(Debug, Object)]
pub struct NewService {
    pub name: String,
    #[oai(nullable)]
    pub description: Option<String>,
    pub category: String,
    pub duration_minutes: i32,
    #[oai(nullable)]
    pub buffer_after_minutes: Option<i32>,
    pub price_cents: i64,
    #[oai(nullable)]
    pub color: Option<String>,
    pub professional_ids: Vec<Uuid>,
    #[oai(nullable)]
    pub resource_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Object)]
pub struct ServiceUpdate {
    #[oai(nullable)]
    pub name: Option<String>,
    #[oai(nullable)]
    pub description: MaybeUndefined<String>,
    #[oai(nullable)]
    pub category: Option<String>,
    #[oai(nullable)]
    pub duration_minutes: Option<i32>,
    #[oai(nullable)]
    pub buffer_after_minutes: Option<i32>,
    #[oai(nullable)]
    pub price_cents: Option<i64>,
    #[oai(nullable)]
    pub color: MaybeUndefined<String>,
    #[oai(nullable)]
    pub active: Option<bool>,
    #[oai(nullable)]
    pub professional_ids: Option<Vec<Uuid>>,
    #[oai(nullable)]
    pub resource_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, AsChangeset, Default)]
#[diesel(table_name = services)]
struct ServiceChanges {
    name: Option<String>,
    description: Option<Option<String>>,
    category: Option<String>,
    duration_minutes: Option<i32>,
    buffer_after_minutes: Option<i32>,
    price_cents: Option<i64>,
    color: Option<Option<String>>,
    active: Option<bool>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, ApiResponse)]
pub enum ServiceCreated {
    #[oai(status = 201)]
    Created(Json<Service>),
}

/// A room or a piece of equipment.
#[derive(Debug, Clone, Object, Queryable, Selectable)]
#[diesel(table_name = resources)]
pub struct Resource {
    pub id: Uuid,
    pub name: String,
    /// `room` or `equipment`.
    pub kind: String,
    pub active: bool,
}

#[derive(Debug, Object)]
pub struct NewResource {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Object)]
pub struct ResourceUpdate {
    #[oai(nullable)]
    pub name: Option<String>,
    #[oai(nullable)]
    pub active: Option<bool>,
}

#[derive(Debug, ApiResponse)]
pub enum ResourceCreated {
    #[oai(status = 201)]
    Created(Json<Resource>),
}

/// The clinic's scheduling rules.
#[derive(Debug, Clone, Object, Queryable, Selectable)]
#[diesel(table_name = agenda_settings)]
pub struct AgendaSettings {
    /// Start times are offered every this many minutes (5, 10, 15, 20, 30 or 60).
    pub granularity_minutes: i32,
    /// How long before a start time it can still be booked.
    pub min_notice_minutes: i32,
    /// How far ahead appointments can be booked.
    pub max_advance_days: i32,
    /// Whether calendar feeds show the patient's first name (never more).
    pub feed_shows_patient_name: bool,
}

#[derive(Debug, Object)]
pub struct AgendaSettingsUpdate {
    #[oai(nullable)]
    pub granularity_minutes: Option<i32>,
    #[oai(nullable)]
    pub min_notice_minutes: Option<i32>,
    #[oai(nullable)]
    pub max_advance_days: Option<i32>,
    #[oai(nullable)]
    pub feed_shows_patient_name: Option<bool>,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = agenda_settings)]
struct SettingsChanges {
    granularity_minutes: Option<i32>,
    min_notice_minutes: Option<i32>,
    max_advance_days: Option<i32>,
    feed_shows_patient_name: Option<bool>,
    updated_at: DateTime<Utc>,
}

/// Required free text: what `validate::text` accepts, not empty; any failure answers `hint`.
fn text(value: &str, max: usize, hint: &'static str) -> Result<String, &'static str> {
    harmony_core::validate::text(value, max, true)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or(hint)
}

fn color(value: &str) -> Result<String, &'static str> {
    let lower = value.trim().to_lowercase();
    let valid = lower.len() == 7
        && lower.starts_with('#')
        && lower[1..].chars().all(|c| c.is_ascii_hexdigit());
    if valid {
        Ok(lower)
    } else {
        Err("a colour as #rrggbb, e.g. #7c3aed")
    }
}

fn in_range(value: i32, min: i32, max: i32, hint: &'static str) -> Result<i32, &'static str> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(hint)
    }
}

fn category(value: &str) -> Result<String, &'static str> {
    if CATEGORIES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(
            "one of facial, body, injectables, laser, consultation, hair_removal, massage, nails, other",
        )
    }
}

const DURATION_HINT: &str = "minutes, from 5 to 720";
const BUFFER_HINT: &str = "minutes, from 0 to 240";
const PRICE_HINT: &str = "a whole number of cents, 0 or more";

/// Loads services with who performs them and what they need.
async fn load_services(
    conn: &mut Conn,
    only: Option<Uuid>,
    active: Option<bool>,
) -> Result<Vec<Service>, Error> {
    let mut query = services::table.into_boxed();
    if let Some(id) = only {
        query = query.filter(services::id.eq(id));
    }
    if let Some(active) = active {
        query = query.filter(services::active.eq(active));
    }
    type Row = (
        Uuid,
        String,
        Option<String>,
        String,
        i32,
        i32,
        i64,
        String,
        Option<String>,
        bool,
    );
    let rows: Vec<Row> = query
        .order((services::name, services::id))
        .select((
            services::id,
            services::name,
            services::description,
            services::category,
            services::duration_minutes,
            services::buffer_after_minutes,
            services::price_cents,
            services::currency,
            services::color,
            services::active,
        ))
        .load(conn)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let pros: Vec<(Uuid, Uuid)> = service_professionals::table
        .filter(service_professionals::service_id.eq_any(&ids))
        .select((
            service_professionals::service_id,
            service_professionals::professional_id,
        ))
        .load(conn)
        .await?;
    let res: Vec<(Uuid, Uuid)> = service_resources::table
        .filter(service_resources::service_id.eq_any(&ids))
        .select((
            service_resources::service_id,
            service_resources::resource_id,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                name,
                description,
                category,
                duration_minutes,
                buffer_after_minutes,
                price_cents,
                currency,
                color,
                active,
            )| {
                let of = |links: &[(Uuid, Uuid)]| {
                    let mut v: Vec<Uuid> = links
                        .iter()
                        .filter(|(s, _)| *s == id)
                        .map(|(_, x)| *x)
                        .collect();
                    v.sort();
                    v
                };
                Service {
                    id,
                    name,
                    description,
                    category,
                    duration_minutes,
                    buffer_after_minutes,
                    price_cents,
                    currency,
                    color,
                    active,
                    professional_ids: of(&pros),
                    resource_ids: of(&res),
                }
            },
        )
        .collect())
}

/// Replaces a service's professionals and resources after checking they belong here.
async fn link(
    conn: &mut Conn,
    tenant: Uuid,
    service: Uuid,
    professionals: Option<&[Uuid]>,
    needs: Option<&[Uuid]>,
) -> Result<(), Error> {
    if let Some(ids) = professionals {
        let found = active_professionals(conn, ids).await?;
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::invalid(
                "professional_ids",
                format!("{missing} is not an active professional of this clinic"),
            ));
        }
        diesel::delete(
            service_professionals::table.filter(service_professionals::service_id.eq(service)),
        )
        .execute(conn)
        .await?;
        let rows: Vec<_> = ids
            .iter()
            .map(|p| {
                (
                    service_professionals::tenant_id.eq(tenant),
                    service_professionals::service_id.eq(service),
                    service_professionals::professional_id.eq(*p),
                )
            })
            .collect();
        diesel::insert_into(service_professionals::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    if let Some(ids) = needs {
        let found: Vec<Uuid> = resources::table
            .filter(resources::id.eq_any(ids))
            .filter(resources::active.eq(true))
            .select(resources::id)
            .load(conn)
            .await?;
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::invalid(
                "resource_ids",
                format!("{missing} is not an active room or equipment of this clinic"),
            ));
        }
        diesel::delete(service_resources::table.filter(service_resources::service_id.eq(service)))
            .execute(conn)
            .await?;
        let rows: Vec<_> = ids
            .iter()
            .map(|r| {
                (
                    service_resources::tenant_id.eq(tenant),
                    service_resources::service_id.eq(service),
                    service_resources::resource_id.eq(*r),
                )
            })
            .collect();
        diesel::insert_into(service_resources::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The clinic's settings, created with the defaults on first use.
pub async fn settings(mut conn: &Conn, tenant: Uuid) -> Result<AgendaSettings, Error> {
    let stored = agenda_settings::table
        .find(tenant)
        .select(AgendaSettings::as_select())
        .first(&mut conn)
        .await
        .optional()?;
    if let Some(settings) = stored {
        return Ok(settings);
    }
    diesel::insert_into(agenda_settings::table)
        .values(agenda_settings::tenant_id.eq(tenant))
        .on_conflict_do_nothing()
        .execute(&mut conn)
        .await?;
    Ok(agenda_settings::table
        .find(tenant)
        .select(AgendaSettings::as_select())
        .first(&mut conn)
        .await?)
}

#[derive(Debug, Clone, Copy)]
pub struct CatalogApi;

#[OpenApi(prefix_path = "/api/v1", tag = "AgendaTags::Agenda")]
impl CatalogApi {
    /// The services catalog
    ///
    /// Permission: `services:read`.
    #[oai(path = "/services", method = "get", operation_id = "list_services")]
    async fn list_services(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        /// Only active (`true`) or inactive (`false`) services; all when absent.
        active: Query<Option<bool>>,
    ) -> ApiResult<Json<Vec<Service>>> {
        let actor = kernel.authorize(&auth, &perm::SERVICES_READ).await?;
        let list = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move { load_services(conn, None, active.0).await }.scope_boxed()
            })
            .await?;
        Ok(Json(list))
    }

    /// One service
    ///
    /// Permission: `services:read`.
    #[oai(path = "/services/:id", method = "get", operation_id = "get_service")]
    async fn get_service(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Service>> {
        let actor = kernel.authorize(&auth, &perm::SERVICES_READ).await?;
        let found = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move { load_services(conn, Some(id.0), None).await }.scope_boxed()
            })
            .await?
            .pop();
        Ok(Json(found.ok_or(Error::NotFound { what: "service" })?))
    }

    /// Add a service
    ///
    /// Permission: `services:manage`.
    #[oai(path = "/services", method = "post", operation_id = "create_service")]
    async fn create_service(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewService>,
    ) -> ApiResult<ServiceCreated> {
        let actor = kernel.authorize(&auth, &perm::SERVICES_MANAGE).await?;
        let input = body.0;
        let mut f = Fields::default();
        let name = f.check("name", text(&input.name, 120, "1 to 120 characters"));
        let description = input
            .description
            .and_then(|d| f.check("description", text(&d, 2000, "at most 2000 characters")));
        let category = f.check("category", category(&input.category));
        let duration = f.check(
            "duration_minutes",
            in_range(input.duration_minutes, 5, 720, DURATION_HINT),
        );
        let buffer = f.check(
            "buffer_after_minutes",
            in_range(input.buffer_after_minutes.unwrap_or(0), 0, 240, BUFFER_HINT),
        );
        let price = f.check(
            "price_cents",
            if input.price_cents >= 0 {
                Ok(input.price_cents)
            } else {
                Err(PRICE_HINT)
            },
        );
        let color = input.color.and_then(|c| f.check("color", color(&c)));
        f.finish()?;
        let (Some(name), Some(category), Some(duration), Some(buffer), Some(price)) =
            (name, category, duration, buffer, price)
        else {
            return Err(Error::invalid("body", "invalid service").into());
        };
        let tenant = actor.tenant_id;
        let id = Uuid::now_v7();
        let service = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::insert_into(services::table)
                        .values((
                            services::tenant_id.eq(tenant),
                            services::id.eq(id),
                            services::name.eq(name),
                            services::description.eq(description),
                            services::category.eq(category),
                            services::duration_minutes.eq(duration),
                            services::buffer_after_minutes.eq(buffer),
                            services::price_cents.eq(price),
                            services::color.eq(color),
                        ))
                        .execute(conn)
                        .await?;
                    link(
                        conn,
                        tenant,
                        id,
                        Some(&input.professional_ids),
                        Some(input.resource_ids.as_deref().unwrap_or(&[])),
                    )
                    .await?;
                    load_services(conn, Some(id), None)
                        .await?
                        .pop()
                        .ok_or(Error::NotFound { what: "service" })
                }
                .scope_boxed()
            })
            .await?;
        Ok(ServiceCreated::Created(Json(service)))
    }

    /// Change a service
    ///
    /// Set `active` to `false` to stop offering it; booked appointments keep it.
    ///
    /// Permission: `services:manage`.
    #[oai(
        path = "/services/:id",
        method = "patch",
        operation_id = "update_service"
    )]
    async fn update_service(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<ServiceUpdate>,
    ) -> ApiResult<Json<Service>> {
        let actor = kernel.authorize(&auth, &perm::SERVICES_MANAGE).await?;
        let input = body.0;
        let mut f = Fields::default();
        let changes = ServiceChanges {
            name: input
                .name
                .and_then(|v| f.check("name", text(&v, 120, "1 to 120 characters"))),
            description: match input.description {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => f
                    .check("description", text(&v, 2000, "at most 2000 characters"))
                    .map(Some),
            },
            category: input
                .category
                .and_then(|v| f.check("category", category(&v))),
            duration_minutes: input
                .duration_minutes
                .and_then(|v| f.check("duration_minutes", in_range(v, 5, 720, DURATION_HINT))),
            buffer_after_minutes: input
                .buffer_after_minutes
                .and_then(|v| f.check("buffer_after_minutes", in_range(v, 0, 240, BUFFER_HINT))),
            price_cents: input
                .price_cents
                .and_then(|v| f.check("price_cents", if v >= 0 { Ok(v) } else { Err(PRICE_HINT) })),
            color: match input.color {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => f.check("color", color(&v)).map(Some),
            },
            active: input.active,
            updated_at: Some(Utc::now()),
        };
        f.finish()?;
        let tenant = actor.tenant_id;
        let service = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let updated = diesel::update(services::table.filter(services::id.eq(id.0)))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    if updated == 0 {
                        return Err(Error::NotFound { what: "service" });
                    }
                    link(
                        conn,
                        tenant,
                        id.0,
                        input.professional_ids.as_deref(),
                        input.resource_ids.as_deref(),
                    )
                    .await?;
                    load_services(conn, Some(id.0), None)
                        .await?
                        .pop()
                        .ok_or(Error::NotFound { what: "service" })
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(service))
    }

    /// Rooms and equipment
    ///
    /// Permission: `resources:read`.
    #[oai(path = "/resources", method = "get", operation_id = "list_resources")]
    async fn list_resources(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<Resource>>> {
        let actor = kernel.authorize(&auth, &perm::RESOURCES_READ).await?;
        let list = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    resources::table
                        .order((resources::name, resources::id))
                        .select(Resource::as_select())
                        .load(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(list))
    }

    /// Add a room or a piece of equipment
    ///
    /// Permission: `resources:manage`.
    #[oai(path = "/resources", method = "post", operation_id = "create_resource")]
    async fn create_resource(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewResource>,
    ) -> ApiResult<ResourceCreated> {
        let actor = kernel.authorize(&auth, &perm::RESOURCES_MANAGE).await?;
        let mut f = Fields::default();
        let name = f.check("name", text(&body.0.name, 120, "1 to 120 characters"));
        let kind = f.check(
            "kind",
            if ["room", "equipment"].contains(&body.0.kind.as_str()) {
                Ok(body.0.kind.clone())
            } else {
                Err("room or equipment")
            },
        );
        f.finish()?;
        let (Some(name), Some(kind)) = (name, kind) else {
            return Err(Error::invalid("body", "invalid resource").into());
        };
        let tenant = actor.tenant_id;
        let id = Uuid::now_v7();
        let resource = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::insert_into(resources::table)
                        .values((
                            resources::tenant_id.eq(tenant),
                            resources::id.eq(id),
                            resources::name.eq(&name),
                            resources::kind.eq(&kind),
                        ))
                        .execute(conn)
                        .await?;
                    Ok::<_, Error>(Resource {
                        id,
                        name,
                        kind,
                        active: true,
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(ResourceCreated::Created(Json(resource)))
    }

    /// Rename or retire a room or piece of equipment
    ///
    /// Permission: `resources:manage`.
    #[oai(
        path = "/resources/:id",
        method = "patch",
        operation_id = "update_resource"
    )]
    async fn update_resource(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<ResourceUpdate>,
    ) -> ApiResult<Json<Resource>> {
        let actor = kernel.authorize(&auth, &perm::RESOURCES_MANAGE).await?;
        let name = body
            .0
            .name
            .map(|n| text(&n, 120, "1 to 120 characters").map_err(|m| Error::invalid("name", m)))
            .transpose()?;
        let active = body.0.active;
        let resource = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let target = resources::table.filter(resources::id.eq(id.0));
                    if let Some(name) = name {
                        diesel::update(target)
                            .set(resources::name.eq(name))
                            .execute(conn)
                            .await?;
                    }
                    if let Some(active) = active {
                        diesel::update(target)
                            .set(resources::active.eq(active))
                            .execute(conn)
                            .await?;
                    }
                    target
                        .select(Resource::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or(Error::NotFound { what: "resource" })
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(resource))
    }

    /// The clinic's scheduling rules
    ///
    /// Permission: `agenda_settings:read`.
    #[oai(
        path = "/agenda-settings",
        method = "get",
        operation_id = "get_agenda_settings"
    )]
    async fn get_agenda_settings(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<AgendaSettings>> {
        let actor = kernel.authorize(&auth, &perm::SETTINGS_READ).await?;
        let tenant = actor.tenant_id;
        let found = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move { settings(conn, tenant).await }.scope_boxed()
            })
            .await?;
        Ok(Json(found))
    }

    /// Change the clinic's scheduling rules
    ///
    /// Permission: `agenda_settings:manage`.
    #[oai(
        path = "/agenda-settings",
        method = "patch",
        operation_id = "update_agenda_settings"
    )]
    async fn update_agenda_settings(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<AgendaSettingsUpdate>,
    ) -> ApiResult<Json<AgendaSettings>> {
        let actor = kernel.authorize(&auth, &perm::SETTINGS_MANAGE).await?;
        let input = body.0;
        let mut f = Fields::default();
        let changes = SettingsChanges {
            granularity_minutes: input.granularity_minutes.and_then(|g| {
                f.check(
                    "granularity_minutes",
                    if [5, 10, 15, 20, 30, 60].contains(&g) {
                        Ok(g)
                    } else {
                        Err("one of 5, 10, 15, 20, 30, 60")
                    },
                )
            }),
            min_notice_minutes: input.min_notice_minutes.and_then(|v| {
                f.check(
                    "min_notice_minutes",
                    in_range(v, 0, 10080, "minutes, from 0 to 10080 (a week)"),
                )
            }),
            max_advance_days: input.max_advance_days.and_then(|v| {
                f.check(
                    "max_advance_days",
                    in_range(v, 1, 730, "days, from 1 to 730"),
                )
            }),
            feed_shows_patient_name: input.feed_shows_patient_name,
            updated_at: Utc::now(),
        };
        f.finish()?;
        let tenant = actor.tenant_id;
        let updated = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    settings(conn, tenant).await?;
                    diesel::update(agenda_settings::table.find(tenant))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    settings(conn, tenant).await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(updated))
    }
}

/// The demo clinic's services and a room.
pub async fn seed_demo(kernel: &Kernel, clinic: &DemoClinic) -> anyhow::Result<()> {
    let Some(professional) = clinic.member(harmony_core::rbac::Role::Professional) else {
        return Ok(());
    };
    let scope = harmony_core::db::TenantScope::clinic(clinic.tenant_id);
    let tenant = clinic.tenant_id;
    kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let existing: i64 = services::table.count().get_result(conn).await?;
                if existing > 0 {
                    return Ok(());
                }
                let room = Uuid::now_v7();
                diesel::insert_into(resources::table)
                    .values((
                        resources::tenant_id.eq(tenant),
                        resources::id.eq(room),
                        resources::name.eq("Sala de laser"),
                        resources::kind.eq("room"),
                    ))
                    .execute(conn)
                    .await?;
                let catalog = [
                    ("Limpeza de pele", "facial", 60, 15, 18_000_i64, None),
                    ("Toxina botulínica", "injectables", 30, 10, 120_000, None),
                    ("Depilação a laser", "laser", 45, 15, 25_000, Some(room)),
                    ("Consulta de avaliação", "consultation", 30, 0, 0, None),
                ];
                for (name, category, duration, buffer, price, needs) in catalog {
                    let id = Uuid::now_v7();
                    diesel::insert_into(services::table)
                        .values((
                            services::tenant_id.eq(tenant),
                            services::id.eq(id),
                            services::name.eq(name),
                            services::category.eq(category),
                            services::duration_minutes.eq(duration),
                            services::buffer_after_minutes.eq(buffer),
                            services::price_cents.eq(price),
                        ))
                        .execute(conn)
                        .await?;
                    let needs: Vec<Uuid> = needs.into_iter().collect();
                    link(conn, tenant, id, Some(&[professional]), Some(&needs)).await?;
                }
                crate::hours::seed_demo_hours(conn, tenant, professional).await
            }
            .scope_boxed()
        })
        .await?;
    Ok(())
}
