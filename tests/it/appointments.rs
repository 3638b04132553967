//! Appointments: booking without double bookings (proved by racing clients), the life
//! cycle, multi-service visits, series, the waitlist, events, roles and other clinics.

use chrono::{Duration, NaiveDate};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Actors, Caller, Reply, TestApp, a_monday};

fn at(day: NaiveDate, hhmm: &str) -> String {
    format!("{day}T{hhmm}:00-03:00")
}

/// A clinic with a 30-minute grid, a professional working 09–12 and 13–18 on weekdays,
/// a 60-minute service with 15 minutes of cleanup, a 30-minute one, and a patient.
struct Clinic {
    a: Actors,
    facial: String,
    peeling: String,
    patient: String,
}

async fn clinic(app: &TestApp) -> Clinic {
    let a = app.actors().await;
    let pro = a.professional.user_id;
    a.owner
        .patch(
            "/api/v1/agenda-settings",
            json!({"granularity_minutes": 30}),
        )
        .await;
    let week: Vec<Value> = (1..=5)
        .flat_map(|d| {
            [
                json!({"weekday": d, "starts_at": "09:00", "ends_at": "12:00"}),
                json!({"weekday": d, "starts_at": "13:00", "ends_at": "18:00"}),
            ]
        })
        .collect();
    let hours = a
        .professional
        .put(
            &format!("/api/v1/professionals/{pro}/working-hours"),
            json!({ "intervals": week }),
        )
        .await;
    assert_eq!(hours.status, StatusCode::OK, "{}", hours.body);
    let service = |name: &str, minutes: i32, buffer: i32| {
        json!({"name": name, "category": "facial", "duration_minutes": minutes,
               "buffer_after_minutes": buffer, "price_cents": 20000, "professional_ids": [pro]})
    };
    let facial = a
        .owner
        .post("/api/v1/services", service("Limpeza de pele", 60, 15))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let peeling = a
        .owner
        .post("/api/v1/services", service("Peeling", 30, 0))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patient = a
        .owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Joana Prado", "phone": "11 98888-7777"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Clinic {
        a,
        facial,
        peeling,
        patient,
    }
}

impl Clinic {
    async fn book(&self, who: &Caller, services: &[&str], start: &str) -> Reply {
        who.post(
            "/api/v1/appointments",
            json!({"patient_id": self.patient, "service_ids": services,
                   "professional_id": self.a.professional.user_id, "start": start}),
        )
        .await
    }
}

