//! Sweeps derived from the OpenAPI document rather than from anyone's memory. Every
//! operation is called as every role of another clinic with one clinic's ids (the tenant
//! sweep) and as every role of that clinic (the role sweep); the answers are held to the
//! permission the document names for the operation and to `config/rbac_policy.csv`. The
//! document is the one the server serves, so the routes of the plugins it loaded are swept
//! like Harmony's own.
//!
//! An operation added later fails both sweeps until [`case`] says how to call it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, NaiveDate};
use diesel_async::SimpleAsyncConnection;
use harmony_core::config::PluginMode;
use harmony_core::events::Dispatcher;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::plugins::{self, PluginDir};
use crate::support::{Caller, Reply, TestApp, a_monday};
use crate::whatsapp;

/// One operation of the composed document.
#[derive(Debug)]
struct Operation {
    id: String,
    method: Method,
    /// The path template, `{name}` for each path parameter.
    path: String,
    /// Any one of these (`resource:action`) lets a caller in.
    permissions: Vec<String>,
    /// A plugin's route may narrow that to some roles; empty when it does not.
    roles: Vec<String>,
    /// Served by a plugin rather than by Harmony.
    by_plugin: bool,
    /// Whether the operation takes a bearer token at all.
    secured: bool,
}

/// Every operation of the document the server serves, which adds the routes of the
/// plugins it loaded to the composed modules' document.
async fn operations(app: &TestApp) -> Vec<Operation> {
    let served = app.anonymous().get("/openapi.json").await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    let mut operations = Vec::new();
    for (path, item) in served.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let description = operation["description"].as_str().unwrap_or("");
            let line = |prefix: &str| {
                description
                    .lines()
                    .find_map(|line| line.strip_prefix(prefix))
                    .unwrap_or("")
                    .to_owned()
            };
            let permissions = line("Permission: ")
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            let roles = line("Roles: ")
                .trim_end_matches('.')
                .split(", ")
                .filter(|role| !role.is_empty())
                .map(str::to_owned)
                .collect();
            operations.push(Operation {
                id: operation["operationId"].as_str().unwrap().to_owned(),
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                permissions,
                roles,
                by_plugin: operation["tags"][0]
                    .as_str()
                    .is_some_and(|tag| tag.starts_with("Plugin: ")),
                secured: operation.get("security").is_some(),
            });
        }
    }
    operations
}

impl Operation {
    /// Whether `policy` lets `role` call this operation.
    fn grants(&self, policy: &BTreeSet<(String, String)>, role: &str) -> bool {
        let permitted = self
            .permissions
            .iter()
            .any(|p| policy.contains(&(role.to_owned(), p.clone())));
        permitted && (self.roles.is_empty() || self.roles.iter().any(|r| r == role))
    }

    /// What lets a caller in, for a failure's message.
    fn rule(&self) -> String {
        let permissions = format!("the policy on any of {:?}", self.permissions);
        if self.roles.is_empty() {
            permissions
        } else {
            format!("{permissions}, narrowed to the roles {:?},", self.roles)
        }
    }
}

/// `(role, "resource:action")` for every grant in the checked-in policy.
fn policy() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/rbac_policy.csv"
    ))
    .unwrap();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            match fields.as_slice() {
                ["p", role, resource, action] => {
                    Some(((*role).to_owned(), format!("{resource}:{action}")))
                }
                _ => None,
            }
        })
        .collect()
}

/// What a seeded value is, so that a look-alike that belongs to nobody can be made.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Id,
    Phone,
    Code,
    Text,
}

/// The data seeded in one clinic, by name, and the same names for values that exist
/// nowhere (the ghost world), to compare "theirs" with "missing".
#[derive(Debug, Default)]
struct World {
    values: BTreeMap<&'static str, (Kind, String)>,
    slots: AtomicUsize,
    monday: Option<NaiveDate>,
}

impl World {
    fn set(&mut self, name: &'static str, kind: Kind, value: impl Into<String>) {
        self.values.insert(name, (kind, value.into()));
    }

    fn get(&self, name: &str) -> String {
        match self.values.get(name) {
            Some((_, value)) => value.clone(),
            None => panic!("the sweep's world has no `{name}`: seed it in `seed`"),
        }
    }

