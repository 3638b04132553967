//! PostgreSQL access: the connection pool, migrations, and the only two ways request code
//! reaches data — a transaction scoped to one tenant, or an explicit, audited system path.
//!
//! Tenant isolation does not rest on `WHERE tenant_id = ...` alone: every tenant-owned table
//! has forced row-level security keyed on `app.tenant_id`. [`Db::tenant`] sets it with
//! `set_config(..., true)` so it dies with the transaction; [`Db::tenant_read`] sets it for
//! the session, and every entry point sets (or clears) it before its first statement, so a
//! pooled connection never lends one user's tenant to the next.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::Connection as _;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl as _;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use scoped_futures::ScopedBoxFuture;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::sql::sql;

pub use diesel_async::AsyncPgConnection as Conn;

diesel::define_sql_function! {
    /// PostgreSQL's `set_config(name, value, is_local)`.
    fn set_config(name: diesel::sql_types::Text, value: diesel::sql_types::Text, is_local: diesel::sql_types::Bool) -> diesel::sql_types::Text;
}

/// The role request code runs as inside [`Db::system`]: it bypasses row-level security, so
/// reaching it is explicit and every use is counted in `system_access_log`.
pub const SYSTEM_ROLE: &str = "harmony_system";

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl From<PoolError> for DbError {
    fn from(err: PoolError) -> Self {
        DbError::Unavailable(err.to_string())
    }
}

/// What the transactions of one attempt at a request did: whether one lost its connection
/// before committing, and whether anything committed (or may have). An attempt that lost
/// a connection and committed nothing changed nothing, so it can be run again; see
/// [`Attempt::run`] and the HTTP layer's use of it.
#[derive(Debug, Default)]
pub struct Attempt {
    lost: AtomicBool,
    /// Something committed, a commit's fate is unknown, or an effect outside the database
    /// happened: running the attempt again could do it twice.
    done_something: AtomicBool,
}

tokio::task_local! {
    static ATTEMPT: Arc<Attempt>;
}

impl Attempt {
    /// Runs `work`, telling afterwards whether it may be run again because a lost
    /// connection failed it before it changed anything.
    pub fn run<F: Future>(work: F) -> impl Future<Output = (F::Output, bool)> {
        use futures::FutureExt as _;
        let attempt = Arc::new(Attempt::default());
        // No async block around `work`: one would store the (large) endpoint future twice.
        ATTEMPT.scope(attempt.clone(), work).map(move |output| {
            let read = |flag: &AtomicBool| AtomicBool::load(flag, Ordering::Relaxed);
            let repeatable = read(&attempt.lost) && !read(&attempt.done_something);
            (output, repeatable)
        })
    }

    fn note(flag: fn(&Attempt) -> &AtomicBool) {
        let _ = ATTEMPT.try_with(|a| flag(a).store(true, Ordering::Relaxed));
    }

    fn lost() {
        Self::note(|a| &a.lost);
    }

    fn did_something() {
        Self::note(|a| &a.done_something);
    }

    /// Records an effect outside the database (a plugin call, a message sent), so that
    /// the attempt is not repeated.
    pub fn acted_outside() {
        Self::did_something();
    }
}

/// Whether `err` means the connection is gone (closed, or its server process told to
/// stop), rather than that the statement failed.
pub fn connection_lost(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match err {
        Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => true,
        Error::BrokenTransactionManager => true,
        // SQLSTATE class 57 (operator intervention), which diesel reports only by its
        // message: pg_terminate_backend, a shutdown, a crash restart.
        Error::DatabaseError(Kind::Unknown, info) => {
            let message = info.message();
            message.starts_with("terminating connection")
                || message.starts_with("the database system is")
        }
        _ => false,
    }
}

/// Who a tenant transaction acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantScope {
    pub tenant_id: Uuid,
    /// The acting user, if any; visible to policies as `app.user_id`.
    pub user_id: Option<Uuid>,
}

impl TenantScope {
    /// The clinic's own scope, acting for no user (jobs, webhooks, subscribers).
    pub fn clinic(tenant_id: Uuid) -> Self {
        TenantScope {
            tenant_id,
            user_id: None,
        }
    }
}

/// The application's connection pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncPgConnection>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("status", &self.pool.status())
            .finish()
    }
}

