//! Patient records: validation of what clients send, the row as stored, and the views
//! each role gets, with encryption of the sensitive fields.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::crypto::SubjectCipher;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::validate::{Email, Fields};
use harmony_core::{DemoClinic, Kernel};
use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::domain::{self, Cpf, Phone};
use crate::schema::{patients, referral_origins};

pub const CPF_FIELD: &str = "patient.cpf";
pub const NOTES_FIELD: &str = "patient.notes";
pub const CPF_INDEX: &str = "cpf";

/// A postal address.
#[derive(Debug, Clone, Default, Object)]
pub struct Address {
    /// `00000-000`.
    #[oai(nullable)]
    pub cep: Option<String>,
    #[oai(nullable)]
    pub street: Option<String>,
    #[oai(nullable)]
    pub number: Option<String>,
    #[oai(nullable)]
    pub complement: Option<String>,
    #[oai(nullable)]
    pub district: Option<String>,
    #[oai(nullable)]
    pub city: Option<String>,
    /// Two-letter state (UF), e.g. `SP`.
    #[oai(nullable)]
    pub state: Option<String>,
}

/// A patient to register.
#[derive(Debug, Clone, Object)]
pub struct NewPatient {
    pub full_name: String,
    /// How the clinic calls them.
    #[oai(nullable)]
    pub nickname: Option<String>,
    /// `000.000.000-00` or 11 digits; check digits verified. Stored encrypted.
    #[oai(nullable)]
    pub cpf: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    /// As typed; Brazilian numbers may omit +55 and, for old mobiles, the ninth digit.
    #[oai(nullable)]
    pub phone: Option<String>,
    #[oai(nullable)]
    pub birth_date: Option<NaiveDate>,
    /// One of `female`, `male`, `non_binary`, `trans_female`, `trans_male`, `other`,
    /// `not_informed`.
    #[oai(nullable)]
    pub gender: Option<String>,
    /// Free description when `gender` is `other`.
    #[oai(nullable)]
    pub gender_description: Option<String>,
    #[oai(nullable)]
    pub address: Option<Address>,
    /// A code from `GET /api/v1/referral-origins`.
    #[oai(nullable)]
    pub referral_origin: Option<String>,
    /// Clinical notes; stored encrypted, readable by clinical roles only.
    #[oai(nullable)]
    pub notes: Option<String>,
    #[oai(nullable)]
    pub tags: Option<Vec<String>>,
}

/// Changes to a patient; absent fields are kept, `null` clears.
#[derive(Debug, Clone, Object)]
pub struct PatientUpdate {
    #[oai(nullable)]
    pub full_name: Option<String>,
    #[oai(nullable)]
    pub nickname: MaybeUndefined<String>,
    #[oai(nullable)]
    pub cpf: MaybeUndefined<String>,
    #[oai(nullable)]
    pub email: MaybeUndefined<String>,
    #[oai(nullable)]
    pub phone: MaybeUndefined<String>,
    #[oai(nullable)]
    pub birth_date: MaybeUndefined<NaiveDate>,
    #[oai(nullable)]
    pub gender: MaybeUndefined<String>,
    #[oai(nullable)]
    pub gender_description: MaybeUndefined<String>,
    #[oai(nullable)]
    pub address: MaybeUndefined<Address>,
    #[oai(nullable)]
    pub referral_origin: MaybeUndefined<String>,
    #[oai(nullable)]
    pub notes: MaybeUndefined<String>,
    #[oai(nullable)]
    pub tags: Option<Vec<String>>,
}

/// Validated fields, ready to store. `None` leaves a column as it is; `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct Changes {
    pub full_name: Option<String>,
    pub nickname: Option<Option<String>>,
    pub cpf: Option<Option<Cpf>>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<Phone>>,
    pub birth_date: Option<Option<NaiveDate>>,
    pub gender: Option<Option<String>>,
    pub gender_description: Option<Option<String>>,
    pub address: Option<Option<Address>>,
    pub referral_origin: Option<Option<String>>,
    pub notes: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
}

impl Changes {
    pub fn touches_notes(&self) -> bool {
        self.notes.is_some()
    }
}

