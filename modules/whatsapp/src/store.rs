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
use harmony_core::sql::sql;
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
                let found: Option<Route> =
                    sql("SELECT tenant_id FROM whatsapp_routes WHERE phone_number_id = $1")
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
    #[oai(nullable)]
    pub reminder: Option<Template>,
    /// Confirmation of a booking or a new time; parameters `nome`, `servico`, `data`, `hora`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    #[oai(nullable)]
    pub confirmation: Option<Template>,
    /// A freed time offered to someone on the waitlist; parameters `nome`, `data`, `hora`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    #[oai(nullable)]
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

/// The conversation with a contact, created (with its data key) on their first message:
/// its id and the cipher of its key, in one statement either way.
pub async fn conversation_for(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    contact: &ContactKey<'_>,
) -> Result<(Uuid, SubjectCipher), Error> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        key_subject: Uuid,
        #[diesel(sql_type = Nullable<diesel::sql_types::Bytea>)]
        wrapped_key: Option<Vec<u8>>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        created: bool,
    }
    // Each id looked up through its own unique index, whatever the planner makes of an
    // `OR` on a table it last saw empty; the WhatsApp id wins when both match. A new
    // conversation's key is stored by the same statement, only when it is created.
    let find_or_create = "WITH found AS ( \
           SELECT id, key_subject FROM ( \
             SELECT id, key_subject, 0 AS rank FROM whatsapp_conversations WHERE wa_id = $1 \
             UNION ALL \
             SELECT id, key_subject, 1 FROM whatsapp_conversations WHERE user_id = $2 \
           ) c ORDER BY rank LIMIT 1 \
         ), created AS ( \
           INSERT INTO whatsapp_conversations (tenant_id, id, wa_id, user_id, key_subject) \
           SELECT $3, $4, $1, $2, $5 WHERE NOT EXISTS (SELECT 1 FROM found) \
           ON CONFLICT DO NOTHING RETURNING id, key_subject \
         ) \
         SELECT f.id, f.key_subject, d.wrapped_key, false AS created FROM found f \
           LEFT JOIN data_keys d ON d.tenant_id = $3 AND d.subject_id = f.key_subject \
         UNION ALL \
         SELECT id, key_subject, data_key_insert($3, key_subject, $6), true FROM created";
    for _ in 0..2 {
        // The statement decides whether the conversation is new, so a key is made (in
        // memory: a random key, wrapped) for every look and dropped when it is not.
        let key_subject = Uuid::now_v7();
        let (fresh, wrapped) = kernel
            .crypto
            .fresh_subject(conn, tenant, key_subject)
            .await?;
        let found: Option<Found> = sql(find_or_create)
            .bind::<Nullable<Text>, _>(contact.wa_id)
            .bind::<Nullable<Text>, _>(contact.user_id)
            .bind::<SqlUuid, _>(tenant)
            .bind::<SqlUuid, _>(Uuid::now_v7())
            .bind::<SqlUuid, _>(key_subject)
            .bind::<diesel::sql_types::Bytea, _>(wrapped)
            .get_result(conn)
            .await
            .optional()?;
        // Nothing: someone else created it in between, and the next look sees theirs.
        let Some(found) = found else { continue };
        let cipher = if found.created {
            Some(fresh)
        } else if found.wrapped_key.is_some() {
            kernel
                .crypto
                .open_wrapped(conn, tenant, found.key_subject, found.wrapped_key)
                .await?
        } else {
            // Created before its first message (a notice to a patient): the key now.
            kernel
                .crypto
                .subject(conn, tenant, found.key_subject)
                .await?
        };
        let cipher = cipher.ok_or_else(|| {
            Error::internal(anyhow::anyhow!(
                "a conversation's data key was destroyed without a new one"
            ))
        })?;
        return Ok((found.id, cipher));
    }
    Err(Error::conflict(
        "conversation_race",
        "the conversation was being created concurrently; retry",
    ))
}

/// Seals a profile name for a conversation.
pub fn seal_name(cipher: &SubjectCipher, name: &str) -> Vec<u8> {
    cipher.encrypt(NAME_FIELD, name.as_bytes())
}

/// Opens a sealed profile name.
pub fn open_name(cipher: &SubjectCipher, sealed: &[u8]) -> Option<String> {
    cipher.decrypt_text(NAME_FIELD, sealed).ok()
}

