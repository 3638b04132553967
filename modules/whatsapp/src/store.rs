//! The module's data: each clinic's settings, conversations and messages. Message text is
//! sealed under the conversation's data key (`key_subject`), never stored in the clear.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::crypto::SubjectCipher;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use scoped_futures::ScopedFutureExt;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::graph::{Account, Outgoing, Recipient};
use crate::schema::{
    whatsapp_conversations as wc, whatsapp_messages as wm, whatsapp_settings as ws,
};

/// The field names ciphertexts are bound to.
pub const BODY_FIELD: &str = "whatsapp.message";
const NAME_FIELD: &str = "whatsapp.profile_name";
const TOKEN_FIELD: &str = "whatsapp.access_token";

/// The clinic a Meta phone number id belongs to (read before any clinic is known).
pub async fn route(kernel: &Kernel, phone_number_id: &str) -> Result<Option<Uuid>, Error> {
    let id = phone_number_id.to_owned();
    kernel
        .db
        .system("whatsapp.route", |conn| {
            async move {
                #[derive(QueryableByName)]
                struct Route {
                    #[diesel(sql_type = SqlUuid)]
                    tenant_id: Uuid,
                }
                let found: Option<Route> = diesel::sql_query(
                    "SELECT tenant_id FROM whatsapp_routes WHERE phone_number_id = $1",
                )
                .bind::<Text, _>(&id)
                .get_result(conn)
                .await
                .optional()?;
                Ok::<_, Error>(found.map(|r| r.tenant_id))
            }
            .scope_boxed()
        })
        .await
}

/// A message template approved by Meta, for one use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Object)]
pub struct Template {
    /// The template's name in the WhatsApp Manager.
    pub name: String,
    /// Its language code, e.g. `pt_BR`.
    #[serde(default = "pt_br")]
    #[oai(default = "pt_br")]
    pub language: String,
}

fn pt_br() -> String {
    "pt_BR".into()
}

/// The templates a clinic configured, by what they are for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Object)]
pub struct Templates {
    /// Reminder before an appointment; named body parameters `nome`, `servico`, `data`,
    /// `hora`, and quick replies Confirmar / Remarcar / Cancelar.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub reminder: Option<Template>,
    /// Confirmation of a booking or a new time; parameters `nome`, `servico`, `data`, `hora`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub confirmation: Option<Template>,
    /// A freed time offered to someone on the waitlist; parameters `nome`, `data`, `hora`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub waitlist: Option<Template>,
}

/// A clinic's WhatsApp settings as the module uses them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    pub phone_number_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub token: Option<SecretString>,
    pub reminder_offsets_minutes: Vec<i32>,
    pub templates: Templates,
    pub address: Option<String>,
    pub opening_hours: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            phone_number_id: None,
            display_phone_number: None,
            token: None,
            reminder_offsets_minutes: vec![1440, 120],
            templates: Templates::default(),
            address: None,
            opening_hours: None,
        }
    }
}

impl Settings {
    /// The Cloud API account, when the number and its token are configured.
    pub fn account(&self) -> Option<Account> {
        Some(Account {
            phone_number_id: self.phone_number_id.clone()?,
            token: self.token.clone()?,
        })
    }
}

/// The clinic's settings (defaults, disabled, when it never saved any). Inside its tenant
/// transaction.
pub async fn settings(conn: &mut Conn, kernel: &Kernel, tenant: Uuid) -> Result<Settings, Error> {
    let row: Option<(
        bool,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
        Vec<i32>,
        serde_json::Value,
        Option<String>,
        Option<String>,
    )> = ws::table
        .find(tenant)
        .select((
            ws::enabled,
            ws::phone_number_id,
            ws::display_phone_number,
            ws::access_token,
            ws::reminder_offsets_minutes,
            ws::templates,
            ws::address,
            ws::opening_hours,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((enabled, phone_number_id, display, sealed, offsets, templates, address, hours)) = row
    else {
        return Ok(Settings::default());
    };
    let token = match sealed {
        Some(sealed) => {
            let cipher = clinic_cipher(conn, kernel, tenant).await?;
            Some(SecretString::from(
                cipher.decrypt_text(TOKEN_FIELD, &sealed)?,
            ))
        }
        None => None,
    };
    Ok(Settings {
        enabled,
        phone_number_id,
        display_phone_number: display,
        token,
        reminder_offsets_minutes: offsets,
        templates: serde_json::from_value(templates).unwrap_or_default(),
        address,
        opening_hours: hours,
    })
}

/// The cipher of the clinic's own secrets (its subject is the clinic itself).
pub async fn clinic_cipher(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
) -> Result<SubjectCipher, Error> {
    kernel
        .crypto
        .subject(conn, tenant, tenant)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("the clinic's own key was destroyed")))
}

