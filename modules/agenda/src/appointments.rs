//! `/api/v1/appointments` and `/api/v1/appointment-series`: booking, listing and every
//! change of an appointment's life. The functions behind the endpoints are also what the
//! service API offers other modules (the WhatsApp assistant books through them).

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::audit::Access;
use harmony_core::auth::{Actor, BearerAuth};
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::events;
use harmony_core::http::ApiResult;
use harmony_core::http::pagination::{decode_cursor, page_size, paginate};
use harmony_core::rbac::Permission;
use harmony_core::validate;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use serde::Serialize;
use uuid::Uuid;

use crate::booking::{self, Appointment, AppointmentEvent, Booking, Party, Placement, check_start};
use crate::lifecycle::{Action, Status};
use crate::schema::{appointment_series, appointments};
use crate::{AgendaTags, perm, waitlist};
use harmony_core::http::JsonBody;

/// The most services one visit may hold.
pub const MAX_SERVICES: usize = 5;
/// The most occurrences one series may create.
pub const MAX_OCCURRENCES: usize = 52;

/// Parses an RFC 3339 instant (with its offset); 422 naming `field` otherwise.
pub fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Error::invalid(
                field,
                "a date and time with its offset (RFC 3339), e.g. 2026-12-10T14:30:00-03:00",
            )
        })
}

/// Parses a calendar day; 422 naming `field` otherwise.
pub fn parse_day(field: &str, text: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, "a date as YYYY-MM-DD, e.g. 2026-12-10"))
}

/// The instant a local day starts in `zone` (its first existing minute).
pub fn day_start(zone: Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut at = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Where midnight is skipped by a daylight-saving change, the day starts at 01:00.
    for _ in 0..4 {
        if let Some(t) = zone.from_local_datetime(&at).earliest() {
            return t.with_timezone(&Utc);
        }
        at += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&at)
}

/// A new appointment.
#[derive(Debug, Object)]
pub struct NewAppointment {
    pub patient_id: Uuid,
    /// 1 to 5 services, booked back to back in this order.
    pub service_ids: Vec<Uuid>,
    pub professional_id: Uuid,
    /// When the first service starts: RFC 3339 with offset, on the clinic's grid.
    pub start: String,
    /// Front-desk notes, up to 2,000 characters.
    #[oai(nullable)]
    pub notes: Option<String>,
    /// Who asked for it (default `clinic`).
    #[oai(nullable)]
    pub booked_by: Option<Party>,
    /// Book outside working hours (a squeeze-in); front-desk roles only. Overlaps are
    /// refused all the same.
    #[oai(default)]
    pub outside_hours: bool,
}

fn service_ids(ids: &[Uuid]) -> Result<Vec<Uuid>, Error> {
    if ids.is_empty() || ids.len() > MAX_SERVICES {
        return Err(Error::invalid(
            "service_ids",
            "1 to 5 service ids, in visit order",
        ));
    }
    Ok(ids.to_vec())
}

fn notes(text: Option<&str>) -> Result<Option<String>, Error> {
    text.map(|t| validate::text(t, 2000, true).map_err(|m| Error::invalid("notes", m)))
        .transpose()
        .map(|n| n.filter(|t: &String| !t.is_empty()))
}

impl NewAppointment {
    pub fn validate(&self) -> Result<Booking, Error> {
        Ok(Booking {
            patient_id: self.patient_id,
            service_ids: service_ids(&self.service_ids)?,
            professional_id: self.professional_id,
            start: parse_instant("start", &self.start)?,
            notes: notes(self.notes.as_deref())?,
            booked_by: self.booked_by.unwrap_or(Party::Clinic),
            outside_hours: self.outside_hours,
        })
    }
}

/// Why a booking's transaction ended without a booking. A taken time keeps the plan, so
/// that the next free starts are read without loading it again.
enum NotBooked {
    Failed(Error),
    Taken(Box<booking::Plan>, Error),
}

impl From<Error> for NotBooked {
    fn from(err: Error) -> Self {
        NotBooked::Failed(err)
    }
}

impl From<harmony_core::db::DbError> for NotBooked {
    fn from(err: harmony_core::db::DbError) -> Self {
        NotBooked::Failed(err.into())
    }
}

