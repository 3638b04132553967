//! Delivery of queued messages. A queued message is a row (`pending`) committed with
//! whatever caused it; [`deliver`] claims it (`sending`, under a lease), sends it once
//! through the transport and records Meta's answer: `sent` with its wamid, `pending` again
//! with a later attempt on a temporary failure (429, 5xx, throughput codes), or `failed`,
//! shown to staff, when Meta refuses it for good or the attempts run out. The sweep job
//! picks up what a crash or a full fast path left behind, so a queued message is never
//! lost; the lease keeps two replicas from sending it twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bytea, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::db::{Conn, TenantScope};
use harmony_core::error::Error;
use harmony_core::sql::sql;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::Whatsapp;
use crate::graph::{Outgoing, SendError, WINDOW_CLOSED};
use crate::store;

/// How long a claimed message may stay `sending` before another worker may take it.
pub(crate) const LEASE_SECS: i32 = 60;
/// Messages the sweep takes per run.
const SWEEP_BATCH: i64 = 200;

/// The wait before attempt `attempt + 1`: 5 s, 20 s, 80 s… capped at an hour, or what
/// Meta asked for.
fn backoff(attempt: i32, asked: Option<Duration>) -> chrono::Duration {
    let step = u32::try_from(attempt.clamp(1, 8) - 1).unwrap_or(0);
    let exponential = 5i64.saturating_mul(4i64.saturating_pow(step));
    let seconds = exponential.min(3600);
    let asked = asked.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(3600).min(3600));
    chrono::Duration::seconds(seconds.max(asked))
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    conversation_id: Uuid,
    #[diesel(sql_type = Nullable<Bytea>)]
    body: Option<Vec<u8>>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

