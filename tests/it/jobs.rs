//! The scheduler: one run per (job, tick) across replicas, failures recorded and retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use futures::FutureExt as _;
use harmony_core::jobs::{JobSpec, Scheduler};

use crate::support::TestApp;

fn counting_job(name: &'static str, schedule: &'static str, runs: Arc<AtomicUsize>) -> JobSpec {
    JobSpec {
        name,
        schedule,
        run: Arc::new(move |_kernel, _run| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }
            .boxed()
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_claiming_the_same_tick_run_it_once() {
    let app = TestApp::start().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let job = counting_job("test.once", "0 * * * * *", runs.clone());
    let one = Scheduler::new(app.kernel.clone(), vec![job.clone()], "replica-1");
    let two = Scheduler::new(app.kernel.clone(), vec![job.clone()], "replica-2");
    let tick = Utc::now().trunc_subsecs(0);
    let (a, b) = tokio::join!(one.run_tick(&job, tick), two.run_tick(&job, tick));
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|ran| **ran).count(),
        1
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The next tick is a new run.
    assert!(
        two.run_tick(&job, tick + chrono::Duration::minutes(1))
            .await
            .unwrap()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_running_schedulers_fire_every_second_but_each_tick_runs_once() {
    let app = TestApp::start().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let job = counting_job("test.every_second", "* * * * * *", runs.clone());
    let mut one = Scheduler::new(app.kernel.clone(), vec![job.clone()], "replica-1")
        .start()
        .await
        .unwrap();
    let mut two = Scheduler::new(app.kernel.clone(), vec![job], "replica-2")
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut admin = app.db.admin_connection().await;
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ticks: i64,
    }
    let counts: Counts = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS ticks FROM job_runs WHERE job = 'test.every_second'"),
        &mut admin,
    )
    .await
    .unwrap();
    assert!(
        counts.ticks >= 2,
        "the job should have fired: {}",
        counts.ticks
    );
    assert_eq!(
        runs.load(Ordering::SeqCst) as i64,
        counts.ticks,
        "one run per tick"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_is_recorded_and_retried_until_it_succeeds() {
    let app = TestApp::start().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let job = JobSpec {
        name: "test.flaky",
        schedule: "0 0 * * * *",
        run: Arc::new(move |_kernel, _run| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    anyhow::bail!("first attempt fails");
                }
                Ok(())
            }
            .boxed()
        }),
    };
    let scheduler = Scheduler::new(app.kernel.clone(), vec![job.clone()], "replica-1");
    let tick = Utc::now().trunc_subsecs(0);
    assert!(scheduler.run_tick(&job, tick).await.unwrap());

    let mut admin = app.db.admin_connection().await;
    #[derive(diesel::QueryableByName)]
    struct Run {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        last_error: Option<String>,
    }
    async fn read(admin: &mut diesel_async::AsyncPgConnection) -> Run {
        diesel_async::RunQueryDsl::get_result::<Run>(
            diesel::sql_query("SELECT status, last_error FROM job_runs WHERE job = 'test.flaky'"),
            admin,
        )
        .await
        .unwrap()
    }
    let failed = read(&mut admin).await;
    assert_eq!(failed.status, "failed");
    assert!(failed.last_error.unwrap().contains("first attempt fails"));

    // Not yet due: the backoff holds it back.
    assert_eq!(scheduler.retry_failed().await.unwrap(), 0);
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE job_runs SET next_attempt_at = now() - interval '1 second'"),
        &mut admin,
    )
    .await
    .unwrap();
    assert_eq!(scheduler.retry_failed().await.unwrap(), 1);
    let done = read(&mut admin).await;
    assert_eq!(done.status, "succeeded");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}
