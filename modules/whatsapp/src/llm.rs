//! The OpenAI engine: chat completions with tool calling over the same [`Tools`] as the
//! built-in engine. What the model is given is limited by construction to the clinic's
//! public information, its services, free times, and the patient's first name and own
//! appointments: the tool results are built here from those, nothing else is sent. Times
//! reach the model as ids (`h1`, `h2`…) of starts a tool returned, and a booking names one
//! of them, so the model cannot offer or book a time the agenda did not give. Should OpenAI
//! fail (quota, outage), the built-in engine answers instead.

use chrono::NaiveDate;
use harmony_core::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dialogue::Builtin;
use crate::engine::{Answer, Effect, Engine, Offer, Refused, Tools, Turn, describe_local, price};
use crate::graph::Outgoing;
use crate::nlu::{Day, Period, TimeOfDay, When};
use crate::openai::OpenAi;

/// Model calls for one message, tool rounds included.
const MAX_ROUNDS: usize = 5;
/// Times one search returns.
const OFFERS: usize = 5;

/// The engine.
#[derive(Debug, Clone)]
pub struct Llm {
    ai: OpenAi,
}

impl Llm {
    pub fn new(ai: OpenAi) -> Self {
        Llm { ai }
    }
}

/// What the engine remembers between messages: the times and appointments it showed,
/// by the ids the model knows them by.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    offers: Vec<(String, Offer)>,
    #[serde(default)]
    appointments: Vec<(String, Uuid)>,
}

#[async_trait::async_trait]
impl Engine for Llm {
    async fn answer(
        &self,
        tools: &Tools<'_>,
        state: &mut Value,
        turn: &Turn,
    ) -> Result<Answer, Error> {
        // A pressed button means what it says, whoever answers.
        if turn.choice.is_some() {
            return Builtin.answer(tools, state, turn).await;
        }
        let mut st: State = serde_json::from_value(state.get("llm").cloned().unwrap_or_default())
            .unwrap_or_default();
        let mut messages = vec![
            json!({"role": "system", "content": system_prompt(tools, &st)}),
            json!({"role": "user", "content": turn.text}),
        ];
        let mut effects = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let request = json!({
                "messages": messages,
                "tools": tool_specs(),
                "tool_choice": "auto",
                "max_completion_tokens": 400,
            });
            let response = match self.ai.chat(request).await {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(error = %err, "OpenAI did not answer: the built-in engine does");
                    return Builtin.answer(tools, state, turn).await;
                }
            };
            let message = response["choices"][0]["message"].clone();
            let calls = message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if calls.is_empty() {
                let text = message["content"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                state["llm"] = serde_json::to_value(&st).map_err(Error::internal)?;
                if text.is_empty() {
                    return Builtin.answer(tools, state, turn).await;
                }
                return Ok(Answer {
                    replies: vec![Outgoing::text(text)],
                    effects,
                });
            }
            messages.push(message);
            for call in calls {
                let name = call["function"]["name"].as_str().unwrap_or_default();
                // The model may write invalid JSON: it is told so, and may try again.
                let args: Value = call["function"]["arguments"]
                    .as_str()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or(Value::Null);
                let result = run_tool(tools, &mut st, &mut effects, name, &args).await?;
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": result.to_string(),
                }));
            }
        }
        state["llm"] = serde_json::to_value(&st).map_err(Error::internal)?;
        Ok(Answer {
            replies: vec![Outgoing::text(
                "Desculpe, não consegui concluir agora. Vou pedir para alguém da equipe te \
                 ajudar por aqui.",
            )],
            effects: vec![Effect::Handoff],
        })
    }
}

