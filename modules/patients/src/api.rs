//! `/api/v1/patients` and its sub-resources: the registry, search, guardians, consents,
//! the access log, referral origins, and the assistant's lookup.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::audit::{self, Access, AuditEvent};
use harmony_core::auth::{Actor, BearerAuth};
use harmony_core::consent::{self, ConsentEntry, ConsentRecord};
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use harmony_core::http::pagination::{decode_cursor, page_size, paginate};
use harmony_core::rbac::Permission;
use harmony_core::schema::audit_events as ae;
use harmony_core::validate::Fields;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::domain::{self, Cpf, Phone, search_form};
use crate::records::{self, Address, NewPatient, PatientRow, PatientUpdate};
use crate::schema::{
    guardians, patient_keys as data_keys, patient_search_terms, patients, referral_origins,
};
use crate::search::{search_by_name, term_matches};
use crate::{PatientTags, perm};
use harmony_core::http::JsonBody;

/// A patient record. Fields the caller's role may not see are `null`; `view` says which
/// view this is.
#[derive(Debug, Object)]
pub struct Patient {
    pub id: Uuid,
    /// `full` (registration data), `clinical` (with notes) or `contact` (name and contact
    /// only).
    pub view: String,
    pub full_name: String,
    #[oai(nullable)]
    pub nickname: Option<String>,
    /// `000.000.000-00`.
    #[oai(nullable)]
    pub cpf: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    /// As it was typed.
    #[oai(nullable)]
    pub phone: Option<String>,
    /// E.164, e.g. `+5511912345678`.
    #[oai(nullable)]
    pub phone_e164: Option<String>,
    /// The WhatsApp id of the phone, e.g. `5511912345678`.
    #[oai(nullable)]
    pub whatsapp_id: Option<String>,
    #[oai(nullable)]
    pub birth_date: Option<NaiveDate>,
    /// Age in the clinic's time zone today.
    #[oai(nullable)]
    pub age: Option<i32>,
    /// Under 18: consents are given by a guardian.
    pub minor: bool,
    #[oai(nullable)]
    pub gender: Option<String>,
    #[oai(nullable)]
    pub gender_description: Option<String>,
    #[oai(nullable)]
    pub address: Option<Address>,
    #[oai(nullable)]
    pub referral_origin: Option<String>,
    #[oai(nullable)]
    pub photo_id: Option<Uuid>,
    #[oai(nullable)]
    pub notes: Option<String>,
    pub tags: Vec<String>,
    /// `active` or `archived`.
    pub status: String,
    /// The patient's personal data was erased (their key destroyed): CPF and notes are
    /// gone for good.
    pub erased: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A patient in a list.
#[derive(Debug, Object)]
pub struct PatientSummary {
    pub id: Uuid,
    pub full_name: String,
    #[oai(nullable)]
    pub nickname: Option<String>,
    #[oai(nullable)]
    pub phone: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    #[oai(nullable)]
    pub birth_date: Option<NaiveDate>,
    pub tags: Vec<String>,
    pub status: String,
    #[oai(nullable)]
    pub photo_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct PatientPage {
    pub items: Vec<PatientSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<Patient>),
}

/// A patient registered by the assistant with only a name and phone.
#[derive(Debug, Object)]
pub struct MinimalPatient {
    pub full_name: String,
    pub phone: String,
}

/// What the assistant may learn about a patient found by phone.
#[derive(Debug, Object)]
pub struct PatientHandle {
    pub id: Uuid,
    pub first_name: String,
}

#[derive(Debug, ApiResponse)]
pub enum HandleCreated {
    #[oai(status = 201)]
    Created(Json<PatientHandle>),
}

#[derive(Debug, Object)]
pub struct AccessLogPage {
    pub items: Vec<AuditEvent>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// A legal guardian of a minor.
#[derive(Debug, Object)]
pub struct Guardian {
    pub id: Uuid,
    pub name: String,
    /// `000.000.000-00`; `null` once the patient's data was erased.
    #[oai(nullable)]
    pub cpf: Option<String>,
    pub phone: String,
    /// `mother`, `father`, `legal_guardian`, `grandparent`, `sibling` or `other`.
    pub relationship: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct NewGuardian {
    pub name: String,
    pub cpf: String,
    pub phone: String,
    pub relationship: String,
}

#[derive(Debug, ApiResponse)]
pub enum GuardianCreated {
    #[oai(status = 201)]
    Created(Json<Guardian>),
}

#[derive(Debug, ApiResponse)]
pub enum Removed {
    #[oai(status = 204)]
    Removed,
}

const RELATIONSHIPS: [&str; 6] = [
    "mother",
    "father",
    "legal_guardian",
    "grandparent",
    "sibling",
    "other",
];
const PURPOSES: [&str; 4] = ["treatment_data", "photos", "whatsapp_contact", "marketing"];
const LEGAL_BASES: [&str; 5] = [
    "consent",
    "health_protection",
    "legal_obligation",
    "contract",
    "legitimate_interest",
];
const CHANNELS: [&str; 5] = ["in_person", "paper", "web", "whatsapp", "phone"];

/// A consent decision to record.
#[derive(Debug, Object)]
pub struct NewConsent {
    /// `treatment_data`, `photos`, `whatsapp_contact` or `marketing`.
    pub purpose: String,
    /// For `photos`: limit the decision to one photo; absent means every photo.
    #[oai(nullable)]
    pub photo_id: Option<Uuid>,
    /// `true` to grant, `false` to revoke.
    pub granted: bool,
    /// The version of the privacy policy the patient was shown.
    pub policy_version: String,
    /// `in_person`, `paper`, `web`, `whatsapp` or `phone`.
    pub channel: String,
    /// LGPD legal basis; defaults to `consent`.
    #[oai(nullable)]
    pub legal_basis: Option<String>,
    /// Required for minors: the guardian who decides for them.
    #[oai(nullable)]
    pub guardian_id: Option<Uuid>,
    /// Free-form evidence (e.g. a signed form's reference).
    #[oai(nullable)]
    pub evidence: Option<serde_json::Value>,
}

/// The state of each purpose, derived from the log, and the log itself.
#[derive(Debug, Object)]
pub struct Consents {
    /// The latest decision per purpose.
    pub current: Vec<ConsentRecord>,
    /// Every decision, newest first.
    pub history: Vec<ConsentRecord>,
}

#[derive(Debug, ApiResponse)]
pub enum ConsentCreated {
    #[oai(status = 201)]
    Created(Json<ConsentRecord>),
}

/// Where the clinic's patients come from.
#[derive(Debug, Object, Queryable, Selectable)]
#[diesel(table_name = referral_origins)]
pub struct ReferralOrigin {
    pub code: String,
    pub label: String,
    pub active: bool,
}

#[derive(Debug, Object)]
pub struct NewReferralOrigin {
    /// Lower-case letters, digits and `_`; derived from the label when absent.
    #[oai(nullable)]
    pub code: Option<String>,
    pub label: String,
}

#[derive(Debug, Object)]
pub struct ReferralOriginUpdate {
    #[oai(nullable)]
    pub label: Option<String>,
    #[oai(nullable)]
    pub active: Option<bool>,
}

#[derive(Debug, ApiResponse)]
pub enum OriginCreated {
    #[oai(status = 201)]
    Created(Json<ReferralOrigin>),
}

/// What a caller may see of a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Contact,
    Full,
    Clinical,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Contact => "contact",
            View::Full => "full",
            View::Clinical => "clinical",
        }
    }
}

