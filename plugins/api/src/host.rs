//! [`Host`]: Harmony's services, as the plugin sees them during one call.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::abi::{self, Buffer, HostTable};
use crate::types::{Failure, HostRequest, KvEntry, KvPage, KvWrite};

/// Harmony's services for the clinic the current call is about. Everything is scoped to
/// that clinic and to this plugin: another clinic's data cannot be named, let alone read.
/// Reads beyond the plugin's own store need the matching capability, granted by the clinic.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    table: &'a HostTable,
}

impl<'a> Host<'a> {
    /// Wraps the table Harmony passed to this call.
    pub fn new(table: &'a HostTable) -> Self {
        Host { table }
    }

    fn log_at(&self, level: u32, message: &str) {
        // SAFETY: the table and its context are valid for the duration of the call, and
        // the message outlives the callback.
        #[allow(unsafe_code)]
        unsafe {
            (self.table.log)(self.table.context, level, message.as_ptr(), message.len())
        }
    }

    /// Logs a line in Harmony's log. Never log personal data.
    pub fn info(&self, message: &str) {
        self.log_at(abi::level::INFO, message);
    }

    pub fn warn(&self, message: &str) {
        self.log_at(abi::level::WARN, message);
    }

    pub fn error(&self, message: &str) {
        self.log_at(abi::level::ERROR, message);
    }

    /// Calls a host operation by name with JSON arguments. The typed methods below are
    /// the documented operations; this is their common path.
    pub fn call(&self, op: &str, args: Value) -> Result<Value, Failure> {
        let request = serde_json::to_vec(&HostRequest {
            op: op.to_owned(),
            args,
        })
        .map_err(|e| Failure::internal(format!("encoding a host request: {e}")))?;
        let mut out = Buffer::EMPTY;
        // SAFETY: the table is valid during the call; `request` outlives the callback; the
        // host writes `out` and we hand it back to the host's own `free_buffer`.
        #[allow(unsafe_code)]
        let (status, bytes) = unsafe {
            let status = (self.table.call)(
                self.table.context,
                request.as_ptr(),
                request.len(),
                &mut out,
            );
            let bytes = out.as_slice().to_vec();
            (self.table.free_buffer)(out);
            (status, bytes)
        };
        if status == abi::STATUS_OK {
            serde_json::from_slice(&bytes)
                .map_err(|e| Failure::internal(format!("decoding a host answer: {e}")))
        } else {
            Err(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Failure::internal(String::from_utf8_lossy(&bytes).into_owned())
            }))
        }
    }

    fn call_as<T: DeserializeOwned>(&self, op: &str, args: Value) -> Result<T, Failure> {
        let value = self.call(op, args)?;
        serde_json::from_value(value)
            .map_err(|e| Failure::internal(format!("decoding the answer to {op}: {e}")))
    }

    /// A value of this plugin's store in this clinic.
    pub fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, Failure> {
        self.call_as("kv.get", json!({ "key": key }))
    }

    /// Decodes a stored value into `T`.
    pub fn kv_get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>, Failure> {
        match self.kv_get(key)? {
            Some(entry) => serde_json::from_value(entry.value)
                .map(|v| Some((v, entry.version)))
                .map_err(|e| Failure::internal(format!("stored {key} is unreadable: {e}"))),
            None => Ok(None),
        }
    }

    /// Stores a value unconditionally.
    pub fn kv_put(&self, key: &str, value: impl Serialize) -> Result<(), Failure> {
        let value = serde_json::to_value(value)
            .map_err(|e| Failure::internal(format!("encoding {key}: {e}")))?;
        self.kv_write(vec![KvWrite {
            key: key.to_owned(),
            value,
            if_version: None,
        }])
    }

    /// Writes several keys atomically: all of them, or none when a write's `if_version`
    /// no longer holds (a 409 with code `version_conflict`).
    pub fn kv_write(&self, writes: Vec<KvWrite>) -> Result<(), Failure> {
        self.call("kv.write", json!({ "writes": writes })).map(drop)
    }

    pub fn kv_delete(&self, key: &str) -> Result<(), Failure> {
        self.call("kv.delete", json!({ "key": key })).map(drop)
    }

    /// Keys starting with `prefix`, in key order, after `after`, at most `limit` (≤ 500).
    pub fn kv_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<KvPage, Failure> {
        self.call_as(
            "kv.list",
            json!({ "prefix": prefix, "after": after, "limit": limit }),
        )
    }

    /// Every entry under `prefix` (page by page).
    pub fn kv_scan(&self, prefix: &str) -> Result<Vec<KvEntry>, Failure> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.kv_list(prefix, after.as_deref(), 500)?;
            all.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The clinic's active services (capability `services:read`).
    pub fn services(&self) -> Result<Value, Failure> {
        self.call("services.list", Value::Null)
    }

    /// One appointment, without notes (capability `appointments:read`).
    pub fn appointment(&self, id: &str) -> Result<Value, Failure> {
        self.call("appointments.get", json!({ "id": id }))
    }

    /// A patient's full name, the first name (or nickname) messages use, and whether the
    /// record is active (capability `patients:read`); the read is audited.
    pub fn patient(&self, id: &str) -> Result<Value, Failure> {
        self.call("patients.get", json!({ "id": id }))
    }

    /// Publishes `plugin.{name}.{topic}` to the outbox (capability `events:emit`).
    pub fn emit(&self, topic: &str, payload: impl Serialize) -> Result<(), Failure> {
        let payload = serde_json::to_value(payload)
            .map_err(|e| Failure::internal(format!("encoding the event: {e}")))?;
        self.call("events.emit", json!({ "topic": topic, "payload": payload }))
            .map(drop)
    }
}
