//! The assistant's loop over one conversation: stored inbound messages are answered one
//! at a time, in order, by one worker (a lease on the conversation, across replicas). For
//! each: who the contact is (a patient found by phone, or asked for their name and
//! registered, with their consent to be contacted recorded), what they said (a voice note
//! transcribed when a provider is configured), the engine's answer through the shared
//! tools, then in one transaction the replies queued, the effects applied, the dialogue
//! state saved and the message marked processed. A message is processed at least once: it
//! stays `received` until its answer is committed.

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::Actor;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::events::Event;
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
    let scope = harmony_core::db::TenantScope {
        tenant_id: event.tenant_id,
        user_id: None,
    };
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
        let Some(work) = next else {
            return Ok(());
        };
        let message = work.message;
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
            let actor = &actor;
            kernel
                .db
                .tenant(actor.scope(), |conn| {
                    async move { commit(conn, kernel, actor, conversation, done).await }
                        .scope_boxed()
                })
                .await
        };
        let queued = match answered.await {
            Ok(queued) => queued,
            Err(err) => {
                // The message stays to answer; the next attempt need not wait for the lease.
                release(kernel, &actor, conversation, &owner).await;
                return Err(err);
            }
        };
        for id in queued {
            sender::deliver_soon(kernel, tenant, id);
        }
    }
}

/// Lets go of a conversation this worker holds (best effort: the lease runs out anyway).
async fn release(kernel: &Kernel, actor: &Actor, conversation: Uuid, owner: &str) {
    let released = kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                diesel::sql_query(
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

async fn next_message(
    mut conn: &mut Conn,
    kernel: &Kernel,
    whatsapp: &Whatsapp,
    actor: &Actor,
    id: Uuid,
    owner: &str,
) -> Result<Option<Work>, Error> {
    let leased = diesel::sql_query(
        "UPDATE whatsapp_conversations SET lease_until = now() + make_interval(secs => $3), \
           lease_owner = $2 \
         WHERE id = $1 AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(owner)
    .bind::<diesel::sql_types::Integer, _>(LEASE_SECS)
    .execute(&mut conn)
    .await?;
    if leased == 0 {
        let exists = store::conversation(conn, id).await?.is_some();
        return if exists {
            Err(Error::conflict(
                "conversation_busy",
                "another worker is answering this conversation",
            ))
        } else {
            Ok(None)
        };
    }
    let row: Option<(Uuid, String, Option<Vec<u8>>, Value)> = wm::table
        .filter(wm::conversation_id.eq(id))
        .filter(wm::direction.eq("in"))
        .filter(wm::status.eq("received"))
        .order((wm::sent_at, wm::id))
        .select((wm::id, wm::kind, wm::body, wm::detail))
        .first(conn)
        .await
        .optional()?;
    let Some((message, kind, body, detail)) = row else {
        diesel::update(wc::table.filter(wc::id.eq(id)))
            .set((
                wc::lease_until.eq(None::<chrono::DateTime<Utc>>),
                wc::lease_owner.eq(None::<String>),
            ))
            .execute(conn)
            .await?;
        return Ok(None);
    };
    let Some(conversation) = store::conversation(conn, id).await? else {
        return Ok(None);
    };
    let cipher = kernel
        .crypto
        .subject(conn, actor.tenant_id, conversation.key_subject)
        .await?;
    let text = body
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
    let clinic = whatsapp.clinic(conn, kernel, actor.tenant_id).await?;
    let (settings, clinic_name) = (clinic.settings.clone(), clinic.name.clone());
    let zone = kernel.zones.zone(conn, actor.tenant_id).await?;
    let today = Utc::now().with_timezone(&zone).date_naive();
    Ok(Some(Work {
        conversation,
        message,
        turn,
        audio,
        patient,
        settings,
        clinic_name,
        zone,
        today,
    }))
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

async fn commit(
    conn: &mut Conn,
    kernel: &Kernel,
    actor: &Actor,
    id: Uuid,
    done: Done,
) -> Result<Vec<Uuid>, Error> {
    let Done {
        message,
        mut answer,
        state,
        registration,
        transcript,
    } = done;
    let tenant = actor.tenant_id;
    let Some(mut conversation) = store::conversation(conn, id).await? else {
        return Ok(Vec::new());
    };
    if let Some(text) = transcript
        && let Some(cipher) = kernel
            .crypto
            .subject(conn, tenant, conversation.key_subject)
            .await?
    {
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
    if !erased {
        diesel::update(wm::table.filter(wm::id.eq(message)))
            .set((wm::status.eq("processed"), wm::status_at.eq(Utc::now())))
            .execute(conn)
            .await?;
    }
    diesel::update(wc::table.filter(wc::id.eq(id)))
        .set((wc::state.eq(state), wc::updated_at.eq(Utc::now())))
        .execute(conn)
        .await?;
    let Some(cipher) = kernel
        .crypto
        .subject(conn, tenant, conversation.key_subject)
        .await?
    else {
        return Ok(Vec::new());
    };
    let mut queued = Vec::new();
    for reply in &answer.replies {
        queued.push(
            store::queue_outbound(
                conn,
                tenant,
                &conversation,
                &cipher,
                reply,
                Origin {
                    author: "assistant",
                    author_user_id: Some(actor.user_id),
                    purpose: "reply",
                },
            )
            .await?,
        );
    }
    Ok(queued)
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
    diesel::sql_query(
        "DELETE FROM whatsapp_statuses WHERE wamid IN \
           (SELECT wamid FROM whatsapp_messages WHERE conversation_id = $1 AND wamid IS NOT NULL \
              AND direction = 'out')",
    )
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
