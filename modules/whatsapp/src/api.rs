//! The clinic's side of WhatsApp: its number, access token (stored sealed, never shown
//! again), templates, reminder times and what the assistant tells patients.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::auth::BearerAuth;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use harmony_core::http::ApiResult;
use harmony_core::sql::sql;
use harmony_core::validate::{self, Fields};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::schema::whatsapp_settings as ws;
use crate::store::{self, Template, Templates};
use crate::{Whatsapp, WhatsappTags, perm};
use harmony_core::http::JsonBody;

/// A clinic's WhatsApp settings as staff see them: the access token only as whether one is
/// stored.
#[derive(Debug, Clone, Object)]
pub struct WhatsappSettings {
    /// Whether the assistant answers and notices go out.
    pub enabled: bool,
    /// The Cloud API phone number id (digits), which routes Meta's webhooks here.
    #[oai(nullable)]
    pub phone_number_id: Option<String>,
    /// The number as patients see it, e.g. `+55 11 4000-1234`.
    #[oai(nullable)]
    pub display_phone_number: Option<String>,
    /// Whether an access token is stored (it is never shown).
    pub access_token_set: bool,
    /// Minutes before an appointment at which a reminder goes out (at most 4).
    pub reminder_offsets_minutes: Vec<i32>,
    pub templates: Templates,
    /// The clinic's address, as the assistant tells it.
    #[oai(nullable)]
    pub address: Option<String>,
    /// Opening hours in words, as the assistant tells them.
    #[oai(nullable)]
    pub opening_hours: Option<String>,
    #[oai(nullable)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// New WhatsApp settings; every field replaces the stored one.
#[derive(Debug, Clone, Object)]
pub struct WhatsappSettingsInput {
    #[oai(default = "yes")]
    pub enabled: bool,
    /// Digits only, 1 to 32.
    #[oai(nullable)]
    pub phone_number_id: Option<String>,
    #[oai(nullable)]
    pub display_phone_number: Option<String>,
    /// A Graph API access token with `whatsapp_business_messaging`. Absent: keep the
    /// stored one; `null`: remove it.
    #[oai(write_only)]
    #[oai(nullable)]
    pub access_token: MaybeUndefined<String>,
    /// Minutes before the start, each from 15 to 10080 (a week), at most 4, distinct.
    #[oai(default = "default_offsets")]
    pub reminder_offsets_minutes: Vec<i32>,
    /// Absent or `null`: no templates.
    #[oai(nullable)]
    pub templates: Option<Templates>,
    /// At most 500 characters.
    #[oai(nullable)]
    pub address: Option<String>,
    /// At most 500 characters.
    #[oai(nullable)]
    pub opening_hours: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_offsets() -> Vec<i32> {
    vec![1440, 120]
}

/// What was checked and is about to be stored.
struct Checked {
    enabled: bool,
    phone_number_id: Option<String>,
    display_phone_number: Option<String>,
    access_token: MaybeUndefined<String>,
    offsets: Vec<i32>,
    templates: Templates,
    address: Option<String>,
    opening_hours: Option<String>,
}

impl WhatsappSettingsInput {
    fn check(self) -> Result<Checked, Error> {
        let mut f = Fields::default();
        let phone_number_id = self
            .phone_number_id
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .and_then(|id| {
                f.check(
                    "phone_number_id",
                    if id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()) {
                        Ok(id)
                    } else {
                        Err("the Cloud API phone number id: 1 to 32 digits")
                    },
                )
            });
        let display_phone_number = self
            .display_phone_number
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| f.check("display_phone_number", validate::text(&s, 20, false)));
        let access_token = match self.access_token {
            MaybeUndefined::Value(token) => {
                let token = token.trim().to_owned();
                let fine = (20..=1024).contains(&token.len())
                    && token.bytes().all(|b| b.is_ascii_graphic());
                if !fine {
                    f.check::<()>(
                        "access_token",
                        Err("a Graph API access token: 20 to 1024 printable characters"),
                    );
                }
                MaybeUndefined::Value(token)
            }
            other => other,
        };
        let mut offsets = self.reminder_offsets_minutes;
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let distinct = offsets.windows(2).all(|w| w[0] != w[1]);
        let in_range = offsets.iter().all(|m| (15..=10080).contains(m));
        if offsets.len() > 4 || !distinct || !in_range {
            f.check::<()>(
                "reminder_offsets_minutes",
                Err("at most 4 distinct minutes before the start, each from 15 to 10080"),
            );
        }
        let templates = self.templates.unwrap_or_default();
        for (field, template) in [
            ("templates.reminder", &templates.reminder),
            ("templates.confirmation", &templates.confirmation),
            ("templates.waitlist", &templates.waitlist),
        ] {
            if let Some(t) = template {
                f.check(field, check_template(t));
            }
        }
        let address = self
            .address
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| f.check("address", validate::text(&s, 500, true)));
        let opening_hours = self
            .opening_hours
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| f.check("opening_hours", validate::text(&s, 500, true)));
        f.finish()?;
        Ok(Checked {
            enabled: self.enabled,
            phone_number_id,
            display_phone_number,
            access_token,
            offsets,
            templates,
            address,
            opening_hours,
        })
    }
}

