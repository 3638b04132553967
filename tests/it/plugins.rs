//! Plugins: the two example plugins loaded, enabled and used over HTTP; capabilities
//! granted and refused; each clinic's plugin data kept apart; misbehaving plugins that
//! fail only their own calls; unlisted, tampered and foreign-ABI libraries refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use harmony_core::config::{Config, InstalledPlugin, PluginMode};
use harmony_core::server::Background;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Actors, Caller, Reply, TestApp};

/// Where cargo put the plugin libraries (`target/<profile>`), next to this test binary.
fn built_library(crate_name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let file = profile_dir.join(format!("lib{}.so", crate_name.replace('-', "_")));
    assert!(
        file.exists(),
        "{} is missing: build the plugins first with `cargo build --workspace` (scripts/test does)",
        file.display()
    );
    file
}

/// A plugin directory of its own for one test, with `plugins` copied in and listed.
pub(crate) struct PluginDir {
    dir: PathBuf,
    installed: Vec<InstalledPlugin>,
}

impl PluginDir {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("harmony-plugins-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        PluginDir {
            dir,
            installed: Vec::new(),
        }
    }

    /// Copies a built plugin in, without listing it.
    fn copy(&self, crate_name: &str) -> String {
        let source = built_library(crate_name);
        let file = source.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&source, self.dir.join(&file)).unwrap();
        file
    }

    /// Copies a built plugin in and lists it with its hash.
    pub(crate) fn install(mut self, crate_name: &str, mode: PluginMode) -> Self {
        let file = self.copy(crate_name);
        let sha256 = harmony_core::plugins::sha256_of(&self.dir.join(&file)).unwrap();
        self.installed.push(InstalledPlugin { file, sha256, mode });
        self
    }

    pub(crate) fn configure(&self, config: &mut Config) {
        config.plugins.dir = self.dir.clone();
        config.plugins.installed = self.installed.clone();
        config.plugins.call_timeout_ms = 2_000;
        config.plugins.memory_limit_mb = 256;
        config.plugins.host_executable = Some(PathBuf::from(env!("CARGO_BIN_EXE_harmony")));
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(dir: &PluginDir) -> TestApp {
    TestApp::start_with(|config| dir.configure(config)).await
}

/// A clinic with a service of R$ 150,00 and a patient.
struct Clinic {
    a: Actors,
    service: String,
    patient: String,
}

async fn clinic(app: &TestApp) -> Clinic {
    let a = app.actors().await;
    let service = a
        .owner
        .post(
            "/api/v1/services",
            json!({"name": "Limpeza de pele", "category": "facial", "duration_minutes": 60,
                   "price_cents": 15000, "professional_ids": [a.professional.user_id]}),
        )
        .await;
    assert_eq!(service.status, StatusCode::CREATED, "{}", service.body);
    let patient = a
        .owner
        .post(
            "/api/v1/patients",
            json!({"full_name": "Joana Prado", "phone": "11 98888-7777"}),
        )
        .await;
    assert_eq!(patient.status, StatusCode::CREATED, "{}", patient.body);
    Clinic {
        service: service.body["id"].as_str().unwrap().to_owned(),
        patient: patient.body["id"].as_str().unwrap().to_owned(),
        a,
    }
}

impl Clinic {
    /// An appointment that took place earlier today (each call's two hours before the last
    /// one's), checked in and completed through the API (which publishes
    /// `appointment.completed`). Returns its id.
    async fn completed_visit(&self, app: &TestApp) -> String {
        static VISITS: AtomicUsize = AtomicUsize::new(0);
        let back = 2 + 2 * VISITS.fetch_add(1, Ordering::Relaxed);
        let visit = Uuid::now_v7();
        let (tenant, pro) = (self.a.owner.tenant_id, self.a.professional.user_id);
        let mut admin = app.db.admin_connection().await;
        admin
            .batch_execute(&format!(
                "INSERT INTO appointments (tenant_id, id, visit_id, patient_id, professional_id, service_id, during, blocks, price_cents, currency)
                 VALUES ('{tenant}', '{visit}', '{visit}', '{}', '{pro}', '{}',
                         tstzrange(now() - interval '{back} hours', now() - interval '{back} hours' + interval '1 hour'),
                         tstzrange(now() - interval '{back} hours', now() - interval '{back} hours' + interval '1 hour'), 15000, 'BRL')",
                self.patient, self.service
            ))
            .await
            .unwrap();
        let r = &self.a.receptionist;
        for verb in ["check-in", "complete"] {
            let done = r
                .post(&format!("/api/v1/appointments/{visit}/{verb}"), json!({}))
                .await;
            assert_eq!(done.status, StatusCode::OK, "{verb}: {}", done.body);
        }
        visit.to_string()
    }
}

/// Where the subscriber's cursor stands, as `(txid, seq)`.
async fn cursor(app: &TestApp, subscriber: &str) -> (i64, i64) {
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Cursor {
        #[diesel(sql_type = BigInt)]
        last_txid: i64,
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
    }
    let mut admin = app.db.admin_connection().await;
    let found: Cursor =
        diesel::sql_query("SELECT last_txid, last_seq FROM event_cursors WHERE subscriber = $1")
            .bind::<Text, _>(subscriber)
            .get_result(&mut admin)
            .await
            .unwrap();
    (found.last_txid, found.last_seq)
}

/// The `(txid, seq)` of the newest event in the outbox.
async fn latest_event(app: &TestApp) -> (i64, i64) {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Latest {
        #[diesel(sql_type = BigInt)]
        txid: i64,
        #[diesel(sql_type = BigInt)]
        seq: i64,
    }
    let mut admin = app.db.admin_connection().await;
    let found: Latest = diesel::sql_query(
        "SELECT txid, seq FROM outbox_events ORDER BY txid DESC, seq DESC LIMIT 1",
    )
    .get_result(&mut admin)
    .await
    .unwrap();
    (found.txid, found.seq)
}

/// A plugin's own subject in a clinic.
async fn plugin_subject(app: &TestApp, plugin: &str, tenant: Uuid) -> Uuid {
    use diesel::sql_types::{Text, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Subject {
        #[diesel(sql_type = SqlUuid)]
        subject_id: Uuid,
    }
    let mut admin = app.db.admin_connection().await;
    let found: Subject = diesel::sql_query(
        "SELECT subject_id FROM plugin_installations WHERE plugin = $1 AND tenant_id::text = $2",
    )
    .bind::<Text, _>(plugin)
    .bind::<Text, _>(tenant.to_string())
    .get_result(&mut admin)
    .await
    .unwrap();
    found.subject_id
}

/// Every place in a JSON schema document where `type` is a list (OpenAPI 3.1 syntax).
fn type_lists(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    if key == "type" && inner.is_array() {
                        out.push(at.clone());
                    }
                    walk(inner, format!("{at}/{key}"), out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(inner, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

pub(crate) async fn enable(owner: &Caller, plugin: &str, granted: &[&str]) -> Reply {
    owner
        .put(
            &format!("/api/v1/plugins/{plugin}"),
            json!({"enabled": true, "granted": granted}),
        )
        .await
}

/// Polls `f` until it says yes, for up to 20 s.
pub(crate) async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_plugins_are_enabled_and_used_through_the_api() {
    let dir = PluginDir::new()
        .install("harmony-plugin-nps", PluginMode::Process)
        .install("harmony-plugin-loyalty", PluginMode::Process);
    let app = start(&dir).await;
    let background = Background::start(&app.kernel, &harmony::modules())
        .await
        .unwrap();
    let c = clinic(&app).await;
    let owner = &c.a.owner;

    let listed = owner.get("/api/v1/plugins").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nps", "loyalty"]);
    let nps = &listed.body["items"][0];
    assert_eq!(nps["enabled"], false);
    assert_eq!(nps["mode"], "process");
    assert_eq!(nps["running"], true);
    assert_eq!(nps["capabilities"][0]["name"], "appointments:read");
    assert_eq!(nps["capabilities"][1]["name"], "patients:read");
    assert_eq!(nps["capabilities"][1]["granted"], false);
    // Only managers choose plugins.
    assert_eq!(
        c.a.receptionist.get("/api/v1/plugins").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.a.receptionist
            .put("/api/v1/plugins/nps", json!({"enabled": true}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        owner.get("/api/v1/plugins/nope").await.status,
        StatusCode::NOT_FOUND
    );
    // Not enabled yet: its routes do not exist for this clinic.
    let early = owner.get("/api/v1/plugins/loyalty/rules").await;
    assert_eq!(early.status, StatusCode::NOT_FOUND);
    assert_eq!(early.body["code"], "plugin_not_enabled");

    let on = enable(owner, "loyalty", &["appointments:read", "services:read"]).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(on.body["enabled"], true);
    assert_eq!(on.body["capabilities"][0]["granted"], true);
    assert_eq!(
        enable(owner, "nps", &["appointments:read", "patients:read"])
            .await
            .status,
        StatusCode::OK
    );

    // The served document describes the plugins' routes.
    let doc = app.anonymous().get("/openapi.json").await;
    assert!(
        doc.body["paths"]["/api/v1/plugins/nps/surveys/{appointment_id}/response"]["post"]
            ["requestBody"]
            .is_object(),
        "plugin routes missing from the served document"
    );
    assert!(
        doc.body["paths"]["/api/v1/plugins/loyalty/patients/{patient_id}/redeem"]["post"]
            .is_object()
    );
    // ... and stays an OpenAPI 3.0 document with them (3.1's type lists are not 3.0).
    assert_eq!(doc.body["openapi"], "3.0.0");
    assert_eq!(type_lists(&doc.body), Vec::<String>::new());

    let visit = c.completed_visit(&app).await;

    // Loyalty: 1 point per real of R$ 150,00, credited once however often the event comes.
    let balance_path = format!("/api/v1/plugins/loyalty/patients/{}/balance", c.patient);
    eventually("loyalty points", || async {
        c.a.receptionist.get(&balance_path).await.body["points"] == 150
    })
    .await;
    let balance = c.a.receptionist.get(&balance_path).await;
    assert_eq!(balance.body["history"][0]["kind"], "earned");
    assert_eq!(balance.body["history"][0]["appointment_id"], visit.as_str());
    // Delivered again from the start (at least once means that can happen): no new points.
    let delivered = cursor(&app, "plugin:loyalty").await;
    let mut admin = app.db.admin_connection().await;
    admin
        .batch_execute(
            "UPDATE event_cursors SET last_txid = 0, last_seq = 0 WHERE subscriber = 'plugin:loyalty'",
        )
        .await
        .unwrap();
    eventually("the redelivery", || async {
        cursor(&app, "plugin:loyalty").await >= delivered
    })
    .await;
    let again = c.a.receptionist.get(&balance_path).await;
    assert_eq!(again.body["points"], 150, "{}", again.body);
    assert_eq!(again.body["history"].as_array().unwrap().len(), 1);
    let redeem_path = format!("/api/v1/plugins/loyalty/patients/{}/redeem", c.patient);
    let overdraft =
        c.a.receptionist
            .post(
                &redeem_path,
                json!({"points": 151, "reason": "Kit de skincare"}),
            )
            .await;
    assert_eq!(overdraft.status, StatusCode::CONFLICT, "{}", overdraft.body);
    assert_eq!(overdraft.body["code"], "insufficient_points");
    assert_eq!(
        overdraft.headers["content-type"],
        "application/problem+json"
    );
    let redeemed =
        c.a.receptionist
            .post(
                &redeem_path,
                json!({"points": 100, "reason": "Kit de skincare"}),
            )
            .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.body);
    assert_eq!(redeemed.body["points"], 50);
    assert_eq!(redeemed.body["history"][0]["kind"], "redeemed");
    let bad =
        c.a.receptionist
            .post(&redeem_path, json!({"points": -3, "reason": "x"}))
            .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "points");
    // Finance may read a balance but not redeem (the route names its roles).
    let finance = app.member(owner, &["finance"]).await;
    assert_eq!(finance.get(&balance_path).await.status, StatusCode::OK);
    assert_eq!(
        finance
            .post(&redeem_path, json!({"points": 1, "reason": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // A rule overrides the price for that service.
    let rule = owner
        .put(
            &format!("/api/v1/plugins/loyalty/rules/{}", c.service),
            json!({"points": 40}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.body);
    assert_eq!(
        owner.get("/api/v1/plugins/loyalty/rules").await.body["rules"][0]["points"],
        40
    );

    // NPS: a pending survey, named because patients:read was granted.
    let pending =
        c.a.receptionist
            .get("/api/v1/plugins/nps/surveys?status=pending")
            .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.body);
    assert_eq!(pending.body["items"][0]["appointment_id"], visit.as_str());
    assert_eq!(pending.body["items"][0]["patient_name"], "Joana Prado");
    let answer_path = format!("/api/v1/plugins/nps/surveys/{visit}/response");
    let out_of_range =
        c.a.receptionist
            .post(&answer_path, json!({"score": 11}))
            .await;
    assert_eq!(out_of_range.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(out_of_range.body["errors"][0]["field"], "score");
    let answered =
        c.a.receptionist
            .post(&answer_path, json!({"score": 10, "comment": "Adorei"}))
            .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    assert_eq!(answered.body["status"], "answered");
    let twice =
        c.a.receptionist
            .post(&answer_path, json!({"score": 3}))
            .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let today = chrono::Utc::now().date_naive();
    let score = owner
        .get(&format!(
            "/api/v1/plugins/nps/score?from={today}&to={today}"
        ))
        .await;
    assert_eq!(score.status, StatusCode::OK, "{}", score.body);
    assert_eq!(score.body["responses"], 1);
    assert_eq!(score.body["nps"], 100);
    // The score is for managers; a malformed period names its parameter.
    assert_eq!(
        c.a.receptionist
            .get(&format!(
                "/api/v1/plugins/nps/score?from={today}&to={today}"
            ))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let malformed = owner
        .get("/api/v1/plugins/nps/score?from=ontem&to=hoje")
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.body["errors"][0]["field"], "from");
    // Unknown routes and methods of a plugin.
    assert_eq!(
        owner.get("/api/v1/plugins/nps/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        owner.get(&answer_path).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Anonymous callers are turned away before any plugin code runs.
    assert_eq!(
        app.anonymous().get(&balance_path).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The plugin's read of the patient's name is in the patient's access log, by the plugin.
    let log = owner
        .get(&format!("/api/v1/patients/{}/access-log", c.patient))
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let by_plugin = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor_kind"] == "plugin" && e["resource"] == "patient.name");
    assert!(by_plugin, "no audited plugin read in {}", log.body);

    // Disabled: routes gone, grants withdrawn from its subject.
    let subject = plugin_subject(&app, "loyalty", owner.tenant_id).await;
    let capability = harmony_core::plugins::capability_role("services:read");
    let roles = |app: &TestApp| {
        let rbac = app.kernel.rbac.clone();
        let tenant = owner.tenant_id;
        async move { rbac.links_of(tenant, subject).await }
    };
    assert!(roles(&app).await.contains(&capability));
    let off = owner
        .put("/api/v1/plugins/loyalty", json!({"enabled": false}))
        .await;
    assert_eq!(off.body["enabled"], false);
    assert_eq!(
        owner.get(&balance_path).await.body["code"],
        "plugin_not_enabled"
    );
    assert_eq!(roles(&app).await, Vec::<String>::new());
    background.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinic_grants_or_refuses_what_a_plugin_asks_for() {
    let dir = PluginDir::new()
        .install("harmony-plugin-nps", PluginMode::Process)
        .install("harmony-plugin-loyalty", PluginMode::Process);
    let app = start(&dir).await;
    let background = Background::start(&app.kernel, &harmony::modules())
        .await
        .unwrap();
    let c = clinic(&app).await;
    let owner = &c.a.owner;

    // Only what the plugin requests can be granted.
    let foreign = enable(owner, "nps", &["patients:read", "events:emit"]).await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        foreign.body
    );
    assert_eq!(foreign.body["errors"][0]["field"], "granted[1]");
    assert!(
        foreign.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("patients:read")
    );

    // Enabled with nothing granted: the plugins serve their routes but learn nothing of
    // the clinic's appointments.
    assert_eq!(enable(owner, "nps", &[]).await.status, StatusCode::OK);
    assert_eq!(enable(owner, "loyalty", &[]).await.status, StatusCode::OK);
    let unseen = c.completed_visit(&app).await;
    // Grants count when an event is delivered: let the dispatchers pass it first.
    let latest = latest_event(&app).await;
    for subscriber in ["plugin:nps", "plugin:loyalty"] {
        eventually("the dispatchers passing the event", || async {
            cursor(&app, subscriber).await >= latest
        })
        .await;
    }

    // With appointments:read only: the events arrive, but names and prices stay closed.
    for plugin in ["nps", "loyalty"] {
        assert_eq!(
            enable(owner, plugin, &["appointments:read"]).await.status,
            StatusCode::OK
        );
    }
    let visit = c.completed_visit(&app).await;
    let balance_path = format!("/api/v1/plugins/loyalty/patients/{}/balance", c.patient);
    eventually("the loyalty credit", || async {
        c.a.receptionist.get(&balance_path).await.body["history"][0]["appointment_id"]
            == visit.as_str()
    })
    .await;
    // Events come in order: the visit before the grant was passed over, never delivered.
    let balance = c.a.receptionist.get(&balance_path).await;
    assert_eq!(balance.body["history"].as_array().unwrap().len(), 1);
    // Without services:read the price is unknown: no points (and no rule was set).
    assert_eq!(balance.body["points"], 0);
    let pending = c.a.receptionist.get("/api/v1/plugins/nps/surveys").await;
    assert_eq!(pending.body["items"][0]["appointment_id"], visit.as_str());
    assert!(pending.body["items"][0].get("patient_name").is_none());
    let surveyed: Vec<&str> = pending.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["appointment_id"].as_str())
        .collect();
    assert!(!surveyed.contains(&unseen.as_str()), "{surveyed:?}");
    // And no read of the patient reached their access log.
    let log = owner
        .get(&format!("/api/v1/patients/{}/access-log", c.patient))
        .await;
    assert!(
        !log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor_kind"] == "plugin")
    );

    // Granted later: the next list has names.
    assert_eq!(
        enable(owner, "nps", &["appointments:read", "patients:read"])
            .await
            .status,
        StatusCode::OK
    );
    let named = c.a.receptionist.get("/api/v1/plugins/nps/surveys").await;
    assert_eq!(named.body["items"][0]["patient_name"], "Joana Prado");
    background.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_never_sees_another_clinics_data() {
    let dir = PluginDir::new().install("harmony-plugin-loyalty", PluginMode::Process);
    let app = start(&dir).await;
    let background = Background::start(&app.kernel, &harmony::modules())
        .await
        .unwrap();
    let c = clinic(&app).await;
    let other = &c.a.other_owner;
    for owner in [&c.a.owner, other] {
        assert_eq!(
            enable(owner, "loyalty", &["appointments:read", "services:read"])
                .await
                .status,
            StatusCode::OK
        );
    }
    c.completed_visit(&app).await;
    let balance_path = format!("/api/v1/plugins/loyalty/patients/{}/balance", c.patient);
    eventually("loyalty points", || async {
        c.a.owner.get(&balance_path).await.body["points"] == 150
    })
    .await;
    c.a.owner
        .put(
            &format!("/api/v1/plugins/loyalty/rules/{}", c.service),
            json!({"points": 7}),
        )
        .await;

    // The other clinic's plugin store knows nothing of the first clinic.
    let theirs = other.get(&balance_path).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_eq!(theirs.body["points"], 0);
    assert_eq!(theirs.body["history"], json!([]));
    assert_eq!(
        other.get("/api/v1/plugins/loyalty/rules").await.body["rules"],
        json!([])
    );
    // Nor can it set a rule for the first clinic's service, which it does not offer.
    let rule = other
        .put(
            &format!("/api/v1/plugins/loyalty/rules/{}", c.service),
            json!({"points": 7}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::NOT_FOUND, "{}", rule.body);
    let redeem = other
        .post(
            &format!("/api/v1/plugins/loyalty/patients/{}/redeem", c.patient),
            json!({"points": 10, "reason": "tentativa"}),
        )
        .await;
    assert_eq!(redeem.status, StatusCode::CONFLICT);
    assert_eq!(c.a.owner.get(&balance_path).await.body["points"], 150);

    // In the database, every row of the store carries its clinic.
    let mut admin = app.db.admin_connection().await;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let foreign: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM plugin_kv WHERE plugin = 'loyalty' AND tenant_id::text = $1",
    )
    .bind::<Text, _>(other.tenant_id.to_string())
    .get_result(&mut admin)
    .await
    .unwrap();
    assert_eq!(foreign.n, 0);
    background.stop().await;
}

/// Requests of other kinds that keep flowing while a plugin misbehaves, to the kernel and
/// to another plugin: none may fail.
fn steady_stream(
    caller: Caller,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let handle = tokio::spawn(async move {
        for path in ["/api/v1/me", "/api/v1/plugins/loyalty/rules"]
            .iter()
            .cycle()
        {
            let reply = caller.get(path).await;
            if reply.status == StatusCode::OK {
                ok2.fetch_add(1, Ordering::Relaxed);
            } else {
                failed2.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (ok, failed, handle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_plugin_fails_only_its_own_calls_and_is_restarted() {
    let dir = PluginDir::new()
        .install("harmony-plugin-misbehaving", PluginMode::Process)
        .install("harmony-plugin-loyalty", PluginMode::Process);
    let app = start(&dir).await;
    let a = app.actors().await;
    for plugin in ["misbehaving", "loyalty"] {
        assert_eq!(enable(&a.owner, plugin, &[]).await.status, StatusCode::OK);
    }
    let (ok, failed, stream) = steady_stream(a.owner.clone());
    let plugin = app.kernel.plugins.get("misbehaving").unwrap().clone();
    let call = |route: &str| {
        let caller = a.receptionist.clone();
        let path = format!("/api/v1/plugins/misbehaving{route}");
        async move { caller.get(&path).await }
    };
    let first = call("/ok").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let pid = first.body["pid"].clone();

    // A caught panic fails the call; the process survives it.
    let panicked = call("/panic").await;
    assert_eq!(
        panicked.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        panicked.body
    );
    assert_eq!(panicked.body["code"], "plugin_failed");
    assert!(
        panicked.body["detail"]
            .as_str()
            .unwrap()
            .contains("panicked")
    );
    assert_eq!(call("/ok").await.body["pid"], pid);
    // Printing to stdout does not corrupt the pipe.
    assert_eq!(call("/print").await.status, StatusCode::OK);
    assert_eq!(call("/ok").await.body["pid"], pid);

    // Each of these kills the process: the call fails, the next ones succeed again.
    for (route, status, why) in [
        ("/abort", StatusCode::BAD_GATEWAY, "SIGABRT"),
        ("/crash", StatusCode::BAD_GATEWAY, "SIGSEGV"),
        ("/oom", StatusCode::BAD_GATEWAY, "SIGABRT"),
        ("/hang", StatusCode::GATEWAY_TIMEOUT, "did not answer"),
    ] {
        let starts = plugin.starts();
        let started = Instant::now();
        let failed_call = call(route).await;
        assert_eq!(failed_call.status, status, "{route}: {}", failed_call.body);
        assert!(
            failed_call.body["detail"].as_str().unwrap().contains(why),
            "{route}: {}",
            failed_call.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{route} took too long"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let back = loop {
            let reply = call("/ok").await;
            if reply.status == StatusCode::OK {
                break reply;
            }
            assert!(
                Instant::now() < deadline,
                "{route}: never came back: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_ne!(back.body["pid"], pid, "{route}: not a new process");
        assert_eq!(plugin.starts(), starts + 1, "{route}");
    }
    // A call given up mid-exchange (its future dropped, as when its request is cancelled)
    // leaves no stale answer for the next one: the process is replaced.
    let subject = plugin_subject(&app, "misbehaving", a.owner.tenant_id).await;
    let actor =
        harmony_core::plugins::plugin_actor("misbehaving", a.owner.tenant_id, subject, None);
    let slow = json!({"tenant_id": a.owner.tenant_id, "user_id": a.owner.user_id, "roles": ["owner"],
        "method": "GET", "route": "/slow", "path": "/slow", "params": {}, "query": {}, "body": null});
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        plugin.call(
            &app.kernel,
            harmony_core::plugins::CallKind::Request,
            &slow,
            actor,
        ),
    )
    .await;
    assert!(gave_up.is_err(), "the slow route answered within 100 ms");
    let starts = plugin.starts();
    let next = call("/ok").await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(next.body["ok"], true, "{}", next.body);
    assert_eq!(
        plugin.starts(),
        starts + 1,
        "the abandoned process was reused"
    );

    // A host operation of a capability the manifest never requested is refused.
    let peek = call("/peek").await;
    assert_eq!(peek.status, StatusCode::FORBIDDEN, "{}", peek.body);
    assert_eq!(peek.body["code"], "capability_not_requested");

    stream.abort();
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "the normal stream barely ran"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "normal requests failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_process_plugin_works_and_its_panics_are_contained() {
    let dir = PluginDir::new()
        .install("harmony-plugin-nps", PluginMode::InProcess)
        .install("harmony-plugin-misbehaving", PluginMode::InProcess);
    let app = start(&dir).await;
    let background = Background::start(&app.kernel, &harmony::modules())
        .await
        .unwrap();
    let c = clinic(&app).await;
    let listed = c.a.owner.get("/api/v1/plugins").await;
    assert_eq!(listed.body["items"][0]["mode"], "in_process");
    assert_eq!(
        enable(&c.a.owner, "nps", &["appointments:read", "patients:read"])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        enable(&c.a.owner, "misbehaving", &[]).await.status,
        StatusCode::OK
    );
    let visit = c.completed_visit(&app).await;
    eventually("the survey", || async {
        c.a.receptionist
            .get("/api/v1/plugins/nps/surveys")
            .await
            .body["items"][0]["appointment_id"]
            == visit.as_str()
    })
    .await;
    let panicked =
        c.a.receptionist
            .get("/api/v1/plugins/misbehaving/panic")
            .await;
    assert_eq!(panicked.status, StatusCode::BAD_GATEWAY);
    let ok = c.a.receptionist.get("/api/v1/plugins/misbehaving/ok").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["pid"], std::process::id());
    background.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unlisted_tampered_and_foreign_abi_libraries_are_refused() {
    let dir = PluginDir::new()
        .install("harmony-plugin-nps", PluginMode::Process)
        .install("harmony-plugin-loyalty", PluginMode::Process)
        .install("harmony-plugin-wrong-abi", PluginMode::Process);
    dir.copy("harmony-plugin-misbehaving");
    // Tampered after it was listed.
    let loyalty = dir.dir.join(&dir.installed[1].file);
    let mut bytes = std::fs::read(&loyalty).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&loyalty, bytes).unwrap();

    let app = start(&dir).await;
    let loaded: Vec<&str> = app
        .kernel
        .plugins
        .plugins()
        .iter()
        .map(|p| &*p.name)
        .collect();
    assert_eq!(loaded, ["nps"]);
    let refused = app.kernel.plugins.refused();
    let reason = |file: &str| {
        refused
            .iter()
            .find(|r| r.file.contains(file))
            .map(|r| r.reason.clone())
            .unwrap_or_else(|| panic!("{file} was not refused: {refused:?}"))
    };
    assert!(reason("misbehaving").contains("not listed"));
    assert!(reason("loyalty").contains("SHA-256"));
    assert!(
        reason("wrong_abi").contains("ABI version 999"),
        "{}",
        reason("wrong_abi")
    );
    let a = app.actors().await;
    let listed = a.owner.get("/api/v1/plugins").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.owner.get("/api/v1/plugins/loyalty/rules").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_task_runs_for_every_clinic_that_enabled_it() {
    let dir = PluginDir::new().install("harmony-plugin-nps", PluginMode::Process);
    let app = start(&dir).await;
    let a = app.actors().await;
    assert_eq!(enable(&a.owner, "nps", &[]).await.status, StatusCode::OK);
    // Two unanswered surveys, one old enough to expire, in the enabled clinic; an old one
    // in the other clinic, which did not enable the plugin.
    let mut admin = app.db.admin_connection().await;
    let survey = |id: &str, days: i64| {
        let at = (chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        json!({"appointment_id": id, "patient_id": id, "professional_id": id, "service_ids": [],
               "completed_at": at, "status": "pending"})
    };
    let (old, new) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    for (tenant, id, days) in [
        (a.owner.tenant_id, &old, 40),
        (a.owner.tenant_id, &new, 2),
        (a.other_owner.tenant_id, &old, 40),
    ] {
        admin
            .batch_execute(&format!(
                "INSERT INTO plugin_kv (tenant_id, plugin, key, value) VALUES ('{tenant}', 'nps', 'survey:{id}', '{}')",
                survey(id, days)
            ))
            .await
            .unwrap();
    }
    let job = app
        .kernel
        .plugins
        .jobs()
        .into_iter()
        .find(|j| j.name == "plugin.nps.expire")
        .expect("the nps task is a job");
    assert_eq!(job.schedule, "0 30 3 * * *");
    let run = harmony_core::jobs::JobRun {
        tick: chrono::Utc::now(),
        attempt: 1,
    };
    (job.run)(app.kernel.clone(), run).await.unwrap();

    let listed = a.receptionist.get("/api/v1/plugins/nps/surveys").await;
    let status_of = |id: &str| {
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["appointment_id"] == id)
            .map(|s| s["status"].clone())
            .unwrap()
    };
    assert_eq!(status_of(&old), "expired");
    assert_eq!(status_of(&new), "pending");
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: String,
    }
    let untouched: Status = diesel::sql_query(
        "SELECT value->>'status' AS status FROM plugin_kv WHERE plugin = 'nps' AND tenant_id::text = $1",
    )
    .bind::<Text, _>(a.other_owner.tenant_id.to_string())
    .get_result(&mut admin)
    .await
    .unwrap();
    assert_eq!(untouched.status, "pending");
}
