//! Staff's view of the clinic's WhatsApp: the conversations (those needing a person
//! first), their messages with delivery statuses and failures, and replies by hand. Every
//! read of a conversation's text is audited.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::audit::{self, Access};
use harmony_core::auth::{Actor, BearerAuth};
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use harmony_core::validate;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::graph::Outgoing;
use crate::schema::{whatsapp_conversations as wc, whatsapp_messages as wm};
use crate::store::{self, Origin};
use crate::{WhatsappTags, perm, sender};
use harmony_core::http::JsonBody;

/// Most conversations or messages in one page.
const MAX_PAGE: i64 = 100;

/// A conversation as staff see it in the list.
#[derive(Debug, Clone, Object)]
pub struct ConversationSummary {
    pub id: Uuid,
    /// The WhatsApp id as it wrote in (it may lack the ninth digit).
    #[oai(nullable)]
    pub wa_id: Option<String>,
    /// The business-scoped user id, for contacts without a phone.
    #[oai(nullable)]
    pub user_id: Option<String>,
    #[oai(nullable)]
    pub patient_id: Option<Uuid>,
    /// The name on the contact's WhatsApp profile.
    #[oai(nullable)]
    pub profile_name: Option<String>,
    #[oai(nullable)]
    pub last_message_at: Option<DateTime<Utc>>,
    /// Whether free-form messages can be sent (the contact wrote in the last 24 hours).
    pub window_open: bool,
    /// `assistant`, or `staff` once a person took over.
    pub mode: String,
    pub opted_out: bool,
    /// A person was asked for, or a message could not be delivered.
    pub needs_attention: bool,
}

/// One message of a conversation.
#[derive(Debug, Clone, Object)]
pub struct ConversationMessage {
    pub id: Uuid,
    /// `in` (from the contact) or `out`.
    pub direction: String,
    /// `text`, `audio`, `interactive`, `button`, `template`…
    pub kind: String,
    /// What was written or sent; absent for media not transcribed or erased text.
    #[oai(nullable)]
    pub text: Option<String>,
    /// `contact`, `assistant`, `staff` or `automation`.
    pub author: String,
    /// Inbound: received, processed. Outbound: pending, sending, sent, delivered, read,
    /// played, failed.
    pub status: String,
    /// Meta's error code of a failed or retried send (131047: the 24-hour window closed).
    #[oai(nullable)]
    pub error_code: Option<i32>,
    #[oai(nullable)]
    pub error_detail: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub status_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Object)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    /// Pass as `before` for the next (older) page.
    #[oai(nullable)]
    pub next_before: Option<DateTime<Utc>>,
}

/// A reply written by staff.
#[derive(Debug, Clone, Object)]
pub struct StaffReply {
    /// 1 to 4,000 characters.
    pub text: String,
}

#[derive(Debug, Clone, Object)]
pub struct Queued {
    pub id: Uuid,
    pub status: String,
}

#[derive(Debug, ApiResponse)]
pub enum ReplyQueued {
    /// Queued; it goes out at once, and again later if Meta is busy.
    #[oai(status = 202)]
    Accepted(Json<Queued>),
}

#[derive(Debug)]
pub struct ConversationsApi;