fn hhmm(value: &Value) -> String {
    value.as_str().unwrap()[11..16].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn booking_takes_a_free_start_and_refuses_an_overlap_with_the_next_free_ones() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();

    let booked = c
        .book(&c.a.receptionist, &[&c.facial], &at(day, "09:00"))
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    assert_eq!(booked.body["status"], "scheduled");
    assert_eq!(booked.body["start"], format!("{day}T09:00:00-03:00"));
    assert_eq!(hhmm(&booked.body["end"]), "10:00");
    assert_eq!(booked.body["time_zone"], "America/Sao_Paulo");
    assert_eq!(booked.body["services"][0]["name"], "Limpeza de pele");
    assert_eq!(booked.body["price_cents"], 20000);
    let id = booked.body["id"].as_str().unwrap();
    assert_eq!(
        c.a.owner
            .get(&format!("/api/v1/appointments/{id}"))
            .await
            .body["id"],
        id
    );

    // Overlapping, and inside the cleanup buffer (10:00–10:15): 409 with what is free.
    for start in ["09:30", "10:00"] {
        let taken = c.book(&c.a.owner, &[&c.peeling], &at(day, start)).await;
        assert_eq!(
            taken.status,
            StatusCode::CONFLICT,
            "{start}: {}",
            taken.body
        );
        assert_eq!(taken.body["code"], "slot_taken");
        let next = taken.body["extra"]["next_slots"].as_array().unwrap();
        assert_eq!(hhmm(&next[0]["start"]), "10:30", "{}", taken.body);
    }
    // Placed outside the working hours' rules, only the database's constraint judges the
    // overlap: still a 409, with the same answer.
    let forced =
        c.a.owner
            .post(
                "/api/v1/appointments",
                json!({"patient_id": c.patient, "service_ids": [&c.peeling],
                   "professional_id": c.a.professional.user_id,
                   "start": at(day, "09:30"), "outside_hours": true}),
            )
            .await;
    assert_eq!(forced.status, StatusCode::CONFLICT, "{}", forced.body);
    assert_eq!(forced.body["code"], "slot_taken");
    assert_eq!(
        hhmm(&forced.body["extra"]["next_slots"][0]["start"]),
        "10:30"
    );
    assert_eq!(
        c.book(&c.a.owner, &[&c.peeling], &at(day, "10:30"))
            .await
            .status,
        StatusCode::CREATED
    );

    // Several services in one visit: back to back, the buffer after the last one only.
    let visit = c
        .book(&c.a.owner, &[&c.peeling, &c.facial], &at(day, "13:00"))
        .await;
    assert_eq!(visit.status, StatusCode::CREATED, "{}", visit.body);
    let parts = visit.body["services"].as_array().unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|p| (hhmm(&p["start"]), hhmm(&p["end"])))
            .collect::<Vec<_>>(),
        [
            ("13:00".to_owned(), "13:30".to_owned()),
            ("13:30".to_owned(), "14:30".to_owned())
        ]
    );
    assert_eq!(hhmm(&visit.body["end"]), "14:30");
    assert_eq!(visit.body["price_cents"], 40000);
    let free =
        c.a.owner
            .get(&format!(
                "/api/v1/availability?service_ids={}&from={day}&to={day}",
                c.peeling
            ))
            .await;
    let starts: Vec<String> = free.body["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hhmm(&s["start"]))
        .collect();
    assert!(!starts.contains(&"14:30".to_owned()), "{starts:?}");
    assert!(starts.contains(&"15:00".to_owned()), "{starts:?}");

    // The outbox says so, without health data.
    let mut admin = app.db.admin_connection().await;
    let events: Vec<Payload> = diesel::sql_query(
        "SELECT payload::text AS payload FROM outbox_events WHERE topic = 'appointment.booked' ORDER BY seq",
    )
    .load(&mut admin)
    .await
    .unwrap();
    assert_eq!(events.len(), 3);
    let first: Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(first["appointment_id"], id);
    assert_eq!(first["patient_id"], c.patient.as_str());
    assert!(!events[0].payload.contains("Joana"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bookings_name_their_field_and_other_clinics_ids_are_not_found() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    let pro = c.a.professional.user_id;
    let invalid = |reply: &Reply, field: &str| {
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
        assert_eq!(reply.body["errors"][0]["field"], field, "{}", reply.body);
    };
    invalid(
        &c.book(&c.a.owner, &[&c.facial], &at(day, "09:10")).await,
        "start",
    );
    invalid(
        &c.book(&c.a.owner, &[&c.facial], &at(day, "07:00")).await,
        "start",
    );
    invalid(
        &c.book(&c.a.owner, &[&c.facial], "2020-01-06T09:00:00-03:00")
            .await,
        "start",
    );
    invalid(
        &c.book(&c.a.owner, &[&c.facial], "2099-01-05T09:00:00-03:00")
            .await,
        "start",
    );
    invalid(
        &c.book(&c.a.owner, &[&c.facial], "next monday at nine")
            .await,
        "start",
    );
    invalid(
        &c.book(&c.a.owner, &[&c.facial], &format!("{day}T09:00:00"))
            .await,
        "start",
    );
    invalid(
        &c.book(&c.a.owner, &[], &at(day, "09:00")).await,
        "service_ids",
    );
    // A service the professional does not perform.
    let colleague = app.member(&c.a.owner, &["professional"]).await;
    let other = c
        .a
        .owner
        .post("/api/v1/services", json!({"name": "Botox", "category": "injectables", "duration_minutes": 30,
                                          "price_cents": 90000, "professional_ids": [colleague.user_id]}))
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let other = other.body["id"].as_str().unwrap();
    invalid(
        &c.book(&c.a.owner, &[other], &at(day, "09:00")).await,
        "professional_id",
    );

    // Ids of another clinic are 404s, as if they did not exist.
    let theirs =
        c.a.other_owner
            .post("/api/v1/patients", json!({"full_name": "Outra Pessoa"}))
            .await;
    let foreign =
        c.a.owner
            .post(
                "/api/v1/appointments",
                json!({"patient_id": theirs.body["id"], "service_ids": [c.facial],
                   "professional_id": pro, "start": at(day, "09:00")}),
            )
            .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    let booked = c.book(&c.a.owner, &[&c.facial], &at(day, "09:00")).await;
    let id = booked.body["id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/api/v1/appointments/{id}")),
        ("POST", format!("/api/v1/appointments/{id}/confirm")),
        ("POST", format!("/api/v1/appointments/{id}/cancel")),
    ] {
        let reply =
            c.a.other_owner
                .send(method.parse().unwrap(), &path, Some(json!({})))
                .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let theirs = c.a.other_owner.get("/api/v1/appointments").await;
    assert_eq!(theirs.body["items"], json!([]));
    // The booking is untouched.
    assert_eq!(
        c.a.owner
            .get(&format!("/api/v1/appointments/{id}"))
            .await
            .body["status"],
        "scheduled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_life_cycle_allows_only_its_transitions() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    let booked = c.book(&c.a.owner, &[&c.facial], &at(day, "09:00")).await;
    let id = booked.body["id"].as_str().unwrap().to_owned();
    let act = |verb: &str, body: Value| {
        let path = format!("/api/v1/appointments/{id}/{verb}");
        let caller = c.a.receptionist.clone();
        async move { caller.post(&path, body).await }
    };

    let confirmed = act("confirm", json!({})).await;
    assert_eq!(confirmed.body["status"], "confirmed", "{}", confirmed.body);
    assert!(confirmed.body["confirmed_at"].is_string());
    let again = act("confirm", json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["code"], "invalid_transition");
    assert_eq!(again.body["extra"]["current_status"], "confirmed");
    assert!(again.body["detail"].as_str().unwrap().contains("confirmed"));
    // Not yet started: neither completed nor a no-show.
    assert_eq!(act("no-show", json!({})).await.body["code"], "not_started");

    // Moving it asks for a new confirmation.
    let moved = act("reschedule", json!({"start": at(day, "14:00")})).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(moved.body["status"], "scheduled");
    assert_eq!(hhmm(&moved.body["start"]), "14:00");
    // The old time is free again.
    assert_eq!(
        c.book(&c.a.owner, &[&c.peeling], &at(day, "09:00"))
            .await
            .status,
        StatusCode::CREATED
    );
    // Onto a taken time: 409, and the appointment stays where it was.
    let clash = act("reschedule", json!({"start": at(day, "09:00")})).await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.body);
    let still = c.a.owner.get(&format!("/api/v1/appointments/{id}")).await;
    assert_eq!(hhmm(&still.body["start"]), "14:00");

    let cancelled = act(
        "cancel",
        json!({"reason": "Paciente viajou", "cancelled_by": "patient"}),
    )
    .await;
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["cancelled_by"], "patient");
    assert_eq!(cancelled.body["cancel_reason"], "Paciente viajou");
    for verb in ["confirm", "check-in", "complete", "cancel"] {
        let refused = act(verb, json!({})).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{verb}");
        assert_eq!(
            refused.body["extra"]["current_status"], "cancelled",
            "{verb}"
        );
    }
    let refused = act("reschedule", json!({"start": at(day, "15:00")})).await;
    assert_eq!(refused.body["code"], "invalid_transition");
    // Its time can be booked again.
    assert_eq!(
        c.book(&c.a.owner, &[&c.facial], &at(day, "14:00"))
            .await
            .status,
        StatusCode::CREATED
    );

    // An appointment that already started: checked in, completed; another one a no-show.
    let mut admin = app.db.admin_connection().await;
    let (tenant, pro, patient, service) = (
        c.a.owner.tenant_id,
        c.a.professional.user_id,
        &c.patient,
        &c.facial,
    );
    let past = [Uuid::now_v7(), Uuid::now_v7()];
    for (i, visit) in past.iter().enumerate() {
        admin
            .batch_execute(&format!(
                "INSERT INTO appointments (tenant_id, id, visit_id, patient_id, professional_id, service_id, during, blocks, price_cents, currency)
                 VALUES ('{tenant}', '{visit}', '{visit}', '{patient}', '{pro}', '{service}',
                         tstzrange(now() - interval '{h} hours', now() - interval '{e} hours'),
                         tstzrange(now() - interval '{h} hours', now() - interval '{e} hours'), 20000, 'BRL')",
                h = 3 * i + 3,
                e = 3 * i + 2
            ))
            .await
            .unwrap();
    }
    let path = |visit: &Uuid, verb: &str| format!("/api/v1/appointments/{visit}/{verb}");
    let r = &c.a.receptionist;
    assert_eq!(
        r.post(&path(&past[0], "check-in"), json!({})).await.body["status"],
        "checked_in"
    );
    assert_eq!(
        r.post(&path(&past[0], "no-show"), json!({})).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        r.post(&path(&past[0], "complete"), json!({})).await.body["status"],
        "completed"
    );
    assert_eq!(
        r.post(&path(&past[1], "no-show"), json!({})).await.body["status"],
        "no_show"
    );

    // The life cycle is in the outbox.
    #[derive(diesel::QueryableByName)]
    struct Topic {
        #[diesel(sql_type = Text)]
        topic: String,
    }
    let topics: Vec<String> = diesel::sql_query("SELECT topic FROM outbox_events ORDER BY seq")
        .load::<Topic>(&mut admin)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.topic)
        .filter(|t| t.starts_with("appointment."))
        .collect();
    for topic in [
        "appointment.booked",
        "appointment.confirmed",
        "appointment.rescheduled",
        "appointment.cancelled",
        "appointment.checked_in",
        "appointment.completed",
        "appointment.no_show",
    ] {
        assert!(topics.contains(&topic.to_owned()), "{topic} in {topics:?}");
    }

    // Lists filter by day, status and patient.
    let list =
        c.a.owner
            .get(&format!(
                "/api/v1/appointments?from={day}&to={day}&status=scheduled"
            ))
            .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let cancelled =
        c.a.owner
            .get(&format!(
                "/api/v1/appointments?status=cancelled&patient_id={}",
                c.patient
            ))
            .await;
    assert_eq!(cancelled.body["items"][0]["id"], id.as_str());
    let bad = c.a.owner.get("/api/v1/appointments?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "from");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_series_is_all_or_nothing_or_skips_what_is_taken() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    // The second Monday is taken at 09:00.
    let week2 = day + Duration::days(7);
    assert_eq!(
        c.book(&c.a.owner, &[&c.peeling], &at(week2, "09:00"))
            .await
            .status,
        StatusCode::CREATED
    );
    let series = |on_conflict: &str| {
        json!({"patient_id": c.patient, "service_ids": [c.facial],
               "professional_id": c.a.professional.user_id, "start": at(day, "09:00"),
               "every_weeks": 1, "count": 4, "on_conflict": on_conflict})
    };
    let failed =
        c.a.owner
            .post("/api/v1/appointment-series", series("fail"))
            .await;
    assert_eq!(failed.status, StatusCode::CONFLICT, "{}", failed.body);
    assert_eq!(failed.body["code"], "series_conflicts");
    assert_eq!(failed.body["extra"]["conflicts"][0]["reason"], "slot_taken");
    let listed =
        c.a.owner
            .get(&format!("/api/v1/appointments?patient_id={}", c.patient))
            .await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "nothing booked"
    );

    let skipped =
        c.a.owner
            .post("/api/v1/appointment-series", series("skip"))
            .await;
    assert_eq!(skipped.status, StatusCode::CREATED, "{}", skipped.body);
    let booked = skipped.body["appointments"].as_array().unwrap();
    assert_eq!(booked.len(), 3);
    assert_eq!(skipped.body["skipped"].as_array().unwrap().len(), 1);
    assert!(
        skipped.body["skipped"][0]["start"]
            .as_str()
            .unwrap()
            .starts_with(&week2.to_string())
    );
    for appointment in booked {
        assert_eq!(hhmm(&appointment["start"]), "09:00");
        assert_eq!(appointment["series_id"], skipped.body["series_id"]);
    }

    let bad =
        c.a.owner
            .post(
                "/api/v1/appointment-series",
                json!({"patient_id": c.patient, "service_ids": [c.facial],
                   "professional_id": c.a.professional.user_id, "start": at(day, "09:00"),
                   "every_weeks": 0, "count": 4, "on_conflict": "skip"}),
            )
            .await;
    assert_eq!(bad.body["errors"][0]["field"], "every_weeks");

    // Cancelling the series cancels what is left of it.
    let series_id = skipped.body["series_id"].as_str().unwrap();
    let cancelled =
        c.a.owner
            .post(
                &format!("/api/v1/appointment-series/{series_id}/cancel"),
                json!({"reason": "Fim do tratamento"}),
            )
            .await;
    assert_eq!(cancelled.body["items"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_tells_the_waitlist() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    let booked = c.book(&c.a.owner, &[&c.facial], &at(day, "09:00")).await;
    let id = booked.body["id"].as_str().unwrap();
    let waiting =
        c.a.receptionist
            .post(
                "/api/v1/waitlist",
                json!({"patient_id": c.patient, "service_id": c.peeling,
                   "periods": [{"weekday": 1, "from": "08:00", "to": "12:00"}]}),
            )
            .await;
    assert_eq!(waiting.status, StatusCode::CREATED, "{}", waiting.body);
    let elsewhere =
        c.a.receptionist
            .post(
                "/api/v1/waitlist",
                json!({"patient_id": c.patient, "service_id": c.peeling,
                   "periods": [{"weekday": 3, "from": "08:00", "to": "12:00"}]}),
            )
            .await;
    let bad =
        c.a.receptionist
            .post(
                "/api/v1/waitlist",
                json!({"patient_id": c.patient, "service_id": c.peeling,
                   "periods": [{"weekday": 9, "from": "12:00", "to": "08:00"}]}),
            )
            .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.body["errors"].as_array().unwrap().len(),
        2,
        "{}",
        bad.body
    );

    c.a.owner
        .post(&format!("/api/v1/appointments/{id}/cancel"), json!({}))
        .await;
    let list = c.a.receptionist.get("/api/v1/waitlist").await;
    let status_of = |entry: &Reply| {
        list.body
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == entry.body["id"])
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of(&waiting), "notified");
    assert_eq!(
        status_of(&elsewhere),
        "waiting",
        "a Wednesday does not suit"
    );
    let mut admin = app.db.admin_connection().await;
    let offered: Vec<Payload> = diesel::sql_query(
        "SELECT payload::text AS payload FROM outbox_events WHERE topic = 'waitlist.slot_available'",
    )
    .load(&mut admin)
    .await
    .unwrap();
    assert_eq!(offered.len(), 1);
    let offer: Value = serde_json::from_str(&offered[0].payload).unwrap();
    assert_eq!(offer["waitlist_entry_id"], waiting.body["id"]);
    assert_eq!(offer["start"], format!("{day}T12:00:00Z"));

    // Booking the patient takes them off the list.
    c.book(&c.a.owner, &[&c.peeling], &at(day, "10:00")).await;
    let list = c.a.receptionist.get("/api/v1/waitlist").await;
    assert!(list.body.as_array().unwrap().is_empty(), "{}", list.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_books_and_who_attends() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    let assistant = app.assistant(&c.a.owner).await;
    let booked = c.book(&assistant, &[&c.facial], &at(day, "09:00")).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let id = booked.body["id"].as_str().unwrap();
    // The assistant confirms and cancels for the patient, but sees no agenda and does not
    // check anyone in or book outside hours.
    assert_eq!(
        assistant
            .post(&format!("/api/v1/appointments/{id}/confirm"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    for (method, path) in [
        ("GET", "/api/v1/appointments".to_owned()),
        ("GET", format!("/api/v1/appointments/{id}")),
        ("POST", format!("/api/v1/appointments/{id}/check-in")),
    ] {
        let reply = assistant
            .send(method.parse().unwrap(), &path, Some(json!({})))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let squeeze = assistant
        .post(
            "/api/v1/appointments",
            json!({"patient_id": c.patient, "service_ids": [c.facial],
                   "professional_id": c.a.professional.user_id, "start": at(day, "19:00"),
                   "outside_hours": true}),
        )
        .await;
    assert_eq!(squeeze.status, StatusCode::FORBIDDEN);
    // The front desk may squeeze one in after hours.
    let squeezed =
        c.a.receptionist
            .post(
                "/api/v1/appointments",
                json!({"patient_id": c.patient, "service_ids": [c.facial],
                   "professional_id": c.a.professional.user_id, "start": at(day, "19:00"),
                   "outside_hours": true}),
            )
            .await;
    assert_eq!(squeezed.status, StatusCode::CREATED, "{}", squeezed.body);
    assert_eq!(
        assistant
            .post(
                &format!("/api/v1/appointments/{id}/cancel"),
                json!({"cancelled_by": "patient"})
            )
            .await
            .body["cancelled_by"],
        "patient"
    );
}

#[derive(diesel::QueryableByName)]
struct Payload {
    #[diesel(sql_type = Text)]
    payload: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_clients_never_double_book() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    // 48 clients, 8 at a time on each of six overlapping starts between 09:00 and 11:30.
    let starts = ["09:00", "09:30", "10:00", "10:30", "11:00", "09:00"];
    let mut racers = Vec::new();
    for i in 0..48 {
        let caller = if i % 2 == 0 {
            c.a.owner.clone()
        } else {
            c.a.receptionist.clone()
        };
        let body = json!({"patient_id": c.patient, "service_ids": [if i % 3 == 0 { &c.peeling } else { &c.facial }],
                          "professional_id": c.a.professional.user_id,
                          "start": at(day, starts[i % starts.len()])});
        racers.push(tokio::spawn(async move {
            let reply = caller.post("/api/v1/appointments", body).await;
            (reply.status, reply.body)
        }));
    }
    let mut created = 0;
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "{status} {body}"
        );
        created += usize::from(status == StatusCode::CREATED);
    }
    assert!(created >= 2, "some bookings succeed");

    let mut admin = app.db.admin_connection().await;
    let overlaps: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM appointments a JOIN appointments b
           ON a.tenant_id = b.tenant_id AND a.professional_id = b.professional_id AND a.id < b.id
          WHERE a.status <> 'cancelled' AND b.status <> 'cancelled' AND a.blocks && b.blocks",
    )
    .get_result(&mut admin)
    .await
    .unwrap();
    assert_eq!(overlaps.n, 0);
    let rows: Count = diesel::sql_query("SELECT count(*) AS n FROM appointments")
        .get_result(&mut admin)
        .await
        .unwrap();
    assert_eq!(rows.n as usize, created);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_professional_subscribes_to_a_secret_calendar_feed() {
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    let pro = c.a.professional.user_id;
    c.book(&c.a.owner, &[&c.peeling, &c.facial], &at(day, "09:00"))
        .await;
    let path = format!("/api/v1/professionals/{pro}/calendar-feed");
    assert_eq!(
        c.a.receptionist.post(&path, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    let colleague = app.member(&c.a.owner, &["professional"]).await;
    assert_eq!(
        colleague.post(&path, json!({})).await.status,
        StatusCode::FORBIDDEN,
        "only their own"
    );
    let created = c.a.professional.post(&path, json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let url = created.body["url"].as_str().unwrap();
    let feed_path = &url[url.find("/api/v1/").unwrap()..];
    assert!(feed_path.ends_with(".ics"));

    let fetch = |path: String| {
        let anonymous = c.a.anonymous.clone();
        async move {
            let response = anonymous
                .raw(reqwest::Method::GET, &path)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, response.text().await.unwrap())
        }
    };
    let (status, kind, body) = fetch(feed_path.to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(kind.unwrap().starts_with("text/calendar"));
    assert!(body.starts_with("BEGIN:VCALENDAR\r\n"));
    assert_eq!(body.matches("BEGIN:VEVENT").count(), 1);
    let start = format!("DTSTART:{}T120000Z", day.format("%Y%m%d"));
    assert!(body.contains(&start), "{body}");
    assert!(
        body.contains("SUMMARY:Peeling + Limpeza de pele — Joana\r\n"),
        "{body}"
    );
    assert!(!body.contains("Prado"), "first name only");

    // The clinic can hide the name.
    c.a.owner
        .patch(
            "/api/v1/agenda-settings",
            json!({"feed_shows_patient_name": false}),
        )
        .await;
    let (_, _, body) = fetch(feed_path.to_owned()).await;
    assert!(
        body.contains("SUMMARY:Peeling + Limpeza de pele\r\n"),
        "{body}"
    );
    assert!(!body.contains("Joana"));

    // A wrong secret, a retired URL and a revoked one are all 404s.
    let wrong = format!("{}x.ics", feed_path.trim_end_matches(".ics"));
    assert_eq!(fetch(wrong).await.0, StatusCode::NOT_FOUND);
    let renewed = c.a.owner.post(&path, json!({})).await;
    assert_eq!(renewed.status, StatusCode::CREATED);
    assert_eq!(fetch(feed_path.to_owned()).await.0, StatusCode::NOT_FOUND);
    let url = renewed.body["url"].as_str().unwrap();
    let renewed_path = url[url.find("/api/v1/").unwrap()..].to_owned();
    assert_eq!(fetch(renewed_path.clone()).await.0, StatusCode::OK);
    let revoked =
        c.a.professional
            .send(reqwest::Method::DELETE, &path, None)
            .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(fetch(renewed_path).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_acts_through_the_service_api_for_one_patient_only() {
    use harmony_agenda::service;
    let app = TestApp::start().await;
    let c = clinic(&app).await;
    let day = a_monday();
    let assistant = app.assistant(&c.a.owner).await;
    let actor = harmony_core::auth::Actor {
        kind: harmony_core::auth::ActorKind::Assistant,
        user_id: assistant.user_id,
        tenant_id: assistant.tenant_id,
        request: std::sync::Arc::new(harmony_core::http::RequestContext::new(
            "test".into(),
            None,
            None,
        )),
    };
    let kernel = &app.kernel;
    let patient: Uuid = c.patient.parse().unwrap();
    let services = service::list_services(kernel, &actor).await.unwrap();
    assert_eq!(services.len(), 2);
    let facial: Uuid = c.facial.parse().unwrap();
    let free = service::availability(kernel, &actor, &[facial], (day, day), None)
        .await
        .unwrap();
    let first = free.slots[0].start.with_timezone(&chrono::Utc);
    let booked = service::book(
        kernel,
        &actor,
        service::Booking {
            patient_id: patient,
            service_ids: vec![facial],
            professional_id: c.a.professional.user_id,
            start: first,
            notes: None,
            booked_by: service::Party::Patient,
            outside_hours: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(booked.booked_by, "patient");
    let upcoming = service::upcoming_for_patient(kernel, &actor, patient)
        .await
        .unwrap();
    assert_eq!(upcoming.len(), 1);

    // Another patient's appointment is not found for this one.
    let other: Uuid =
        c.a.owner
            .post("/api/v1/patients", json!({"full_name": "Outro Paciente"}))
            .await
            .body["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let refused = service::cancel(kernel, &actor, other, booked.id, None).await;
    assert!(matches!(
        refused,
        Err(harmony_core::error::Error::NotFound { .. })
    ));
    let later = first + Duration::hours(1);
    let moved = service::reschedule(kernel, &actor, patient, booked.id, later)
        .await
        .unwrap();
    assert_eq!(moved.start.with_timezone(&chrono::Utc), later);
    let confirmed = service::confirm(kernel, &actor, patient, booked.id)
        .await
        .unwrap();
    assert_eq!(confirmed.status, "confirmed");

    // Reminders: due within the window, once.
    let scope = harmony_core::db::TenantScope::clinic(c.a.owner.tenant_id);
    let tenant = c.a.owner.tenant_id;
    let due = kernel
        .db
        .tenant(scope, |conn| {
            use scoped_futures::ScopedFutureExt;
            async move {
                let far = Duration::days(60);
                let due = service::due_for_reminder(conn, kernel, tenant, far, 50).await?;
                for a in &due {
                    service::mark_reminded(conn, a.id).await?;
                }
                let again = service::due_for_reminder(conn, kernel, tenant, far, 50).await?;
                Ok::<_, harmony_core::error::Error>((due.len(), again.len()))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(due, (1, 0));

    let cancelled = service::cancel(kernel, &actor, patient, booked.id, Some("viagem".into()))
        .await
        .unwrap();
    assert_eq!(cancelled.cancelled_by.as_deref(), Some("patient"));
}
