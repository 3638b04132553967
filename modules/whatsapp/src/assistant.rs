//! The assistant's loop over one conversation: stored inbound messages are answered one
//! at a time, in order, by one worker (a lease on the conversation, across replicas). For
//! each: who the contact is (a patient found by phone, or asked for their name and
//! registered, with their consent to be contacted recorded), what they said (a voice note
//! transcribed when a provider is configured), the engine's answer through the shared
//! tools, then in one transaction the replies queued, the effects applied, the dialogue
//! state saved and the message marked processed. A message is processed at least once: it
//! stays `received` until its answer is committed.

use chrono::DateTime;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use futures::TryFutureExt;
use harmony_core::Kernel;
use harmony_core::auth::Actor;
use harmony_core::crypto::SubjectCipher;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::events::Event;
use harmony_core::sql::sql;
use harmony_patients::service::{self as patients, ConsentDecision, PatientRef};
use scoped_futures::ScopedFutureExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::engine::{Answer, Effect, Tools, Turn};
use crate::schema::{whatsapp_conversations as wc, whatsapp_messages as wm};
use crate::store::{self, Conversation, Origin};
use crate::{Whatsapp, sender};

/// How long a worker holds a conversation between two of its messages.
const LEASE_SECS: i32 = 120;
/// The policy version the WhatsApp consent is recorded under.
pub(crate) const POLICY_VERSION: &str = "whatsapp-2026-12";
/// The consent purpose of being contacted through WhatsApp.
pub(crate) const PURPOSE: &str = "whatsapp_contact";