#[OpenApi(prefix_path = "/api/v1/whatsapp", tag = "WhatsappTags::Whatsapp")]
impl ConversationsApi {
    /// The clinic's WhatsApp conversations
    ///
    /// Those needing a person first, then the most recent. One audit event per page.
    ///
    /// Permission: `whatsapp_conversations:read`.
    #[oai(
        path = "/conversations",
        method = "get",
        operation_id = "list_whatsapp_conversations"
    )]
    async fn list(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        needs_attention: Query<Option<bool>>,
        before: Query<Option<DateTime<Utc>>>,
        limit: Query<Option<i64>>,
    ) -> ApiResult<Json<ConversationPage>> {
        let actor = kernel.authorize(&auth, &perm::CONVERSATIONS_READ).await?;
        let limit = page_size(limit.0)?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let page = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let page = list_page(
                        conn,
                        kernel_ref,
                        actor_ref,
                        None,
                        needs_attention.0,
                        before.0,
                        limit,
                    )
                    .await?;
                    audit::record(
                        conn,
                        actor_ref,
                        Access {
                            subject_kind: None,
                            subject_id: None,
                            resource: "whatsapp.conversation",
                            action: "list",
                        },
                    )
                    .await?;
                    Ok::<_, Error>(page)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(page))
    }

    /// The messages of a conversation
    ///
    /// Oldest first, with delivery statuses and failures. The read is audited.
    ///
    /// Permission: `whatsapp_conversations:read`.
    #[oai(
        path = "/conversations/:id/messages",
        method = "get",
        operation_id = "list_whatsapp_messages"
    )]
    async fn messages(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        limit: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<ConversationMessage>>> {
        let actor = kernel.authorize(&auth, &perm::CONVERSATIONS_READ).await?;
        let limit = page_size(limit.0)?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let messages = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let conversation = found(conn, id.0).await?;
                    let messages =
                        messages_of(conn, kernel_ref, actor_ref, &conversation, limit).await?;
                    audit::record(
                        conn,
                        actor_ref,
                        Access {
                            subject_kind: conversation.patient_id.map(|_| "patient"),
                            subject_id: conversation.patient_id,
                            resource: "whatsapp.messages",
                            action: "read",
                        },
                    )
                    .await?;
                    Ok::<_, Error>(messages)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(messages))
    }

    /// Reply to a conversation by hand
    ///
    /// Only within 24 hours of the contact's last message (outside it WhatsApp accepts
    /// templates only): a 409 `window_closed` otherwise.
    ///
    /// Permission: `whatsapp_conversations:reply`.
    #[oai(
        path = "/conversations/:id/messages",
        method = "post",
        operation_id = "reply_whatsapp_conversation"
    )]
    async fn reply(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<StaffReply>,
    ) -> ApiResult<ReplyQueued> {
        let actor = kernel.authorize(&auth, &perm::CONVERSATIONS_REPLY).await?;
        let text = validate::text(&body.0.text, 4000, true)
            .and_then(|t| {
                if t.is_empty() {
                    Err("1 to 4,000 characters")
                } else {
                    Ok(t)
                }
            })
            .map_err(|m| Error::invalid("text", m))?;
        let tenant = actor.tenant_id;
        let kernel_ref: &Kernel = &kernel;
        let user = actor.user_id;
        let queued = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let conversation = found(conn, id.0).await?;
                    if !conversation.window_open(Utc::now()) {
                        return Err(Error::conflict(
                            "window_closed",
                            "the contact has not written in the last 24 hours: WhatsApp \
                             accepts only approved templates until they do",
                        ));
                    }
                    let cipher = kernel_ref
                        .crypto
                        .subject(conn, tenant, conversation.key_subject)
                        .await?
                        .ok_or(Error::NotFound {
                            what: "conversation",
                        })?;
                    let queued = store::queue_outbound(
                        conn,
                        tenant,
                        &conversation,
                        &cipher,
                        &Outgoing::text(text),
                        Origin {
                            author: "staff",
                            author_user_id: Some(user),
                            purpose: "manual",
                        },
                    )
                    .await?;
                    // A person answering takes the conversation over from the assistant.
                    diesel::update(wc::table.filter(wc::id.eq(conversation.id)))
                        .set((
                            wc::mode.eq("staff"),
                            wc::taken_over_by.eq(Some(user)),
                            wc::needs_attention.eq(false),
                        ))
                        .execute(conn)
                        .await?;
                    Ok(queued)
                }
                .scope_boxed()
            })
            .await?;
        sender::deliver_soon(&kernel, tenant, queued);
        Ok(ReplyQueued::Accepted(Json(Queued {
            id: queued,
            status: "pending".into(),
        })))
    }

    /// Hand a conversation back to the assistant
    ///
    /// Staff are done: the assistant answers the contact's next messages again, and the
    /// conversation no longer asks for attention.
    ///
    /// Permission: `whatsapp_conversations:reply`.
    #[oai(
        path = "/conversations/:id/hand-back",
        method = "post",
        operation_id = "hand_back_whatsapp_conversation"
    )]
    async fn hand_back(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<HandedBack>> {
        let actor = kernel.authorize(&auth, &perm::CONVERSATIONS_REPLY).await?;
        let changed = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::update(wc::table.filter(wc::id.eq(id.0)))
                        .set((
                            wc::mode.eq("assistant"),
                            wc::taken_over_by.eq(None::<Uuid>),
                            wc::needs_attention.eq(false),
                            wc::state.eq(serde_json::json!({})),
                        ))
                        .execute(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        if changed == 0 {
            return Err(Error::NotFound {
                what: "conversation",
            }
            .into());
        }
        Ok(Json(HandedBack {
            id: id.0,
            mode: "assistant".into(),
            needs_attention: false,
        }))
    }

    /// Stop non-essential messages to a contact
    ///
    /// For a contact who asked the clinic directly: no more reminders, confirmations or
    /// offers (answers to their own messages still go), and, for a patient, the WhatsApp
    /// consent withdrawn in the consent log.
    ///
    /// Permission: `whatsapp_conversations:manage`.
    #[oai(
        path = "/conversations/:id/opt-out",
        method = "post",
        operation_id = "opt_out_whatsapp_conversation"
    )]
    async fn opt_out(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<OptOut>,
    ) -> ApiResult<Json<ConversationSummary>> {
        let actor = kernel.authorize(&auth, &perm::CONVERSATIONS_MANAGE).await?;
        let channel = match body.0.channel.as_deref() {
            None => "phone",
            Some(c) if CHANNELS.contains(&c) => c,
            Some(_) => {
                return Err(Error::invalid(
                    "channel",
                    "one of in_person, paper, web, whatsapp, phone",
                )
                .into());
            }
        };
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let summary = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let conversation = found(conn, id.0).await?;
                    diesel::update(wc::table.filter(wc::id.eq(conversation.id)))
                        .set(wc::opted_out_at.eq(Some(Utc::now())))
                        .execute(conn)
                        .await?;
                    if let Some(patient) = conversation.patient_id {
                        harmony_patients::service::record_consent(
                            conn,
                            kernel_ref,
                            actor_ref,
                            patient,
                            harmony_patients::service::ConsentDecision {
                                purpose: crate::assistant::PURPOSE,
                                granted: false,
                                policy_version: crate::assistant::POLICY_VERSION,
                                channel,
                                evidence: Some(serde_json::json!({ "conversation_id": id.0 })),
                            },
                        )
                        .await?;
                    }
                    summary_of(conn, kernel_ref, actor_ref, id.0).await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(summary))
    }

    /// Erase a conversation's messages
    ///
    /// At the contact's request: every stored message, transcript and status goes, and
    /// the conversation's key is destroyed. Appointments are not touched.
    ///
    /// Permission: `whatsapp_conversations:manage`.
    #[oai(
        path = "/conversations/:id/messages",
        method = "delete",
        operation_id = "erase_whatsapp_conversation"
    )]
    async fn erase(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<ConversationSummary>> {
        let actor = kernel.authorize(&auth, &perm::CONVERSATIONS_MANAGE).await?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let summary = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let mut conversation = found(conn, id.0).await?;
                    crate::assistant::erase(
                        conn,
                        kernel_ref,
                        actor_ref.tenant_id,
                        &mut conversation,
                    )
                    .await?;
                    audit::record(
                        conn,
                        actor_ref,
                        Access {
                            subject_kind: conversation.patient_id.map(|_| "patient"),
                            subject_id: conversation.patient_id,
                            resource: "whatsapp.messages",
                            action: "erase",
                        },
                    )
                    .await?;
                    summary_of(conn, kernel_ref, actor_ref, id.0).await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(summary))
    }
}

