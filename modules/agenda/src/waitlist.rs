//! The waitlist: patients waiting for a service (with a preferred professional, days and
//! times). When a cancellation or a move frees time that suits an entry, the outbox gets
//! `waitlist.slot_available`, for the assistant or the front desk to offer it.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::BearerAuth;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::events;
use harmony_core::http::ApiResult;
use harmony_core::validate::{self, Fields};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::availability::{self, free_slots};
use crate::catalog;
use crate::hours::hhmm;
use crate::schema::{service_professionals, waitlist_entries as we};
use crate::{AgendaTags, perm};
use harmony_core::http::JsonBody;

/// A preferred period: a weekday and a local time window.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct Period {
    /// 1 (Monday) to 7 (Sunday).
    pub weekday: i16,
    /// HH:MM, local.
    pub from: String,
    /// HH:MM, local; after `from`.
    pub to: String,
}

/// A waitlist entry.
#[derive(Debug, Clone, Object)]
pub struct WaitlistEntry {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub service_id: Uuid,
    /// Any professional who performs the service, when absent.
    #[oai(nullable)]
    pub professional_id: Option<Uuid>,
    /// Preferred periods; empty means any time.
    pub periods: Vec<Period>,
    #[oai(nullable)]
    pub earliest: Option<NaiveDate>,
    #[oai(nullable)]
    pub latest: Option<NaiveDate>,
    /// `waiting`, `notified` (a slot was offered; still waiting), `booked` or `withdrawn`.
    pub status: String,
    #[oai(nullable)]
    pub notes: Option<String>,
    #[oai(nullable)]
    pub notified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A new waitlist entry.
#[derive(Debug, Object)]
pub struct NewWaitlistEntry {
    pub patient_id: Uuid,
    pub service_id: Uuid,
    #[oai(nullable)]
    pub professional_id: Option<Uuid>,
    #[oai(default)]
    pub periods: Vec<Period>,
    /// YYYY-MM-DD.
    #[oai(nullable)]
    pub earliest: Option<NaiveDate>,
    /// YYYY-MM-DD, on or after `earliest`.
    #[oai(nullable)]
    pub latest: Option<NaiveDate>,
    /// Up to 500 characters.
    #[oai(nullable)]
    pub notes: Option<String>,
}

type EntryRow = (
    Uuid,
    Uuid,
    Uuid,
    Option<Uuid>,
    serde_json::Value,
    Option<NaiveDate>,
    Option<NaiveDate>,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

fn entry(
    (
        id,
        patient,
        service,
        professional,
        periods,
        earliest,
        latest,
        status,
        notes,
        notified,
        created,
    ): EntryRow,
) -> WaitlistEntry {
    WaitlistEntry {
        id,
        patient_id: patient,
        service_id: service,
        professional_id: professional,
        periods: serde_json::from_value(periods).unwrap_or_default(),
        earliest,
        latest,
        status,
        notes,
        notified_at: notified,
        created_at: created,
    }
}

macro_rules! entry_columns {
    () => {
        (
            we::id,
            we::patient_id,
            we::service_id,
            we::professional_id,
            we::periods,
            we::earliest,
            we::latest,
            we::status,
            we::notes,
            we::notified_at,
            we::created_at,
        )
    };
}

/// Whether a local start falls in one of the periods (any, when there are none).
fn suits(periods: &[Period], weekday: u32, time: NaiveTime) -> bool {
    periods.is_empty()
        || periods.iter().any(|p| {
            u32::try_from(p.weekday).is_ok_and(|w| w == weekday)
                && matches!((hhmm(&p.from), hhmm(&p.to)), (Ok(f), Ok(t)) if f <= time && time < t)
        })
}

/// Marks the patient's waiting entries for these services as booked.
pub async fn booked(mut conn: &Conn, patient: Uuid, services: &[Uuid]) -> Result<(), Error> {
    diesel::update(
        we::table
            .filter(we::patient_id.eq(patient))
            .filter(we::service_id.eq_any(services))
            .filter(we::status.eq_any(["waiting", "notified"])),
    )
    .set((we::status.eq("booked"), we::updated_at.eq(Utc::now())))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// What `waitlist.slot_available` carries.
#[derive(Debug, Serialize)]
struct SlotAvailable {
    waitlist_entry_id: Uuid,
    patient_id: Uuid,
    service_id: Uuid,
    professional_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// Offers time freed on `professional`'s calendar (cancelled or moved appointments, as
/// `[from, until)` ranges) to the waiting entries it suits, oldest first: an entry is told
/// when one of its service's free starts now falls in the freed time, on its days, in its
/// periods. Runs in the transaction that freed the time, so the event commits with it.
pub async fn offer(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    professional: Uuid,
    freed: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<(), Error> {
    let (Some(from), Some(until)) = (
        freed.iter().map(|f| f.0).min(),
        freed.iter().map(|f| f.1).max(),
    ) else {
        return Ok(());
    };
    if until <= Utc::now() {
        return Ok(());
    }
    let zone = kernel.zones.zone(conn, tenant).await?;
    let day = from.with_timezone(&zone).date_naive();
    let last_day = until.with_timezone(&zone).date_naive();
    let performed: Vec<Uuid> = service_professionals::table
        .filter(service_professionals::professional_id.eq(professional))
        .select(service_professionals::service_id)
        .load(conn)
        .await?;
    let candidates: Vec<EntryRow> = we::table
        .filter(we::status.eq_any(["waiting", "notified"]))
        .filter(we::service_id.eq_any(&performed))
        .filter(
            we::professional_id
                .is_null()
                .or(we::professional_id.eq(professional)),
        )
        .filter(we::earliest.is_null().or(we::earliest.le(last_day)))
        .filter(we::latest.is_null().or(we::latest.ge(day)))
        .order(we::created_at)
        .limit(20)
        .select(entry_columns!())
        .load(conn)
        .await?;
    if candidates.is_empty() {
        return Ok(());
    }
    let settings = catalog::settings(conn, tenant).await?;
    for candidate in candidates.into_iter().map(entry) {
        let visit = availability::visit_parts(conn, &[candidate.service_id]).await?;
        let cal = availability::load_calendar(
            conn,
            zone,
            &settings,
            professional,
            &visit,
            (day, last_day),
            None,
        )
        .await?;
        let slot = free_slots(&cal, &visit, day, last_day)
            .into_iter()
            .find(|s| {
                let local = s.start.with_timezone(&zone);
                let date = local.date_naive();
                s.start >= from
                    && s.start < until
                    && candidate.earliest.is_none_or(|e| date >= e)
                    && candidate.latest.is_none_or(|l| date <= l)
                    && suits(
                        &candidate.periods,
                        local.weekday().number_from_monday(),
                        local.time(),
                    )
            });
        let Some(slot) = slot else { continue };
        events::publish(
            conn,
            tenant,
            "waitlist.slot_available",
            &SlotAvailable {
                waitlist_entry_id: candidate.id,
                patient_id: candidate.patient_id,
                service_id: candidate.service_id,
                professional_id: professional,
                start: slot.start,
                end: slot.end,
            },
        )
        .await?;
        let now = Utc::now();
        diesel::update(we::table.filter(we::id.eq(candidate.id)))
            .set((
                we::status.eq("notified"),
                we::notified_at.eq(Some(now)),
                we::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[derive(Debug, ApiResponse)]
pub enum EntryCreated {
    /// On the waitlist.
    #[oai(status = 201)]
    Created(Json<WaitlistEntry>),
}

#[derive(Debug, Clone, Copy)]
pub struct WaitlistApi;

#[OpenApi(prefix_path = "/api/v1", tag = "AgendaTags::Agenda")]
impl WaitlistApi {
    /// Put a patient on the waitlist
    ///
    /// Permission: `waitlist:manage`.
    #[oai(
        path = "/waitlist",
        method = "post",
        operation_id = "create_waitlist_entry"
    )]
    async fn create_waitlist_entry(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<NewWaitlistEntry>,
    ) -> ApiResult<EntryCreated> {
        let actor = kernel.authorize(&auth, &perm::WAITLIST_MANAGE).await?;
        let body = body.0;
        let mut f = Fields::default();
        for (i, p) in body.periods.iter().enumerate() {
            f.check(
                &format!("periods[{i}].weekday"),
                if (1..=7).contains(&p.weekday) {
                    Ok(())
                } else {
                    Err("1 (Monday) to 7 (Sunday)")
                },
            );
            let from = f.check(&format!("periods[{i}].from"), hhmm(&p.from));
            let to = f.check(&format!("periods[{i}].to"), hhmm(&p.to));
            if let (Some(a), Some(b)) = (from, to)
                && b <= a
            {
                f.check::<()>(&format!("periods[{i}].to"), Err("a time after `from`"));
            }
        }
        if body.periods.len() > 21 {
            f.check::<()>("periods", Err("at most 21 periods"));
        }
        if let (Some(e), Some(l)) = (body.earliest, body.latest)
            && l < e
        {
            f.check::<()>("latest", Err("a date on or after `earliest`"));
        }
        let notes = body
            .notes
            .as_deref()
            .and_then(|n| f.check("notes", validate::text(n, 500, true)));
        f.finish()?;
        let periods = serde_json::to_value(&body.periods).map_err(Error::internal)?;
        let tenant = actor.tenant_id;
        let created = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    harmony_patients::service::find_by_id(conn, body.patient_id)
                        .await?
                        .ok_or(Error::NotFound { what: "patient" })?;
                    availability::visit_parts(conn, &[body.service_id]).await?;
                    if let Some(p) = body.professional_id
                        && !availability::performers(conn, &[body.service_id])
                            .await?
                            .contains(&p)
                    {
                        return Err(Error::invalid(
                            "professional_id",
                            "a professional who performs the service",
                        ));
                    }
                    let id = Uuid::now_v7();
                    diesel::insert_into(we::table)
                        .values((
                            we::tenant_id.eq(tenant),
                            we::id.eq(id),
                            we::patient_id.eq(body.patient_id),
                            we::service_id.eq(body.service_id),
                            we::professional_id.eq(body.professional_id),
                            we::periods.eq(&periods),
                            we::earliest.eq(body.earliest),
                            we::latest.eq(body.latest),
                            we::notes.eq(notes.as_deref().filter(|n| !n.is_empty())),
                        ))
                        .execute(conn)
                        .await?;
                    let row: EntryRow = we::table
                        .filter(we::id.eq(id))
                        .select(entry_columns!())
                        .first(conn)
                        .await?;
                    Ok::<_, Error>(entry(row))
                }
                .scope_boxed()
            })
            .await?;
        Ok(EntryCreated::Created(Json(created)))
    }

    /// The waitlist
    ///
    /// Oldest first; by default the entries still waiting (`waiting` and `notified`).
    ///
    /// Permission: `waitlist:read`.
    #[oai(path = "/waitlist", method = "get", operation_id = "list_waitlist")]
    async fn list_waitlist(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        service_id: Query<Option<Uuid>>,
        patient_id: Query<Option<Uuid>>,
        /// Include booked and withdrawn entries.
        #[oai(default)]
        all: Query<bool>,
    ) -> ApiResult<Json<Vec<WaitlistEntry>>> {
        let actor = kernel.authorize(&auth, &perm::WAITLIST_READ).await?;
        let rows = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let mut query = we::table.select(entry_columns!()).into_boxed();
                    if !all.0 {
                        query = query.filter(we::status.eq_any(["waiting", "notified"]));
                    }
                    if let Some(s) = service_id.0 {
                        query = query.filter(we::service_id.eq(s));
                    }
                    if let Some(p) = patient_id.0 {
                        query = query.filter(we::patient_id.eq(p));
                    }
                    let rows: Vec<EntryRow> =
                        query.order(we::created_at).limit(500).load(conn).await?;
                    Ok::<_, Error>(rows)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(rows.into_iter().map(entry).collect()))
    }

    /// Take a patient off the waitlist
    ///
    /// Permission: `waitlist:manage`.
    #[oai(
        path = "/waitlist/:id/withdraw",
        method = "post",
        operation_id = "withdraw_waitlist_entry"
    )]
    async fn withdraw_waitlist_entry(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<WaitlistEntry>> {
        let actor = kernel.authorize(&auth, &perm::WAITLIST_MANAGE).await?;
        let row = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let changed = diesel::update(we::table.filter(we::id.eq(id.0)))
                        .set((we::status.eq("withdrawn"), we::updated_at.eq(Utc::now())))
                        .execute(conn)
                        .await?;
                    if changed == 0 {
                        return Err(Error::NotFound {
                            what: "waitlist entry",
                        });
                    }
                    let row: EntryRow = we::table
                        .filter(we::id.eq(id.0))
                        .select(entry_columns!())
                        .first(conn)
                        .await?;
                    Ok(row)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(entry(row)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_match_weekday_and_local_time() {
        let mornings = vec![Period {
            weekday: 2,
            from: "08:00".into(),
            to: "12:00".into(),
        }];
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(suits(&mornings, 2, t(8, 0)));
        assert!(suits(&mornings, 2, t(11, 30)));
        assert!(!suits(&mornings, 2, t(12, 0)));
        assert!(!suits(&mornings, 3, t(9, 0)));
        assert!(suits(&[], 7, t(23, 0)));
    }
}