/// The `whatsapp.message_received` subscriber.
pub async fn on_message_event(kernel: &Kernel, event: &Event) -> anyhow::Result<()> {
    let id = |key: &str| {
        event.payload[key]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    let (Some(conversation), Some(message)) = (id("conversation_id"), id("message_id")) else {
        return Ok(());
    };
    // Usually the fast path answered it already: one read says so.
    let scope = harmony_core::db::TenantScope::clinic(event.tenant_id);
    let waiting = kernel
        .db
        .tenant_read(scope, |conn| {
            async move {
                let mut c = conn;
                wm::table
                    .filter(wm::id.eq(message))
                    .filter(wm::status.eq("received"))
                    .count()
                    .get_result::<i64>(&mut c)
                    .await
                    .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await?;
    if waiting > 0 {
        process(kernel, event.tenant_id, conversation).await?;
    }
    Ok(())
}

/// Answers every stored message of the conversation not yet answered. A conversation
/// another worker holds is a 409 (the outbox tries again later).
pub async fn process(kernel: &Kernel, tenant: Uuid, conversation: Uuid) -> Result<(), Error> {
    let whatsapp = Whatsapp::of(kernel)?;
    let actor = whatsapp.assistant(kernel, tenant).await?;
    let owner = Uuid::now_v7().to_string();
    loop {
        let next = {
            let (actor, owner, whatsapp) = (&actor, owner.as_str(), &*whatsapp);
            kernel
                .db
                .tenant(actor.scope(), |conn| {
                    async move {
                        next_message(conn, kernel, whatsapp, actor, conversation, owner).await
                    }
                    .scope_boxed()
                })
                .await?
        };
        let Some((work, cipher)) = next else {
            return Ok(());
        };
        let (message, leased) = (work.message, work.conversation.clone());
        let account = work.settings.account();
        let answered = async {
            let (answer, state, registration, transcript) =
                answer(kernel, &whatsapp, &actor, work).await?;
            let done = Done {
                message,
                answer,
                state,
                registration,
                transcript,
            };
            let (actor, leased, cipher) = (&actor, &leased, cipher.as_ref());
            kernel
                .db
                .tenant(actor.scope(), |conn| {
                    async move { commit(conn, kernel, actor, leased, cipher, done).await }
                        .scope_boxed()
                })
                .await
        };
        let committed = match answered.await {
            Ok(committed) => committed,
            Err(err) => {
                // The message stays to answer; the next attempt need not wait for the lease.
                release(kernel, &actor, conversation, &owner).await;
                return Err(err);
            }
        };
        // The replies go out in order, before the next message is read.
        let local = whatsapp.transport.local();
        for (id, reply) in committed.replies {
            let ready = sender::ready(account.clone(), local, &committed.conversation, reply, 1);
            if let Err(err) = sender::send_now(kernel, tenant, id, ready).await {
                tracing::warn!(error = %err, "a WhatsApp reply will be retried by the sweep");
            }
        }
        if !committed.more {
            return Ok(());
        }
    }
}

/// Lets go of a conversation this worker holds (best effort: the lease runs out anyway).
async fn release(kernel: &Kernel, actor: &Actor, conversation: Uuid, owner: &str) {
    let released = kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                sql(
                    "UPDATE whatsapp_conversations SET lease_until = NULL, lease_owner = NULL \
                     WHERE id = $1 AND lease_owner = $2",
                )
                .bind::<SqlUuid, _>(conversation)
                .bind::<Text, _>(owner)
                .execute(conn)
                .await
                .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await;
    if let Err(err) = released {
        tracing::warn!(error = %err, "a conversation's lease could not be released");
    }
}

/// One message to answer, with what answering it needs.
struct Work {
    conversation: Conversation,
    message: Uuid,
    turn: Option<Turn>,
    /// A voice note to transcribe first: (media id, MIME type).
    audio: Option<(String, String)>,
    patient: Option<PatientRef>,
    settings: store::Settings,
    clinic_name: String,
    zone: chrono_tz::Tz,
    today: chrono::NaiveDate,
}

/// Takes the conversation's lease and reads its next message to answer, with the
/// conversation and its key, in one statement; then who the contact is.
async fn next_message(
    conn: &mut Conn,
    kernel: &Kernel,
    whatsapp: &Whatsapp,
    actor: &Actor,
    id: Uuid,
    owner: &str,
) -> Result<Option<(Work, Option<SubjectCipher>)>, Error> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Nullable<Text>)]
        wa_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        user_id: Option<String>,
        #[diesel(sql_type = Nullable<SqlUuid>)]
        patient_id: Option<Uuid>,
        #[diesel(sql_type = SqlUuid)]
        key_subject: Uuid,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        last_inbound_at: Option<DateTime<Utc>>,
        #[diesel(sql_type = Text)]
        mode: String,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        opted_out_at: Option<DateTime<Utc>>,
        #[diesel(sql_type = Jsonb)]
        state: Value,
        #[diesel(sql_type = Nullable<Bytea>)]
        wrapped_key: Option<Vec<u8>>,
        #[diesel(sql_type = Nullable<SqlUuid>)]
        message_id: Option<Uuid>,
        #[diesel(sql_type = Nullable<Text>)]
        kind: Option<String>,
        #[diesel(sql_type = Nullable<Bytea>)]
        body: Option<Vec<u8>>,
        #[diesel(sql_type = Nullable<Jsonb>)]
        detail: Option<Value>,
    }
    // Taking the lease need not wait for the disk: lost in a crash, it only means the
    // conversation is free again, and whatever is committed later flushes it first.
    let next: Option<Next> = sql("WITH leased AS ( \
           UPDATE whatsapp_conversations SET \
             lease_until = now() + make_interval(secs => $3), lease_owner = $2 \
           WHERE id = $1 AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2) \
           RETURNING tenant_id, id, wa_id, user_id, patient_id, key_subject, last_inbound_at, \
             mode, opted_out_at, state \
         ) \
         SELECT l.wa_id, l.user_id, l.patient_id, l.key_subject, l.last_inbound_at, l.mode, \
           l.opted_out_at, l.state, d.wrapped_key, m.id AS message_id, m.kind, m.body, m.detail, \
           set_config('synchronous_commit', 'off', true) AS durability \
         FROM leased l \
         LEFT JOIN data_keys d ON d.tenant_id = l.tenant_id AND d.subject_id = l.key_subject \
         LEFT JOIN LATERAL ( \
           SELECT id, kind, body, detail FROM whatsapp_messages \
           WHERE tenant_id = l.tenant_id AND conversation_id = l.id AND direction = 'in' \
             AND status = 'received' \
           ORDER BY sent_at, id LIMIT 1) m ON true")
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(owner)
    .bind::<diesel::sql_types::Integer, _>(LEASE_SECS)
    .get_result(conn)
    .await
    .optional()?;
    let Some(next) = next else {
        let exists = store::conversation(conn, id).await?.is_some();
        return if exists {
            Err(Error::conflict(
                "conversation_busy",
                "another worker is answering this conversation",
            ))
        } else {
            Ok(None)
        };
    };
    let (Some(message), Some(kind)) = (next.message_id, next.kind) else {
        // Answered already (the fast path and the outbox both came).
        diesel::update(wc::table.filter(wc::id.eq(id)))
            .set((
                wc::lease_until.eq(None::<DateTime<Utc>>),
                wc::lease_owner.eq(None::<String>),
            ))
            .execute(conn)
            .await?;
        return Ok(None);
    };
    let tenant = actor.tenant_id;
    let cipher = match next.wrapped_key {
        Some(wrapped) => {
            kernel
                .crypto
                .open_wrapped(conn, tenant, next.key_subject, Some(wrapped))
                .await?
        }
        // No key yet, or destroyed (then `None`: nothing can be read or sealed).
        None => {
            kernel
                .crypto
                .subject(conn, tenant, next.key_subject)
                .await?
        }
    };
    let conversation = Conversation {
        id,
        wa_id: next.wa_id,
        user_id: next.user_id,
        patient_id: next.patient_id,
        key_subject: next.key_subject,
        last_inbound_at: next.last_inbound_at,
        mode: next.mode,
        opted_out: next.opted_out_at.is_some(),
        state: next.state,
    };
    let detail = next.detail.unwrap_or_default();
    let text = next
        .body
        .zip(cipher.as_ref())
        .and_then(|(sealed, c)| c.decrypt_text(store::BODY_FIELD, &sealed).ok());
    let audio = (kind == "audio")
        .then(|| {
            Some((
                detail["media_id"].as_str()?.to_owned(),
                detail["mime_type"]
                    .as_str()
                    .unwrap_or("audio/ogg")
                    .to_owned(),
            ))
        })
        .flatten();
    let turn = text.map(|text| Turn {
        text,
        choice: detail["choice"].as_str().map(str::to_owned),
    });
    let patient = match conversation.patient_id {
        Some(p) => patients::find_by_id(conn, p).await?,
        None => match &conversation.wa_id {
            Some(wa_id) => patients::find_by_phone(conn, wa_id).await?,
            None => None,
        },
    };
    let clinic = whatsapp.clinic(conn, kernel, tenant).await?;
    let (settings, clinic_name) = (clinic.settings.clone(), clinic.name.clone());
    let zone = kernel.zones.zone(conn, tenant).await?;
    let today = Utc::now().with_timezone(&zone).date_naive();
    let work = Work {
        conversation,
        message,
        turn,
        audio,
        patient,
        settings,
        clinic_name,
        zone,
        today,
    };
    Ok(Some((work, cipher)))
}

