//! What a clinic may let a plugin read of its patients: `patients:read`, a patient's name
//! by id, and the `patient.*` events. Every read is in the patient's access log, with the plugin as actor.

use std::sync::Arc;

use futures::FutureExt as _;
use harmony_core::Kernel;
use harmony_core::audit::Access;
use harmony_core::error::Error;
use harmony_core::plugins::{Capability, PluginCall};
use scoped_futures::ScopedFutureExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{perm, service};

pub fn capabilities() -> Vec<Capability> {
    vec![Capability {
        name: "patients:read",
        description: "Read a patient's name by id (full name, the first name or nickname messages use, and whether the record is active) and receive patient.* events; each read appears in the patient's access log",
        permissions: &[perm::READ_CONTACT],
        topics: &["patient.*"],
        operations: vec![(
            "patients.get",
            Arc::new(|kernel: Kernel, call: PluginCall, args: Value| {
                async move { get(&kernel, &call, args).await }.boxed()
            }),
        )],
    }]
}

async fn get(kernel: &Kernel, call: &PluginCall, args: Value) -> Result<Value, Error> {
    kernel.require(&call.actor, &perm::READ_CONTACT).await?;
    let id: Uuid = args
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::invalid("id", "must be a patient id (a UUID)"))?;
    let actor = &call.actor;
    let found = kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let found = service::find_by_id(conn, id).await?;
                if found.is_some() {
                    harmony_core::audit::record(
                        conn,
                        actor,
                        Access {
                            subject_kind: Some("patient"),
                            subject_id: Some(id),
                            resource: "patient.name",
                            action: "read",
                        },
                    )
                    .await?;
                }
                Ok::<_, Error>(found)
            }
            .scope_boxed()
        })
        .await?
        .ok_or(Error::NotFound { what: "patient" })?;
    Ok(json!({
        "id": found.id,
        "full_name": found.full_name,
        "first_name": found.first_name,
        "status": found.status,
    }))
}