async fn view_of(kernel: &Kernel, auth: &BearerAuth) -> Result<(Actor, View), Error> {
    let a = &auth.0;
    let allowed = |p: &'static Permission| kernel.rbac.is_allowed(a.tenant_id, a.user_id, p);
    if allowed(&perm::READ).await {
        let view = if allowed(&perm::READ_NOTES).await {
            View::Clinical
        } else {
            View::Full
        };
        return Ok((a.clone(), view));
    }
    let actor = kernel.authorize(auth, &perm::READ_CONTACT).await?;
    Ok((actor, View::Contact))
}

fn not_found() -> Error {
    Error::NotFound { what: "patient" }
}

/// The audit records of reading a patient's record in `view`.
fn read_accesses(id: Uuid, view: View) -> Vec<Access<'static>> {
    let access = |resource| Access {
        subject_kind: Some("patient"),
        subject_id: Some(id),
        resource,
        action: "read",
    };
    if view == View::Clinical {
        vec![access("patient"), access("patient.notes")]
    } else {
        vec![access("patient")]
    }
}

/// Loads one patient and renders it for `view`, writing the audit events of the read in
/// the same (write) transaction.
///
/// The row, the patient's key and the audit insert go to PostgreSQL together (pipelined);
/// if the patient does not exist the transaction, audit rows included, is rolled back.
async fn read_patient(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    id: Uuid,
    view: View,
) -> Result<Patient, Error> {
    let shared: &Conn = conn;
    let accesses = read_accesses(id, view);
    let (patient, ()) = futures::try_join!(
        load_patient(shared, kernel, actor, id, view),
        audit::record_all(shared, actor, &accesses)
    )?;
    Ok(patient)
}

/// Loads one patient and renders it for `view`; records nothing.
async fn load_patient(
    shared: &Conn,
    kernel: &Kernel,
    actor: &Actor,
    id: Uuid,
    view: View,
) -> Result<Patient, Error> {
    // The row and the patient's wrapped data key in one query.
    let row = async {
        let mut c = shared;
        patients::table
            .left_join(
                data_keys::table.on(data_keys::tenant_id
                    .eq(patients::tenant_id)
                    .and(data_keys::subject_id.eq(patients::id))),
            )
            .filter(patients::id.eq(id))
            .select((PatientRow::as_select(), data_keys::wrapped_key.nullable()))
            .first::<(PatientRow, Option<Vec<u8>>)>(&mut c)
            .await
            .optional()
            .map_err(Error::from)
    };
    let today = kernel.zones.today(shared, actor.tenant_id);
    let (row, today) = futures::try_join!(row, today)?;
    let (row, wrapped) = row.ok_or_else(not_found)?;
    let cipher = if view == View::Contact {
        None
    } else {
        kernel
            .crypto
            .open_wrapped(shared, actor.tenant_id, id, wrapped)
            .await?
    };

    let encrypted = row.cpf_cipher.is_some() || row.notes_cipher.is_some();
    let erased = view != View::Contact && encrypted && cipher.is_none();
    let (cpf, notes) = records::decrypt(&row, cipher.as_ref())?;
    Ok(render(row, view, cpf, notes, erased, today))
}

