//! Calendar feeds: a secret iCalendar (RFC 5545) URL per professional that calendar apps
//! subscribe to. It shows the services and, if the clinic allows, the patient's first
//! name; never anything else about the patient. Only the SHA-256 of the secret is stored;
//! creating a new URL retires the old one.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::audit::{self, Access};
use harmony_core::auth::{Actor, ActorKind, BearerAuth};
use harmony_core::db::TenantScope;
use harmony_core::error::Error;
use harmony_core::http::{ApiResult, RequestContext};
use harmony_core::tenancy::active_professionals;
use harmony_core::util::{b64url_encode, random_bytes, sha256};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::booking;
use crate::schema::{appointments, calendar_feeds};
use crate::{AgendaTags, catalog, perm};

/// How far back and ahead a feed reaches.
const PAST_DAYS: i64 = 30;
const AHEAD_DAYS: i64 = 180;

/// A professional's feed URL. Shown once, when created.
#[derive(Debug, Object)]
pub struct CalendarFeed {
    pub professional_id: Uuid,
    /// Subscribe to this URL in a calendar app; anyone holding it can read the feed.
    pub url: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, ApiResponse)]
pub enum FeedCreated {
    /// A new URL; any previous one stops working.
    #[oai(status = 201)]
    Created(Json<CalendarFeed>),
}

#[derive(Debug, ApiResponse)]
pub enum FeedRevoked {
    /// The URL stops working.
    #[oai(status = 204)]
    Revoked,
}

