//! Meta's webhook: the verification handshake, and notifications of messages and delivery
//! statuses. A notification is checked against the app secret over its raw bytes, then
//! every message and status in it is stored once (deduplicated by Meta's ids) in its
//! clinic's transaction, with the event that wakes the assistant; only then is it
//! acknowledged. Nothing is answered or sent on the request path.

use diesel::sql_types::{Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::db::{Conn, TenantScope};
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use harmony_core::sql::sql;
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::{Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::payload::{self, Content, Notification};
use crate::store::{self, ContactKey, Inbound};
use crate::{Whatsapp, WhatsappTags};

/// The topic that wakes the assistant for a stored inbound message.
pub const MESSAGE_RECEIVED: &str = "whatsapp.message_received";

/// What a notification held, once stored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Object)]
pub struct WebhookReceipt {
    /// Messages stored for the first time.
    pub messages: u32,
    /// Messages seen before (Meta delivers at least once).
    pub duplicates: u32,
    /// Delivery statuses recorded for the first time.
    pub statuses: u32,
    /// Changes for a phone number id no clinic has: acknowledged and dropped.
    pub unrouted: u32,
}

#[derive(Debug)]
pub struct WebhookApi;

#[OpenApi(prefix_path = "/webhooks", tag = "WhatsappTags::Whatsapp")]
impl WebhookApi {
    /// Meta's verification handshake
    ///
    /// Meta calls this when the callback URL is set in the App Dashboard. With
    /// `hub.mode=subscribe` and the configured verify token, the answer is the challenge;
    /// anything else is a 403.
    #[oai(
        path = "/whatsapp",
        method = "get",
        operation_id = "verify_whatsapp_webhook"
    )]
    async fn verify(
        &self,
        kernel: Data<&Kernel>,
        #[oai(name = "hub.mode")] mode: Query<Option<String>>,
        #[oai(name = "hub.verify_token")] token: Query<Option<String>>,
        #[oai(name = "hub.challenge")] challenge: Query<Option<String>>,
    ) -> ApiResult<PlainText<String>> {
        let whatsapp = Whatsapp::of(&kernel)?;
        let expected = whatsapp.config.verify_token.as_ref();
        let matches = match (expected, token.0.as_deref()) {
            (Some(expected), Some(given)) => {
                bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes()))
            }
            _ => false,
        };
        if mode.0.as_deref() != Some("subscribe") || !matches {
            return Err(Error::forbidden(
                "verification_refused",
                "hub.mode must be subscribe and hub.verify_token the configured verify token",
            )
            .into());
        }
        let challenge = challenge.0.unwrap_or_default();
        if challenge.is_empty() || challenge.len() > 256 {
            return Err(Error::invalid_query(
                "hub.challenge",
                "the challenge to echo, 1 to 256 characters",
            )
            .into());
        }
        Ok(PlainText(challenge))
    }

    /// Receive a notification from Meta
    ///
    /// Signed with `X-Hub-Signature-256` over the raw body. Every message and status is
    /// stored once, then acknowledged; the assistant answers off the request path.
    #[oai(
        path = "/whatsapp",
        method = "post",
        operation_id = "receive_whatsapp_webhook"
    )]
    async fn receive(
        &self,
        kernel: Data<&Kernel>,
        #[oai(name = "X-Hub-Signature-256")] signature: Header<Option<String>>,
        body: Binary<Vec<u8>>,
    ) -> ApiResult<Json<WebhookReceipt>> {
        let whatsapp = Whatsapp::of(&kernel)?;
        let Some(secret) = whatsapp.config.app_secret.as_ref() else {
            // Meta retries for a day and more: once the secret is set, nothing is lost.
            tracing::error!("WhatsApp webhook refused: no app secret is configured");
            return Err(Error::Unavailable.into());
        };
        if !crate::signature::verify(
            secret.expose_secret().as_bytes(),
            &body.0,
            signature.0.as_deref(),
        ) {
            return Err(Error::Unauthenticated {
                code: "invalid_signature",
                detail: "X-Hub-Signature-256 must be sha256=<hex HMAC-SHA256 of the raw body \
                         under the app secret>",
            }
            .into());
        }
        let notification: Notification = serde_json::from_slice(&body.0).map_err(|e| {
            Error::invalid(
                "body",
                format!("a WhatsApp Business Account notification in JSON ({e})"),
            )
        })?;
        let receipt = receive(&kernel, &whatsapp, notification).await?;
        Ok(Json(receipt))
    }
}

