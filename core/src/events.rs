//! Domain events through a transactional outbox.
//!
//! [`publish`] writes an event in the caller's transaction, so it exists exactly when the
//! change it describes does. The [`Dispatcher`] delivers it at least once to every
//! subscriber whose topics match, keeping one cursor per subscriber in `event_cursors`,
//! so deliveries resume where they stopped after a restart. A failing delivery is retried
//! with backoff and parked after `events.max_attempts` attempts, with its error recorded.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use futures::future::BoxFuture;
use scoped_futures::ScopedFutureExt;
use serde::Serialize;
use uuid::Uuid;

use crate::Kernel;
use crate::db::{Conn, DbError};
use crate::error::Error;
use crate::sql::sql;

/// Writes an event to the outbox inside the caller's tenant transaction. Takes a shared
/// connection so that it can be pipelined with the change it reports.
pub async fn publish(
    mut conn: &Conn,
    tenant_id: Uuid,
    topic: &str,
    payload: &impl Serialize,
) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    let payload = serde_json::to_value(payload).map_err(Error::internal)?;
    // The same function a statement calls to publish only when its own change happened.
    sql("SELECT outbox_publish($1, $2, $3, $4)")
        .bind::<SqlUuid, _>(tenant_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(topic)
        .bind::<Jsonb, _>(payload)
        .execute(&mut conn)
        .await?;
    Ok(id)
}

/// An event as subscribers receive it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Event {
    #[diesel(sql_type = SqlUuid)]
    pub tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub txid: i64,
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
}

/// Handles one event. Must be idempotent: an event can arrive more than once.
pub type EventHandler =
    Arc<dyn Fn(Kernel, Event) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A module's subscription to some topics.
#[derive(Clone)]
pub struct Subscription {
    /// Unique, stable name: the subscriber's progress is kept under it.
    pub name: &'static str,
    pub topics: &'static [&'static str],
    pub handler: EventHandler,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .finish()
    }
}

#[derive(QueryableByName)]
struct Cursor {
    #[diesel(sql_type = BigInt)]
    last_txid: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

#[derive(QueryableByName)]
struct Horizon {
    #[diesel(sql_type = BigInt)]
    txid: i64,
}

#[derive(QueryableByName)]
struct Failure {
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    parked: bool,
    #[diesel(sql_type = Timestamptz)]
    next_attempt_at: DateTime<Utc>,
}

/// Delivers outbox events to subscribers.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    kernel: Kernel,
    subscriptions: Vec<Subscription>,
}

/// How long one delivery may take before it counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl Dispatcher {
    pub fn new(kernel: Kernel, subscriptions: Vec<Subscription>) -> Self {
        Self {
            kernel,
            subscriptions,
        }
    }

    /// Polls for new events until the task is aborted. A subscriber that handled a full
    /// batch is behind: the next round starts at once instead of after the interval.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let interval = Duration::from_millis(self.kernel.config.events.poll_interval_ms);
        let batch = usize::try_from(self.kernel.config.events.batch_size).unwrap_or(usize::MAX);
        tokio::spawn(async move {
            loop {
                let mut behind = false;
                for subscription in &self.subscriptions {
                    match self.deliver(subscription).await {
                        Ok(handled) => behind |= handled >= batch,
                        Err(err) => {
                            tracing::warn!(subscriber = subscription.name, error = %err, "event delivery paused");
                        }
                    }
                }
                if !behind {
                    tokio::time::sleep(interval).await;
                }
            }
        })
    }

    /// Delivers the next batch of events to one subscriber; returns how many it handled.
    ///
    /// The subscriber's cursor row is locked for the batch, so replicas never deliver the
    /// same batch concurrently.
    pub async fn deliver(&self, subscription: &Subscription) -> Result<usize, Error> {
        let kernel = self.kernel.clone();
        let batch = kernel.config.events.batch_size;
        let max_attempts = kernel.config.events.max_attempts;
        let sub = subscription.clone();
        self.kernel
            .db
            .system("events.dispatch", |conn| {
                async move {
                    sql("INSERT INTO event_cursors (subscriber) VALUES ($1) ON CONFLICT DO NOTHING")
                        .bind::<Text, _>(sub.name)
                        .execute(conn)
                        .await?;
                    let cursor: Option<Cursor> = sql(
                        "SELECT last_txid, last_seq FROM event_cursors WHERE subscriber = $1 \
                         FOR UPDATE SKIP LOCKED",
                    )
                    .bind::<Text, _>(sub.name)
                    .get_result(conn)
                    .await
                    .optional()?;
                    let Some(mut cursor) = cursor else { return Ok(0) };

                    // One horizon for the whole batch: every transaction below it has
                    // ended, so no event below it can still appear. (Taking it again later
                    // could let the cursor jump over an event that committed meanwhile.)
                    let horizon: Horizon = sql(
                        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS txid",
                    )
                    .get_result(conn)
                    .await?;
                    let topics: Vec<&str> = sub.topics.to_vec();
                    let events: Vec<Event> = sql(
                        "SELECT tenant_id, id, txid, seq, topic, payload, occurred_at FROM outbox_events \
                         WHERE (txid, seq) > ($1, $2) \
                           AND txid < $5 \
                           AND topic = ANY($3) \
                         ORDER BY txid, seq LIMIT $4",
                    )
                    .bind::<BigInt, _>(cursor.last_txid)
                    .bind::<BigInt, _>(cursor.last_seq)
                    .bind::<Array<Text>, _>(topics)
                    .bind::<BigInt, _>(batch)
                    .bind::<BigInt, _>(horizon.txid)
                    .load(conn)
                    .await?;
                    let full_batch = events.len() as i64 == batch;

                    let mut handled = 0;
                    let mut blocked = false;
                    for event in events {
                        match deliver_one(conn, &kernel, &sub, &event, max_attempts).await? {
                            Delivery::Done => handled += 1,
                            Delivery::Retry => {
                                blocked = true;
                                break;
                            }
                        }
                        cursor = Cursor { last_txid: event.txid, last_seq: event.seq };
                    }
                    // Nothing pending for this subscriber: skip past other topics' events so
                    // the next poll does not scan them again.
                    if !blocked && !full_batch {
                        let last_below: Option<Cursor> = sql(
                            "SELECT txid AS last_txid, seq AS last_seq FROM outbox_events \
                             WHERE txid < $3 AND (txid, seq) > ($1, $2) \
                             ORDER BY txid DESC, seq DESC LIMIT 1",
                        )
                        .bind::<BigInt, _>(cursor.last_txid)
                        .bind::<BigInt, _>(cursor.last_seq)
                        .bind::<BigInt, _>(horizon.txid)
                        .get_result(conn)
                        .await
                        .optional()?;
                        if let Some(last) = last_below {
                            cursor = last;
                        }
                    }
                    sql(
                        "UPDATE event_cursors SET last_txid = $2, last_seq = $3, updated_at = now() \
                         WHERE subscriber = $1",
                    )
                    .bind::<Text, _>(sub.name)
                    .bind::<BigInt, _>(cursor.last_txid)
                    .bind::<BigInt, _>(cursor.last_seq)
                    .execute(conn)
                    .await?;
                    Ok::<_, Error>(handled)
                }
                .scope_boxed()
            })
            .await
    }
}

