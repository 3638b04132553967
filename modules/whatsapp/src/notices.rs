//! Messages the clinic sends first: the confirmation of a visit booked or moved by the
//! clinic, reminders before it (by default 24 h and 2 h, per clinic), and the waitlist's
//! "a time has freed up". Each goes out once per appointment, kind and start: a notice row
//! is inserted with the queued message in one transaction, so overlapping ticks and
//! replicas racing send nothing twice, and a reschedule (a new start) earns new ones.
//!
//! Only to patients who consent to WhatsApp contact and did not stop messages; inside the
//! 24-hour window as a message with buttons (Confirmar / Remarcar / Cancelar), outside it
//! as the clinic's approved template, or not at all when it has none.

use chrono::{DateTime, Duration, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_agenda::service::{self as agenda, Appointment};
use harmony_core::Kernel;
use harmony_core::db::{Conn, TenantScope};
use harmony_core::error::Error;
use harmony_core::events::Event;
use harmony_core::sql::sql;
use harmony_patients::service as patients;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::engine::describe_local;
use crate::graph::Outgoing;
use crate::sender;
use crate::store::{self, ContactKey, Origin, Template};

/// Appointments one clinic's reminder run looks at.
const BATCH: i64 = 500;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Confirmation,
    Reminder(i32),
}

impl Kind {
    fn key(self) -> String {
        match self {
            Kind::Confirmation => "confirmation".into(),
            Kind::Reminder(minutes) => format!("reminder:{minutes}"),
        }
    }
}

/// The `whatsapp.send_reminders` job: every clinic's due reminders.
pub async fn send_reminders(kernel: &Kernel) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Clinic {
        #[diesel(sql_type = SqlUuid)]
        tenant_id: Uuid,
    }
    let clinics: Vec<Clinic> = kernel
        .db
        .system("whatsapp.reminders", |conn| {
            async move {
                sql("SELECT tenant_id FROM whatsapp_settings \
                     WHERE enabled AND phone_number_id IS NOT NULL AND access_token IS NOT NULL")
                .load(conn)
                .await
                .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await?;
    for clinic in clinics {
        if let Err(err) = remind_clinic(kernel, clinic.tenant_id).await {
            tracing::warn!(error = %err, "reminders of a clinic failed this run");
        }
    }
    Ok(())
}

/// One clinic's due reminders. For each appointment only the nearest due reminder goes
/// out; the earlier ones it overtook (a visit booked two hours ahead gets no 24-hour
/// reminder) are recorded as passed.
pub async fn remind_clinic(kernel: &Kernel, tenant: Uuid) -> Result<(), Error> {
    let scope = TenantScope::clinic(tenant);
    let queued = kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let settings = store::settings(conn, kernel, tenant).await?;
                let Some(longest) = settings.reminder_offsets_minutes.iter().max().copied() else {
                    return Ok::<_, Error>(Vec::new());
                };
                let now = Utc::now();
                let due = agenda::starting_between(
                    conn,
                    kernel,
                    tenant,
                    now,
                    now + Duration::minutes(i64::from(longest)),
                    BATCH,
                )
                .await?;
                let mut queued = Vec::new();
                for appointment in &due {
                    let start = appointment.start.with_timezone(&Utc);
                    let mut offsets: Vec<i32> = settings
                        .reminder_offsets_minutes
                        .iter()
                        .copied()
                        .filter(|m| start - now <= Duration::minutes(i64::from(*m)))
                        .collect();
                    offsets.sort_unstable();
                    let Some((&nearest, overtaken)) = offsets.split_first() else {
                        continue;
                    };
                    for &m in overtaken {
                        claim(conn, appointment.id, Kind::Reminder(m), start).await?;
                    }
                    if let Some(id) = notify(
                        conn,
                        kernel,
                        tenant,
                        &settings,
                        appointment,
                        Kind::Reminder(nearest),
                    )
                    .await?
                    {
                        queued.push(id);
                    }
                }
                Ok(queued)
            }
            .scope_boxed()
        })
        .await?;
    for id in queued {
        sender::deliver_soon(kernel, tenant, id);
    }
    Ok(())
}

