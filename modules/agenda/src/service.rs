//! The agenda's public service API: what other modules (the WhatsApp assistant, reminders,
//! finance) may ask of it. They never read the agenda's tables.
//!
//! Functions that act for someone take the acting [`Actor`] and check its permissions
//! like the HTTP API does; the assistant's role may book, confirm, cancel and reschedule,
//! and only for the patient it is talking to (`patient`), whose other appointments it
//! cannot see or touch.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::Actor;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

pub use crate::appointments::{ChangeDetail, Move};
pub use crate::availability::{Availability, AvailableSlot};
pub use crate::booking::{Appointment, Booking, Party};
pub use crate::lifecycle::{Action, Status};

use crate::appointments::{self, ListFilter};
use crate::schema::{appointments as ap, services};
use crate::{booking, perm};

/// A bookable service, as the assistant offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: Uuid,
    pub name: String,
    pub category: String,
    pub duration_minutes: i32,
    pub price_cents: i64,
    pub currency: String,
}

/// The clinic's active services, by name.
pub async fn list_services(kernel: &Kernel, actor: &Actor) -> Result<Vec<ServiceInfo>, Error> {
    kernel.require(actor, &perm::SERVICES_READ).await?;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let rows: Vec<(Uuid, String, String, i32, i64, String)> = services::table
                    .filter(services::active.eq(true))
                    .order(services::name)
                    .select((
                        services::id,
                        services::name,
                        services::category,
                        services::duration_minutes,
                        services::price_cents,
                        services::currency,
                    ))
                    .load(conn)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(id, name, category, duration_minutes, price_cents, currency)| {
                            ServiceInfo {
                                id,
                                name,
                                category,
                                duration_minutes,
                                price_cents,
                                currency,
                            }
                        },
                    )
                    .collect())
            }
            .scope_boxed()
        })
        .await
}

/// Free starts of a visit over local days, as `GET /api/v1/availability` answers.
pub async fn availability(
    kernel: &Kernel,
    actor: &Actor,
    service_ids: &[Uuid],
    days: (NaiveDate, NaiveDate),
    professional: Option<Uuid>,
) -> Result<Availability, Error> {
    kernel.require(actor, &perm::AVAILABILITY_READ).await?;
    let tenant = actor.tenant_id;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                crate::availability::find(conn, kernel, tenant, service_ids, days, professional)
                    .await
            }
            .scope_boxed()
        })
        .await
}

/// One appointment (its read audited); needs the clinic-wide read permission.
pub async fn get_appointment(
    kernel: &Kernel,
    actor: &Actor,
    id: Uuid,
) -> Result<Appointment, Error> {
    kernel.require(actor, &perm::APPOINTMENTS_READ).await?;
    appointments::get(kernel, actor, id).await
}

/// Books a visit for a patient; 409 (with the next free starts) when taken.
pub async fn book(kernel: &Kernel, actor: &Actor, request: Booking) -> Result<Appointment, Error> {
    kernel.require(actor, &perm::APPOINTMENTS_BOOK).await?;
    appointments::book(kernel, actor, request).await
}

/// Confirms `patient`'s appointment.
pub async fn confirm(
    kernel: &Kernel,
    actor: &Actor,
    patient: Uuid,
    appointment: Uuid,
) -> Result<Appointment, Error> {
    kernel.require(actor, &perm::APPOINTMENTS_CHANGE).await?;
    let detail = ChangeDetail {
        by: Some(Party::Patient),
        patient: Some(patient),
        ..ChangeDetail::default()
    };
    appointments::change(kernel, actor, appointment, Action::Confirm, detail).await
}

/// Cancels `patient`'s appointment at their request.
pub async fn cancel(
    kernel: &Kernel,
    actor: &Actor,
    patient: Uuid,
    appointment: Uuid,
    reason: Option<String>,
) -> Result<Appointment, Error> {
    kernel.require(actor, &perm::APPOINTMENTS_CHANGE).await?;
    let detail = ChangeDetail {
        reason,
        by: Some(Party::Patient),
        patient: Some(patient),
    };
    appointments::change(kernel, actor, appointment, Action::Cancel, detail).await
}