    /// The same names, each with a value of its kind that no clinic has.
    fn ghost(&self) -> World {
        let mut ghost = World {
            monday: self.monday,
            ..World::default()
        };
        for (name, (kind, _)) in &self.values {
            let value = match kind {
                Kind::Id => Uuid::now_v7().to_string(),
                Kind::Phone => format!("+55 21 9{:04}-{:04}", below(9999), below(9999)),
                Kind::Code => format!("origem_{}", Uuid::new_v4().simple()),
                Kind::Text => format!("Fantasma {}", Uuid::new_v4().simple()),
            };
            ghost.values.insert(name, (*kind, value));
        }
        ghost
    }

    /// Every seeded value, longest first (so that a value inside another is replaced last).
    fn all_values(&self) -> Vec<String> {
        let mut values: Vec<String> = self.values.values().map(|(_, v)| v.clone()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values
    }

    fn day(&self, weeks: i64) -> NaiveDate {
        self.monday.unwrap() + Duration::weeks(weeks)
    }

    /// A free half hour for a new booking: the afternoons of the weeks after the seeded ones.
    fn slot(&self) -> String {
        let n = self.slots.fetch_add(1, Ordering::Relaxed) as i64;
        let day = self.day(2 + n / 10);
        let minutes = 13 * 60 + (n % 10) * 30;
        format!("{day}T{:02}:{:02}:00-03:00", minutes / 60, minutes % 60)
    }
}

/// A random number under `max`.
fn below(max: u32) -> u32 {
    (Uuid::new_v4().as_u128() % u128::from(max)) as u32
}

/// A request for an operation: its path parameters, query and body.
#[derive(Debug, Default)]
struct Call {
    path: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    body: Option<Body>,
}

#[derive(Debug)]
enum Body {
    Json(Value),
    Bytes(&'static str, Vec<u8>),
}

/// How the sweeps treat an operation.
#[derive(Debug)]
enum Case {
    /// Called as each role.
    Call(Call),
    /// Called by nobody in particular: the reason its credential is not a role's token.
    Public(&'static str),
}

fn call() -> Call {
    Call::default()
}

impl Call {
    fn path(mut self, name: &'static str, value: String) -> Self {
        self.path.push((name, value));
        self
    }

    fn query(mut self, name: &'static str, value: String) -> Self {
        self.query.push((name, value));
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }

    fn done(self) -> Option<Case> {
        Some(Case::Call(self))
    }

