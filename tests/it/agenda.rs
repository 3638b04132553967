//! The agenda's foundations: services, resources, working hours, time off, the clinic's
//! calendar and settings.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TestApp, a_monday};

fn laser(professional: Uuid, room: &Value) -> Value {
    json!({
        "name": "Depilação a laser", "category": "laser", "duration_minutes": 45,
        "buffer_after_minutes": 15, "price_cents": 25000, "color": "#7C3AED",
        "professional_ids": [professional], "resource_ids": [room]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn services_name_who_performs_them_and_what_they_need() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let room = a
        .owner
        .post(
            "/api/v1/resources",
            json!({"name": "Sala 1", "kind": "room"}),
        )
        .await;
    assert_eq!(room.status, StatusCode::CREATED, "{}", room.body);
    let created = a
        .owner
        .post(
            "/api/v1/services",
            laser(a.professional.user_id, &room.body["id"]),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["color"], "#7c3aed");
    assert_eq!(created.body["currency"], "BRL");
    assert_eq!(
        created.body["professional_ids"],
        json!([a.professional.user_id])
    );
    assert_eq!(created.body["resource_ids"], json!([room.body["id"]]));
    let id = created.body["id"].as_str().unwrap();

    // Everyone can read the catalog; only managers change it.
    assert_eq!(
        a.receptionist
            .get("/api/v1/services")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let denied = a
        .professional
        .patch(&format!("/api/v1/services/{id}"), json!({"price_cents": 1}))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let retired = a
        .admin
        .patch(&format!("/api/v1/services/{id}"), json!({"active": false}))
        .await;
    assert_eq!(retired.body["active"], false);
    assert!(
        a.owner
            .get("/api/v1/services?active=true")
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Bad input names its fields; someone who is not a professional here is refused.
    let bad = a
        .owner
        .post(
            "/api/v1/services",
            json!({"name": "", "category": "magic", "duration_minutes": 0, "buffer_after_minutes": 999,
                   "price_cents": -5, "color": "purple", "professional_ids": []}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.body["errors"].as_array().unwrap().len(),
        6,
        "{}",
        bad.body
    );
    let stranger = a
        .owner
        .post(
            "/api/v1/services",
            laser(a.receptionist.user_id, &room.body["id"]),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(stranger.body["errors"][0]["field"], "professional_ids");
    let foreign = a
        .other_owner
        .post(
            "/api/v1/resources",
            json!({"name": "Sala B", "kind": "room"}),
        )
        .await;
    let theirs = a
        .owner
        .post(
            "/api/v1/services",
            laser(a.professional.user_id, &foreign.body["id"]),
        )
        .await;
    assert_eq!(
        theirs.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another clinic's room is no room here"
    );

    // Another clinic sees none of it.
    assert_eq!(
        a.other_owner
            .get(&format!("/api/v1/services/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let patch = a
        .other_owner
        .patch(&format!("/api/v1/services/{id}"), json!({"name": "x"}))
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    assert!(
        a.other_owner
            .get("/api/v1/services")
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn working_hours_are_a_week_of_local_intervals() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let path = format!(
        "/api/v1/professionals/{}/working-hours",
        a.professional.user_id
    );
    let week = json!({"intervals": [
        {"weekday": 1, "starts_at": "09:00", "ends_at": "12:00"},
        {"weekday": 1, "starts_at": "13:00", "ends_at": "18:00"},
        {"weekday": 6, "starts_at": "09:00", "ends_at": "13:00"}
    ]});
    // A professional sets their own hours...
    let set = a.professional.put(&path, week.clone()).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["time_zone"], "America/Sao_Paulo");
    assert_eq!(set.body["intervals"].as_array().unwrap().len(), 3);
    assert_eq!(
        a.receptionist.get(&path).await.body["intervals"][1]["starts_at"],
        "13:00"
    );
    // ...but not someone else's; managers may.
    let other = app.member(&a.owner, &["professional"]).await;
    let theirs = format!("/api/v1/professionals/{}/working-hours", other.user_id);
    assert_eq!(
        a.professional.put(&theirs, week.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.admin.put(&theirs, week.clone()).await.status,
        StatusCode::OK
    );

    let overlapping = a
        .professional
        .put(
            &path,
            json!({"intervals": [
                {"weekday": 2, "starts_at": "09:00", "ends_at": "12:00"},
                {"weekday": 2, "starts_at": "11:00", "ends_at": "14:00"},
                {"weekday": 8, "starts_at": "25:00", "ends_at": "09:00"},
                {"weekday": 3, "starts_at": "10:00", "ends_at": "09:00"}
            ]}),
        )
        .await;
    assert_eq!(overlapping.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = overlapping.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "intervals[1]",
            "intervals[2].weekday",
            "intervals[2].starts_at",
            "intervals[3].ends_at"
        ]
    );
    // The failed update changed nothing.
    assert_eq!(
        a.owner.get(&path).await.body["intervals"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Receptionists are not professionals, and other clinics' professionals do not exist.
    let not_pro = format!(
        "/api/v1/professionals/{}/working-hours",
        a.receptionist.user_id
    );
    assert_eq!(a.owner.get(&not_pro).await.status, StatusCode::NOT_FOUND);
    assert_eq!(a.other_owner.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.other_owner.put(&path, week).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_off_blocks_a_professional_a_room_or_the_clinic() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let off = a
        .receptionist
        .post(
            "/api/v1/time-off",
            json!({"professional_id": a.professional.user_id, "starts_at": "2026-12-24T13:00:00-03:00",
                   "ends_at": "2026-12-26T00:00:00-03:00", "reason": "Natal"}),
        )
        .await;
    assert_eq!(off.status, StatusCode::CREATED, "{}", off.body);
    assert_eq!(off.body["starts_at"], "2026-12-24T16:00:00+00:00");
    let clinic = a
        .owner
        .post("/api/v1/time-off", json!({"starts_at": "2026-12-31T12:00:00-03:00", "ends_at": "2027-01-01T12:00:00-03:00"}))
        .await;
    assert_eq!(clinic.status, StatusCode::CREATED);

    let window = "from=2026-12-01T00:00:00Z&to=2027-01-31T00:00:00Z";
    let mine = a
        .owner
        .get(&format!(
            "/api/v1/time-off?{window}&professional_id={}",
            a.professional.user_id
        ))
        .await;
    assert_eq!(
        mine.body.as_array().unwrap().len(),
        2,
        "their own and the clinic's: {}",
        mine.body
    );
    assert!(
        a.other_owner
            .get(&format!("/api/v1/time-off?{window}"))
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );

    let backwards = a
        .owner
        .post(
            "/api/v1/time-off",
            json!({"starts_at": "2026-12-24T13:00:00Z", "ends_at": "2026-12-24T12:00:00Z"}),
        )
        .await;
    assert_eq!(backwards.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(backwards.body["errors"][0]["field"], "ends_at");
    let foreign = a
        .other_owner
        .post("/api/v1/time-off", json!({"professional_id": a.professional.user_id, "starts_at": "2026-12-24T13:00:00Z", "ends_at": "2026-12-25T12:00:00Z"}))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    let id = off.body["id"].as_str().unwrap();
    assert_eq!(
        a.other_owner
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/time-off/{id}"),
                None
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.owner
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/time-off/{id}"),
                None
            )
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clinic_calendar_has_national_holidays_and_the_clinics_exceptions() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let year = owner.get("/api/v1/clinic-calendar?year=2026").await;
    let find = |body: &Value, day: &str| {
        body.as_array()
            .unwrap()
            .iter()
            .find(|d| d["day"] == day)
            .cloned()
            .unwrap()
    };
    assert_eq!(find(&year.body, "2026-04-03")["name"], "Sexta-feira Santa");
    assert_eq!(find(&year.body, "2026-04-03")["open"], false);
    assert_eq!(find(&year.body, "2026-02-17")["kind"], "optional");
    assert_eq!(find(&year.body, "2026-02-17")["open"], true);

    let opened = owner
        .put("/api/v1/clinic-calendar/2026-11-20", json!({"open": true}))
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    assert_eq!(opened.body["open"], true);
    assert_eq!(opened.body["kind"], "holiday");
    owner
        .put(
            "/api/v1/clinic-calendar/2026-01-25",
            json!({"open": false, "name": "Aniversário de São Paulo"}),
        )
        .await;
    let after = owner.get("/api/v1/clinic-calendar?year=2026").await;
    assert_eq!(find(&after.body, "2026-01-25")["kind"], "clinic");
    assert_eq!(find(&after.body, "2026-11-20")["open"], true);
    assert_eq!(
        owner.get("/api/v1/clinic-calendar?year=1800").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduling_settings_have_defaults_and_bounds() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let defaults = a.owner.get("/api/v1/agenda-settings").await;
    assert_eq!(
        defaults.body,
        json!({"granularity_minutes": 15, "min_notice_minutes": 60, "max_advance_days": 90, "feed_shows_patient_name": true})
    );
    let changed = a
        .owner
        .patch(
            "/api/v1/agenda-settings",
            json!({"granularity_minutes": 30, "max_advance_days": 60}),
        )
        .await;
    assert_eq!(changed.body["granularity_minutes"], 30);
    let bad = a
        .owner
        .patch("/api/v1/agenda-settings", json!({"granularity_minutes": 7}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        a.receptionist
            .patch("/api/v1/agenda-settings", json!({"max_advance_days": 5}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.other_owner.get("/api/v1/agenda-settings").await.body["granularity_minutes"],
        15
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn availability_follows_hours_appointments_time_off_and_rooms() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::start().await;
    let a = app.actors().await;
    let pro = a.professional.user_id;
    a.owner
        .patch(
            "/api/v1/agenda-settings",
            json!({"granularity_minutes": 30}),
        )
        .await;
    a.professional
        .put(
            &format!("/api/v1/professionals/{pro}/working-hours"),
            json!({"intervals": [{"weekday": 1, "starts_at": "09:00", "ends_at": "12:00"}]}),
        )
        .await;
    let room = a
        .owner
        .post(
            "/api/v1/resources",
            json!({"name": "Sala laser", "kind": "room"}),
        )
        .await
        .body["id"]
        .clone();
    let service = a
        .owner
        .post("/api/v1/services", json!({"name": "Laser", "category": "laser", "duration_minutes": 60,
                                          "price_cents": 1000, "professional_ids": [pro], "resource_ids": [room]}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let day = a_monday();
    let query = format!("/api/v1/availability?service_ids={service}&from={day}&to={day}");
    let starts = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["start"].as_str().unwrap()[11..16].to_owned())
            .collect()
    };

    let free = a.receptionist.get(&query).await;
    assert_eq!(free.status, StatusCode::OK, "{}", free.body);
    assert_eq!(free.body["time_zone"], "America/Sao_Paulo");
    assert_eq!(starts(&free), ["09:00", "09:30", "10:00", "10:30", "11:00"]);
    assert!(
        free.body["slots"][0]["start"]
            .as_str()
            .unwrap()
            .ends_with("-03:00")
    );
    assert_eq!(free.body["slots"][0]["resource_ids"], json!([room]));

    // An appointment 10:00–11:00 and a time off 09:00–09:30 leave 11:00 only.
    let patient = a
        .owner
        .post("/api/v1/patients", json!({"full_name": "Paciente"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut admin = app.db.admin_connection().await;
    let (tenant, at) = (a.owner.tenant_id, |h: u32| format!("{day} {h:02}:00:00-03"));
    admin
        .batch_execute(&format!(
            "INSERT INTO appointments (tenant_id, id, visit_id, patient_id, professional_id, service_id, during, blocks, price_cents, currency)
             VALUES ('{tenant}', gen_random_uuid(), gen_random_uuid(), '{patient}', '{pro}', '{service}',
                     tstzrange('{a}', '{b}'), tstzrange('{a}', '{b}'), 1000, 'BRL')",
            a = at(10),
            b = at(11)
        ))
        .await
        .unwrap();
    a.owner
        .post("/api/v1/time-off", json!({"professional_id": pro, "starts_at": format!("{day}T09:00:00-03:00"), "ends_at": format!("{day}T09:30:00-03:00")}))
        .await;
    assert_eq!(starts(&a.owner.get(&query).await), ["11:00"]);
    // The room being away takes the last one.
    a.owner
        .post("/api/v1/time-off", json!({"resource_id": room, "starts_at": format!("{day}T11:30:00-03:00"), "ends_at": format!("{day}T12:00:00-03:00")}))
        .await;
    assert!(starts(&a.owner.get(&query).await).is_empty());

    // Closing the clinic that day empties it too, and bad input names its field.
    let bad = a
        .owner
        .get(&format!(
            "/api/v1/availability?service_ids={service}&from={day}&to={}",
            day - chrono::Duration::days(1)
        ))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "to");
    let long = a
        .owner
        .get(&format!(
            "/api/v1/availability?service_ids={service}&from={day}&to={}",
            day + chrono::Duration::days(70)
        ))
        .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    let garbage = a
        .owner
        .get(&format!(
            "/api/v1/availability?service_ids=nope&from={day}&to={day}"
        ))
        .await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another clinic's services do not exist here; malformed days name their field.
    let foreign = a.other_owner.get(&query).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let malformed = a
        .owner
        .get(&format!(
            "/api/v1/availability?service_ids={service}&from=monday&to={day}"
        ))
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.body["errors"][0]["field"], "from");
}
