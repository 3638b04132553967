//! The built-in engine: a dialogue in Brazilian Portuguese over the [`crate::nlu`]
//! understanding, offline. It keeps in the conversation's state what is being booked,
//! which times or appointments were offered and what awaits a yes, and offers only times
//! the tools returned.

use harmony_core::error::Error;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::{Answer, Effect, Engine, Offer, Refused, ServiceInfo, Tools, Turn, price};
use crate::graph::Outgoing;
use crate::nlu::{self, Intent, When, intent::choice, text::STOPWORDS};

/// Times offered at once.
const OFFERS: usize = 3;

/// What the assistant is doing for the contact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Goal {
    #[default]
    None,
    Book,
    Reschedule,
    Cancel,
    Confirm,
}

/// What the last reply asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Awaiting {
    #[default]
    Nothing,
    /// Which service (from `services`).
    Service,
    /// Which time (from `offers`).
    Time,
    /// Which appointment (from `appointments`).
    Appointment,
    /// A yes to cancelling `appointment`.
    CancelYes,
    /// A yes to erasing the conversation.
    EraseYes,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    goal: Goal,
    #[serde(default)]
    awaiting: Awaiting,
    #[serde(default)]
    service: Option<Uuid>,
    #[serde(default)]
    appointment: Option<Uuid>,
    #[serde(default)]
    when: When,
    #[serde(default)]
    services: Vec<Uuid>,
    #[serde(default)]
    offers: Vec<Offer>,
    #[serde(default)]
    appointments: Vec<Uuid>,
    /// Messages in a row not understood.
    #[serde(default)]
    misses: u8,
}

/// The built-in engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

#[async_trait::async_trait]
impl Engine for Builtin {
    async fn answer(
        &self,
        tools: &Tools<'_>,
        state: &mut serde_json::Value,
        turn: &Turn,
    ) -> Result<Answer, Error> {
        let mut st: State = serde_json::from_value(state.clone()).unwrap_or_default();
        let answer = respond(tools, &mut st, turn).await?;
        *state = serde_json::to_value(&st).map_err(Error::internal)?;
        Ok(answer)
    }
}