/// What a claimed message needs to go out.
pub(crate) struct Ready {
    pub account: crate::graph::Account,
    pub to: crate::graph::Recipient,
    pub message: Outgoing,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// Why a claimed message cannot go out, ever.
pub(crate) struct Undeliverable {
    code: Option<i32>,
    detail: String,
}

/// Sends one queued message of `tenant`, if it is due and nobody else holds it.
pub async fn deliver(kernel: &Kernel, tenant: Uuid, message: Uuid) -> Result<(), Error> {
    let whatsapp = Whatsapp::of(kernel)?;
    let scope = TenantScope::clinic(tenant);
    let claimed = kernel
        .db
        .tenant(scope, |conn| {
            let whatsapp = &*whatsapp;
            async move { claim(conn, kernel, whatsapp, tenant, message).await }.scope_boxed()
        })
        .await?;
    match claimed {
        None => Ok(()),
        Some(ready) => send_now(kernel, tenant, message, ready).await,
    }
}

/// Sends a claimed message, or gives it up when it cannot go out.
pub(crate) async fn send_now(
    kernel: &Kernel,
    tenant: Uuid,
    message: Uuid,
    ready: Result<Ready, Undeliverable>,
) -> Result<(), Error> {
    match ready {
        Ok(ready) => send_claimed(kernel, tenant, message, ready).await,
        Err(refusal) => {
            let scope = TenantScope::clinic(tenant);
            kernel
                .db
                .tenant(scope, |conn| {
                    async move { fail(conn, message, refusal.code, &refusal.detail).await }
                        .scope_boxed()
                })
                .await
        }
    }
}

/// How a claimed message goes out: through the clinic's account (the terminal's, for a
/// local chat) to the contact, as long as the 24-hour window allows it.
pub(crate) fn ready(
    account: Option<crate::graph::Account>,
    local: bool,
    conversation: &store::Conversation,
    message: Outgoing,
    attempts: i32,
) -> Result<Ready, Undeliverable> {
    let undeliverable = |detail: &str| Undeliverable {
        code: None,
        detail: detail.to_owned(),
    };
    let Some(account) = account.or_else(|| local.then(crate::graph::Account::local)) else {
        return Err(undeliverable(
            "the clinic's WhatsApp number or access token is not configured",
        ));
    };
    let Some(to) = conversation.recipient() else {
        return Err(undeliverable("the contact has no WhatsApp id"));
    };
    // Outside the 24-hour window only a template may go; sending anything else would
    // come back as a 131047 anyway.
    let is_template = matches!(message, Outgoing::Template { .. });
    if !is_template && !conversation.window_open(Utc::now()) {
        return Err(Undeliverable {
            code: Some(WINDOW_CLOSED as i32),
            detail: "more than 24 hours since the contact last wrote: only a template can be sent"
                .into(),
        });
    }
    Ok(Ready {
        account,
        to,
        message,
        attempts,
    })
}

/// Sends a message this worker holds (`sending`, under its lease) and records Meta's
/// answer. The assistant queues its replies claimed and sends them itself, sparing the
/// claim's transaction; a crash in between leaves them to the sweep once the lease ends.
pub(crate) async fn send_claimed(
    kernel: &Kernel,
    tenant: Uuid,
    message: Uuid,
    ready: Ready,
) -> Result<(), Error> {
    let whatsapp = Whatsapp::of(kernel)?;
    let scope = TenantScope::clinic(tenant);
    let sent = whatsapp
        .transport
        .send(&ready.account, &ready.to, &ready.message)
        .await;
    let max_attempts = whatsapp.config.max_send_attempts;
    kernel
        .db
        .tenant(scope, |conn| {
            async move {
                match sent {
                    Ok(sent) => record_sent(conn, message, &sent.wamid).await,
                    Err(err) if err.retryable() && ready.attempts < max_attempts => {
                        let asked = match &err {
                            SendError::Refused { retry_after, .. } => *retry_after,
                            SendError::Transport(_) => None,
                        };
                        retry_later(conn, message, &err, backoff(ready.attempts, asked)).await
                    }
                    Err(err) => {
                        let code = err.code().and_then(|c| i32::try_from(c).ok());
                        fail(conn, message, code, &err.to_string()).await
                    }
                }
            }
            .scope_boxed()
        })
        .await
}

/// Takes a due message for sending and reads what sending it needs; `None` when it is not
/// due or another worker holds it.
async fn claim(
    mut conn: &mut Conn,
    kernel: &Kernel,
    whatsapp: &Whatsapp,
    tenant: Uuid,
    message: Uuid,
) -> Result<Option<Result<Ready, Undeliverable>>, Error> {
    let claimed: Option<Claimed> = sql(
        "UPDATE whatsapp_messages SET status = 'sending', attempts = attempts + 1, \
           lease_until = now() + make_interval(secs => $2) \
         WHERE id = $1 AND direction = 'out' AND next_attempt_at <= now() \
           AND (status = 'pending' OR (status = 'sending' AND lease_until < now())) \
         RETURNING conversation_id, body, attempts",
    )
    .bind::<SqlUuid, _>(message)
    .bind::<Integer, _>(LEASE_SECS)
    .get_result(&mut conn)
    .await
    .optional()?;
    let Some(claimed) = claimed else {
        return Ok(None);
    };
    let Some(conversation) = store::conversation(conn, claimed.conversation_id).await? else {
        return Ok(Some(Err(Undeliverable {
            code: None,
            detail: "the conversation is gone".into(),
        })));
    };
    let clinic = whatsapp.clinic(conn, kernel, tenant).await?;
    let cipher = kernel
        .crypto
        .subject(conn, tenant, conversation.key_subject)
        .await?;
    let outgoing = cipher
        .zip(claimed.body)
        .and_then(|(cipher, sealed)| cipher.decrypt(store::BODY_FIELD, &sealed).ok())
        .and_then(|plain| serde_json::from_slice::<Outgoing>(&plain).ok());
    let Some(outgoing) = outgoing else {
        return Ok(Some(Err(Undeliverable {
            code: None,
            detail: "the message was erased before it could be sent".into(),
        })));
    };
    Ok(Some(ready(
        clinic.settings.account(),
        whatsapp.transport.local(),
        &conversation,
        outgoing,
        claimed.attempts,
    )))
}

/// Records Meta's id of a sent message. A status webhook for it may have come first (Meta
/// can be quicker than this commit): the furthest status already received wins.
async fn record_sent(mut conn: &mut Conn, message: Uuid, wamid: &str) -> Result<(), Error> {
    sql(
        "UPDATE whatsapp_messages m SET wamid = $2, lease_until = NULL, next_attempt_at = NULL, \
           status_at = now(), error_code = NULL, error_detail = NULL, \
           status = COALESCE((SELECT s.status FROM whatsapp_statuses s WHERE s.wamid = $2 \
             ORDER BY whatsapp_status_rank(s.status) DESC LIMIT 1), 'sent') \
         WHERE id = $1",
    )
    .bind::<SqlUuid, _>(message)
    .bind::<Text, _>(wamid)
    .execute(&mut conn)
    .await?;
    Ok(())
}

async fn retry_later(
    mut conn: &mut Conn,
    message: Uuid,
    err: &SendError,
    wait: chrono::Duration,
) -> Result<(), Error> {
    let at: DateTime<Utc> = Utc::now() + wait;
    sql(
        "UPDATE whatsapp_messages SET status = 'pending', lease_until = NULL, \
           next_attempt_at = $2, error_code = $3, error_detail = $4, status_at = now() \
         WHERE id = $1",
    )
    .bind::<SqlUuid, _>(message)
    .bind::<Timestamptz, _>(at)
    .bind::<Nullable<Integer>, _>(err.code().and_then(|c| i32::try_from(c).ok()))
    .bind::<Text, _>(clip(&err.to_string()))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Gives a message up as failed and asks staff to look at its conversation.
pub(crate) async fn fail(
    mut conn: &mut Conn,
    message: Uuid,
    code: Option<i32>,
    detail: &str,
) -> Result<(), Error> {
    sql("WITH failed AS ( \
           UPDATE whatsapp_messages SET status = 'failed', lease_until = NULL, \
             next_attempt_at = NULL, error_code = $2, error_detail = $3, status_at = now() \
           WHERE id = $1 RETURNING conversation_id) \
         UPDATE whatsapp_conversations SET needs_attention = true, updated_at = now() \
         WHERE id IN (SELECT conversation_id FROM failed)")
    .bind::<SqlUuid, _>(message)
    .bind::<Nullable<Integer>, _>(code)
    .bind::<Text, _>(clip(detail))
    .execute(&mut conn)
    .await?;
    Ok(())
}

fn clip(text: &str) -> String {
    text.chars().take(1000).collect()
}

/// Delivers every due message of every clinic (the `whatsapp.retry_sends` job): retries
/// whose time has come, and messages a crash or a full fast path left queued.
pub async fn sweep(kernel: &Kernel) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = SqlUuid)]
        tenant_id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let due: Vec<Due> = kernel
        .db
        .system("whatsapp.sweep", |conn| {
            async move {
                sql("SELECT tenant_id, id FROM whatsapp_messages \
                     WHERE status IN ('pending', 'sending') AND next_attempt_at <= now() \
                       AND (lease_until IS NULL OR lease_until < now()) \
                     ORDER BY next_attempt_at LIMIT $1")
                .bind::<diesel::sql_types::BigInt, _>(SWEEP_BATCH)
                .load(conn)
                .await
                .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await?;
    for message in due {
        if let Err(err) = deliver(kernel, message.tenant_id, message.id).await {
            tracing::warn!(error = %err, "a WhatsApp message could not be delivered now");
        }
    }
    Ok(())
}

/// Sends an already queued `message` right away, in the background, when the fast path
/// has room; the sweep sends it otherwise.
pub fn deliver_soon(kernel: &Kernel, tenant: Uuid, message: Uuid) {
    let kernel = kernel.clone();
    if let Ok(whatsapp) = Whatsapp::of(&kernel) {
        whatsapp.spawn_fast(async move {
            if let Err(err) = deliver(&kernel, tenant, message).await {
                tracing::warn!(error = %err, "a WhatsApp message will be retried by the sweep");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn waits_grow_to_an_hour_and_honour_retry_after() {
        let secs = |a, asked| backoff(a, asked).num_seconds();
        assert_eq!(secs(1, None), 5);
        assert_eq!(secs(2, None), 20);
        assert_eq!(secs(3, None), 80);
        assert_eq!(secs(9, None), 3600);
        assert_eq!(secs(1, Some(Duration::from_secs(30))), 30);
        assert_eq!(secs(1, Some(Duration::from_secs(86_400))), 3600);
    }
}
