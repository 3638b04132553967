//! The HTTP stack: problem+json for every error, body limits, malformed input, request
//! ids, security headers, CORS, idempotency keys and pagination.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id_and_security_headers() {
    let app = TestApp::start().await;
    for path in ["/healthz", "/api/v1/nowhere", "/api/v1/me"] {
        let reply = app.anonymous().get(path).await;
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "{path}");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        if reply.status.is_client_error() {
            assert_eq!(
                reply.headers["content-type"], "application/problem+json",
                "{path}"
            );
            assert_eq!(reply.body["request_id"], id);
            assert_eq!(reply.body["status"], reply.status.as_u16());
        }
    }
    assert_eq!(app.anonymous().get("/readyz").await.body["status"], "ok");
    assert_eq!(
        app.anonymous().get("/openapi.json").await.body["openapi"],
        "3.0.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let app = TestApp::start_with(|c| c.server.body_limit_bytes = 1024).await;
    let big = json!({"email": "a".repeat(2000), "password": "x"});
    let declared = app
        .anonymous()
        .post("/api/v1/auth/login", big.clone())
        .await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.code(), "body_too_large");

    // A chunked body announces no length: it is cut off at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(serde_json::to_vec(&big).unwrap())];
    let stream = futures::stream::iter(chunks);
    let response = app
        .anonymous()
        .raw(Method::POST, "/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // And the server keeps serving.
    assert_eq!(app.anonymous().get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_is_a_4xx_problem_never_a_500() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{not json".to_vec()),
        ("application/json", b"".to_vec()),
        (
            "application/json",
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        ),
        ("application/json", deep.into_bytes()),
        ("application/json", br#"{"name": {"first": "A"}}"#.to_vec()),
        (
            "application/json",
            br#"{"contact_email": ["a@b.co"]}"#.to_vec(),
        ),
        ("application/json", br#"{"name": "A\u0000B"}"#.to_vec()),
        ("application/json", br#"[1, 2, 3]"#.to_vec()),
        ("text/plain", br#"{"name": "X"}"#.to_vec()),
    ];
    for (content_type, body) in bodies {
        let response = owner
            .raw(Method::PATCH, "/api/v1/tenant")
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            status.is_client_error(),
            "{content_type} {:?}: {status}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(content, "application/problem+json");
    }
    let numbers = owner
        .get("/api/v1/audit-events?limit=99999999999999999999")
        .await;
    assert_eq!(numbers.status, StatusCode::BAD_REQUEST);
    let cursor = owner.get("/api/v1/audit-events?cursor=not-a-cursor").await;
    assert_eq!(cursor.status, StatusCode::BAD_REQUEST);
    assert_eq!(cursor.body["errors"][0]["field"], "cursor");
    assert_eq!(app.anonymous().get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_number_or_a_boolean_is_not_taken_for_text() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    for (path, body, field) in [
        ("/api/v1/tenant", json!({"name": false}), "name"),
        ("/api/v1/patients", json!({"full_name": 12345}), "full_name"),
        (
            "/api/v1/patients",
            json!({"full_name": "Ana", "tags": ["vip", 7]}),
            "tags[1]",
        ),
        (
            "/api/v1/patients",
            json!({"full_name": "Ana", "address": {"city": true}}),
            "address.city",
        ),
    ] {
        let method = if path == "/api/v1/tenant" {
            Method::PATCH
        } else {
            Method::POST
        };
        let reply = owner.send(method, path, Some(body.clone())).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{field}`")), "{body}: {detail}");
    }
    assert_eq!(
        owner.get("/api/v1/tenant").await.body["name"],
        "Clínica Aurora"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn text_is_stored_and_returned_exactly() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let name = "O'Brien \"; DROP TABLE tenants; -- \u{202e} 🌸 Ção e\u{301}";
    let reply = owner.patch("/api/v1/tenant", json!({"name": name})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(owner.get("/api/v1/tenant").await.body["name"], name);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_answers_the_configured_origin_only() {
    let app = TestApp::start().await;
    let preflight = |origin: &'static str| {
        app.anonymous()
            .raw(Method::OPTIONS, "/api/v1/me")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("http://localhost:5173").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_post_with_the_same_idempotency_key_gets_the_first_answer() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let invite = |key: &'static str, email: &'static str| {
        owner
            .raw(Method::POST, "/api/v1/members")
            .header("idempotency-key", key)
            .json(&json!({"email": email, "name": "Nova", "roles": ["receptionist"]}))
            .send()
    };
    let first =
        crate::support::Reply::from(invite("key-1", "nova@clinic.test").await.unwrap()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again =
        crate::support::Reply::from(invite("key-1", "nova@clinic.test").await.unwrap()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    let members = owner.get("/api/v1/members").await;
    assert_eq!(
        members.body.as_array().unwrap().len(),
        2,
        "one invitation, not two"
    );

    let reused =
        crate::support::Reply::from(invite("key-1", "other@clinic.test").await.unwrap()).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = crate::support::Reply::from(invite("", "x@clinic.test").await.unwrap()).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_are_paginated_newest_first_and_filtered() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let other = app.signup("Clínica Boreal").await;
    let subject = uuid::Uuid::now_v7();
    for (who, resource) in [
        (&owner, "patient"),
        (&owner, "patient.photo"),
        (&owner, "patient"),
        (&other, "patient"),
    ] {
        let tenant = who.tenant_id;
        let user = who.user_id;
        let scope = harmony_core::db::TenantScope {
            tenant_id: tenant,
            user_id: Some(user),
        };
        let actor = harmony_core::auth::Actor {
            kind: harmony_core::auth::ActorKind::User,
            user_id: user,
            tenant_id: tenant,
            request: std::sync::Arc::new(crate::rls::test_request()),
        };
        app.kernel
            .db
            .tenant(scope, |conn| {
                use scoped_futures::ScopedFutureExt;
                async move {
                    let access = harmony_core::audit::Access {
                        subject_kind: Some("patient"),
                        subject_id: Some(subject),
                        resource,
                        action: "read",
                    };
                    harmony_core::audit::record(conn, &actor, access).await
                }
                .scope_boxed()
            })
            .await
            .unwrap();
    }
    let page = owner.get("/api/v1/audit-events?limit=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["occurred_at"].as_str() >= items[1]["occurred_at"].as_str());
    assert_eq!(items[0]["ip"], "127.0.0.1");
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = owner
        .get(&format!("/api/v1/audit-events?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert!(rest.body.get("next_cursor").is_none_or(|c| c.is_null()));

    let photos = owner
        .get("/api/v1/audit-events?resource=patient.photo")
        .await;
    assert_eq!(photos.body["items"].as_array().unwrap().len(), 1);
    let by_subject = owner
        .get(&format!("/api/v1/audit-events?subject_id={subject}"))
        .await;
    assert_eq!(
        by_subject.body["items"].as_array().unwrap().len(),
        3,
        "only this clinic's events"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_a_path_does_not_answer_is_a_405_that_lists_the_ones_it_does() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    for (method, path, allow) in [
        (Method::DELETE, "/api/v1/tenant".to_owned(), "GET, PATCH"),
        (Method::TRACE, "/api/v1/patients".to_owned(), "GET, POST"),
        (
            Method::PUT,
            format!("/api/v1/patients/{}", uuid::Uuid::now_v7()),
            "GET, PATCH",
        ),
        // A literal segment wins over a parameter in the same place.
        (Method::GET, "/api/v1/patients/minimal".to_owned(), "POST"),
    ] {
        let reply = owner.send(method.clone(), &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.code(), "method_not_allowed");
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
    }
}