/// Stores a verified notification, clinic by clinic, and returns what it held.
pub async fn receive(
    kernel: &Kernel,
    whatsapp: &Whatsapp,
    notification: Notification,
) -> Result<WebhookReceipt, Error> {
    let mut receipt = WebhookReceipt::default();
    if notification.object != "whatsapp_business_account" {
        tracing::info!(
            object = %notification.object,
            "WhatsApp webhook for another object, ignored"
        );
        return Ok(receipt);
    }
    let values = notification
        .entry
        .into_iter()
        .flat_map(|e| e.changes)
        .filter(|c| c.field == "messages")
        .filter_map(|c| c.value);
    for value in values {
        let Some(number) = value.metadata.as_ref().map(|m| m.phone_number_id.clone()) else {
            continue;
        };
        let Some(tenant) = whatsapp.route(kernel, &number).await? else {
            // The business number is Meta's id, not a person's: safe to log.
            tracing::warn!(
                phone_number_id = %number,
                "WhatsApp notification for a number no clinic has, acknowledged and dropped"
            );
            receipt.unrouted += 1;
            continue;
        };
        let stored = store_for_clinic(kernel, tenant, &value).await?;
        receipt.messages += stored.messages;
        receipt.duplicates += stored.duplicates;
        receipt.statuses += stored.statuses;
        for conversation in stored.fresh {
            crate::assistant::process_soon(kernel, tenant, conversation);
        }
    }
    Ok(receipt)
}

/// What one change stored in its clinic.
#[derive(Debug, Default)]
pub struct Stored {
    pub messages: u32,
    pub duplicates: u32,
    pub statuses: u32,
    /// Conversations with new messages to answer.
    pub fresh: Vec<Uuid>,
}

/// Stores one change's messages and statuses in `tenant`, in one transaction.
pub async fn store_for_clinic(
    kernel: &Kernel,
    tenant: Uuid,
    value: &payload::ChangeValue,
) -> Result<Stored, Error> {
    let scope = TenantScope::clinic(tenant);
    kernel
        .db
        .tenant(scope, |conn| {
            async move { store_value(conn, kernel, tenant, value).await }.scope_boxed()
        })
        .await
}

async fn store_value(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    value: &payload::ChangeValue,
) -> Result<Stored, Error> {
    let mut stored = Stored::default();
    for message in &value.messages {
        let contact = ContactKey {
            wa_id: message.from.as_deref().filter(|s| !s.is_empty()),
            user_id: message.from_user_id.as_deref().filter(|s| !s.is_empty()),
        };
        if contact.wa_id.is_none() && contact.user_id.is_none() {
            tracing::warn!("WhatsApp message without a sender id, dropped");
            continue;
        }
        let profile = value
            .contacts
            .iter()
            .find(|c| {
                (contact.wa_id.is_some() && c.wa_id.as_deref() == contact.wa_id)
                    || (contact.user_id.is_some() && c.user_id.as_deref() == contact.user_id)
            })
            .or(<[_]>::first(&value.contacts));
        // The other id Meta gave for the same person, when the message carried only one.
        let contact = ContactKey {
            wa_id: contact
                .wa_id
                .or_else(|| profile.and_then(|p| p.wa_id.as_deref())),
            user_id: contact
                .user_id
                .or_else(|| profile.and_then(|p| p.user_id.as_deref())),
        };
        let (conversation, cipher) =
            store::conversation_for(conn, kernel, tenant, &contact).await?;
        let sent_at = payload::timestamp(&message.timestamp);
        let name = profile
            .and_then(|p| p.profile.as_ref())
            .and_then(|p| p.name.as_deref())
            .map(|n| store::seal_name(&cipher, n));
        let seal = |text: &str| cipher.encrypt(store::BODY_FIELD, text.as_bytes());
        let (body, detail) = match message.content() {
            Content::Text(text) => (Some(seal(&text)), json!({})),
            Content::Audio { media_id, mime } => {
                (None, json!({ "media_id": media_id, "mime_type": mime }))
            }
            Content::Choice { id, title } => (Some(seal(&title)), json!({ "choice": id })),
            Content::Other(kind) => (None, json!({ "type": kind })),
        };
        let detail = match message.context.as_ref().and_then(|c| c.id.as_deref()) {
            Some(replied_to) => {
                let mut detail = detail;
                detail["context_wamid"] = json!(replied_to);
                detail
            }
            None => detail,
        };
        let inbound = Inbound {
            conversation,
            wamid: &message.id,
            kind: &message.kind,
            body,
            detail,
            sent_at,
            contact: &contact,
            profile_name: name,
        };
        match store::store_inbound(conn, tenant, MESSAGE_RECEIVED, inbound).await? {
            Some(_) => {
                stored.messages += 1;
                if !stored.fresh.contains(&conversation) {
                    stored.fresh.push(conversation);
                }
            }
            None => stored.duplicates += 1,
        }
    }
    for status in &value.statuses {
        if record_status(conn, tenant, status).await? {
            stored.statuses += 1;
        }
    }
    Ok(stored)
}

