//! Tenancy: clinics, the people who work in them, and their memberships and roles.

pub mod api;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::Conn;
use crate::error::Error;
use crate::rbac::{Permission, Role};
use crate::schema::{invitations, memberships, role_assignments, tenants};
use crate::util::{b64url_decode, sha256};
use crate::validate::{self, Cnpj, Email, Fields};

/// The kernel's permissions: what each role may do with clinics, members and the audit log.
pub mod perm {
    use super::{Permission, Role};
    use Role::*;

    const EVERYONE: &[Role] = &[Owner, Admin, Professional, Receptionist, Finance, Assistant];
    const STAFF: &[Role] = &[Owner, Admin, Professional, Receptionist, Finance];
    const MANAGERS: &[Role] = &[Owner, Admin];

    pub const PROFILE_READ: Permission = Permission {
        resource: "profile",
        action: "read",
        granted_to: EVERYONE,
    };
    pub const PROFILE_UPDATE: Permission = Permission {
        resource: "profile",
        action: "update",
        granted_to: STAFF,
    };
    pub const TENANT_READ: Permission = Permission {
        resource: "tenant",
        action: "read",
        granted_to: EVERYONE,
    };
    pub const TENANT_UPDATE: Permission = Permission {
        resource: "tenant",
        action: "update",
        granted_to: MANAGERS,
    };
    pub const MEMBERS_READ: Permission = Permission {
        resource: "members",
        action: "read",
        granted_to: MANAGERS,
    };
    pub const MEMBERS_INVITE: Permission = Permission {
        resource: "members",
        action: "invite",
        granted_to: MANAGERS,
    };
    pub const MEMBERS_UPDATE_ROLES: Permission = Permission {
        resource: "members",
        action: "update_roles",
        granted_to: MANAGERS,
    };
    pub const MEMBERS_SUSPEND: Permission = Permission {
        resource: "members",
        action: "suspend",
        granted_to: MANAGERS,
    };
    pub const PROFESSIONALS_READ: Permission = Permission {
        resource: "professionals",
        action: "read",
        granted_to: EVERYONE,
    };
    pub const AUDIT_READ: Permission = Permission {
        resource: "audit_events",
        action: "read",
        granted_to: MANAGERS,
    };

    /// See the plugins on offer and the clinic's choices.
    pub const PLUGINS_READ: Permission = Permission {
        resource: "plugins",
        action: "read",
        granted_to: MANAGERS,
    };
    /// Enable and disable plugins, grant and refuse their capabilities.
    pub const PLUGINS_MANAGE: Permission = Permission {
        resource: "plugins",
        action: "manage",
        granted_to: MANAGERS,
    };
    /// Call enabled plugins' routes (each route may narrow it to some roles).
    pub const PLUGIN_ROUTES_CALL: Permission = Permission {
        resource: "plugin_routes",
        action: "call",
        granted_to: STAFF,
    };
    /// Publish a plugin's own events: held only by plugins granted `events:emit`.
    pub const PLUGIN_EVENTS_EMIT: Permission = Permission {
        resource: "plugin_events",
        action: "emit",
        granted_to: &[],
    };

    pub const ALL: &[Permission] = &[
        PROFILE_READ,
        PROFILE_UPDATE,
        TENANT_READ,
        TENANT_UPDATE,
        MEMBERS_READ,
        MEMBERS_INVITE,
        MEMBERS_UPDATE_ROLES,
        MEMBERS_SUSPEND,
        PROFESSIONALS_READ,
        AUDIT_READ,
        PLUGINS_READ,
        PLUGINS_MANAGE,
        PLUGIN_ROUTES_CALL,
        PLUGIN_EVENTS_EMIT,
    ];
}

const LOCALES: [&str; 3] = ["pt-BR", "en-US", "es"];

