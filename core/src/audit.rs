//! The audit log: an append-only record of every access to personal data, and
//! `GET /api/v1/audit-events` for owners and admins to answer "who saw what".

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ipnet::IpNet;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::auth::{Actor, BearerAuth};
use crate::db::{Attempt, Conn, Db, TenantScope, set_config};
use crate::error::Error;
use crate::http::ApiResult;
use crate::http::pagination::{decode_cursor, page_size, paginate};
use crate::schema::audit_events as ae;
use crate::tenancy::perm;
use crate::{ApiTags, Kernel};

/// What was accessed, and whose data it was.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// E.g. `patient`.
    pub subject_kind: Option<&'a str>,
    pub subject_id: Option<Uuid>,
    /// E.g. `patient`, `patient.photo`, `patient.cpf`.
    pub resource: &'a str,
    /// E.g. `read`, `list`, `export`.
    pub action: &'a str,
}

/// Appends one audit event for `actor`'s access, in the caller's tenant transaction, so the
/// read and its record commit together.
pub async fn record(conn: &Conn, actor: &Actor, access: Access<'_>) -> Result<(), Error> {
    record_all(conn, actor, &[access]).await
}

/// Appends several audit events in one statement. Takes a shared connection so that it
/// can be pipelined with the reads it records.
pub async fn record_all(
    mut conn: &Conn,
    actor: &Actor,
    accesses: &[Access<'_>],
) -> Result<(), Error> {
    let rows: Vec<NewEvent> = accesses.iter().map(|a| NewEvent::of(actor, a)).collect();
    InsertEvents::of(rows.iter()).execute(&mut conn).await?;
    Ok(())
}

/// Records reads durably, in batches, before their data is released.
///
/// A read whose only write is its audit record would otherwise pay a WAL flush of its own;
/// the journal gathers the records of concurrent reads into one transaction (group commit
/// in the application). [`AuditJournal::reads`] returns only once the batch holding the
/// caller's records has committed, so a response is never sent for an unrecorded read: if
/// the batch fails, the caller answers 503 and releases nothing.
#[derive(Debug, Clone)]
pub struct AuditJournal {
    queue: mpsc::Sender<Pending>,
}

/// An audit record waiting for its batch.
struct Pending {
    tenant: Uuid,
    row: NewEvent,
    done: oneshot::Sender<bool>,
}

/// An audit event about to be written.
struct NewEvent {
    tenant_id: Uuid,
    id: Uuid,
    actor_kind: &'static str,
    actor_id: Option<Uuid>,
    subject_kind: Option<String>,
    subject_id: Option<Uuid>,
    resource: String,
    action: String,
    ip: Option<IpNet>,
    user_agent: Option<String>,
    request_id: Option<String>,
}

impl NewEvent {
    fn of(actor: &Actor, access: &Access<'_>) -> Self {
        NewEvent {
            tenant_id: actor.tenant_id,
            id: Uuid::now_v7(),
            actor_kind: actor.kind.as_str(),
            actor_id: Some(actor.user_id),
            subject_kind: access.subject_kind.map(str::to_owned),
            subject_id: access.subject_id,
            resource: access.resource.to_owned(),
            action: access.action.to_owned(),
            ip: actor.request.ip.map(IpNet::from),
            user_agent: actor.request.user_agent.clone(),
            request_id: Some(actor.request.request_id.clone()),
        }
    }
}

/// Audit events in column form, written by one `INSERT ... SELECT FROM unnest(...)`
/// whatever their number: the statement text never changes, so each connection prepares
/// and plans it once (a multi-row `VALUES` list is a new statement for every row count).
struct InsertEvents<'a> {
    tenant_id: Vec<Uuid>,
    id: Vec<Uuid>,
    actor_kind: Vec<&'a str>,
    actor_id: Vec<Option<Uuid>>,
    subject_kind: Vec<Option<&'a str>>,
    subject_id: Vec<Option<Uuid>>,
    resource: Vec<&'a str>,
    action: Vec<&'a str>,
    ip: Vec<Option<IpNet>>,
    user_agent: Vec<Option<&'a str>>,
    request_id: Vec<Option<&'a str>>,
}

