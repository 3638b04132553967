//! The WhatsApp webhook and settings: Meta's handshake, signed notifications stored once
//! and sealed, delivery statuses that only move forward, and numbers that route to one
//! clinic.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Bytea, Nullable, Text};
use diesel_async::RunQueryDsl;
use harmony_whatsapp::signature;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Caller, Reply, TestApp};

const APP_SECRET: &str = "test_app_secret_6f2d9c1b";
const VERIFY_TOKEN: &str = "verify-me-0b7e";
const NUMBER: &str = "118274650391827";
const TEXT: &[u8] = include_bytes!("../fixtures/whatsapp/whatsapp_text.json");
const AUDIO: &[u8] = include_bytes!("../fixtures/whatsapp/whatsapp_audio.json");
const READ: &[u8] = include_bytes!("../fixtures/whatsapp/whatsapp_status_read.json");
const FAILED: &[u8] = include_bytes!("../fixtures/whatsapp/whatsapp_status_failed_131047.json");
/// The worked signature of `whatsapp_text.json` (shared fixtures, `signatures.txt`).
const TEXT_SIGNATURE: &str =
    "sha256=cfb3e50d471e1d5690e2f0a04171315445f6c6f7ce01d75e5d47c7782b91b8a7";
const SENT_WAMID: &str = "wamid.HBgNNTUxMTk3NjU0MzIxMBUCABEYEjhDNEUyMEE3RjlCMzFENTQ2QgA=";

/// The server with the webhook's secrets, sending to a local fake of the Graph API (the
/// assistant answers every message; nothing may reach Meta from a test).
async fn app() -> TestApp {
    sending_app().await.0
}

async fn post_webhook(app: &TestApp, body: &[u8], signature: Option<&str>) -> Reply {
    let mut request = app
        .anonymous()
        .raw(Method::POST, "/webhooks/whatsapp")
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    Reply::from(request.send().await.unwrap()).await
}

pub(crate) async fn signed(app: &TestApp, body: &[u8]) -> Reply {
    post_webhook(
        app,
        body,
        Some(&signature::sign(APP_SECRET.as_bytes(), body)),
    )
    .await
}

pub(crate) async fn connect_number(owner: &Caller) {
    let saved = owner
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": NUMBER, "access_token": "EAATESTclinicaFAKE0000",
                   "display_phone_number": "+55 11 4002-8922"}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut admin = app.db.admin_connection().await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut admin)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread")]