    /// Whether the request itself holds `value`.
    fn carries(&self, value: &str) -> bool {
        let body = match &self.body {
            Some(Body::Json(body)) => body.to_string(),
            _ => String::new(),
        };
        self.path.iter().chain(&self.query).any(|(_, v)| v == value) || body.contains(value)
    }
}

/// Weekdays 09–12 and 13–18.
fn working_week() -> Value {
    let intervals: Vec<Value> = (1..=5)
        .flat_map(|d| {
            [
                json!({"weekday": d, "starts_at": "09:00", "ends_at": "12:00"}),
                json!({"weekday": d, "starts_at": "13:00", "ends_at": "18:00"}),
            ]
        })
        .collect();
    json!({ "intervals": intervals })
}

/// How to call each operation of the document with the data of `w`; `n` is unique to
/// this call, for values that must not repeat. `None` for an operation nobody has
/// described yet, which fails the sweeps.
fn case(operation: &str, w: &World, n: usize) -> Option<Case> {
    let monday = w.day(0);
    let week_after = w.day(1);
    // The seeded record called `name`, as the path's `id`.
    let by_id = |name: &str| call().path("id", w.get(name));
    match operation {
        "signup" | "login" | "refresh_token" | "logout" | "accept_invitation" => Some(
            Case::Public("no clinic yet: the credential, if any, is in the body"),
        ),
        "healthz" | "readyz" => Some(Case::Public("operational probes carry no data")),
        "get_calendar_feed" => Some(Case::Public(
            "the feed's secret token is its credential (tested in appointments.rs)",
        )),
        "verify_whatsapp_webhook" | "receive_whatsapp_webhook" => Some(Case::Public(
            "Meta's verify token and signature are the credentials (tested in whatsapp.rs)",
        )),

        "list_audit_events" => call()
            .query("subject_id", w.get("patient"))
            .query("actor_id", w.get("owner"))
            .done(),
        "get_me"
        | "get_tenant"
        | "list_members"
        | "list_professionals"
        | "list_plugins"
        | "list_referral_origins"
        | "list_services"
        | "list_resources"
        | "get_agenda_settings"
        | "get_whatsapp_settings"
        | "list_whatsapp_conversations" => call().done(),
        "update_me" => call().json(json!({"bio": "Atende às terças"})).done(),
        "update_tenant" => call()
            .json(json!({"contact_email": "contato@clinica.test"}))
            .done(),
        "invite_member" => call()
            .json(
                json!({"email": format!("convite-{n}@clinic.test"), "name": "Convidada",
                         "roles": ["receptionist"]}),
            )
            .done(),
        "update_member_roles" => call()
            .path("user_id", w.get("member"))
            .json(json!({"roles": ["receptionist"]}))
            .done(),
        "suspend_member" | "reactivate_member" => call().path("user_id", w.get("member")).done(),
        "get_professional" => call().path("user_id", w.get("professional")).done(),
        "get_plugin" => call().path("name", "nps".to_owned()).done(),
        // Enabled as `seed` enables it: the sweeps call the plugin's routes too.
        "configure_plugin" => call()
            .path("name", PLUGINS[0].0.to_owned())
            .json(json!({"enabled": true, "granted": PLUGINS[0].1}))
            .done(),

        "create_patient" => call()
            .json(json!({"full_name": format!("Paciente Varredura {n}"),
                         "referral_origin": w.get("origin")}))
            .done(),
        "list_patients" => call().query("q", w.get("patient_name")).done(),
        "get_patient" | "get_patient_access_log" | "list_patient_consents" => {
            call().path("id", w.get("patient")).done()
        }
        "update_patient" => call()
            .path("id", w.get("patient"))
            .json(json!({"nickname": "Jo"}))
            .done(),
        "archive_patient" | "unarchive_patient" => call().path("id", w.get("archivable")).done(),
        "lookup_patient" => call().query("phone", w.get("patient_phone")).done(),
        "create_minimal_patient" => call()
            .json(json!({"full_name": format!("Contato {n}"),
                         "phone": format!("+55 31 9{:04}-{:04}", n / 10_000, n % 10_000)}))
            .done(),
        "list_guardians" => call().path("id", w.get("minor")).done(),
        "add_guardian" => call()
            .path("id", w.get("minor"))
            .json(json!({"name": "Paula Mãe", "cpf": "111.444.777-35",
                         "phone": "(11) 97777-6666", "relationship": "mother"}))
            .done(),
        "remove_guardian" => call()
            .path("id", w.get("minor"))
            .path("guardian_id", w.get("guardian"))
            .done(),
        "record_patient_consent" => call()
            .path("id", w.get("patient"))
            .json(json!({"purpose": "marketing", "granted": true,
                         "policy_version": "2026-12", "channel": "in_person"}))
            .done(),
        "create_referral_origin" => call().json(json!({"label": format!("Origem {n}")})).done(),
        "update_referral_origin" => call()
            .path("code", w.get("origin"))
            .json(json!({"label": "Feira de Saúde"}))
            .done(),
        "upload_patient_photo" => Some(Case::Call(Call {
            body: Some(Body::Bytes("image/jpeg", crate::photos::jpeg_with_gps())),
            ..call().path("id", w.get("patient"))
        })),
        "download_patient_photo" => call().path("id", w.get("photographed")).done(),

        "create_service" => call()
            .json(json!({"name": format!("Peeling {n}"), "category": "facial",
                         "duration_minutes": 30, "price_cents": 15000,
                         "professional_ids": [w.get("professional")],
                         "resource_ids": [w.get("resource")]}))
            .done(),
        "get_service" => call().path("id", w.get("service")).done(),
        "update_service" => call()
            .path("id", w.get("service"))
            .json(json!({"description": "Com máscara calmante"}))
            .done(),
        "create_resource" => call()
            .json(json!({"name": format!("Sala {n}"), "kind": "room"}))
            .done(),
        "update_resource" => call()
            .path("id", w.get("resource"))
            .json(json!({"name": "Sala Azul"}))
            .done(),
        "update_agenda_settings" => call()
            .json(json!({"feed_shows_patient_name": false}))
            .done(),
        "get_working_hours" => call().path("id", w.get("professional")).done(),
        "set_working_hours" => call()
            .path("id", w.get("professional"))
            .json(working_week())
            .done(),
        "list_time_off" => call()
            .query("from", format!("{monday}T00:00:00-03:00"))
            .query("to", format!("{week_after}T00:00:00-03:00"))
            .query("professional_id", w.get("professional"))
            .done(),
        "create_time_off" => call()
            .json(json!({"professional_id": w.get("professional"),
                         "starts_at": format!("{}T08:00:00-03:00", w.day(30)),
                         "ends_at": format!("{}T09:00:00-03:00", w.day(30))}))
            .done(),
        "delete_time_off" => call().path("id", w.get("time_off")).done(),
        "get_clinic_calendar" => call().query("year", "2027".to_owned()).done(),
        "set_clinic_calendar_day" => call()
            .path("day", "2027-03-19".to_owned())
            .json(json!({"open": false, "name": "São José"}))
            .done(),
        "get_availability" => call()
            .query("service_ids", w.get("service"))
            .query("from", monday.to_string())
            .query("to", week_after.to_string())
            .query("professional_id", w.get("professional"))
            .done(),

        "book_appointment" => call()
            .json(
                json!({"patient_id": w.get("patient"), "service_ids": [w.get("service")],
                         "professional_id": w.get("professional"), "start": w.slot()}),
            )
            .done(),
        "list_appointments" => call()
            .query("from", monday.to_string())
            .query("to", week_after.to_string())
            .query("patient_id", w.get("patient"))
            .query("professional_id", w.get("professional"))
            .done(),
        "get_appointment" => by_id("visit").done(),
        "reschedule_appointment" => by_id("visit_reschedule")
            .json(json!({"start": w.slot()}))
            .done(),
        "cancel_appointment" => by_id("visit_cancel")
            .json(json!({"reason": "Imprevisto"}))
            .done(),
        "confirm_appointment" => by_id("visit_confirm").done(),
        "check_in_appointment" => by_id("visit_check_in").done(),
        "complete_appointment" => by_id("visit_complete").done(),
        "mark_no_show" => by_id("visit_no_show").done(),
        "book_series" => call()
            .json(
                json!({"patient_id": w.get("patient"), "service_ids": [w.get("service")],
                         "professional_id": w.get("professional"), "start": w.slot(),
                         "every_weeks": 1, "count": 2, "on_conflict": "skip"}),
            )
            .done(),
        "cancel_series" => call()
            .path("id", w.get("series"))
            .json(json!({"reason": "Mudou de cidade"}))
            .done(),
        "create_waitlist_entry" => call()
            .json(
                json!({"patient_id": w.get("patient"), "service_id": w.get("service"),
                         "periods": [{"weekday": 1, "from": "08:00", "to": "12:00"}]}),
            )
            .done(),
        "list_waitlist" => call()
            .query("service_id", w.get("service"))
            .query("patient_id", w.get("patient"))
            .done(),
        "withdraw_waitlist_entry" => call().path("id", w.get("waitlist")).done(),
        "create_calendar_feed" | "revoke_calendar_feed" => {
            call().path("id", w.get("professional")).done()
        }

        "update_whatsapp_settings" => call()
            .json(json!({"address": "Rua das Flores, 100"}))
            .done(),
        "list_whatsapp_messages" | "hand_back_whatsapp_conversation" => {
            by_id("conversation").done()
        }
        "reply_whatsapp_conversation" => by_id("conversation")
            .json(json!({"text": "Olá! Aqui é a recepção."}))
            .done(),
        "erase_whatsapp_conversation" => by_id("conversation_erased").done(),
        "opt_out_whatsapp_conversation" => by_id("conversation_opted_out")
            .json(json!({"channel": "phone"}))
            .done(),

        // The example plugins' routes, which the served document adds.
        "plugin_nps_get_surveys" => call().query("status", "pending".to_owned()).done(),
        "plugin_nps_post_surveys_appointment_id_response" => call()
            .path("appointment_id", w.get("visit_surveyed"))
            .json(json!({"score": 9, "comment": "Voltarei"}))
            .done(),
        "plugin_nps_get_score" => call()
            .query("from", monday.to_string())
            .query("to", week_after.to_string())
            .done(),
        "plugin_loyalty_get_rules" => call().done(),
        "plugin_loyalty_put_rules_service_id" => call()
            .path("service_id", w.get("service"))
            .json(json!({"points": 30}))
            .done(),
        "plugin_loyalty_get_patients_patient_id_balance" => {
            call().path("patient_id", w.get("patient")).done()
        }
        "plugin_loyalty_post_patients_patient_id_redeem" => call()
            .path("patient_id", w.get("patient"))
            .json(json!({"points": 1, "reason": "Brinde"}))
            .done(),
        _ => None,
    }
}

/// Every operation with its case; fails naming each operation that has none, or whose
/// document does not say what it needs.
fn cases_for_all(operations: &[Operation], w: &World) {
    let mut missing = Vec::new();
    for op in operations {
        match case(&op.id, w, 0) {
            None => missing.push(format!(
                "{} ({} {}): add an arm to `case` in tests/it/sweep.rs saying how to call it \
                 with the seeded world (seed what it needs in `seed`)",
                op.id, op.method, op.path
            )),
            Some(Case::Public(why)) if op.secured => missing.push(format!(
                "{}: the document says it takes a token, but `case` calls it public ({why})",
                op.id
            )),
            Some(Case::Call(_)) if !op.secured => missing.push(format!(
                "{}: the document says it takes no token: mark it `Case::Public` with the reason",
                op.id
            )),
            Some(Case::Call(_)) if op.permissions.is_empty() => missing.push(format!(
                "{}: its doc comment needs a line `Permission: `resource:action`.` naming what \
                 it checks",
                op.id
            )),
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "operations the sweeps cannot cover:\n{}",
        missing.join("\n")
    );
}

/// Sends `call` for `op` as `caller`.
async fn send(caller: &Caller, op: &Operation, call: &Call) -> Reply {
    let mut path = op.path.clone();
    for (name, value) in &call.path {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !path.contains('{'),
        "{}: a path parameter has no value in `case`: {path}",
        op.id
    );
    let mut request = caller.raw(op.method.clone(), &path);
    if !call.query.is_empty() {
        request = request.query(&call.query);
    }
    request = match &call.body {
        Some(Body::Json(body)) => request.json(body),
        Some(Body::Bytes(kind, bytes)) => request.header("content-type", *kind).body(bytes.clone()),
        None if op.method == Method::POST || op.method == Method::PUT => request.json(&json!({})),
        None => request,
    };
    Reply::from(request.send().await.unwrap()).await
}

/// A clinic's staff, one caller per role, by role name.
async fn staff(app: &TestApp, owner: &Caller) -> Vec<(&'static str, Caller)> {
    let mut staff = vec![("owner", owner.clone())];
    for role in ["admin", "professional", "receptionist", "finance"] {
        staff.push((role, app.member(owner, &[role]).await));
    }
    staff.push(("assistant", app.assistant(owner).await));
    staff
}

async fn created(reply: Reply, what: &str) -> String {
    assert!(
        reply.status.is_success(),
        "seeding {what}: {} {}",
        reply.status,
        reply.body
    );
    match reply.body["id"].as_str() {
        Some(id) => id.to_owned(),
        None => panic!("seeding {what}: no id in {}", reply.body),
    }
}

/// Clinic A's data: at least one of everything an operation can name, with a separate
/// appointment or conversation for each change that would spoil it for the next.
async fn seed(app: &TestApp, staff: &[(&'static str, Caller)]) -> World {
    let owner = &staff[0].1;
    let professional = &staff[2].1;
    let mut w = World {
        monday: Some(a_monday()),
        ..World::default()
    };
    w.set("owner", Kind::Id, owner.user_id.to_string());
    w.set("professional", Kind::Id, professional.user_id.to_string());
    let member = app.member(owner, &["receptionist"]).await;
    w.set("member", Kind::Id, member.user_id.to_string());

    owner
        .patch(
            "/api/v1/agenda-settings",
            json!({"granularity_minutes": 30, "max_advance_days": 365}),
        )
        .await;
    let set = professional
        .put(
            &format!(
                "/api/v1/professionals/{}/working-hours",
                professional.user_id
            ),
            working_week(),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);

    let origin = owner
        .post("/api/v1/referral-origins", json!({"label": "Feira Aurora"}))
        .await;
    w.set("origin", Kind::Code, origin.body["code"].as_str().unwrap());
    let resource = owner
        .post(
            "/api/v1/resources",
            json!({"name": "Sala Aurora", "kind": "room"}),
        )
        .await;
    w.set("resource", Kind::Id, created(resource, "a room").await);
    let service = owner
        .post(
            "/api/v1/services",
            json!({"name": "Limpeza Aurora", "category": "facial", "duration_minutes": 30,
                   "price_cents": 20000, "professional_ids": [professional.user_id]}),
        )
        .await;
    w.set("service", Kind::Id, created(service, "a service").await);

    w.set("patient_name", Kind::Text, "Joana Canário Prado");
    w.set("patient_phone", Kind::Phone, "+55 11 98888-7777");
    let patient = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Joana Canário Prado", "phone": "+55 11 98888-7777",
                   "cpf": "529.982.247-25", "email": "joana.canario@paciente.test"}),
        )
        .await;
    w.set("patient", Kind::Id, created(patient, "a patient").await);
    w.set("patient_cpf", Kind::Text, "529.982.247-25");
    w.set("patient_e164", Kind::Text, "+5511988887777");
    w.set("patient_email", Kind::Text, "joana.canario@paciente.test");
    for name in ["archivable", "photographed"] {
        let other = owner
            .post(
                "/api/v1/patients",
                json!({"full_name": format!("Paciente {name}")}),
            )
            .await;
        w.set(name, Kind::Id, created(other, name).await);
    }
    let photo = owner
        .raw(
            Method::PUT,
            &format!("/api/v1/patients/{}/photo", w.get("photographed")),
        )
        .header("content-type", "image/jpeg")
        .body(crate::photos::jpeg_with_gps())
        .send()
        .await
        .unwrap();
    assert!(photo.status().is_success(), "seeding a photo");
    let minor = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Lia Menor", "birth_date": "2015-05-01"}),
        )
        .await;
    w.set("minor", Kind::Id, created(minor, "a minor").await);
    let guardian = owner
        .post(
            &format!("/api/v1/patients/{}/guardians", w.get("minor")),
            json!({"name": "Rita Mãe", "cpf": "111.444.777-35", "phone": "(11) 97777-6666",
                   "relationship": "mother"}),
        )
        .await;
    w.set("guardian", Kind::Id, created(guardian, "a guardian").await);