/// The `whatsapp.notices` subscriber: confirmations of visits the clinic booked or moved,
/// and waitlist offers.
pub async fn on_agenda_event(kernel: &Kernel, event: &Event) -> anyhow::Result<()> {
    let tenant = event.tenant_id;
    let payload = &event.payload;
    let scope = TenantScope::clinic(tenant);
    let queued = match event.topic.as_str() {
        "appointment.booked" | "appointment.rescheduled" => {
            // The assistant already answered a patient who booked through it.
            if payload["by"] == "patient" {
                return Ok(());
            }
            let Some(id) = payload["appointment_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                return Ok(());
            };
            kernel
                .db
                .tenant(scope, |conn| {
                    async move {
                        let settings = store::settings(conn, kernel, tenant).await?;
                        if !settings.enabled || settings.account().is_none() {
                            return Ok::<_, Error>(None);
                        }
                        let Some(appointment) = agenda::visits_by_id(conn, kernel, tenant, &[id])
                            .await?
                            .pop()
                        else {
                            return Ok(None);
                        };
                        if !matches!(appointment.status.as_str(), "scheduled" | "confirmed")
                            || appointment.start.with_timezone(&Utc) <= Utc::now()
                        {
                            return Ok(None);
                        }
                        notify(
                            conn,
                            kernel,
                            tenant,
                            &settings,
                            &appointment,
                            Kind::Confirmation,
                        )
                        .await
                    }
                    .scope_boxed()
                })
                .await?
        }
        "waitlist.slot_available" => {
            kernel
                .db
                .tenant(scope, |conn| {
                    async move { waitlist_offer(conn, kernel, tenant, payload).await }.scope_boxed()
                })
                .await?
        }
        _ => None,
    };
    if let Some(id) = queued {
        sender::deliver_soon(kernel, tenant, id);
    }
    Ok(())
}

