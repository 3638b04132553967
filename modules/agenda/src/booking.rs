//! Booking and changing appointments. An appointment is a visit: one or more services back
//! to back with one professional, stored as one row per service sharing a `visit_id`.
//!
//! Overlaps are decided by the database: the rows are inserted (or moved) inside a
//! savepoint and the exclusion constraints on the professional's and the room's time
//! ranges refuse a clash, however many requests race. Nothing here checks first and
//! inserts after.

use std::collections::Bound;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use harmony_core::Kernel;
use harmony_core::auth::Actor;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::tenancy::active_professionals;
use poem_openapi::types::ToJSON;
use poem_openapi::{Enum, Object};
use serde::Serialize;
use uuid::Uuid;

use crate::availability::{
    self, AvailableSlot, Calendar, VisitPart, free_resource, layout, professional_free,
    within_hours,
};
use crate::catalog::{self, AgendaSettings};
use crate::lifecycle::{Action, Status};
use crate::schema::{appointments, services};

/// Who booked or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Clinic,
    Patient,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Clinic => "clinic",
            Party::Patient => "patient",
        }
    }
}

/// A booking request, validated for shape.
#[derive(Debug, Clone)]
pub struct Booking {
    pub patient_id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub professional_id: Uuid,
    pub start: DateTime<Utc>,
    pub notes: Option<String>,
    pub booked_by: Party,
    /// Book outside working hours (a squeeze-in); staff only.
    pub outside_hours: bool,
}

/// What booking a visit needs to know, loaded once (also for every occurrence of a series).
#[derive(Debug)]
pub struct Plan {
    pub zone: Tz,
    pub settings: AgendaSettings,
    pub visit: Vec<VisitPart>,
    pub patient_id: Uuid,
    pub professional_id: Uuid,
}

/// Loads and checks everything a booking refers to. Ids of another clinic are 404s, like
/// ids that do not exist.
pub async fn plan(
    conn: &Conn,
    kernel: &Kernel,
    tenant: Uuid,
    patient_id: Uuid,
    service_ids: &[Uuid],
    professional_id: Uuid,
) -> Result<Plan, Error> {
    // Everything a booking refers to, asked for at once.
    let patient = harmony_patients::service::find_by_id(conn, patient_id);
    let visit = availability::visit_parts(conn, service_ids);
    let active = active_professionals(conn, std::slice::from_ref(&professional_id));
    let performers = availability::performers(conn, service_ids);
    let settings = catalog::settings(conn, tenant);
    let zone = kernel.zones.zone(conn, tenant);
    let (patient, visit, active, performers, settings, zone) =
        futures::try_join!(patient, visit, active, performers, settings, zone)?;

    let patient = patient.ok_or(Error::NotFound { what: "patient" })?;
    if patient.status != "active" {
        return Err(Error::invalid(
            "patient_id",
            "an active patient (this one is archived)",
        ));
    }
    if active.is_empty() {
        return Err(Error::NotFound {
            what: "professional",
        });
    }
    if !performers.contains(&professional_id) {
        return Err(Error::invalid(
            "professional_id",
            "a professional who performs every service of the visit",
        ));
    }
    Ok(Plan {
        zone,
        settings,
        visit,
        patient_id,
        professional_id,
    })
}

/// Why a start time cannot be booked at all (whatever else is booked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    OffGrid,
    Past,
    TooSoon,
    TooFar,
}

impl Invalid {
    pub fn code(self) -> &'static str {
        match self {
            Invalid::OffGrid => "off_grid",
            Invalid::Past => "in_the_past",
            Invalid::TooSoon => "too_soon",
            Invalid::TooFar => "too_far_ahead",
        }
    }

    fn message(self, settings: &AgendaSettings) -> String {
        match self {
            Invalid::OffGrid => format!(
                "a start on the clinic's {}-minute grid, counted from midnight in the clinic's \
                 time zone (e.g. 09:00, 09:{:02})",
                settings.granularity_minutes,
                settings.granularity_minutes % 60
            ),
            Invalid::Past => "a time in the future".to_owned(),
            Invalid::TooSoon => format!(
                "a start at least {} minutes from now",
                settings.min_notice_minutes
            ),
            Invalid::TooFar => format!("a start at most {} days ahead", settings.max_advance_days),
        }
    }

    pub fn into_error(self, field: &str, settings: &AgendaSettings) -> Error {
        Error::invalid(field, self.message(settings))
    }
}