    let visits = [
        "visit",
        "visit_reschedule",
        "visit_cancel",
        "visit_confirm",
        "visit_check_in",
        "visit_complete",
        "visit_no_show",
        "visit_surveyed",
    ];
    for (i, name) in visits.into_iter().enumerate() {
        let start = format!("{}T{:02}:00:00-03:00", w.day(0), 9 + i);
        let booked = owner
            .post(
                "/api/v1/appointments",
                json!({"patient_id": w.get("patient"), "service_ids": [w.get("service")],
                       "professional_id": w.get("professional"), "start": start,
                       "outside_hours": true}),
            )
            .await;
        w.set(name, Kind::Id, created(booked, name).await);
    }
    // Completing or marking a no-show waits for the start: those three began hours ago
    // (the API books nothing in the past).
    let mut admin = app.db.admin_connection().await;
    for (hours, name) in [
        (2, "visit_complete"),
        (4, "visit_no_show"),
        (6, "visit_surveyed"),
    ] {
        let began = format!("now() - interval '{hours} hours'");
        let span = format!("tstzrange({began}, {began} + interval '30 minutes')");
        admin
            .batch_execute(&format!(
                "UPDATE appointments SET during = {span}, blocks = {span} WHERE visit_id = '{}'",
                w.get(name)
            ))
            .await
            .unwrap();
    }
    // The plugins' data: a survey and points, from a visit completed as in the clinic.
    enable_plugins(owner).await;
    for verb in ["check-in", "complete"] {
        let path = format!("/api/v1/appointments/{}/{verb}", w.get("visit_surveyed"));
        let done = owner.post(&path, json!({})).await;
        assert_eq!(done.status, StatusCode::OK, "{verb}: {}", done.body);
    }
    deliver_to_plugins(app, owner, &w).await;