/// Books a visit for `actor`, who must hold `appointments:book`.
///
/// Five round trips: BEGIN with the tenant; everything the booking refers to; the
/// calendar around the start; the rows with their event and the waitlist update; COMMIT.
/// A taken time is a 409 carrying the next free starts, read after the rollback.
pub async fn book(kernel: &Kernel, actor: &Actor, request: Booking) -> Result<Appointment, Error> {
    if request.outside_hours {
        kernel.require(actor, &perm::APPOINTMENTS_OVERRIDE).await?;
    }
    let tenant = actor.tenant_id;
    let request = &request;
    let booked = kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let plan = booking::plan(
                    conn,
                    kernel,
                    tenant,
                    request.patient_id,
                    &request.service_ids,
                    request.professional_id,
                )
                .await?;
                check_start(&plan, request.start, Utc::now())
                    .map_err(|e| e.into_error("start", &plan.settings))?;
                let at = Placement {
                    start: request.start,
                    series_id: None,
                    booked_by: request.booked_by,
                    outside_hours: request.outside_hours,
                    savepoint: false,
                };
                let notes = request.notes.as_deref();
                let booked = booking::book_once(conn, actor, &plan, at, notes, |shared, made| {
                    let mut event = AppointmentEvent::of(made);
                    event.by = Some(request.booked_by);
                    let event = serde_json::to_value(&event).map_err(Error::internal);
                    async move {
                        let event = event?;
                        futures::try_join!(
                            events::publish(shared, tenant, "appointment.booked", &event),
                            waitlist::booked(shared, request.patient_id, &request.service_ids)
                        )?;
                        Ok(())
                    }
                })
                .await;
                // A refusal has aborted the transaction: it leaves by the error path,
                // which rolls back.
                booked.map_err(|err| match err {
                    Error::Conflict { code, .. }
                        if code == booking::Refusal::ProfessionalTaken.code()
                            || code == booking::Refusal::NoResource.code() =>
                    {
                        NotBooked::Taken(Box::new(plan), err)
                    }
                    other => NotBooked::Failed(other),
                })
            }
            .scope_boxed()
        })
        .await;
    match booked {
        Ok(appointment) => Ok(appointment),
        Err(NotBooked::Failed(err)) => Err(err),
        Err(NotBooked::Taken(plan, taken)) => {
            // What the caller can pick instead, read afterwards (reads only: no
            // transaction around them).
            let start = request.start;
            let answer = kernel
                .db
                .tenant_read(actor.scope(), |conn| {
                    async move { booking::with_next_slots(conn, &plan, start, taken).await }
                        .scope_boxed()
                })
                .await?;
            Err(answer)
        }
    }
}

/// Why and by whom an appointment is cancelled.
#[derive(Debug, Clone, Object)]
pub struct Cancellation {
    /// Up to 500 characters.
    #[oai(nullable)]
    pub reason: Option<String>,
    /// Who cancelled (default `clinic`).
    #[oai(nullable)]
    pub cancelled_by: Option<Party>,
}

impl Cancellation {
    /// The reason, checked: up to 500 characters of text.
    fn reason(&self) -> Result<Option<String>, Error> {
        self.reason
            .as_deref()
            .map(|r| validate::text(r, 500, true).map_err(|m| Error::invalid("reason", m)))
            .transpose()
    }
}

/// A change of time (and optionally of professional).
#[derive(Debug, Clone, Object)]
pub struct Reschedule {
    /// The new start: RFC 3339 with offset, on the clinic's grid.
    pub start: String,
    /// Another professional who performs every service of the visit.
    #[oai(nullable)]
    pub professional_id: Option<Uuid>,
    /// As when booking: front-desk roles only.
    #[oai(default)]
    pub outside_hours: bool,
    /// Who asked for it (default `clinic`).
    #[oai(nullable)]
    pub requested_by: Option<Party>,
}

/// What a change carries besides its action.
#[derive(Debug, Clone, Default)]
pub struct ChangeDetail {
    pub reason: Option<String>,
    pub by: Option<Party>,
    /// Acting for this patient only: another patient's appointment is a 404.
    pub patient: Option<Uuid>,
}

/// Where a visit moves to.
#[derive(Debug, Clone, Copy)]
pub struct Move {
    pub start: DateTime<Utc>,
    /// Another professional who performs every service; the same one when absent.
    pub professional: Option<Uuid>,
    pub outside_hours: bool,
    pub by: Party,
    /// Acting for this patient only: another patient's appointment is a 404.
    pub patient: Option<Uuid>,
}

/// 404 unless the visit is `patient`'s (when acting for one).
fn for_patient(rows: &[booking::Row], patient: Option<Uuid>) -> Result<(), Error> {
    match (rows.iter().next(), patient) {
        (Some(row), Some(p)) if row.patient_id != p => Err(Error::NotFound {
            what: "appointment",
        }),
        _ => Ok(()),
    }
}