/// Checks a start against the grid, minimum notice and maximum advance.
pub fn check_start(plan: &Plan, start: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Invalid> {
    let local = start.with_timezone(&plan.zone);
    let minutes = i64::from(local.hour() * 60 + local.minute());
    let step = i64::from(plan.settings.granularity_minutes.max(1));
    if local.second() != 0 || local.nanosecond() != 0 || minutes % step != 0 {
        return Err(Invalid::OffGrid);
    }
    if start <= now {
        return Err(Invalid::Past);
    }
    if start < now + Duration::minutes(i64::from(plan.settings.min_notice_minutes)) {
        return Err(Invalid::TooSoon);
    }
    if start > now + Duration::days(i64::from(plan.settings.max_advance_days)) {
        return Err(Invalid::TooFar);
    }
    Ok(())
}

/// Why a valid start could not be booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Outside the professional's working hours, on a closed day or during time off.
    OutsideHours,
    /// The professional is booked then (in the calendar, or refused by the database's
    /// exclusion constraint when a concurrent booking committed first).
    ProfessionalTaken,
    /// No suitable room or machine is free then.
    NoResource,
}

impl Refusal {
    /// The answer to a refused start, without the next free starts: 422 outside working
    /// hours, 409 when the time is taken.
    pub fn into_error(self) -> Error {
        match self {
            Refusal::OutsideHours => Error::invalid(
                "start",
                "a start within the professional's working hours, on a day the clinic is \
                 open and outside time off (see GET /api/v1/availability)",
            ),
            Refusal::NoResource => Error::conflict(
                self.code(),
                "no suitable room or equipment is free at that time",
            ),
            Refusal::ProfessionalTaken => Error::conflict(
                self.code(),
                "the professional is already booked at that time",
            ),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::OutsideHours => "outside_hours",
            Refusal::ProfessionalTaken => "slot_taken",
            Refusal::NoResource => "resource_unavailable",
        }
    }
}

/// Which exclusion constraint refused a row, if that is what `err` is.
///
/// Two bookings racing for overlapping times can also meet in a deadlock: each inserts
/// its row into the constraint's index, sees the other's and waits for it. PostgreSQL
/// aborts one (SQLSTATE 40P01, "deadlock detected"; diesel does not expose the code) and
/// the other goes on, so for the aborted one the time is taken.
fn overlap(err: &DieselError) -> Option<Refusal> {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::ExclusionViolation, info) => {
            match info.constraint_name() {
                Some("appointments_resource_no_overlap") => Some(Refusal::NoResource),
                _ => Some(Refusal::ProfessionalTaken),
            }
        }
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
            if info.message().starts_with("deadlock detected") =>
        {
            Some(Refusal::ProfessionalTaken)
        }
        _ => None,
    }
}

/// Runs `statements` inside a savepoint; an overlap refused by the database rolls back to
/// it and comes back as `Err(refusal)`, leaving the transaction usable. Without a
/// savepoint (`savepoint == false`, two round trips fewer) a refusal leaves the
/// transaction aborted: the caller must end it without another statement.
async fn guarded<T, F>(
    conn: &mut Conn,
    savepoint: bool,
    statements: F,
) -> Result<Result<T, Refusal>, Error>
where
    F: for<'c> FnOnce(&'c mut Conn) -> futures::future::BoxFuture<'c, Result<T, DieselError>>,
{
    if savepoint {
        conn.batch_execute("SAVEPOINT booking").await?;
    }
    match statements(conn).await {
        Ok(value) => {
            if savepoint {
                conn.batch_execute("RELEASE SAVEPOINT booking").await?;
            }
            Ok(Ok(value))
        }
        Err(err) => match overlap(&err) {
            Some(refusal) => {
                if savepoint {
                    conn.batch_execute("ROLLBACK TO SAVEPOINT booking").await?;
                }
                Ok(Err(refusal))
            }
            None => Err(err.into()),
        },
    }
}