/// What answering one message came to, to commit.
struct Done {
    message: Uuid,
    answer: Answer,
    state: Value,
    /// Who the contact turned out to be (registered now, or found).
    registration: Option<Registration>,
    /// The text of a voice note, to keep (sealed) instead of the audio.
    transcript: Option<String>,
}

type Answered = (Answer, Value, Option<Registration>, Option<String>);

/// What to do about one message: the answer, the new dialogue state, the patient the
/// contact turned out to be, and the transcript of a voice note.
async fn answer(
    kernel: &Kernel,
    whatsapp: &Whatsapp,
    actor: &Actor,
    work: Work,
) -> Result<Answered, Error> {
    let mut state = work.conversation.state.clone();
    // Staff took over, or the clinic switched the assistant off (a terminal chat needs
    // no settings): it only keeps count.
    let switched_on = work.settings.enabled || whatsapp.transport.local();
    if work.conversation.mode == "staff" || !switched_on {
        return Ok((Answer::default(), state, None, None));
    }
    let mut transcript = None;
    let turn = match (work.turn, &work.audio) {
        (Some(turn), _) => turn,
        (None, Some((media, mime))) => {
            match transcribe(whatsapp, &work.settings, media, mime).await {
                Some(text) => {
                    transcript = Some(text.clone());
                    Turn { text, choice: None }
                }
                None => {
                    return Ok((
                        Answer::say(
                            "Desculpe, ainda não consigo ouvir áudios por aqui. Pode me escrever \
                         sua mensagem?",
                        ),
                        state,
                        None,
                        None,
                    ));
                }
            }
        }
        (None, None) => {
            return Ok((
                Answer::say("Por aqui eu só consigo ler mensagens de texto. Pode me escrever?"),
                state,
                None,
                None,
            ));
        }
    };
    // Someone new: their name first.
    let (patient, registration) = match work.patient {
        Some(p) => (Some(p.clone()), Some(Registration::Found(p.id))),
        None => {
            let Some(wa_id) = work.conversation.wa_id.as_deref() else {
                let mut answer = Answer::say(
                    "Olá! Vou pedir para alguém da equipe continuar o seu atendimento por aqui.",
                );
                answer.effects.push(Effect::Handoff);
                return Ok((answer, state, None, transcript));
            };
            if state["asked_name"] != json!(true) {
                state = json!({ "asked_name": true });
                return Ok((
                    Answer::say(format!(
                        "Olá! Sou a assistente virtual da {}. Para te atender, qual é o seu \
                         nome completo?",
                        work.clinic_name
                    )),
                    state,
                    None,
                    transcript,
                ));
            }
            let name = turn.text.trim();
            let plausible = name.chars().filter(|c| c.is_alphabetic()).count() >= 2
                && name.chars().count() <= 120
                && !name.chars().any(|c| c.is_ascii_digit());
            if !plausible {
                return Ok((
                    Answer::say("Desculpe, não entendi. Qual é o seu nome completo?"),
                    state,
                    None,
                    transcript,
                ));
            }
            return Ok((
                Answer::default(),
                json!({}),
                Some(Registration::New {
                    name: name.to_owned(),
                    phone: format!("+{wa_id}"),
                }),
                transcript,
            ));
        }
    };
    let tools = Tools {
        kernel,
        actor,
        patient,
        zone: work.zone,
        today: work.today,
        clinic_name: work.clinic_name,
        address: work.settings.address.clone(),
        opening_hours: work.settings.opening_hours.clone(),
    };
    let answer = whatsapp.engine.answer(&tools, &mut state, &turn).await?;
    Ok((answer, state, registration, transcript))
}

