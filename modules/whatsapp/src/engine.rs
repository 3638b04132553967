//! What answers a patient: an [`Engine`] reads each message and acts through [`Tools`],
//! the one set of actions every engine shares (services, free times, booking, cancelling,
//! rescheduling, the patient's appointments, the clinic's information, a person). The tools
//! act as the clinic's `assistant` identity through the agenda's service API, for the one
//! patient of the conversation, so an engine can reach nothing else; replies only offer
//! times a tool returned.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use harmony_agenda::service::{self as agenda, Appointment, AvailableSlot, Booking, Party};
use harmony_core::Kernel;
use harmony_core::auth::Actor;
use harmony_core::error::Error;
use harmony_patients::service::PatientRef;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::graph::Outgoing;
use crate::nlu::{Day, When};

/// What an engine is given for one message.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The text (a transcript for a voice note, the title of a pressed button).
    pub text: String,
    /// The id of a pressed button or list item, if that is what the message was.
    pub choice: Option<String>,
}

/// What the conversation should do besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A person takes over; the assistant stays quiet until handed back.
    Handoff,
    /// The contact stops messages they did not ask for (reminders, confirmations).
    OptOut,
    /// The contact wants those messages again.
    OptIn,
    /// Erase the stored conversation (its text becomes unreadable).
    Erase,
}

/// An engine's answer to one message.
#[derive(Debug, Default)]
pub struct Answer {
    pub replies: Vec<Outgoing>,
    pub effects: Vec<Effect>,
}

impl Answer {
    pub fn say(text: impl Into<String>) -> Self {
        Answer {
            replies: vec![Outgoing::text(text)],
            effects: Vec::new(),
        }
    }
}

/// Understands messages and acts on them. The dialogue state is the engine's own JSON,
/// kept with the conversation (ids and times only, never text).
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    async fn answer(
        &self,
        tools: &Tools<'_>,
        state: &mut serde_json::Value,
        turn: &Turn,
    ) -> Result<Answer, Error>;
}

/// A start time a tool returned, as kept in the dialogue state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub start: DateTime<Utc>,
    pub professional_id: Uuid,
}

/// A service on offer, as the engines see it.
pub use harmony_agenda::service::ServiceInfo;

/// Why a booking or a move did not happen, in the patient's terms.
#[derive(Debug, Clone)]
pub enum Refused {
    /// Taken in the meantime: the next free starts the agenda proposed.
    Taken(Vec<Offer>),
    /// Anything else the agenda refused (too soon, too far ahead…), with its message.
    Other(String),
}

/// The shared actions, for one clinic and one contact.
pub struct Tools<'a> {
    pub kernel: &'a Kernel,
    pub actor: &'a Actor,
    /// Who the contact is, once known.
    pub patient: Option<PatientRef>,
    pub zone: Tz,
    pub today: NaiveDate,
    pub clinic_name: String,
    pub address: Option<String>,
    pub opening_hours: Option<String>,
}

impl std::fmt::Debug for Tools<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("tenant", &self.actor.tenant_id)
            .finish_non_exhaustive()
    }
}

/// How far ahead the assistant looks when no day was named.
const DEFAULT_DAYS: i64 = 14;
/// The longest range of days a search may cover.
const MAX_DAYS: i64 = 62;

