//! The host operations a plugin may call: its own key-value store in the clinic, and the
//! operations of the capabilities the clinic granted it.

use std::sync::Arc;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use futures::FutureExt as _;
use harmony_plugin_api::{Failure, KvEntry, KvPage, KvWrite};
use scoped_futures::ScopedFutureExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Capability, PluginCall};
use crate::Kernel;
use crate::error::Error;
use crate::schema::plugin_kv as kv;
use crate::tenancy::perm;

/// Longest key, in characters.
const MAX_KEY: usize = 256;
/// Largest value, serialised.
const MAX_VALUE: usize = 64 * 1024;
/// Most writes in one atomic `kv.write`.
const MAX_WRITES: usize = 100;
/// Largest page of `kv.list`.
const MAX_PAGE: u32 = 500;

/// Runs one host operation for the plugin's subject.
pub async fn dispatch(
    kernel: &Kernel,
    call: &PluginCall,
    op: &str,
    args: Value,
) -> Result<Value, Failure> {
    run(kernel, call, op, args).await.map_err(|Handled(f)| f)
}

async fn run(kernel: &Kernel, call: &PluginCall, op: &str, args: Value) -> Result<Value, Handled> {
    match op {
        "kv.get" => kv_get(kernel, call, parse(args)?).await,
        "kv.list" => kv_list(kernel, call, parse(args)?).await,
        "kv.write" => kv_write(kernel, call, parse(args)?).await,
        "kv.delete" => {
            let Key { key } = parse(args)?;
            let delete = KvWrite {
                key,
                value: Value::Null,
                if_version: None,
            };
            kv_write(
                kernel,
                call,
                Writes {
                    writes: vec![delete],
                },
            )
            .await
        }
        other => {
            let Some((capability, f)) = kernel.plugins.capabilities().operation(other) else {
                return Err(Handled(Failure::new(
                    404,
                    "unknown_operation",
                    format!("there is no host operation {other}"),
                )));
            };
            let requested = kernel
                .plugins
                .get(&call.plugin)
                .is_some_and(|p| p.manifest.capabilities.iter().any(|c| c == capability));
            if !requested {
                return Err(Handled(Failure::new(
                    403,
                    "capability_not_requested",
                    format!(
                        "{other} needs the capability {capability}, which the plugin's manifest does not request"
                    ),
                )));
            }
            f(kernel.clone(), call.clone(), args)
                .await
                .map_err(|err| match err {
                    Error::Forbidden { .. } => Handled(Failure::new(
                        403,
                        "capability_not_granted",
                        format!("this clinic has not granted the capability {capability}"),
                    )),
                    other => Handled(failure_of(other)),
                })
        }
    }
}

/// A host operation's failure, already in the plugin's terms.
struct Handled(Failure);

impl From<Failure> for Handled {
    fn from(f: Failure) -> Self {
        Handled(f)
    }
}

impl From<Error> for Handled {
    fn from(err: Error) -> Self {
        Handled(failure_of(err))
    }
}

impl From<diesel::result::Error> for Handled {
    fn from(err: diesel::result::Error) -> Self {
        Handled(failure_of(err.into()))
    }
}

impl From<crate::db::DbError> for Handled {
    fn from(err: crate::db::DbError) -> Self {
        Handled(failure_of(err.into()))
    }
}