/// Seals an access token for storage.
pub fn seal_token(cipher: &SubjectCipher, token: &str) -> Vec<u8> {
    cipher.encrypt(TOKEN_FIELD, token.as_bytes())
}

/// What the assistant knows of a conversation.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: Uuid,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub patient_id: Option<Uuid>,
    pub key_subject: Uuid,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub mode: String,
    pub opted_out: bool,
    pub state: serde_json::Value,
}

impl Conversation {
    pub fn recipient(&self) -> Option<Recipient> {
        match (&self.wa_id, &self.user_id) {
            (Some(wa_id), _) => Some(Recipient::WaId(wa_id.clone())),
            (None, Some(user_id)) => Some(Recipient::UserId(user_id.clone())),
            (None, None) => None,
        }
    }

    /// Whether the 24-hour customer-service window is open at `now`.
    pub fn window_open(&self, now: DateTime<Utc>) -> bool {
        self.last_inbound_at
            .is_some_and(|at| now - at < chrono::Duration::hours(24))
    }
}

type ConversationRow = (
    Uuid,
    Option<String>,
    Option<String>,
    Option<Uuid>,
    Uuid,
    Option<DateTime<Utc>>,
    String,
    Option<DateTime<Utc>>,
    serde_json::Value,
);

fn conversation_of(row: ConversationRow) -> Conversation {
    let (id, wa_id, user_id, patient_id, key_subject, last_inbound_at, mode, opted_out, state) =
        row;
    Conversation {
        id,
        wa_id,
        user_id,
        patient_id,
        key_subject,
        last_inbound_at,
        mode,
        opted_out: opted_out.is_some(),
        state,
    }
}

macro_rules! conversation_columns {
    () => {
        (
            wc::id,
            wc::wa_id,
            wc::user_id,
            wc::patient_id,
            wc::key_subject,
            wc::last_inbound_at,
            wc::mode,
            wc::opted_out_at,
            wc::state,
        )
    };
}

/// One conversation of the current clinic.
pub async fn conversation(conn: &mut Conn, id: Uuid) -> Result<Option<Conversation>, Error> {
    Ok(wc::table
        .filter(wc::id.eq(id))
        .select(conversation_columns!())
        .first::<ConversationRow>(conn)
        .await
        .optional()?
        .map(conversation_of))
}

/// The conversation of a patient, if they ever wrote or were written to.
pub async fn conversation_of_patient(
    conn: &mut Conn,
    patient: Uuid,
) -> Result<Option<Conversation>, Error> {
    Ok(wc::table
        .filter(wc::patient_id.eq(patient))
        .order(wc::last_message_at.desc().nulls_last())
        .select(conversation_columns!())
        .first::<ConversationRow>(conn)
        .await
        .optional()?
        .map(conversation_of))
}

/// Who a conversation is with, as a webhook names them.
#[derive(Debug, Clone)]
pub struct ContactKey<'a> {
    pub wa_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// The conversation with a contact, created on their first message. Returns its id and