/// One conversation as the list shows it.
async fn summary_of(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    id: Uuid,
) -> Result<ConversationSummary, Error> {
    let page = list_page(conn, kernel, actor, Some(id), None, None, 1).await?;
    page.items.into_iter().next().ok_or(Error::NotFound {
        what: "conversation",
    })
}

/// How the contact told the clinic to stop.
#[derive(Debug, Clone, Object)]
pub struct OptOut {
    /// `in_person`, `paper`, `web`, `whatsapp` or `phone` (the default).
    #[oai(nullable)]
    pub channel: Option<String>,
}

/// The channels a consent decision can come through.
const CHANNELS: [&str; 5] = ["in_person", "paper", "web", "whatsapp", "phone"];

#[derive(Debug, Clone, Object)]
pub struct HandedBack {
    pub id: Uuid,
    pub mode: String,
    pub needs_attention: bool,
}

/// The conversation `id` of the current clinic, or a 404.
async fn found(conn: &mut Conn, id: Uuid) -> Result<store::Conversation, Error> {
    store::conversation(conn, id).await?.ok_or(Error::NotFound {
        what: "conversation",
    })
}

fn page_size(limit: Option<i64>) -> Result<i64, Error> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Error::invalid_query("limit", "from 1 to 100")),
    }
}