async fn respond(tools: &Tools<'_>, st: &mut State, turn: &Turn) -> Result<Answer, Error> {
    let heard = nlu::understand(&turn.text, tools.today);
    // Buttons carry their meaning in their id.
    if let Some(id) = &turn.choice
        && let Some(answer) = pressed(tools, st, id).await?
    {
        return Ok(answer);
    }
    // What always wins, whatever was being asked.
    match heard.intent {
        Intent::Stop => {
            *st = State::default();
            let mut answer = Answer::say(
                "Tudo bem, não enviaremos mais lembretes nem avisos por aqui. Se quiser voltar \
                 a recebê-los, é só escrever \"voltar\". Você ainda pode falar com a gente \
                 quando quiser.",
            );
            answer.effects.push(Effect::OptOut);
            return Ok(answer);
        }
        Intent::Resume => {
            let mut answer = Answer::say(
                "Combinado! Voltaremos a enviar confirmações e lembretes das suas consultas.",
            );
            answer.effects.push(Effect::OptIn);
            return Ok(answer);
        }
        Intent::DeleteConversations => {
            *st = State {
                awaiting: Awaiting::EraseYes,
                ..State::default()
            };
            return Ok(yes_no(
                "Posso apagar todo o histórico desta conversa com a clínica? Suas consultas \
                 continuam marcadas.",
                "erase",
            ));
        }
        Intent::Human => {
            *st = State::default();
            let mut answer = Answer::say(
                "Certo, vou chamar alguém da equipe para continuar com você. Em breve uma \
                 pessoa responde por aqui.",
            );
            answer.effects.push(Effect::Handoff);
            return Ok(answer);
        }
        _ => {}
    }
    // An answer to what was asked.
    match st.awaiting {
        Awaiting::Service => {
            if let Some(service) = pick_service(tools, st, &heard.words).await? {
                st.service = Some(service);
                st.awaiting = Awaiting::Nothing;
                if !heard.when.is_empty() {
                    st.when = heard.when;
                }
                return offer_times(tools, st).await;
            }
        }
        Awaiting::Time => {
            if let Some(at) = chosen_offer(tools, st, &heard) {
                return take_offer(tools, st, at).await;
            }
            if !heard.when.is_empty()
                && matches!(
                    heard.intent,
                    Intent::Unknown | Intent::Book | Intent::Availability | Intent::Reschedule
                )
            {
                st.when = heard.when;
                return offer_times(tools, st).await;
            }
            if heard.intent == Intent::Deny {
                st.when = When::default();
                st.awaiting = Awaiting::Nothing;
                return Ok(Answer::say(
                    "Sem problemas. Me diga um dia ou período que prefere (por exemplo: \
                     \"sexta à tarde\") e eu procuro outros horários.",
                ));
            }
        }
        Awaiting::Appointment => {
            if let Some(n) = choice(&heard.words, st.appointments.len()) {
                st.appointment = st.appointments.get(n - 1).copied();
                st.awaiting = Awaiting::Nothing;
                return proceed_with_appointment(tools, st).await;
            }
        }
        Awaiting::CancelYes => match heard.intent {
            Intent::Affirm | Intent::Cancel | Intent::Confirm => {
                if let Some(id) = st.appointment {
                    return cancel(tools, st, id).await;
                }
            }
            Intent::Deny => {
                *st = State::default();
                return Ok(Answer::say("Tudo bem, sua consulta continua marcada."));
            }
            _ => {}
        },
        Awaiting::EraseYes => match heard.intent {
            Intent::Affirm | Intent::DeleteConversations => return Ok(erase(st)),
            Intent::Deny => {
                *st = State::default();
                return Ok(Answer::say("Certo, não apaguei nada."));
            }
            _ => {}
        },
        Awaiting::Nothing => {}
    }
    // Something new.
    match heard.intent {
        Intent::Book | Intent::Availability => {
            *st = State {
                goal: Goal::Book,
                when: heard.when,
                ..State::default()
            };
            match pick_service(tools, st, &heard.words).await? {
                Some(service) => {
                    st.service = Some(service);
                    offer_times(tools, st).await
                }
                None => ask_service(tools, st).await,
            }
        }
        Intent::Reschedule | Intent::Cancel | Intent::Confirm => {
            let goal = match heard.intent {
                Intent::Reschedule => Goal::Reschedule,
                Intent::Cancel => Goal::Cancel,
                _ => Goal::Confirm,
            };
            *st = State {
                goal,
                when: heard.when,
                ..State::default()
            };
            choose_appointment(tools, st).await
        }
        Intent::MyAppointments => {
            *st = State::default();
            list_appointments(tools).await
        }
        Intent::Services => {
            *st = State::default();
            let services = tools.services().await?;
            if services.is_empty() {
                return Ok(Answer::say(
                    "No momento não há serviços disponíveis para agendar por aqui.",
                ));
            }
            let lines: Vec<String> = services
                .iter()
                .map(|s| {
                    format!(
                        "• {} — {} ({} min)",
                        s.name,
                        price(s.price_cents),
                        s.duration_minutes
                    )
                })
                .collect();
            Ok(Answer::say(format!(
                "Estes são os nossos serviços:\n{}\n\nQuer agendar algum? É só me dizer qual e \
                 quando prefere.",
                lines.join("\n")
            )))
        }
        Intent::ClinicInfo => {
            *st = State::default();
            let mut parts = Vec::new();
            if let Some(address) = &tools.address {
                parts.push(format!("Endereço: {address}"));
            }
            if let Some(hours) = &tools.opening_hours {
                parts.push(format!("Horário de funcionamento: {hours}"));
            }
            if parts.is_empty() {
                parts
                    .push("Vou pedir para a equipe te passar o endereço e os horários.".to_owned());
            }
            Ok(Answer::say(format!(
                "{}:\n{}",
                tools.clinic_name,
                parts.join("\n")
            )))
        }
        Intent::Greeting => {
            st.misses = 0;
            Ok(Answer::say(greeting(tools)))
        }
        Intent::Thanks => {
            *st = State::default();
            Ok(Answer::say(
                "Por nada! Se precisar de algo, é só chamar. 😊",
            ))
        }
        _ => {
            st.misses = st.misses.saturating_add(1);
            if st.misses >= 2 {
                st.misses = 0;
                return Ok(Answer {
                    replies: vec![Outgoing::Buttons {
                        body: "Desculpe, ainda não consegui entender. Quer falar com uma pessoa \
                               da equipe?"
                            .into(),
                        buttons: vec![
                            ("human".into(), "Falar com a equipe".into()),
                            ("menu".into(), "Ver opções".into()),
                        ],
                    }],
                    effects: Vec::new(),
                });
            }
            Ok(Answer::say(format!("Desculpe, não entendi. {}", menu())))
        }
    }
}