fn system_prompt(tools: &Tools<'_>, st: &State) -> String {
    let name = tools
        .patient
        .as_ref()
        .map_or("(ainda sem cadastro)".to_owned(), |p| p.first_name.clone());
    let shown: Vec<String> = st
        .offers
        .iter()
        .map(|(id, o)| format!("{id} = {}", tools.describe(o.start)))
        .collect();
    format!(
        "Você é a assistente virtual da {clinic}, no WhatsApp. Responda em português do \
         Brasil, com frases curtas e cordiais. Hoje é {today} (fuso {zone}). O paciente se \
         chama {name}. Use as ferramentas para ver serviços, horários livres e consultas, e \
         para agendar, remarcar ou cancelar. Ofereça somente horários devolvidos por \
         find_slots, pelo id (h1, h2…), e agende somente com esses ids. Não dê orientação \
         médica nem fale de tratamentos além do nome e do preço dos serviços; para isso, e \
         quando o paciente pedir uma pessoa, use hand_off. Horários já mostrados: {shown}.",
        clinic = tools.clinic_name,
        today = tools.today.format("%d/%m/%Y"),
        zone = tools.zone.name(),
        shown = if shown.is_empty() {
            "nenhum".to_owned()
        } else {
            shown.join(", ")
        },
    )
}

fn tool_specs() -> Value {
    let function = |name: &str, description: &str, parameters: Value| {
        json!({"type": "function", "function": {
            "name": name, "description": description, "parameters": parameters}})
    };
    let none = json!({"type": "object", "properties": {}, "additionalProperties": false});
    json!([
        function(
            "list_services",
            "Os serviços da clínica, com preço e duração.",
            none.clone()
        ),
        function(
            "find_slots",
            "Horários livres de um serviço num dia (ou nos próximos dias) e período.",
            json!({"type": "object", "properties": {
                "service_id": {"type": "string", "description": "id devolvido por list_services"},
                "date": {"type": "string", "description": "AAAA-MM-DD; ausente: próximos dias"},
                "period": {"type": "string", "enum": ["manha", "tarde", "noite"]}
            }, "required": ["service_id"], "additionalProperties": false}),
        ),
        function(
            "book",
            "Agenda o serviço no horário escolhido (um id devolvido por find_slots).",
            json!({"type": "object", "properties": {
                "service_id": {"type": "string"}, "slot_id": {"type": "string"}
            }, "required": ["service_id", "slot_id"], "additionalProperties": false}),
        ),
        function(
            "my_appointments",
            "As próximas consultas do paciente.",
            none.clone()
        ),
        function(
            "cancel",
            "Cancela uma consulta do paciente (um id devolvido por my_appointments).",
            json!({"type": "object", "properties": {"appointment_id": {"type": "string"}},
                   "required": ["appointment_id"], "additionalProperties": false}),
        ),
        function(
            "reschedule",
            "Remarca uma consulta do paciente para um horário devolvido por find_slots.",
            json!({"type": "object", "properties": {
                "appointment_id": {"type": "string"}, "slot_id": {"type": "string"}
            }, "required": ["appointment_id", "slot_id"], "additionalProperties": false}),
        ),
        function(
            "clinic_info",
            "Endereço e horário de funcionamento.",
            none.clone()
        ),
        function(
            "hand_off",
            "Passa a conversa para uma pessoa da equipe.",
            none
        ),
    ])
}