/// Confirms, checks in, completes, marks as no-show or cancels a visit.
pub async fn change(
    kernel: &Kernel,
    actor: &Actor,
    visit: Uuid,
    action: Action,
    detail: ChangeDetail,
) -> Result<Appointment, Error> {
    let tenant = actor.tenant_id;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let zone = kernel.zones.zone(conn, tenant).await?;
                let rows = booking::lock(conn, visit).await?;
                for_patient(&rows, detail.patient)?;
                let next = booking::transition(&rows, action)?;
                let (start, _) = rows[0].times();
                let now = Utc::now();
                if matches!(action, Action::NoShow | Action::Complete) && now < start {
                    return Err(Error::Conflict {
                        code: "not_started",
                        detail: format!("cannot {} an appointment before it starts", action.verb())
                            .into(),
                        extra: Some(serde_json::json!({ "current_status": rows[0].status })),
                    });
                }
                let stamp = Some(now);
                let target = appointments::table.filter(appointments::visit_id.eq(visit));
                let status = appointments::status.eq(next.as_str());
                let updated = appointments::updated_at.eq(now);
                match action {
                    Action::Confirm => {
                        diesel::update(target)
                            .set((status, updated, appointments::confirmed_at.eq(stamp)))
                            .execute(conn)
                            .await?
                    }
                    Action::CheckIn => {
                        diesel::update(target)
                            .set((status, updated, appointments::checked_in_at.eq(stamp)))
                            .execute(conn)
                            .await?
                    }
                    Action::Complete => {
                        diesel::update(target)
                            .set((status, updated, appointments::completed_at.eq(stamp)))
                            .execute(conn)
                            .await?
                    }
                    Action::NoShow | Action::Reschedule => {
                        diesel::update(target)
                            .set((status, updated))
                            .execute(conn)
                            .await?
                    }
                    Action::Cancel => {
                        diesel::update(target)
                            .set((
                                status,
                                updated,
                                appointments::cancelled_at.eq(stamp),
                                appointments::cancel_reason.eq(detail.reason.as_deref()),
                                appointments::cancelled_by
                                    .eq(detail.by.unwrap_or(Party::Clinic).as_str()),
                            ))
                            .execute(conn)
                            .await?
                    }
                };
                let appointment = booking::load_one(conn, zone, visit).await?;
                let mut event = AppointmentEvent::of(&appointment);
                event.by = detail.by;
                event.reason = detail.reason.as_deref();
                events::publish(conn, tenant, action.topic(), &event).await?;
                if action == Action::Cancel {
                    let freed: Vec<_> = rows.iter().map(|r| booking::bounds(&r.blocks)).collect();
                    waitlist::offer(conn, kernel, tenant, rows[0].professional_id, &freed).await?;
                }
                Ok(appointment)
            }
            .scope_boxed()
        })
        .await
}

/// Moves a visit to another time (and perhaps professional).
pub async fn reschedule(
    kernel: &Kernel,
    actor: &Actor,
    visit: Uuid,
    to: Move,
) -> Result<Appointment, Error> {
    let Move {
        start,
        professional,
        outside_hours,
        by,
        patient,
    } = to;
    if outside_hours {
        kernel.require(actor, &perm::APPOINTMENTS_OVERRIDE).await?;
    }
    let tenant = actor.tenant_id;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let rows = booking::lock(conn, visit).await?;
                for_patient(&rows, patient)?;
                booking::transition(&rows, Action::Reschedule)?;
                let services: Vec<Uuid> = rows.iter().map(|r| r.service_id).collect();
                let first = &rows[0];
                let plan = booking::plan(
                    conn,
                    kernel,
                    tenant,
                    first.patient_id,
                    &services,
                    professional.unwrap_or(first.professional_id),
                )
                .await?;
                check_start(&plan, start, Utc::now())
                    .map_err(|e| e.into_error("start", &plan.settings))?;
                if let Err(refusal) =
                    booking::move_visit(conn, &plan, &rows, start, outside_hours).await?
                {
                    return Err(booking::refusal_error(conn, &plan, start, refusal).await?);
                }
                let appointment = booking::load_one(conn, plan.zone, visit).await?;
                let mut event = AppointmentEvent::of(&appointment);
                event.previous_start = Some(first.times().0);
                event.by = Some(by);
                events::publish(conn, tenant, Action::Reschedule.topic(), &event).await?;
                let freed: Vec<_> = rows.iter().map(|r| booking::bounds(&r.blocks)).collect();
                waitlist::offer(conn, kernel, tenant, first.professional_id, &freed).await?;
                Ok(appointment)
            }
            .scope_boxed()
        })
        .await
}

