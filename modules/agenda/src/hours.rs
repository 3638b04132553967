//! Working hours per professional (weekly, in the clinic's time zone), time off and
//! blocked periods, and the clinic's calendar of holidays and exceptions.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::{Actor, BearerAuth};
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use harmony_core::rbac::{Permission, Role};
use harmony_core::sql::sql;
use harmony_core::tenancy::active_professionals;
use harmony_core::validate::Fields;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::holidays::{self, HolidayKind};
use crate::schema::{calendar_days, working_hours};
use crate::{AgendaTags, perm};
use harmony_core::http::JsonBody;

/// One working interval of a weekday, in the clinic's local time.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct WorkingInterval {
    /// 1 = Monday ... 7 = Sunday.
    pub weekday: i16,
    /// `HH:MM`.
    pub starts_at: String,
    /// `HH:MM`, after `starts_at`.
    pub ends_at: String,
}

/// A professional's week.
#[derive(Debug, Object)]
pub struct WorkingHours {
    pub professional_id: Uuid,
    /// The clinic's IANA time zone, in which the times are.
    pub time_zone: String,
    pub intervals: Vec<WorkingInterval>,
}

#[derive(Debug, Object)]
pub struct WorkingHoursUpdate {
    /// The whole week; replaces what was there. Several intervals a day are fine (e.g.
    /// 09:00–12:00 and 13:00–18:00); they may not overlap.
    pub intervals: Vec<WorkingInterval>,
}

/// A blocked period.
#[derive(Debug, Object)]
pub struct TimeOff {
    pub id: Uuid,
    /// The professional who is away; absent for a resource or the whole clinic.
    #[oai(nullable)]
    pub professional_id: Option<Uuid>,
    /// The room or equipment that is unavailable.
    #[oai(nullable)]
    pub resource_id: Option<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[oai(nullable)]
    pub reason: Option<String>,
}

#[derive(Debug, Object)]
pub struct NewTimeOff {
    #[oai(nullable)]
    pub professional_id: Option<Uuid>,
    #[oai(nullable)]
    pub resource_id: Option<Uuid>,
    /// With an offset, e.g. `2026-12-24T13:00:00-03:00`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[oai(nullable)]
    pub reason: Option<String>,
}

#[derive(Debug, ApiResponse)]
pub enum TimeOffCreated {
    #[oai(status = 201)]
    Created(Json<TimeOff>),
}

#[derive(Debug, ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

/// A day of the clinic's calendar that differs from a plain working day.
#[derive(Debug, Object)]
pub struct CalendarDay {
    pub day: NaiveDate,
    pub name: String,
    /// `holiday` (national), `optional` (ponto facultativo) or `clinic` (the clinic's own).
    pub kind: String,
    /// Whether the clinic works that day.
    pub open: bool,
}

#[derive(Debug, Object)]
pub struct CalendarDayUpdate {
    pub open: bool,
    /// E.g. a municipal holiday's name.
    #[oai(nullable)]
    pub name: Option<String>,
}

/// Parses a local time of day, HH:MM.
pub(crate) fn hhmm(value: &str) -> Result<NaiveTime, &'static str> {
    NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| "a time as HH:MM, e.g. 09:00")
}

/// Authorizes `permission` for something of `professional`'s: managers may act on anyone's,
/// a professional only on their own (`refusal` is the 403's code and detail otherwise).
pub(crate) async fn self_or_manager(
    kernel: &Kernel,
    auth: &BearerAuth,
    permission: &Permission,
    professional: Uuid,
    refusal: (&'static str, &'static str),
) -> Result<Actor, Error> {
    let actor = kernel.authorize(auth, permission).await?;
    let roles = kernel.rbac.roles_of(actor.tenant_id, actor.user_id).await;
    let manager = roles.contains(&Role::Owner) || roles.contains(&Role::Admin);
    if !manager && actor.user_id != professional {
        return Err(Error::forbidden(refusal.0, refusal.1));
    }
    Ok(actor)
}

/// Only managers set anyone's hours; a professional sets their own.
async fn may_manage(
    kernel: &Kernel,
    auth: &BearerAuth,
    professional: Uuid,
) -> Result<Actor, Error> {
    let refusal = (
        "own_hours_only",
        "professionals may only change their own working hours",
    );
    self_or_manager(kernel, auth, &perm::HOURS_MANAGE, professional, refusal).await
}

async fn ensure_professional(conn: &mut Conn, professional: Uuid) -> Result<(), Error> {
    if active_professionals(conn, &[professional])
        .await?
        .is_empty()
    {
        return Err(Error::NotFound {
            what: "professional",
        });
    }
    Ok(())
}