fn optional<T>(
    fields: &mut Fields,
    name: &str,
    value: MaybeUndefined<String>,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => fields.check(name, parse(&v)).map(Some),
    }
}

fn birth_date(date: NaiveDate) -> Result<NaiveDate, &'static str> {
    let today = Utc::now().date_naive();
    if date > today {
        Err("a date in the past, as YYYY-MM-DD")
    } else if date < NaiveDate::from_ymd_opt(1880, 1, 1).unwrap_or(date) {
        Err("a date after 1880-01-01")
    } else {
        Ok(date)
    }
}

fn tags(list: Vec<String>) -> Result<Vec<String>, &'static str> {
    if list.len() > 30 {
        return Err("at most 30 tags of 1 to 40 characters");
    }
    let mut out: Vec<String> = Vec::new();
    for tag in list {
        let tag = harmony_core::validate::text(&tag, 40, true)
            .map_err(|_| "at most 30 tags of 1 to 40 characters")?;
        if tag.is_empty() {
            return Err("at most 30 tags of 1 to 40 characters");
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

fn address(fields: &mut Fields, a: Address) -> Option<Address> {
    let text = |fields: &mut Fields, name: &str, v: Option<String>, max| {
        v.and_then(|v| {
            fields.check(
                &format!("address.{name}"),
                harmony_core::validate::text(&v, max, true),
            )
        })
        .filter(|v| !v.is_empty())
    };
    Some(Address {
        cep: a
            .cep
            .and_then(|v| fields.check("address.cep", domain::cep(&v))),
        street: text(fields, "street", a.street, 200),
        number: text(fields, "number", a.number, 20),
        complement: text(fields, "complement", a.complement, 80),
        district: text(fields, "district", a.district, 80),
        city: text(fields, "city", a.city, 80),
        state: a
            .state
            .and_then(|v| fields.check("address.state", domain::state(&v))),
    })
}

fn name(v: &str) -> Result<String, &'static str> {
    let name = harmony_core::validate::text(v, 200, true)?;
    if name.is_empty() {
        Err("the patient's name, 1 to 200 characters")
    } else {
        Ok(name)
    }
}

fn email(v: &str) -> Result<String, &'static str> {
    Email::parse(v).map(|e| e.as_str().to_owned())
}

impl NewPatient {
    pub fn validate(self) -> Result<Changes, Error> {
        let mut f = Fields::default();
        let text = |f: &mut Fields, n: &str, v: Option<String>, max| {
            v.and_then(|v| f.check(n, harmony_core::validate::text(&v, max, true)))
        };
        let changes = Changes {
            full_name: f.check("full_name", name(&self.full_name)),
            nickname: Some(text(&mut f, "nickname", self.nickname, 80).filter(|v| !v.is_empty())),
            cpf: Some(self.cpf.and_then(|v| f.check("cpf", Cpf::parse(&v)))),
            email: Some(self.email.and_then(|v| f.check("email", email(&v)))),
            phone: Some(self.phone.and_then(|v| f.check("phone", Phone::parse(&v)))),
            birth_date: Some(
                self.birth_date
                    .and_then(|v| f.check("birth_date", birth_date(v))),
            ),
            gender: Some(
                self.gender
                    .and_then(|v| f.check("gender", domain::gender(&v))),
            ),
            gender_description: Some(text(
                &mut f,
                "gender_description",
                self.gender_description,
                80,
            )),
            address: Some(self.address.and_then(|a| address(&mut f, a))),
            referral_origin: Some(self.referral_origin),
            notes: Some(text(&mut f, "notes", self.notes, 10_000).filter(|v| !v.is_empty())),
            tags: Some(
                self.tags
                    .map(|t| f.check("tags", tags(t)))
                    .unwrap_or(Some(Vec::new()))
                    .unwrap_or_default(),
            ),
        };
        f.finish()?;
        Ok(changes)
    }
}