/// How a series treats an occurrence that cannot be booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OnConflict {
    /// Book nothing and answer 409 listing every occurrence that cannot be booked.
    Fail,
    /// Book what can be booked and list the rest.
    Skip,
}

/// A recurring appointment: the same visit every N weeks.
#[derive(Debug, Object)]
pub struct NewSeries {
    #[oai(flatten)]
    pub appointment: NewAppointment,
    /// 1 to 52.
    pub every_weeks: i32,
    /// How many occurrences (2 to 52, the first included); or give `until`.
    #[oai(nullable)]
    pub count: Option<i32>,
    /// The last day an occurrence may fall on (at most 52 occurrences); or give `count`.
    #[oai(nullable)]
    pub until: Option<String>,
    pub on_conflict: OnConflict,
}

/// An occurrence that was not booked.
#[derive(Debug, Clone, Object, Serialize)]
pub struct SkippedOccurrence {
    pub start: DateTime<FixedOffset>,
    /// `slot_taken`, `resource_unavailable`, `outside_hours`, `too_far_ahead`,
    /// `too_soon` or `nonexistent_local_time` (skipped by a daylight-saving change).
    pub reason: String,
}

/// A series and what it booked.
#[derive(Debug, Object)]
pub struct SeriesBooked {
    pub series_id: Uuid,
    pub appointments: Vec<Appointment>,
    pub skipped: Vec<SkippedOccurrence>,
}

/// The local starts of a series: the first start's wall-clock time every `every_weeks`
/// weeks; `None` where that time does not exist on the day (a daylight-saving gap).
pub fn occurrences(
    zone: Tz,
    first: DateTime<Utc>,
    every_weeks: i64,
    count: Option<usize>,
    until: Option<NaiveDate>,
) -> Vec<(NaiveDate, Option<DateTime<Utc>>)> {
    let local = first.with_timezone(&zone).naive_local();
    let mut out = Vec::new();
    for i in 0..MAX_OCCURRENCES as i64 {
        if count.is_some_and(|c| out.len() >= c) {
            break;
        }
        let at = local + Duration::weeks(i * every_weeks);
        if until.is_some_and(|u| at.date() > u) {
            break;
        }
        let start = zone
            .from_local_datetime(&at)
            .earliest()
            .map(|t| t.with_timezone(&Utc));
        out.push((at.date(), start));
    }
    out
}

