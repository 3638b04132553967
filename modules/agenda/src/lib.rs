//! The agenda module: the services catalog, rooms and equipment, working hours, time off
//! and the clinic's calendar of holidays.
//!
//! FIXME: booking and the appointment life cycle (the no-double-booking constraints are
//! already in the schema, and availability already counts appointments), recurring
//! series, the waitlist, events, the calendar feed and the service API are the next steps
//! of issue 4 and are not built yet.

mod availability;
mod catalog;
pub mod holidays;
mod hours;
mod schema;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use harmony_core::rbac::{Permission, Role};
use harmony_core::{Module, ModuleApi};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/agenda");

/// What each role may do with the agenda.
pub mod perm {
    use super::{Permission, Role};
    use Role::*;

    const EVERYONE: &[Role] = &[Owner, Admin, Professional, Receptionist, Finance, Assistant];
    const STAFF: &[Role] = &[Owner, Admin, Professional, Receptionist, Finance];
    const FRONT_DESK: &[Role] = &[Owner, Admin, Professional, Receptionist];
    const MANAGERS: &[Role] = &[Owner, Admin];

    const fn p(
        resource: &'static str,
        action: &'static str,
        granted_to: &'static [Role],
    ) -> Permission {
        Permission {
            resource,
            action,
            granted_to,
        }
    }

    pub const SERVICES_READ: Permission = p("services", "read", EVERYONE);
    pub const SERVICES_MANAGE: Permission = p("services", "manage", MANAGERS);
    pub const RESOURCES_READ: Permission = p("resources", "read", STAFF);
    pub const RESOURCES_MANAGE: Permission = p("resources", "manage", MANAGERS);
    pub const HOURS_READ: Permission = p("working_hours", "read", EVERYONE);
    /// Managers set anyone's hours; professionals set their own (checked in the handler).
    pub const HOURS_MANAGE: Permission =
        p("working_hours", "manage", &[Owner, Admin, Professional]);
    pub const TIME_OFF_READ: Permission = p("time_off", "read", FRONT_DESK);
    pub const TIME_OFF_MANAGE: Permission = p(
        "time_off",
        "manage",
        &[Owner, Admin, Professional, Receptionist],
    );
    pub const CALENDAR_READ: Permission = p("clinic_calendar", "read", EVERYONE);
    pub const CALENDAR_MANAGE: Permission = p("clinic_calendar", "manage", MANAGERS);
    pub const SETTINGS_READ: Permission = p("agenda_settings", "read", STAFF);
    pub const SETTINGS_MANAGE: Permission = p("agenda_settings", "manage", MANAGERS);
    pub const AVAILABILITY_READ: Permission = p("availability", "read", EVERYONE);

    pub const ALL: &[Permission] = &[
        SERVICES_READ,
        SERVICES_MANAGE,
        RESOURCES_READ,
        RESOURCES_MANAGE,
        HOURS_READ,
        HOURS_MANAGE,
        TIME_OFF_READ,
        TIME_OFF_MANAGE,
        CALENDAR_READ,
        CALENDAR_MANAGE,
        SETTINGS_READ,
        SETTINGS_MANAGE,
        AVAILABILITY_READ,
    ];
}

/// Tags of the module's operations.
#[derive(Debug, poem_openapi::Tags)]
pub enum AgendaTags {
    /// Services, resources, working hours, time off and the clinic's calendar.
    Agenda,
}

/// The agenda module.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgendaModule;

impl Module for AgendaModule {
    fn name(&self) -> &'static str {
        "agenda"
    }

    fn migrations(&self) -> Option<EmbeddedMigrations> {
        Some(MIGRATIONS)
    }

    fn permissions(&self) -> &'static [Permission] {
        perm::ALL
    }

    fn seed_demo<'a>(
        &'a self,
        kernel: &'a harmony_core::Kernel,
        clinic: &'a harmony_core::DemoClinic,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(catalog::seed_demo(kernel, clinic))
    }
}

impl ModuleApi for AgendaModule {
    type Api = (
        catalog::CatalogApi,
        hours::HoursApi,
        availability::AvailabilityApi,
    );

    fn api(&self) -> Self::Api {
        (
            catalog::CatalogApi,
            hours::HoursApi,
            availability::AvailabilityApi,
        )
    }
}