/// A clinic as the API shows it.
#[derive(Debug, Clone, Object, Queryable, Selectable)]
#[diesel(table_name = tenants)]
pub struct Clinic {
    pub id: Uuid,
    pub name: String,
    #[oai(nullable)]
    pub legal_name: Option<String>,
    /// 14 digits, unformatted.
    #[oai(nullable)]
    pub cnpj: Option<String>,
    /// IANA time zone used for working hours, reminders and reports.
    pub time_zone: String,
    pub locale: String,
    #[oai(nullable)]
    pub contact_email: Option<String>,
    #[oai(nullable)]
    pub contact_phone: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A clinic to create.
#[derive(Debug, Clone, Object)]
pub struct NewClinic {
    pub name: String,
    #[oai(nullable)]
    pub legal_name: Option<String>,
    /// Optional; `00.000.000/0000-00` or 14 digits, check digits verified.
    #[oai(nullable)]
    pub cnpj: Option<String>,
    /// IANA name; defaults to `America/Sao_Paulo`.
    #[oai(nullable)]
    pub time_zone: Option<String>,
    #[oai(nullable)]
    pub contact_email: Option<String>,
    #[oai(nullable)]
    pub contact_phone: Option<String>,
}

/// A validated [`NewClinic`].
#[derive(Debug)]
pub struct ValidClinic {
    name: String,
    legal_name: Option<String>,
    cnpj: Option<String>,
    time_zone: String,
    contact_email: Option<String>,
    contact_phone: Option<String>,
}

fn phone(input: &str) -> Result<String, &'static str> {
    let trimmed = input.trim();
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    let allowed = trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if allowed && (8..=15).contains(&digits) {
        Ok(trimmed.to_owned())
    } else {
        Err("a phone number such as +55 11 91234-5678")
    }
}

impl NewClinic {
    pub fn validate(self, fields: &mut Fields, prefix: &str) -> Option<ValidClinic> {
        let f = |name: &str| format!("{prefix}.{name}");
        let name = fields.check(&f("name"), validate::name(&self.name));
        let legal_name = self
            .legal_name
            .as_deref()
            .map(|v| fields.check(&f("legal_name"), validate::text(v, 200, false)));
        let cnpj = self
            .cnpj
            .as_deref()
            .map(|v| fields.check(&f("cnpj"), Cnpj::parse(v)));
        let tz = self.time_zone.as_deref().unwrap_or("America/Sao_Paulo");
        let time_zone = fields.check(&f("time_zone"), validate::time_zone(tz));
        let email = self
            .contact_email
            .as_deref()
            .map(|v| fields.check(&f("contact_email"), Email::parse(v)));
        let contact_phone = self
            .contact_phone
            .as_deref()
            .map(|v| fields.check(&f("contact_phone"), phone(v)));
        Some(ValidClinic {
            name: name?,
            legal_name: legal_name.map(|v| v.ok_or(())).transpose().ok()?,
            cnpj: cnpj
                .map(|v| v.map(|c| c.as_str().to_owned()).ok_or(()))
                .transpose()
                .ok()?,
            time_zone: time_zone?.name().to_owned(),
            contact_email: email
                .map(|v| v.map(|e| e.as_str().to_owned()).ok_or(()))
                .transpose()
                .ok()?,
            contact_phone: contact_phone.map(|v| v.ok_or(())).transpose().ok()?,
        })
    }
}

impl ValidClinic {
    #[expect(clippy::type_complexity, reason = "a diesel insertable tuple")]
    pub fn insertable(
        self,
        id: Uuid,
    ) -> (
        diesel::dsl::Eq<tenants::id, Uuid>,
        diesel::dsl::Eq<tenants::name, String>,
        diesel::dsl::Eq<tenants::legal_name, Option<String>>,
        diesel::dsl::Eq<tenants::cnpj, Option<String>>,
        diesel::dsl::Eq<tenants::time_zone, String>,
        diesel::dsl::Eq<tenants::contact_email, Option<String>>,
        diesel::dsl::Eq<tenants::contact_phone, Option<String>>,
    ) {
        (
            tenants::id.eq(id),
            tenants::name.eq(self.name),
            tenants::legal_name.eq(self.legal_name),
            tenants::cnpj.eq(self.cnpj),
            tenants::time_zone.eq(self.time_zone),
            tenants::contact_email.eq(self.contact_email),
            tenants::contact_phone.eq(self.contact_phone),
        )
    }
}

/// Changes to a clinic's settings; absent fields are left as they are, `null` clears.
#[derive(Debug, Object)]
pub struct ClinicUpdate {
    #[oai(nullable)]
    pub name: Option<String>,
    #[oai(nullable)]
    pub legal_name: MaybeUndefined<String>,
    #[oai(nullable)]
    pub cnpj: MaybeUndefined<String>,
    #[oai(nullable)]
    pub time_zone: Option<String>,
    /// One of `pt-BR`, `en-US`, `es`.
    #[oai(nullable)]
    pub locale: Option<String>,
    #[oai(nullable)]
    pub contact_email: MaybeUndefined<String>,
    #[oai(nullable)]
    pub contact_phone: MaybeUndefined<String>,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = tenants)]