type SummaryRow = (
    Uuid,
    Uuid,
    Option<String>,
    Option<String>,
    Option<Uuid>,
    Option<Vec<u8>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    String,
    Option<DateTime<Utc>>,
    bool,
);

async fn list_page(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    only: Option<Uuid>,
    needs_attention: Option<bool>,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<ConversationPage, Error> {
    let mut query = wc::table
        .select((
            wc::id,
            wc::key_subject,
            wc::wa_id,
            wc::user_id,
            wc::patient_id,
            wc::profile_name,
            wc::last_message_at,
            wc::last_inbound_at,
            wc::mode,
            wc::opted_out_at,
            wc::needs_attention,
        ))
        .order((
            wc::needs_attention.desc(),
            wc::last_message_at.desc().nulls_last(),
        ))
        .limit(limit + 1)
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(wc::id.eq(id));
    }
    if let Some(flag) = needs_attention {
        query = query.filter(wc::needs_attention.eq(flag));
    }
    if let Some(before) = before {
        query = query.filter(wc::last_message_at.lt(before));
    }
    let mut rows: Vec<SummaryRow> = query.load(conn).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let subjects: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let ciphers = kernel
        .crypto
        .subjects(conn, actor.tenant_id, &subjects)
        .await?;
    let now = Utc::now();
    let items: Vec<ConversationSummary> = rows
        .into_iter()
        .map(
            |(id, key, wa_id, user_id, patient_id, name, last, inbound, mode, opted, attention)| {
                ConversationSummary {
                    id,
                    wa_id,
                    user_id,
                    patient_id,
                    profile_name: name
                        .zip(ciphers.get(&key))
                        .and_then(|(sealed, c)| store::open_name(c, &sealed)),
                    last_message_at: last,
                    window_open: inbound.is_some_and(|at| now - at < chrono::Duration::hours(24)),
                    mode,
                    opted_out: opted.is_some(),
                    needs_attention: attention,
                }
            },
        )
        .collect();
    let next_before = if more {
        items.last().and_then(|c| c.last_message_at)
    } else {
        None
    };
    Ok(ConversationPage { items, next_before })
}

type MessageRow = (
    Uuid,
    String,
    String,
    Option<Vec<u8>>,
    String,
    String,
    Option<i32>,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
);

async fn messages_of(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    conversation: &store::Conversation,
    limit: i64,
) -> Result<Vec<ConversationMessage>, Error> {
    let mut rows: Vec<MessageRow> = wm::table
        .filter(wm::conversation_id.eq(conversation.id))
        .order((wm::sent_at.desc(), wm::id.desc()))
        .limit(limit)
        .select((
            wm::id,
            wm::direction,
            wm::kind,
            wm::body,
            wm::author,
            wm::status,
            wm::error_code,
            wm::error_detail,
            wm::sent_at,
            wm::status_at,
        ))
        .load(conn)
        .await?;
    rows.reverse();
    let cipher = kernel
        .crypto
        .subject(conn, actor.tenant_id, conversation.key_subject)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, direction, kind, body, author, status, code, detail, sent_at, status_at)| {
                let text = body
                    .zip(cipher.as_ref())
                    .and_then(|(sealed, c)| store::readable(c, &direction, &sealed));
                ConversationMessage {
                    id,
                    direction,
                    kind,
                    text,
                    author,
                    status,
                    error_code: code,
                    error_detail: detail,
                    sent_at,
                    status_at,
                }
            },
        )
        .collect())
}