/// Books a series, occurrence by occurrence, each judged by the database like any booking.
pub async fn book_series(
    kernel: &Kernel,
    actor: &Actor,
    body: &NewSeries,
) -> Result<SeriesBooked, Error> {
    let request = body.appointment.validate()?;
    if !(1..=52).contains(&body.every_weeks) {
        return Err(Error::invalid("every_weeks", "1 to 52"));
    }
    let until = body
        .until
        .as_deref()
        .map(|u| parse_day("until", u))
        .transpose()?;
    let count = match (body.count, until) {
        (Some(c), None) if (2..=MAX_OCCURRENCES as i32).contains(&c) => Some(c as usize),
        (Some(_), None) => return Err(Error::invalid("count", "2 to 52 occurrences")),
        (None, Some(_)) => None,
        _ => {
            return Err(Error::invalid(
                "count",
                "either `count` or `until`, not both",
            ));
        }
    };
    if request.outside_hours {
        kernel.require(actor, &perm::APPOINTMENTS_OVERRIDE).await?;
    }
    let tenant = actor.tenant_id;
    let request = &request;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let plan = booking::plan(
                    conn,
                    kernel,
                    tenant,
                    request.patient_id,
                    &request.service_ids,
                    request.professional_id,
                )
                .await?;
                let now = Utc::now();
                check_start(&plan, request.start, now)
                    .map_err(|e| e.into_error("start", &plan.settings))?;
                if let Some(u) = until
                    && u < request.start.with_timezone(&plan.zone).date_naive()
                {
                    return Err(Error::invalid("until", "a day on or after the first start"));
                }
                let series_id = Uuid::now_v7();
                diesel::insert_into(appointment_series::table)
                    .values((
                        appointment_series::tenant_id.eq(tenant),
                        appointment_series::id.eq(series_id),
                        appointment_series::every_weeks.eq(body.every_weeks),
                        appointment_series::occurrences.eq(body.count),
                        appointment_series::until.eq(until),
                        appointment_series::on_conflict.eq(match body.on_conflict {
                            OnConflict::Fail => "fail",
                            OnConflict::Skip => "skip",
                        }),
                    ))
                    .execute(conn)
                    .await?;
                let mut visits = Vec::new();
                let mut skipped = Vec::new();
                let local = |t: DateTime<Utc>| t.with_timezone(&plan.zone).fixed_offset();
                for (day, start) in occurrences(
                    plan.zone,
                    request.start,
                    i64::from(body.every_weeks),
                    count,
                    until,
                ) {
                    let Some(start) = start else {
                        let noon = day.and_hms_opt(12, 0, 0).unwrap_or_default();
                        skipped.push(SkippedOccurrence {
                            start: plan
                                .zone
                                .from_local_datetime(&noon)
                                .earliest()
                                .map_or(local(request.start), |t| t.fixed_offset()),
                            reason: "nonexistent_local_time".into(),
                        });
                        continue;
                    };
                    if let Err(invalid) = check_start(&plan, start, now) {
                        skipped.push(SkippedOccurrence {
                            start: local(start),
                            reason: invalid.code().into(),
                        });
                        continue;
                    }
                    let at = Placement {
                        start,
                        series_id: Some(series_id),
                        booked_by: request.booked_by,
                        outside_hours: request.outside_hours,
                        savepoint: true,
                    };
                    match booking::insert_visit(conn, actor, &plan, at, request.notes.as_deref())
                        .await?
                    {
                        Ok(rows) => visits.extend(rows.as_slice().first().map(|(r, _)| r.visit_id)),
                        Err(refusal) => skipped.push(SkippedOccurrence {
                            start: local(start),
                            reason: refusal.code().into(),
                        }),
                    }
                }
                if body.on_conflict == OnConflict::Fail && !skipped.is_empty() {
                    // Returning the error rolls the whole series back.
                    return Err(Error::Conflict {
                        code: "series_conflicts",
                        detail: format!(
                            "{} of the series' occurrences cannot be booked; nothing was booked",
                            skipped.len()
                        )
                        .into(),
                        extra: Some(serde_json::json!({ "conflicts": skipped })),
                    });
                }
                if visits.is_empty() {
                    return Err(Error::Conflict {
                        code: "series_conflicts",
                        detail: "no occurrence of the series can be booked".into(),
                        extra: Some(serde_json::json!({ "conflicts": skipped })),
                    });
                }
                let rows = booking::load_rows(conn, &visits).await?;
                let appointments = booking::assemble(plan.zone, &visits, rows);
                for appointment in &appointments {
                    let mut event = AppointmentEvent::of(appointment);
                    event.by = Some(request.booked_by);
                    events::publish(conn, tenant, "appointment.booked", &event).await?;
                }
                waitlist::booked(conn, request.patient_id, &request.service_ids).await?;
                Ok(SeriesBooked {
                    series_id,
                    appointments,
                    skipped,
                })
            }
            .scope_boxed()
        })
        .await
}

/// A page of appointments, by start time.
#[derive(Debug, Object)]
pub struct AppointmentPage {
    pub items: Vec<Appointment>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// What a list is filtered by.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub professional_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    pub statuses: Vec<Status>,
}