fn render(
    row: PatientRow,
    view: View,
    cpf: Option<String>,
    notes: Option<String>,
    erased: bool,
    today: NaiveDate,
) -> Patient {
    let age = row.birth_date.map(|b| domain::age_on(b, today));
    let full = view != View::Contact;
    let whatsapp_id = row
        .phone_e164
        .as_ref()
        .map(|p| p.trim_start_matches('+').to_owned());
    let address = Address {
        cep: row.address_cep,
        street: row.address_street,
        number: row.address_number,
        complement: row.address_complement,
        district: row.address_district,
        city: row.address_city,
        state: row.address_state,
    };
    Patient {
        id: row.id,
        view: view.name().into(),
        full_name: row.full_name,
        nickname: row.nickname,
        cpf: cpf.filter(|_| full),
        email: row.email,
        phone: row.phone,
        phone_e164: row.phone_e164,
        whatsapp_id,
        birth_date: row.birth_date.filter(|_| full),
        age: age.filter(|_| full),
        minor: age.is_some_and(|a| a < 18),
        gender: row.gender.filter(|_| full),
        gender_description: row.gender_description.filter(|_| full),
        address: full.then_some(address),
        referral_origin: row.referral_origin.filter(|_| full),
        photo_id: row.photo_id.filter(|_| full),
        notes: notes.filter(|_| view == View::Clinical),
        tags: if full { row.tags } else { Vec::new() },
        status: row.status,
        erased,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Fails with 404 unless the patient exists in the caller's clinic.
async fn ensure_patient(conn: &mut Conn, id: Uuid) -> Result<(), Error> {
    let found: bool = diesel::select(diesel::dsl::exists(
        patients::table.filter(patients::id.eq(id)),
    ))
    .get_result(conn)
    .await?;
    if found { Ok(()) } else { Err(not_found()) }
}

/// Finds a possible duplicate: the same CPF, or the same name and birth date.
async fn find_duplicate(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    changes: &records::Changes,
) -> Result<Option<Uuid>, Error> {
    if let Some(Some(cpf)) = &changes.cpf {
        let index = kernel
            .crypto
            .blind_index(conn, tenant, records::CPF_INDEX, cpf.digits().as_bytes())
            .await?;
        let found = patients::table
            .filter(patients::cpf_index.eq(index))
            .select(patients::id)
            .first::<Uuid>(conn)
            .await
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let (Some(name), Some(Some(birth))) = (&changes.full_name, &changes.birth_date) {
        let found = patients::table
            .filter(patients::full_name.eq(name))
            .filter(patients::birth_date.eq(birth))
            .select(patients::id)
            .first::<Uuid>(conn)
            .await
            .optional()?;
        return Ok(found);
    }
    Ok(None)
}

fn duplicate(existing: Uuid) -> Error {
    Error::Conflict {
        code: "possible_duplicate",
        detail: "a patient with the same CPF, or the same name and birth date, already exists; \
                 use it, or repeat with allow_duplicate=true"
            .into(),
        extra: Some(serde_json::json!({ "existing_id": existing })),
    }
}

/// The sort orders a list accepts.
const SORTS: [&str; 4] = ["name", "-name", "created_at", "-created_at"];

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ListCursor {
    pub(crate) sort: String,
    pub(crate) name: Option<String>,
    pub(crate) at: Option<DateTime<Utc>>,
    pub(crate) id: Uuid,
}

/// A page of the patient list from its rows (one more than `limit` if there are more).
fn page_of(rows: Vec<PatientRow>, limit: i64, sort: &str) -> PatientPage {
    let (items, next_cursor) = paginate(
        rows,
        limit,
        |r: &PatientRow| ListCursor {
            sort: sort.to_owned(),
            name: sort.ends_with("name").then(|| r.search_text.clone()),
            at: sort.ends_with("created_at").then_some(r.created_at),
            id: r.id,
        },
        |r| PatientSummary {
            id: r.id,
            full_name: r.full_name,
            nickname: r.nickname,
            phone: r.phone,
            email: r.email,
            birth_date: r.birth_date,
            tags: r.tags,
            status: r.status,
            photo_id: r.photo_id,
            created_at: r.created_at,
        },
    );
    PatientPage { items, next_cursor }
}

#[derive(Debug, Clone, Copy)]
pub struct PatientsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "PatientTags::Patients")]
impl PatientsApi {
    /// Register a patient
    ///
    /// A patient with the same CPF, or the same name and birth date, is a 409
    /// `possible_duplicate` naming the existing id, unless `allow_duplicate=true`.
    ///
    /// Permission: `patients:create`.
    #[oai(path = "/patients", method = "post", operation_id = "create_patient")]
    async fn create_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewPatient>,
        /// Register even if a possible duplicate exists.
        allow_duplicate: Query<Option<bool>>,
    ) -> ApiResult<Created> {
        let actor = kernel.authorize(&auth, &perm::CREATE).await?;
        let can_note = kernel
            .rbac
            .is_allowed(actor.tenant_id, actor.user_id, &perm::UPDATE_NOTES)
            .await;
        let changes = body.0.validate()?;
        if changes.notes.as_ref().is_some_and(Option::is_some) && !can_note {
            return Err(Error::forbidden(
                "notes_forbidden",
                "your role may not write clinical notes",
            )
            .into());
        }
        let id = Uuid::now_v7();
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let insist = allow_duplicate.0.unwrap_or(false);
        let patient = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    if !insist
                        && let Some(existing) =
                            find_duplicate(conn, kernel_ref, actor_ref.tenant_id, &changes).await?
                    {
                        return Err(duplicate(existing));
                    }
                    records::write(
                        conn,
                        kernel_ref,
                        actor_ref.tenant_id,
                        id,
                        changes,
                        Some(actor_ref.user_id),
                        true,
                    )
                    .await?;
                    harmony_core::events::publish(
                        conn,
                        actor_ref.tenant_id,
                        "patient.created",
                        &serde_json::json!({"patient_id": id}),
                    )
                    .await?;
                    read_patient(
                        conn,
                        kernel_ref,
                        actor_ref,
                        id,
                        if can_note { View::Clinical } else { View::Full },
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Created::Created(Json(patient)))
    }

    /// Find patients
    ///
    /// `q` matches name and nickname, ignoring case and accents; `cpf` and `phone` match
    /// exactly. One audit event is written per page.
    ///
    /// Permission: `patients:list`.
    #[oai(path = "/patients", method = "get", operation_id = "list_patients")]
    #[expect(clippy::too_many_arguments, reason = "one argument per filter")]
    async fn list_patients(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        #[oai(validator(max_length = 200))] q: Query<Option<String>>,
        #[oai(validator(max_length = 20))] cpf: Query<Option<String>>,
        #[oai(validator(max_length = 30))] phone: Query<Option<String>>,
        #[oai(validator(max_length = 40))] tag: Query<Option<String>>,
        /// 1 to 12.
        birthday_month: Query<Option<i32>>,
        /// `active` (default), `archived` or `all`.
        status: Query<Option<String>>,
        /// `name` (default), `-name`, `created_at` or `-created_at`.
        sort: Query<Option<String>>,
        /// Page size, 1 to 200 (default 50).
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<PatientPage>> {
        let actor = kernel.authorize(&auth, &perm::LIST).await?;
        let limit = page_size(limit.0)?;
        let sort = sort.0.unwrap_or_else(|| "name".into());
        if !SORTS.contains(&sort.as_str()) {
            return Err(Error::invalid_query(
                "sort",
                "one of name, -name, created_at, -created_at",
            )
            .into());
        }
        let status = status.0.unwrap_or_else(|| "active".into());
        if !["active", "archived", "all"].contains(&status.as_str()) {
            return Err(Error::invalid_query("status", "one of active, archived, all").into());
        }
        if birthday_month.0.is_some_and(|m| !(1..=12).contains(&m)) {
            return Err(
                Error::invalid_query("birthday_month", "a month number from 1 to 12").into(),
            );
        }
        let cpf = cpf
            .0
            .map(|c| Cpf::parse(&c).map_err(|m| Error::invalid_query("cpf", m)))
            .transpose()?;
        let phone = phone
            .0
            .map(|p| Phone::parse(&p).map_err(|m| Error::invalid_query("phone", m)))
            .transpose()?;
        let after: Option<ListCursor> = decode_cursor(cursor.0.as_deref())?;
        if after.as_ref().is_some_and(|c| c.sort != sort) {
            return Err(
                Error::invalid_query("cursor", "a cursor from a list with the same sort").into(),
            );
        }
        let words: Vec<String> =
            q.0.map(|q| search_form(&q))
                .unwrap_or_default()
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
        let fast = !words.is_empty()
            && cpf.is_none()
            && phone.is_none()
            && tag.0.is_none()
            && birthday_month.0.is_none()
            && sort.ends_with("name");
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let sort_ref = sort.clone();
        let listed = Access {
            subject_kind: Some("patient"),
            subject_id: None,
            resource: "patient",
            action: "list",
        };
        if fast {
            // Reads only: no transaction; the page's audit event goes through the journal.
            let rows = kernel
                .db
                .tenant_read(actor.scope(), |conn| {
                    async move {
                        search_by_name(conn, &words, &status, &sort_ref, after.as_ref(), limit)
                            .await
                    }
                    .scope_boxed()
                })
                .await?;
            kernel.audit.reads(&actor, &[listed]).await?;
            return Ok(Json(page_of(rows, limit, &sort)));
        }
        let rows = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let mut query = patients::table.select(PatientRow::as_select()).into_boxed();
                    if status != "all" {
                        query = query.filter(patients::status.eq(status));
                    }
                    for word in &words {
                        query = query.filter(patients::id.eq_any(term_matches(word)));
                    }
                    if let Some(cpf) = cpf {
                        let index = kernel_ref
                            .crypto
                            .blind_index(
                                conn,
                                actor_ref.tenant_id,
                                records::CPF_INDEX,
                                cpf.digits().as_bytes(),
                            )
                            .await?;
                        query = query.filter(patients::cpf_index.eq(index));
                    }
                    if let Some(phone) = phone {
                        query = query.filter(patients::phone_e164.eq(phone.e164));
                    }
                    if let Some(tag) = tag.0 {
                        query = query.filter(patients::tags.contains(vec![tag]));
                    }
                    if let Some(month) = birthday_month.0 {
                        query = query.filter(
                            diesel::dsl::sql::<Bool>("extract(month FROM birth_date) = ")
                                .bind::<Integer, _>(month),
                        );
                    }
                    query = match (sort_ref.as_str(), after) {
                        ("name", Some(c)) => {
                            let n = c.name.unwrap_or_default();
                            query.filter(
                                patients::search_text
                                    .gt(n.clone())
                                    .or(patients::search_text.eq(n).and(patients::id.gt(c.id))),
                            )
                        }
                        ("-name", Some(c)) => {
                            let n = c.name.unwrap_or_default();
                            query.filter(
                                patients::search_text
                                    .lt(n.clone())
                                    .or(patients::search_text.eq(n).and(patients::id.lt(c.id))),
                            )
                        }
                        ("created_at", Some(c)) => {
                            let at = c.at.unwrap_or_default();
                            query.filter(
                                patients::created_at
                                    .gt(at)
                                    .or(patients::created_at.eq(at).and(patients::id.gt(c.id))),
                            )
                        }
                        ("-created_at", Some(c)) => {
                            let at = c.at.unwrap_or_default();
                            query.filter(
                                patients::created_at
                                    .lt(at)
                                    .or(patients::created_at.eq(at).and(patients::id.lt(c.id))),
                            )
                        }
                        _ => query,
                    };
                    query = match sort_ref.as_str() {
                        "-name" => query.order((patients::search_text.desc(), patients::id.desc())),
                        "created_at" => {
                            query.order((patients::created_at.asc(), patients::id.asc()))
                        }
                        "-created_at" => {
                            query.order((patients::created_at.desc(), patients::id.desc()))
                        }
                        _ => query.order((patients::search_text.asc(), patients::id.asc())),
                    };
                    let rows: Vec<PatientRow> = query.limit(limit + 1).load(conn).await?;
                    audit::record(conn, actor_ref, listed).await?;
                    Ok::<_, Error>(rows)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(page_of(rows, limit, &sort)))
    }

    /// One patient
    ///
    /// Writes an audit event, committed before the record is sent. Receptionists get the
    /// record without notes; finance gets name and contact only.
    ///
    /// Permission: `patients:read` or `patients:read_contact`.
    #[oai(path = "/patients/:id", method = "get", operation_id = "get_patient")]
    async fn get_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Patient>> {
        let (actor, view) = view_of(&kernel, &auth).await?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let patient = kernel
            .db
            .tenant_read(actor.scope(), |conn| {
                async move { load_patient(conn, kernel_ref, actor_ref, id.0, view).await }
                    .scope_boxed()
            })
            .await?;
        kernel
            .audit
            .reads(&actor, &read_accesses(id.0, view))
            .await?;
        Ok(Json(patient))
    }

    /// Change a patient
    ///
    /// Permission: `patients:update`.
    #[oai(
        path = "/patients/:id",
        method = "patch",
        operation_id = "update_patient"
    )]
    async fn update_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<PatientUpdate>,
    ) -> ApiResult<Json<Patient>> {
        let actor = kernel.authorize(&auth, &perm::UPDATE).await?;
        let changes = body.0.validate()?;
        let clinical = kernel
            .rbac
            .is_allowed(actor.tenant_id, actor.user_id, &perm::UPDATE_NOTES)
            .await;
        if changes.touches_notes() && !clinical {
            return Err(Error::forbidden(
                "notes_forbidden",
                "your role may not write clinical notes",
            )
            .into());
        }
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let view = if clinical { View::Clinical } else { View::Full };
        let patient = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_patient(conn, id.0).await?;
                    records::write(
                        conn,
                        kernel_ref,
                        actor_ref.tenant_id,
                        id.0,
                        changes,
                        None,
                        false,
                    )
                    .await?;
                    read_patient(conn, kernel_ref, actor_ref, id.0, view).await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(patient))
    }

    /// Archive a patient
    ///
    /// Archived patients leave the default list; nothing is deleted.
    ///
    /// Permission: `patients:archive`.
    #[oai(
        path = "/patients/:id/archive",
        method = "post",
        operation_id = "archive_patient"
    )]
    async fn archive_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Patient>> {
        self.set_status(&kernel, &auth, id.0, "archived").await
    }

    /// Bring an archived patient back
    ///
    /// Permission: `patients:archive`.
    #[oai(
        path = "/patients/:id/unarchive",
        method = "post",
        operation_id = "unarchive_patient"
    )]
    async fn unarchive_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Patient>> {
        self.set_status(&kernel, &auth, id.0, "active").await
    }

    /// Who accessed this patient's data
    ///
    /// Newest first; the answer to a patient's "who saw my data".
    ///
    /// Permission: `patient_access_log:read`.
    #[oai(
        path = "/patients/:id/access-log",
        method = "get",
        operation_id = "get_patient_access_log"
    )]
    async fn get_patient_access_log(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AccessLogPage>> {
        let actor = kernel.authorize(&auth, &perm::ACCESS_LOG_READ).await?;
        let limit = page_size(limit.0)?;
        let after: Option<(DateTime<Utc>, Uuid)> = decode_cursor(cursor.0.as_deref())?;
        let rows = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_patient(conn, id.0).await?;
                    let mut query = ae::table
                        .filter(ae::subject_id.eq(id.0))
                        .select(AuditEvent::as_select())
                        .into_boxed();
                    if let Some((at, last)) = after {
                        query = query.filter(
                            ae::occurred_at
                                .lt(at)
                                .or(ae::occurred_at.eq(at).and(ae::id.lt(last))),
                        );
                    }
                    query
                        .order((ae::occurred_at.desc(), ae::id.desc()))
                        .limit(limit + 1)
                        .load::<AuditEvent>(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        let (items, next_cursor) = paginate(rows, limit, |e| (e.occurred_at, e.id), |e| e);
        Ok(Json(AccessLogPage { items, next_cursor }))
    }

    /// Find a patient by phone
    ///
    /// For the WhatsApp assistant: answers the patient's id and first name only. Numbers
    /// with or without +55 and the ninth digit match the same patient.
    ///
    /// Permission: `patients:lookup`.
    #[oai(
        path = "/patient-lookup",
        method = "get",
        operation_id = "lookup_patient"
    )]
    async fn lookup_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        #[oai(validator(max_length = 30))] phone: Query<String>,
    ) -> ApiResult<Json<PatientHandle>> {
        let actor = kernel.authorize(&auth, &perm::LOOKUP).await?;
        let phone = Phone::parse(&phone.0).map_err(|m| Error::invalid_query("phone", m))?;
        let actor_ref = &actor;
        let found = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let found = crate::service::find_by_phone(conn, &phone.e164).await?;
                    if let Some(handle) = &found {
                        let access = Access {
                            subject_kind: Some("patient"),
                            subject_id: Some(handle.id),
                            resource: "patient",
                            action: "lookup",
                        };
                        audit::record(conn, actor_ref, access).await?;
                    }
                    Ok::<_, Error>(found)
                }
                .scope_boxed()
            })
            .await?;
        let handle = found.ok_or_else(not_found)?;
        Ok(Json(PatientHandle {
            id: handle.id,
            first_name: handle.first_name,
        }))
    }

    /// Register a patient with a name and phone only
    ///
    /// For the WhatsApp assistant. A patient with the same phone is a 409 naming them.
    ///
    /// Permission: `patients:create_minimal`.
    #[oai(
        path = "/patients/minimal",
        method = "post",
        operation_id = "create_minimal_patient"
    )]
    async fn create_minimal_patient(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<MinimalPatient>,
    ) -> ApiResult<HandleCreated> {
        let actor = kernel.authorize(&auth, &perm::CREATE_MINIMAL).await?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let MinimalPatient { full_name, phone } = body.0;
        let handle = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    crate::service::create_minimal(conn, kernel_ref, actor_ref, &full_name, &phone)
                        .await
                }
                .scope_boxed()
            })
            .await?;
        Ok(HandleCreated::Created(Json(handle_of(handle))))
    }

    /// A patient's guardians
    ///
    /// Permission: `guardians:read`.
    #[oai(
        path = "/patients/:id/guardians",
        method = "get",
        operation_id = "list_guardians"
    )]
    async fn list_guardians(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Vec<Guardian>>> {
        let actor = kernel.authorize(&auth, &perm::GUARDIANS_READ).await?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let list = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_patient(conn, id.0).await?;
                    let rows: Vec<(Uuid, String, Vec<u8>, String, String, DateTime<Utc>)> =
                        guardians::table
                            .filter(guardians::patient_id.eq(id.0))
                            .filter(guardians::removed_at.is_null())
                            .order(guardians::created_at)
                            .select((
                                guardians::id,
                                guardians::name,
                                guardians::cpf_cipher,
                                guardians::phone,
                                guardians::relationship,
                                guardians::created_at,
                            ))
                            .load(conn)
                            .await?;
                    let cipher = kernel_ref
                        .crypto
                        .open_subject(conn, actor_ref.tenant_id, id.0)
                        .await?;
                    let access = Access {
                        subject_kind: Some("patient"),
                        subject_id: Some(id.0),
                        resource: "patient.guardians",
                        action: "read",
                    };
                    audit::record(conn, actor_ref, access).await?;
                    rows.into_iter()
                        .map(|(gid, name, cpf, phone, relationship, created_at)| {
                            let cpf = cipher
                                .as_ref()
                                .map(|c| c.decrypt_text(&guardian_field(gid), &cpf))
                                .transpose()?
                                .and_then(|d| Cpf::parse(&d).ok().map(|c| c.formatted()));
                            Ok(Guardian {
                                id: gid,
                                name,
                                cpf,
                                phone,
                                relationship,
                                created_at,
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(list))
    }

    /// Add a guardian
    ///
    /// Permission: `guardians:manage`.
    #[oai(
        path = "/patients/:id/guardians",
        method = "post",
        operation_id = "add_guardian"
    )]
    async fn add_guardian(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<NewGuardian>,
    ) -> ApiResult<GuardianCreated> {
        let actor = kernel.authorize(&auth, &perm::GUARDIANS_MANAGE).await?;
        let NewGuardian {
            name,
            cpf,
            phone,
            relationship,
        } = body.0;
        let mut f = Fields::default();
        let name = f.check(
            "name",
            harmony_core::validate::text(&name, 200, true).and_then(|n| {
                if n.is_empty() {
                    Err("the guardian's name")
                } else {
                    Ok(n)
                }
            }),
        );
        let cpf = f.check("cpf", Cpf::parse(&cpf));
        let phone = f.check("phone", Phone::parse(&phone));
        f.check(
            "relationship",
            if RELATIONSHIPS.contains(&relationship.as_str()) {
                Ok(())
            } else {
                Err("one of mother, father, legal_guardian, grandparent, sibling, other")
            },
        );
        f.finish()?;
        let (Some(name), Some(cpf), Some(phone)) = (name, cpf, phone) else {
            return Err(Error::invalid("body", "invalid guardian").into());
        };
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let guardian = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_patient(conn, id.0).await?;
                    let cipher = kernel_ref
                        .crypto
                        .subject(conn, actor_ref.tenant_id, id.0)
                        .await?
                        .ok_or_else(records::erased)?;
                    let gid = Uuid::now_v7();
                    let created_at: DateTime<Utc> = diesel::insert_into(guardians::table)
                        .values((
                            guardians::tenant_id.eq(actor_ref.tenant_id),
                            guardians::id.eq(gid),
                            guardians::patient_id.eq(id.0),
                            guardians::name.eq(&name),
                            guardians::cpf_cipher
                                .eq(cipher.encrypt(&guardian_field(gid), cpf.digits().as_bytes())),
                            guardians::phone.eq(&phone.typed),
                            guardians::phone_e164.eq(&phone.e164),
                            guardians::relationship.eq(&relationship),
                        ))
                        .returning(guardians::created_at)
                        .get_result(conn)
                        .await?;
                    Ok::<_, Error>(Guardian {
                        id: gid,
                        name,
                        cpf: Some(cpf.formatted()),
                        phone: phone.typed,
                        relationship,
                        created_at,
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(GuardianCreated::Created(Json(guardian)))
    }

    /// Remove a guardian
    ///
    /// Permission: `guardians:manage`.
    #[oai(
        path = "/patients/:id/guardians/:guardian_id",
        method = "delete",
        operation_id = "remove_guardian"
    )]
    async fn remove_guardian(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        guardian_id: Path<Uuid>,
    ) -> ApiResult<Removed> {
        let actor = kernel.authorize(&auth, &perm::GUARDIANS_MANAGE).await?;
        let removed = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::update(
                        guardians::table
                            .filter(guardians::id.eq(guardian_id.0))
                            .filter(guardians::patient_id.eq(id.0))
                            .filter(guardians::removed_at.is_null()),
                    )
                    .set(guardians::removed_at.eq(Utc::now()))
                    .execute(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        if removed == 0 {
            return Err(Error::NotFound { what: "guardian" }.into());
        }
        Ok(Removed::Removed)
    }

    /// A patient's consents
    ///
    /// The current state of each purpose is the latest decision in the log.
    ///
    /// Permission: `patient_consents:read`.
    #[oai(
        path = "/patients/:id/consents",
        method = "get",
        operation_id = "list_patient_consents"
    )]
    async fn list_patient_consents(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Consents>> {
        let actor = kernel.authorize(&auth, &perm::CONSENTS_READ).await?;
        let actor_ref = &actor;
        let consents = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_patient(conn, id.0).await?;
                    let current = consent::current(conn, "patient", id.0).await?;
                    let history = consent::history(conn, "patient", id.0).await?;
                    let access = Access {
                        subject_kind: Some("patient"),
                        subject_id: Some(id.0),
                        resource: "patient.consents",
                        action: "read",
                    };
                    audit::record(conn, actor_ref, access).await?;
                    Ok::<_, Error>(Consents { current, history })
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(consents))
    }

    /// Record or revoke a consent
    ///
    /// For a patient under 18 (in the clinic's time zone) a guardian decides: name them in
    /// `guardian_id`; without one the answer is a 422 `guardian_required`.
    ///
    /// Permission: `patient_consents:record`.
    #[oai(
        path = "/patients/:id/consents",
        method = "post",
        operation_id = "record_patient_consent"
    )]
    async fn record_patient_consent(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<NewConsent>,
    ) -> ApiResult<ConsentCreated> {
        let actor = kernel.authorize(&auth, &perm::CONSENTS_RECORD).await?;
        let input = body.0;
        let mut f = Fields::default();
        f.check(
            "purpose",
            if PURPOSES.contains(&input.purpose.as_str()) {
                Ok(())
            } else {
                Err("one of treatment_data, photos, whatsapp_contact, marketing")
            },
        );
        if input.photo_id.is_some() && input.purpose != "photos" {
            f.check::<()>("photo_id", Err("only for the photos purpose"));
        }
        let legal_basis = input
            .legal_basis
            .clone()
            .unwrap_or_else(|| "consent".into());
        f.check("legal_basis", if LEGAL_BASES.contains(&legal_basis.as_str()) { Ok(()) } else { Err("one of consent, health_protection, legal_obligation, contract, legitimate_interest") });
        f.check(
            "channel",
            if CHANNELS.contains(&input.channel.as_str()) {
                Ok(())
            } else {
                Err("one of in_person, paper, web, whatsapp, phone")
            },
        );
        f.check(
            "policy_version",
            harmony_core::validate::text(&input.policy_version, 40, true).and_then(|v| {
                if v.is_empty() {
                    Err("the policy version shown, e.g. 2026-12")
                } else {
                    Ok(v)
                }
            }),
        );
        f.finish()?;
        let actor_ref = &actor;
        let kernel_ref: &Kernel = &kernel;
        let record = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let birth: Option<NaiveDate> = patients::table
                        .filter(patients::id.eq(id.0))
                        .select(patients::birth_date)
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or_else(not_found)?;
                    let today = kernel_ref.zones.today(conn, actor_ref.tenant_id).await?;
                    let minor = birth.is_some_and(|b| domain::age_on(b, today) < 18);
                    let mut evidence = serde_json::json!({ "given_by": "patient" });
                    if minor {
                        let Some(gid) = input.guardian_id else {
                            return Err(Error::invalid("guardian_id", "this patient is a minor: the id of their guardian, who decides for them (add one at /guardians first)"));
                        };
                        let relationship: Option<String> = guardians::table
                            .filter(guardians::id.eq(gid))
                            .filter(guardians::patient_id.eq(id.0))
                            .filter(guardians::removed_at.is_null())
                            .select(guardians::relationship)
                            .first(conn)
                            .await
                            .optional()?;
                        let Some(relationship) = relationship else {
                            return Err(Error::invalid("guardian_id", "the id of one of this patient's guardians"));
                        };
                        evidence = serde_json::json!({ "given_by": "guardian", "guardian_id": gid, "relationship": relationship });
                    }
                    if let Some(extra) = input.evidence {
                        evidence["details"] = extra;
                    }
                    let purpose = match input.photo_id {
                        Some(photo) => format!("photos:{photo}"),
                        None => input.purpose.clone(),
                    };
                    let entry = ConsentEntry {
                        subject_kind: "patient",
                        subject_id: id.0,
                        purpose: &purpose,
                        legal_basis: &legal_basis,
                        policy_version: &input.policy_version,
                        granted: input.granted,
                        channel: &input.channel,
                        evidence: Some(evidence),
                    };
                    let record_id = consent::record(conn, actor_ref, entry).await?;
                    let topic = if input.granted { "patient.consent_granted" } else { "patient.consent_revoked" };
                    harmony_core::events::publish(conn, actor_ref.tenant_id, topic, &serde_json::json!({"patient_id": id.0, "purpose": purpose})).await?;
                    consent::history(conn, "patient", id.0)
                        .await?
                        .into_iter()
                        .find(|r| r.id == record_id)
                        .ok_or_else(|| Error::internal(anyhow::anyhow!("recorded consent not found")))
                }
                .scope_boxed()
            })
            .await?;
        Ok(ConsentCreated::Created(Json(record)))
    }

    /// Where patients come from
    ///
    /// Permission: `referral_origins:read`.
    #[oai(
        path = "/referral-origins",
        method = "get",
        operation_id = "list_referral_origins"
    )]
    async fn list_referral_origins(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<ReferralOrigin>>> {
        let actor = kernel.authorize(&auth, &perm::ORIGINS_READ).await?;
        let tenant = actor.tenant_id;
        let list = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    records::ensure_default_origins(conn, tenant).await?;
                    referral_origins::table
                        .order(referral_origins::label)
                        .select(ReferralOrigin::as_select())
                        .load(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(list))
    }

    /// Add a referral origin
    ///
    /// Permission: `referral_origins:manage`.
    #[oai(
        path = "/referral-origins",
        method = "post",
        operation_id = "create_referral_origin"
    )]
    async fn create_referral_origin(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewReferralOrigin>,
    ) -> ApiResult<OriginCreated> {
        let actor = kernel.authorize(&auth, &perm::ORIGINS_MANAGE).await?;
        let label = harmony_core::validate::text(&body.0.label, 80, true)
            .and_then(|l| {
                if l.is_empty() {
                    Err("1 to 80 characters")
                } else {
                    Ok(l)
                }
            })
            .map_err(|m| Error::invalid("label", m))?;
        let code = body
            .0
            .code
            .unwrap_or_else(|| search_form(&label).replace(' ', "_"));
        let valid = !code.is_empty()
            && code.len() <= 40
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(Error::invalid("code", "1 to 40 lower-case letters, digits or _").into());
        }
        let tenant = actor.tenant_id;
        let origin = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    records::ensure_default_origins(conn, tenant).await?;
                    let inserted = diesel::insert_into(referral_origins::table)
                        .values((
                            referral_origins::tenant_id.eq(tenant),
                            referral_origins::code.eq(&code),
                            referral_origins::label.eq(&label),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if inserted == 0 {
                        return Err(Error::conflict(
                            "origin_exists",
                            "a referral origin with this code exists",
                        ));
                    }
                    Ok(ReferralOrigin {
                        code,
                        label,
                        active: true,
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(OriginCreated::Created(Json(origin)))
    }

    /// Rename or retire a referral origin
    ///
    /// Permission: `referral_origins:manage`.
    #[oai(
        path = "/referral-origins/:code",
        method = "patch",
        operation_id = "update_referral_origin"
    )]
    async fn update_referral_origin(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        #[oai(validator(max_length = 40))] code: Path<String>,
        body: JsonBody<ReferralOriginUpdate>,
    ) -> ApiResult<Json<ReferralOrigin>> {
        let actor = kernel.authorize(&auth, &perm::ORIGINS_MANAGE).await?;
        let label = body
            .0
            .label
            .map(|l| {
                harmony_core::validate::text(&l, 80, true)
                    .and_then(|l| {
                        if l.is_empty() {
                            Err("1 to 80 characters")
                        } else {
                            Ok(l)
                        }
                    })
                    .map_err(|m| Error::invalid("label", m))
            })
            .transpose()?;
        let active = body.0.active;
        let tenant = actor.tenant_id;
        let origin = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    records::ensure_default_origins(conn, tenant).await?;
                    let target = referral_origins::table.filter(referral_origins::code.eq(&code.0));
                    if let Some(label) = label {
                        diesel::update(target)
                            .set(referral_origins::label.eq(label))
                            .execute(conn)
                            .await?;
                    }
                    if let Some(active) = active {
                        diesel::update(target)
                            .set(referral_origins::active.eq(active))
                            .execute(conn)
                            .await?;
                    }
                    target
                        .select(ReferralOrigin::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or(Error::NotFound {
                            what: "referral origin",
                        })
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(origin))
    }
}