#[derive(Insertable)]
#[diesel(table_name = appointments)]
struct NewRow {
    tenant_id: Uuid,
    id: Uuid,
    visit_id: Uuid,
    series_id: Option<Uuid>,
    patient_id: Uuid,
    professional_id: Uuid,
    service_id: Uuid,
    resource_id: Option<Uuid>,
    during: (Bound<DateTime<Utc>>, Bound<DateTime<Utc>>),
    blocks: (Bound<DateTime<Utc>>, Bound<DateTime<Utc>>),
    price_cents: i64,
    currency: String,
    notes: Option<String>,
    created_by: Option<Uuid>,
    booked_by: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl NewRow {
    /// The row as stored, with its service's name.
    fn stored(&self, name: &str) -> (Row, String) {
        let row = Row {
            id: self.id,
            visit_id: self.visit_id,
            series_id: self.series_id,
            patient_id: self.patient_id,
            professional_id: self.professional_id,
            service_id: self.service_id,
            resource_id: self.resource_id,
            during: self.during,
            blocks: self.blocks,
            status: Status::Scheduled.as_str().to_owned(),
            price_cents: self.price_cents,
            currency: self.currency.clone(),
            notes: self.notes.clone(),
            cancel_reason: None,
            cancelled_by: None,
            booked_by: self.booked_by.to_owned(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            confirmed_at: None,
            checked_in_at: None,
            completed_at: None,
            cancelled_at: None,
        };
        (row, name.to_owned())
    }
}

fn range(from: DateTime<Utc>, to: DateTime<Utc>) -> (Bound<DateTime<Utc>>, Bound<DateTime<Utc>>) {
    (Bound::Included(from), Bound::Excluded(to))
}

/// The local day a start falls on.
fn local_day(zone: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// Loads the professional's calendar around `start`, ignoring `visit` (when moving it).
async fn calendar_at(
    conn: &Conn,
    plan: &Plan,
    start: DateTime<Utc>,
    ignoring: Option<Uuid>,
) -> Result<Calendar, Error> {
    let day = local_day(plan.zone, start);
    availability::load_calendar(
        conn,
        plan.zone,
        &plan.settings,
        plan.professional_id,
        &plan.visit,
        (day, day),
        ignoring,
    )
    .await
}

/// The rooms each service would use at `start`, or why the visit cannot happen then. A
/// time the calendar shows taken is refused here, without an insert the database would
/// refuse (and a dead row it would leave); a booking that commits after the calendar was
/// read is still caught by the exclusion constraint. Outside working hours (staff placing
/// a visit over time off, say), only the constraint judges.
fn fit(
    cal: &Calendar,
    plan: &Plan,
    start: DateTime<Utc>,
    outside_hours: bool,
) -> Result<Vec<Option<Uuid>>, Refusal> {
    let times = layout(&plan.visit, start);
    let end = times.last().map_or(start, |t| t.1);
    if !outside_hours {
        if !within_hours(cal, start, end) {
            return Err(Refusal::OutsideHours);
        }
        // Time off was ruled out above, so what is busy now is an appointment.
        if !times
            .iter()
            .all(|(from, _, until)| professional_free(cal, *from, *until))
        {
            return Err(Refusal::ProfessionalTaken);
        }
    }
    plan.visit
        .iter()
        .zip(&times)
        .map(|(part, (from, _, until))| {
            free_resource(cal, part, *from, *until).ok_or(Refusal::NoResource)
        })
        .collect()
}

/// Where a new visit goes.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub start: DateTime<Utc>,
    pub series_id: Option<Uuid>,
    pub booked_by: Party,
    pub outside_hours: bool,
    /// Insert inside a savepoint, so that a refusal leaves the transaction usable (for a
    /// series, which goes on with the next occurrence).
    pub savepoint: bool,
}

/// Inserts a visit at `at.start` and returns its rows as stored. A room taken by a
/// concurrent booking is retried with another suitable room; a taken professional is
/// final.
pub async fn insert_visit(
    conn: &mut Conn,
    actor: &Actor,
    plan: &Plan,
    at: Placement,
    notes: Option<&str>,
) -> Result<Result<Vec<(Row, String)>, Refusal>, Error> {
    let visit_id = Uuid::now_v7();
    let mut attempt = 0;
    loop {
        let rows = match visit_rows(conn, actor, plan, visit_id, &at, notes).await? {
            Ok(rows) => rows,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let inserted = guarded(conn, at.savepoint, |c| {
            Box::pin(async move {
                diesel::insert_into(appointments::table)
                    .values(&rows.0)
                    .execute(c)
                    .await
                    .map(|_| rows)
            })
        })
        .await?;
        match inserted {
            Ok(rows) => return Ok(Ok(rows.stored(plan))),
            Err(Refusal::NoResource) if at.savepoint && attempt < 2 => attempt += 1,
            Err(refusal) => return Ok(Err(refusal)),
        }
    }
}

/// The rows of a visit at `at.start` (rooms chosen from the calendar), not yet inserted,
/// or why the calendar already refuses it.
async fn visit_rows(
    conn: &Conn,
    actor: &Actor,
    plan: &Plan,
    visit_id: Uuid,
    at: &Placement,
    notes: Option<&str>,
) -> Result<Result<VisitRows, Refusal>, Error> {
    let cal = calendar_at(conn, plan, at.start, None).await?;
    let rooms = match fit(&cal, plan, at.start, at.outside_hours) {
        Ok(rooms) => rooms,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let now = Utc::now();
    let parts = plan.visit.iter().zip(layout(&plan.visit, at.start));
    let rows = parts
        .zip(rooms)
        .enumerate()
        .map(|(i, ((part, (from, to, until)), room))| NewRow {
            tenant_id: actor.tenant_id,
            // The first service's row carries the visit's id: lists page over those.
            id: if i == 0 { visit_id } else { Uuid::now_v7() },
            visit_id,
            series_id: at.series_id,
            patient_id: plan.patient_id,
            professional_id: plan.professional_id,
            service_id: part.service_id,
            resource_id: room,
            during: range(from, to),
            blocks: range(from, until),
            price_cents: part.price_cents,
            currency: part.currency.clone(),
            notes: notes.map(str::to_owned),
            created_by: Some(actor.user_id),
            booked_by: at.booked_by.as_str(),
            created_at: now,
            updated_at: now,
        })
        .collect();
    Ok(Ok(VisitRows(rows)))
}

/// A visit's rows before they are inserted.
struct VisitRows(Vec<NewRow>);

impl VisitRows {
    /// The rows as they will be stored, with their services' names.
    pub fn stored(&self, plan: &Plan) -> Vec<(Row, String)> {
        self.0
            .iter()
            .zip(&plan.visit)
            .map(|(row, part)| row.stored(&part.name))
            .collect()
    }
}

/// Books one visit at `at.start` in the caller's transaction, which a refusal leaves
/// aborted. The rows are known before they are sent, so `then` (the statements that
/// follow a booking: its event, say) goes to PostgreSQL in the same flight as the insert;
/// should the insert be refused, theirs fail behind it and the refusal is what returns.
pub async fn book_once<'c, F, Fut>(
    conn: &'c Conn,
    actor: &Actor,
    plan: &Plan,
    at: Placement,
    notes: Option<&str>,
    then: F,
) -> Result<Appointment, Error>
where
    F: FnOnce(&'c Conn, &Appointment) -> Fut,
    Fut: Future<Output = Result<(), Error>> + 'c,
{
    let visit_id = Uuid::now_v7();
    let rows = visit_rows(conn, actor, plan, visit_id, &at, notes)
        .await?
        .map_err(Refusal::into_error)?;
    let appointment = assemble(plan.zone, &[visit_id], rows.stored(plan))
        .pop()
        .ok_or(Error::NotFound {
            what: "appointment",
        })?;
    let insert = async {
        let mut c = conn;
        match diesel::insert_into(appointments::table)
            .values(&rows.0)
            .execute(&mut c)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => Err(overlap(&err).map_or_else(|| err.into(), Refusal::into_error)),
        }
    };
    // Both run to their end (after a refusal the others fail at once, the transaction
    // being aborted); the insert's outcome decides, whichever finished first.
    let (inserted, followed) = futures::join!(insert, then(conn, &appointment));
    inserted.and(followed)?;
    Ok(appointment)
}

/// Up to `count` free starts of the plan's visit with its professional, from `after` on,
/// within two weeks: what a refused caller can pick instead.
pub async fn next_slots(
    conn: &Conn,
    plan: &Plan,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<AvailableSlot>, Error> {
    let first = local_day(plan.zone, after);
    let last = first + Duration::days(13);
    let cal = availability::load_calendar(
        conn,
        plan.zone,
        &plan.settings,
        plan.professional_id,
        &plan.visit,
        (first, last),
        None,
    )
    .await?;
    let local = |t: DateTime<Utc>| t.with_timezone(&plan.zone).fixed_offset();
    let mut found = Vec::with_capacity(count);
    let mut day = first;
    // Day by day, stopping as soon as there are enough.
    while day <= last && found.len() < count {
        found.extend(
            availability::free_slots(&cal, &plan.visit, day, day)
                .into_iter()
                .filter(|s| s.start >= after)
                .take(count - found.len())
                .map(|s| AvailableSlot {
                    start: local(s.start),
                    end: local(s.end),
                    professional_id: plan.professional_id,
                    resource_ids: s.resources,
                }),
        );
        day += Duration::days(1);
    }
    Ok(found)
}

/// The answer to a refused start: 422 outside working hours, 409 with the next free starts
/// when the time is taken. For callers whose transaction is still usable.
pub async fn refusal_error(
    conn: &mut Conn,
    plan: &Plan,
    start: DateTime<Utc>,
    refusal: Refusal,
) -> Result<Error, Error> {
    with_next_slots(conn, plan, start, refusal.into_error()).await
}

/// Adds the next free starts after `start` to a 409; other errors pass through.
pub async fn with_next_slots(
    conn: &Conn,
    plan: &Plan,
    start: DateTime<Utc>,
    error: Error,
) -> Result<Error, Error> {
    let Error::Conflict { code, detail, .. } = error else {
        return Ok(error);
    };
    let slots = next_slots(conn, plan, start, 5).await?;
    Ok(Error::Conflict {
        code,
        detail,
        extra: Some(serde_json::json!({ "next_slots": slots.to_json() })),
    })
}

/// One stored appointment row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = appointments)]
pub struct Row {
    pub id: Uuid,
    pub visit_id: Uuid,
    pub series_id: Option<Uuid>,
    pub patient_id: Uuid,
    pub professional_id: Uuid,
    pub service_id: Uuid,
    pub resource_id: Option<Uuid>,
    pub during: (Bound<DateTime<Utc>>, Bound<DateTime<Utc>>),
    pub blocks: (Bound<DateTime<Utc>>, Bound<DateTime<Utc>>),
    pub status: String,
    pub price_cents: i64,
    pub currency: String,
    pub notes: Option<String>,
    pub cancel_reason: Option<String>,
    pub cancelled_by: Option<String>,
    pub booked_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub checked_in_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// The instants of a stored `[from, to)` range.
pub fn bounds(
    range: &(Bound<DateTime<Utc>>, Bound<DateTime<Utc>>),
) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |b: &Bound<DateTime<Utc>>| match b {
        Bound::Included(t) | Bound::Excluded(t) => Some(*t),
        Bound::Unbounded => None,
    };
    // The schema forbids unbounded ranges (`appointments_bounded`).
    let from = at(&range.0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let to = at(&range.1).unwrap_or(from);
    (from, to)
}

impl Row {
    pub fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        bounds(&self.during)
    }

    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Scheduled)
    }
}

/// One service of an appointment.
#[derive(Debug, Clone, Object, Serialize)]
pub struct AppointmentService {
    pub service_id: Uuid,
    pub name: String,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    /// The room or equipment it uses, if it needs one.
    #[oai(nullable)]
    pub resource_id: Option<Uuid>,
    pub price_cents: i64,
}

/// An appointment: one visit of a patient to a professional, of one or more services back
/// to back.
#[derive(Debug, Clone, Object)]
pub struct Appointment {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub professional_id: Uuid,
    /// `scheduled`, `confirmed`, `checked_in`, `completed`, `cancelled` or `no_show`.
    pub status: String,
    /// In the clinic's time zone, with its offset.
    pub start: DateTime<FixedOffset>,
    /// When the last service ends (cleanup time not included).
    pub end: DateTime<FixedOffset>,
    /// The clinic's IANA time zone.
    pub time_zone: String,
    pub services: Vec<AppointmentService>,
    /// The sum of the services' prices.
    pub price_cents: i64,
    pub currency: String,
    /// Front-desk notes (clinical notes belong in the patient's record).
    #[oai(nullable)]
    pub notes: Option<String>,
    /// The recurring series it belongs to, if any.
    #[oai(nullable)]
    pub series_id: Option<Uuid>,
    /// `clinic` or `patient`.
    pub booked_by: String,
    #[oai(nullable)]
    pub cancel_reason: Option<String>,
    /// `clinic` or `patient`.
    #[oai(nullable)]
    pub cancelled_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(nullable)]
    pub confirmed_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub checked_in_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub completed_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Loads the rows of `visits`, in start order, with their service names.
pub async fn load_rows(conn: &mut Conn, visits: &[Uuid]) -> Result<Vec<(Row, String)>, Error> {
    Ok(appointments::table
        .inner_join(
            services::table.on(services::tenant_id
                .eq(appointments::tenant_id)
                .and(services::id.eq(appointments::service_id))),
        )
        .filter(appointments::visit_id.eq_any(visits))
        .order((appointments::starts_at, appointments::id))
        .select((Row::as_select(), services::name))
        .load(conn)
        .await?)
}

/// Groups rows (in start order) into appointments, in the order of `visits`.
pub fn assemble(zone: Tz, visits: &[Uuid], rows: Vec<(Row, String)>) -> Vec<Appointment> {
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).fixed_offset();
    visits
        .iter()
        .filter_map(|visit| {
            let parts: Vec<&(Row, String)> =
                rows.iter().filter(|(r, _)| r.visit_id == *visit).collect();
            let (first, _) = parts.as_slice().first()?;
            let (last, _) = parts.last()?;
            Some(Appointment {
                id: *visit,
                patient_id: first.patient_id,
                professional_id: first.professional_id,
                status: first.status.clone(),
                start: local(first.times().0),
                end: local(last.times().1),
                time_zone: zone.name().to_owned(),
                services: parts
                    .iter()
                    .map(|(r, name)| AppointmentService {
                        service_id: r.service_id,
                        name: name.clone(),
                        start: local(r.times().0),
                        end: local(r.times().1),
                        resource_id: r.resource_id,
                        price_cents: r.price_cents,
                    })
                    .collect(),
                price_cents: parts.iter().map(|(r, _)| r.price_cents).sum(),
                currency: first.currency.clone(),
                notes: first.notes.clone(),
                series_id: first.series_id,
                booked_by: first.booked_by.clone(),
                cancel_reason: first.cancel_reason.clone(),
                cancelled_by: first.cancelled_by.clone(),
                created_at: first.created_at,
                updated_at: parts
                    .iter()
                    .map(|(r, _)| r.updated_at)
                    .max()
                    .unwrap_or(first.updated_at),
                confirmed_at: first.confirmed_at,
                checked_in_at: first.checked_in_at,
                completed_at: first.completed_at,
                cancelled_at: first.cancelled_at,
            })
        })
        .collect()
}

/// Loads one appointment; 404 when it is not this clinic's.
pub async fn load_one(conn: &mut Conn, zone: Tz, visit: Uuid) -> Result<Appointment, Error> {
    let rows = load_rows(conn, &[visit]).await?;
    assemble(zone, &[visit], rows).pop().ok_or(Error::NotFound {
        what: "appointment",
    })
}

/// What the outbox says about an appointment; ids and times only, no health data.
#[derive(Debug, Serialize)]
pub struct AppointmentEvent<'a> {
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    pub professional_id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub status: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<Party>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_id: Option<Uuid>,
}