/// A template's name as the WhatsApp Manager allows it, and a language code like `pt_BR`.
fn check_template(t: &Template) -> Result<(), &'static str> {
    let name_ok = (1..=512).contains(&t.name.len())
        && t.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let lang = t.language.as_bytes();
    let lang_ok = match lang.len() {
        2 | 3 => lang.iter().all(u8::is_ascii_lowercase),
        5 | 6 => {
            let (base, region) = lang.split_at(lang.len() - 3);
            base.iter().all(u8::is_ascii_lowercase)
                && region[0] == b'_'
                && region[1..].iter().all(u8::is_ascii_uppercase)
        }
        _ => false,
    };
    if name_ok && lang_ok {
        Ok(())
    } else {
        Err("a template name (lowercase letters, digits, _) and a language code such as pt_BR")
    }
}

#[derive(Debug)]
pub struct WhatsappApi;

#[OpenApi(prefix_path = "/api/v1", tag = "WhatsappTags::Whatsapp")]
impl WhatsappApi {
    /// The clinic's WhatsApp settings
    ///
    /// Permission: `whatsapp_settings:manage`.
    #[oai(
        path = "/whatsapp/settings",
        method = "get",
        operation_id = "get_whatsapp_settings"
    )]
    async fn get_settings(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<WhatsappSettings>> {
        let actor = kernel.authorize(&auth, &perm::SETTINGS_MANAGE).await?;
        let tenant = actor.tenant_id;
        let settings = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move { view(conn, tenant).await }.scope_boxed()
            })
            .await?;
        Ok(Json(settings))
    }

    /// Change the clinic's WhatsApp settings
    ///
    /// The phone number id routes Meta's webhooks to this clinic: a number another clinic
    /// uses is a 409. The access token is stored sealed under the clinic's key.
    ///
    /// Permission: `whatsapp_settings:manage`.
    #[oai(
        path = "/whatsapp/settings",
        method = "put",
        operation_id = "update_whatsapp_settings"
    )]
    async fn update_settings(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<WhatsappSettingsInput>,
    ) -> ApiResult<Json<WhatsappSettings>> {
        let actor = kernel.authorize(&auth, &perm::SETTINGS_MANAGE).await?;
        let input = body.0.check()?;
        let whatsapp = Whatsapp::of(&kernel)?;
        let tenant = actor.tenant_id;
        claim_number(&kernel, tenant, input.phone_number_id.as_deref()).await?;
        whatsapp.forget_routes();
        let kernel_ref: &Kernel = &kernel;
        let user = actor.user_id;
        let settings = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    save(conn, kernel_ref, tenant, user, input).await?;
                    view(conn, tenant).await
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(settings))
    }
}

