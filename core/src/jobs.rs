//! Scheduled jobs on tokio-cron-scheduler, run once per tick across any number of replicas.
//!
//! tokio-cron-scheduler fires the job on every replica. Each firing first inserts a row
//! keyed by (job, scheduled tick) with `ON CONFLICT DO NOTHING`: the replica whose insert
//! took the row runs the job, the others do nothing. Outcomes are recorded on the row;
//! failed runs (and runs whose replica died) are retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Int4, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use futures::future::BoxFuture;
use scoped_futures::ScopedFutureExt;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::Kernel;
use crate::error::Error;
use crate::sql::sql;

/// The body of a job. Must be idempotent: a failed run is retried.
pub type JobFn =
    Arc<dyn Fn(Kernel, JobRun) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A job a module declares.
#[derive(Clone)]
pub struct JobSpec {
    /// Unique, stable name, e.g. `agenda.send_reminders`.
    pub name: &'static str,
    /// Cron expression with seconds, in UTC: `sec min hour day-of-month month day-of-week`.
    pub schedule: &'static str,
    pub run: JobFn,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// One run of a job, as the job sees it.
#[derive(Debug, Clone, Copy)]
pub struct JobRun {
    pub tick: DateTime<Utc>,
    pub attempt: i32,
}

const MAX_ATTEMPTS: i32 = 5;
const RUN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Runs the declared jobs.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kernel: Kernel,
    jobs: Arc<Vec<JobSpec>>,
    /// Names this replica in `job_runs.claimed_by`.
    instance: String,
}

impl Scheduler {
    pub fn new(kernel: Kernel, jobs: Vec<JobSpec>, instance: impl Into<String>) -> Self {
        Self {
            kernel,
            jobs: Arc::new(jobs),
            instance: instance.into(),
        }
    }

    /// Registers every job (plus the retry sweep) with tokio-cron-scheduler and starts it.
    pub async fn start(&self) -> anyhow::Result<JobScheduler> {
        let cron = JobScheduler::new().await?;
        for spec in self.jobs.iter() {
            let schedule = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Required)
                .dom_and_dow(true)
                .build()
                .parse(spec.schedule)
                .map_err(|e| anyhow::anyhow!("job {}: bad schedule: {e}", spec.name))?;
            let this = self.clone();
            let spec = spec.clone();
            cron.add(Job::new_async(spec.schedule, move |_, _| {
                let this = this.clone();
                let spec = spec.clone();
                let schedule = schedule.clone();
                Box::pin(async move {
                    // The tick this firing belongs to: the latest scheduled time not after now.
                    let Ok(tick) = schedule.find_previous_occurrence(&Utc::now(), true) else {
                        return;
                    };
                    if let Err(err) = this.run_tick(&spec, tick).await {
                        tracing::warn!(job = spec.name, error = %err, "could not claim job run");
                    }
                })
            })?)
            .await?;
        }
        let this = self.clone();
        cron.add(Job::new_async("*/15 * * * * *", move |_, _| {
            let this = this.clone();
            Box::pin(async move {
                if let Err(err) = this.retry_failed().await {
                    tracing::warn!(error = %err, "job retry sweep failed");
                }
            })
        })?)
        .await?;
        cron.start().await?;
        Ok(cron)
    }

    /// Claims `(job, tick)` and runs it if this replica got the claim. Returns whether it ran.
    pub async fn run_tick(&self, spec: &JobSpec, tick: DateTime<Utc>) -> Result<bool, Error> {
        let name = spec.name;
        let instance = self.instance.clone();
        let claimed = self
            .kernel
            .db
            .unscoped(|conn| {
                async move {
                    sql(
                        "INSERT INTO job_runs (job, tick, status, claimed_by) VALUES ($1, $2, 'running', $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind::<Text, _>(name)
                    .bind::<Timestamptz, _>(tick)
                    .bind::<Text, _>(instance)
                    .execute(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        if claimed == 0 {
            return Ok(false);
        }
        self.execute(spec, JobRun { tick, attempt: 1 }).await?;
        Ok(true)
    }

    /// Re-runs failed runs whose backoff has passed, and runs abandoned by a dead replica.
    pub async fn retry_failed(&self) -> Result<usize, Error> {
        let names: Vec<&str> = self.jobs.iter().map(|j| j.name).collect();
        let instance = self.instance.clone();
        let due: Vec<Due> = self
            .kernel
            .db
            .unscoped(|conn| {
                async move {
                    sql(
                        "UPDATE job_runs SET status = 'running', attempts = attempts + 1, claimed_by = $1, \
                           started_at = now(), next_attempt_at = NULL \
                         WHERE (job, tick) IN ( \
                           SELECT job, tick FROM job_runs \
                           WHERE job = ANY($2) AND attempts < $3 \
                             AND ((status = 'failed' AND next_attempt_at <= now()) \
                               OR (status = 'running' AND started_at < now() - interval '30 minutes')) \
                           ORDER BY tick LIMIT 10 FOR UPDATE SKIP LOCKED) \
                         RETURNING job, tick, attempts",
                    )
                    .bind::<Text, _>(instance)
                    .bind::<Array<Text>, _>(names)
                    .bind::<Int4, _>(MAX_ATTEMPTS)
                    .load(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        let count = due.len();
        for run in due {
            if let Some(spec) = self.jobs.iter().find(|j| j.name == run.job) {
                self.execute(
                    spec,
                    JobRun {
                        tick: run.tick,
                        attempt: run.attempts,
                    },
                )
                .await?;
            }
        }
        Ok(count)
    }

    async fn execute(&self, spec: &JobSpec, run: JobRun) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(RUN_TIMEOUT, (spec.run)(self.kernel.clone(), run)).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("{err:#}")),
            Err(_) => Some(format!("timed out after {} s", RUN_TIMEOUT.as_secs())),
        };
        match &error {
            None => {
                tracing::info!(job = spec.name, tick = %run.tick, elapsed_ms = started.elapsed().as_millis() as u64, "job ran")
            }
            Some(e) => {
                tracing::warn!(job = spec.name, tick = %run.tick, attempt = run.attempt, error = %e, "job failed")
            }
        }
        let name = spec.name;
        let backoff = chrono::Duration::seconds(30 * 2_i64.pow(run.attempt.clamp(0, 6) as u32));
        self.kernel
            .db
            .unscoped(|conn| {
                async move {
                    sql(
                        "UPDATE job_runs SET status = $3, finished_at = now(), last_error = $4, \
                           next_attempt_at = $5 WHERE job = $1 AND tick = $2",
                    )
                    .bind::<Text, _>(name)
                    .bind::<Timestamptz, _>(run.tick)
                    .bind::<Text, _>(if error.is_some() {
                        "failed"
                    } else {
                        "succeeded"
                    })
                    .bind::<diesel::sql_types::Nullable<Text>, _>(error.as_deref())
                    .bind::<diesel::sql_types::Nullable<Timestamptz>, _>(
                        error.as_ref().map(|_| Utc::now() + backoff),
                    )
                    .execute(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(())
    }
}

#[derive(diesel::QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    job: String,
    #[diesel(sql_type = Timestamptz)]
    tick: DateTime<Utc>,
    #[diesel(sql_type = Int4)]
    attempts: i32,
}