enum Delivery {
    /// Handled, or parked after too many failures: the cursor moves on.
    Done,
    /// Failed and will be retried: the cursor stays.
    Retry,
}

async fn deliver_one(
    conn: &mut Conn,
    kernel: &Kernel,
    sub: &Subscription,
    event: &Event,
    max_attempts: i32,
) -> Result<Delivery, DbError> {
    let failure: Option<Failure> = sql(
        "SELECT attempts, parked, next_attempt_at FROM event_failures \
         WHERE subscriber = $1 AND tenant_id = $2 AND event_id = $3",
    )
    .bind::<Text, _>(sub.name)
    .bind::<SqlUuid, _>(event.tenant_id)
    .bind::<SqlUuid, _>(event.id)
    .get_result(conn)
    .await
    .optional()?;
    if let Some(f) = &failure {
        if f.parked {
            return Ok(Delivery::Done);
        }
        if f.next_attempt_at > Utc::now() {
            return Ok(Delivery::Retry);
        }
    }

    let outcome = tokio::time::timeout(
        DELIVERY_TIMEOUT,
        (sub.handler)(kernel.clone(), event.clone()),
    )
    .await;
    let error = match outcome {
        Ok(Ok(())) => {
            if failure.is_some() {
                sql(
                    "DELETE FROM event_failures WHERE subscriber = $1 AND tenant_id = $2 AND event_id = $3",
                )
                .bind::<Text, _>(sub.name)
                .bind::<SqlUuid, _>(event.tenant_id)
                .bind::<SqlUuid, _>(event.id)
                .execute(conn)
                .await?;
            }
            return Ok(Delivery::Done);
        }
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => format!("timed out after {} s", DELIVERY_TIMEOUT.as_secs()),
    };

    let attempts = failure.map_or(1, |f| f.attempts + 1);
    let parked = attempts >= max_attempts;
    let backoff = chrono::Duration::seconds(2_i64.pow(attempts.clamp(0, 8) as u32));
    sql(
        "INSERT INTO event_failures (subscriber, tenant_id, event_id, attempts, last_error, next_attempt_at, parked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (subscriber, tenant_id, event_id) DO UPDATE SET attempts = $4, last_error = $5, \
           next_attempt_at = $6, parked = $7, updated_at = now()",
    )
    .bind::<Text, _>(sub.name)
    .bind::<SqlUuid, _>(event.tenant_id)
    .bind::<SqlUuid, _>(event.id)
    .bind::<Int4, _>(attempts)
    .bind::<Text, _>(&error)
    .bind::<Timestamptz, _>(Utc::now() + backoff)
    .bind::<diesel::sql_types::Bool, _>(parked)
    .execute(conn)
    .await?;
    if parked {
        tracing::error!(subscriber = sub.name, "event.id" = %event.id, topic = %event.topic, attempts, error = %error,
            "event delivery parked after repeated failures");
        Ok(Delivery::Done)
    } else {
        tracing::warn!(subscriber = sub.name, "event.id" = %event.id, attempts, error = %error, "event delivery failed; will retry");
        Ok(Delivery::Retry)
    }
}