impl<'a> AppointmentEvent<'a> {
    pub fn of(appointment: &'a Appointment) -> Self {
        AppointmentEvent {
            appointment_id: appointment.id,
            patient_id: appointment.patient_id,
            professional_id: appointment.professional_id,
            service_ids: appointment.services.iter().map(|s| s.service_id).collect(),
            status: &appointment.status,
            start: appointment.start.with_timezone(&Utc),
            end: appointment.end.with_timezone(&Utc),
            previous_start: None,
            by: None,
            reason: None,
            series_id: appointment.series_id,
        }
    }
}

/// Locks a visit's rows for a change; 404 when it is not this clinic's.
pub async fn lock(conn: &mut Conn, visit: Uuid) -> Result<Vec<Row>, Error> {
    let rows: Vec<Row> = appointments::table
        .filter(appointments::visit_id.eq(visit))
        .order((appointments::starts_at, appointments::id))
        .select(Row::as_select())
        .for_update()
        .load(conn)
        .await?;
    if rows.is_empty() {
        return Err(Error::NotFound {
            what: "appointment",
        });
    }
    Ok(rows)
}

/// The status after `action`, or the 409 that names the current one.
pub fn transition(rows: &[Row], action: Action) -> Result<Status, Error> {
    let current = rows.iter().next().map_or(Status::Scheduled, Row::status);
    action.next(current).ok_or_else(|| Error::Conflict {
        code: "invalid_transition",
        detail: format!(
            "cannot {} an appointment that is {}",
            action.verb(),
            current.as_str()
        )
        .into(),
        extra: Some(serde_json::json!({ "current_status": current.as_str() })),
    })
}

