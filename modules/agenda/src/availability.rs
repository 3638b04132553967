//! Availability: the free start times of a visit (one or more services back to back) over
//! a range of days, computed from working hours in the clinic's time zone, the clinic's
//! calendar, time off, existing appointments with their cleanup buffers, the rooms and
//! equipment the services need, minimum notice and maximum advance.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::BearerAuth;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::catalog::AgendaSettings;
use crate::holidays::{self, HolidayKind};
use crate::schema::{
    appointments, calendar_days, service_professionals, service_resources, services, time_off,
    working_hours,
};
use crate::{AgendaTags, perm};

/// The longest range one availability request may cover.
pub const MAX_RANGE_DAYS: i64 = 62;

/// One service of a visit, as availability needs it.
#[derive(Debug, Clone)]
pub struct VisitPart {
    pub service_id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub duration: Duration,
    pub buffer_after: Duration,
    /// Any one of these must be free; empty when the service needs none.
    pub resources: Vec<Uuid>,
}

/// A busy period.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

fn overlaps(busy: &[Busy], from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    busy.iter().any(|b| b.from < to && from < b.to)
}

/// What the computation needs to know about the clinic and one professional.
#[derive(Debug)]
pub struct Calendar {
    pub zone: Tz,
    pub granularity: Duration,
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
    /// Local days the clinic is closed.
    pub closed: Vec<NaiveDate>,
    /// (weekday 1–7, start, end) in local time.
    pub week: Vec<(u32, NaiveTime, NaiveTime)>,
    /// The professional's busy periods (appointments with buffers, time off).
    pub busy: Vec<Busy>,
    /// The professional's time off and the clinic's closures within days.
    pub off: Vec<Busy>,
    /// Busy periods per resource.
    pub resource_busy: Vec<(Uuid, Vec<Busy>)>,
}

/// A free start: when the visit starts and ends, and the resources it would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub resources: Vec<Uuid>,
}

/// The free starts of `visit` on the local days `from..=to`.
pub fn free_slots(
    cal: &Calendar,
    visit: &[VisitPart],
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<Slot> {
    let total: Duration = visit.iter().map(|p| p.duration).sum();
    let step = cal.granularity.num_minutes().max(1);
    let mut slots = Vec::new();
    let mut day = from;
    while day <= to {
        if !cal.closed.contains(&day) {
            let weekday = day.weekday().number_from_monday();
            for (_, start, end) in cal.week.iter().filter(|(w, _, _)| *w == weekday) {
                // Candidate starts are aligned to the granularity from local midnight.
                let first = {
                    let minutes = i64::from(start.num_seconds_from_midnight_compat() / 60);
                    (minutes + step - 1) / step * step
                };
                let last = i64::from(end.num_seconds_from_midnight_compat() / 60);
                let mut minute = first;
                while minute + total.num_minutes() <= last {
                    if let Some(slot) = try_start(cal, visit, day, minute) {
                        slots.push(slot);
                    }
                    minute += step;
                }
            }
        }
        day += Duration::days(1);
    }
    slots.sort_by_key(|s| s.start);
    slots.dedup_by_key(|s| s.start);
    slots
}

trait SecondsFromMidnight {
    fn num_seconds_from_midnight_compat(&self) -> u32;
}

impl SecondsFromMidnight for NaiveTime {
    fn num_seconds_from_midnight_compat(&self) -> u32 {
        chrono::Timelike::num_seconds_from_midnight(self)
    }
}

/// When each service of a visit starting at `start` happens: (start, end, busy until); the
/// cleanup buffer follows the last service only.
pub fn layout(
    visit: &[VisitPart],
    start: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> {
    let mut at = start;
    visit
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let end = at + part.duration;
            let until = if i + 1 == visit.len() {
                end + part.buffer_after
            } else {
                end
            };
            let times = (at, end, until);
            at = end;
            times
        })
        .collect()
}