impl PatientUpdate {
    pub fn validate(self) -> Result<Changes, Error> {
        let mut f = Fields::default();
        let t = |max| move |v: &str| harmony_core::validate::text(v, max, true);
        let changes = Changes {
            full_name: self.full_name.and_then(|v| f.check("full_name", name(&v))),
            nickname: optional(&mut f, "nickname", self.nickname, t(80)),
            cpf: optional(&mut f, "cpf", self.cpf, Cpf::parse),
            email: optional(&mut f, "email", self.email, email),
            phone: optional(&mut f, "phone", self.phone, Phone::parse),
            birth_date: match self.birth_date {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => f.check("birth_date", birth_date(v)).map(Some),
            },
            gender: optional(&mut f, "gender", self.gender, domain::gender),
            gender_description: optional(
                &mut f,
                "gender_description",
                self.gender_description,
                t(80),
            ),
            address: match self.address {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(a) => Some(address(&mut f, a)),
            },
            referral_origin: match self.referral_origin {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(Some(v)),
            },
            notes: optional(&mut f, "notes", self.notes, t(10_000)),
            tags: self.tags.and_then(|v| f.check("tags", tags(v))),
        };
        f.finish()?;
        Ok(changes)
    }
}

/// The answer to writing personal data of a patient whose key was destroyed.
pub fn erased() -> Error {
    Error::conflict("patient_erased", "this patient's personal data was erased")
}

/// A patient's row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = patients)]
pub struct PatientRow {
    pub id: Uuid,
    pub full_name: String,
    /// The name sort key (lower case, no accents).
    pub search_text: String,
    pub nickname: Option<String>,
    pub cpf_cipher: Option<Vec<u8>>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub phone_e164: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub gender_description: Option<String>,
    pub address_cep: Option<String>,
    pub address_street: Option<String>,
    pub address_number: Option<String>,
    pub address_complement: Option<String>,
    pub address_district: Option<String>,
    pub address_city: Option<String>,
    pub address_state: Option<String>,
    pub referral_origin: Option<String>,
    pub photo_id: Option<Uuid>,
    pub notes_cipher: Option<Vec<u8>>,
    pub tags: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Writes `changes` to a new (`insert`) or existing patient, encrypting CPF and notes.
pub async fn write(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    id: Uuid,
    changes: Changes,
    created_by: Option<Uuid>,
    insert: bool,
) -> Result<(), Error> {
    if let Some(Some(code)) = &changes.referral_origin {
        ensure_origin(conn, tenant, code).await?;
    }
    let needs_cipher =
        matches!(changes.cpf, Some(Some(_))) || matches!(changes.notes, Some(Some(_)));
    let cipher = if needs_cipher {
        Some(
            kernel
                .crypto
                .subject(conn, tenant, id)
                .await?
                .ok_or_else(erased)?,
        )
    } else {
        None
    };
    let cpf_index = match &changes.cpf {
        Some(Some(cpf)) => Some(Some(
            kernel
                .crypto
                .blind_index(conn, tenant, CPF_INDEX, cpf.digits().as_bytes())
                .await?,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let seal = |field: &str, text: &str| cipher.as_ref().map(|c| c.encrypt(field, text.as_bytes()));
    // The search form follows the name and nickname, whichever of them changes.
    let search = if insert {
        let name = changes.full_name.clone().unwrap_or_default();
        Some(search_text(
            &name,
            changes.nickname.clone().flatten().as_deref(),
        ))
    } else if changes.full_name.is_some() || changes.nickname.is_some() {
        let (name, nickname): (String, Option<String>) = patients::table
            .filter(patients::id.eq(id))
            .select((patients::full_name, patients::nickname))
            .first(conn)
            .await
            .optional()?
            .ok_or(Error::NotFound { what: "patient" })?;
        let name = changes.full_name.clone().unwrap_or(name);
        let nickname = changes.nickname.clone().unwrap_or(nickname);
        Some(search_text(&name, nickname.as_deref()))
    } else {
        None
    };
    let terms_from = search.clone();
    let row = PatientChanges {
        search_text: search,
        full_name: changes.full_name.clone(),
        nickname: changes.nickname.clone(),
        cpf_cipher: changes
            .cpf
            .as_ref()
            .map(|c| c.as_ref().and_then(|c| seal(CPF_FIELD, c.digits()))),
        cpf_index,
        email: changes.email,
        phone: changes
            .phone
            .as_ref()
            .map(|p| p.as_ref().map(|p| p.typed.clone())),
        phone_e164: changes
            .phone
            .as_ref()
            .map(|p| p.as_ref().map(|p| p.e164.clone())),
        birth_date: changes.birth_date,
        gender: changes.gender,
        gender_description: changes.gender_description,
        address_cep: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.cep.clone())),
        address_street: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.street.clone())),
        address_number: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.number.clone())),
        address_complement: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.complement.clone())),
        address_district: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.district.clone())),
        address_city: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.city.clone())),
        address_state: changes
            .address
            .as_ref()
            .map(|a| a.as_ref().and_then(|a| a.state.clone())),
        referral_origin: changes.referral_origin,
        notes_cipher: changes
            .notes
            .as_ref()
            .map(|n| n.as_ref().and_then(|n| seal(NOTES_FIELD, n))),
        tags: changes.tags,
        updated_at: Utc::now(),
    };
    if insert {
        let full_name = changes.full_name.unwrap_or_default();
        let nickname = changes.nickname.flatten();
        diesel::insert_into(patients::table)
            .values((
                patients::tenant_id.eq(tenant),
                patients::id.eq(id),
                patients::full_name.eq(&full_name),
                patients::search_text.eq(search_text(&full_name, nickname.as_deref())),
                patients::created_by.eq(created_by),
            ))
            .execute(conn)
            .await?;
    }
    let updated = diesel::update(patients::table.filter(patients::id.eq(id)))
        .set(&row)
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(Error::NotFound { what: "patient" });
    }
    if let Some(sort_key) = terms_from {
        index_terms(conn, tenant, id, &sort_key).await?;
    }
    Ok(())
}