#[derive(Debug, ApiResponse)]
pub enum IcsFeed {
    /// The professional's appointments from 30 days ago to 180 days ahead.
    #[oai(status = 200, content_type = "text/calendar; charset=utf-8")]
    Calendar(PlainText<String>),
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line folded at 75 octets, without splitting a character (§3.1).
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// One event of a feed.
pub struct FeedEvent {
    pub id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub confirmed: bool,
    pub updated: DateTime<Utc>,
}

/// Renders a calendar.
pub fn render(name: &str, events: &[FeedEvent]) -> String {
    let mut out = String::new();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Harmony//Agenda//PT-BR",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ] {
        line(&mut out, l);
    }
    line(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    for e in events {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}@harmony", e.id));
        line(&mut out, &format!("DTSTAMP:{}", stamp(e.updated)));
        line(&mut out, &format!("LAST-MODIFIED:{}", stamp(e.updated)));
        line(&mut out, &format!("DTSTART:{}", stamp(e.start)));
        line(&mut out, &format!("DTEND:{}", stamp(e.end)));
        line(&mut out, &format!("SUMMARY:{}", escape(&e.summary)));
        let status = if e.confirmed {
            "CONFIRMED"
        } else {
            "TENTATIVE"
        };
        line(&mut out, &format!("STATUS:{status}"));
        line(&mut out, "TRANSP:OPAQUE");
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

/// Splits `<tenant>.<professional>.<secret>[.ics]`.
fn parse_token(token: &str) -> Option<(Uuid, Uuid, Vec<u8>)> {
    let token = token.strip_suffix(".ics").unwrap_or(token);
    let mut parts = token.splitn(3, '.');
    let tenant = parts.next()?.parse().ok()?;
    let professional = parts.next()?.parse().ok()?;
    let secret = parts.next()?;
    (secret.len() >= 40).then(|| (tenant, professional, sha256(secret.as_bytes())))
}

#[derive(Debug, Clone, Copy)]
pub struct FeedApi;

#[OpenApi(prefix_path = "/api/v1", tag = "AgendaTags::Agenda")]
impl FeedApi {
    /// Create a professional's calendar feed URL
    ///
    /// Professionals create their own; managers anyone's. A new URL retires the old one.
    ///
    /// Permission: `calendar_feeds:manage`.
    #[oai(
        path = "/professionals/:id/calendar-feed",
        method = "post",
        operation_id = "create_calendar_feed"
    )]
    async fn create_calendar_feed(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<FeedCreated> {
        let actor = own_or_managed(&kernel, &auth, id.0).await?;
        let secret = b64url_encode(&random_bytes::<32>());
        let hash = sha256(secret.as_bytes());
        let tenant = actor.tenant_id;
        let created_at = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    if active_professionals(conn, &[id.0]).await?.is_empty() {
                        return Err(Error::NotFound {
                            what: "professional",
                        });
                    }
                    let now = Utc::now();
                    diesel::insert_into(calendar_feeds::table)
                        .values((
                            calendar_feeds::tenant_id.eq(tenant),
                            calendar_feeds::professional_id.eq(id.0),
                            calendar_feeds::token_hash.eq(&hash),
                            calendar_feeds::created_at.eq(now),
                        ))
                        .on_conflict((calendar_feeds::tenant_id, calendar_feeds::professional_id))
                        .do_update()
                        .set((
                            calendar_feeds::token_hash.eq(&hash),
                            calendar_feeds::created_at.eq(now),
                            calendar_feeds::last_used_at.eq(None::<DateTime<Utc>>),
                        ))
                        .execute(conn)
                        .await?;
                    Ok::<_, Error>(now)
                }
                .scope_boxed()
            })
            .await?;
        let base = kernel.config.server.public_url.trim_end_matches('/');
        Ok(FeedCreated::Created(Json(CalendarFeed {
            professional_id: id.0,
            url: format!(
                "{base}/api/v1/calendar-feeds/{tenant}.{}.{secret}.ics",
                id.0
            ),
            created_at,
        })))
    }

    /// Revoke a professional's calendar feed URL
    ///
    /// Professionals revoke their own; managers anyone's.
    ///
    /// Permission: `calendar_feeds:manage`.
    #[oai(
        path = "/professionals/:id/calendar-feed",
        method = "delete",
        operation_id = "revoke_calendar_feed"
    )]
    async fn revoke_calendar_feed(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<FeedRevoked> {
        let actor = own_or_managed(&kernel, &auth, id.0).await?;
        let removed = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    Ok::<_, Error>(
                        diesel::delete(
                            calendar_feeds::table.filter(calendar_feeds::professional_id.eq(id.0)),
                        )
                        .execute(conn)
                        .await?,
                    )
                }
                .scope_boxed()
            })
            .await?;
        if removed == 0 {
            return Err(Error::NotFound {
                what: "calendar feed",
            }
            .into());
        }
        Ok(FeedRevoked::Revoked)
    }

    /// A calendar feed (iCalendar)
    ///
    /// The secret URL is the credential: no token is needed. Unknown or revoked URLs are
    /// 404s. Each fetch is recorded in the audit log.
    #[oai(
        path = "/calendar-feeds/:token",
        method = "get",
        operation_id = "get_calendar_feed"
    )]
    async fn get_calendar_feed(
        &self,
        kernel: Data<&Kernel>,
        request: Data<&Arc<RequestContext>>,
        #[oai(validator(max_length = 200))] token: Path<String>,
    ) -> ApiResult<IcsFeed> {
        let not_found = || Error::NotFound {
            what: "calendar feed",
        };
        let (tenant, professional, hash) = parse_token(&token.0).ok_or_else(not_found)?;
        let scope = TenantScope::clinic(tenant);
        let reader = Actor {
            kind: ActorKind::User,
            user_id: professional,
            tenant_id: tenant,
            request: request.0.clone(),
        };
        let reader = &reader;
        let body = kernel
            .db
            .tenant(scope, |conn| {
                async move {
                    let found = diesel::update(
                        calendar_feeds::table
                            .filter(calendar_feeds::professional_id.eq(professional))
                            .filter(calendar_feeds::token_hash.eq(&hash)),
                    )
                    .set(calendar_feeds::last_used_at.eq(Some(Utc::now())))
                    .execute(conn)
                    .await?;
                    if found == 0
                        || active_professionals(conn, &[professional])
                            .await?
                            .is_empty()
                    {
                        return Err(not_found());
                    }
                    let settings = catalog::settings(conn, tenant).await?;
                    let now = Utc::now();
                    let visits: Vec<Uuid> = appointments::table
                        .filter(appointments::professional_id.eq(professional))
                        .filter(appointments::id.eq(appointments::visit_id))
                        .filter(appointments::starts_at.ge(now - Duration::days(PAST_DAYS)))
                        .filter(appointments::starts_at.lt(now + Duration::days(AHEAD_DAYS)))
                        .filter(appointments::status.ne("cancelled"))
                        .order(appointments::starts_at)
                        .limit(5000)
                        .select(appointments::visit_id)
                        .load(conn)
                        .await?;
                    let rows = booking::load_rows(conn, &visits).await?;
                    // Times are written in UTC, so any zone serves to assemble them.
                    let visits = booking::assemble(chrono_tz::UTC, &visits, rows);
                    let mut events = Vec::with_capacity(visits.len());
                    for visit in visits {
                        let mut summary = visit
                            .services
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" + ");
                        if settings.feed_shows_patient_name
                            && let Some(p) =
                                harmony_patients::service::find_by_id(conn, visit.patient_id)
                                    .await?
                        {
                            let _ = write!(summary, " — {}", p.first_name);
                        }
                        events.push(FeedEvent {
                            id: visit.id,
                            start: visit.start.with_timezone(&Utc),
                            end: visit.end.with_timezone(&Utc),
                            summary,
                            confirmed: visit.status != "scheduled",
                            updated: visit.updated_at,
                        });
                    }
                    audit::record(
                        conn,
                        reader,
                        Access {
                            subject_kind: None,
                            subject_id: None,
                            resource: "calendar_feed",
                            action: "read",
                        },
                    )
                    .await?;
                    Ok::<_, Error>(render("Harmony", &events))
                }
                .scope_boxed()
            })
            .await?;
        Ok(IcsFeed::Calendar(PlainText(body)))
    }
}

/// Managers manage anyone's feed; a professional only their own.
async fn own_or_managed(
    kernel: &Kernel,
    auth: &BearerAuth,
    professional: Uuid,
) -> Result<Actor, Error> {
    let refusal = (
        "own_feed_only",
        "professionals may only manage their own calendar feed",
    );
    crate::hours::self_or_manager(kernel, auth, &perm::FEEDS_MANAGE, professional, refusal).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_long_lines_folded_on_character_boundaries() {
        assert_eq!(escape("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
        let mut out = String::new();
        line(&mut out, &format!("SUMMARY:{}", "ç".repeat(60)));
        for physical in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(physical.len() <= 75, "{physical}");
        }
        assert_eq!(
            out.replace("\r\n ", "").trim_end(),
            format!("SUMMARY:{}", "ç".repeat(60))
        );
    }

    #[test]
    fn tokens_carry_clinic_professional_and_a_long_secret() {
        let (t, p) = (Uuid::now_v7(), Uuid::now_v7());
        let secret = "x".repeat(43);
        let parsed = parse_token(&format!("{t}.{p}.{secret}.ics")).unwrap();
        assert_eq!((parsed.0, parsed.1), (t, p));
        assert_eq!(parsed.2, sha256(secret.as_bytes()));
        assert!(parse_token(&format!("{t}.{p}.short")).is_none());
        assert!(parse_token("nonsense").is_none());
    }
}