/// A room or machine of `part` free over `[from, until)`: `Some(None)` when the service
/// needs none, `None` when it needs one and none is free.
pub fn free_resource(
    cal: &Calendar,
    part: &VisitPart,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<Option<Uuid>> {
    if part.resources.is_empty() {
        return Some(None);
    }
    part.resources
        .iter()
        .find(|r| {
            cal.resource_busy
                .iter()
                .find(|(id, _)| id == *r)
                .is_none_or(|(_, busy)| !overlaps(busy, from, until))
        })
        .map(|r| Some(*r))
}

/// Whether the professional has nothing over `[from, until)`: no appointment (with its
/// buffer) and no time off.
pub fn professional_free(cal: &Calendar, from: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    !overlaps(&cal.busy, from, until)
}

/// Whether a visit over `[start, end)` falls inside one of the professional's working
/// intervals, on a day the clinic is open, outside time off. Existing appointments are not
/// considered: the database's constraints judge those.
pub fn within_hours(cal: &Calendar, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    let from = start.with_timezone(&cal.zone).naive_local();
    let to = end.with_timezone(&cal.zone).naive_local();
    let day = from.date();
    if cal.closed.contains(&day) || overlaps(&cal.off, start, end) {
        return false;
    }
    let weekday = day.weekday().number_from_monday();
    // A visit ending exactly at midnight ends on the same working day.
    let ends_at_midnight = to.date() == day + Duration::days(1) && to.time() == NaiveTime::MIN;
    if to.date() != day && !ends_at_midnight {
        return false;
    }
    cal.week.iter().any(|(w, s, e)| {
        *w == weekday
            && from.time() >= *s
            && (if ends_at_midnight {
                *e == NaiveTime::MIN
            } else {
                to.time() <= *e
            })
    })
}

fn try_start(cal: &Calendar, visit: &[VisitPart], day: NaiveDate, minute: i64) -> Option<Slot> {
    let local = day.and_hms_opt(0, 0, 0)? + Duration::minutes(minute);
    // A local time skipped by a daylight-saving change does not exist; an ambiguous one
    // (the hour repeated when clocks go back) is taken at its first occurrence.
    let start = cal
        .zone
        .from_local_datetime(&local)
        .earliest()?
        .with_timezone(&Utc);
    if start < cal.earliest || start > cal.latest {
        return None;
    }
    let mut resources = Vec::new();
    let mut end = start;
    for (part, (from, to, until)) in visit.iter().zip(layout(visit, start)) {
        if overlaps(&cal.busy, from, until) {
            return None;
        }
        if let Some(resource) = free_resource(cal, part, from, until)? {
            resources.push(resource);
        }
        end = to;
    }
    Some(Slot {
        start,
        end,
        resources,
    })
}

/// Loads the services of a visit, in order: 404 when one is not this clinic's, 422 when
/// one is inactive. Two queries, pipelined.
pub async fn visit_parts(conn: &Conn, ids: &[Uuid]) -> Result<Vec<VisitPart>, Error> {
    let services = async {
        let mut c = conn;
        services::table
            .filter(services::id.eq_any(ids))
            .select((
                services::id,
                services::duration_minutes,
                services::buffer_after_minutes,
                services::active,
                services::name,
                services::price_cents,
                services::currency,
            ))
            .load::<(Uuid, i32, i32, bool, String, i64, String)>(&mut c)
            .await
            .map_err(Error::from)
    };
    let needs = async {
        let mut c = conn;
        service_resources::table
            .filter(service_resources::service_id.eq_any(ids))
            .select((
                service_resources::service_id,
                service_resources::resource_id,
            ))
            .load::<(Uuid, Uuid)>(&mut c)
            .await
            .map_err(Error::from)
    };
    let (services, needs) = futures::try_join!(services, needs)?;
    ids.iter()
        .map(|id| {
            let Some((_, duration, buffer, active, name, price, currency)) =
                services.iter().find(|s| s.0 == *id)
            else {
                return Err(Error::NotFound { what: "service" });
            };
            if !active {
                return Err(Error::invalid(
                    "service_ids",
                    format!("active services only; {id} is inactive"),
                ));
            }
            Ok(VisitPart {
                service_id: *id,
                name: name.clone(),
                price_cents: *price,
                currency: currency.clone(),
                duration: Duration::minutes(i64::from(*duration)),
                buffer_after: Duration::minutes(i64::from(*buffer)),
                resources: needs
                    .iter()
                    .filter(|(s, _)| s == id)
                    .map(|(_, r)| *r)
                    .collect(),
            })
        })
        .collect()
}

/// The professionals who perform every one of `services`.
pub async fn performers(mut conn: &Conn, services: &[Uuid]) -> Result<Vec<Uuid>, Error> {
    let links: Vec<(Uuid, Uuid)> = service_professionals::table
        .filter(service_professionals::service_id.eq_any(services))
        .select((
            service_professionals::professional_id,
            service_professionals::service_id,
        ))
        .load(&mut conn)
        .await?;
    let mut people: Vec<Uuid> = links.iter().map(|(p, _)| *p).collect();
    people.sort();
    people.dedup();
    people.retain(|p| services.iter().all(|s| links.contains(&(*p, *s))));
    Ok(people)
}

/// Builds the calendar of `professional` for the UTC window `[from, to)`.
pub async fn load_calendar(
    conn: &Conn,
    zone: Tz,
    settings: &AgendaSettings,
    professional: Uuid,
    visit: &[VisitPart],
    days: (NaiveDate, NaiveDate),
    ignoring: Option<Uuid>,
) -> Result<Calendar, Error> {
    let now = Utc::now();
    let window_from = zone
        .from_local_datetime(&days.0.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(now, |t| t.with_timezone(&Utc));
    let window_to = window_from + Duration::days((days.1 - days.0).num_days() + 2);

    // Only timestamp comparisons, which row-level security lets the indexes use; one
    // service never blocks more than a day, which bounds the index range. All queries go
    // out together.
    let lookback = window_from - Duration::days(1);
    let mut needed: Vec<Uuid> = visit.iter().flat_map(|p| p.resources.clone()).collect();
    needed.sort();
    needed.dedup();
    let ignoring = ignoring.unwrap_or(Uuid::nil());
    let week = async {
        let mut c = conn;
        working_hours::table
            .filter(working_hours::professional_id.eq(professional))
            .select((
                working_hours::weekday,
                working_hours::starts_at,
                working_hours::ends_at,
            ))
            .load::<(i16, NaiveTime, NaiveTime)>(&mut c)
            .await
    };
    let overrides = async {
        let mut c = conn;
        calendar_days::table
            .filter(calendar_days::day.between(days.0, days.1))
            .select((calendar_days::day, calendar_days::open))
            .load::<(NaiveDate, bool)>(&mut c)
            .await
    };
    let booked = async {
        let mut c = conn;
        appointments::table
            .filter(appointments::professional_id.eq(professional))
            .filter(appointments::blocked_from.ge(lookback))
            .filter(appointments::blocked_from.lt(window_to))
            .filter(appointments::blocked_until.gt(window_from))
            .filter(appointments::status.ne("cancelled"))
            .filter(appointments::visit_id.ne(ignoring))
            .select((appointments::blocked_from, appointments::blocked_until))
            .load::<(DateTime<Utc>, DateTime<Utc>)>(&mut c)
            .await
    };
    let off = async {
        let mut c = conn;
        time_off::table
            .filter(
                time_off::professional_id
                    .eq(professional)
                    .or(time_off::professional_id
                        .is_null()
                        .and(time_off::resource_id.is_null())),
            )
            .filter(time_off::starts_at.lt(window_to))
            .filter(time_off::ends_at.gt(window_from))
            .select((
                time_off::professional_id,
                time_off::starts_at,
                time_off::ends_at,
            ))
            .load::<(Option<Uuid>, DateTime<Utc>, DateTime<Utc>)>(&mut c)
            .await
    };
    let rooms_booked = async {
        if needed.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = conn;
        appointments::table
            .filter(appointments::resource_id.eq_any(&needed))
            .filter(appointments::blocked_from.ge(lookback))
            .filter(appointments::blocked_from.lt(window_to))
            .filter(appointments::blocked_until.gt(window_from))
            .filter(appointments::status.ne("cancelled"))
            .filter(appointments::visit_id.ne(ignoring))
            .select((
                appointments::resource_id,
                appointments::blocked_from,
                appointments::blocked_until,
            ))
            .load::<(Option<Uuid>, DateTime<Utc>, DateTime<Utc>)>(&mut c)
            .await
    };
    let rooms_off = async {
        if needed.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = conn;
        time_off::table
            .filter(time_off::resource_id.eq_any(&needed))
            .filter(time_off::starts_at.lt(window_to))
            .filter(time_off::ends_at.gt(window_from))
            .select((
                time_off::resource_id,
                time_off::starts_at,
                time_off::ends_at,
            ))
            .load::<(Option<Uuid>, DateTime<Utc>, DateTime<Utc>)>(&mut c)
            .await
    };
    let (week, overrides, booked, off, rooms_booked, rooms_off) =
        futures::try_join!(week, overrides, booked, off, rooms_booked, rooms_off)?;

    let mut closed = Vec::new();
    let mut day = days.0;
    while day <= days.1 {
        let national = holidays::on(day).is_some_and(|h| h.kind == HolidayKind::Holiday);
        let open = overrides
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(!national, |(_, open)| *open);
        if !open {
            closed.push(day);
        }
        day += Duration::days(1);
    }
    let busy = |(from, to)| Busy { from, to };
    let clinic_off: Vec<Busy> = off
        .iter()
        .filter(|(owner, _, _)| owner.is_none())
        .map(|&(_, s, e)| busy((s, e)))
        .collect();
    let off: Vec<Busy> = off.into_iter().map(|(_, s, e)| busy((s, e))).collect();
    let resource_busy = needed
        .iter()
        .map(|id| {
            let mut list: Vec<Busy> = rooms_booked
                .iter()
                .chain(&rooms_off)
                .filter(|(owner, _, _)| *owner == Some(*id))
                .map(|&(_, s, e)| busy((s, e)))
                .collect();
            // Closures of the whole clinic (time off of nobody in particular) close the
            // rooms too.
            list.extend(clinic_off.iter().copied());
            (*id, list)
        })
        .collect();

    Ok(Calendar {
        zone,
        granularity: Duration::minutes(i64::from(settings.granularity_minutes)),
        earliest: now + Duration::minutes(i64::from(settings.min_notice_minutes)),
        latest: now + Duration::days(i64::from(settings.max_advance_days)),
        closed,
        week: week.into_iter().map(|(w, s, e)| (w as u32, s, e)).collect(),
        busy: booked
            .into_iter()
            .map(busy)
            .chain(off.iter().copied())
            .collect(),
        off,
        resource_busy,
    })
}

/// A free start time.
#[derive(Debug, Object)]
pub struct AvailableSlot {
    /// In the clinic's time zone, with its offset.
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    pub professional_id: Uuid,
    /// The rooms or equipment the visit would use, one per service that needs one.
    pub resource_ids: Vec<Uuid>,
}

#[derive(Debug, Object)]
pub struct Availability {
    /// The clinic's IANA time zone.
    pub time_zone: String,
    pub slots: Vec<AvailableSlot>,
}

fn parse_ids(text: &str) -> Result<Vec<Uuid>, Error> {
    let ids: Result<Vec<Uuid>, _> = text.split(',').map(|s| s.trim().parse::<Uuid>()).collect();
    match ids {
        Ok(ids) if !ids.is_empty() && ids.len() <= 5 => Ok(ids),
        _ => Err(Error::invalid(
            "service_ids",
            "1 to 5 service ids, separated by commas, in visit order",
        )),
    }
}

/// The free starts of a visit of `service_ids` over the local days `from..=to`, with one
/// professional or with each who performs every service; checks the range.
pub async fn find(
    conn: &Conn,
    kernel: &Kernel,
    tenant: Uuid,
    service_ids: &[Uuid],
    days: (NaiveDate, NaiveDate),
    professional: Option<Uuid>,
) -> Result<Availability, Error> {
    let (from, to) = days;
    if to < from {
        return Err(Error::invalid("to", "a date on or after `from`"));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(Error::invalid("to", "at most 62 days after `from`"));
    }
    let (zone, settings, visit, mut people) = futures::try_join!(
        kernel.zones.zone(conn, tenant),
        crate::catalog::settings(conn, tenant),
        visit_parts(conn, service_ids),
        performers(conn, service_ids),
    )?;
    if let Some(wanted) = professional {
        if !people.contains(&wanted) {
            return Err(Error::invalid(
                "professional_id",
                "a professional who performs every service of the visit",
            ));
        }
        people = vec![wanted];
    }
    let mut slots = Vec::new();
    for person in people {
        let cal = load_calendar(conn, zone, &settings, person, &visit, (from, to), None).await?;
        slots.extend(
            free_slots(&cal, &visit, from, to)
                .into_iter()
                .map(|s| (person, s)),
        );
    }
    slots.sort_by_key(|(p, s)| (s.start, *p));
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).fixed_offset();
    Ok(Availability {
        time_zone: zone.name().to_owned(),
        slots: slots
            .into_iter()
            .map(|(person, s)| AvailableSlot {
                start: local(s.start),
                end: local(s.end),
                professional_id: person,
                resource_ids: s.resources,
            })
            .collect(),
    })
}

#[derive(Debug, Clone, Copy)]
pub struct AvailabilityApi;

#[OpenApi(prefix_path = "/api/v1", tag = "AgendaTags::Agenda")]
impl AvailabilityApi {
    /// Free start times
    ///
    /// For a visit of one or more services (back to back, in the order given), optionally
    /// with one professional, over the local days `from` to `to` (at most 62 days).
    ///
    /// Permission: `availability:read`.
    #[oai(
        path = "/availability",
        method = "get",
        operation_id = "get_availability"
    )]
    async fn get_availability(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        #[oai(validator(max_length = 200))] service_ids: Query<String>,
        /// First local day, YYYY-MM-DD.
        #[oai(validator(max_length = 40))]
        from: Query<String>,
        /// Last local day, YYYY-MM-DD.
        #[oai(validator(max_length = 40))]
        to: Query<String>,
        professional_id: Query<Option<Uuid>>,
    ) -> ApiResult<Json<Availability>> {
        let actor = kernel.authorize(&auth, &perm::AVAILABILITY_READ).await?;
        let ids = parse_ids(&service_ids.0)?;
        let days = (
            crate::appointments::parse_day("from", &from.0)?,
            crate::appointments::parse_day("to", &to.0)?,
        );
        let kernel_ref: &Kernel = &kernel;
        let tenant = actor.tenant_id;
        // Reads only: no transaction around them.
        let availability = kernel
            .db
            .tenant_read(actor.scope(), |conn| {
                async move { find(conn, kernel_ref, tenant, &ids, days, professional_id.0).await }
                    .scope_boxed()
            })
            .await?;
        Ok(Json(availability))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn calendar(zone: Tz, week: Vec<(u32, NaiveTime, NaiveTime)>) -> Calendar {
        Calendar {
            zone,
            granularity: Duration::minutes(30),
            earliest: DateTime::<Utc>::MIN_UTC,
            latest: DateTime::<Utc>::MAX_UTC,
            closed: Vec::new(),
            week,
            busy: Vec::new(),
            off: Vec::new(),
            resource_busy: Vec::new(),
        }
    }

    fn part(minutes: i64, buffer: i64) -> VisitPart {
        VisitPart {
            service_id: Uuid::nil(),
            name: String::new(),
            price_cents: 0,
            currency: "BRL".to_owned(),
            duration: Duration::minutes(minutes),
            buffer_after: Duration::minutes(buffer),
            resources: Vec::new(),
        }
    }

    fn local(slots: &[Slot], zone: Tz) -> Vec<String> {
        slots
            .iter()
            .map(|s| s.start.with_timezone(&zone).format("%H:%M").to_string())
            .collect()
    }

    #[test]
    fn breaks_and_buffers_shape_the_day() {
        let zone = chrono_tz::America::Sao_Paulo;
        let mut cal = calendar(zone, vec![(4, t(9, 0), t(11, 0)), (4, t(13, 0), t(14, 0))]);
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(
            local(&free_slots(&cal, &[part(60, 0)], day, day), zone),
            ["09:00", "09:30", "10:00", "13:00"]
        );
        // An appointment 10:00–10:30 with a 15-minute buffer blocks until 10:45.
        let at = |h, m| {
            zone.with_ymd_and_hms(2026, 12, 3, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        cal.busy.push(Busy {
            from: at(10, 0),
            to: at(10, 45),
        });
        assert_eq!(
            local(&free_slots(&cal, &[part(30, 0)], day, day), zone),
            ["09:00", "09:30", "13:00", "13:30"]
        );
        // A service's own buffer must not run into the next appointment either.
        assert_eq!(
            local(&free_slots(&cal, &[part(30, 30)], day, day), zone),
            ["09:00", "13:00", "13:30"]
        );
        cal.closed.push(day);
        assert!(free_slots(&cal, &[part(30, 0)], day, day).is_empty());
    }

    #[test]
    fn a_day_without_midnight_in_sao_paulo_2018() {
        // On 2018-11-04 clocks in São Paulo went from 00:00 to 01:00.
        let zone = chrono_tz::America::Sao_Paulo;
        let cal = calendar(zone, vec![(7, t(0, 0), t(2, 0))]);
        let day = NaiveDate::from_ymd_opt(2018, 11, 4).unwrap();
        let slots = free_slots(&cal, &[part(30, 0)], day, day);
        assert_eq!(
            local(&slots, zone),
            ["01:00", "01:30"],
            "00:00 and 00:30 did not exist"
        );
        assert_eq!(slots[0].start.to_rfc3339(), "2018-11-04T03:00:00+00:00");
    }

    #[test]
    fn new_york_springs_forward_and_falls_back() {
        let zone = chrono_tz::America::New_York;
        let cal = calendar(zone, vec![(7, t(1, 0), t(4, 0))]);
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(
            local(&free_slots(&cal, &[part(30, 0)], spring, spring), zone),
            ["01:00", "01:30", "03:00", "03:30"]
        );
        let fall = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let slots = free_slots(&cal, &[part(60, 0)], fall, fall);
        // 01:00 happens twice; the first one is offered, and offsets are right after it.
        assert_eq!(slots[0].start.to_rfc3339(), "2026-11-01T05:00:00+00:00");
        assert_eq!(
            slots.last().unwrap().start.to_rfc3339(),
            "2026-11-01T08:00:00+00:00"
        );
    }

    #[test]
    fn a_needed_room_must_be_free_too() {
        let zone = chrono_tz::America::Sao_Paulo;
        let room = Uuid::now_v7();
        let mut cal = calendar(zone, vec![(4, t(9, 0), t(11, 0))]);
        let at = |h, m| {
            zone.with_ymd_and_hms(2026, 12, 3, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        cal.resource_busy.push((
            room,
            vec![Busy {
                from: at(9, 0),
                to: at(10, 0),
            }],
        ));
        let laser = VisitPart {
            resources: vec![room],
            ..part(60, 0)
        };
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let slots = free_slots(&cal, &[laser], day, day);
        assert_eq!(local(&slots, zone), ["10:00"]);
        assert_eq!(slots[0].resources, [room]);
    }

    #[test]
    fn a_visit_of_several_services_needs_their_total_time() {
        let zone = chrono_tz::America::Sao_Paulo;
        let cal = calendar(zone, vec![(4, t(9, 0), t(11, 0))]);
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let slots = free_slots(&cal, &[part(60, 15), part(30, 15)], day, day);
        assert_eq!(local(&slots, zone), ["09:00", "09:30"]);
        assert_eq!(slots[1].end - slots[1].start, Duration::minutes(90));
    }
}