/// Rewrites a patient's search terms: one per word of their name and nickname.
async fn index_terms(conn: &mut Conn, tenant: Uuid, id: Uuid, sort_key: &str) -> Result<(), Error> {
    use crate::schema::patient_search_terms as t;
    let status: String = patients::table
        .filter(patients::id.eq(id))
        .select(patients::status)
        .first(conn)
        .await?;
    diesel::delete(t::table.filter(t::patient_id.eq(id)))
        .execute(conn)
        .await?;
    let mut words: Vec<&str> = sort_key.split(' ').filter(|w| !w.is_empty()).collect();
    words.sort_unstable();
    words.dedup();
    let rows: Vec<_> = words
        .into_iter()
        .map(|w| {
            (
                t::tenant_id.eq(tenant),
                t::term.eq(w),
                t::sort_key.eq(sort_key),
                t::patient_id.eq(id),
                t::active.eq(status == "active"),
            )
        })
        .collect();
    diesel::insert_into(t::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

pub fn search_text(full_name: &str, nickname: Option<&str>) -> String {
    match nickname {
        Some(nick) => format!(
            "{} {}",
            domain::search_form(full_name),
            domain::search_form(nick)
        ),
        None => domain::search_form(full_name),
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = patients)]
struct PatientChanges {
    search_text: Option<String>,
    full_name: Option<String>,
    nickname: Option<Option<String>>,
    cpf_cipher: Option<Option<Vec<u8>>>,
    cpf_index: Option<Option<Vec<u8>>>,
    email: Option<Option<String>>,
    phone: Option<Option<String>>,
    phone_e164: Option<Option<String>>,
    birth_date: Option<Option<NaiveDate>>,
    gender: Option<Option<String>>,
    gender_description: Option<Option<String>>,
    address_cep: Option<Option<String>>,
    address_street: Option<Option<String>>,
    address_number: Option<Option<String>>,
    address_complement: Option<Option<String>>,
    address_district: Option<Option<String>>,
    address_city: Option<Option<String>>,
    address_state: Option<Option<String>>,
    referral_origin: Option<Option<String>>,
    notes_cipher: Option<Option<Vec<u8>>>,
    tags: Option<Vec<String>>,
    updated_at: DateTime<Utc>,
}

/// The referral origins every clinic starts with; each clinic may add and retire its own.
pub const DEFAULT_ORIGINS: [(&str, &str); 6] = [
    ("instagram", "Instagram"),
    ("patient_referral", "Indicação de paciente"),
    ("google", "Google"),
    ("walk_in", "Passou na frente"),
    ("whatsapp", "WhatsApp"),
    ("other", "Outro"),
];

/// Gives the clinic its default referral origins if it has none yet.
pub async fn ensure_default_origins(conn: &mut Conn, tenant: Uuid) -> Result<(), Error> {
    let rows: Vec<_> = DEFAULT_ORIGINS
        .iter()
        .map(|(code, label)| {
            (
                referral_origins::tenant_id.eq(tenant),
                referral_origins::code.eq(*code),
                referral_origins::label.eq(*label),
            )
        })
        .collect();
    diesel::insert_into(referral_origins::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

async fn ensure_origin(conn: &mut Conn, tenant: Uuid, code: &str) -> Result<(), Error> {
    ensure_default_origins(conn, tenant).await?;
    let active: Option<bool> = referral_origins::table
        .filter(referral_origins::code.eq(code))
        .select(referral_origins::active)
        .first(conn)
        .await
        .optional()?;
    match active {
        Some(true) => Ok(()),
        _ => Err(Error::invalid(
            "referral_origin",
            "a code listed by GET /api/v1/referral-origins",
        )),
    }
}

/// Decrypts a patient's CPF and notes, if their key still exists.
pub fn decrypt(
    row: &PatientRow,
    cipher: Option<&SubjectCipher>,
) -> Result<(Option<String>, Option<String>), Error> {
    let Some(cipher) = cipher else {
        return Ok((None, None));
    };
    let cpf = row
        .cpf_cipher
        .as_ref()
        .map(|c| cipher.decrypt_text(CPF_FIELD, c))
        .transpose()?
        .and_then(|digits| Cpf::parse(&digits).ok().map(|c| c.formatted()));
    let notes = row
        .notes_cipher
        .as_ref()
        .map(|c| cipher.decrypt_text(NOTES_FIELD, c))
        .transpose()?;
    Ok((cpf, notes))
}

/// Demo patients for the demo clinic.
pub async fn seed_demo(kernel: &Kernel, clinic: &DemoClinic) -> anyhow::Result<()> {
    let scope = harmony_core::db::TenantScope::clinic(clinic.tenant_id);
    let tenant = clinic.tenant_id;
    kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let existing: i64 = patients::table.count().get_result(conn).await?;
                if existing > 0 {
                    return Ok(());
                }
                let people = [
                    (
                        "Ana Beatriz Souza",
                        Some("Bia"),
                        "529.982.247-25",
                        "(11) 98765-4321",
                        "1990-04-12",
                        "female",
                    ),
                    (
                        "José Carlos Araújo",
                        None,
                        "111.444.777-35",
                        "(11) 3456-7890",
                        "1978-09-30",
                        "male",
                    ),
                    (
                        "Mariana Conceição Lima",
                        Some("Mari"),
                        "390.533.447-05",
                        "+55 21 99876-5432",
                        "2010-12-01",
                        "female",
                    ),
                ];
                for (name, nickname, cpf, phone, birth, gender) in people {
                    let input = NewPatient {
                        full_name: name.into(),
                        nickname: nickname.map(Into::into),
                        cpf: Some(cpf.into()),
                        email: None,
                        phone: Some(phone.into()),
                        birth_date: birth.parse().ok(),
                        gender: Some(gender.into()),
                        gender_description: None,
                        address: Some(Address {
                            city: Some("São Paulo".into()),
                            state: Some("SP".into()),
                            ..Address::default()
                        }),
                        referral_origin: Some("instagram".into()),
                        notes: Some("Pele sensível; evitar ácidos fortes.".into()),
                        tags: Some(vec!["demo".into()]),
                    };
                    write(
                        conn,
                        kernel,
                        tenant,
                        Uuid::now_v7(),
                        input.validate()?,
                        None,
                        true,
                    )
                    .await?;
                }
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await?;
    Ok(())
}