/// Points Meta's phone number id at the clinic (and frees the one it had): a number that
/// routes to another clinic is a 409.
async fn claim_number(kernel: &Kernel, tenant: Uuid, number: Option<&str>) -> Result<(), Error> {
    let number = number.map(str::to_owned);
    kernel
        .db
        .system("whatsapp.claim_number", |conn| {
            async move {
                sql("DELETE FROM whatsapp_routes WHERE tenant_id = $1 \
                     AND phone_number_id IS DISTINCT FROM $2")
                .bind::<SqlUuid, _>(tenant)
                .bind::<diesel::sql_types::Nullable<Text>, _>(number.as_deref())
                .execute(conn)
                .await?;
                let Some(number) = number else {
                    return Ok(());
                };
                let claimed = sql(
                    "INSERT INTO whatsapp_routes (phone_number_id, tenant_id) VALUES ($1, $2) \
                     ON CONFLICT (phone_number_id) DO UPDATE SET updated_at = now() \
                     WHERE whatsapp_routes.tenant_id = EXCLUDED.tenant_id",
                )
                .bind::<Text, _>(&number)
                .bind::<SqlUuid, _>(tenant)
                .execute(conn)
                .await?;
                if claimed == 0 {
                    return Err(Error::conflict(
                        "number_in_use",
                        "this phone number id is configured by another clinic",
                    ));
                }
                Ok(())
            }
            .scope_boxed()
        })
        .await
}

async fn save(
    conn: &mut Conn,
    kernel: &Kernel,
    tenant: Uuid,
    user: Uuid,
    input: Checked,
) -> Result<(), Error> {
    let templates = serde_json::to_value(&input.templates).map_err(Error::internal)?;
    let row = (
        ws::tenant_id.eq(tenant),
        ws::enabled.eq(input.enabled),
        ws::phone_number_id.eq(input.phone_number_id.clone()),
        ws::display_phone_number.eq(input.display_phone_number.clone()),
        ws::reminder_offsets_minutes.eq(input.offsets.clone()),
        ws::templates.eq(templates),
        ws::address.eq(input.address.clone()),
        ws::opening_hours.eq(input.opening_hours.clone()),
        ws::updated_by.eq(Some(user)),
        ws::updated_at.eq(Utc::now()),
    );
    diesel::insert_into(ws::table)
        .values(row.clone())
        .on_conflict(ws::tenant_id)
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    let sealed = match input.access_token {
        MaybeUndefined::Undefined => return Ok(()),
        MaybeUndefined::Null => None,
        MaybeUndefined::Value(token) => {
            let cipher = store::clinic_cipher(conn, kernel, tenant).await?;
            Some(store::seal_token(&cipher, &token))
        }
    };
    diesel::update(ws::table.find(tenant))
        .set(ws::access_token.eq(sealed))
        .execute(conn)
        .await?;
    Ok(())
}

async fn view(conn: &mut Conn, tenant: Uuid) -> Result<WhatsappSettings, Error> {
    type Row = (
        bool,
        Option<String>,
        Option<String>,
        bool,
        Vec<i32>,
        serde_json::Value,
        Option<String>,
        Option<String>,
        DateTime<Utc>,
    );
    let row: Option<Row> = ws::table
        .find(tenant)
        .select((
            ws::enabled,
            ws::phone_number_id,
            ws::display_phone_number,
            ws::access_token.is_not_null(),
            ws::reminder_offsets_minutes,
            ws::templates,
            ws::address,
            ws::opening_hours,
            ws::updated_at,
        ))
        .first(conn)
        .await
        .optional()?;
    let defaults = store::Settings::default();
    Ok(match row {
        Some((enabled, number, display, token, offsets, templates, address, hours, at)) => {
            WhatsappSettings {
                enabled,
                phone_number_id: number,
                display_phone_number: display,
                access_token_set: token,
                reminder_offsets_minutes: offsets,
                templates: serde_json::from_value(templates).unwrap_or_default(),
                address,
                opening_hours: hours,
                updated_at: Some(at),
            }
        }
        None => WhatsappSettings {
            enabled: defaults.enabled,
            phone_number_id: None,
            display_phone_number: None,
            access_token_set: false,
            reminder_offsets_minutes: defaults.reminder_offsets_minutes,
            templates: Templates::default(),
            address: None,
            opening_hours: None,
            updated_at: None,
        },
    })
}