    let feed = professional
        .post(
            &format!(
                "/api/v1/professionals/{}/calendar-feed",
                professional.user_id
            ),
            json!({}),
        )
        .await;
    assert_eq!(feed.status, StatusCode::CREATED, "{}", feed.body);
    let series = owner
        .post(
            "/api/v1/appointment-series",
            json!({"patient_id": w.get("patient"), "service_ids": [w.get("service")],
                   "professional_id": w.get("professional"),
                   "start": format!("{}T11:00:00-03:00", w.day(1)),
                   "every_weeks": 1, "count": 2, "on_conflict": "fail"}),
        )
        .await;
    assert_eq!(series.status, StatusCode::CREATED, "{}", series.body);
    w.set(
        "series",
        Kind::Id,
        series.body["series_id"].as_str().unwrap(),
    );
    let time_off = owner
        .post(
            "/api/v1/time-off",
            json!({"professional_id": w.get("professional"),
                   "starts_at": format!("{}T08:00:00-03:00", w.day(0)),
                   "ends_at": format!("{}T09:00:00-03:00", w.day(0))}),
        )
        .await;
    w.set("time_off", Kind::Id, created(time_off, "time off").await);
    let waitlist = owner
        .post(
            "/api/v1/waitlist",
            json!({"patient_id": w.get("patient"), "service_id": w.get("service"),
                   "periods": [{"weekday": 2, "from": "08:00", "to": "12:00"}]}),
        )
        .await;
    w.set(
        "waitlist",
        Kind::Id,
        created(waitlist, "a waitlist entry").await,
    );

