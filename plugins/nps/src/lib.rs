//! A satisfaction survey (Net Promoter Score) for Harmony clinics.
//!
//! When an appointment is completed, a pending survey is recorded for it. The front desk
//! (or whoever asks the patient) records the answer, a score from 0 to 10 and an optional
//! comment; the clinic's managers read the NPS over any period. Surveys left unanswered
//! for 30 days expire every night. With `patients:read` granted, the list of surveys shows
//! each patient's name; without it, only their ids.

use chrono::{NaiveDate, SecondsFormat, Utc};
use harmony_plugin_api::{
    Event, Failure, Host, KvWrite, Manifest, Plugin, QueryParam, Request, Response, RouteSpec,
    Task, TaskSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const SURVEY: &str = "survey:";
/// Unanswered surveys expire after this many days.
const EXPIRY_DAYS: i64 = 30;
/// Most surveys one list answers.
const PAGE: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Survey {
    appointment_id: String,
    patient_id: String,
    professional_id: String,
    service_ids: Vec<String>,
    /// When the appointment was completed (RFC 3339, UTC).
    completed_at: String,
    /// `pending`, `answered` or `expired`.
    status: String,
    #[serde(default)]
    score: Option<u8>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    answered_at: Option<String>,
}

#[derive(Default)]
struct Nps;

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn route(method: &str, path: &str, summary: &str, roles: &[&str]) -> RouteSpec {
    RouteSpec {
        method: method.into(),
        path: path.into(),
        summary: summary.into(),
        description: String::new(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        request_schema: None,
        response_schema: None,
        query: vec![],
    }
}

fn survey_schema() -> Value {
    json!({
        "type": "object",
        "required": ["appointment_id", "patient_id", "professional_id", "completed_at", "status"],
        "properties": {
            "appointment_id": {"type": "string", "format": "uuid"},
            "patient_id": {"type": "string", "format": "uuid"},
            "patient_name": {"type": "string", "description": "With `patients:read` granted"},
            "professional_id": {"type": "string", "format": "uuid"},
            "service_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
            "completed_at": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["pending", "answered", "expired"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "comment": {"type": "string"},
            "answered_at": {"type": "string", "format": "date-time"}
        }
    })
}

impl Plugin for Nps {
    fn manifest(&self) -> Manifest {
        let mut list = route("GET", "/surveys", "List satisfaction surveys", &[]);
        list.description = "Newest first, at most 200. Filter with `status`.".into();
        list.query = vec![QueryParam {
            name: "status".into(),
            description: "`pending`, `answered` or `expired`".into(),
            required: false,
        }];
        list.response_schema = Some(json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": survey_schema()}}
        }));
        let mut answer = route(
            "POST",
            "/surveys/{appointment_id}/response",
            "Record a patient's answer",
            &["owner", "admin", "professional", "receptionist"],
        );
        answer.request_schema = Some(json!({
            "type": "object",
            "required": ["score"],
            "properties": {
                "score": {"type": "integer", "minimum": 0, "maximum": 10,
                          "description": "How likely the patient is to recommend the clinic"},
                "comment": {"type": "string", "maxLength": 2000}
            }
        }));
        answer.response_schema = Some(survey_schema());
        let mut score = route(
            "GET",
            "/score",
            "The clinic's NPS over a period",
            &["owner", "admin"],
        );
        score.description =
            "Answers recorded between `from` and `to` (inclusive, UTC days).".into();
        score.query = vec![
            QueryParam {
                name: "from".into(),
                description: "First day, YYYY-MM-DD".into(),
                required: true,
            },
            QueryParam {
                name: "to".into(),
                description: "Last day, YYYY-MM-DD".into(),
                required: true,
            },
        ];
        score.response_schema = Some(json!({
            "type": "object",
            "properties": {
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "responses": {"type": "integer"},
                "promoters": {"type": "integer"},
                "passives": {"type": "integer"},
                "detractors": {"type": "integer"},
                "nps": {"type": "integer", "nullable": true, "minimum": -100, "maximum": 100}
            }
        }));
        Manifest {
            name: "nps".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Satisfaction survey (NPS) after every completed appointment".into(),
            events: vec!["appointment.completed".into()],
            routes: vec![list, answer, score],
            capabilities: vec!["appointments:read".into(), "patients:read".into()],
            tasks: vec![TaskSpec {
                name: "expire".into(),
                schedule: "0 30 3 * * *".into(),
            }],
        }
    }

    fn on_event(&self, host: &Host<'_>, event: Event) -> Result<(), Failure> {
        let text = |name: &str| -> Result<String, Failure> {
            event.payload[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Failure::internal(format!("the event has no {name}")))
        };
        let appointment_id = text("appointment_id")?;
        let survey = Survey {
            patient_id: text("patient_id")?,
            professional_id: text("professional_id")?,
            service_ids: event.payload["service_ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            completed_at: event.occurred_at.clone(),
            status: "pending".into(),
            score: None,
            comment: None,
            answered_at: None,
            appointment_id: appointment_id.clone(),
        };
        // Only if absent: a repeated delivery must not reset an answered survey.
        let written = host.kv_write(vec![KvWrite {
            key: format!("{SURVEY}{appointment_id}"),
            value: json!(survey),
            if_version: Some(0),
        }]);
        match written {
            Err(f) if f.code == "version_conflict" => Ok(()),
            other => other,
        }
    }

    fn on_request(&self, host: &Host<'_>, request: Request) -> Result<Response, Failure> {
        match (request.method.as_str(), request.route.as_str()) {
            ("GET", "/surveys") => list(host, &request),
            ("POST", "/surveys/{appointment_id}/response") => answer(host, &request),
            ("GET", "/score") => score(host, &request),
            _ => Err(Failure::not_found("route")),
        }
    }

    fn run_task(&self, host: &Host<'_>, task: Task) -> Result<(), Failure> {
        if task.name != "expire" {
            return Ok(());
        }
        let cutoff = (Utc::now() - chrono::Duration::days(EXPIRY_DAYS))
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        for entry in host.kv_scan(SURVEY)? {
            let Ok(mut survey) = serde_json::from_value::<Survey>(entry.value) else {
                continue;
            };
            if survey.status == "pending" && survey.completed_at < cutoff {
                survey.status = "expired".into();
                let written = host.kv_write(vec![KvWrite {
                    key: entry.key,
                    value: json!(survey),
                    if_version: Some(entry.version),
                }]);
                // Answered meanwhile: leave it.
                if let Err(f) = written
                    && f.code != "version_conflict"
                {
                    return Err(f);
                }
            }
        }
        Ok(())
    }
}

fn list(host: &Host<'_>, request: &Request) -> Result<Response, Failure> {
    let status = request.query.get("status").map(String::as_str);
    if let Some(s) = status
        && !["pending", "answered", "expired"].contains(&s)
    {
        return Err(Failure::invalid(
            "status",
            "must be pending, answered or expired",
        ));
    }
    let mut surveys: Vec<Survey> = host
        .kv_scan(SURVEY)?
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.value).ok())
        .filter(|s: &Survey| status.is_none_or(|want| s.status == want))
        .collect();
    surveys.sort_by(|a, b| b.completed_at.cmp(&a.completed_at));
    surveys.truncate(PAGE);
    let mut names = true;
    let items: Vec<Value> = surveys
        .into_iter()
        .map(|survey| {
            let mut item = json!(survey);
            if names {
                match host.patient(&survey.patient_id) {
                    Ok(patient) => item["patient_name"] = patient["full_name"].clone(),
                    // The clinic did not grant patients:read: list without names.
                    Err(f) if f.status == 403 => names = false,
                    Err(_) => {}
                }
            }
            item
        })
        .collect();
    Ok(Response::ok(json!({ "items": items })))
}