/// What a plugin learns of a kernel error: the same as an API client would.
pub fn failure_of(err: Error) -> Failure {
    match err {
        Error::Validation(fields) | Error::InvalidQuery(fields) => {
            let first = fields.into_iter().next();
            match first {
                Some(f) => Failure::invalid(f.field, f.message),
                None => Failure::invalid("args", "is invalid"),
            }
        }
        Error::BadRequest { code, detail } => Failure::new(400, code, detail),
        Error::NotFound { what } => Failure::not_found(what),
        Error::Forbidden { code, detail } => Failure::new(403, code, detail),
        Error::Conflict { code, detail, .. } => Failure::conflict(code, detail),
        Error::Unavailable => Failure::new(503, "unavailable", "the database is unavailable"),
        Error::Unauthenticated { code, detail } => Failure::new(401, code, detail),
        Error::RateLimited { .. } => Failure::new(429, "rate_limited", "too many requests"),
        Error::Internal(cause) => {
            tracing::error!(error = %format_args!("{cause:#}"), "host operation failed");
            Failure::internal("the host operation failed")
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(args: Value) -> Result<T, Handled> {
    serde_json::from_value(args)
        .map_err(|e| Handled(Failure::new(400, "bad_host_request", e.to_string())))
}

fn check_key(key: &str) -> Result<(), Handled> {
    if key.is_empty() || key.chars().count() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(Handled(Failure::invalid(
            "key",
            format!("must be 1 to {MAX_KEY} characters without control characters"),
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct Writes {
    writes: Vec<KvWrite>,
}

async fn kv_get(kernel: &Kernel, call: &PluginCall, Key { key }: Key) -> Result<Value, Handled> {
    check_key(&key)?;
    let tenant = call.actor.tenant_id;
    let plugin = call.plugin.clone();
    let wanted = key.clone();
    let found: Option<(Value, i64)> = kernel
        .db
        .tenant(call.actor.scope(), |conn| {
            async move {
                kv::table
                    .filter(kv::tenant_id.eq(tenant))
                    .filter(kv::plugin.eq(&*plugin))
                    .filter(kv::key.eq(&wanted))
                    .select((kv::value, kv::version))
                    .first(conn)
                    .await
                    .optional()
                    .map_err(crate::db::DbError::from)
            }
            .scope_boxed()
        })
        .await?;
    Ok(match found {
        Some((value, version)) => json!({ "key": key, "value": value, "version": version }),
        None => Value::Null,
    })
}

fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

async fn kv_list(kernel: &Kernel, call: &PluginCall, list: List) -> Result<Value, Handled> {
    let limit = list.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let tenant = call.actor.tenant_id;
    let plugin = call.plugin.clone();
    let rows: Vec<(String, Value, i64)> = kernel
        .db
        .tenant(call.actor.scope(), |conn| {
            async move {
                let mut query = kv::table
                    .filter(kv::tenant_id.eq(tenant))
                    .filter(kv::plugin.eq(&*plugin))
                    .filter(kv::key.like(like_prefix(&list.prefix)))
                    .select((kv::key, kv::value, kv::version))
                    .order(kv::key)
                    .limit(i64::from(limit) + 1)
                    .into_boxed();
                if let Some(after) = list.after {
                    query = query.filter(kv::key.gt(after));
                }
                query.load(conn).await.map_err(crate::db::DbError::from)
            }
            .scope_boxed()
        })
        .await?;
    let more = rows.len() > limit as usize;
    let entries: Vec<KvEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(|(key, value, version)| KvEntry {
            key,
            value,
            version,
        })
        .collect();
    let next = more
        .then(|| entries.last().map(|e| e.key.clone()))
        .flatten();
    serde_json::to_value(KvPage { entries, next })
        .map_err(|e| Handled(Failure::internal(e.to_string())))
}

async fn kv_write(kernel: &Kernel, call: &PluginCall, writes: Writes) -> Result<Value, Handled> {
    let writes = writes.writes;
    if writes.is_empty() || writes.len() > MAX_WRITES {
        return Err(Handled(Failure::invalid(
            "writes",
            format!("must hold 1 to {MAX_WRITES} writes"),
        )));
    }
    for write in &writes {
        check_key(&write.key)?;
        let size = serde_json::to_vec(&write.value).map_or(0, |v| v.len());
        if size > MAX_VALUE {
            return Err(Handled(Failure::invalid(
                "value",
                format!(
                    "{} is {size} bytes; at most {MAX_VALUE} are stored",
                    write.key
                ),
            )));
        }
    }
    let tenant = call.actor.tenant_id;
    let plugin = call.plugin.clone();
    kernel
        .db
        .tenant(call.actor.scope(), |conn| {
            async move {
                for write in writes {
                    let key = kv::table
                        .filter(kv::tenant_id.eq(tenant))
                        .filter(kv::plugin.eq(&*plugin))
                        .filter(kv::key.eq(&write.key));
                    let bump = (
                        kv::version.eq(kv::version + 1),
                        kv::updated_at.eq(diesel::dsl::now),
                    );
                    let changed = match (write.value.is_null(), write.if_version) {
                        (true, None) => {
                            diesel::delete(key).execute(conn).await?;
                            1
                        }
                        (true, Some(version)) => {
                            diesel::delete(key.filter(kv::version.eq(version)))
                                .execute(conn)
                                .await?
                        }
                        (false, Some(0)) => {
                            diesel::insert_into(kv::table)
                                .values((
                                    kv::tenant_id.eq(tenant),
                                    kv::plugin.eq(&*plugin),
                                    kv::key.eq(&write.key),
                                    kv::value.eq(&write.value),
                                ))
                                .on_conflict_do_nothing()
                                .execute(conn)
                                .await?
                        }
                        (false, Some(version)) => {
                            diesel::update(key.filter(kv::version.eq(version)))
                                .set((kv::value.eq(&write.value), bump))
                                .execute(conn)
                                .await?
                        }
                        (false, None) => {
                            diesel::insert_into(kv::table)
                                .values((
                                    kv::tenant_id.eq(tenant),
                                    kv::plugin.eq(&*plugin),
                                    kv::key.eq(&write.key),
                                    kv::value.eq(&write.value),
                                ))
                                .on_conflict((kv::tenant_id, kv::plugin, kv::key))
                                .do_update()
                                .set((kv::value.eq(excluded(kv::value)), bump))
                                .execute(conn)
                                .await?
                        }
                    };
                    if changed == 0 {
                        // Leaving by the error path rolls every write of the batch back.
                        return Err(Handled(Failure::conflict(
                            "version_conflict",
                            format!("{} changed since it was read; read it again", write.key),
                        )));
                    }
                }
                Ok(Value::Null)
            }
            .scope_boxed()
        })
        .await
}

/// The kernel's own capability: publishing events to the outbox.
pub fn kernel_capabilities() -> Vec<Capability> {
    vec![Capability {
        name: "events:emit",
        description: "Publish events of its own (plugin.<name>.*) for other modules and plugins, and receive those of other plugins",
        permissions: &[perm::PLUGIN_EVENTS_EMIT],
        topics: &["plugin.*"],
        operations: vec![(
            "events.emit",
            Arc::new(|kernel: Kernel, call: PluginCall, args: Value| {
                async move { emit(&kernel, &call, args).await }.boxed()
            }),
        )],
    }]
}

async fn emit(kernel: &Kernel, call: &PluginCall, args: Value) -> Result<Value, Error> {
    #[derive(Deserialize)]
    struct Emit {
        topic: String,
        #[serde(default)]
        payload: Value,
    }
    kernel
        .require(&call.actor, &perm::PLUGIN_EVENTS_EMIT)
        .await?;
    let Emit { topic, payload } = serde_json::from_value(args)
        .map_err(|e| Error::invalid("args", format!("expected {{topic, payload}}: {e}")))?;
    let topic_ok = !topic.is_empty()
        && topic.len() <= 64
        && topic
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !topic_ok {
        return Err(Error::invalid(
            "topic",
            "must be 1 to 64 lowercase letters, digits, '_' or '.'",
        ));
    }
    let topic = format!("plugin.{}.{topic}", call.plugin);
    let tenant = call.actor.tenant_id;
    let id = kernel
        .db
        .tenant(call.actor.scope(), |conn| {
            async move { crate::events::publish(conn, tenant, &topic, &payload).await }
                .scope_boxed()
        })
        .await?;
    Ok(json!({ "id": id }))
}