impl<'a> InsertEvents<'a> {
    fn of(rows: impl ExactSizeIterator<Item = &'a NewEvent>) -> Self {
        let n = rows.len();
        let mut columns = InsertEvents {
            tenant_id: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            actor_kind: Vec::with_capacity(n),
            actor_id: Vec::with_capacity(n),
            subject_kind: Vec::with_capacity(n),
            subject_id: Vec::with_capacity(n),
            resource: Vec::with_capacity(n),
            action: Vec::with_capacity(n),
            ip: Vec::with_capacity(n),
            user_agent: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
        };
        for row in rows {
            columns.tenant_id.push(row.tenant_id);
            columns.id.push(row.id);
            columns.actor_kind.push(row.actor_kind);
            columns.actor_id.push(row.actor_id);
            columns.subject_kind.push(row.subject_kind.as_deref());
            columns.subject_id.push(row.subject_id);
            columns.resource.push(&row.resource);
            columns.action.push(&row.action);
            columns.ip.push(row.ip);
            columns.user_agent.push(row.user_agent.as_deref());
            columns.request_id.push(row.request_id.as_deref());
        }
        columns
    }
}

impl diesel::query_builder::QueryId for InsertEvents<'_> {
    type QueryId = InsertEvents<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertEvents<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Inet, Nullable, Text, Uuid as SqlUuid};
        out.push_sql(
            "INSERT INTO audit_events (tenant_id, id, actor_kind, actor_id, subject_kind, \
             subject_id, resource, action, ip, user_agent, request_id) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<SqlUuid>, _>(&self.tenant_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.actor_kind)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&self.actor_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.subject_kind)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&self.subject_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.resource)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.action)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Inet>>, _>(&self.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.request_id)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The most records one batch writes.
const BATCH: usize = 512;

/// Batches written at the same time; the journal's pool should hold as many connections.
pub const WRITERS: usize = 2;

impl AuditJournal {
    /// Starts the journal's writer on `db`, which should be a pool of its own so that the
    /// writer never waits behind the requests it serves.
    pub fn start(db: Db) -> Self {
        let (queue, incoming) = mpsc::channel::<Pending>(4 * BATCH);
        // Two writers: while one batch commits, the next one gathers.
        let incoming = Arc::new(tokio::sync::Mutex::new(incoming));
        for _ in 0..WRITERS {
            let incoming = incoming.clone();
            let db = db.clone();
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(BATCH);
                loop {
                    let received = incoming.lock().await.recv_many(&mut batch, BATCH).await;
                    if received == 0 {
                        break;
                    }
                    let written = write_batch_durably(&db, &batch).await;
                    metrics::counter!("audit_journal_batches_total").increment(1);
                    metrics::counter!("audit_journal_records_total").increment(batch.len() as u64);
                    if let Err(err) = &written {
                        tracing::error!(error = %err, records = batch.len(), "audit batch failed");
                    }
                    for pending in batch.drain(..) {
                        let _ = pending.done.send(written.is_ok());
                    }
                }
            });
        }
        Self { queue }
    }

    /// Records `actor`'s reads; returns once they are committed.
    pub async fn reads(&self, actor: &Actor, accesses: &[Access<'_>]) -> Result<(), Error> {
        let mut waits = Vec::with_capacity(accesses.len());
        for access in accesses {
            let (done, wait) = oneshot::channel();
            let pending = Pending {
                tenant: actor.tenant_id,
                row: NewEvent::of(actor, access),
                done,
            };
            self.queue
                .send(pending)
                .await
                .map_err(|_| Error::Unavailable)?;
            waits.push(wait);
        }
        for wait in waits {
            if !wait.await.unwrap_or(false) {
                return Err(Error::Unavailable);
            }
        }
        Ok(())
    }
}

/// Writes one batch, again if its connection was lost before it committed anything (at
/// most [`REPEATS`] times more), as the HTTP layer repeats a request: the reads waiting on
/// it need not fail because PostgreSQL dropped the journal's connection.
async fn write_batch_durably(db: &Db, batch: &[Pending]) -> Result<(), Error> {
    let mut repeats = 0;
    loop {
        let (written, repeatable) = Attempt::run(write_batch(db, batch)).await;
        if written.is_ok() || !repeatable || repeats == REPEATS {
            return written;
        }
        repeats += 1;
        tracing::info!(
            repeats,
            "audit batch repeated: its database connection was lost"
        );
    }
}

/// Attempts of a batch after the first.
const REPEATS: u32 = 2;