impl Tools<'_> {
    pub async fn services(&self) -> Result<Vec<ServiceInfo>, Error> {
        agenda::list_services(self.kernel, self.actor).await
    }

    /// Up to `limit` free starts of `service` that suit `when`, exact times first.
    pub async fn find_slots(
        &self,
        service: Uuid,
        when: &When,
        limit: usize,
    ) -> Result<Vec<Offer>, Error> {
        let (first, last) = match when.day {
            Some(day) => day.bounds(),
            None => (self.today, self.today + Duration::days(DEFAULT_DAYS - 1)),
        };
        let first = first.max(self.today);
        let last = last.min(first + Duration::days(MAX_DAYS - 1));
        if last < first {
            return Ok(Vec::new());
        }
        let found =
            agenda::availability(self.kernel, self.actor, &[service], (first, last), None).await?;
        let suits = |s: &&AvailableSlot| {
            when.time
                .is_none_or(|t| t.admits(s.start.naive_local().time()))
        };
        let mut slots: Vec<&AvailableSlot> = found.slots.iter().filter(suits).collect();
        if let Some(crate::nlu::TimeOfDay::At(at)) = when.time {
            // The exact time first, then the nearest.
            slots.sort_by_key(|s| {
                (
                    s.start.date_naive(),
                    (s.start.naive_local().time() - at).num_minutes().abs(),
                )
            });
        }
        // One start per day and professional first, so the offer spans the options.
        let mut offered: Vec<Offer> = Vec::new();
        let mut seen_days: Vec<NaiveDate> = Vec::new();
        for slot in &slots {
            let day = slot.start.date_naive();
            if offered.len() < limit && !seen_days.contains(&day) {
                seen_days.push(day);
                offered.push(offer(slot));
            }
        }
        // Then spread over the rest (09:00, 10:30, 12:00 rather than 09:00, 09:15, 09:30).
        let stride = (slots.len() / limit.max(1)).max(1);
        for slot in slots.iter().step_by(stride).chain(&slots) {
            if offered.len() >= limit {
                break;
            }
            let o = offer(slot);
            if !offered.contains(&o) {
                offered.push(o);
            }
        }
        offered.sort_by_key(|o| o.start);
        Ok(offered)
    }

    fn patient(&self) -> Result<&PatientRef, Error> {
        self.patient
            .as_ref()
            .ok_or(Error::NotFound { what: "patient" })
    }

    /// Books `service` at an offered start.
    pub async fn book(
        &self,
        service: Uuid,
        at: Offer,
    ) -> Result<Result<Appointment, Refused>, Error> {
        let patient = self.patient()?.id;
        let booked = agenda::book(
            self.kernel,
            self.actor,
            Booking {
                patient_id: patient,
                service_ids: vec![service],
                professional_id: at.professional_id,
                start: at.start,
                notes: None,
                booked_by: Party::Patient,
                outside_hours: false,
            },
        )
        .await;
        refused(booked, at.professional_id)
    }

    /// The patient's appointments still to come, soonest first.
    pub async fn my_appointments(&self) -> Result<Vec<Appointment>, Error> {
        let patient = self.patient()?.id;
        agenda::upcoming_for_patient(self.kernel, self.actor, patient).await
    }

    pub async fn cancel(&self, appointment: Uuid) -> Result<Appointment, Error> {
        let patient = self.patient()?.id;
        agenda::cancel(
            self.kernel,
            self.actor,
            patient,
            appointment,
            Some("cancelado pelo paciente no WhatsApp".into()),
        )
        .await
    }

    pub async fn confirm(&self, appointment: Uuid) -> Result<Appointment, Error> {
        let patient = self.patient()?.id;
        agenda::confirm(self.kernel, self.actor, patient, appointment).await
    }

    /// Moves the appointment to an offered start.
    pub async fn reschedule(
        &self,
        appointment: Uuid,
        at: Offer,
    ) -> Result<Result<Appointment, Refused>, Error> {
        let patient = self.patient()?.id;
        let moved =
            agenda::reschedule(self.kernel, self.actor, patient, appointment, at.start).await;
        refused(moved, at.professional_id)
    }

    /// A time in the clinic's zone, as patients read it: "ter, 15/12 às 15:00".
    pub fn describe(&self, at: DateTime<Utc>) -> String {
        describe_local(at.with_timezone(&self.zone).fixed_offset())
    }

    /// The local date a `Day` means, for replies.
    pub fn day_words(&self, day: Option<Day>) -> String {
        match day {
            Some(Day::On(d)) if d == self.today => "hoje".into(),
            Some(Day::On(d)) if d == self.today + Duration::days(1) => "amanhã".into(),
            Some(Day::On(d)) => format!("{} {}", weekday_pt(d.weekday()), d.format("%d/%m")),
            Some(Day::Between(a, b)) => format!("de {} a {}", a.format("%d/%m"), b.format("%d/%m")),
            None => "nos próximos dias".into(),
        }
    }
}

fn offer(slot: &AvailableSlot) -> Offer {
    Offer {
        start: slot.start.with_timezone(&Utc),
        professional_id: slot.professional_id,
    }
}

/// Splits the agenda's answer into done, refused in the patient's terms, or failed.
fn refused(
    result: Result<Appointment, Error>,
    professional: Uuid,
) -> Result<Result<Appointment, Refused>, Error> {
    match result {
        Ok(appointment) => Ok(Ok(appointment)),
        Err(Error::Conflict { extra, detail, .. }) => {
            let next: Vec<Offer> = extra
                .as_ref()
                .and_then(|e| e["next_slots"].as_array())
                .map(|slots| {
                    slots
                        .iter()
                        .filter_map(|s| {
                            let start = s["start"].as_str()?;
                            let start = DateTime::parse_from_rfc3339(start).ok()?;
                            let pro = s["professional_id"]
                                .as_str()
                                .and_then(|p| p.parse().ok())
                                .unwrap_or(professional);
                            Some(Offer {
                                start: start.with_timezone(&Utc),
                                professional_id: pro,
                            })
                        })
                        .take(3)
                        .collect()
                })
                .unwrap_or_default();
            if extra.is_some() {
                Ok(Err(Refused::Taken(next)))
            } else {
                Ok(Err(Refused::Other(detail.into_owned())))
            }
        }
        Err(Error::Validation(errors)) => Ok(Err(Refused::Other(
            errors
                .first()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
        ))),
        Err(other) => Err(other),
    }
}

pub fn weekday_pt(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "seg",
        Weekday::Tue => "ter",
        Weekday::Wed => "qua",
        Weekday::Thu => "qui",
        Weekday::Fri => "sex",
        Weekday::Sat => "sáb",
        Weekday::Sun => "dom",
    }
}

/// "ter, 15/12 às 15:00".
pub fn describe_local(at: DateTime<FixedOffset>) -> String {
    format!(
        "{}, {} às {}",
        weekday_pt(at.weekday()),
        at.format("%d/%m"),
        at.format("%H:%M")
    )
}

/// A price in cents as Brazilians write it: "R$ 180,00"; nothing to pay is "sem custo".
pub fn price(cents: i64) -> String {
    if cents == 0 {
        return "sem custo".into();
    }
    let reais = cents / 100;
    let mut digits = reais.abs().to_string();
    let mut grouped = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        grouped = format!(".{tail}{grouped}");
    }
    format!(
        "R$ {}{digits}{grouped},{:02}",
        if cents < 0 { "-" } else { "" },
        (cents % 100).abs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_times_read_as_in_brazil() {
        assert_eq!(price(18000), "R$ 180,00");
        assert_eq!(price(123456), "R$ 1.234,56");
        assert_eq!(price(5), "R$ 0,05");
        assert_eq!(price(0), "sem custo");
        let at = DateTime::parse_from_rfc3339("2026-12-15T15:00:00-03:00").unwrap();
        assert_eq!(describe_local(at), "ter, 15/12 às 15:00");
    }
}