/// Appointments starting in `[from, to)`, by start, one page.
pub async fn list(
    conn: &mut Conn,
    zone: Tz,
    filter: &ListFilter,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<(Vec<Appointment>, Option<String>), Error> {
    // A visit's first row carries the visit's id.
    let mut query = appointments::table
        .filter(appointments::id.eq(appointments::visit_id))
        .select((appointments::starts_at, appointments::visit_id))
        .into_boxed();
    if let Some(from) = filter.from {
        query = query.filter(appointments::starts_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(appointments::starts_at.lt(to));
    }
    if let Some(p) = filter.professional_id {
        query = query.filter(appointments::professional_id.eq(p));
    }
    if let Some(p) = filter.patient_id {
        query = query.filter(appointments::patient_id.eq(p));
    }
    if !filter.statuses.is_empty() {
        let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query = query.filter(appointments::status.eq_any(names));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            appointments::starts_at.gt(at).or(appointments::starts_at
                .eq(at)
                .and(appointments::visit_id.gt(id))),
        );
    }
    let keys: Vec<(DateTime<Utc>, Uuid)> = query
        .order((appointments::starts_at, appointments::visit_id))
        .limit(limit + 1)
        .load(conn)
        .await?;
    let (keys, next) = paginate(keys, limit, |k| *k, |k| k);
    let visits: Vec<Uuid> = keys.iter().map(|k| k.1).collect();
    let rows = booking::load_rows(conn, &visits).await?;
    Ok((booking::assemble(zone, &visits, rows), next))
}

fn statuses(text: Option<&str>) -> Result<Vec<Status>, Error> {
    text.map(|t| {
        t.split(',')
            .map(|s| {
                Status::parse(s.trim()).ok_or_else(|| {
                    Error::invalid(
                        "status",
                        "comma-separated statuses among scheduled, confirmed, checked_in, \
                         completed, cancelled, no_show",
                    )
                })
            })
            .collect()
    })
    .transpose()
    .map(Option::unwrap_or_default)
}

#[derive(Debug, ApiResponse)]
pub enum Booked {
    /// Booked.
    #[oai(status = 201)]
    Created(Json<Appointment>),
}

#[derive(Debug, ApiResponse)]
pub enum SeriesCreated {
    /// The series and what it booked.
    #[oai(status = 201)]
    Created(Json<SeriesBooked>),
}

/// An endpoint's change that carries nothing but its action.
async fn act(
    kernel: &Kernel,
    auth: &BearerAuth,
    permission: &Permission,
    visit: Uuid,
    action: Action,
) -> ApiResult<Json<Appointment>> {
    let actor = kernel.authorize(auth, permission).await?;
    let detail = ChangeDetail::default();
    Ok(Json(change(kernel, &actor, visit, action, detail).await?))
}

#[derive(Debug, Clone, Copy)]
pub struct AppointmentsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "AgendaTags::Agenda")]
impl AppointmentsApi {
    /// Book an appointment
    ///
    /// One or more services back to back with one professional; the end follows from the
    /// services' durations. If the professional, or every suitable room, is already taken,
    /// the answer is 409 with `next_slots`: the next free starts.
    ///
    /// Permission: `appointments:book`.
    #[oai(
        path = "/appointments",
        method = "post",
        operation_id = "book_appointment"
    )]
    async fn book_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewAppointment>,
    ) -> ApiResult<Booked> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_BOOK).await?;
        let request = body.0.validate()?;
        let appointment = book(&kernel, &actor, request).await?;
        Ok(Booked::Created(Json(appointment)))
    }

    /// Appointments
    ///
    /// By start time, filtered by the local days `from` to `to` (inclusive), professional,
    /// patient and status (comma-separated). Writes one audit event per page.
    ///
    /// Permission: `appointments:read`.
    #[oai(
        path = "/appointments",
        method = "get",
        operation_id = "list_appointments"
    )]
    #[expect(clippy::too_many_arguments, reason = "one argument per query filter")]
    async fn list_appointments(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        /// First local day, YYYY-MM-DD.
        from: Query<Option<String>>,
        /// Last local day, YYYY-MM-DD.
        to: Query<Option<String>>,
        professional_id: Query<Option<Uuid>>,
        patient_id: Query<Option<Uuid>>,
        #[oai(validator(max_length = 200))] status: Query<Option<String>>,
        /// Page size, 1 to 200 (default 50).
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AppointmentPage>> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_READ).await?;
        let limit = page_size(limit.0)?;
        let after: Option<(DateTime<Utc>, Uuid)> = decode_cursor(cursor.0.as_deref())?;
        let from_day = from
            .0
            .as_deref()
            .map(|d| parse_day("from", d))
            .transpose()?;
        let to_day = to.0.as_deref().map(|d| parse_day("to", d)).transpose()?;
        if let (Some(f), Some(t)) = (from_day, to_day)
            && t < f
        {
            return Err(Error::invalid("to", "a date on or after `from`").into());
        }
        let statuses = statuses(status.0.as_deref())?;
        let tenant = actor.tenant_id;
        let kernel_ref: &Kernel = &kernel;
        let (items, next_cursor) = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let zone = kernel_ref.zones.zone(conn, tenant).await?;
                    let filter = ListFilter {
                        from: from_day.map(|d| day_start(zone, d)),
                        to: to_day.map(|d| day_start(zone, d + Duration::days(1))),
                        professional_id: professional_id.0,
                        patient_id: patient_id.0,
                        statuses,
                    };
                    list(conn, zone, &filter, limit, after).await
                }
                .scope_boxed()
            })
            .await?;
        kernel
            .audit
            .reads(
                &actor,
                &[Access {
                    subject_kind: patient_id.0.map(|_| "patient"),
                    subject_id: patient_id.0,
                    resource: "appointments",
                    action: "list",
                }],
            )
            .await?;
        Ok(Json(AppointmentPage { items, next_cursor }))
    }

    /// One appointment
    ///
    /// Writes an audit event.
    ///
    /// Permission: `appointments:read`.
    #[oai(
        path = "/appointments/:id",
        method = "get",
        operation_id = "get_appointment"
    )]
    async fn get_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Appointment>> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_READ).await?;
        Ok(Json(get(&kernel, &actor, id.0).await?))
    }

    /// Move an appointment
    ///
    /// To another start (and optionally another professional who performs its services).
    /// A confirmed appointment goes back to `scheduled`: the new time needs confirming.
    ///
    /// Permission: `appointments:change`.
    #[oai(
        path = "/appointments/:id/reschedule",
        method = "post",
        operation_id = "reschedule_appointment"
    )]
    async fn reschedule_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<Reschedule>,
    ) -> ApiResult<Json<Appointment>> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_CHANGE).await?;
        let start = parse_instant("start", &body.0.start)?;
        let to = Move {
            start,
            professional: body.0.professional_id,
            outside_hours: body.0.outside_hours,
            by: body.0.requested_by.unwrap_or(Party::Clinic),
            patient: None,
        };
        let appointment = reschedule(&kernel, &actor, id.0, to).await?;
        Ok(Json(appointment))
    }

    /// Cancel an appointment
    ///
    /// Permission: `appointments:change`.
    #[oai(
        path = "/appointments/:id/cancel",
        method = "post",
        operation_id = "cancel_appointment"
    )]
    async fn cancel_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<Cancellation>,
    ) -> ApiResult<Json<Appointment>> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_CHANGE).await?;
        let reason = body.0.reason()?;
        let detail = ChangeDetail {
            reason,
            by: Some(body.0.cancelled_by.unwrap_or(Party::Clinic)),
            patient: None,
        };
        Ok(Json(
            change(&kernel, &actor, id.0, Action::Cancel, detail).await?,
        ))
    }

    /// Confirm an appointment
    ///
    /// Permission: `appointments:change`.
    #[oai(
        path = "/appointments/:id/confirm",
        method = "post",
        operation_id = "confirm_appointment"
    )]
    async fn confirm_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Appointment>> {
        act(
            &kernel,
            &auth,
            &perm::APPOINTMENTS_CHANGE,
            id.0,
            Action::Confirm,
        )
        .await
    }

    /// Check a patient in
    ///
    /// Permission: `appointments:attend`.
    #[oai(
        path = "/appointments/:id/check-in",
        method = "post",
        operation_id = "check_in_appointment"
    )]
    async fn check_in_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Appointment>> {
        act(
            &kernel,
            &auth,
            &perm::APPOINTMENTS_ATTEND,
            id.0,
            Action::CheckIn,
        )
        .await
    }

    /// Complete an appointment
    ///
    /// Once it has started.
    ///
    /// Permission: `appointments:attend`.
    #[oai(
        path = "/appointments/:id/complete",
        method = "post",
        operation_id = "complete_appointment"
    )]
    async fn complete_appointment(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Appointment>> {
        act(
            &kernel,
            &auth,
            &perm::APPOINTMENTS_ATTEND,
            id.0,
            Action::Complete,
        )
        .await
    }

    /// Mark a no-show
    ///
    /// Once the appointment has started.
    ///
    /// Permission: `appointments:attend`.
    #[oai(
        path = "/appointments/:id/no-show",
        method = "post",
        operation_id = "mark_no_show"
    )]
    async fn mark_no_show(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Appointment>> {
        act(
            &kernel,
            &auth,
            &perm::APPOINTMENTS_ATTEND,
            id.0,
            Action::NoShow,
        )
        .await
    }

    /// Book a recurring appointment
    ///
    /// The same visit at the same local time every `every_weeks` weeks, `count` times or
    /// until a day. Each occurrence is checked like a single booking; with `on_conflict`
    /// `fail` nothing is booked if one cannot be (409 listing them), with `skip` the rest
    /// is booked and the others listed.
    ///
    /// Permission: `appointments:book`.
    #[oai(
        path = "/appointment-series",
        method = "post",
        operation_id = "book_series"
    )]
    async fn book_series(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewSeries>,
    ) -> ApiResult<SeriesCreated> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_BOOK).await?;
        let booked = book_series(&kernel, &actor, &body.0).await?;
        Ok(SeriesCreated::Created(Json(booked)))
    }

    /// Cancel what is left of a series
    ///
    /// Cancels its scheduled and confirmed occurrences that have not started yet.
    ///
    /// Permission: `appointments:change`.
    #[oai(
        path = "/appointment-series/:id/cancel",
        method = "post",
        operation_id = "cancel_series"
    )]
    async fn cancel_series(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<Cancellation>,
    ) -> ApiResult<Json<AppointmentPage>> {
        let actor = kernel.authorize(&auth, &perm::APPOINTMENTS_CHANGE).await?;
        let reason = body.0.reason()?;
        let by = body.0.cancelled_by.unwrap_or(Party::Clinic);
        let visits: Vec<Uuid> = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let exists: Option<Uuid> = appointment_series::table
                        .filter(appointment_series::id.eq(id.0))
                        .select(appointment_series::id)
                        .first(conn)
                        .await
                        .optional()?;
                    exists.ok_or(Error::NotFound { what: "series" })?;
                    Ok::<_, Error>(
                        appointments::table
                            .filter(appointments::series_id.eq(id.0))
                            .filter(appointments::id.eq(appointments::visit_id))
                            .filter(appointments::starts_at.gt(Utc::now()))
                            .filter(appointments::status.eq_any(["scheduled", "confirmed"]))
                            .order(appointments::starts_at)
                            .select(appointments::visit_id)
                            .load(conn)
                            .await?,
                    )
                }
                .scope_boxed()
            })
            .await?;
        let mut items = Vec::with_capacity(visits.len());
        for visit in visits {
            let detail = ChangeDetail {
                reason: reason.clone(),
                by: Some(by),
                patient: None,
            };
            match change(&kernel, &actor, visit, Action::Cancel, detail).await {
                Ok(a) => items.push(a),
                // Changed meanwhile (checked in, cancelled): leave it as it is.
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Json(AppointmentPage {
            items,
            next_cursor: None,
        }))
    }
}