#[derive(Deserialize)]
struct Answer {
    score: Option<i64>,
    #[serde(default)]
    comment: Option<String>,
}

fn answer(host: &Host<'_>, request: &Request) -> Result<Response, Failure> {
    let body: Answer = serde_json::from_value(request.body.clone()).map_err(|_| {
        Failure::invalid(
            "body",
            "must be an object with score (0-10) and an optional comment",
        )
    })?;
    let score = match body.score {
        Some(s) if (0..=10).contains(&s) => s as u8,
        _ => return Err(Failure::invalid("score", "must be an integer from 0 to 10")),
    };
    let comment = body
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if comment.as_ref().is_some_and(|c| c.chars().count() > 2000) {
        return Err(Failure::invalid(
            "comment",
            "must be at most 2000 characters",
        ));
    }
    let key = format!("{SURVEY}{}", request.param("appointment_id")?);
    let Some((mut survey, version)) = host.kv_get_as::<Survey>(&key)? else {
        return Err(Failure::not_found("survey"));
    };
    if survey.status != "pending" {
        return Err(Failure::conflict(
            format!("survey_{}", survey.status),
            format!(
                "this survey is {}; only a pending survey takes an answer",
                survey.status
            ),
        ));
    }
    survey.status = "answered".into();
    survey.score = Some(score);
    survey.comment = comment;
    survey.answered_at = Some(now());
    host.kv_write(vec![KvWrite {
        key,
        value: json!(survey),
        if_version: Some(version),
    }])
    .map_err(|f| {
        if f.code == "version_conflict" {
            Failure::conflict("survey_changed", "the survey was answered meanwhile")
        } else {
            f
        }
    })?;
    Ok(Response::ok(json!(survey)))
}

fn day(request: &Request, name: &str) -> Result<NaiveDate, Failure> {
    let text = request
        .query
        .get(name)
        .ok_or_else(|| Failure::invalid(name, "is required, as YYYY-MM-DD"))?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Failure::invalid(name, format!("{text:?} is not a date as YYYY-MM-DD")))
}

fn score(host: &Host<'_>, request: &Request) -> Result<Response, Failure> {
    let from = day(request, "from")?;
    let to = day(request, "to")?;
    if to < from {
        return Err(Failure::invalid("to", "must not be before from"));
    }
    let (mut promoters, mut passives, mut detractors) = (0i64, 0i64, 0i64);
    for entry in host.kv_scan(SURVEY)? {
        let Ok(survey) = serde_json::from_value::<Survey>(entry.value) else {
            continue;
        };
        let (Some(score), Some(at)) = (survey.score, survey.answered_at.as_deref()) else {
            continue;
        };
        let Some(answered) = at
            .get(..10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if answered < from || answered > to {
            continue;
        }
        match score {
            9..=10 => promoters += 1,
            7..=8 => passives += 1,
            _ => detractors += 1,
        }
    }
    let responses = promoters + passives + detractors;
    let nps = (responses > 0).then(|| {
        let value = (promoters - detractors) as f64 * 100.0 / responses as f64;
        value.round() as i64
    });
    Ok(Response::ok(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "responses": responses,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "nps": nps,
    })))
}

harmony_plugin_api::export_plugin!(Nps);