fn menu() -> &'static str {
    "Posso ajudar a ver horários e agendar, confirmar, remarcar ou cancelar uma consulta, \
     ver seus agendamentos, nossos serviços e preços, ou o endereço da clínica."
}

fn greeting(tools: &Tools<'_>) -> String {
    let name = tools
        .patient
        .as_ref()
        .map(|p| format!(", {}", p.first_name))
        .unwrap_or_default();
    format!(
        "Olá{name}! Sou a assistente virtual da {}. {}",
        tools.clinic_name,
        menu()
    )
}

fn yes_no(question: &str, what: &str) -> Answer {
    Answer {
        replies: vec![Outgoing::Buttons {
            body: question.to_owned(),
            buttons: vec![
                (format!("{what}:yes"), "Sim".into()),
                (format!("{what}:no"), "Não".into()),
            ],
        }],
        effects: Vec::new(),
    }
}

/// A pressed button: its id says what it means.
async fn pressed(tools: &Tools<'_>, st: &mut State, id: &str) -> Result<Option<Answer>, Error> {
    let parts: Vec<&str> = id.split(':').collect();
    Ok(match parts.as_slice() {
        ["slot", n] => {
            let at = n
                .parse::<usize>()
                .ok()
                .and_then(|n| st.offers.get(n).copied());
            match at {
                Some(at) => Some(take_offer(tools, st, at).await?),
                None => None,
            }
        }
        ["appt", id, action] => {
            let Ok(id) = id.parse::<Uuid>() else {
                return Ok(None);
            };
            match *action {
                "confirm" => Some(confirm(tools, st, id).await?),
                "cancel" => {
                    *st = State {
                        goal: Goal::Cancel,
                        appointment: Some(id),
                        awaiting: Awaiting::CancelYes,
                        ..State::default()
                    };
                    Some(yes_no("Quer mesmo cancelar essa consulta?", "cancel"))
                }
                "reschedule" => {
                    *st = State {
                        goal: Goal::Reschedule,
                        appointment: Some(id),
                        ..State::default()
                    };
                    Some(proceed_with_appointment(tools, st).await?)
                }
                _ => None,
            }
        }
        ["cancel", "yes"] if st.awaiting == Awaiting::CancelYes => match st.appointment {
            Some(id) => Some(cancel(tools, st, id).await?),
            None => None,
        },
        ["cancel", "no"] => {
            *st = State::default();
            Some(Answer::say("Tudo bem, sua consulta continua marcada."))
        }
        ["erase", "yes"] if st.awaiting == Awaiting::EraseYes => Some(erase(st)),
        ["erase", "no"] => {
            *st = State::default();
            Some(Answer::say("Certo, não apaguei nada."))
        }
        ["human"] => {
            *st = State::default();
            let mut answer =
                Answer::say("Certo, vou chamar alguém da equipe para continuar com você.");
            answer.effects.push(Effect::Handoff);
            Some(answer)
        }
        ["menu"] => {
            *st = State::default();
            Some(Answer::say(menu()))
        }
        _ => None,
    })
}

/// The service the words name, or the only one there is.
async fn pick_service(
    tools: &Tools<'_>,
    st: &mut State,
    words: &[String],
) -> Result<Option<Uuid>, Error> {
    let services = tools.services().await?;
    if st.awaiting == Awaiting::Service
        && let Some(n) = choice(words, st.services.len())
    {
        return Ok(st.services.get(n - 1).copied());
    }
    let scored: Vec<(usize, &ServiceInfo)> = services
        .iter()
        .map(|s| (overlap(&s.name, words), s))
        .filter(|(n, _)| *n > 0)
        .collect();
    let best = scored.iter().map(|(n, _)| *n).max();
    let top: Vec<&ServiceInfo> = scored
        .iter()
        .filter(|(n, _)| Some(*n) == best)
        .map(|(_, s)| *s)
        .collect();
    Ok(match (top.as_slice(), services.as_slice()) {
        ([one], _) => Some(one.id),
        ([], [only]) => Some(only.id),
        _ => None,
    })
}

/// How many meaningful words of a service's name the message has.
fn overlap(name: &str, words: &[String]) -> usize {
    nlu::text::tokens(name)
        .iter()
        .filter(|w| !STOPWORDS.contains(&w.as_str()) && w.len() > 2)
        .filter(|w| words.contains(w))
        .count()
}