/// Moves `patient`'s appointment to `start`, at their request.
pub async fn reschedule(
    kernel: &Kernel,
    actor: &Actor,
    patient: Uuid,
    appointment: Uuid,
    start: DateTime<Utc>,
) -> Result<Appointment, Error> {
    kernel.require(actor, &perm::APPOINTMENTS_CHANGE).await?;
    let to = Move {
        start,
        professional: None,
        outside_hours: false,
        by: Party::Patient,
        patient: Some(patient),
    };
    appointments::reschedule(kernel, actor, appointment, to).await
}

/// `patient`'s scheduled and confirmed appointments from now on, soonest first (at most 20).
pub async fn upcoming_for_patient(
    kernel: &Kernel,
    actor: &Actor,
    patient: Uuid,
) -> Result<Vec<Appointment>, Error> {
    kernel
        .require(actor, &perm::APPOINTMENTS_READ_PATIENT)
        .await?;
    let tenant = actor.tenant_id;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let zone = kernel.zones.zone(conn, tenant).await?;
                let filter = ListFilter {
                    from: Some(Utc::now()),
                    patient_id: Some(patient),
                    statuses: vec![Status::Scheduled, Status::Confirmed],
                    ..ListFilter::default()
                };
                let (items, _) = appointments::list(conn, zone, &filter, 20, None).await?;
                Ok(items)
            }
            .scope_boxed()
        })
        .await
}

/// Appointments starting within `ahead` from now that are still to happen and have not
/// been reminded, soonest first (at most `limit`). For the reminder job, inside its
/// tenant transaction; mark each with [`mark_reminded`] once the reminder is on its way.
pub async fn due_for_reminder(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    ahead: Duration,
    limit: i64,
) -> Result<Vec<Appointment>, Error> {
    let now = Utc::now();
    let visits: Vec<Uuid> = ap::table
        .filter(ap::id.eq(ap::visit_id))
        .filter(ap::reminder_sent_at.is_null())
        .filter(ap::status.eq_any([Status::Scheduled.as_str(), Status::Confirmed.as_str()]))
        .filter(ap::starts_at.gt(now))
        .filter(ap::starts_at.le(now + ahead))
        .order(ap::starts_at)
        .limit(limit)
        .select(ap::visit_id)
        .load(conn)
        .await?;
    visits_by_id(conn, kernel, tenant, &visits).await
}

/// Records that an appointment's reminder was sent. A reschedule clears it.
pub async fn mark_reminded(conn: &mut Conn, appointment: Uuid) -> Result<(), Error> {
    diesel::update(ap::table.filter(ap::visit_id.eq(appointment)))
        .set(ap::reminder_sent_at.eq(Some(Utc::now())))
        .execute(conn)
        .await?;
    Ok(())
}

/// Visits starting in `[from, to)` that are still to happen (scheduled or confirmed),
/// soonest first (at most `limit`). For reminders, inside the caller's tenant transaction.
pub async fn starting_between(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Appointment>, Error> {
    let visits: Vec<Uuid> = ap::table
        .filter(ap::id.eq(ap::visit_id))
        .filter(ap::status.eq_any([Status::Scheduled.as_str(), Status::Confirmed.as_str()]))
        .filter(ap::starts_at.ge(from))
        .filter(ap::starts_at.lt(to))
        .order(ap::starts_at)
        .limit(limit)
        .select(ap::visit_id)
        .load(conn)
        .await?;
    visits_by_id(conn, kernel, tenant, &visits).await
}

/// The visits with these ids, in the caller's tenant transaction (for notices about
/// them); ids of another clinic or that do not exist are absent.
pub async fn visits_by_id(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Appointment>, Error> {
    let zone = kernel.zones.zone(conn, tenant).await?;
    let rows = booking::load_rows(conn, ids).await?;
    Ok(booking::assemble(zone, ids, rows))
}
