//! Losing the database: every server connection terminated under a steady load, and the
//! database refusing connections altogether.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Caller, TestApp};

/// Clients writing and reading at once, and how long the load lasts.
const CLIENTS: usize = 6;
const LOAD: Duration = Duration::from_secs(9);
/// When every server connection is terminated, from the start of the load.
const TERMINATIONS: [Duration; 2] = [Duration::from_secs(3), Duration::from_secs(6)];

/// One request of the load: when it started and ended, and what it got.
#[derive(Debug)]
struct Sample {
    started: Duration,
    ended: Duration,
    status: Option<StatusCode>,
    created: Option<String>,
}

/// Terminates every connection to the test database but the caller's own.
async fn terminate_all(app: &TestApp) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut admin = app.db.admin_connection_to("postgres").await;
    let killed: Count = diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
          WHERE datname = '{}' AND pid <> pg_backend_pid()",
        app.db.name
    ))
    .get_result(&mut admin)
    .await
    .unwrap();
    killed.n
}

/// One client: creates a patient, reads it back, lists, until the load ends.
async fn client(caller: Caller, n: usize, start: Instant, samples: Arc<Mutex<Vec<Sample>>>) {
    let mut i = 0;
    let mut last: Option<String> = None;
    while start.elapsed() < LOAD {
        i += 1;
        let started = start.elapsed();
        let reply = match (i % 3, &last) {
            (1, Some(id)) => {
                caller
                    .try_send(
                        reqwest::Method::GET,
                        &format!("/api/v1/patients/{id}"),
                        None,
                    )
                    .await
            }
            (2, _) => {
                caller
                    .try_send(reqwest::Method::GET, "/api/v1/patients?limit=5", None)
                    .await
            }
            _ => {
                caller
                    .try_send(
                        reqwest::Method::POST,
                        "/api/v1/patients",
                        Some(json!({"full_name": format!("Carga {n} {i}")})),
                    )
                    .await
            }
        };
        let ended = start.elapsed();
        let (status, created) = match reply {
            Some(reply) => {
                let created = (reply.status == StatusCode::CREATED)
                    .then(|| reply.body["id"].as_str().unwrap().to_owned());
                (Some(reply.status), created)
            }
            None => (None, None),
        };
        if created.is_some() {
            last = created.clone();
        }
        samples.lock().unwrap().push(Sample {
            started,
            ended,
            status,
            created,
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_connections_fail_almost_nothing_and_lose_no_acknowledged_write() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let timeout = Duration::from_millis(app.kernel.config.database.acquire_timeout_ms);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(owner.clone(), n, start, samples.clone())))
        .collect();
    let mut killed = Vec::new();
    for at in TERMINATIONS {
        tokio::time::sleep(at.saturating_sub(start.elapsed())).await;
        killed.push(terminate_all(&app).await);
    }
    for c in clients {
        c.await.unwrap();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    assert!(
        killed.iter().all(|&k| k >= 1),
        "each termination found server connections: {killed:?}"
    );

    let failed: Vec<&Sample> = samples
        .iter()
        .filter(|s| !s.status.is_some_and(|st| st.is_success()))
        .collect();
    assert!(
        failed.len() * 1000 <= samples.len(),
        "{} of {} requests failed (at most 0.1% may): {:?}",
        failed.len(),
        samples.len(),
        failed
            .iter()
            .map(|s| (s.started, s.status))
            .collect::<Vec<_>>()
    );
    for s in &failed {
        assert_eq!(
            s.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "a failure is a 503 the client may retry: {s:?}"
        );
    }
    let slowest = samples.iter().map(|s| s.ended - s.started).max().unwrap();
    assert!(
        slowest <= timeout,
        "a request took {slowest:?}, past the {timeout:?} database timeout"
    );
    for at in TERMINATIONS {
        let back = samples
            .iter()
            .filter(|s| s.started >= at && s.status.is_some_and(|st| st.is_success()))
            .map(|s| s.ended)
            .min()
            .expect("a success after the termination");
        assert!(
            back - at <= Duration::from_secs(2),
            "service came back {:?} after the termination at {at:?}",
            back - at
        );
    }

    // Every acknowledged write is there.
    let created: Vec<&String> = samples.iter().filter_map(|s| s.created.as_ref()).collect();
    assert!(created.len() > 100, "the load wrote: {}", created.len());
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let ids = created
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let mut admin = app.db.admin_connection().await;
    let stored: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM patients WHERE id IN ({ids})"
    ))
    .get_result(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        stored.n as usize,
        created.len(),
        "acknowledged patients stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_database_refuses_connections_requests_get_a_quick_503() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    assert_eq!(owner.get("/api/v1/tenant").await.status, StatusCode::OK);

    let mut admin = app.db.admin_connection_to("postgres").await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            app.db.name
        ))
        .await
        .unwrap();
    terminate_all(&app).await;
    for path in ["/api/v1/tenant", "/api/v1/patients"] {
        let asked = Instant::now();
        let reply = owner.get(path).await;
        let took = asked.elapsed();
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.body
        );
        assert_eq!(
            reply.headers["content-type"], "application/problem+json",
            "{path}"
        );
        assert_eq!(reply.code(), "unavailable");
        assert!(reply.headers.contains_key("retry-after"));
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    let ready = app.anonymous().get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);

    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            app.db.name
        ))
        .await
        .unwrap();
    assert_eq!(owner.get("/api/v1/tenant").await.status, StatusCode::OK);
}