pub(crate) struct ClinicChanges {
    name: Option<String>,
    legal_name: Option<Option<String>>,
    cnpj: Option<Option<String>>,
    time_zone: Option<String>,
    locale: Option<String>,
    contact_email: Option<Option<String>>,
    contact_phone: Option<Option<String>>,
    updated_at: DateTime<Utc>,
}

/// Validates a nullable field of a PATCH: `None` leaves it, `Some(None)` clears it.
fn patch<T>(
    fields: &mut Fields,
    name: &str,
    value: MaybeUndefined<String>,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => fields.check(name, parse(&v)).map(Some),
    }
}

impl ClinicUpdate {
    pub(crate) fn validate(self) -> Result<ClinicChanges, Error> {
        let mut fields = Fields::default();
        let name = self
            .name
            .and_then(|v| fields.check("name", validate::name(&v)));
        let legal_name = patch(&mut fields, "legal_name", self.legal_name, |v| {
            validate::text(v, 200, false)
        });
        let cnpj = patch(&mut fields, "cnpj", self.cnpj, |v| {
            Cnpj::parse(v).map(|c| c.as_str().to_owned())
        });
        let time_zone = self.time_zone.and_then(|v| {
            fields
                .check("time_zone", validate::time_zone(&v))
                .map(|tz| tz.name().to_owned())
        });
        let locale = self.locale.and_then(|v| {
            fields.check(
                "locale",
                LOCALES
                    .contains(&v.as_str())
                    .then_some(v)
                    .ok_or("one of pt-BR, en-US, es"),
            )
        });
        let contact_email = patch(&mut fields, "contact_email", self.contact_email, |v| {
            Email::parse(v).map(|e| e.as_str().to_owned())
        });
        let contact_phone = patch(&mut fields, "contact_phone", self.contact_phone, phone);
        fields.finish()?;
        Ok(ClinicChanges {
            name,
            legal_name,
            cnpj,
            time_zone,
            locale,
            contact_email,
            contact_phone,
            updated_at: Utc::now(),
        })
    }
}

/// Adds `user` to `tenant` with `roles`. Runs in the caller's transaction.
pub(crate) async fn insert_member(
    conn: &mut Conn,
    tenant: Uuid,
    user: Uuid,
    invited_by: Option<Uuid>,
    roles: &[Role],
) -> Result<(), Error> {
    diesel::insert_into(memberships::table)
        .values((
            memberships::tenant_id.eq(tenant),
            memberships::user_id.eq(user),
            memberships::invited_by.eq(invited_by),
        ))
        .execute(conn)
        .await?;
    insert_roles(conn, tenant, user, roles).await
}

/// Gives `user` the `roles` in `tenant`. Runs in the caller's transaction.
pub(crate) async fn insert_roles(
    conn: &mut Conn,
    tenant: Uuid,
    user: Uuid,
    roles: &[Role],
) -> Result<(), Error> {
    let rows: Vec<_> = roles
        .iter()
        .map(|r| {
            (
                role_assignments::tenant_id.eq(tenant),
                role_assignments::user_id.eq(user),
                role_assignments::role.eq(r.as_str()),
            )
        })
        .collect();
    diesel::insert_into(role_assignments::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

fn invalid_invitation() -> Error {
    Error::BadRequest {
        code: "invalid_invitation",
        detail: "the invitation is invalid, expired or already used".into(),
    }
}

/// Splits an invitation token (`<tenant id>.<invitation id>.<secret>`).
pub(crate) fn parse_invitation(token: &str) -> Result<(Uuid, Uuid, Vec<u8>), Error> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(i), Some(s), None) => Ok((
            t.parse().map_err(|_| invalid_invitation())?,
            i.parse().map_err(|_| invalid_invitation())?,
            b64url_decode(s).ok_or_else(invalid_invitation)?,
        )),
        _ => Err(invalid_invitation()),
    }
}