async fn the_handshake_echoes_the_challenge_only_for_the_verify_token() {
    let app = app().await;
    let anonymous = app.anonymous();
    let path = |mode: &str, token: &str| {
        format!(
            "/webhooks/whatsapp?hub.mode={mode}&hub.challenge=1158201444&hub.verify_token={token}"
        )
    };
    let ok = anonymous
        .raw(Method::GET, &path("subscribe", VERIFY_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    for (mode, token) in [
        ("subscribe", "wrong"),
        ("unsubscribe", VERIFY_TOKEN),
        ("subscribe", ""),
    ] {
        let refused = anonymous.get(&path(mode, token)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{mode} {token}");
        assert_eq!(refused.code(), "verification_refused");
    }
    let without = anonymous
        .get(&format!(
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"
        ))
        .await;
    assert_eq!(without.status, StatusCode::BAD_REQUEST, "{}", without.body);
    assert!(
        without.body.to_string().contains("hub.challenge"),
        "{}",
        without.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_message_is_stored_once_sealed_and_wakes_the_assistant() {
    let app = app().await;
    let owner = app.signup("Clínica Aurora").await;
    connect_number(&owner).await;

    // Meta's own bytes and worked signature.
    let first = post_webhook(&app, TEXT, Some(TEXT_SIGNATURE)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["messages"], 1);
    // At-least-once delivery: the same notification again stores nothing new.
    let again = post_webhook(&app, TEXT, Some(TEXT_SIGNATURE)).await;
    assert_eq!(again.body["messages"], 0, "{}", again.body);
    assert_eq!(again.body["duplicates"], 1);

    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_messages WHERE direction = 'in'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE topic = 'whatsapp.message_received'"
        )
        .await,
        1
    );
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Nullable<Text>)]
        wa_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        user_id: Option<String>,
        #[diesel(sql_type = Bytea)]
        body: Vec<u8>,
        #[diesel(sql_type = Bytea)]
        profile_name: Vec<u8>,
        #[diesel(sql_type = Bool)]
        window: bool,
    }
    let mut admin = app.db.admin_connection().await;
    let stored: Stored = diesel::sql_query(
        "SELECT c.wa_id, c.user_id, m.body, c.profile_name,
                c.last_inbound_at = to_timestamp(1768489200) AS window
           FROM whatsapp_messages m JOIN whatsapp_conversations c ON c.id = m.conversation_id",
    )
    .get_result(&mut admin)
    .await
    .unwrap();
    // Keyed by the id exactly as received; the window runs from Meta's timestamp.
    assert_eq!(stored.wa_id.as_deref(), Some("5511976543210"));
    assert!(stored.user_id.is_some());
    assert!(stored.window);
    for sealed in [&stored.body, &stored.profile_name] {
        let text = String::from_utf8_lossy(sealed);
        assert!(
            !text.contains("preenchimento") && !text.contains("Mariana"),
            "{text}"
        );
    }

    // A voice note is kept as its media id until it is transcribed.
    let audio = signed(&app, AUDIO).await;
    assert_eq!(audio.body["messages"], 1, "{}", audio.body);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_messages
              WHERE kind = 'audio' AND body IS NULL AND detail->>'media_id' = '1377452069183025'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_or_forged_notifications_are_refused_and_unknown_numbers_dropped() {
    let app = app().await;
    let owner = app.signup("Clínica Aurora").await;

    // Before any clinic has the number: acknowledged, nothing stored.
    let unrouted = post_webhook(&app, TEXT, Some(TEXT_SIGNATURE)).await;
    assert_eq!(unrouted.status, StatusCode::OK, "{}", unrouted.body);
    assert_eq!(unrouted.body["unrouted"], 1);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM whatsapp_messages").await,
        0
    );

    connect_number(&owner).await;
    let forged = signature::sign(b"another secret", TEXT);
    for header in [
        None,
        Some("sha256=00"),
        Some(forged.as_str()),
        Some("cfb3e50d"),
    ] {
        let refused = post_webhook(&app, TEXT, header).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(refused.code(), "invalid_signature");
    }
    // One changed byte breaks the signature.
    let mut tampered = TEXT.to_vec();
    let at = tampered.iter().position(|b| *b == b'7').unwrap();
    tampered[at] = b'8';
    assert_eq!(
        post_webhook(&app, &tampered, Some(TEXT_SIGNATURE))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM whatsapp_messages").await,
        0
    );

    // Signed but not a notification: a 422 naming the body, never a 500.
    let garbage = signed(&app, b"{\"object\": 12").await;
    assert_eq!(
        garbage.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        garbage.body
    );
    assert!(
        garbage.body.to_string().contains("body"),
        "{}",
        garbage.body
    );

    // Accents written as UTF-8 on the wire, signed over their escaped form (how Meta
    // signs): accepted by the fallback.
    let literal = String::from_utf8(TEXT.to_vec())
        .unwrap()
        .replace("\\u00e1", "á")
        .replace(
            "wamid.HBgNNTUxMTk3NjU0MzIxMBUCABIYIDdBM0YxQzg4RTA1QjQ5RDJBNjE3QzBFOTRCMjdGMzVEAA==",
            "wamid.literal-accents",
        );
    assert!(!literal.is_ascii());
    let escaped = signature::escape_non_ascii(literal.as_bytes()).unwrap();
    let header = signature::sign(APP_SECRET.as_bytes(), &escaped);
    let accepted = post_webhook(&app, literal.as_bytes(), Some(&header)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(accepted.body["messages"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_app_secret_every_notification_waits_for_one() {
    let graph = crate::fakes::FakeGraph::start().await;
    let app = TestApp::start_with(|config| {
        config
            .modules
            .set("whatsapp", "graph_url", graph.base.clone());
    })
    .await;
    let reply = post_webhook(&app, TEXT, Some(TEXT_SIGNATURE)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_statuses_move_forward_only_and_failures_flag_the_conversation() {
    let app = app().await;
    let owner = app.signup("Clínica Aurora").await;
    connect_number(&owner).await;
    let first = post_webhook(&app, TEXT, Some(TEXT_SIGNATURE)).await;
    assert_eq!(first.status, StatusCode::OK);
    // Two replies the clinic sent, as the sender records them.
    let failed_wamid = serde_json::from_slice::<Value>(FAILED).unwrap()["entry"][0]["changes"][0]
        ["value"]["statuses"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut admin = app.db.admin_connection().await;
    for wamid in [SENT_WAMID, failed_wamid.as_str()] {
        diesel::sql_query(
            "INSERT INTO whatsapp_messages (tenant_id, id, conversation_id, direction, wamid, kind,
                                            sent_at, status, author, purpose)
             SELECT tenant_id, gen_random_uuid(), id, 'out', $1, 'text', now(), 'sent',
                    'assistant', 'reply'
               FROM whatsapp_conversations",
        )
        .bind::<Text, _>(wamid)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let status_of = |wamid: &str| {
        format!("SELECT count(*) AS n FROM whatsapp_messages WHERE wamid = '{wamid}' AND status = ")
    };

    let read = signed(&app, READ).await;
    assert_eq!(read.body["statuses"], 1, "{}", read.body);
    assert_eq!(count(&app, &(status_of(SENT_WAMID) + "'read'")).await, 1);
    // A late `delivered` after `read`, and the `read` again: nothing moves back.
    let delivered = String::from_utf8(READ.to_vec())
        .unwrap()
        .replace("\"read\"", "\"delivered\"");
    assert_eq!(signed(&app, delivered.as_bytes()).await.body["statuses"], 1);
    assert_eq!(signed(&app, READ).await.body["statuses"], 0);
    assert_eq!(count(&app, &(status_of(SENT_WAMID) + "'read'")).await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM whatsapp_statuses").await,
        2
    );

    // The late 131047 (the 24-hour window had closed): recorded and shown to staff.
    let failed = signed(&app, FAILED).await;
    assert_eq!(failed.body["statuses"], 1, "{}", failed.body);
    assert_eq!(
        count(
            &app,
            &(status_of(&failed_wamid) + "'failed' AND error_code = 131047 AND error_detail <> ''")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_conversations WHERE needs_attention"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_keep_the_token_sealed_and_a_number_routes_to_one_clinic() {
    let app = app().await;
    let owner = app.signup("Clínica Aurora").await;
    let receptionist = app.member(&owner, &["receptionist"]).await;
    let other = app.signup("Clínica Boreal").await;

    let defaults = owner.get("/api/v1/whatsapp/settings").await;
    assert_eq!(defaults.status, StatusCode::OK, "{}", defaults.body);
    assert_eq!(defaults.body["access_token_set"], false);
    assert_eq!(
        defaults.body["reminder_offsets_minutes"],
        json!([1440, 120])
    );
    assert_eq!(
        receptionist.get("/api/v1/whatsapp/settings").await.status,
        StatusCode::FORBIDDEN
    );

    let bad = owner
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": "12-34", "access_token": "short",
                   "reminder_offsets_minutes": [5, 60, 60],
                   "templates": {"reminder": {"name": "Lembrete Bonito", "language": "pt-br"}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    for field in [
        "phone_number_id",
        "access_token",
        "reminder_offsets_minutes",
        "templates.reminder",
    ] {
        assert!(fields.contains(&field), "{field} in {}", bad.body);
    }

    connect_number(&owner).await;
    let saved = owner
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": NUMBER, "reminder_offsets_minutes": [120, 1440],
                   "templates": {"reminder": {"name": "lembrete_consulta", "language": "pt_BR"}},
                   "address": "Rua Augusta, 1500, São Paulo"}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    // The token was kept (absent means unchanged) and is never shown.
    assert_eq!(saved.body["access_token_set"], true);
    assert!(saved.body.get("access_token").is_none());
    assert_eq!(saved.body["reminder_offsets_minutes"], json!([1440, 120]));
    assert_eq!(
        saved.body["templates"]["reminder"]["name"],
        "lembrete_consulta"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_settings
              WHERE access_token IS NOT NULL
                AND position('EAATESTclinicaFAKE0000'::bytea IN access_token) = 0"
        )
        .await,
        1
    );

    // Another clinic cannot take the number.
    let taken = other
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": NUMBER}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert_eq!(taken.code(), "number_in_use");
    // Once the first clinic lets it go, it can.
    let released = owner
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": null}),
        )
        .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    let moved = other
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": NUMBER}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let routed = post_webhook(&app, TEXT, Some(TEXT_SIGNATURE)).await;
    assert_eq!(routed.body["messages"], 1, "{}", routed.body);
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS n FROM whatsapp_messages \
                 WHERE tenant_id = '{}' AND direction = 'in'",
                other.tenant_id
            )
        )
        .await,
        1
    );
}

/// A fixture as Meta would send it now (its timestamp moved to the present), signed.
fn fresh(fixture: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(fixture.to_vec()).unwrap();
    let now = chrono::Utc::now().timestamp().to_string();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"timestamp\": \"") {
        let start = at + "\"timestamp\": \"".len();
        out.push_str(&rest[..start]);
        out.push_str(&now);
        let end = start + rest[start..].find('"').unwrap();
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Polls `check` for up to ten seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within ten seconds");
}

async fn sending_app() -> (TestApp, crate::fakes::FakeGraph) {
    sending_app_with(|_| {}).await
}

/// [`sending_app`] with the configuration further adjusted by `adjust`.
pub(crate) async fn sending_app_with(
    adjust: impl FnOnce(&mut harmony_core::config::Config),
) -> (TestApp, crate::fakes::FakeGraph) {
    let graph = crate::fakes::FakeGraph::start().await;
    let base = graph.base.clone();
    let app = TestApp::start_with(move |config| {
        config.modules.set("whatsapp", "app_secret", APP_SECRET);
        config.modules.set("whatsapp", "verify_token", VERIFY_TOKEN);
        config.modules.set("whatsapp", "graph_url", base);
        adjust(config);
    })
    .await;
    (app, graph)
}

async fn the_only_conversation(owner: &Caller) -> String {
    let list = owner.get("/api/v1/whatsapp/conversations").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["items"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_replies_go_out_once_with_retries_and_failures_reach_staff() {
    use crate::fakes::Answer;
    let (app, graph) = sending_app().await;
    let owner = app.signup("Clínica Aurora").await;
    let receptionist = app.member(&owner, &["receptionist"]).await;
    let finance = app.member(&owner, &["finance"]).await;
    let other = app.signup("Clínica Boreal").await;
    connect_number(&owner).await;
    assert_eq!(signed(&app, &fresh(TEXT)).await.body["messages"], 1);
    // The assistant answers first (it asks who is writing).
    eventually("the assistant answers", || async {
        graph.sent().len() == 1
    })
    .await;
    let conversation = the_only_conversation(&owner).await;
    let path = format!("/api/v1/whatsapp/conversations/{conversation}/messages");

    // The list and the messages, read (and audited) by the front desk only.
    let list = receptionist.get("/api/v1/whatsapp/conversations").await;
    assert_eq!(
        list.body["items"][0]["wa_id"], "5511976543210",
        "{}",
        list.body
    );
    assert_eq!(list.body["items"][0]["profile_name"], "Mariana Albuquerque");
    assert_eq!(list.body["items"][0]["window_open"], true);
    assert_eq!(finance.get(&path).await.status, StatusCode::FORBIDDEN);
    assert_eq!(other.get(&path).await.status, StatusCode::NOT_FOUND);
    let read = receptionist.get(&path).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert!(
        read.body[0]["text"]
            .as_str()
            .unwrap()
            .contains("preenchimento labial")
    );

    // A reply goes out at once, to the id as received, with the clinic's token.
    let reply = receptionist
        .post(&path, json!({"text": "Temos sim! Terça às 15h serve?"}))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    eventually("the reply is sent", || async {
        receptionist.get(&path).await.body[2]["status"] == "sent"
    })
    .await;
    let sent = graph.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].path, format!("/v24.0/{NUMBER}/messages"));
    assert_eq!(
        sent[1].authorization.as_deref(),
        Some("Bearer EAATESTclinicaFAKE0000")
    );
    assert_eq!(sent[1].body["to"], "+5511976543210");
    assert_eq!(
        sent[1].body["text"]["body"],
        "Temos sim! Terça às 15h serve?"
    );
    // Its delivery, as Meta reports it.
    let read_status = String::from_utf8(READ.to_vec())
        .unwrap()
        .replace(SENT_WAMID, sent[1].wamid.as_deref().unwrap());
    assert_eq!(
        signed(&app, read_status.as_bytes()).await.body["statuses"],
        1
    );
    assert_eq!(receptionist.get(&path).await.body[2]["status"], "read");

    // Meta busy twice: retried by the sweep (its wait cut short here) until accepted.
    graph.script(&[Answer::ServerError, Answer::RateLimited]);
    let second = owner.post(&path, json!({"text": "Confirmado!"})).await;
    let second = second.body["id"].as_str().unwrap().to_owned();
    let status_of = |id: String| {
        let app = &app;
        async move {
            #[derive(QueryableByName)]
            struct S {
                #[diesel(sql_type = Text)]
                status: String,
            }
            let mut admin = app.db.admin_connection().await;
            diesel::sql_query(format!(
                "SELECT status FROM whatsapp_messages WHERE id = '{id}'"
            ))
            .get_result::<S>(&mut admin)
            .await
            .unwrap()
            .status
        }
    };
    for attempt in 3..=4 {
        eventually("the failed attempt is recorded", || async {
            graph.sent().len() == attempt && status_of(second.clone()).await == "pending"
        })
        .await;
        let mut admin = app.db.admin_connection().await;
        diesel::sql_query(
            "UPDATE whatsapp_messages SET next_attempt_at = now() WHERE status = 'pending'",
        )
        .execute(&mut admin)
        .await
        .unwrap();
        harmony_whatsapp::sender::sweep(&app.kernel).await.unwrap();
    }
    assert_eq!(status_of(second.clone()).await, "sent");
    assert_eq!(graph.sent().len(), 5);
    // Sweeping again sends nothing twice.
    harmony_whatsapp::sender::sweep(&app.kernel).await.unwrap();
    assert_eq!(graph.sent().len(), 5);

    // Refused for good (the window closed on Meta's side): failed, and flagged for staff.
    graph.script(&[Answer::WindowClosed]);
    owner.post(&path, json!({"text": "Ainda está aí?"})).await;
    eventually("the refusal is recorded", || async {
        let messages = owner.get(&path).await.body;
        messages[4]["status"] == "failed" && messages[4]["error_code"] == 131047
    })
    .await;
    let flagged = owner
        .get("/api/v1/whatsapp/conversations?needs_attention=true")
        .await;
    assert_eq!(
        flagged.body["items"][0]["id"],
        conversation.as_str(),
        "{}",
        flagged.body
    );

    // Once the contact has been silent for a day, only templates may go.
    let mut admin = app.db.admin_connection().await;
    diesel::sql_query(
        "UPDATE whatsapp_conversations SET last_inbound_at = now() - interval '25 hours'",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let late = owner.post(&path, json!({"text": "Olá?"})).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(late.code(), "window_closed");
    let empty = owner.post(&path, json!({"text": "  "})).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Staff replying took the conversation over: the assistant keeps quiet…
    let list = owner.get("/api/v1/whatsapp/conversations").await;
    assert_eq!(list.body["items"][0]["mode"], "staff", "{}", list.body);
    let before = graph.sent().len();
    assert_eq!(
        signed(&app, &inbound("alguém aí?", 50)).await.body["messages"],
        1
    );
    eventually("the message is processed", || async {
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_messages WHERE status = 'received'",
        )
        .await
            == 0
    })
    .await;
    assert_eq!(graph.sent().len(), before);
    // …until it is handed back.
    let back = owner
        .post(
            &format!("/api/v1/whatsapp/conversations/{conversation}/hand-back"),
            json!({}),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(
        other
            .post(
                &format!("/api/v1/whatsapp/conversations/{conversation}/hand-back"),
                json!({}),
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(!say(&app, &graph, &inbound("oi", 51)).await.is_empty());

    // Switched off by the clinic: messages are kept, nobody is answered.
    let off = owner
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": NUMBER, "enabled": false}),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let before = graph.sent().len();
    assert_eq!(signed(&app, &inbound("olá?", 52)).await.body["messages"], 1);
    eventually("the message is processed", || async {
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_messages WHERE status = 'received'",
        )
        .await
            == 0
    })
    .await;
    assert_eq!(graph.sent().len(), before);
    let audited = count(
        &app,
        "SELECT count(*) AS n FROM audit_events WHERE resource = 'whatsapp.messages'",
    )
    .await;
    assert!(
        audited >= 2,
        "every read of the messages is audited: {audited}"
    );
}

/// An inbound text from the fixture's contact, as Meta would send it now.
fn inbound(text: &str, n: usize) -> Vec<u8> {
    inbound_from("5511976543210", text, n)
}

/// An inbound text from `phone` (digits, as Meta writes them), as Meta would send it now.
pub(crate) fn inbound_from(phone: &str, text: &str, n: usize) -> Vec<u8> {
    let mut notification: Value = serde_json::from_slice(TEXT).unwrap();
    let value = &mut notification["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = json!(phone);
    value["contacts"][0]["user_id"] = json!(format!("BR.{phone}"));
    let message = &mut value["messages"][0];
    message["from"] = json!(phone);
    message["from_user_id"] = json!(format!("BR.{phone}"));
    message["text"]["body"] = json!(text);
    message["id"] = json!(format!("wamid.test-inbound-{n}"));
    message["timestamp"] = json!(chrono::Utc::now().timestamp().to_string());
    serde_json::to_vec(&notification).unwrap()
}

/// A press of a reply button the assistant sent.
fn pressed(id: &str, title: &str, n: usize) -> Vec<u8> {
    let mut notification: Value = serde_json::from_slice(TEXT).unwrap();
    let message = &mut notification["entry"][0]["changes"][0]["value"]["messages"][0];
    *message = json!({
        "from": "5511976543210", "id": format!("wamid.test-inbound-{n}"),
        "timestamp": chrono::Utc::now().timestamp().to_string(), "type": "interactive",
        "interactive": {"type": "button_reply", "button_reply": {"id": id, "title": title}}
    });
    serde_json::to_vec(&notification).unwrap()
}

/// Sends `body` and waits for the assistant's answer; returns the new messages it sent.
async fn say(app: &TestApp, graph: &crate::fakes::FakeGraph, body: &[u8]) -> Vec<Value> {
    let before = graph.sent().len();
    let reply = signed(app, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    eventually("the assistant answers", || async {
        graph.sent().len() > before
    })
    .await;
    // Let a second reply of the same answer arrive too.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    graph.sent()[before..]
        .iter()
        .map(|c| c.body.clone())
        .collect()
}

fn text_of(message: &Value) -> String {
    message["text"]["body"]
        .as_str()
        .or(message["interactive"]["body"]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_contact_registers_books_cancels_and_stops_messages() {
    let (app, graph) = sending_app().await;
    let (owner, _) = clinic_with_service(&app).await;
    let day = crate::support::a_monday();

    // Someone new: asked for their name, then registered with their consent.
    let first = say(&app, &graph, &inbound("Oi, boa tarde!", 1)).await;
    assert!(
        text_of(&first[0]).contains("qual é o seu nome"),
        "{first:?}"
    );
    let named = say(&app, &graph, &inbound("Mariana Albuquerque", 2)).await;
    assert!(
        text_of(&named[0]).contains("Obrigada, Mariana"),
        "{named:?}"
    );
    let found = owner.get("/api/v1/patients?q=mariana").await;
    let patient = found.body["items"][0]["id"].as_str().unwrap().to_owned();
    let consents = owner
        .get(&format!("/api/v1/patients/{patient}/consents"))
        .await;
    let whatsapp_consent = |body: &Value| {
        body["current"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["purpose"] == "whatsapp_contact")
            .map(|c| (c["granted"].clone(), c["channel"].clone()))
    };
    assert_eq!(
        whatsapp_consent(&consents.body),
        Some((json!(true), json!("whatsapp"))),
        "{}",
        consents.body
    );

    // Free times, as buttons; the patient picks the second.
    let asked = format!(
        "quero agendar limpeza de pele dia {} de manhã",
        day.format("%d/%m")
    );
    let offered = say(&app, &graph, &inbound(&asked, 3)).await;
    let buttons = offered[0]["interactive"]["action"]["buttons"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!buttons.is_empty(), "{offered:?}");
    let booked = say(&app, &graph, &inbound("2", 4)).await;
    assert!(text_of(&booked[0]).contains("agendada"), "{booked:?}");
    let list = owner
        .get(&format!("/api/v1/appointments?patient_id={patient}"))
        .await;
    let appointment = &list.body["items"][0];
    assert_eq!(appointment["booked_by"], "patient", "{}", list.body);
    // The offer was a time the agenda returned, and that is what was booked.
    let title = buttons[1]["reply"]["title"].as_str().unwrap();
    assert!(
        title.ends_with(&appointment["start"].as_str().unwrap()[11..16]),
        "{title}"
    );

    // Cancelling asks first; the button says yes.
    let question = say(&app, &graph, &inbound("preciso cancelar minha consulta", 5)).await;
    assert!(text_of(&question[0]).contains("cancelar"), "{question:?}");
    let cancelled = say(&app, &graph, &pressed("cancel:yes", "Sim", 6)).await;
    assert!(
        text_of(&cancelled[0]).contains("cancelada"),
        "{cancelled:?}"
    );
    let id = appointment["id"].as_str().unwrap();
    let after = owner.get(&format!("/api/v1/appointments/{id}")).await;
    assert_eq!(after.body["status"], "cancelled");
    assert_eq!(after.body["cancelled_by"], "patient");

    // "Apague minhas conversas": asked first, then the history is gone for good.
    let asked = say(&app, &graph, &inbound("apague minhas conversas", 8)).await;
    assert!(text_of(&asked[0]).contains("apagar"), "{asked:?}");
    let erased = say(&app, &graph, &pressed("erase:yes", "Sim", 9)).await;
    assert!(text_of(&erased[0]).contains("apaguei"), "{erased:?}");
    let conversation = the_only_conversation(&owner).await;
    let left = owner
        .get(&format!(
            "/api/v1/whatsapp/conversations/{conversation}/messages"
        ))
        .await;
    // Only the confirmation of the erasure, sealed under a new key.
    assert_eq!(left.body.as_array().unwrap().len(), 1, "{}", left.body);
    assert!(left.body[0]["text"].as_str().unwrap().contains("apaguei"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM data_keys WHERE shredded_at IS NOT NULL"
        )
        .await,
        1
    );

    // "Pare": no more notices, and the consent log says so.
    let stopped = say(&app, &graph, &inbound("pare de me mandar mensagens", 10)).await;
    assert!(
        text_of(&stopped[0]).contains("não enviaremos"),
        "{stopped:?}"
    );
    let consents = owner
        .get(&format!("/api/v1/patients/{patient}/consents"))
        .await;
    assert_eq!(
        whatsapp_consent(&consents.body),
        Some((json!(false), json!("whatsapp"))),
        "{}",
        consents.body
    );
    assert_eq!(consents.body["history"].as_array().unwrap().len(), 2);
    let list = owner.get("/api/v1/whatsapp/conversations").await;
    assert_eq!(list.body["items"][0]["opted_out"], true);
    // Every message was answered once.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_messages WHERE direction = 'in' AND status <> 'processed'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_transcription_provider_a_voice_note_gets_a_polite_request_for_text() {
    let (app, graph) = sending_app().await;
    let owner = app.signup("Clínica Aurora").await;
    connect_number(&owner).await;
    let replies = say(&app, &graph, &fresh(AUDIO)).await;
    assert!(text_of(&replies[0]).contains("ouvir áudios"), "{replies:?}");
    assert_eq!(replies[0]["to"], "+558187652301");
    // The voice note was not downloaded: nothing but the send went to Meta.
    assert!(graph.sent().iter().all(|c| c.path.ends_with("/messages")));
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmations_and_reminders_go_out_once_and_their_buttons_act() {
    let (app, graph) = sending_app().await;
    // The outbox dispatcher and the jobs, as the server runs them.
    let background = harmony_core::server::Background::start(&app.kernel, &harmony::modules())
        .await
        .unwrap();
    let (owner, service, patient) = clinic_with_patient(&app, "11 97654-3210").await;
    let pro = owner.get("/api/v1/professionals").await.body[0]["user_id"].clone();
    let saved = owner
        .put(
            "/api/v1/whatsapp/settings",
            json!({"phone_number_id": NUMBER,
                   "templates": {"reminder": {"name": "lembrete_consulta"},
                                 "confirmation": {"name": "confirmacao_consulta"}}}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["access_token_set"], true);

    // Booked by the clinic: a confirmation, as a template (she never wrote: no window).
    let day = crate::support::a_monday();
    let booked = owner
        .post(
            "/api/v1/appointments",
            json!({"patient_id": patient, "service_ids": [service], "professional_id": pro,
                   "start": format!("{day}T10:00:00-03:00")}),
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let appointment = booked.body["id"].as_str().unwrap().to_owned();
    eventually("the confirmation is sent", || async {
        !graph.sent().is_empty()
    })
    .await;
    let confirmation = &graph.sent()[0].body;
    assert_eq!(confirmation["to"], "+5511976543210");
    assert_eq!(confirmation["template"]["name"], "confirmacao_consulta");
    assert_eq!(
        confirmation["template"]["components"][0]["parameters"][0]["text"],
        "Mariana"
    );

    // Two hours before: one reminder, however many schedulers run at once.
    let mut admin = app.db.admin_connection().await;
    diesel::sql_query(
        "UPDATE appointments SET during = tstzrange(now() + interval '90 minutes',
                                                    now() + interval '150 minutes'),
                                 blocks = tstzrange(now() + interval '90 minutes',
                                                    now() + interval '150 minutes')",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let remind = || harmony_whatsapp::notices::remind_clinic(&app.kernel, owner.tenant_id);
    let (a, b, c) = tokio::join!(remind(), remind(), remind());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    remind().await.unwrap();
    eventually("the reminder is sent", || async { graph.sent().len() >= 2 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let reminders: Vec<Value> = graph
        .sent()
        .into_iter()
        .map(|c| c.body)
        .filter(|b| b["template"]["name"] == "lembrete_consulta")
        .collect();
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    let quick = &reminders[0]["template"]["components"][1]["parameters"][0]["payload"];
    assert_eq!(quick, &json!(format!("appt:{appointment}:confirm")));
    // The 24-hour reminder was overtaken: recorded as passed, never sent.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_notices WHERE kind LIKE 'reminder:%'"
        )
        .await,
        2
    );

    // She taps "Confirmar" on the template: the appointment is confirmed.
    let mut notification: Value = serde_json::from_slice(TEXT).unwrap();
    notification["entry"][0]["changes"][0]["value"]["messages"][0] = json!({
        "from": "5511976543210", "id": "wamid.test-quick-reply",
        "timestamp": chrono::Utc::now().timestamp().to_string(), "type": "button",
        "button": {"payload": format!("appt:{appointment}:confirm"), "text": "Confirmar"}
    });
    let answer = say(&app, &graph, &serde_json::to_vec(&notification).unwrap()).await;
    assert!(text_of(&answer[0]).contains("confirmada"), "{answer:?}");
    let now = owner
        .get(&format!("/api/v1/appointments/{appointment}"))
        .await;
    assert_eq!(now.body["status"], "confirmed", "{}", now.body);

    // Staff record her opt-out: a reschedule by the clinic sends nothing more.
    let conversation = the_only_conversation(&owner).await;
    let stopped = owner
        .post(
            &format!("/api/v1/whatsapp/conversations/{conversation}/opt-out"),
            json!({"channel": "phone"}),
        )
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(stopped.body["opted_out"], true);
    let sent_before = graph.sent().len();
    let moved = owner
        .post(
            &format!("/api/v1/appointments/{appointment}/reschedule"),
            json!({"start": format!("{day}T15:00:00-03:00")}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    eventually("the reschedule is seen", || async {
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_notices WHERE kind = 'confirmation'",
        )
        .await
            == 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(graph.sent().len(), sent_before);

    // And erase her conversation at her request.
    let erased = owner
        .delete(&format!(
            "/api/v1/whatsapp/conversations/{conversation}/messages"
        ))
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    let messages = owner
        .get(&format!(
            "/api/v1/whatsapp/conversations/{conversation}/messages"
        ))
        .await;
    assert_eq!(messages.body, json!([]));
    background.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_identity_reaches_nothing_clinical_financial_or_administrative() {
    let app = app().await;
    let owner = app.signup("Clínica Aurora").await;
    let tenant = owner.tenant_id;
    let assistant = harmony_core::tenancy::assistant_identity(&app.kernel, tenant)
        .await
        .unwrap();
    // Everything it may do: read the catalogue and the calendar, book and change one
    // patient's appointments, find a patient by phone and register a new contact.
    let allowed = [
        ("appointments", "book"),
        ("appointments", "change"),
        ("appointments", "read_patient"),
        ("availability", "read"),
        ("clinic_calendar", "read"),
        ("patients", "create_minimal"),
        ("patients", "lookup"),
        ("professionals", "read"),
        ("profile", "read"),
        ("services", "read"),
        ("tenant", "read"),
        ("waitlist", "manage"),
        ("working_hours", "read"),
    ];
    let mut checked = 0;
    for permission in harmony_core::module::permissions(&harmony::modules()) {
        let granted = app
            .kernel
            .rbac
            .is_allowed(tenant, assistant, &permission)
            .await;
        let expected = allowed.contains(&(permission.resource, permission.action));
        assert_eq!(
            granted, expected,
            "{}:{} for the assistant",
            permission.resource, permission.action
        );
        checked += 1;
    }
    assert!(checked > 40, "only {checked} permissions declared?");

    // Over HTTP with its own token: the record, notes, consents, the access log, the
    // clinic-wide agenda, members, conversations and settings are refused.
    let patient = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Mariana Albuquerque", "cpf": "529.982.247-25",
                   "notes": "alergia a lidocaína"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (token, _) = app
        .kernel
        .auth
        .issue_access_token(assistant, tenant)
        .unwrap();
    let as_assistant = owner.with_token(&token);
    for path in [
        format!("/api/v1/patients/{patient}"),
        "/api/v1/patients".to_owned(),
        format!("/api/v1/patients/{patient}/consents"),
        format!("/api/v1/patients/{patient}/access-log"),
        "/api/v1/appointments".to_owned(),
        "/api/v1/members".to_owned(),
        "/api/v1/audit-events".to_owned(),
        "/api/v1/whatsapp/conversations".to_owned(),
        "/api/v1/whatsapp/settings".to_owned(),
        "/api/v1/plugins".to_owned(),
    ] {
        let reply = as_assistant.get(&path).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            reply.body
        );
    }
}

/// A clinic with one professional working weekdays 09:00–18:00, one 60-minute service,
/// and its WhatsApp number connected. Returns (owner, service id).
async fn clinic_with_service(app: &TestApp) -> (Caller, String) {
    let owner = app.signup("Clínica Aurora").await;
    let professional = app.member(&owner, &["professional"]).await;
    let pro = professional.user_id;
    let week: Vec<Value> = (1..=5)
        .map(|d| json!({"weekday": d, "starts_at": "09:00", "ends_at": "18:00"}))
        .collect();
    let hours = professional
        .put(
            &format!("/api/v1/professionals/{pro}/working-hours"),
            json!({ "intervals": week }),
        )
        .await;
    assert_eq!(hours.status, StatusCode::OK, "{}", hours.body);
    let service = owner
        .post(
            "/api/v1/services",
            json!({"name": "Limpeza de pele", "category": "facial", "duration_minutes": 60,
                   "price_cents": 18000, "professional_ids": [pro]}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    connect_number(&owner).await;
    (owner, service)
}

/// [`clinic_with_service`], with the contact registered as a patient (CPF and a clinical
/// note on file) who consents to WhatsApp contact. Returns (owner, service, patient).
async fn clinic_with_patient(app: &TestApp, phone: &str) -> (Caller, String, String) {
    let (owner, service) = clinic_with_service(app).await;
    let patient = owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Mariana Albuquerque", "phone": phone,
                   "cpf": "529.982.247-25", "notes": "alergia a lidocaína"}),
        )
        .await;
    assert_eq!(patient.status, StatusCode::CREATED, "{}", patient.body);
    let patient = patient.body["id"].as_str().unwrap().to_owned();
    owner
        .post(
            &format!("/api/v1/patients/{patient}/consents"),
            json!({"purpose": "whatsapp_contact", "granted": true,
                   "policy_version": "2026-12", "channel": "in_person"}),
        )
        .await;
    (owner, service, patient)
}

async fn ai_app() -> (TestApp, crate::fakes::FakeGraph, crate::fakes::FakeOpenAi) {
    let graph = crate::fakes::FakeGraph::start().await;
    let ai = crate::fakes::FakeOpenAi::start().await;
    let (graph_url, ai_url) = (graph.base.clone(), ai.base.clone());
    let app = TestApp::start_with(move |config| {
        config.modules.set("whatsapp", "app_secret", APP_SECRET);
        config.modules.set("whatsapp", "graph_url", graph_url);
        config.modules.set("whatsapp", "openai_url", ai_url);
        config
            .modules
            .set("whatsapp", "openai_api_key", "sk-test-clinica-fake-0000");
    })
    .await;
    (app, graph, ai)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_openai_the_model_books_through_the_same_tools_and_sees_no_clinical_data() {
    let (app, graph, ai) = ai_app().await;
    let (owner, service, patient) = clinic_with_patient(&app, "11 97654-3210").await;
    let day = crate::support::a_monday();

    // The model looks at the services and the free times, then offers them.
    ai.calls("list_services", json!({}));
    ai.calls(
        "find_slots",
        json!({"service_id": service, "date": day.to_string(), "period": "manha"}),
    );
    ai.says("Tenho h1 e h2 na segunda de manhã. Qual prefere?");
    // OpenAI is busy once: the call is retried after the time it asked for.
    ai.rate_limit(1);
    let offered = say(
        &app,
        &graph,
        &inbound("quero uma limpeza de pele segunda de manhã", 1),
    )
    .await;
    assert_eq!(
        text_of(&offered[0]),
        "Tenho h1 e h2 na segunda de manhã. Qual prefere?"
    );

    // A time nobody offered is refused by the tool; an offered one is booked.
    ai.calls("book", json!({"service_id": service, "slot_id": "h99"}));
    ai.calls("book", json!({"service_id": service, "slot_id": "h1"}));
    ai.says("Pronto, agendado!");
    let booked = say(&app, &graph, &inbound("o primeiro", 2)).await;
    assert_eq!(text_of(&booked[0]), "Pronto, agendado!");
    let list = owner
        .get(&format!("/api/v1/appointments?patient_id={patient}"))
        .await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", list.body);
    assert_eq!(items[0]["booked_by"], "patient");
    assert!(
        items[0]["start"]
            .as_str()
            .unwrap()
            .starts_with(&day.to_string())
    );

    let requests = ai.requests();
    assert!(requests.len() >= 6, "{}", requests.len());
    // The tools' answers reached the model: the ids of the offered times, the refusal.
    assert!(
        requests.iter().any(|r| r.contains("\\\"h1\\\"")),
        "{requests:?}"
    );
    assert!(requests.iter().any(|r| r.contains("slot_id must be an id")));
    // And nothing else: no CPF, no note, no surname, no phone.
    for request in &requests {
        for secret in [
            "529.982.247-25",
            "52998224725",
            "lidoca",
            "Albuquerque",
            "976543210",
        ] {
            assert!(
                !request.contains(secret),
                "{secret} sent to the model: {request}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_note_is_downloaded_transcribed_kept_as_text_and_books() {
    let (app, graph, ai) = ai_app().await;
    let (owner, service, patient) = clinic_with_patient(&app, "81 98765-2301").await;
    let day = crate::support::a_monday();
    // What she says in the voice note ("terça que vem… depois das três") is what the
    // model works from: it looks for times and offers them.
    ai.calls(
        "find_slots",
        json!({"service_id": service, "date": day.to_string(), "period": "tarde"}),
    );
    ai.says("Temos h1 e h2 na segunda à tarde. Qual prefere?");
    let replies = say(&app, &graph, &fresh(AUDIO)).await;
    assert_eq!(replies[0]["to"], "+558187652301");
    assert_eq!(
        text_of(&replies[0]),
        "Temos h1 e h2 na segunda à tarde. Qual prefere?"
    );
    // Its first URL had expired: asked for again, then downloaded once.
    assert_eq!(graph.media_urls(), 2);
    assert_eq!(graph.downloads(), 1);
    assert_eq!(ai.transcriptions(), 1);
    // The model got the transcript, as the patient's words.
    assert!(ai.requests().iter().any(|r| r.contains("avalia")));
    // The transcript is what the conversation keeps; the audio and its id are gone.
    let conversation = the_only_conversation(&owner).await;
    let messages = owner
        .get(&format!(
            "/api/v1/whatsapp/conversations/{conversation}/messages"
        ))
        .await;
    assert!(
        messages.body[0]["text"]
            .as_str()
            .unwrap()
            .contains("avaliação do preenchimento"),
        "{}",
        messages.body
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM whatsapp_messages WHERE detail ? 'media_id'"
        )
        .await,
        0
    );
    // And books the one she picks.
    ai.calls("book", json!({"service_id": service, "slot_id": "h2"}));
    ai.says("Agendado!");
    let mut pick: Value = serde_json::from_slice(&fresh(AUDIO)).unwrap();
    pick["entry"][0]["changes"][0]["value"]["messages"][0] = json!({
        "from": "558187652301", "id": "wamid.test-voice-pick",
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "type": "text", "text": {"body": "a segunda opção"}});
    let booked = say(&app, &graph, &serde_json::to_vec(&pick).unwrap()).await;
    assert_eq!(text_of(&booked[0]), "Agendado!");
    let list = owner
        .get(&format!("/api/v1/appointments?patient_id={patient}"))
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
    assert!(
        list.body["items"][0]["start"]
            .as_str()
            .unwrap()
            .starts_with(&day.to_string())
    );
}