/// data-key subject.
pub async fn conversation_for(
    conn: &mut Conn,
    tenant: Uuid,
    contact: &ContactKey<'_>,
) -> Result<(Uuid, Uuid), Error> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        key_subject: Uuid,
    }
    let find = "SELECT id, key_subject FROM whatsapp_conversations \
                WHERE wa_id = $1 OR user_id = $2 ORDER BY wa_id = $1 DESC NULLS LAST LIMIT 1";
    for _ in 0..2 {
        let found: Option<Found> = diesel::sql_query(find)
            .bind::<Nullable<Text>, _>(contact.wa_id)
            .bind::<Nullable<Text>, _>(contact.user_id)
            .get_result(conn)
            .await
            .optional()?;
        if let Some(found) = found {
            return Ok((found.id, found.key_subject));
        }
        let (id, key) = (Uuid::now_v7(), Uuid::now_v7());
        let inserted = diesel::insert_into(wc::table)
            .values((
                wc::tenant_id.eq(tenant),
                wc::id.eq(id),
                wc::wa_id.eq(contact.wa_id),
                wc::user_id.eq(contact.user_id),
                wc::key_subject.eq(key),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 1 {
            return Ok((id, key));
        }
        // Someone else created it in between: read theirs.
    }
    Err(Error::conflict(
        "conversation_race",
        "the conversation was being created concurrently; retry",
    ))
}

/// Records what Meta said of the contact with their message: the window, the other id,
/// the profile name (sealed).
pub async fn touch_inbound(
    conn: &mut Conn,
    conversation: Uuid,
    at: DateTime<Utc>,
    contact: &ContactKey<'_>,
    profile_name: Option<Vec<u8>>,
) -> Result<(), Error> {
    diesel::sql_query(
        "UPDATE whatsapp_conversations SET \
           last_inbound_at = GREATEST(last_inbound_at, $2), \
           last_message_at = GREATEST(last_message_at, $2), \
           wa_id = COALESCE(wa_id, $3), user_id = COALESCE(user_id, $4), \
           profile_name = COALESCE($5, profile_name), updated_at = now() \
         WHERE id = $1",
    )
    .bind::<SqlUuid, _>(conversation)
    .bind::<Timestamptz, _>(at)
    .bind::<Nullable<Text>, _>(contact.wa_id)
    .bind::<Nullable<Text>, _>(contact.user_id)
    .bind::<Nullable<diesel::sql_types::Bytea>, _>(profile_name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Seals a profile name for a conversation.
pub fn seal_name(cipher: &SubjectCipher, name: &str) -> Vec<u8> {
    cipher.encrypt(NAME_FIELD, name.as_bytes())
}

/// Opens a sealed profile name.
pub fn open_name(cipher: &SubjectCipher, sealed: &[u8]) -> Option<String> {
    cipher.decrypt_text(NAME_FIELD, sealed).ok()
}

/// An inbound message to store.
#[derive(Debug)]
pub struct Inbound<'a> {
    pub conversation: Uuid,
    pub wamid: &'a str,
    pub kind: &'a str,
    pub body: Option<Vec<u8>>,
    pub detail: serde_json::Value,
    pub sent_at: DateTime<Utc>,
}

/// Stores an inbound message once: `None` when its wamid was seen before.
pub async fn insert_inbound(
    conn: &mut Conn,
    tenant: Uuid,
    message: Inbound<'_>,
) -> Result<Option<Uuid>, Error> {
    let id = Uuid::now_v7();
    let inserted = diesel::insert_into(wm::table)
        .values((
            wm::tenant_id.eq(tenant),
            wm::id.eq(id),
            wm::conversation_id.eq(message.conversation),
            wm::direction.eq("in"),
            wm::wamid.eq(message.wamid),
            wm::kind.eq(message.kind),
            wm::body.eq(message.body),
            wm::detail.eq(message.detail),
            wm::sent_at.eq(message.sent_at),
            wm::status.eq("received"),
            wm::author.eq("contact"),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok((inserted == 1).then_some(id))
}

/// Who wrote an outbound message and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// `assistant`, `staff` or `automation`.
    pub author: &'static str,
    pub author_user_id: Option<Uuid>,
    /// `reply`, `confirmation`, `reminder`, `waitlist`, `manual`, `notice`.
    pub purpose: &'static str,
}

/// Queues an outbound message (status `pending`) for [`crate::sender`], sealed under the
/// conversation's key; `detail` keeps its shape without its text (for lists and counts).
pub async fn queue_outbound(
    conn: &mut Conn,
    tenant: Uuid,
    conversation: &Conversation,
    cipher: &SubjectCipher,
    message: &Outgoing,
    origin: Origin,
) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    let sealed = serde_json::to_vec(message).map_err(Error::internal)?;
    let body = cipher.encrypt(BODY_FIELD, &sealed);
    let detail = match message {
        Outgoing::Text { .. } => json!({}),
        Outgoing::Buttons { buttons, .. } => {
            json!({ "buttons": buttons.iter().map(|(id, _)| id).collect::<Vec<_>>() })
        }
        Outgoing::Template { name, language, .. } => {
            json!({ "template": name, "language": language })
        }
    };
    let now = Utc::now();
    diesel::insert_into(wm::table)
        .values((
            wm::tenant_id.eq(tenant),
            wm::id.eq(id),
            wm::conversation_id.eq(conversation.id),
            wm::direction.eq("out"),
            wm::kind.eq(message.kind()),
            wm::body.eq(Some(body)),
            wm::detail.eq(detail),
            wm::sent_at.eq(now),
            wm::status.eq("pending"),
            wm::author.eq(origin.author),
            wm::author_user_id.eq(origin.author_user_id),
            wm::purpose.eq(origin.purpose),
            wm::next_attempt_at.eq(Some(now)),
        ))
        .execute(conn)
        .await?;
    diesel::update(wc::table.filter(wc::id.eq(conversation.id)))
        .set((wc::last_message_at.eq(now), wc::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(id)
}

/// A stored message's text as a person reads it: what the contact wrote (or the title of
/// the button they pressed), or what was sent.
pub fn readable(cipher: &SubjectCipher, direction: &str, sealed: &[u8]) -> Option<String> {
    let plain = cipher.decrypt(BODY_FIELD, sealed).ok()?;
    if direction == "out" {
        let message: Outgoing = serde_json::from_slice(&plain).ok()?;
        Some(message.readable())
    } else {
        String::from_utf8(plain).ok()
    }
}
