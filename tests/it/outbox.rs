//! The outbox: events commit with their change, reach every subscriber at least once,
//! are retried on failure, parked after too many, and resume after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use harmony_core::db::TenantScope;
use harmony_core::error::Error;
use harmony_core::events::{self, Dispatcher, Subscription};
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use uuid::Uuid;

use crate::support::TestApp;

type Seen = Arc<Mutex<Vec<(String, Uuid)>>>;

fn recorder(name: &'static str, topics: &'static [&'static str], seen: Seen) -> Subscription {
    Subscription {
        name,
        topics,
        handler: Arc::new(move |_kernel, event| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((event.topic.clone(), event.id));
                Ok(())
            }
            .boxed()
        }),
    }
}

async fn publish(app: &TestApp, tenant: Uuid, topic: &'static str, commit: bool) -> Uuid {
    let scope = TenantScope::clinic(tenant);
    let result = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let id = events::publish(conn, tenant, topic, &json!({"n": 1})).await?;
                if commit {
                    Ok(id)
                } else {
                    Err(Error::conflict("rolled_back", "on purpose"))
                }
            }
            .scope_boxed()
        })
        .await;
    result.unwrap_or_default()
}

/// Delivers until `done` (events wait for every older transaction of the cluster to end,
/// and other tests' transactions run beside this one), then a few more rounds so that a
/// duplicate delivery would show.
async fn drain(dispatcher: &Dispatcher, subscriptions: &[Subscription], done: impl Fn() -> bool) {
    for _ in 0..400 {
        for s in subscriptions {
            dispatcher.deliver(s).await.unwrap();
        }
        if done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..3 {
        for s in subscriptions {
            dispatcher.deliver(s).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_events_reach_each_subscriber_once_and_rolled_back_ones_never() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let (a, b): (Seen, Seen) = Default::default();
    let subs = vec![
        recorder(
            "test.a",
            &["appointment.booked", "appointment.cancelled"],
            a.clone(),
        ),
        recorder("test.b", &["appointment.cancelled"], b.clone()),
    ];
    let dispatcher = Dispatcher::new(app.kernel.clone(), subs.clone());

    let booked = publish(&app, owner.tenant_id, "appointment.booked", true).await;
    publish(&app, owner.tenant_id, "appointment.booked", false).await;
    let cancelled = publish(&app, owner.tenant_id, "appointment.cancelled", true).await;
    publish(&app, owner.tenant_id, "patient.created", true).await;
    drain(&dispatcher, &subs, || {
        a.lock().unwrap().len() >= 2 && !b.lock().unwrap().is_empty()
    })
    .await;

    assert_eq!(
        *a.lock().unwrap(),
        [
            ("appointment.booked".to_owned(), booked),
            ("appointment.cancelled".to_owned(), cancelled)
        ]
    );
    assert_eq!(
        *b.lock().unwrap(),
        [("appointment.cancelled".to_owned(), cancelled)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_dispatcher_resumes_where_it_stopped() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let seen: Seen = Default::default();
    let subs = vec![recorder("test.resume", &["x"], seen.clone())];

    let first = publish(&app, owner.tenant_id, "x", true).await;
    drain(
        &Dispatcher::new(app.kernel.clone(), subs.clone()),
        &subs,
        || !seen.lock().unwrap().is_empty(),
    )
    .await;
    let second = publish(&app, owner.tenant_id, "x", true).await;
    // A new dispatcher (a restart, or another replica) delivers only what is new.
    drain(
        &Dispatcher::new(app.kernel.clone(), subs.clone()),
        &subs,
        || seen.lock().unwrap().len() >= 2,
    )
    .await;
    let ids: Vec<Uuid> = seen.lock().unwrap().iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, [first, second]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_subscriber_is_retried_and_later_events_wait_for_it() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let attempts = Arc::new(Mutex::new(0));
    let seen: Seen = Default::default();
    let flaky = {
        let attempts = attempts.clone();
        let seen = seen.clone();
        Subscription {
            name: "test.flaky",
            topics: &["x"],
            handler: Arc::new(move |_kernel, event| {
                let attempts = attempts.clone();
                let seen = seen.clone();
                async move {
                    let mut n = attempts.lock().unwrap();
                    *n += 1;
                    if *n == 1 {
                        anyhow::bail!("the first delivery fails");
                    }
                    seen.lock().unwrap().push((event.topic, event.id));
                    Ok(())
                }
                .boxed()
            }),
        }
    };
    let dispatcher = Dispatcher::new(app.kernel.clone(), vec![flaky.clone()]);
    let first = publish(&app, owner.tenant_id, "x", true).await;
    let second = publish(&app, owner.tenant_id, "x", true).await;

    let subs = [flaky.clone()];
    drain(&dispatcher, &subs, || *attempts.lock().unwrap() >= 1).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing is delivered past a failed event"
    );
    // The retry waits for its backoff (2 s after the first failure).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    drain(&dispatcher, &subs, || seen.lock().unwrap().len() >= 2).await;
    let ids: Vec<Uuid> = seen.lock().unwrap().iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, [first, second]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_always_fails_is_parked_and_the_rest_flow() {
    let app = TestApp::start_with(|c| c.events.max_attempts = 1).await;
    let owner = app.signup("Clínica Aurora").await;
    let poison = publish(&app, owner.tenant_id, "x", true).await;
    let fine = publish(&app, owner.tenant_id, "x", true).await;
    let seen: Seen = Default::default();
    let picky = {
        let seen = seen.clone();
        Subscription {
            name: "test.picky",
            topics: &["x"],
            handler: Arc::new(move |_kernel, event| {
                let seen = seen.clone();
                async move {
                    anyhow::ensure!(event.id != poison, "cannot handle this one");
                    seen.lock().unwrap().push((event.topic, event.id));
                    Ok(())
                }
                .boxed()
            }),
        }
    };
    let dispatcher = Dispatcher::new(app.kernel.clone(), vec![picky.clone()]);
    drain(&dispatcher, std::slice::from_ref(&picky), || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, id)| *id)
            .collect::<Vec<_>>(),
        [fine]
    );

    let mut admin = app.db.admin_connection().await;
    #[derive(diesel::QueryableByName)]
    struct Parked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        parked: bool,
        #[diesel(sql_type = diesel::sql_types::Text)]
        last_error: String,
    }
    let row: Parked = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT parked, last_error FROM event_failures WHERE event_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(poison),
        &mut admin,
    )
    .await
    .unwrap();
    assert!(row.parked);
    assert!(row.last_error.contains("cannot handle this one"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_dispatcher_delivers_without_being_asked() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let seen: Seen = Default::default();
    let handle = Dispatcher::new(
        app.kernel.clone(),
        vec![recorder("test.bg", &["x"], seen.clone())],
    )
    .spawn();
    let id = publish(&app, owner.tenant_id, "x", true).await;
    for _ in 0..100 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.abort();
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, id)| *id)
            .collect::<Vec<_>>(),
        [id]
    );
}
