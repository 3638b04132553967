//! What a clinic may let a plugin read of its agenda: `services:read` (the active
//! services) and `appointments:read` (one appointment by id, without its notes or
//! cancellation reason, the read audited like the staff's; and the `appointment.*` and
//! `waitlist.*` events).

use std::sync::Arc;

use futures::FutureExt as _;
use harmony_core::Kernel;
use harmony_core::error::Error;
use harmony_core::plugins::{Capability, PluginCall};
use poem_openapi::types::ToJSON as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{perm, service};

pub fn capabilities() -> Vec<Capability> {
    vec![
        Capability {
            name: "services:read",
            description: "Read the clinic's active services: names, categories, durations and prices",
            permissions: &[perm::SERVICES_READ],
            topics: &[],
            operations: vec![(
                "services.list",
                Arc::new(|kernel: Kernel, call: PluginCall, _args: Value| {
                    async move { services(&kernel, &call).await }.boxed()
                }),
            )],
        },
        Capability {
            name: "appointments:read",
            description: "Read an appointment by id: times, status, services, professional and patient ids (never its notes)",
            permissions: &[perm::APPOINTMENTS_READ],
            topics: &["appointment.*", "waitlist.*"],
            operations: vec![(
                "appointments.get",
                Arc::new(|kernel: Kernel, call: PluginCall, args: Value| {
                    async move { appointment(&kernel, &call, args).await }.boxed()
                }),
            )],
        },
    ]
}

async fn services(kernel: &Kernel, call: &PluginCall) -> Result<Value, Error> {
    let services = service::list_services(kernel, &call.actor).await?;
    Ok(Value::Array(
        services
            .into_iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "name": s.name,
                    "category": s.category,
                    "duration_minutes": s.duration_minutes,
                    "price_cents": s.price_cents,
                    "currency": s.currency,
                })
            })
            .collect(),
    ))
}

async fn appointment(kernel: &Kernel, call: &PluginCall, args: Value) -> Result<Value, Error> {
    let id: Uuid = args
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::invalid("id", "must be an appointment id (a UUID)"))?;
    let found = service::get_appointment(kernel, &call.actor, id).await?;
    let mut value = found.to_json().unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("notes");
        object.remove("cancel_reason");
    }
    Ok(value)
}