/// One appointment, its read recorded in the audit log. The caller checked the permission.
pub async fn get(kernel: &Kernel, actor: &Actor, id: Uuid) -> Result<Appointment, Error> {
    let tenant = actor.tenant_id;
    let appointment = kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let zone = kernel.zones.zone(conn, tenant).await?;
                booking::load_one(conn, zone, id).await
            }
            .scope_boxed()
        })
        .await?;
    kernel
        .audit
        .reads(
            actor,
            &[Access {
                subject_kind: Some("patient"),
                subject_id: Some(appointment.patient_id),
                resource: "appointment",
                action: "read",
            }],
        )
        .await?;
    Ok(appointment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weekly_series_keeps_its_local_time_across_a_daylight_saving_change() {
        // New York: clocks go forward on 2026-03-08. 10:00 local stays 10:00 local.
        let zone: Tz = "America/New_York".parse().unwrap();
        let first = zone
            .with_ymd_and_hms(2026, 3, 2, 10, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let starts = occurrences(zone, first, 1, Some(3), None);
        let hours: Vec<String> = starts
            .iter()
            .map(|(_, s)| {
                s.unwrap()
                    .with_timezone(&zone)
                    .format("%H:%M %z")
                    .to_string()
            })
            .collect();
        assert_eq!(hours, ["10:00 -0500", "10:00 -0400", "10:00 -0400"]);
    }

    #[test]
    fn an_occurrence_in_a_daylight_saving_gap_does_not_exist() {
        // São Paulo, 2018-11-04: midnight did not happen (clocks went from 00:00 to 01:00).
        let zone: Tz = "America/Sao_Paulo".parse().unwrap();
        let first = zone
            .with_ymd_and_hms(2018, 10, 28, 0, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        let starts = occurrences(zone, first, 1, Some(2), None);
        assert!(starts[0].1.is_some());
        assert_eq!(starts[1].0, NaiveDate::from_ymd_opt(2018, 11, 4).unwrap());
        assert!(starts[1].1.is_none());
    }

    #[test]
    fn until_bounds_a_series_and_fifty_two_is_the_most() {
        let zone: Tz = "America/Sao_Paulo".parse().unwrap();
        let first = Utc.with_ymd_and_hms(2026, 1, 5, 13, 0, 0).unwrap();
        let until = NaiveDate::from_ymd_opt(2026, 2, 2);
        assert_eq!(occurrences(zone, first, 2, None, until).len(), 3);
        assert_eq!(occurrences(zone, first, 1, None, None).len(), 52);
    }

    #[test]
    fn malformed_times_name_their_field() {
        assert!(parse_instant("start", "2026-12-10T14:30:00-03:00").is_ok());
        for bad in ["2026-12-10 14:30", "2026-12-10T14:30:00", "tomorrow", ""] {
            let Err(Error::Validation(fields)) = parse_instant("start", bad) else {
                panic!("{bad} accepted");
            };
            assert_eq!(fields[0].field, "start");
        }
    }
}