async fn load_week(conn: &mut Conn, professional: Uuid) -> Result<Vec<WorkingInterval>, Error> {
    let rows: Vec<(i16, NaiveTime, NaiveTime)> = working_hours::table
        .filter(working_hours::professional_id.eq(professional))
        .order((working_hours::weekday, working_hours::starts_at))
        .select((
            working_hours::weekday,
            working_hours::starts_at,
            working_hours::ends_at,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(weekday, s, e)| WorkingInterval {
            weekday,
            starts_at: s.format("%H:%M").to_string(),
            ends_at: e.format("%H:%M").to_string(),
        })
        .collect())
}

#[derive(diesel::QueryableByName)]
struct TimeOffRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    professional_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    resource_id: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

impl From<TimeOffRow> for TimeOff {
    fn from(r: TimeOffRow) -> Self {
        TimeOff {
            id: r.id,
            professional_id: r.professional_id,
            resource_id: r.resource_id,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            reason: r.reason,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HoursApi;

#[OpenApi(prefix_path = "/api/v1", tag = "AgendaTags::Agenda")]
impl HoursApi {
    /// A professional's working hours
    ///
    /// Permission: `working_hours:read`.
    #[oai(
        path = "/professionals/:id/working-hours",
        method = "get",
        operation_id = "get_working_hours"
    )]
    async fn get_working_hours(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<WorkingHours>> {
        let actor = kernel.authorize(&auth, &perm::HOURS_READ).await?;
        let kernel_ref: &Kernel = &kernel;
        let tenant = actor.tenant_id;
        let week = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_professional(conn, id.0).await?;
                    let intervals = load_week(conn, id.0).await?;
                    let zone = kernel_ref.zones.zone(conn, tenant).await?;
                    Ok::<_, Error>(WorkingHours {
                        professional_id: id.0,
                        time_zone: zone.name().to_owned(),
                        intervals,
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(week))
    }

    /// Replace a professional's working hours
    ///
    /// Managers set anyone's; a professional only their own (403 `own_hours_only`).
    ///
    /// Permission: `working_hours:manage`.
    #[oai(
        path = "/professionals/:id/working-hours",
        method = "put",
        operation_id = "set_working_hours"
    )]
    async fn set_working_hours(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<WorkingHoursUpdate>,
    ) -> ApiResult<Json<WorkingHours>> {
        let actor = may_manage(&kernel, &auth, id.0).await?;
        let mut f = Fields::default();
        let mut parsed: Vec<(i16, NaiveTime, NaiveTime)> = Vec::new();
        for (i, interval) in body.0.intervals.iter().enumerate() {
            let weekday = f.check(
                &format!("intervals[{i}].weekday"),
                if (1..=7).contains(&interval.weekday) {
                    Ok(interval.weekday)
                } else {
                    Err("1 (Monday) to 7 (Sunday)")
                },
            );
            let start = f.check(
                &format!("intervals[{i}].starts_at"),
                hhmm(&interval.starts_at),
            );
            let end = f.check(&format!("intervals[{i}].ends_at"), hhmm(&interval.ends_at));
            if let (Some(w), Some(s), Some(e)) = (weekday, start, end) {
                if e <= s {
                    f.check::<()>(
                        &format!("intervals[{i}].ends_at"),
                        Err("a time after starts_at"),
                    );
                } else if parsed
                    .iter()
                    .any(|(pw, ps, pe)| *pw == w && s < *pe && *ps < e)
                {
                    f.check::<()>(
                        &format!("intervals[{i}]"),
                        Err("intervals of the same day may not overlap"),
                    );
                } else {
                    parsed.push((w, s, e));
                }
            }
        }
        f.finish()?;
        let kernel_ref: &Kernel = &kernel;
        let tenant = actor.tenant_id;
        let week = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    ensure_professional(conn, id.0).await?;
                    diesel::delete(
                        working_hours::table.filter(working_hours::professional_id.eq(id.0)),
                    )
                    .execute(conn)
                    .await?;
                    let rows: Vec<_> = parsed
                        .iter()
                        .map(|(w, s, e)| {
                            (
                                working_hours::tenant_id.eq(tenant),
                                working_hours::professional_id.eq(id.0),
                                working_hours::weekday.eq(*w),
                                working_hours::starts_at.eq(*s),
                                working_hours::ends_at.eq(*e),
                            )
                        })
                        .collect();
                    diesel::insert_into(working_hours::table)
                        .values(rows)
                        .execute(conn)
                        .await?;
                    let intervals = load_week(conn, id.0).await?;
                    let zone = kernel_ref.zones.zone(conn, tenant).await?;
                    Ok::<_, Error>(WorkingHours {
                        professional_id: id.0,
                        time_zone: zone.name().to_owned(),
                        intervals,
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(week))
    }

    /// Time off and blocked periods
    ///
    /// Those overlapping `from`–`to` (at most 366 days apart).
    ///
    /// Permission: `time_off:read`.
    #[oai(path = "/time-off", method = "get", operation_id = "list_time_off")]
    async fn list_time_off(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        from: Query<DateTime<Utc>>,
        to: Query<DateTime<Utc>>,
        professional_id: Query<Option<Uuid>>,
    ) -> ApiResult<Json<Vec<TimeOff>>> {
        let actor = kernel.authorize(&auth, &perm::TIME_OFF_READ).await?;
        if to.0 <= from.0 || to.0 - from.0 > chrono::Duration::days(366) {
            return Err(
                Error::invalid_query("to", "a time after `from`, at most 366 days later").into(),
            );
        }
        let rows: Vec<TimeOffRow> = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    sql(
                        "SELECT id, professional_id, resource_id, lower(during) AS starts_at, upper(during) AS ends_at, reason \
                         FROM time_off WHERE during && tstzrange($1, $2) \
                           AND ($3::uuid IS NULL OR professional_id = $3 OR (professional_id IS NULL AND resource_id IS NULL)) \
                         ORDER BY lower(during), id",
                    )
                    .bind::<Timestamptz, _>(from.0)
                    .bind::<Timestamptz, _>(to.0)
                    .bind::<Nullable<SqlUuid>, _>(professional_id.0)
                    .load(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(rows.into_iter().map(TimeOff::from).collect()))
    }

    /// Block a period
    ///
    /// For a professional (time off), a room or equipment (maintenance), or, with
    /// neither, the whole clinic.
    ///
    /// Permission: `time_off:manage`.
    #[oai(path = "/time-off", method = "post", operation_id = "create_time_off")]
    async fn create_time_off(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewTimeOff>,
    ) -> ApiResult<TimeOffCreated> {
        let actor = kernel.authorize(&auth, &perm::TIME_OFF_MANAGE).await?;
        let input = body.0;
        let mut f = Fields::default();
        if input.ends_at <= input.starts_at {
            f.check::<()>("ends_at", Err("a time after starts_at"));
        } else if input.ends_at - input.starts_at > chrono::Duration::days(366) {
            f.check::<()>("ends_at", Err("at most 366 days after starts_at"));
        }
        if input.professional_id.is_some() && input.resource_id.is_some() {
            f.check::<()>(
                "resource_id",
                Err("a period blocks a professional or a resource, not both"),
            );
        }
        let reason = input.reason.as_deref().map(|r| r.trim().to_owned());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control))
        {
            f.check::<()>("reason", Err("at most 200 characters"));
        }
        f.finish()?;
        let tenant = actor.tenant_id;
        let user = actor.user_id;
        let id = Uuid::now_v7();
        let row: TimeOffRow = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    if let Some(p) = input.professional_id {
                        ensure_professional(conn, p).await?;
                    }
                    if let Some(r) = input.resource_id {
                        let found: bool = diesel::select(diesel::dsl::exists(crate::schema::resources::table.filter(crate::schema::resources::id.eq(r))))
                            .get_result(conn)
                            .await?;
                        if !found {
                            return Err(Error::NotFound { what: "resource" });
                        }
                    }
                    sql(
                        "INSERT INTO time_off (tenant_id, id, professional_id, resource_id, during, reason, created_by) \
                         VALUES ($1, $2, $3, $4, tstzrange($5, $6), $7, $8) \
                         RETURNING id, professional_id, resource_id, lower(during) AS starts_at, upper(during) AS ends_at, reason",
                    )
                    .bind::<SqlUuid, _>(tenant)
                    .bind::<SqlUuid, _>(id)
                    .bind::<Nullable<SqlUuid>, _>(input.professional_id)
                    .bind::<Nullable<SqlUuid>, _>(input.resource_id)
                    .bind::<Timestamptz, _>(input.starts_at)
                    .bind::<Timestamptz, _>(input.ends_at)
                    .bind::<Nullable<Text>, _>(reason)
                    .bind::<SqlUuid, _>(user)
                    .get_result(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(TimeOffCreated::Created(Json(row.into())))
    }

    /// Remove a blocked period
    ///
    /// Permission: `time_off:manage`.
    #[oai(
        path = "/time-off/:id",
        method = "delete",
        operation_id = "delete_time_off"
    )]
    async fn delete_time_off(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let actor = kernel.authorize(&auth, &perm::TIME_OFF_MANAGE).await?;
        let deleted = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    sql("DELETE FROM time_off WHERE id = $1")
                        .bind::<SqlUuid, _>(id.0)
                        .execute(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        if deleted == 0 {
            return Err(Error::NotFound { what: "time off" }.into());
        }
        Ok(Deleted::Deleted)
    }

    /// The clinic's calendar of a year
    ///
    /// National holidays (closed unless the clinic opens), optional days off (open unless
    /// the clinic closes) and the clinic's own exceptions.
    ///
    /// Permission: `clinic_calendar:read`.
    #[oai(
        path = "/clinic-calendar",
        method = "get",
        operation_id = "get_clinic_calendar"
    )]
    async fn get_clinic_calendar(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        year: Query<i32>,
    ) -> ApiResult<Json<Vec<CalendarDay>>> {
        let actor = kernel.authorize(&auth, &perm::CALENDAR_READ).await?;
        if !(2000..=2100).contains(&year.0) {
            return Err(Error::invalid_query("year", "a year from 2000 to 2100").into());
        }
        let overrides: Vec<(NaiveDate, bool, Option<String>)> = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let first = NaiveDate::from_ymd_opt(year.0, 1, 1).unwrap_or_default();
                    let last = NaiveDate::from_ymd_opt(year.0, 12, 31).unwrap_or_default();
                    calendar_days::table
                        .filter(calendar_days::day.between(first, last))
                        .select((calendar_days::day, calendar_days::open, calendar_days::name))
                        .load(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(calendar(year.0, &overrides)))
    }

    /// Open or close the clinic on a day
    ///
    /// Permission: `clinic_calendar:manage`.
    #[oai(
        path = "/clinic-calendar/:day",
        method = "put",
        operation_id = "set_clinic_calendar_day"
    )]
    async fn set_clinic_calendar_day(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        day: Path<NaiveDate>,
        body: JsonBody<CalendarDayUpdate>,
    ) -> ApiResult<Json<CalendarDay>> {
        let actor = kernel.authorize(&auth, &perm::CALENDAR_MANAGE).await?;
        let name = body.0.name.map(|n| n.trim().to_owned());
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > 120 || n.chars().any(char::is_control))
        {
            return Err(Error::invalid("name", "at most 120 characters").into());
        }
        let (open, tenant, date) = (body.0.open, actor.tenant_id, day.0);
        let stored_name = name.clone();
        kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::insert_into(calendar_days::table)
                        .values((
                            calendar_days::tenant_id.eq(tenant),
                            calendar_days::day.eq(date),
                            calendar_days::open.eq(open),
                            calendar_days::name.eq(&stored_name),
                        ))
                        .on_conflict((calendar_days::tenant_id, calendar_days::day))
                        .do_update()
                        .set((
                            calendar_days::open.eq(open),
                            calendar_days::name.eq(&stored_name),
                        ))
                        .execute(conn)
                        .await?;
                    Ok::<_, Error>(())
                }
                .scope_boxed()
            })
            .await?;
        let mut days = calendar(date.year(), &[(date, open, name)]);
        days.retain(|d| d.day == date);
        Ok(Json(days.pop().ok_or(Error::NotFound { what: "day" })?))
    }
}