/// Runs one tool call and returns what the model may see of its result.
async fn run_tool(
    tools: &Tools<'_>,
    st: &mut State,
    effects: &mut Vec<Effect>,
    name: &str,
    args: &Value,
) -> Result<Value, Error> {
    let text = |key: &str| args[key].as_str().unwrap_or_default().to_owned();
    Ok(match name {
        "list_services" => {
            let services = tools.services().await?;
            json!(
                services
                    .iter()
                    .map(
                        |s| json!({"id": s.id, "name": s.name, "price": price(s.price_cents),
                                "minutes": s.duration_minutes})
                    )
                    .collect::<Vec<_>>()
            )
        }
        "find_slots" => {
            let Ok(service) = text("service_id").parse::<Uuid>() else {
                return Ok(json!({"error": "service_id must be an id from list_services"}));
            };
            let day = NaiveDate::parse_from_str(&text("date"), "%Y-%m-%d")
                .ok()
                .map(Day::On);
            let period = match text("period").as_str() {
                "manha" => Some(Period::Morning),
                "tarde" => Some(Period::Afternoon),
                "noite" => Some(Period::Evening),
                _ => None,
            };
            let when = When {
                day,
                time: period.map(TimeOfDay::In),
            };
            let offers = match tools.find_slots(service, &when, OFFERS).await {
                Ok(offers) => offers,
                Err(Error::NotFound { .. }) | Err(Error::Validation(_)) => {
                    return Ok(json!({"error": "unknown service"}));
                }
                Err(other) => return Err(other),
            };
            remember(st, &offers, tools)
        }
        "book" | "reschedule" => {
            let slot = text("slot_id");
            let Some(at) = st
                .offers
                .iter()
                .find(|(id, _)| *id == slot)
                .map(|(_, o)| *o)
            else {
                return Ok(json!({"error": "slot_id must be an id find_slots returned"}));
            };
            let done = if name == "book" {
                let Ok(service) = text("service_id").parse::<Uuid>() else {
                    return Ok(json!({"error": "service_id must be an id from list_services"}));
                };
                tools.book(service, at).await?
            } else {
                let Some(appointment) = appointment_of(st, &text("appointment_id")) else {
                    return Ok(json!({"error": "appointment_id must come from my_appointments"}));
                };
                tools.reschedule(appointment, at).await?
            };
            match done {
                Ok(a) => json!({"done": true, "start": describe_local(a.start),
                                "services": a.services.iter().map(|s| &s.name).collect::<Vec<_>>()}),
                Err(Refused::Taken(next)) => {
                    json!({"done": false, "reason": "taken", "other_slots": remember(st, &next, tools)})
                }
                Err(Refused::Other(reason)) => json!({"done": false, "reason": reason}),
            }
        }
        "my_appointments" => {
            let upcoming = tools.my_appointments().await?;
            st.appointments = upcoming
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("c{}", i + 1), a.id))
                .collect();
            json!(
                upcoming
                    .iter()
                    .zip(&st.appointments)
                    .map(
                        |(a, (id, _))| json!({"id": id, "start": describe_local(a.start),
                    "status": a.status,
                    "services": a.services.iter().map(|s| &s.name).collect::<Vec<_>>()})
                    )
                    .collect::<Vec<_>>()
            )
        }
        "cancel" => {
            let Some(appointment) = appointment_of(st, &text("appointment_id")) else {
                return Ok(json!({"error": "appointment_id must come from my_appointments"}));
            };
            match tools.cancel(appointment).await {
                Ok(_) => json!({"done": true}),
                Err(Error::Conflict { .. }) | Err(Error::NotFound { .. }) => json!({"done": false}),
                Err(other) => return Err(other),
            }
        }
        "clinic_info" => json!({
            "name": tools.clinic_name,
            "address": tools.address,
            "opening_hours": tools.opening_hours,
        }),
        "hand_off" => {
            effects.push(Effect::Handoff);
            json!({"done": true})
        }
        other => json!({"error": format!("there is no tool {other}")}),
    })
}

/// Gives the offers ids the model can use, and what it may see of them.
fn remember(st: &mut State, offers: &[Offer], tools: &Tools<'_>) -> Value {
    let first = st.offers.len() + 1;
    let named: Vec<(String, Offer)> = offers
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("h{}", first + i), *o))
        .collect();
    let shown = json!(
        named
            .iter()
            .map(|(id, o)| json!({"id": id, "start": tools.describe(o.start)}))
            .collect::<Vec<_>>()
    );
    st.offers.extend(named);
    shown
}

fn appointment_of(st: &State, id: &str) -> Option<Uuid> {
    st.appointments
        .iter()
        .find(|(name, _)| name == id)
        .map(|(_, a)| *a)
}
