//! The consent log: an append-only record of every consent given or withdrawn, per data
//! subject and purpose. The current state of a purpose is always derived from the log.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ipnet::IpNet;
use uuid::Uuid;

use crate::auth::Actor;
use crate::db::Conn;
use crate::error::Error;
use crate::schema::consent_records as cr;

/// One entry to append.
#[derive(Debug, Clone)]
pub struct ConsentEntry<'a> {
    /// E.g. `patient`.
    pub subject_kind: &'a str,
    pub subject_id: Uuid,
    /// E.g. `treatment_data`, `photos`, `whatsapp_contact`, `marketing`.
    pub purpose: &'a str,
    /// The LGPD legal basis, e.g. `consent` (art. 7 I) or `health_protection` (art. 11 II f).
    pub legal_basis: &'a str,
    pub policy_version: &'a str,
    pub granted: bool,
    /// E.g. `in_person`, `web`, `whatsapp`.
    pub channel: &'a str,
    pub evidence: Option<serde_json::Value>,
}

/// A recorded consent decision.
#[derive(Debug, Clone, Queryable, Selectable, poem_openapi::Object)]
#[diesel(table_name = cr)]
pub struct ConsentRecord {
    pub id: Uuid,
    pub subject_kind: String,
    pub subject_id: Uuid,
    pub purpose: String,
    pub legal_basis: String,
    pub policy_version: String,
    pub granted: bool,
    pub channel: String,
    pub recorded_at: DateTime<Utc>,
    #[oai(nullable)]
    pub recorded_by: Option<Uuid>,
}

/// Appends a consent decision, recorded by `actor`, in the caller's tenant transaction.
pub async fn record(
    conn: &mut Conn,
    actor: &Actor,
    entry: ConsentEntry<'_>,
) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    diesel::insert_into(cr::table)
        .values((
            cr::tenant_id.eq(actor.tenant_id),
            cr::id.eq(id),
            cr::subject_kind.eq(entry.subject_kind),
            cr::subject_id.eq(entry.subject_id),
            cr::purpose.eq(entry.purpose),
            cr::legal_basis.eq(entry.legal_basis),
            cr::policy_version.eq(entry.policy_version),
            cr::granted.eq(entry.granted),
            cr::channel.eq(entry.channel),
            cr::recorded_by.eq(actor.user_id),
            cr::ip.eq(actor.request.ip.map(IpNet::from)),
            cr::user_agent.eq(actor.request.user_agent.as_deref()),
            cr::evidence.eq(entry.evidence),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// The latest decision per purpose for one subject: the current state of their consents.
pub async fn current(
    conn: &mut Conn,
    subject_kind: &str,
    subject_id: Uuid,
) -> Result<Vec<ConsentRecord>, Error> {
    Ok(cr::table
        .filter(cr::subject_kind.eq(subject_kind))
        .filter(cr::subject_id.eq(subject_id))
        .distinct_on(cr::purpose)
        .order((cr::purpose, cr::recorded_at.desc(), cr::id.desc()))
        .select(ConsentRecord::as_select())
        .load(conn)
        .await?)
}

/// Every decision for one subject, newest first.
pub async fn history(
    conn: &mut Conn,
    subject_kind: &str,
    subject_id: Uuid,
) -> Result<Vec<ConsentRecord>, Error> {
    Ok(cr::table
        .filter(cr::subject_kind.eq(subject_kind))
        .filter(cr::subject_id.eq(subject_id))
        .order((cr::recorded_at.desc(), cr::id.desc()))
        .select(ConsentRecord::as_select())
        .load(conn)
        .await?)
}

/// Whether `purpose` is currently granted for the subject.
pub async fn is_granted(
    conn: &mut Conn,
    subject_kind: &str,
    subject_id: Uuid,
    purpose: &str,
) -> Result<bool, Error> {
    let latest: Option<bool> = cr::table
        .filter(cr::subject_kind.eq(subject_kind))
        .filter(cr::subject_id.eq(subject_id))
        .filter(cr::purpose.eq(purpose))
        .order((cr::recorded_at.desc(), cr::id.desc()))
        .select(cr::granted)
        .first(conn)
        .await
        .optional()?;
    Ok(latest.unwrap_or(false))
}