/// An inbound message to store, with what Meta said of its sender.
#[derive(Debug)]
pub struct Inbound<'a> {
    pub conversation: Uuid,
    pub wamid: &'a str,
    pub kind: &'a str,
    pub body: Option<Vec<u8>>,
    pub detail: serde_json::Value,
    pub sent_at: DateTime<Utc>,
    pub contact: &'a ContactKey<'a>,
    /// The sender's profile name, sealed.
    pub profile_name: Option<Vec<u8>>,
}

/// Stores an inbound message once, in one statement: the message, what it tells of the
/// conversation (the window, the contact's other id, their profile name) and the event that
/// wakes the assistant. `None` when its wamid was seen before: then nothing changes, and
/// nothing is locked that the assistant may hold.
pub async fn store_inbound(
    conn: &mut Conn,
    tenant: Uuid,
    topic: &str,
    message: Inbound<'_>,
) -> Result<Option<Uuid>, Error> {
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let stored: Option<Stored> = sql("WITH m AS ( \
           INSERT INTO whatsapp_messages (tenant_id, id, conversation_id, direction, wamid, kind, \
             body, detail, sent_at, status, author) \
           VALUES ($1, $2, $3, 'in', $4, $5, $6, $7, $8, 'received', 'contact') \
           ON CONFLICT DO NOTHING RETURNING id \
         ), touched AS ( \
           UPDATE whatsapp_conversations SET \
             last_inbound_at = GREATEST(last_inbound_at, $8), \
             last_message_at = GREATEST(last_message_at, $8), \
             wa_id = COALESCE(wa_id, $9), user_id = COALESCE(user_id, $10), \
             profile_name = COALESCE($11, profile_name), updated_at = now() \
           WHERE id = $3 AND EXISTS (SELECT 1 FROM m) \
         ) \
         SELECT id, outbox_publish($1, $12, $13, \
           jsonb_build_object('conversation_id', $3, 'message_id', id)) AS event FROM m")
    .bind::<SqlUuid, _>(tenant)
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(message.conversation)
    .bind::<Text, _>(message.wamid)
    .bind::<Text, _>(message.kind)
    .bind::<Nullable<diesel::sql_types::Bytea>, _>(message.body)
    .bind::<diesel::sql_types::Jsonb, _>(message.detail)
    .bind::<Timestamptz, _>(message.sent_at)
    .bind::<Nullable<Text>, _>(message.contact.wa_id)
    .bind::<Nullable<Text>, _>(message.contact.user_id)
    .bind::<Nullable<diesel::sql_types::Bytea>, _>(message.profile_name)
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(topic)
    .get_result(conn)
    .await
    .optional()?;
    Ok(stored.map(|s| s.id))
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
/// conversation's key, and moves the conversation up the list.
pub async fn queue_outbound(
    conn: &mut Conn,
    tenant: Uuid,
    conversation: &Conversation,
    cipher: &SubjectCipher,
    message: &Outgoing,
    origin: Origin,
) -> Result<Uuid, Error> {
    let id = insert_outbound(conn, tenant, conversation.id, cipher, message, origin, None).await?;
    let now = Utc::now();
    diesel::update(wc::table.filter(wc::id.eq(conversation.id)))
        .set((wc::last_message_at.eq(now), wc::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Writes an outbound message, sealed; `detail` keeps its shape without its text (for
/// lists and counts). With `lease_secs`, the writer has claimed it (`sending`, its first
/// attempt) and sends it itself; otherwise it is `pending`, for the sender. Leaves the
/// conversation as it is. Takes a shared connection so that it can be pipelined.
pub async fn insert_outbound(
    mut conn: &Conn,
    tenant: Uuid,
    conversation: Uuid,
    cipher: &SubjectCipher,
    message: &Outgoing,
    origin: Origin,
    lease_secs: Option<i64>,
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
    let (status, attempts, lease) = match lease_secs {
        Some(secs) => ("sending", 1, Some(now + chrono::Duration::seconds(secs))),
        None => ("pending", 0, None),
    };
    diesel::insert_into(wm::table)
        .values((
            wm::tenant_id.eq(tenant),
            wm::id.eq(id),
            wm::conversation_id.eq(conversation),
            wm::direction.eq("out"),
            wm::kind.eq(message.kind()),
            wm::body.eq(Some(body)),
            wm::detail.eq(detail),
            wm::sent_at.eq(now),
            wm::status.eq(status),
            wm::attempts.eq(attempts),
            wm::lease_until.eq(lease),
            wm::author.eq(origin.author),
            wm::author_user_id.eq(origin.author_user_id),
            wm::purpose.eq(origin.purpose),
            wm::next_attempt_at.eq(Some(now)),
        ))
        .execute(&mut conn)
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
