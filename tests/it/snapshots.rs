//! What clients see, pinned: the OpenAPI document.

#[test]
fn the_checked_in_openapi_document_is_current() {
    let generated = harmony::openapi_document();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/harmony.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "openapi/harmony.json is stale: run `cargo run -- openapi --out openapi/harmony.json`"
    );
}

#[test]
fn every_operation_has_an_id_a_summary_and_problem_responses() {
    let document: serde_json::Value = serde_json::from_str(&harmony::openapi_document()).unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str();
            assert!(id.is_some(), "{method} {path} has no operationId");
            assert!(
                operation["summary"].is_string(),
                "{method} {path} has no summary"
            );
            if path.starts_with("/api/") {
                let default =
                    &operation["responses"]["default"]["content"]["application/problem+json"];
                assert!(
                    default.is_object(),
                    "{method} {path} does not document its problems"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_operation_but_login_and_calendar_feeds_refuses_an_anonymous_caller() {
    let app = crate::support::TestApp::start().await;
    let document: serde_json::Value = serde_json::from_str(&harmony::openapi_document()).unwrap();
    let mut checked = 0;
    // Operations that declare no security are public; outside `/auth`, only the calendar
    // feed is, whose secret URL is its credential.
    let mut public = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") || path.starts_with("/api/v1/auth/") {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    uuid::Uuid::now_v7().to_string()
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("security").is_none() {
                public.push(operation["operationId"].as_str().unwrap().to_owned());
                continue;
            }
            let body = (method != "get").then(|| serde_json::json!({}));
            let reply = app
                .anonymous()
                .send(method.to_uppercase().parse().unwrap(), &concrete, body)
                .await;
            assert_eq!(
                reply.status,
                reqwest::StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations checked");
    assert_eq!(public, ["get_calendar_feed"]);
}
