//! The patients module's public service API: what other modules (the agenda, the WhatsApp
//! assistant, finance) may ask of it, inside their own tenant transaction. They never read
//! this module's tables.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::Actor;
use harmony_core::consent;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use uuid::Uuid;

use crate::domain::Phone;
use crate::records::{self, NewPatient};
use crate::schema::patients;

/// What other modules know of a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRef {
    pub id: Uuid,
    pub full_name: String,
    /// The first word of the name, or the nickname: how messages address them.
    pub first_name: String,
    /// `active` or `archived`.
    pub status: String,
}

fn reference(
    (id, full_name, nickname, status): (Uuid, String, Option<String>, String),
) -> PatientRef {
    let first_name = nickname.unwrap_or_else(|| {
        full_name
            .split_whitespace()
            .next()
            .unwrap_or(&full_name)
            .to_owned()
    });
    PatientRef {
        id,
        full_name,
        first_name,
        status,
    }
}

/// The patient with this id in the current clinic. Takes a shared connection so that it
/// can be pipelined.
pub async fn find_by_id(mut conn: &Conn, id: Uuid) -> Result<Option<PatientRef>, Error> {
    let row = patients::table
        .filter(patients::id.eq(id))
        .select((
            patients::id,
            patients::full_name,
            patients::nickname,
            patients::status,
        ))
        .first(&mut conn)
        .await
        .optional()?;
    Ok(row.map(reference))
}

/// The active patient with this phone (E.164, or a WhatsApp id, with or without the
/// ninth digit) in the current clinic; the most recently registered if several share it.
pub async fn find_by_phone(conn: &mut Conn, phone: &str) -> Result<Option<PatientRef>, Error> {
    let Ok(phone) = Phone::parse(phone) else {
        return Ok(None);
    };
    let row = patients::table
        .filter(patients::phone_e164.eq(&phone.e164))
        .filter(patients::status.eq("active"))
        .order(patients::created_at.desc())
        .select((
            patients::id,
            patients::full_name,
            patients::nickname,
            patients::status,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(reference))
}

/// Registers a patient with only a name and phone (the WhatsApp assistant's new
/// contacts). A patient with the same phone already registered is a 409 naming them.
pub async fn create_minimal(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    full_name: &str,
    phone: &str,
) -> Result<PatientRef, Error> {
    let input = NewPatient {
        full_name: full_name.to_owned(),
        nickname: None,
        cpf: None,
        email: None,
        phone: Some(phone.to_owned()),
        birth_date: None,
        gender: None,
        gender_description: None,
        address: None,
        referral_origin: None,
        notes: None,
        tags: None,
    };
    let changes = input.validate()?;
    if let Some(existing) = find_by_phone(conn, phone).await? {
        return Err(Error::Conflict {
            code: "phone_registered",
            detail: "a patient with this phone is already registered".into(),
            extra: Some(serde_json::json!({ "existing_id": existing.id })),
        });
    }
    let id = Uuid::now_v7();
    records::write(
        conn,
        kernel,
        actor.tenant_id,
        id,
        changes,
        Some(actor.user_id),
        true,
    )
    .await?;
    harmony_core::events::publish(
        conn,
        actor.tenant_id,
        "patient.created",
        &serde_json::json!({"patient_id": id}),
    )
    .await?;
    find_by_id(conn, id)
        .await?
        .ok_or(Error::NotFound { what: "patient" })
}

/// Whether the patient currently consents to `purpose` (e.g. `whatsapp_contact`): the
/// latest decision in the consent log. A revoked WhatsApp consent shows here at once.
pub async fn has_consent(conn: &mut Conn, patient: Uuid, purpose: &str) -> Result<bool, Error> {
    consent::is_granted(conn, "patient", patient, purpose).await
}

/// Destroys the patient's data key: their CPF, notes, guardians' CPF and photos become
/// unreadable for good, while the rest of the record keeps working. For the privacy
/// module's erasure.
pub async fn shred_personal_data(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    patient: Uuid,
) -> Result<(), Error> {
    if find_by_id(conn, patient).await?.is_none() {
        return Err(Error::NotFound { what: "patient" });
    }
    kernel.crypto.shred(conn, tenant, patient).await
}

/// Records a patient's decision about a purpose in the consent log (the WhatsApp
/// assistant: consent to be contacted given by writing in, withdrawn by "pare"). A minor's
/// consent is their guardian's to give: refused with a 409 for a patient under 18.
pub async fn record_consent(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    patient: Uuid,
    decision: ConsentDecision<'_>,
) -> Result<(), Error> {
    let birth: Option<Option<chrono::NaiveDate>> = patients::table
        .filter(patients::id.eq(patient))
        .select(patients::birth_date)
        .first(conn)
        .await
        .optional()?;
    let Some(birth) = birth else {
        return Err(Error::NotFound { what: "patient" });
    };
    let today = kernel.zones.today(conn, actor.tenant_id).await?;
    if decision.granted && birth.is_some_and(|b| crate::domain::age_on(b, today) < 18) {
        return Err(Error::conflict(
            "guardian_consent_required",
            "a minor's consent is recorded from their guardian, by the clinic",
        ));
    }
    consent::record(
        conn,
        actor,
        consent::ConsentEntry {
            subject_kind: "patient",
            subject_id: patient,
            purpose: decision.purpose,
            legal_basis: "consent",
            policy_version: decision.policy_version,
            granted: decision.granted,
            channel: decision.channel,
            evidence: decision.evidence,
        },
    )
    .await?;
    Ok(())
}

/// A consent decision another module records for a patient.
#[derive(Debug, Clone)]
pub struct ConsentDecision<'a> {
    /// E.g. `whatsapp_contact`.
    pub purpose: &'a str,
    pub granted: bool,
    pub policy_version: &'a str,
    /// E.g. `whatsapp`.
    pub channel: &'a str,
    /// What shows the decision, e.g. the id of the message that gave it.
    pub evidence: Option<serde_json::Value>,
}

/// The patient's phone in E.164 (`+5511987654321`), for messages the clinic sends first.
pub async fn contact_phone(conn: &mut Conn, patient: Uuid) -> Result<Option<String>, Error> {
    let phone: Option<Option<String>> = patients::table
        .filter(patients::id.eq(patient))
        .filter(patients::status.eq("active"))
        .select(patients::phone_e164)
        .first(conn)
        .await
        .optional()?;
    Ok(phone.flatten())
}