async fn ask_service(tools: &Tools<'_>, st: &mut State) -> Result<Answer, Error> {
    let services = tools.services().await?;
    if services.is_empty() {
        *st = State::default();
        return Ok(Answer::say(
            "No momento não há serviços para agendar por aqui. Vou pedir para a equipe falar \
             com você.",
        ));
    }
    st.services = services.iter().map(|s| s.id).collect();
    st.awaiting = Awaiting::Service;
    let lines: Vec<String> = services
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {} — {}", i + 1, s.name, price(s.price_cents)))
        .collect();
    Ok(Answer::say(format!(
        "Qual serviço você gostaria de agendar?\n{}",
        lines.join("\n")
    )))
}

/// Offers free times of the chosen service (or of the appointment being moved).
async fn offer_times(tools: &Tools<'_>, st: &mut State) -> Result<Answer, Error> {
    let Some(service) = st.service else {
        return ask_service(tools, st).await;
    };
    let offers = tools.find_slots(service, &st.when, OFFERS).await?;
    if offers.is_empty() {
        st.awaiting = Awaiting::Time;
        st.offers.clear();
        return Ok(Answer::say(format!(
            "Não encontrei horários livres {}. Quer tentar outro dia ou período?",
            tools.day_words(st.when.day)
        )));
    }
    Ok(present_offers(
        tools,
        st,
        offers,
        "Tenho estes horários livres:",
    ))
}

fn present_offers(tools: &Tools<'_>, st: &mut State, offers: Vec<Offer>, intro: &str) -> Answer {
    st.awaiting = Awaiting::Time;
    let buttons: Vec<(String, String)> = offers
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("slot:{i}"), tools.describe(o.start)))
        .collect();
    let lines: Vec<String> = buttons
        .iter()
        .enumerate()
        .map(|(i, (_, title))| format!("{}. {title}", i + 1))
        .collect();
    st.offers = offers;
    Answer {
        replies: vec![Outgoing::Buttons {
            body: format!("{intro}\n{}\n\nQual prefere?", lines.join("\n")),
            buttons,
        }],
        effects: Vec::new(),
    }
}