/// Writes one batch in one transaction, each clinic's records under its own tenant
/// setting so that row-level security checks them as it checks any request's.
async fn write_batch(db: &Db, batch: &[Pending]) -> Result<(), Error> {
    let mut tenants: Vec<Uuid> = batch.iter().map(|p| p.tenant).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let Some(&first) = <[Uuid]>::first(&tenants) else {
        return Ok(());
    };
    let scope = TenantScope::clinic(first);
    db.tenant(scope, |conn| {
        async move {
            for tenant in tenants {
                if tenant != first {
                    diesel::select(set_config("app.tenant_id", tenant.to_string(), true))
                        .execute(conn)
                        .await?;
                }
                let rows: Vec<&NewEvent> = batch
                    .iter()
                    .filter(|p| p.tenant == tenant)
                    .map(|p| &p.row)
                    .collect();
                InsertEvents::of(rows.into_iter()).execute(conn).await?;
            }
            Ok::<_, Error>(())
        }
        .scope_boxed()
    })
    .await
}

/// One audit event.
#[derive(Debug, Clone, Object, Queryable, Selectable)]
#[diesel(table_name = ae)]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// `user`, `assistant`, `plugin` or `system`.
    pub actor_kind: String,
    #[oai(nullable)]
    pub actor_id: Option<Uuid>,
    #[oai(nullable)]
    pub subject_kind: Option<String>,
    #[oai(nullable)]
    pub subject_id: Option<Uuid>,
    pub resource: String,
    pub action: String,
    #[oai(skip)]
    #[oai(nullable)]
    pub ip: Option<IpNet>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    #[oai(nullable)]
    pub request_id: Option<String>,
}

/// A page of audit events, newest first.
#[derive(Debug, Object)]
pub struct AuditEventPage {
    pub items: Vec<AuditEventView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// An audit event as the API shows it.
#[derive(Debug, Object)]
pub struct AuditEventView {
    #[oai(flatten)]
    pub event: AuditEvent,
    /// The client address.
    #[oai(nullable)]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Audit events of the clinic
    ///
    /// Newest first. Filter by the person whose data was accessed (`subject_id`), by who
    /// accessed it (`actor_id`), by `resource`, `action` and a time range.
    ///
    /// Permission: `audit_events:read`.
    #[oai(
        path = "/audit-events",
        method = "get",
        operation_id = "list_audit_events"
    )]
    #[expect(clippy::too_many_arguments, reason = "one argument per query filter")]
    async fn list_audit_events(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        subject_id: Query<Option<Uuid>>,
        actor_id: Query<Option<Uuid>>,
        #[oai(validator(max_length = 100))] resource: Query<Option<String>>,
        #[oai(validator(max_length = 100))] action: Query<Option<String>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        /// Page size, 1 to 200 (default 50).
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AuditEventPage>> {
        let actor = kernel.authorize(&auth, &perm::AUDIT_READ).await?;
        let limit = page_size(limit.0)?;
        let after: Option<(DateTime<Utc>, Uuid)> = decode_cursor(cursor.0.as_deref())?;
        let rows = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let mut query = ae::table.select(AuditEvent::as_select()).into_boxed();
                    if let Some(v) = subject_id.0 {
                        query = query.filter(ae::subject_id.eq(v));
                    }
                    if let Some(v) = actor_id.0 {
                        query = query.filter(ae::actor_id.eq(v));
                    }
                    if let Some(v) = resource.0 {
                        query = query.filter(ae::resource.eq(v));
                    }
                    if let Some(v) = action.0 {
                        query = query.filter(ae::action.eq(v));
                    }
                    if let Some(v) = from.0 {
                        query = query.filter(ae::occurred_at.ge(v));
                    }
                    if let Some(v) = to.0 {
                        query = query.filter(ae::occurred_at.lt(v));
                    }
                    if let Some((at, id)) = after {
                        query = query.filter(
                            ae::occurred_at
                                .lt(at)
                                .or(ae::occurred_at.eq(at).and(ae::id.lt(id))),
                        );
                    }
                    query
                        .order((ae::occurred_at.desc(), ae::id.desc()))
                        .limit(limit + 1)
                        .load(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        let (items, next_cursor) = paginate(
            rows,
            limit,
            |e: &AuditEvent| (e.occurred_at, e.id),
            |event| AuditEventView {
                ip: event.ip.map(|ip| ip.addr().to_string()),
                event,
            },
        );
        Ok(Json(AuditEventPage { items, next_cursor }))
    }
}