/// Marks an invitation used and returns its user. Runs in a tenant transaction.
pub(crate) async fn redeem_invitation(
    conn: &mut Conn,
    id: Uuid,
    secret: &[u8],
) -> Result<Uuid, Error> {
    let row: Option<(Uuid, Vec<u8>, DateTime<Utc>, Option<DateTime<Utc>>)> = invitations::table
        .filter(invitations::id.eq(id))
        .select((
            invitations::user_id,
            invitations::token_hash,
            invitations::expires_at,
            invitations::accepted_at,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some((user, hash, expires_at, accepted_at)) = row else {
        return Err(invalid_invitation());
    };
    let matches = bool::from(hash.ct_eq(&sha256(secret)));
    if !matches || accepted_at.is_some() || expires_at <= Utc::now() {
        return Err(invalid_invitation());
    }
    diesel::update(invitations::table.filter(invitations::id.eq(id)))
        .set(invitations::accepted_at.eq(Utc::now()))
        .execute(conn)
        .await?;
    Ok(user)
}

/// The clinics' time zones, cached: they are read on every date computation and change
/// rarely. A change made through this replica is seen at once, through another within
/// [`ZONE_TTL`].
#[derive(Debug, Default)]
pub struct ZoneCache(
    std::sync::Mutex<std::collections::HashMap<Uuid, (chrono_tz::Tz, std::time::Instant)>>,
);

pub const ZONE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl ZoneCache {
    /// The clinic's IANA time zone. Runs in a tenant transaction of `tenant`.
    pub async fn zone(&self, mut conn: &Conn, tenant: Uuid) -> Result<chrono_tz::Tz, Error> {
        let cached = self.0.lock().ok().and_then(|m| m.get(&tenant).copied());
        if let Some((tz, at)) = cached
            && at.elapsed() < ZONE_TTL
        {
            return Ok(tz);
        }
        let name: String = tenants::table
            .find(tenant)
            .select(tenants::time_zone)
            .first(&mut conn)
            .await?;
        let tz = name.parse().unwrap_or(chrono_tz::America::Sao_Paulo);
        if let Ok(mut map) = self.0.lock() {
            map.insert(tenant, (tz, std::time::Instant::now()));
        }
        Ok(tz)
    }

    /// Today's date in the clinic's time zone.
    pub async fn today(&self, conn: &Conn, tenant: Uuid) -> Result<chrono::NaiveDate, Error> {
        let tz = self.zone(conn, tenant).await?;
        Ok(Utc::now().with_timezone(&tz).date_naive())
    }

    pub fn forget(&self, tenant: Uuid) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&tenant);
        }
    }
}

/// Which of `ids` are active members of the current clinic holding the professional role.
/// Runs in a tenant transaction; takes a shared connection so it can be pipelined.
pub async fn active_professionals(mut conn: &Conn, ids: &[Uuid]) -> Result<Vec<Uuid>, Error> {
    Ok(memberships::table
        .inner_join(
            role_assignments::table.on(role_assignments::tenant_id
                .eq(memberships::tenant_id)
                .and(role_assignments::user_id.eq(memberships::user_id))),
        )
        .filter(memberships::user_id.eq_any(ids))
        .filter(memberships::status.eq("active"))
        .filter(role_assignments::role.eq(Role::Professional.as_str()))
        .select(memberships::user_id)
        .load(&mut conn)
        .await?)
}

/// The WhatsApp assistant's own identity in a clinic: a member with only the `assistant`
/// role, created on first use. It cannot log in (no password) and people cannot be given
/// its role through the API.
pub async fn assistant_identity(kernel: &crate::Kernel, tenant: Uuid) -> Result<Uuid, Error> {
    use crate::schema::users;
    use scoped_futures::ScopedFutureExt as _;
    let email = format!("assistant+{}@assistant.harmony.invalid", tenant.simple());
    let (user, created) = kernel
        .db
        .system("tenancy.assistant_identity", |conn| {
            async move {
                let found: Option<Uuid> = users::table
                    .filter(users::email.eq(&email))
                    .select(users::id)
                    .first(conn)
                    .await
                    .optional()?;
                if let Some(id) = found {
                    return Ok::<_, Error>((id, false));
                }
                let id = Uuid::now_v7();
                diesel::insert_into(users::table)
                    .values((
                        users::id.eq(id),
                        users::email.eq(&email),
                        users::name.eq("Assistente virtual"),
                    ))
                    .execute(conn)
                    .await?;
                insert_member(conn, tenant, id, None, &[Role::Assistant]).await?;
                Ok((id, true))
            }
            .scope_boxed()
        })
        .await?;
    if created
        || !kernel
            .rbac
            .roles_of(tenant, user)
            .await
            .contains(&Role::Assistant)
    {
        kernel
            .rbac
            .set_roles(tenant, user, &[Role::Assistant])
            .await
            .map_err(Error::internal)?;
    }
    Ok(user)
}