impl PatientsApi {
    async fn set_status(
        &self,
        kernel: &Kernel,
        auth: &BearerAuth,
        id: Uuid,
        status: &'static str,
    ) -> ApiResult<Json<Patient>> {
        let actor = kernel.authorize(auth, &perm::ARCHIVE).await?;
        let (actor_ref, view) = (&actor, View::Full);
        let patient = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let changed = diesel::update(patients::table.filter(patients::id.eq(id)))
                        .set((
                            patients::status.eq(status),
                            patients::updated_at.eq(Utc::now()),
                        ))
                        .execute(conn)
                        .await?;
                    if changed == 0 {
                        return Err(not_found());
                    }
                    diesel::update(
                        patient_search_terms::table.filter(patient_search_terms::patient_id.eq(id)),
                    )
                    .set(patient_search_terms::active.eq(status == "active"))
                    .execute(conn)
                    .await?;
                    read_patient(conn, kernel, actor_ref, id, view).await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(patient))
    }
}

fn handle_of(p: crate::service::PatientRef) -> PatientHandle {
    PatientHandle {
        id: p.id,
        first_name: p.first_name,
    }
}

/// The field a guardian's CPF is encrypted for (bound to the guardian's row).
fn guardian_field(guardian: Uuid) -> String {
    format!("guardian.{guardian}.cpf")
}
