//! The patients module: the patient registry, guardians of minors, consent per purpose,
//! profile photos, and the audited access to all of it.
//!
//! Other modules use [`service`] and never this module's tables.

mod api;
mod domain;
mod photos;
mod plugins;
mod records;
mod schema;
mod search;
pub mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use harmony_core::rbac::{Permission, Role};
use harmony_core::{Module, ModuleApi};

pub use domain::{Cpf, Phone};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/patients");

/// What each role may do with patients.
pub mod perm {
    use super::{Permission, Role};
    use Role::*;
    use harmony_core::rbac::permission as p;

    const CLINICAL: &[Role] = &[Owner, Admin, Professional];
    const FRONT_DESK: &[Role] = &[Owner, Admin, Professional, Receptionist];
    const MANAGERS: &[Role] = &[Owner, Admin];

    /// The full registration record (CPF, address, birth date...), without notes.
    pub const READ: Permission = p("patients", "read", FRONT_DESK);
    /// Name and contact only (finance).
    pub const READ_CONTACT: Permission = p(
        "patients",
        "read_contact",
        &[Owner, Admin, Professional, Receptionist, Finance],
    );
    pub const LIST: Permission = p(
        "patients",
        "list",
        &[Owner, Admin, Professional, Receptionist, Finance],
    );
    pub const CREATE: Permission = p("patients", "create", FRONT_DESK);
    pub const UPDATE: Permission = p("patients", "update", FRONT_DESK);
    pub const ARCHIVE: Permission = p("patients", "archive", FRONT_DESK);
    pub const READ_NOTES: Permission = p("patients", "read_notes", CLINICAL);
    pub const UPDATE_NOTES: Permission = p("patients", "update_notes", CLINICAL);
    /// Find a patient by phone: the WhatsApp assistant's way in.
    pub const LOOKUP: Permission = p(
        "patients",
        "lookup",
        &[Owner, Admin, Professional, Receptionist, Assistant],
    );
    /// Register a patient with only a name and phone.
    pub const CREATE_MINIMAL: Permission = p(
        "patients",
        "create_minimal",
        &[Owner, Admin, Professional, Receptionist, Assistant],
    );
    pub const PHOTO_READ: Permission = p("patient_photos", "read", FRONT_DESK);
    pub const PHOTO_UPLOAD: Permission = p("patient_photos", "upload", FRONT_DESK);
    pub const GUARDIANS_READ: Permission = p("guardians", "read", FRONT_DESK);
    pub const GUARDIANS_MANAGE: Permission = p("guardians", "manage", FRONT_DESK);
    pub const CONSENTS_READ: Permission = p("patient_consents", "read", FRONT_DESK);
    pub const CONSENTS_RECORD: Permission = p("patient_consents", "record", FRONT_DESK);
    pub const ACCESS_LOG_READ: Permission = p("patient_access_log", "read", MANAGERS);
    pub const ORIGINS_READ: Permission = p(
        "referral_origins",
        "read",
        &[Owner, Admin, Professional, Receptionist, Finance],
    );
    pub const ORIGINS_MANAGE: Permission = p("referral_origins", "manage", MANAGERS);

    pub const ALL: &[Permission] = &[
        READ,
        READ_CONTACT,
        LIST,
        CREATE,
        UPDATE,
        ARCHIVE,
        READ_NOTES,
        UPDATE_NOTES,
        LOOKUP,
        CREATE_MINIMAL,
        PHOTO_READ,
        PHOTO_UPLOAD,
        GUARDIANS_READ,
        GUARDIANS_MANAGE,
        CONSENTS_READ,
        CONSENTS_RECORD,
        ACCESS_LOG_READ,
        ORIGINS_READ,
        ORIGINS_MANAGE,
    ];
}

/// Tags of the module's operations.
#[derive(Debug, poem_openapi::Tags)]
pub enum PatientTags {
    /// The patient registry, guardians, consents and photos.
    Patients,
}

/// The patients module.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatientsModule;

impl Module for PatientsModule {
    fn name(&self) -> &'static str {
        "patients"
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
        Box::pin(records::seed_demo(kernel, clinic))
    }
}

impl ModuleApi for PatientsModule {
    type Api = (api::PatientsApi, photos::PhotosApi);

    fn api(&self) -> Self::Api {
        (api::PatientsApi, photos::PhotosApi)
    }
}