/// The offered time the message points at: its number, or its time of day.
fn chosen_offer(tools: &Tools<'_>, st: &State, heard: &nlu::Understanding) -> Option<Offer> {
    if let Some(n) = choice(&heard.words, st.offers.len()) {
        return st.offers.get(n - 1).copied();
    }
    let at = match heard.when.time {
        Some(nlu::TimeOfDay::At(at)) => at,
        _ => return None,
    };
    let matching: Vec<Offer> = st
        .offers
        .iter()
        .copied()
        .filter(|o| {
            let local = o.start.with_timezone(&tools.zone);
            local.time() == at
                && heard.when.day.is_none_or(|d| {
                    d.bounds().0 <= local.date_naive() && local.date_naive() <= d.bounds().1
                })
        })
        .collect();
    match matching.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

async fn take_offer(tools: &Tools<'_>, st: &mut State, at: Offer) -> Result<Answer, Error> {
    let done = match (st.goal, st.appointment, st.service) {
        (Goal::Reschedule, Some(appointment), _) => tools.reschedule(appointment, at).await?,
        (_, _, Some(service)) => tools.book(service, at).await?,
        _ => {
            *st = State::default();
            return Ok(Answer::say(format!("Vamos recomeçar? {}", menu())));
        }
    };
    match done {
        Ok(appointment) => {
            let verb = if st.goal == Goal::Reschedule {
                "remarcada"
            } else {
                "agendada"
            };
            let name = tools
                .patient
                .as_ref()
                .map(|p| format!(", {}", p.first_name))
                .unwrap_or_default();
            let services: Vec<&str> = appointment
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            *st = State::default();
            Ok(Answer::say(format!(
                "Pronto{name}! {} {verb} para {}. Se precisar remarcar ou cancelar, é só me \
                 avisar por aqui.",
                services.join(" + "),
                crate::engine::describe_local(appointment.start)
            )))
        }
        Err(Refused::Taken(next)) if !next.is_empty() => Ok(present_offers(
            tools,
            st,
            next,
            "Esse horário acabou de ser ocupado. Estes ainda estão livres:",
        )),
        Err(Refused::Taken(_)) => {
            st.offers.clear();
            Ok(Answer::say(
                "Esse horário acabou de ser ocupado e não achei outro próximo. Quer tentar \
                 outro dia?",
            ))
        }
        Err(Refused::Other(_)) => {
            st.offers.clear();
            Ok(Answer::say(
                "Não consegui marcar esse horário. Quer tentar outro dia ou período?",
            ))
        }
    }
}

async fn choose_appointment(tools: &Tools<'_>, st: &mut State) -> Result<Answer, Error> {
    let upcoming = tools.my_appointments().await?;
    match upcoming.as_slice() {
        [] => {
            *st = State::default();
            Ok(Answer::say(
                "Não encontrei consultas marcadas para você. Quer agendar uma?",
            ))
        }
        [one] => {
            st.appointment = Some(one.id);
            proceed_with_appointment(tools, st).await
        }
        many => {
            st.appointments = many.iter().map(|a| a.id).collect();
            st.awaiting = Awaiting::Appointment;
            let lines: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{}. {}", i + 1, appointment_line(a)))
                .collect();
            Ok(Answer::say(format!("Qual consulta?\n{}", lines.join("\n"))))
        }
    }
}

fn appointment_line(a: &harmony_agenda::service::Appointment) -> String {
    let services: Vec<&str> = a.services.iter().map(|s| s.name.as_str()).collect();
    format!(
        "{} — {}",
        crate::engine::describe_local(a.start),
        services.join(" + ")
    )
}

async fn proceed_with_appointment(tools: &Tools<'_>, st: &mut State) -> Result<Answer, Error> {
    let Some(id) = st.appointment else {
        *st = State::default();
        return Ok(Answer::say("Não encontrei essa consulta entre as suas."));
    };
    match st.goal {
        Goal::Cancel => {
            st.awaiting = Awaiting::CancelYes;
            let upcoming = tools.my_appointments().await?;
            let line = upcoming
                .iter()
                .find(|a| a.id == id)
                .map(appointment_line)
                .unwrap_or_default();
            Ok(yes_no(
                &format!("Quer mesmo cancelar a consulta de {line}?"),
                "cancel",
            ))
        }
        Goal::Confirm => confirm(tools, st, id).await,
        Goal::Reschedule => {
            let upcoming = tools.my_appointments().await?;
            let Some(current) = upcoming.iter().find(|a| a.id == id) else {
                *st = State::default();
                return Ok(Answer::say("Não encontrei essa consulta entre as suas."));
            };
            st.service = current.services.first().map(|s| s.service_id);
            offer_times(tools, st).await
        }
        Goal::Book | Goal::None => offer_times(tools, st).await,
    }
}

async fn confirm(tools: &Tools<'_>, st: &mut State, id: Uuid) -> Result<Answer, Error> {
    *st = State::default();
    match tools.confirm(id).await {
        Ok(a) => Ok(Answer::say(format!(
            "Consulta confirmada: {}. Até lá!",
            appointment_line(&a)
        ))),
        Err(Error::Conflict { .. }) => Ok(Answer::say(
            "Essa consulta já estava confirmada ou não pode mais ser confirmada.",
        )),
        Err(Error::NotFound { .. }) => {
            Ok(Answer::say("Não encontrei essa consulta entre as suas."))
        }
        Err(other) => Err(other),
    }
}

async fn cancel(tools: &Tools<'_>, st: &mut State, id: Uuid) -> Result<Answer, Error> {
    *st = State::default();
    match tools.cancel(id).await {
        Ok(a) => Ok(Answer::say(format!(
            "Consulta de {} cancelada. Quando quiser remarcar, é só me chamar.",
            appointment_line(&a)
        ))),
        Err(Error::Conflict { .. }) => Ok(Answer::say(
            "Essa consulta não pode mais ser cancelada por aqui. Vou pedir para a equipe \
             falar com você.",
        )),
        Err(Error::NotFound { .. }) => {
            Ok(Answer::say("Não encontrei essa consulta entre as suas."))
        }
        Err(other) => Err(other),
    }
}

fn erase(st: &mut State) -> Answer {
    *st = State::default();
    let mut answer = Answer::say(
        "Pronto, apaguei o histórico desta conversa. Suas consultas continuam marcadas.",
    );
    answer.effects.push(Effect::Erase);
    answer
}

async fn list_appointments(tools: &Tools<'_>) -> Result<Answer, Error> {
    let upcoming = tools.my_appointments().await?;
    if upcoming.is_empty() {
        return Ok(Answer::say(
            "Você não tem consultas marcadas. Quer agendar uma?",
        ));
    }
    let lines: Vec<String> = upcoming
        .iter()
        .map(|a| format!("• {}", appointment_line(a)))
        .collect();
    Ok(Answer::say(format!(
        "Suas próximas consultas:\n{}",
        lines.join("\n")
    )))
}
