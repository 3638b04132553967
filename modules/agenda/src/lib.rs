//! The agenda module: the services catalog, rooms and equipment, working hours, time off,
//! the clinic's calendar of holidays, availability, and appointments — booked without
//! double bookings (the database's exclusion constraints decide), with an explicit life
//! cycle, recurring series, a waitlist, outbox events, per-professional calendar feeds and
//! a service API for other modules ([`service`]).

mod appointments;
mod availability;
mod booking;
mod catalog;
mod feed;
pub mod holidays;
mod hours;
pub mod lifecycle;
mod plugins;
mod schema;
pub mod service;
mod waitlist;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use harmony_core::rbac::{Permission, Role};
use harmony_core::{Module, ModuleApi};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/agenda");

/// What each role may do with the agenda.
pub mod perm {
    use super::{Permission, Role};
    use Role::*;
    use harmony_core::rbac::permission as p;

    const EVERYONE: &[Role] = &[Owner, Admin, Professional, Receptionist, Finance, Assistant];
    const STAFF: &[Role] = &[Owner, Admin, Professional, Receptionist, Finance];
    const FRONT_DESK: &[Role] = &[Owner, Admin, Professional, Receptionist];
    const MANAGERS: &[Role] = &[Owner, Admin];
    const FRONT_DESK_AND_ASSISTANT: &[Role] =
        &[Owner, Admin, Professional, Receptionist, Assistant];

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
    /// The clinic's appointments, all of them.
    pub const APPOINTMENTS_READ: Permission = p("appointments", "read", STAFF);
    /// One patient's upcoming appointments (the assistant, for the patient it talks to).
    pub const APPOINTMENTS_READ_PATIENT: Permission = p("appointments", "read_patient", EVERYONE);
    pub const APPOINTMENTS_BOOK: Permission = p("appointments", "book", FRONT_DESK_AND_ASSISTANT);
    /// Confirm, cancel, reschedule.
    pub const APPOINTMENTS_CHANGE: Permission =
        p("appointments", "change", FRONT_DESK_AND_ASSISTANT);
    /// Check in, complete, no-show: what happens at the clinic.
    pub const APPOINTMENTS_ATTEND: Permission = p("appointments", "attend", FRONT_DESK);
    /// Book outside working hours.
    pub const APPOINTMENTS_OVERRIDE: Permission = p("appointments", "override_hours", FRONT_DESK);
    pub const WAITLIST_READ: Permission = p("waitlist", "read", FRONT_DESK);
    pub const WAITLIST_MANAGE: Permission = p("waitlist", "manage", FRONT_DESK_AND_ASSISTANT);
    /// Managers manage anyone's feed; professionals their own (checked in the handler).
    pub const FEEDS_MANAGE: Permission =
        p("calendar_feeds", "manage", &[Owner, Admin, Professional]);

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
        APPOINTMENTS_READ,
        APPOINTMENTS_READ_PATIENT,
        APPOINTMENTS_BOOK,
        APPOINTMENTS_CHANGE,
        APPOINTMENTS_ATTEND,
        APPOINTMENTS_OVERRIDE,
        WAITLIST_READ,
        WAITLIST_MANAGE,
        FEEDS_MANAGE,
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

    fn capabilities(&self) -> Vec<harmony_core::plugins::Capability> {
        plugins::capabilities()
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
        appointments::AppointmentsApi,
        waitlist::WaitlistApi,
        feed::FeedApi,
    );

    fn api(&self) -> Self::Api {
        (
            catalog::CatalogApi,
            hours::HoursApi,
            availability::AvailabilityApi,
            appointments::AppointmentsApi,
            waitlist::WaitlistApi,
            feed::FeedApi,
        )
    }
}
