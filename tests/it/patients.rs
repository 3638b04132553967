//! The patient registry over HTTP: fields, search, encryption at rest, duplicates, roles,
//! other clinics, minors and consents, audit, erasure and bad input.

use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Caller, TestApp};

fn full_patient() -> Value {
    json!({
        "full_name": "José Conceição Araújo",
        "nickname": "Zé",
        "cpf": "529.982.247-25",
        "email": "jose@example.com",
        "phone": "(11) 98765-4321",
        "birth_date": "1985-03-14",
        "gender": "male",
        "address": {"cep": "01310100", "street": "Av. Paulista", "number": "1000", "complement": "ap 12",
                    "district": "Bela Vista", "city": "São Paulo", "state": "sp"},
        "referral_origin": "instagram",
        "notes": "Alergia a lidocaína. Pele sensível.",
        "tags": ["botox", "vip"]
    })
}

async fn create(caller: &Caller, body: Value) -> Value {
    let reply = caller.post("/api/v1/patients", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_record_round_trips() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let created = create(&owner, full_patient()).await;
    let id = created["id"].as_str().unwrap();

    let got = owner.get(&format!("/api/v1/patients/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    let p = &got.body;
    assert_eq!(p["view"], "clinical");
    assert_eq!(p["full_name"], "José Conceição Araújo");
    assert_eq!(p["nickname"], "Zé");
    assert_eq!(p["cpf"], "529.982.247-25");
    assert_eq!(p["email"], "jose@example.com");
    assert_eq!(p["phone"], "(11) 98765-4321");
    assert_eq!(p["phone_e164"], "+5511987654321");
    assert_eq!(p["whatsapp_id"], "5511987654321");
    assert_eq!(p["birth_date"], "1985-03-14");
    assert_eq!(p["minor"], false);
    assert!(p["age"].as_i64().unwrap() >= 41);
    assert_eq!(p["gender"], "male");
    assert_eq!(p["address"]["cep"], "01310-100");
    assert_eq!(p["address"]["state"], "SP");
    assert_eq!(p["address"]["complement"], "ap 12");
    assert_eq!(p["referral_origin"], "instagram");
    assert_eq!(p["notes"], "Alergia a lidocaína. Pele sensível.");
    assert_eq!(p["tags"], json!(["botox", "vip"]));
    assert_eq!(p["status"], "active");
    assert_eq!(p["erased"], false);

    // A PATCH changes what it names and clears what is null.
    let patched = owner
        .patch(
            &format!("/api/v1/patients/{id}"),
            json!({"nickname": null, "full_name": "José C. Araújo", "tags": ["vip"]}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["nickname"], Value::Null);
    assert_eq!(patched.body["cpf"], "529.982.247-25");
    assert_eq!(patched.body["tags"], json!(["vip"]));
    let found = owner.get("/api/v1/patients?q=jose c").await;
    assert_eq!(found.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cpf_and_notes_are_never_stored_in_the_clear_yet_cpf_search_works() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let created = create(&owner, full_patient()).await;
    create(
        &owner,
        json!({"full_name": "Outra Pessoa", "cpf": "111.444.777-35"}),
    )
    .await;

    let mut admin = app.db.admin_connection().await;
    for needle in ["52998224725", "529.982.247-25", "lidocaína", "lidoca"] {
        let hits: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM patients WHERE row_to_json(patients)::text LIKE '%' || $1 || '%' \
             OR encode(coalesce(cpf_cipher, ''), 'escape') LIKE '%' || $1 || '%' \
             OR encode(coalesce(notes_cipher, ''), 'escape') LIKE '%' || $1 || '%'",
        )
        .bind::<Text, _>(needle)
        .get_result(&mut admin)
        .await
        .unwrap();
        assert_eq!(hits.n, 0, "{needle} found in the clear");
    }

    for cpf in ["529.982.247-25", "52998224725"] {
        let found = owner.get(&format!("/api/v1/patients?cpf={cpf}")).await;
        let items = found.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{}", found.body);
        assert_eq!(items[0]["id"], created["id"]);
    }
    let invalid = owner.get("/api/v1/patients?cpf=123").await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_ignores_accents_and_case_and_filters_combine() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    create(&owner, full_patient()).await;
    create(&owner, json!({"full_name": "Ângela Müller", "birth_date": "1992-03-02", "tags": ["laser"], "phone": "+55 21 99876-5432"})).await;
    create(
        &owner,
        json!({"full_name": "Bruno Lima", "birth_date": "1970-07-20"}),
    )
    .await;

    let names = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["full_name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&owner.get("/api/v1/patients?q=jose").await),
        ["José Conceição Araújo"]
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?q=CONCEICAO").await),
        ["José Conceição Araújo"]
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?q=angela").await),
        ["Ângela Müller"]
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?q=z%C3%A9").await),
        ["José Conceição Araújo"],
        "nickname"
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?birthday_month=3").await),
        ["Ângela Müller", "José Conceição Araújo"]
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?tag=laser").await),
        ["Ângela Müller"]
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?phone=21998765432").await),
        ["Ângela Müller"]
    );
    assert_eq!(
        names(&owner.get("/api/v1/patients?q=100%25").await),
        Vec::<String>::new(),
        "wildcards are literal"
    );

    // Pages follow each other without gaps or repeats, in both directions.
    let first = owner.get("/api/v1/patients?limit=2&sort=-name").await;
    assert_eq!(names(&first), ["José Conceição Araújo", "Bruno Lima"]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = owner
        .get(&format!(
            "/api/v1/patients?limit=2&sort=-name&cursor={cursor}"
        ))
        .await;
    assert_eq!(names(&second), ["Ângela Müller"]);
    let mixed = owner
        .get(&format!(
            "/api/v1/patients?limit=2&sort=name&cursor={cursor}"
        ))
        .await;
    assert_eq!(mixed.status, StatusCode::BAD_REQUEST);

    for bad in [
        "sort=full_name",
        "sort=name;DROP",
        "status=deleted",
        "birthday_month=13",
        "limit=0",
    ] {
        let reply = owner.get(&format!("/api/v1/patients?{bad}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
    }
}

/// Every page of `q`, `limit` at a time, in `sort` order: the full names.
async fn every_page(caller: &Caller, q: &str, sort: &str, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/patients?q={q}&sort={sort}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let reply = caller.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let items = reply.body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        names.extend(
            items
                .iter()
                .map(|p| p["full_name"].as_str().unwrap().to_owned()),
        );
        match reply.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return names,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_word_search_pages_through_every_match_once_whatever_the_prefix() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    // 34 distinct words starting with "pa" (more than are read word by word), ten with
    // "pa0", and one patient with two words starting with "pau".
    let mut all: Vec<String> = (0..34).map(|i| format!("Teste Pa{i:02}")).collect();
    all.push("Paula Pauline".into());
    all.push("Outra Pessoa".into());
    for name in &all {
        create(&owner, json!({"full_name": name})).await;
    }
    let archived = create(&owner, json!({"full_name": "Teste Pa99"})).await;
    let id = archived["id"].as_str().unwrap();
    let reply = owner
        .post(&format!("/api/v1/patients/{id}/archive"), json!({}))
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);

    for (q, limit) in [("pa", 7), ("pa0", 3), ("pau", 1), ("paula", 2), ("x", 5)] {
        let mut expected: Vec<String> = all
            .iter()
            .filter(|n| n.to_lowercase().split(' ').any(|w| w.starts_with(q)))
            .cloned()
            .collect();
        expected.sort_by_key(|n| n.to_lowercase());
        assert_eq!(every_page(&owner, q, "name", limit).await, expected, "{q}");
        expected.reverse();
        assert_eq!(
            every_page(&owner, q, "-name", limit).await,
            expected,
            "-{q}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_possible_duplicate_is_a_409_naming_the_existing_patient_unless_insisted() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let first = create(&owner, full_patient()).await;
    let same_cpf = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Outro Nome", "cpf": "52998224725"}),
        )
        .await;
    assert_eq!(same_cpf.status, StatusCode::CONFLICT);
    assert_eq!(same_cpf.code(), "possible_duplicate");
    assert_eq!(same_cpf.body["extra"]["existing_id"], first["id"]);
    let same_person = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "José Conceição Araújo", "birth_date": "1985-03-14"}),
        )
        .await;
    assert_eq!(same_person.status, StatusCode::CONFLICT);
    let insisted = owner
        .post(
            "/api/v1/patients?allow_duplicate=true",
            json!({"full_name": "José Conceição Araújo", "birth_date": "1985-03-14"}),
        )
        .await;
    assert_eq!(insisted.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_422_naming_each_field() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let future = (chrono::Utc::now().date_naive() + chrono::Duration::days(2)).to_string();
    let reply = owner
        .post(
            "/api/v1/patients",
            json!({
                "full_name": "x".repeat(201),
                "cpf": "123.456.789-00",
                "email": "jose@",
                "phone": "1234",
                "birth_date": future,
                "gender": "helicopter",
                "address": {"cep": "123", "state": "XX", "city": "São\u{0000}Paulo"},
                "tags": ["a".repeat(41)]
            }),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "full_name",
        "cpf",
        "email",
        "phone",
        "birth_date",
        "gender",
        "address.cep",
        "address.city",
        "address.state",
        "tags",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    let origin = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Ana", "referral_origin": "tiktok"}),
        )
        .await;
    assert_eq!(origin.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(origin.body["errors"][0]["field"], "referral_origin");
    let date = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Ana", "birth_date": "14/03/1985"}),
        )
        .await;
    assert_eq!(date.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_sees_what_it_may() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let finance = app.member(&a.owner, &["finance"]).await;
    let assistant = app.assistant(&a.owner).await;
    let created = create(&a.owner, full_patient()).await;
    let path = format!("/api/v1/patients/{}", created["id"].as_str().unwrap());

    let pro = a.professional.get(&path).await;
    assert_eq!(
        (pro.body["view"].as_str(), pro.body["notes"].is_string()),
        (Some("clinical"), true)
    );
    let desk = a.receptionist.get(&path).await;
    assert_eq!(desk.body["view"], "full");
    assert_eq!(desk.body["notes"], Value::Null);
    assert_eq!(desk.body["cpf"], "529.982.247-25");
    let money = finance.get(&path).await;
    assert_eq!(money.body["view"], "contact");
    assert_eq!(money.body["cpf"], Value::Null);
    assert_eq!(money.body["birth_date"], Value::Null);
    assert_eq!(money.body["phone"], "(11) 98765-4321");
    assert_eq!(assistant.get(&path).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        assistant.get("/api/v1/patients").await.status,
        StatusCode::FORBIDDEN
    );

    // Receptionists manage registration data but not clinical notes.
    let note = a
        .receptionist
        .patch(&path, json!({"notes": "tentativa"}))
        .await;
    assert_eq!(note.status, StatusCode::FORBIDDEN);
    let phone = a
        .receptionist
        .patch(&path, json!({"phone": "11 98111-2222"}))
        .await;
    assert_eq!(phone.status, StatusCode::OK);
    assert_eq!(
        finance
            .patch(&path, json!({"email": "x@y.com"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // The assistant finds people by phone (with or without the ninth digit) and registers
    // new contacts with a name and phone only.
    let landline = assistant
        .get("/api/v1/patient-lookup?phone=%2B55%2011%203111-2222")
        .await;
    assert_eq!(landline.status, StatusCode::NOT_FOUND, "{}", landline.body);
    // The same mobile written the old way, without the ninth digit.
    let found = assistant
        .get("/api/v1/patient-lookup?phone=551181112222")
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body, json!({"id": created["id"], "first_name": "Zé"}));
    let new = assistant
        .post(
            "/api/v1/patients/minimal",
            json!({"full_name": "Carla Dias", "phone": "21 99999-0000"}),
        )
        .await;
    assert_eq!(new.status, StatusCode::CREATED, "{}", new.body);
    let again = assistant
        .post(
            "/api/v1/patients/minimal",
            json!({"full_name": "Carla D.", "phone": "+5521999990000"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["extra"]["existing_id"], new.body["id"]);
}

async fn assert_same_404(
    foreign: crate::support::Reply,
    absent: crate::support::Reply,
    what: &str,
) {
    assert_eq!(
        foreign.status,
        StatusCode::NOT_FOUND,
        "{what}: {}",
        foreign.body
    );
    assert_eq!(absent.status, StatusCode::NOT_FOUND, "{what}");
    assert_eq!(foreign.body["detail"], absent.body["detail"], "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_clinics_patients_do_not_exist() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let theirs = create(&a.owner, full_patient()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = Uuid::now_v7().to_string();
    let intruder = &a.other_owner;

    for (method, suffix, body) in [
        ("GET", "", None),
        ("PATCH", "", Some(json!({"full_name": "Hacked"}))),
        ("POST", "/archive", Some(json!({}))),
        ("POST", "/unarchive", Some(json!({}))),
        ("GET", "/access-log", None),
        ("GET", "/guardians", None),
        (
            "POST",
            "/guardians",
            Some(
                json!({"name": "X", "cpf": "111.444.777-35", "phone": "11 91234-5678", "relationship": "mother"}),
            ),
        ),
        ("GET", "/consents", None),
        (
            "POST",
            "/consents",
            Some(
                json!({"purpose": "marketing", "granted": true, "policy_version": "1", "channel": "web"}),
            ),
        ),
        ("GET", "/photo", None),
    ] {
        let foreign = intruder
            .send(
                method.parse().unwrap(),
                &format!("/api/v1/patients/{theirs}{suffix}"),
                body.clone(),
            )
            .await;
        let absent = intruder
            .send(
                method.parse().unwrap(),
                &format!("/api/v1/patients/{missing}{suffix}"),
                body,
            )
            .await;
        assert_same_404(foreign, absent, &format!("{method} {suffix}")).await;
    }
    // Searches with the other clinic's CPF, phone or name find nothing.
    for query in [
        "cpf=52998224725",
        "phone=11987654321",
        "q=jose",
        "status=all",
    ] {
        let reply = intruder.get(&format!("/api/v1/patients?{query}")).await;
        assert!(
            reply.body["items"].as_array().unwrap().is_empty(),
            "{query}"
        );
    }
    assert_eq!(
        intruder
            .get("/api/v1/patient-lookup?phone=11987654321")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // And nothing changed.
    let mine = a.owner.get(&format!("/api/v1/patients/{theirs}")).await;
    assert_eq!(mine.body["full_name"], "José Conceição Araújo");
    assert_eq!(mine.body["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_patients_leave_the_default_list() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let id = create(&owner, full_patient()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let archived = owner
        .post(&format!("/api/v1/patients/{id}/archive"), json!({}))
        .await;
    assert_eq!(archived.body["status"], "archived");
    assert!(
        owner.get("/api/v1/patients").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        owner.get("/api/v1/patients?status=archived").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    owner
        .post(&format!("/api/v1/patients/{id}/unarchive"), json!({}))
        .await;
    assert_eq!(
        owner.get("/api/v1/patients").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minor_needs_a_guardian_before_any_consent() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let birth = (chrono::Utc::now().date_naive() - chrono::Duration::days(365 * 15)).to_string();
    let minor = create(
        &owner,
        json!({"full_name": "Lara Menor", "birth_date": birth}),
    )
    .await;
    assert_eq!(minor["minor"], true);
    let id = minor["id"].as_str().unwrap();
    let consent = json!({"purpose": "treatment_data", "granted": true, "policy_version": "2026-12", "channel": "in_person"});

    let refused = owner
        .post(&format!("/api/v1/patients/{id}/consents"), consent.clone())
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["errors"][0]["field"], "guardian_id");
    assert!(
        owner
            .get(&format!("/api/v1/patients/{id}/consents"))
            .await
            .body["history"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let guardian = owner
        .post(
            &format!("/api/v1/patients/{id}/guardians"),
            json!({"name": "Paula Mãe", "cpf": "111.444.777-35", "phone": "(11) 97777-6666", "relationship": "mother"}),
        )
        .await;
    assert_eq!(guardian.status, StatusCode::CREATED, "{}", guardian.body);
    let gid = guardian.body["id"].clone();
    let mut with_guardian = consent.clone();
    with_guardian["guardian_id"] = gid.clone();
    let recorded = owner
        .post(&format!("/api/v1/patients/{id}/consents"), with_guardian)
        .await;
    assert_eq!(recorded.status, StatusCode::CREATED, "{}", recorded.body);

    let mut admin = app.db.admin_connection().await;
    #[derive(diesel::QueryableByName)]
    struct Evidence {
        #[diesel(sql_type = Text)]
        given_by: String,
    }
    let evidence: Evidence =
        diesel::sql_query("SELECT evidence->>'given_by' AS given_by FROM consent_records")
            .get_result(&mut admin)
            .await
            .unwrap();
    assert_eq!(evidence.given_by, "guardian");

    let guardians = owner.get(&format!("/api/v1/patients/{id}/guardians")).await;
    assert_eq!(guardians.body[0]["cpf"], "111.444.777-35");
    let other = app.signup("Clínica Boreal").await;
    let other_patient = create(
        &other,
        json!({"full_name": "Outro Menor", "birth_date": birth}),
    )
    .await;
    let mut foreign_guardian = consent;
    foreign_guardian["guardian_id"] = gid;
    let reply = other
        .post(
            &format!(
                "/api/v1/patients/{}/consents",
                other_patient["id"].as_str().unwrap()
            ),
            foreign_guardian,
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another clinic's guardian is no guardian here"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_state_is_the_latest_decision_and_other_modules_see_it() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let id: Uuid = create(&owner, full_patient()).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = format!("/api/v1/patients/{id}/consents");
    let record = |purpose: &str, granted: bool| {
        owner.post(&path, json!({"purpose": purpose, "granted": granted, "policy_version": "2026-12", "channel": "whatsapp"}))
    };
    assert_eq!(
        record("whatsapp_contact", true).await.status,
        StatusCode::CREATED
    );
    assert_eq!(record("marketing", true).await.status, StatusCode::CREATED);
    assert_eq!(
        record("whatsapp_contact", false).await.status,
        StatusCode::CREATED
    );
    let bad = record("selling_data", true).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let consents = owner.get(&format!("/api/v1/patients/{id}/consents")).await;
    let current: Vec<(String, bool)> = consents.body["current"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["purpose"].as_str().unwrap().to_owned(),
                c["granted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        current,
        [
            ("marketing".to_owned(), true),
            ("whatsapp_contact".to_owned(), false)
        ]
    );
    assert_eq!(consents.body["history"].as_array().unwrap().len(), 3);

    // The service API other modules use sees the revocation.
    let scope = harmony_core::db::TenantScope::clinic(owner.tenant_id);
    let (whatsapp, marketing) = app
        .kernel
        .db
        .tenant(scope, |conn| {
            use scoped_futures::ScopedFutureExt;
            async move {
                Ok::<_, harmony_core::Error>((
                    harmony_patients::service::has_consent(conn, id, "whatsapp_contact").await?,
                    harmony_patients::service::has_consent(conn, id, "marketing").await?,
                ))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert!(!whatsapp && marketing);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_are_audited_and_the_access_log_answers_who_saw_the_data() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let id = create(&a.owner, full_patient()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.professional.get(&format!("/api/v1/patients/{id}")).await;
    a.receptionist.get(&format!("/api/v1/patients/{id}")).await;
    a.receptionist.get("/api/v1/patients?limit=1").await;

    let log = a
        .owner
        .get(&format!("/api/v1/patients/{id}/access-log"))
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let events: Vec<(String, String, String)> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor_id"].as_str().unwrap().to_owned(),
                e["resource"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pro = a.professional.user_id.to_string();
    let desk = a.receptionist.user_id.to_string();
    assert!(events.contains(&(pro.clone(), "patient".into(), "read".into())));
    assert!(events.contains(&(pro, "patient.notes".into(), "read".into())));
    assert!(events.contains(&(desk.clone(), "patient".into(), "read".into())));
    assert!(
        !events.contains(&(desk.clone(), "patient.notes".into(), "read".into())),
        "no notes, no notes event"
    );

    // A list writes one event per page, not one per row.
    let lists = a
        .owner
        .get(&format!("/api/v1/audit-events?actor_id={desk}&action=list"))
        .await;
    assert_eq!(lists.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.receptionist
            .get(&format!("/api/v1/patients/{id}/access-log"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shredding_a_patient_makes_their_sensitive_data_unreadable_and_nothing_else_breaks() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let id: Uuid = create(&owner, full_patient()).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let other = create(
        &owner,
        json!({"full_name": "Bruno Lima", "cpf": "111.444.777-35", "notes": "ok"}),
    )
    .await;

    let scope = harmony_core::db::TenantScope::clinic(owner.tenant_id);
    let kernel = &app.kernel;
    let tenant = owner.tenant_id;
    kernel
        .db
        .tenant(scope, |conn| {
            use scoped_futures::ScopedFutureExt;
            async move { harmony_patients::service::shred_personal_data(conn, kernel, tenant, id).await }.scope_boxed()
        })
        .await
        .unwrap();

    let erased = owner.get(&format!("/api/v1/patients/{id}")).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    assert_eq!(erased.body["erased"], true);
    assert_eq!(erased.body["cpf"], Value::Null);
    assert_eq!(erased.body["notes"], Value::Null);
    assert_eq!(erased.body["full_name"], "José Conceição Araújo");
    let write = owner
        .patch(
            &format!("/api/v1/patients/{id}"),
            json!({"notes": "nova nota"}),
        )
        .await;
    assert_eq!(write.status, StatusCode::CONFLICT);
    assert_eq!(write.code(), "patient_erased");

    // Everyone else is untouched.
    let fine = owner
        .get(&format!(
            "/api/v1/patients/{}",
            other["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(fine.body["cpf"], "111.444.777-35");
    assert_eq!(fine.body["notes"], "ok");
    assert_eq!(
        owner.get("/api/v1/patients").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn referral_origins_are_a_clinic_editable_list() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let list = owner.get("/api/v1/referral-origins").await;
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["code"] == "instagram")
    );
    let added = owner
        .post(
            "/api/v1/referral-origins",
            json!({"label": "Feira de Saúde"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED);
    assert_eq!(added.body["code"], "feira_de_saude");
    create(
        &owner,
        json!({"full_name": "Nova", "referral_origin": "feira_de_saude"}),
    )
    .await;
    owner
        .patch(
            "/api/v1/referral-origins/feira_de_saude",
            json!({"active": false}),
        )
        .await;
    let retired = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Outra", "referral_origin": "feira_de_saude"}),
        )
        .await;
    assert_eq!(retired.status, StatusCode::UNPROCESSABLE_ENTITY);
}