/// Who the contact is, as found while answering.
enum Registration {
    Found(Uuid),
    /// To register now: the name they gave, their phone.
    New {
        name: String,
        phone: String,
    },
}

async fn transcribe(
    whatsapp: &Whatsapp,
    settings: &store::Settings,
    media: &str,
    mime: &str,
) -> Option<String> {
    let ai = whatsapp.openai.as_ref()?;
    let account = settings.account()?;
    let audio = match whatsapp.transport.media(&account, media).await {
        Ok(audio) => audio,
        Err(err) => {
            tracing::warn!(error = %err, "a voice note could not be downloaded");
            return None;
        }
    };
    // The audio lives only in this function: it is never stored.
    match ai.transcribe(audio, mime).await {
        Ok(text) if !text.trim().is_empty() => Some(text),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(error = %err, "a voice note could not be transcribed");
            None
        }
    }
}

/// What committing an answer came to: the replies to send now (claimed), the
/// conversation as the answer left it, and whether another message waits.
struct Committed {
    replies: Vec<(Uuid, crate::graph::Outgoing)>,
    conversation: Conversation,
    more: bool,
}

/// Commits an answer: the contact registered or linked, the effects applied, the message
/// marked processed, the dialogue state saved, the replies queued (claimed for sending by
/// this worker) and, when no other message waits, the lease let go.
async fn commit(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    leased: &Conversation,
    cipher: Option<&SubjectCipher>,
    done: Done,
) -> Result<Committed, Error> {
    let Done {
        message,
        mut answer,
        state,
        registration,
        transcript,
    } = done;
    let tenant = actor.tenant_id;
    let id = leased.id;
    let mut conversation = leased.clone();
    if let (Some(text), Some(cipher)) = (transcript, cipher) {
        // The transcript is kept, sealed; the audio never was, and its id goes too.
        diesel::update(wm::table.filter(wm::id.eq(message)))
            .set((
                wm::body.eq(Some(cipher.encrypt(store::BODY_FIELD, text.as_bytes()))),
                wm::detail.eq(json!({ "transcribed": true })),
            ))
            .execute(conn)
            .await?;
    }
    match registration {
        Some(Registration::Found(patient)) if conversation.patient_id.is_none() => {
            link(conn, id, patient).await?;
        }
        Some(Registration::New { name, phone }) => {
            let patient = match patients::create_minimal(conn, kernel, actor, &name, &phone).await {
                Ok(p) => p,
                // Registered meanwhile (by staff, say): that is who they are.
                Err(Error::Conflict { extra, .. }) => {
                    let existing = extra
                        .as_ref()
                        .and_then(|e| e["existing_id"].as_str())
                        .and_then(|s| s.parse::<Uuid>().ok())
                        .ok_or(Error::NotFound { what: "patient" })?;
                    patients::find_by_id(conn, existing)
                        .await?
                        .ok_or(Error::NotFound { what: "patient" })?
                }
                Err(other) => return Err(other),
            };
            link(conn, id, patient.id).await?;
            // Writing to the clinic is the consent to be answered here.
            patients::record_consent(
                conn,
                kernel,
                actor,
                patient.id,
                ConsentDecision {
                    purpose: PURPOSE,
                    granted: true,
                    policy_version: POLICY_VERSION,
                    channel: "whatsapp",
                    evidence: Some(json!({ "message_id": message })),
                },
            )
            .await?;
            conversation.patient_id = Some(patient.id);
            answer = Answer::say(format!(
                "Obrigada, {}! Como posso te ajudar? Posso mostrar horários livres e agendar, \
                 confirmar, remarcar ou cancelar consultas.",
                patient.first_name
            ));
        }
        _ => {}
    }
    let mut erased = false;
    for effect in &answer.effects {
        match effect {
            Effect::Handoff => {
                diesel::update(wc::table.filter(wc::id.eq(id)))
                    .set((
                        wc::mode.eq("staff"),
                        wc::needs_attention.eq(true),
                        wc::handoff_requested_at.eq(Some(Utc::now())),
                    ))
                    .execute(conn)
                    .await?;
            }
            Effect::OptOut | Effect::OptIn => {
                let out = *effect == Effect::OptOut;
                diesel::update(wc::table.filter(wc::id.eq(id)))
                    .set(wc::opted_out_at.eq(out.then(Utc::now)))
                    .execute(conn)
                    .await?;
                if let Some(patient) = conversation.patient_id {
                    let decided = patients::record_consent(
                        conn,
                        kernel,
                        actor,
                        patient,
                        ConsentDecision {
                            purpose: PURPOSE,
                            granted: !out,
                            policy_version: POLICY_VERSION,
                            channel: "whatsapp",
                            evidence: Some(json!({ "message_id": message })),
                        },
                    )
                    .await;
                    match decided {
                        Ok(()) | Err(Error::Conflict { .. }) => {}
                        Err(other) => return Err(other),
                    }
                }
            }
            Effect::Erase => {
                erase(conn, kernel, tenant, &mut conversation).await?;
                erased = true;
            }
        }
    }
    // After an erasure, what comes next is sealed under the conversation's new key.
    let renewed;
    let cipher = if erased {
        renewed = kernel
            .crypto
            .subject(conn, tenant, conversation.key_subject)
            .await?;
        renewed.as_ref()
    } else {
        cipher
    };
    #[derive(QueryableByName)]
    struct Finished {
        #[diesel(sql_type = SqlUuid)]
        key_subject: Uuid,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        more: bool,
    }
    let replying = cipher.is_some() && !answer.replies.is_empty();
    let finish = sql("WITH done AS ( \
           UPDATE whatsapp_messages SET status = 'processed', status_at = now() \
           WHERE id = $2 AND status = 'received' RETURNING id \
         ), waiting AS ( \
           SELECT EXISTS (SELECT 1 FROM whatsapp_messages WHERE conversation_id = $1 \
             AND direction = 'in' AND status = 'received' AND id <> $2) AS more \
         ) \
         UPDATE whatsapp_conversations c SET state = $3, updated_at = now(), \
           last_message_at = CASE WHEN $4 THEN now() ELSE c.last_message_at END, \
           lease_until = CASE WHEN w.more THEN c.lease_until END, \
           lease_owner = CASE WHEN w.more THEN c.lease_owner END \
         FROM waiting w WHERE c.id = $1 RETURNING c.key_subject, w.more")
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(message)
    .bind::<Jsonb, _>(state)
    .bind::<diesel::sql_types::Bool, _>(replying);
    let origin = Origin {
        author: "assistant",
        author_user_id: Some(actor.user_id),
        purpose: "reply",
    };
    let shared: &Conn = conn;
    let queued = cipher.map_or_else(Vec::new, |cipher| {
        answer
            .replies
            .iter()
            .map(|reply| {
                let lease = Some(i64::from(sender::LEASE_SECS));
                store::insert_outbound(shared, tenant, id, cipher, reply, origin, lease)
            })
            .collect()
    });
    let mut finishing = shared;
    let (finished, ids) = futures::try_join!(
        finish
            .get_result::<Finished>(&mut finishing)
            .map_err(Error::from),
        futures::future::try_join_all(queued),
    )?;
    if finished.key_subject != conversation.key_subject {
        return Err(Error::conflict(
            "conversation_erased",
            "the conversation was erased while its message was being answered",
        ));
    }
    Ok(Committed {
        replies: ids.into_iter().zip(answer.replies).collect(),
        conversation,
        more: finished.more,
    })
}

