//! Clinic settings, members, invitations, professionals; another clinic's ids are a 404.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::support::{PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn owners_update_the_clinic_settings_and_nulls_clear_fields() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let reply = owner
        .patch(
            "/api/v1/tenant",
            json!({"name": "Clínica Aurora Estética", "time_zone": "America/Manaus", "cnpj": null,
                   "contact_email": "contato@aurora.test", "locale": "en-US"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["name"], "Clínica Aurora Estética");
    assert_eq!(reply.body["time_zone"], "America/Manaus");
    assert_eq!(reply.body["cnpj"], json!(null));
    assert_eq!(reply.body["contact_email"], "contato@aurora.test");

    let bad = owner
        .patch(
            "/api/v1/tenant",
            json!({"locale": "fr-FR", "time_zone": "GMT+3"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invitee_chooses_a_password_and_the_invitation_works_once() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let invited = owner
        .post(
            "/api/v1/members",
            json!({"email": "nova@clinic.test", "name": "Nova Pessoa", "roles": ["professional"]}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.body);
    assert_eq!(invited.body["member"]["roles"], json!(["professional"]));
    let token = invited.body["invitation_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let no_password = app
        .anonymous()
        .post("/api/v1/auth/accept-invitation", json!({"token": token}))
        .await;
    assert_eq!(no_password.status, StatusCode::UNPROCESSABLE_ENTITY);
    let accepted = app
        .anonymous()
        .post(
            "/api/v1/auth/accept-invitation",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    let again = app
        .anonymous()
        .post(
            "/api/v1/auth/accept-invitation",
            json!({"token": token, "password": "yet another password"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.code(), "invalid_invitation");

    let login = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"email": "nova@clinic.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn inviting_an_existing_account_never_replaces_its_credentials() {
    let app = TestApp::start().await;
    let aurora = app.signup("Clínica Aurora").await;
    let boreal = app.signup("Clínica Boreal").await;

    let invited = boreal
        .post(
            "/api/v1/members",
            json!({"email": aurora.email, "name": "Outro Nome", "roles": ["admin"]}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.body);
    assert_eq!(invited.body["invitation_token"], json!(null));
    assert_eq!(invited.body["member"]["name"], "Dona Clínica");

    // The same person now belongs to two clinics and chooses which one to act in.
    let login = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"email": aurora.email, "password": PASSWORD, "tenant_id": boreal.tenant_id}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.body["clinics"].as_array().unwrap().len(), 2);
    assert_eq!(login.body["tokens"]["tenant_id"], json!(boreal.tenant_id));
    let as_admin = aurora.with_token(login.body["tokens"]["access_token"].as_str().unwrap());
    assert_eq!(
        as_admin.get("/api/v1/me").await.body["roles"],
        json!(["admin"])
    );

    let twice = boreal
        .post(
            "/api/v1/members",
            json!({"email": aurora.email, "name": "X", "roles": ["admin"]}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.code(), "already_member");
}

#[tokio::test(flavor = "multi_thread")]
async fn professionals_are_listed_with_their_profiles() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let professional = app.member(&owner, &["professional"]).await;
    let updated = professional
        .patch(
            "/api/v1/me",
            json!({"bio": "Biomédica esteta", "specialties": ["harmonização facial", "peeling"],
                   "professional_registry": "CRBM 12345"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);

    let list = owner.get("/api/v1/professionals").await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["professional_registry"], "CRBM 12345");
    assert!(
        items[0].get("email").is_none(),
        "public profiles carry no e-mail"
    );

    let one = owner
        .get(&format!("/api/v1/professionals/{}", professional.user_id))
        .await;
    assert_eq!(
        one.body["specialties"],
        json!(["harmonização facial", "peeling"])
    );
    let not_professional = owner
        .get(&format!("/api/v1/professionals/{}", owner.user_id))
        .await;
    assert_eq!(not_professional.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_clinics_ids_are_indistinguishable_from_missing_ones() {
    let app = TestApp::start().await;
    let actors = app.actors().await;
    let theirs = actors.professional.user_id;
    let missing = Uuid::now_v7();
    let intruder = &actors.other_owner;

    for (method, path, body) in [
        ("GET", "/api/v1/professionals/{}", None),
        (
            "PUT",
            "/api/v1/members/{}/roles",
            Some(json!({"roles": ["admin"]})),
        ),
        ("POST", "/api/v1/members/{}/suspend", Some(json!({}))),
        ("POST", "/api/v1/members/{}/reactivate", Some(json!({}))),
    ] {
        let call = |id: Uuid| {
            let path = path.replace("{}", &id.to_string());
            let body = body.clone();
            async move { intruder.send(method.parse().unwrap(), &path, body).await }
        };
        let foreign = call(theirs).await;
        let absent = call(missing).await;
        assert_eq!(
            foreign.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            foreign.body
        );
        assert_eq!(absent.status, StatusCode::NOT_FOUND);
        assert_eq!(foreign.code(), absent.code());
        assert_eq!(foreign.body["detail"], absent.body["detail"]);
    }
    // Nothing changed for the professional.
    let me = actors.professional.get("/api/v1/me").await;
    assert_eq!(me.body["roles"], json!(["professional"]));

    // Lists only ever show the caller's clinic.
    let members = intruder.get("/api/v1/members").await;
    assert_eq!(members.body.as_array().unwrap().len(), 1);
    assert!(
        intruder
            .get("/api/v1/professionals")
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_a_client_must_not_set_are_ignored() {
    let app = TestApp::start().await;
    let actors = app.actors().await;
    let reply = actors
        .owner
        .patch("/api/v1/tenant", json!({"id": actors.other_owner.tenant_id, "tenant_id": actors.other_owner.tenant_id, "name": "Renomeada"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["id"], json!(actors.owner.tenant_id));
    let other = actors.other_owner.get("/api/v1/tenant").await;
    assert_eq!(other.body["name"], "Clínica Boreal");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_identity_is_made_once_per_clinic_with_only_its_role() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let other = app.signup("Clínica Boreal").await;
    let tenancy = |tenant| harmony_core::tenancy::assistant_identity(&app.kernel, tenant);
    let first = tenancy(owner.tenant_id).await.unwrap();
    assert_eq!(tenancy(owner.tenant_id).await.unwrap(), first);
    assert_ne!(tenancy(other.tenant_id).await.unwrap(), first);
    assert_eq!(
        app.kernel.rbac.roles_of(owner.tenant_id, first).await,
        vec![harmony_core::rbac::Role::Assistant]
    );
    // It has no password: nobody logs in as the assistant.
    let email = format!(
        "assistant+{}@assistant.harmony.invalid",
        owner.tenant_id.simple()
    );
    let login = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": ""}),
        )
        .await;
    assert!(login.status.is_client_error(), "{}", login.body);
}