/// Adds the password (if any) to a connection URL without it appearing anywhere else.
pub fn url_with_password(url: &str, password: Option<&SecretString>) -> SecretString {
    match (password, url.split_once("://")) {
        (Some(password), Some((scheme, rest))) if !rest.contains('@') || has_no_password(rest) => {
            let (user, host) = rest.split_once('@').unwrap_or(("", rest));
            let encoded: String = password
                .expose_secret()
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            SecretString::from(format!("{scheme}://{user}:{encoded}@{host}"))
        }
        _ => SecretString::from(url.to_owned()),
    }
}

fn has_no_password(rest: &str) -> bool {
    rest.split_once('@')
        .is_some_and(|(user, _)| !user.contains(':'))
}

impl Db {
    /// Builds the pool of application-role connections. Connections are made lazily.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, DbError> {
        let url = url_with_password(&config.url, config.password.as_ref());
        // Connections are not pinged when taken from the pool: the ping would add a round
        // trip to every request. A connection the server dropped fails its next query,
        // is marked broken and discarded; that request answers 503 and may be retried.
        let mut manager_config = ManagerConfig::default();
        manager_config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            url.expose_secret(),
            manager_config,
        );
        let timeout = Some(Duration::from_millis(config.acquire_timeout_ms));
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    async fn get(&self) -> Result<Object<AsyncPgConnection>, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Pool figures for `/metrics`.
    pub fn pool_status(&self) -> deadpool::Status {
        self.pool.status()
    }

    /// Runs `f` in a transaction in which only `scope.tenant_id`'s rows exist.
    ///
    /// This is the only way request code reaches tenant data. The transaction and the
    /// tenant setting are opened in one round trip.
    pub async fn tenant<'a, T, E, F>(&self, scope: TenantScope, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'c, Result<T, E>>
            + Send
            + 'a,
        T: Send + 'a,
        E: From<DbError> + Send + 'a,
    {
        let user = scope.user_id.map(|u| u.to_string()).unwrap_or_default();
        // Both values are UUIDs formatted here, so interpolating them cannot inject SQL.
        let begin = format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{}', true), \
             set_config('app.user_id', '{user}', true)",
            scope.tenant_id
        );
        let mut conn = self.get().await?;
        self.in_transaction(&mut conn, &begin, f).await
    }

    /// Runs read-only `f` for `scope.tenant_id` without a transaction: each statement sees
    /// its own snapshot. For single-query reads on hot paths, where BEGIN and COMMIT would
    /// cost as much as the query.
    ///
    /// The tenant is set at session level before `f` runs. That is safe because every
    /// way into the pool sets it again first ([`Db::tenant`] and [`Db::unscoped`] inside
    /// their transactions, this one for the session), so no statement ever runs with the
    /// setting a previous user of the connection left.
    pub async fn tenant_read<'a, T, E, F>(&self, scope: TenantScope, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c AsyncPgConnection) -> ScopedBoxFuture<'a, 'c, Result<T, E>>
            + Send
            + 'a,
        T: Send + 'a,
        E: From<DbError> + Send + 'a,
    {
        use diesel_async::SimpleAsyncConnection;
        let user = scope.user_id.map(|u| u.to_string()).unwrap_or_default();
        // Both values are UUIDs formatted here, so interpolating them cannot inject SQL.
        let set = format!(
            "SELECT set_config('app.tenant_id', '{}', false), \
             set_config('app.user_id', '{user}', false)",
            scope.tenant_id
        );
        let conn = self.get().await?;
        let shared: &AsyncPgConnection = &conn;
        // One round trip: the setting goes out ahead of `f`'s first query. A simple query
        // is handed to the connection when its future is first polled (no statement to
        // prepare, no lock to wait for), and `try_join!` polls it before `f`; PostgreSQL
        // answers in order, so every statement of `f` runs with the tenant set. Should the
        // setting fail, `f`'s result (read-only by contract) is dropped unseen.
        let setting = async move {
            let mut c = shared;
            c.batch_execute(&set)
                .await
                .map_err(|e| E::from(classify(e)))
        };
        match futures::try_join!(setting, f(shared)) {
            Ok(((), value)) => Ok(value),
            Err(err) => Err(lost_or(&conn, err).await),
        }
    }

    /// Runs `f` as [`SYSTEM_ROLE`], across tenants. For kernel jobs only (the event
    /// dispatcher, the scheduler, logins before a tenant is known); `purpose` is recorded.
    pub async fn system<'a, T, E, F>(&self, purpose: &'static str, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'c, Result<T, E>>
            + Send
            + 'a,
        T: Send + 'a,
        E: From<DbError> + Send + 'a,
    {
        assert!(
            purpose
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
            "system purposes are static identifiers"
        );
        let begin = format!(
            "BEGIN; SET LOCAL ROLE {SYSTEM_ROLE}; \
             INSERT INTO system_access_log (purpose, minute, calls) \
             VALUES ('{purpose}', date_trunc('minute', now()), 1) \
             ON CONFLICT (purpose, minute) DO UPDATE SET calls = system_access_log.calls + 1"
        );
        let mut conn = self.get().await?;
        self.in_transaction(&mut conn, &begin, f).await
    }

    /// Runs `f` in a transaction with no tenant: tenant-owned tables are empty in it. For
    /// tables that belong to no tenant (login throttling, job runs) and health checks.
    pub async fn unscoped<'a, T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'c, Result<T, E>>
            + Send
            + 'a,
        T: Send + 'a,
        E: From<DbError> + Send + 'a,
    {
        let mut conn = self.get().await?;
        // Clears what a session-level read (`tenant_read`) may have left on the connection.
        let begin = "BEGIN; SELECT set_config('app.tenant_id', '', true), \
                     set_config('app.user_id', '', true)";
        self.in_transaction(&mut conn, begin, f).await
    }

    /// Runs `f` between `begin` (which opens the transaction) and COMMIT, or a rollback if
    /// `f` fails, and tells the request's [`Attempt`] what happened.
    ///
    /// Before COMMIT it asks for the transaction's id, if it wrote anything: a COMMIT whose
    /// connection is lost may or may not have been applied, and only that id lets another
    /// connection find out which ([`Db::fate`]). It costs a round trip per transaction.
    /// Without it, such a write could only answer 503 and never be repeated, even when it
    /// was made or when it was not.
    async fn in_transaction<'a, T, E, F>(
        &self,
        conn: &mut AsyncPgConnection,
        begin: &str,
        f: F,
    ) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'c, Result<T, E>>
            + Send
            + 'a,
        T: Send + 'a,
        E: From<DbError> + Send + 'a,
    {
        if let Err(err) = AnsiTransactionManager::begin_transaction_sql(conn, begin).await {
            let err = classify(err);
            if matches!(err, DbError::Unavailable(_)) {
                Attempt::lost();
            }
            return Err(E::from(err));
        }
        let written = match f(conn).await {
            Ok(value) => written_xid(conn).await.map(|xid| (value, xid)),
            Err(err) => Err(err),
        };
        let (value, xid) = match written {
            Ok(written) => written,
            Err(err) => {
                // A failed rollback marks the connection broken; the pool then discards it.
                // The server rolls back a transaction whose connection it lost, so nothing
                // of it happened.
                if AnsiTransactionManager::rollback_transaction(conn)
                    .await
                    .is_err()
                {
                    Attempt::lost();
                    return Err(E::from(DbError::Unavailable("connection lost".into())));
                }
                return Err(err);
            }
        };
        let err = match AnsiTransactionManager::commit_transaction(conn).await {
            Ok(()) => {
                Attempt::did_something();
                return Ok(value);
            }
            Err(err) => classify(err),
        };
        if !matches!(err, DbError::Unavailable(_)) {
            return Err(E::from(err));
        }
        // The connection went with the COMMIT in flight.
        match xid {
            // Nothing was written: nothing can have happened.
            None => Attempt::lost(),
            Some(xid) => match self.fate(xid).await {
                Some(Fate::Committed) => {
                    Attempt::did_something();
                    return Ok(value);
                }
                Some(Fate::Aborted) => Attempt::lost(),
                // Unknown: it may have been applied, so it must not be repeated.
                None => Attempt::did_something(),
            },
        }
        Err(E::from(err))
    }

    /// Whether the transaction `xid`, whose COMMIT lost its connection, was applied, asked
    /// on another connection (`txid_status`). A terminated server process may still be
    /// ending it, so a transaction still in progress is asked about again for a while;
    /// `None` if it could not be told in time.
    async fn fate(&self, xid: i64) -> Option<Fate> {
        #[derive(QueryableByName)]
        struct Status {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            status: Option<String>,
        }
        for _ in 0..FATE_QUERIES {
            // A pooled connection may be as dead as the lost one: it fails and is dropped.
            if let Ok(mut conn) = self.get().await {
                let asked = sql("SELECT txid_status($1) AS status")
                    .bind::<diesel::sql_types::BigInt, _>(xid)
                    .get_result::<Status>(&mut conn)
                    .await;
                match asked.map(|s| s.status) {
                    Ok(Some(status)) if status == "committed" => return Some(Fate::Committed),
                    Ok(Some(status)) if status == "aborted" => return Some(Fate::Aborted),
                    // Still in progress, or too old to tell (never, this soon).
                    Ok(_) => {}
                    Err(err) if !connection_lost(&err) => return None,
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

/// How many times [`Db::fate`] asks, 10 ms apart.
const FATE_QUERIES: u32 = 10;

/// What became of a transaction whose COMMIT lost its connection.
enum Fate {
    Committed,
    Aborted,
}

/// The id of the open transaction if it has written anything (`None` for a read-only one).
async fn written_xid<E: From<DbError>>(conn: &mut AsyncPgConnection) -> Result<Option<i64>, E> {
    #[derive(QueryableByName)]
    struct Xid {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        xid: Option<i64>,
    }
    sql("SELECT txid_current_if_assigned() AS xid")
        .get_result::<Xid>(conn)
        .await
        .map(|row| row.xid)
        .map_err(|err| E::from(classify(err)))
}

/// `err`, or [`DbError::Unavailable`] if the connection it came from no longer answers
/// (whatever error the statement reported when its server process went away).
async fn lost_or<E: From<DbError>>(conn: &AsyncPgConnection, err: E) -> E {
    use diesel_async::SimpleAsyncConnection;
    let mut probe = conn;
    match probe.batch_execute("SELECT 1").await {
        Ok(()) => err,
        Err(_) => {
            Attempt::lost();
            E::from(DbError::Unavailable("connection lost".into()))
        }
    }
}

/// Tells a lost connection apart from a failed query.
fn classify(err: diesel::result::Error) -> DbError {
    if connection_lost(&err) {
        DbError::Unavailable(err.to_string())
    } else {
        DbError::Query(err)
    }
}

/// Applies every pending migration of `sets`, in order, as the schema owner.
///
/// Runs the synchronous diesel harness over diesel-async's wrapper on a blocking thread,
/// so no libpq is needed.
pub async fn migrate(
    owner_url: SecretString,
    sets: Vec<EmbeddedMigrations>,
) -> anyhow::Result<usize> {
    let applied = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn =
            AsyncConnectionWrapper::<AsyncPgConnection>::establish(owner_url.expose_secret())?;
        let mut applied = 0;
        for set in sets {
            applied += conn
                .run_pending_migrations(set)
                .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?
                .len();
        }
        Ok(applied)
    })
    .await??;
    Ok(applied)
}

/// Creates the three roles and the database if they are missing (needs a superuser URL).
///
/// `harmony_owner` owns the schema, `harmony_app` is what the server logs in as, and
/// `harmony_system` (no login, BYPASSRLS) is only reachable by `SET ROLE` from the app role.
pub async fn ensure_database(
    admin_url: &str,
    database: &str,
    password: Option<&SecretString>,
) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    anyhow::ensure!(
        database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database names are limited to letters, digits and underscores"
    );
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    // Several test processes may get here at once; role DDL does not tolerate races.
    conn.batch_execute("SELECT pg_advisory_lock(727274)")
        .await?;
    let result = async {
        conn.batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'harmony_owner') THEN
                 CREATE ROLE harmony_owner LOGIN; END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'harmony_app') THEN
                 CREATE ROLE harmony_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
               END IF;
               -- harmony_system's privileges are reached by SET ROLE only, never inherited.
               ALTER ROLE harmony_app NOINHERIT;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'harmony_system') THEN
                 CREATE ROLE harmony_system NOLOGIN BYPASSRLS; END IF;
             END $$;
             GRANT harmony_system TO harmony_app;",
        )
        .await?;
        if let Some(password) = password {
            let quoted = password.expose_secret().replace('\'', "''");
            conn.batch_execute(&format!(
                "ALTER ROLE harmony_owner PASSWORD '{quoted}'; \
                 ALTER ROLE harmony_app PASSWORD '{quoted}';"
            ))
            .await?;
        }
        let found = diesel::sql_query("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(database)
            .execute(&mut conn)
            .await?;
        if found == 0 {
            conn.batch_execute(&format!("CREATE DATABASE {database} OWNER harmony_owner"))
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    conn.batch_execute("SELECT pg_advisory_unlock(727274)")
        .await?;
    result
}