/// Merges the national calendar of `year` with the clinic's exceptions.
pub fn calendar(year: i32, overrides: &[(NaiveDate, bool, Option<String>)]) -> Vec<CalendarDay> {
    let mut days: Vec<CalendarDay> = holidays::national(year)
        .into_iter()
        .map(|h| CalendarDay {
            day: h.date,
            name: h.name.to_owned(),
            kind: h.kind.as_str().to_owned(),
            open: h.kind == HolidayKind::Optional,
        })
        .collect();
    for (day, open, name) in overrides {
        match days.iter_mut().find(|d| d.day == *day) {
            Some(existing) => {
                existing.open = *open;
                if let Some(name) = name {
                    existing.name.clone_from(name);
                }
            }
            None => days.push(CalendarDay {
                day: *day,
                name: name.clone().unwrap_or_else(|| {
                    if *open {
                        "Aberto".into()
                    } else {
                        "Fechado".into()
                    }
                }),
                kind: "clinic".into(),
                open: *open,
            }),
        }
    }
    days.sort_by_key(|d| d.day);
    days
}

/// The demo professional's week: Monday to Friday 09:00–12:00 and 13:00–18:00, Saturday
/// mornings.
pub async fn seed_demo_hours(
    conn: &mut Conn,
    tenant: Uuid,
    professional: Uuid,
) -> Result<(), Error> {
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
    let mut rows = Vec::new();
    for weekday in 1..=5i16 {
        rows.push((weekday, t(9, 0), t(12, 0)));
        rows.push((weekday, t(13, 0), t(18, 0)));
    }
    rows.push((6, t(9, 0), t(13, 0)));
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(w, s, e)| {
            (
                working_hours::tenant_id.eq(tenant),
                working_hours::professional_id.eq(professional),
                working_hours::weekday.eq(w),
                working_hours::starts_at.eq(s),
                working_hours::ends_at.eq(e),
            )
        })
        .collect();
    diesel::insert_into(working_hours::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}