/// Moves a locked visit to `plan`'s professional at `start`: the same services back to
/// back, rooms chosen again. The rows are moved in the order that never makes one of
/// them overlap another of the same visit.
pub async fn move_visit(
    conn: &mut Conn,
    plan: &Plan,
    rows: &[Row],
    start: DateTime<Utc>,
    outside_hours: bool,
) -> Result<Result<(), Refusal>, Error> {
    let visit = rows.first().map(|r| r.visit_id);
    let mut attempt = 0;
    loop {
        let cal = calendar_at(conn, plan, start, visit).await?;
        let rooms = match fit(&cal, plan, start, outside_hours) {
            Ok(rooms) => rooms,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut moves: Vec<(Uuid, _, _, Option<Uuid>)> = rows
            .iter()
            .zip(layout(&plan.visit, start))
            .zip(rooms)
            .map(|((row, (from, to, until)), room)| {
                (row.id, range(from, to), range(from, until), room)
            })
            .collect();
        let earlier = rows.first().is_some_and(|r| start < r.times().0);
        if !earlier {
            moves.reverse();
        }
        let professional = plan.professional_id;
        let moved = guarded(conn, true, |c| {
            Box::pin(async move {
                let now = Utc::now();
                for (id, during, blocks, room) in moves {
                    diesel::update(appointments::table.filter(appointments::id.eq(id)))
                        .set((
                            appointments::during.eq(during),
                            appointments::blocks.eq(blocks),
                            appointments::professional_id.eq(professional),
                            appointments::resource_id.eq(room),
                            appointments::status.eq(Status::Scheduled.as_str()),
                            appointments::confirmed_at.eq(None::<DateTime<Utc>>),
                            appointments::reminder_sent_at.eq(None::<DateTime<Utc>>),
                            appointments::updated_at.eq(now),
                        ))
                        .execute(c)
                        .await?;
                }
                Ok(())
            })
        })
        .await?;
        match moved {
            Ok(()) => return Ok(Ok(())),
            Err(Refusal::NoResource) if attempt < 2 => attempt += 1,
            Err(refusal) => return Ok(Err(refusal)),
        }
    }
}