async fn link(conn: &mut Conn, conversation: Uuid, patient: Uuid) -> Result<(), Error> {
    diesel::update(wc::table.filter(wc::id.eq(conversation)))
        .set(wc::patient_id.eq(Some(patient)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Erases a conversation's history: its messages and statuses go, its key is destroyed
/// (anything copied elsewhere stays unreadable) and a new key serves what comes next.
pub(crate) async fn erase(
    mut conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    conversation: &mut Conversation,
) -> Result<(), Error> {
    sql("DELETE FROM whatsapp_statuses WHERE wamid IN \
           (SELECT wamid FROM whatsapp_messages WHERE conversation_id = $1 AND wamid IS NOT NULL \
              AND direction = 'out')")
    .bind::<SqlUuid, _>(conversation.id)
    .execute(&mut conn)
    .await?;
    diesel::delete(wm::table.filter(wm::conversation_id.eq(conversation.id)))
        .execute(conn)
        .await?;
    kernel
        .crypto
        .shred(conn, tenant, conversation.key_subject)
        .await?;
    let key = Uuid::now_v7();
    diesel::update(wc::table.filter(wc::id.eq(conversation.id)))
        .set((
            wc::key_subject.eq(key),
            wc::profile_name.eq(None::<Vec<u8>>),
            wc::state.eq(json!({})),
        ))
        .execute(conn)
        .await?;
    conversation.key_subject = key;
    Ok(())
}

/// Answers a conversation right away in the background, when the fast path has room (the
/// outbox event does it otherwise).
pub fn process_soon(kernel: &Kernel, tenant: Uuid, conversation: Uuid) {
    let kernel = kernel.clone();
    if let Ok(whatsapp) = Whatsapp::of(&kernel) {
        whatsapp.spawn_fast(async move {
            match process(&kernel, tenant, conversation).await {
                Ok(()) | Err(Error::Conflict { .. }) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "a conversation will be answered from the outbox");
                }
            }
        });
    }
}
