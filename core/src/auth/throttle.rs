//! Login throttling per account and per client address, kept in PostgreSQL so that every
//! replica sees the same counts. If the store cannot be reached the login is refused.

use std::net::IpAddr;

use diesel::sql_types::{Array, Bytea, Int4, Int8, Nullable, Timestamptz};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;

use crate::config::AuthConfig;
use crate::db::Db;
use crate::error::Error;
use crate::sql::sql;
use crate::util::sha256;

/// The throttle keys of one login attempt: hashes, so neither e-mails nor addresses are
/// stored in the clear.
#[derive(Debug)]
pub(crate) struct LoginKeys {
    account: Vec<u8>,
    address: Option<Vec<u8>>,
}

impl LoginKeys {
    pub(crate) fn new(email: &str, ip: Option<IpAddr>) -> Self {
        Self {
            account: sha256(format!("account:{}", email.to_lowercase()).as_bytes()),
            address: ip.map(|ip| sha256(format!("address:{ip}").as_bytes())),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = Bytea)]
    key: Vec<u8>,
    #[diesel(sql_type = Int4)]
    failures: i32,
    #[diesel(sql_type = Nullable<Int8>)]
    retry_after: Option<i64>,
}

/// Refuses with 429 when either key has used up its failures in the current window.
pub(crate) async fn check(db: &Db, config: &AuthConfig, keys: &LoginKeys) -> Result<(), Error> {
    let mut wanted = vec![keys.account.clone()];
    wanted.extend(keys.address.clone());
    let window = config.login_window_secs;
    let counts: Vec<Count> = db
        .unscoped(|conn| {
            async move {
                sql(
                    "SELECT key, failures, \
                     ceil(extract(epoch FROM window_started_at + make_interval(secs => $2) - now()))::int8 \
                       AS retry_after \
                     FROM login_throttle \
                     WHERE key = ANY($1) AND window_started_at > now() - make_interval(secs => $2)",
                )
                .bind::<Array<Bytea>, _>(wanted)
                .bind::<Int8, _>(window)
                .load(conn)
                .await
                .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await?;
    for count in counts {
        let limit = if count.key == keys.account {
            config.login_max_failures_per_account
        } else {
            config.login_max_failures_per_address
        };
        if count.failures >= limit {
            let retry_after_secs = count.retry_after.unwrap_or(window).max(1) as u64;
            return Err(Error::RateLimited { retry_after_secs });
        }
    }
    Ok(())
}

/// Counts a failed attempt against both keys.
pub(crate) async fn record_failure(
    db: &Db,
    config: &AuthConfig,
    keys: &LoginKeys,
) -> Result<(), Error> {
    let mut failed = vec![keys.account.clone()];
    failed.extend(keys.address.clone());
    let window = config.login_window_secs;
    db.unscoped(|conn| {
        async move {
            sql(
                "INSERT INTO login_throttle (key, window_started_at, failures) \
                 SELECT k, now(), 1 FROM unnest($1::bytea[]) AS k \
                 ON CONFLICT (key) DO UPDATE SET \
                   failures = CASE WHEN login_throttle.window_started_at \
                                   <= now() - make_interval(secs => $2) \
                              THEN 1 ELSE login_throttle.failures + 1 END, \
                   window_started_at = CASE WHEN login_throttle.window_started_at \
                                   <= now() - make_interval(secs => $2) \
                              THEN now() ELSE login_throttle.window_started_at END",
            )
            .bind::<Array<Bytea>, _>(failed)
            .bind::<Int8, _>(window)
            .execute(conn)
            .await
            .map_err(Error::from)
        }
        .scope_boxed()
    })
    .await?;
    Ok(())
}

/// Forgets an account's failures after a successful login (the address keeps its count).
pub(crate) async fn clear_account(db: &Db, keys: &LoginKeys) -> Result<(), Error> {
    let account = keys.account.clone();
    db.unscoped(|conn| {
        async move {
            sql("DELETE FROM login_throttle WHERE key = $1")
                .bind::<Bytea, _>(account)
                .execute(conn)
                .await
                .map_err(Error::from)
        }
        .scope_boxed()
    })
    .await?;
    Ok(())
}

/// Drops windows that have expired; run by a scheduled job.
pub(crate) async fn prune(db: &Db, window_secs: i64) -> Result<usize, Error> {
    db.unscoped(|conn| {
        async move {
            sql("DELETE FROM login_throttle WHERE window_started_at < $1::timestamptz")
                .bind::<Timestamptz, _>(chrono::Utc::now() - chrono::Duration::seconds(window_secs))
                .execute(conn)
                .await
                .map_err(Error::from)
        }
        .scope_boxed()
    })
    .await
}