    whatsapp::connect_number(owner).await;
    for (n, (name, phone)) in [
        ("conversation", "5511976543210"),
        ("conversation_erased", "5511976543211"),
        ("conversation_opted_out", "5511976543212"),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = whatsapp::signed(app, &whatsapp::inbound_from(phone, "Oi", 9000 + n)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let list = owner.get("/api/v1/whatsapp/conversations").await;
        let id = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .find(|id| !w.values.values().any(|(_, v)| v == id))
            .expect("the new conversation");
        w.set(name, Kind::Id, id);
    }
    w
}

/// The example plugins, each with every capability it asks for.
const PLUGINS: [(&str, &[&str]); 2] = [
    ("nps", &["appointments:read", "patients:read"]),
    ("loyalty", &["appointments:read", "services:read"]),
];

/// Enables [`PLUGINS`] in the owner's clinic.
async fn enable_plugins(owner: &Caller) {
    for (plugin, granted) in PLUGINS {
        let enabled = plugins::enable(owner, plugin, granted).await;
        assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    }
}

/// Hands the outbox's events to the plugins, as the server's dispatchers would (the tests'
/// server runs none), until `visit_surveyed` has reached both: a survey and points.
async fn deliver_to_plugins(app: &TestApp, owner: &Caller, w: &World) {
    let balance = format!(
        "/api/v1/plugins/loyalty/patients/{}/balance",
        w.get("patient")
    );
    plugins::eventually("the plugins to take the completed visit", || async {
        for subscription in app.kernel.plugins.subscriptions() {
            Dispatcher::new(app.kernel.clone(), vec![subscription.clone()])
                .deliver(&subscription)
                .await
                .unwrap();
        }
        let surveys = owner.get("/api/v1/plugins/nps/surveys").await;
        let surveyed = surveys.body["items"][0]["appointment_id"] == w.get("visit_surveyed");
        surveyed && owner.get(&balance).await.body["points"].as_i64() > Some(0)
    })
    .await;
}

/// The app both sweeps run against: WhatsApp connected to a fake Graph API and the example
/// plugins installed, so that every operation has something to act on.
async fn start() -> (TestApp, crate::fakes::FakeGraph, PluginDir) {
    let plugins = PluginDir::new()
        .install("harmony-plugin-nps", PluginMode::Process)
        .install("harmony-plugin-loyalty", PluginMode::Process);
    let (app, graph) = whatsapp::sending_app_with(|config| plugins.configure(config)).await;
    (app, graph, plugins)
}

/// A reply with every value of `worlds` and every UUID replaced by a placeholder and its
/// request id dropped: what a caller could tell two answers apart by.
fn normalized(reply: &Reply, worlds: &[&World]) -> String {
    let mut body = reply.body.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("request_id");
    }
    let mut text = body.to_string();
    for world in worlds {
        for value in world.all_values() {
            text = text.replace(&value, "<value>");
        }
    }
    let uuid = |s: &str| s.len() == 36 && Uuid::parse_str(s).is_ok();
    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && uuid(&rest[..36]) {
            out.push_str("<uuid>");
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn another_clinics_ids_get_what_missing_ids_get_on_every_operation() {
    let (app, _graph, _plugins) = start().await;
    let a_owner = app.signup("Clínica Aurora").await;
    let a_staff = staff(&app, &a_owner).await;
    let theirs = seed(&app, &a_staff).await;
    let b_owner = app.signup("Clínica Boreal").await;
    let b_staff = staff(&app, &b_owner).await;
    enable_plugins(&b_owner).await;
    let operations = operations(&app).await;
    cases_for_all(&operations, &theirs);

    let counter = AtomicUsize::new(1);
    let mut failures = Vec::new();
    let mut never_looked_up = Vec::new();
    for op in &operations {
        // An operation with one of clinic A's values in its path must have been answered
        // "not found" to someone in B, or the sweep never reached the look-up. A plugin's
        // route looks nothing up in Harmony: its ids are keys of the plugin's own store,
        // which holds only the caller's clinic.
        let mut names_theirs = false;
        let mut not_found = false;
        for (role, caller) in &b_staff {
            let ghost = theirs.ghost();
            let n = counter.fetch_add(2, Ordering::Relaxed);
            let (Some(Case::Call(foreign)), Some(Case::Call(missing))) =
                (case(&op.id, &theirs, n), case(&op.id, &ghost, n + 1))
            else {
                continue;
            };
            names_theirs |= !op.by_plugin
                && foreign
                    .path
                    .iter()
                    .any(|(_, v)| theirs.values.values().any(|(_, seeded)| seeded == v));
            let with_theirs = send(caller, op, &foreign).await;
            let with_missing = send(caller, op, &missing).await;
            not_found |= with_theirs.status == StatusCode::NOT_FOUND;
            let what = format!("{} as clinic B's {role}", op.id);
            if with_theirs.status.is_server_error() || with_missing.status.is_server_error() {
                failures.push(format!(
                    "{what}: a 5xx: {} {}",
                    with_theirs.status, with_theirs.body
                ));
                continue;
            }
            if with_theirs.status != with_missing.status {
                failures.push(format!(
                    "{what}: clinic A's ids got {} ({}), missing ids got {} ({})",
                    with_theirs.status, with_theirs.body, with_missing.status, with_missing.body
                ));
                continue;
            }
            if with_theirs.status.is_success() {
                // A plugin may echo the key it was asked for (a balance of 0 points for that
                // id): what the caller sent tells the caller nothing.
                let text = with_theirs.body.to_string();
                let echoed = |v: &String| op.by_plugin && foreign.carries(v);
                if let Some(leak) = theirs
                    .all_values()
                    .into_iter()
                    .find(|v| text.contains(v) && !echoed(v))
                {
                    failures.push(format!(
                        "{what}: the answer holds clinic A's {leak:?}: {text}"
                    ));
                }
            } else {
                let (x, y) = (
                    normalized(&with_theirs, &[&theirs, &ghost]),
                    normalized(&with_missing, &[&theirs, &ghost]),
                );
                if x != y {
                    failures.push(format!(
                        "{what}: answers differ:\n  theirs:  {x}\n  missing: {y}"
                    ));
                }
            }
        }
        if names_theirs && !not_found {
            never_looked_up.push(op.id.as_str());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        never_looked_up.is_empty(),
        "no role of clinic B was told \"not found\" by {never_looked_up:?}: give clinic B a \
         role with the operation's permission, or fix its case"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_gets_exactly_what_the_policy_grants_on_every_operation() {
    let (app, _graph, _plugins) = start().await;
    let owner = app.signup("Clínica Aurora").await;
    let staff = staff(&app, &owner).await;
    let w = seed(&app, &staff).await;
    let operations = operations(&app).await;
    cases_for_all(&operations, &w);
    let policy = policy();

    let mut failures = Vec::new();
    for (i, op) in operations.iter().enumerate() {
        let granted = |role: &str| op.grants(&policy, role);
        // Refused roles first, while the data is as seeded: a refusal must not depend on
        // what an earlier call changed.
        let mut order: Vec<&(&str, Caller)> = staff.iter().collect();
        order.sort_by_key(|(role, _)| granted(role));
        let mut succeeded = false;
        let mut got = Vec::new();
        for (role, caller) in order {
            let Some(Case::Call(request)) = case(&op.id, &w, 1000 * (i + 1)) else {
                continue;
            };
            let reply = send(caller, op, &request).await;
            got.push(format!(
                "{role}: {} {}",
                reply.status.as_u16(),
                reply.code()
            ));
            let what = format!("{} as {role}", op.id);
            if reply.status.is_server_error() {
                failures.push(format!("{what}: a 5xx: {} {}", reply.status, reply.body));
            } else if granted(role) {
                if matches!(
                    reply.status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    failures.push(format!(
                        "{what}: {} grants it, yet {} {}",
                        op.rule(),
                        reply.status,
                        reply.body
                    ));
                }
                succeeded |= reply.status.is_success();
            } else if reply.status != StatusCode::FORBIDDEN || reply.code() != "forbidden" {
                failures.push(format!(
                    "{what}: {} refuses it, yet {} {}",
                    op.rule(),
                    reply.status,
                    reply.body
                ));
            }
        }
        let anyone = staff.iter().any(|(role, _)| granted(role));
        if anyone && !succeeded && matches!(case(&op.id, &w, 0), Some(Case::Call(_))) {
            failures.push(format!(
                "{}: no role succeeded ({}), so its call is not a valid one: fix its data in \
                 `case` or `seed`",
                op.id,
                got.join(", ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