/// Records that the notice `kind` of `appointment` at `start` is handled; false when it
/// already was (by this run, an earlier one, or another replica).
async fn claim(
    mut conn: &mut Conn,
    appointment: Uuid,
    kind: Kind,
    start: DateTime<Utc>,
) -> Result<bool, Error> {
    let inserted = sql(
        "INSERT INTO whatsapp_notices (tenant_id, appointment_id, kind, starts_at) \
         VALUES (app_current_tenant(), $1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(appointment)
    .bind::<Text, _>(kind.key())
    .bind::<Timestamptz, _>(start)
    .execute(&mut conn)
    .await?;
    Ok(inserted == 1)
}

/// Where a notice for `patient` goes, if it may go at all: their conversation (opened from
/// their phone when they never wrote), when they consent and did not stop messages.
async fn reachable(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    patient: Uuid,
) -> Result<Option<store::Conversation>, Error> {
    if !patients::has_consent(conn, patient, "whatsapp_contact").await? {
        return Ok(None);
    }
    let conversation = match store::conversation_of_patient(conn, patient).await? {
        Some(c) => c,
        None => {
            let Some(phone) = patients::contact_phone(conn, patient).await? else {
                return Ok(None);
            };
            let wa_id = phone.trim_start_matches('+').to_owned();
            let (id, _) = store::conversation_for(
                conn,
                kernel,
                tenant,
                &ContactKey {
                    wa_id: Some(&wa_id),
                    user_id: None,
                },
            )
            .await?;
            sql("UPDATE whatsapp_conversations SET patient_id = $2 \
                 WHERE id = $1 AND patient_id IS NULL")
            .bind::<SqlUuid, _>(id)
            .bind::<SqlUuid, _>(patient)
            .execute(&mut *conn)
            .await?;
            match store::conversation(conn, id).await? {
                Some(c) => c,
                None => return Ok(None),
            }
        }
    };
    Ok((!conversation.opted_out).then_some(conversation))
}

/// Claims and queues one notice about an appointment; the id of the queued message, or
/// `None` when it was handled before or cannot go (no consent, stopped, window closed
/// without a template).
async fn notify(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    settings: &store::Settings,
    appointment: &Appointment,
    kind: Kind,
) -> Result<Option<Uuid>, Error> {
    let start = appointment.start.with_timezone(&Utc);
    if !claim(conn, appointment.id, kind, start).await? {
        return Ok(None);
    }
    let Some(conversation) = reachable(conn, kernel, tenant, appointment.patient_id).await? else {
        return Ok(None);
    };
    let Some(patient) = patients::find_by_id(conn, appointment.patient_id).await? else {
        return Ok(None);
    };
    let services: Vec<&str> = appointment
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let services = services.join(" + ");
    let when = describe_local(appointment.start);
    let buttons = vec![
        (
            format!("appt:{}:confirm", appointment.id),
            "Confirmar".to_owned(),
        ),
        (
            format!("appt:{}:reschedule", appointment.id),
            "Remarcar".to_owned(),
        ),
        (
            format!("appt:{}:cancel", appointment.id),
            "Cancelar".to_owned(),
        ),
    ];
    let (text, template) = match kind {
        Kind::Confirmation => (
            format!(
                "Olá, {}! Sua consulta de {services} está marcada para {when}. Podemos confirmar?",
                patient.first_name
            ),
            settings.templates.confirmation.as_ref(),
        ),
        Kind::Reminder(_) => (
            format!(
                "Olá, {}! Lembrete: {services} {when}. Você confirma a sua presença?",
                patient.first_name
            ),
            settings.templates.reminder.as_ref(),
        ),
    };
    let message = if conversation.window_open(Utc::now()) {
        Outgoing::Buttons {
            body: text,
            buttons,
        }
    } else {
        match template {
            Some(template) => filled(
                template,
                &patient.first_name,
                &services,
                appointment,
                &buttons,
            ),
            None => {
                tracing::info!(
                    kind = %kind.key(),
                    "a notice was not sent: the window is closed and the clinic has no template"
                );
                return Ok(None);
            }
        }
    };
    let purpose = match kind {
        Kind::Confirmation => "confirmation",
        Kind::Reminder(_) => "reminder",
    };
    let Some(id) = queue(conn, kernel, tenant, &conversation, &message, purpose).await? else {
        return Ok(None);
    };
    sql("UPDATE whatsapp_notices SET message_id = $1 \
         WHERE appointment_id = $2 AND kind = $3 AND starts_at = $4")
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(appointment.id)
    .bind::<Text, _>(kind.key())
    .bind::<Timestamptz, _>(start)
    .execute(&mut *conn)
    .await?;
    Ok(Some(id))
}

/// A template with the contract's named parameters and the buttons' payloads.
fn filled(
    template: &Template,
    first_name: &str,
    services: &str,
    appointment: &Appointment,
    buttons: &[(String, String)],
) -> Outgoing {
    Outgoing::Template {
        name: template.name.clone(),
        language: template.language.clone(),
        parameters: vec![
            ("nome".into(), first_name.to_owned()),
            ("servico".into(), services.to_owned()),
            ("data".into(), appointment.start.format("%d/%m").to_string()),
            ("hora".into(), appointment.start.format("%H:%M").to_string()),
        ],
        quick_replies: buttons.iter().map(|(id, _)| id.clone()).collect(),
    }
}

/// "A time has freed up" for a waitlist entry, once per entry and start.
async fn waitlist_offer(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    payload: &serde_json::Value,
) -> Result<Option<Uuid>, Error> {
    let entry = payload["waitlist_entry_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok());
    let patient = payload["patient_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok());
    let start = payload["start"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    let (Some(entry), Some(patient), Some(start)) = (entry, patient, start) else {
        return Ok(None);
    };
    let settings = store::settings(conn, kernel, tenant).await?;
    if !settings.enabled || settings.account().is_none() {
        return Ok(None);
    }
    let inserted = sql(
        "INSERT INTO whatsapp_notices (tenant_id, appointment_id, kind, starts_at) \
         VALUES (app_current_tenant(), $1, 'waitlist', $2) ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(entry)
    .bind::<Timestamptz, _>(start.with_timezone(&Utc))
    .execute(&mut *conn)
    .await?;
    if inserted == 0 {
        return Ok(None);
    }
    let Some(conversation) = reachable(conn, kernel, tenant, patient).await? else {
        return Ok(None);
    };
    let Some(person) = patients::find_by_id(conn, patient).await? else {
        return Ok(None);
    };
    let zone = kernel.zones.zone(conn, tenant).await?;
    let local = start.with_timezone(&zone).fixed_offset();
    let message = if conversation.window_open(Utc::now()) {
        Outgoing::text(format!(
            "Olá, {}! Abriu um horário em {}, que você esperava na lista de espera. Se quiser, \
             responda \"quero agendar\" e eu te mostro os horários.",
            person.first_name,
            describe_local(local)
        ))
    } else {
        match &settings.templates.waitlist {
            Some(t) => Outgoing::Template {
                name: t.name.clone(),
                language: t.language.clone(),
                parameters: vec![
                    ("nome".into(), person.first_name.clone()),
                    ("data".into(), local.format("%d/%m").to_string()),
                    ("hora".into(), local.format("%H:%M").to_string()),
                ],
                quick_replies: Vec::new(),
            },
            None => return Ok(None),
        }
    };
    queue(conn, kernel, tenant, &conversation, &message, "waitlist").await
}

/// Queues a message the clinic's automations send, sealed under the conversation's key
/// (`None` when the key was destroyed: nothing can go to it).
async fn queue(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    conversation: &store::Conversation,
    message: &Outgoing,
    purpose: &'static str,
) -> Result<Option<Uuid>, Error> {
    let Some(cipher) = kernel
        .crypto
        .subject(conn, tenant, conversation.key_subject)
        .await?
    else {
        return Ok(None);
    };
    store::queue_outbound(
        conn,
        tenant,
        conversation,
        &cipher,
        message,
        Origin {
            author: "automation",
            author_user_id: None,
            purpose,
        },
    )
    .await
    .map(Some)
}