/// The delivery statuses Meta reports. How far along each is, and so which one a message
/// shows, is `whatsapp_status_rank` in the database.
const STATUSES: [&str; 5] = ["sent", "delivered", "read", "played", "failed"];

/// Records one status once per (message, status); moves the message's own status forward;
/// a failure flags the conversation for staff. Whether it was new.
async fn record_status(
    mut conn: &mut Conn,
    tenant: Uuid,
    status: &payload::Status,
) -> Result<bool, Error> {
    let kind = status.status.as_str();
    if !STATUSES.contains(&kind) || status.id.is_empty() || status.id.len() > 256 {
        tracing::info!(status = %kind, "WhatsApp status of an unknown kind, ignored");
        return Ok(false);
    }
    let at = payload::timestamp(&status.timestamp);
    let error = <[_]>::first(&status.errors);
    let code = error
        .and_then(|e| e.code)
        .and_then(|c| i32::try_from(c).ok());
    let detail: Option<String> = error
        .and_then(|e| {
            e.error_data
                .as_ref()
                .and_then(|d| d.details.clone())
                .or_else(|| e.title.clone())
        })
        .map(|d| d.chars().take(1000).collect());
    let new = sql(
        "INSERT INTO whatsapp_statuses (tenant_id, wamid, status, occurred_at, error_code) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(&status.id)
    .bind::<Text, _>(kind)
    .bind::<Timestamptz, _>(at)
    .bind::<Nullable<Integer>, _>(code)
    .execute(&mut conn)
    .await?;
    if new == 0 {
        return Ok(false);
    }
    #[derive(diesel::QueryableByName)]
    struct Moved {
        #[diesel(sql_type = SqlUuid)]
        conversation_id: Uuid,
    }
    let moved: Vec<Moved> = sql("UPDATE whatsapp_messages SET status = $2, status_at = $3, \
           error_code = COALESCE($4, error_code), error_detail = COALESCE($5, error_detail), \
           next_attempt_at = NULL \
         WHERE wamid = $1 AND direction = 'out' AND \
           whatsapp_status_rank(status) < whatsapp_status_rank($2) \
         RETURNING conversation_id")
    .bind::<Text, _>(&status.id)
    .bind::<Text, _>(kind)
    .bind::<Timestamptz, _>(at)
    .bind::<Nullable<Integer>, _>(code)
    .bind::<Nullable<Text>, _>(detail)
    .load(&mut conn)
    .await?;
    if kind == "failed" {
        for m in &moved {
            sql(
                "UPDATE whatsapp_conversations SET needs_attention = true, updated_at = now() \
                 WHERE id = $1",
            )
            .bind::<SqlUuid, _>(m.conversation_id)
            .execute(&mut conn)
            .await?;
        }
    }
    Ok(true)
}
