//! Role denials, owner-only grants, self-changes and suspension.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn each_role_gets_what_the_policy_grants_and_a_403_otherwise() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let cases = [
        (&a.owner, "GET", "/api/v1/members", StatusCode::OK),
        (&a.admin, "GET", "/api/v1/members", StatusCode::OK),
        (
            &a.professional,
            "GET",
            "/api/v1/members",
            StatusCode::FORBIDDEN,
        ),
        (
            &a.receptionist,
            "GET",
            "/api/v1/members",
            StatusCode::FORBIDDEN,
        ),
        (
            &a.receptionist,
            "GET",
            "/api/v1/professionals",
            StatusCode::OK,
        ),
        (&a.professional, "GET", "/api/v1/tenant", StatusCode::OK),
        (
            &a.professional,
            "PATCH",
            "/api/v1/tenant",
            StatusCode::FORBIDDEN,
        ),
        (
            &a.receptionist,
            "GET",
            "/api/v1/audit-events",
            StatusCode::FORBIDDEN,
        ),
        (&a.admin, "GET", "/api/v1/audit-events", StatusCode::OK),
        (
            &a.anonymous,
            "GET",
            "/api/v1/tenant",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (caller, method, path, expected) in cases {
        let body = (method == "PATCH").then(|| json!({"name": "Tentativa"}));
        let reply = caller.send(method.parse().unwrap(), path, body).await;
        assert_eq!(
            reply.status, expected,
            "{method} {path} as {}: {}",
            caller.email, reply.body
        );
        if expected == StatusCode::FORBIDDEN {
            assert_eq!(reply.code(), "forbidden");
        }
    }
    assert_eq!(
        a.owner.get("/api/v1/tenant").await.body["name"],
        "Clínica Aurora"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_owners_grant_the_owner_role_and_nobody_changes_their_own_roles() {
    let app = TestApp::start().await;
    let a = app.actors().await;

    let promote_self = a
        .admin
        .put(
            &format!("/api/v1/members/{}/roles", a.admin.user_id),
            json!({"roles": ["owner"]}),
        )
        .await;
    assert_eq!(promote_self.status, StatusCode::FORBIDDEN);
    let promote_other = a
        .admin
        .put(
            &format!("/api/v1/members/{}/roles", a.professional.user_id),
            json!({"roles": ["owner"]}),
        )
        .await;
    assert_eq!(promote_other.status, StatusCode::FORBIDDEN);
    assert_eq!(promote_other.code(), "owner_only");
    let invite_owner = a
        .admin
        .post(
            "/api/v1/members",
            json!({"email": "boss@clinic.test", "name": "Boss", "roles": ["owner"]}),
        )
        .await;
    assert_eq!(invite_owner.status, StatusCode::FORBIDDEN);
    let demote_owner = a
        .admin
        .put(
            &format!("/api/v1/members/{}/roles", a.owner.user_id),
            json!({"roles": ["finance"]}),
        )
        .await;
    assert_eq!(demote_owner.status, StatusCode::FORBIDDEN);
    let own = a
        .owner
        .put(
            &format!("/api/v1/members/{}/roles", a.owner.user_id),
            json!({"roles": ["admin"]}),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let assistant = a
        .owner
        .put(
            &format!("/api/v1/members/{}/roles", a.professional.user_id),
            json!({"roles": ["assistant"]}),
        )
        .await;
    assert_eq!(assistant.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The owner may do what the admin may not.
    let promoted = a
        .owner
        .put(
            &format!("/api/v1/members/{}/roles", a.professional.user_id),
            json!({"roles": ["owner", "professional"]}),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    assert_eq!(
        a.professional.get("/api/v1/members").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_role_is_refused_at_the_next_request() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    assert_eq!(a.admin.get("/api/v1/members").await.status, StatusCode::OK);
    let demoted = a
        .owner
        .put(
            &format!("/api/v1/members/{}/roles", a.admin.user_id),
            json!({"roles": ["receptionist"]}),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK);
    assert_eq!(
        a.admin.get("/api/v1/members").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_member_is_refused_at_once_and_cannot_refresh_or_log_in() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let login = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"email": a.receptionist.email, "password": PASSWORD}),
        )
        .await;
    let refresh_token = login.body["tokens"]["refresh_token"].clone();

    let suspended = a
        .admin
        .post(
            &format!("/api/v1/members/{}/suspend", a.receptionist.user_id),
            json!({}),
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.body);
    assert_eq!(suspended.body["status"], "suspended");

    assert_eq!(
        a.receptionist.get("/api/v1/professionals").await.status,
        StatusCode::FORBIDDEN
    );
    let refresh = app
        .anonymous()
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    let relogin = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            json!({"email": a.receptionist.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(relogin.status, StatusCode::FORBIDDEN);
    assert_eq!(relogin.code(), "no_active_membership");

    let self_suspend = a
        .admin
        .post(
            &format!("/api/v1/members/{}/suspend", a.admin.user_id),
            json!({}),
        )
        .await;
    assert_eq!(self_suspend.status, StatusCode::FORBIDDEN);
    let suspend_owner = a
        .admin
        .post(
            &format!("/api/v1/members/{}/suspend", a.owner.user_id),
            json!({}),
        )
        .await;
    assert_eq!(suspend_owner.status, StatusCode::FORBIDDEN);

    let back = a
        .admin
        .post(
            &format!("/api/v1/members/{}/reactivate", a.receptionist.user_id),
            json!({}),
        )
        .await;
    assert_eq!(back.body["status"], "active");
    assert_eq!(
        a.receptionist.get("/api/v1/professionals").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checked_in_policy_is_what_the_modules_declare() {
    let generated = harmony::rbac_policy();
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/rbac_policy.csv"
    ))
    .unwrap();
    assert!(
        generated == checked_in,
        "config/rbac_policy.csv is stale: run `cargo run -- rbac-policy --out config/rbac_policy.csv`"
    );
}
