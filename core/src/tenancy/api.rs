//! `/api/v1/me`, `/api/v1/tenant`, `/api/v1/members` and `/api/v1/professionals`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::{Clinic, ClinicUpdate, insert_member, insert_roles, perm};
use crate::auth::{Actor, BearerAuth};
use crate::error::Error;
use crate::http::ApiResult;
use crate::http::JsonBody;
use crate::rbac::Role;
use crate::schema::{invitations, memberships, role_assignments, tenants, users};
use crate::util::{b64url_encode, random_bytes, sha256};
use crate::validate::{self, Email, Fields};
use crate::{ApiTags, Kernel};

/// A person's identity, shared by every clinic they work in.
#[derive(Debug, Clone, Object, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserProfile {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[oai(nullable)]
    pub phone: Option<String>,
    /// A storage reference to the profile photo.
    #[oai(nullable)]
    pub photo_ref: Option<String>,
    #[oai(nullable)]
    pub bio: Option<String>,
    pub specialties: Vec<String>,
    /// E.g. `CRM-SP 123456`, `CRBM 1234`, `COREN-RJ 56789`.
    #[oai(nullable)]
    pub professional_registry: Option<String>,
}

/// The caller: who they are, the clinic the token acts in, and their roles there.
#[derive(Debug, Object)]
pub struct Me {
    pub user: UserProfile,
    pub tenant_id: Uuid,
    pub roles: Vec<Role>,
}

/// Changes to one's own profile; absent fields are kept, `null` clears.
#[derive(Debug, Object)]
pub struct ProfileUpdate {
    #[oai(nullable)]
    pub name: Option<String>,
    #[oai(nullable)]
    pub phone: MaybeUndefined<String>,
    #[oai(nullable)]
    pub photo_ref: MaybeUndefined<String>,
    #[oai(nullable)]
    pub bio: MaybeUndefined<String>,
    #[oai(nullable)]
    pub specialties: Option<Vec<String>>,
    #[oai(nullable)]
    pub professional_registry: MaybeUndefined<String>,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = users)]
struct ProfileChanges {
    name: Option<String>,
    phone: Option<Option<String>>,
    photo_ref: Option<Option<String>>,
    bio: Option<Option<String>>,
    specialties: Option<Vec<String>>,
    professional_registry: Option<Option<String>>,
    updated_at: DateTime<Utc>,
}

/// A member of the clinic.
#[derive(Debug, Clone, Object)]
pub struct Member {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub roles: Vec<Role>,
    /// `active` or `suspended`.
    pub status: String,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct InviteMember {
    pub email: String,
    /// Used when the person has no account yet.
    pub name: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Object)]
pub struct Invitation {
    pub member: Member,
    /// Give this to the invitee (e.g. in a link) to choose a password at
    /// `POST /api/v1/auth/accept-invitation`. Absent when the person already has an
    /// account: they log in with their own password.
    #[oai(nullable)]
    pub invitation_token: Option<String>,
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, ApiResponse)]
pub enum InviteResult {
    #[oai(status = 201)]
    Created(Json<Invitation>),
}

#[derive(Debug, Object)]
pub struct RolesUpdate {
    pub roles: Vec<Role>,
}

/// A professional's public profile, as patients and the assistant may see it.
#[derive(Debug, Clone, Object)]
pub struct Professional {
    pub user_id: Uuid,
    pub name: String,
    #[oai(nullable)]
    pub photo_ref: Option<String>,
    #[oai(nullable)]
    pub bio: Option<String>,
    pub specialties: Vec<String>,
    #[oai(nullable)]
    pub professional_registry: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct TenancyApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Clinic")]
impl TenancyApi {
    /// Who am I
    ///
    /// Permission: `profile:read`.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn get_me(&self, kernel: Data<&Kernel>, auth: BearerAuth) -> ApiResult<Json<Me>> {
        let actor = kernel.authorize(&auth, &perm::PROFILE_READ).await?;
        let user = load_profile(&kernel, &actor).await?;
        let roles = kernel.rbac.roles_of(actor.tenant_id, actor.user_id).await;
        Ok(Json(Me {
            user,
            tenant_id: actor.tenant_id,
            roles,
        }))
    }

    /// Update my profile
    ///
    /// Permission: `profile:update`.
    #[oai(path = "/me", method = "patch", operation_id = "update_me")]
    async fn update_me(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<ProfileUpdate>,
    ) -> ApiResult<Json<UserProfile>> {
        let actor = kernel.authorize(&auth, &perm::PROFILE_UPDATE).await?;
        let changes = validate_profile(body.0)?;
        let user = actor.user_id;
        kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::update(users::table.find(user))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    Ok::<_, Error>(())
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(load_profile(&kernel, &actor).await?))
    }

    /// The clinic's settings
    ///
    /// Permission: `tenant:read`.
    #[oai(path = "/tenant", method = "get", operation_id = "get_tenant")]
    async fn get_tenant(&self, kernel: Data<&Kernel>, auth: BearerAuth) -> ApiResult<Json<Clinic>> {
        let actor = kernel.authorize(&auth, &perm::TENANT_READ).await?;
        Ok(Json(load_clinic(&kernel, &actor).await?))
    }

    /// Change the clinic's settings
    ///
    /// Permission: `tenant:update`.
    #[oai(path = "/tenant", method = "patch", operation_id = "update_tenant")]
    async fn update_tenant(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<ClinicUpdate>,
    ) -> ApiResult<Json<Clinic>> {
        let actor = kernel.authorize(&auth, &perm::TENANT_UPDATE).await?;
        let changes = body.0.validate()?;
        let tenant = actor.tenant_id;
        kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::update(tenants::table.find(tenant))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    Ok::<_, Error>(())
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(load_clinic(&kernel, &actor).await?))
    }

    /// The clinic's members
    ///
    /// Permission: `members:read`.
    #[oai(path = "/members", method = "get", operation_id = "list_members")]
    async fn list_members(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<Member>>> {
        let actor = kernel.authorize(&auth, &perm::MEMBERS_READ).await?;
        Ok(Json(load_members(&kernel, &actor, None).await?))
    }

    /// Invite someone to the clinic
    ///
    /// A new e-mail creates an account without a password and returns an invitation token;
    /// an existing account is added as it is, its credentials untouched. Only owners may
    /// grant the owner role.
    ///
    /// Permission: `members:invite`.
    #[oai(path = "/members", method = "post", operation_id = "invite_member")]
    async fn invite_member(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        body: JsonBody<InviteMember>,
    ) -> ApiResult<InviteResult> {
        let actor = kernel.authorize(&auth, &perm::MEMBERS_INVITE).await?;
        let InviteMember { email, name, roles } = body.0;
        let mut fields = Fields::default();
        let email = fields.check("email", Email::parse(&email));
        let name = fields.check("name", validate::name(&name));
        fields.check("roles", valid_roles(&roles));
        fields.finish()?;
        let (Some(email), Some(name)) = (email, name) else {
            return Err(Error::invalid("email", "invalid invitation").into());
        };
        guard_owner_grant(&kernel, &actor, &[], &roles).await?;

        // The identity may already exist in another clinic: look it up across tenants.
        let secret: [u8; 32] = random_bytes();
        let ttl = chrono::Duration::days(kernel.auth.config().invitation_ttl_days);
        let tenant = actor.tenant_id;
        let inviter = actor.user_id;
        let roles_for_tx = roles.clone();
        let (user_id, invitation) = kernel
            .db
            .system("tenancy.invite", |conn| {
                async move {
                    let existing: Option<Uuid> = users::table
                        .filter(
                            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = lower(")
                                .bind::<diesel::sql_types::Text, _>(email.as_str())
                                .sql(")"),
                        )
                        .select(users::id)
                        .first(conn)
                        .await
                        .optional()?;
                    let user_id = match existing {
                        Some(id) => {
                            let member: bool = diesel::select(diesel::dsl::exists(
                                memberships::table.find((tenant, id)),
                            ))
                            .get_result(conn)
                            .await?;
                            if member {
                                return Err(Error::conflict(
                                    "already_member",
                                    "this person is already a member of the clinic",
                                ));
                            }
                            id
                        }
                        None => {
                            let id = Uuid::now_v7();
                            diesel::insert_into(users::table)
                                .values((
                                    users::id.eq(id),
                                    users::email.eq(email.as_str()),
                                    users::name.eq(&name),
                                ))
                                .execute(conn)
                                .await?;
                            id
                        }
                    };
                    insert_member(conn, tenant, user_id, Some(inviter), &roles_for_tx).await?;
                    if existing.is_some() {
                        return Ok((user_id, None));
                    }
                    let id = Uuid::now_v7();
                    let expires_at = Utc::now() + ttl;
                    diesel::insert_into(invitations::table)
                        .values((
                            invitations::tenant_id.eq(tenant),
                            invitations::id.eq(id),
                            invitations::user_id.eq(user_id),
                            invitations::token_hash.eq(sha256(&secret)),
                            invitations::expires_at.eq(expires_at),
                        ))
                        .execute(conn)
                        .await?;
                    let token = format!("{tenant}.{id}.{}", b64url_encode(&secret));
                    Ok::<_, Error>((user_id, Some((token, expires_at))))
                }
                .scope_boxed()
            })
            .await?;
        kernel
            .rbac
            .set_roles(tenant, user_id, &roles)
            .await
            .map_err(Error::internal)?;

        let member = load_members(&kernel, &actor, Some(user_id))
            .await?
            .pop()
            .ok_or(Error::NotFound { what: "member" })?;
        let (invitation_token, expires_at) = invitation.unzip();
        Ok(InviteResult::Created(Json(Invitation {
            member,
            invitation_token,
            expires_at,
        })))
    }

    /// Replace a member's roles
    ///
    /// Permission: `members:update_roles`.
    #[oai(
        path = "/members/:user_id/roles",
        method = "put",
        operation_id = "update_member_roles"
    )]
    async fn update_member_roles(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        user_id: Path<Uuid>,
        body: JsonBody<RolesUpdate>,
    ) -> ApiResult<Json<Member>> {
        let actor = kernel.authorize(&auth, &perm::MEMBERS_UPDATE_ROLES).await?;
        let target = user_id.0;
        let roles = body.0.roles;
        valid_roles(&roles).map_err(|m| Error::invalid("roles", m))?;
        if target == actor.user_id {
            return Err(Error::forbidden("own_roles", "you cannot change your own roles").into());
        }
        let current = current_member(&kernel, &actor, target).await?;
        guard_owner_grant(&kernel, &actor, &current.roles, &roles).await?;

        let tenant = actor.tenant_id;
        let new_roles = roles.clone();
        kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    diesel::delete(
                        role_assignments::table.filter(role_assignments::user_id.eq(target)),
                    )
                    .execute(conn)
                    .await?;
                    insert_roles(conn, tenant, target, &new_roles).await?;
                    Ok::<_, Error>(())
                }
                .scope_boxed()
            })
            .await?;
        if current.status == "active" {
            kernel
                .rbac
                .set_roles(tenant, target, &roles)
                .await
                .map_err(Error::internal)?;
        }
        let member = current_member(&kernel, &actor, target).await?;
        Ok(Json(member))
    }

    /// Suspend a member
    ///
    /// The member is refused at their next request and their refresh tokens stop working
    /// at once.
    ///
    /// Permission: `members:suspend`.
    #[oai(
        path = "/members/:user_id/suspend",
        method = "post",
        operation_id = "suspend_member"
    )]
    async fn suspend_member(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        user_id: Path<Uuid>,
    ) -> ApiResult<Json<Member>> {
        let actor = kernel.authorize(&auth, &perm::MEMBERS_SUSPEND).await?;
        Ok(Json(
            set_status(&kernel, &actor, user_id.0, "suspended").await?,
        ))
    }

    /// Reactivate a suspended member
    ///
    /// Permission: `members:suspend`.
    #[oai(
        path = "/members/:user_id/reactivate",
        method = "post",
        operation_id = "reactivate_member"
    )]
    async fn reactivate_member(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        user_id: Path<Uuid>,
    ) -> ApiResult<Json<Member>> {
        let actor = kernel.authorize(&auth, &perm::MEMBERS_SUSPEND).await?;
        Ok(Json(
            set_status(&kernel, &actor, user_id.0, "active").await?,
        ))
    }

    /// The clinic's professionals
    ///
    /// Permission: `professionals:read`.
    #[oai(
        path = "/professionals",
        method = "get",
        operation_id = "list_professionals"
    )]
    async fn list_professionals(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<Professional>>> {
        let actor = kernel.authorize(&auth, &perm::PROFESSIONALS_READ).await?;
        Ok(Json(load_professionals(&kernel, &actor, None).await?))
    }

    /// One professional's profile
    ///
    /// Permission: `professionals:read`.
    #[oai(
        path = "/professionals/:user_id",
        method = "get",
        operation_id = "get_professional"
    )]
    async fn get_professional(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        user_id: Path<Uuid>,
    ) -> ApiResult<Json<Professional>> {
        let actor = kernel.authorize(&auth, &perm::PROFESSIONALS_READ).await?;
        let found = load_professionals(&kernel, &actor, Some(user_id.0))
            .await?
            .pop();
        Ok(Json(found.ok_or(Error::NotFound {
            what: "professional",
        })?))
    }
}

fn valid_roles(roles: &[Role]) -> Result<(), &'static str> {
    if roles.is_empty() {
        return Err("at least one of owner, admin, professional, receptionist, finance");
    }
    if roles.contains(&Role::Assistant) {
        return Err("the assistant role belongs to the WhatsApp assistant, not to people");
    }
    Ok(())
}

/// Only owners may grant or take away the owner role.
async fn guard_owner_grant(
    kernel: &Kernel,
    actor: &Actor,
    before: &[Role],
    after: &[Role],
) -> Result<(), Error> {
    let touches_owner = before.contains(&Role::Owner) != after.contains(&Role::Owner)
        || (before.is_empty() && after.contains(&Role::Owner));
    if touches_owner
        && !kernel
            .rbac
            .roles_of(actor.tenant_id, actor.user_id)
            .await
            .contains(&Role::Owner)
    {
        tracing::warn!("tenant.id" = %actor.tenant_id, user.id = %actor.user_id, "owner grant refused");
        return Err(Error::forbidden(
            "owner_only",
            "only an owner may grant or revoke the owner role",
        ));
    }
    Ok(())
}

async fn set_status(
    kernel: &Kernel,
    actor: &Actor,
    target: Uuid,
    status: &'static str,
) -> Result<Member, Error> {
    if target == actor.user_id {
        return Err(Error::forbidden(
            "own_membership",
            "you cannot suspend or reactivate yourself",
        ));
    }
    let current = current_member(kernel, actor, target).await?;
    if current.roles.contains(&Role::Owner) {
        guard_owner_grant(kernel, actor, &current.roles, &[]).await?;
    }
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                diesel::update(memberships::table.filter(memberships::user_id.eq(target)))
                    .set((
                        memberships::status.eq(status),
                        memberships::updated_at.eq(Utc::now()),
                    ))
                    .execute(conn)
                    .await?;
                if status == "suspended" {
                    crate::auth::revoke_user_tokens(conn, target).await?;
                }
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await?;
    let roles: &[Role] = if status == "active" {
        &current.roles
    } else {
        &[]
    };
    kernel
        .rbac
        .set_roles(actor.tenant_id, target, roles)
        .await
        .map_err(Error::internal)?;
    tracing::info!("tenant.id" = %actor.tenant_id, member.id = %target, status, "membership status changed");
    current_member(kernel, actor, target).await
}

async fn current_member(kernel: &Kernel, actor: &Actor, user: Uuid) -> Result<Member, Error> {
    load_members(kernel, actor, Some(user))
        .await?
        .pop()
        .ok_or(Error::NotFound { what: "member" })
}

async fn load_members(
    kernel: &Kernel,
    actor: &Actor,
    only: Option<Uuid>,
) -> Result<Vec<Member>, Error> {
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let mut query = memberships::table
                    .inner_join(users::table)
                    .left_join(
                        role_assignments::table.on(role_assignments::tenant_id
                            .eq(memberships::tenant_id)
                            .and(role_assignments::user_id.eq(memberships::user_id))),
                    )
                    .select((
                        users::id,
                        users::name,
                        users::email,
                        memberships::status,
                        memberships::created_at,
                        role_assignments::role.nullable(),
                    ))
                    .order((users::name, users::id))
                    .into_boxed();
                if let Some(user) = only {
                    query = query.filter(memberships::user_id.eq(user));
                }
                let rows: Vec<(Uuid, String, String, String, DateTime<Utc>, Option<String>)> =
                    query.load(conn).await?;
                let mut members: Vec<Member> = Vec::new();
                for (user_id, name, email, status, joined_at, role) in rows {
                    if members.last().map(|m| m.user_id) != Some(user_id) {
                        members.push(Member {
                            user_id,
                            name,
                            email,
                            roles: Vec::new(),
                            status,
                            joined_at,
                        });
                    }
                    if let (Some(last), Some(role)) =
                        (members.last_mut(), role.as_deref().and_then(Role::parse))
                    {
                        last.roles.push(role);
                    }
                }
                members.iter_mut().for_each(|m| m.roles.sort());
                Ok::<_, Error>(members)
            }
            .scope_boxed()
        })
        .await
}

async fn load_professionals(
    kernel: &Kernel,
    actor: &Actor,
    only: Option<Uuid>,
) -> Result<Vec<Professional>, Error> {
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                let mut query = users::table
                    .inner_join(memberships::table)
                    .inner_join(
                        role_assignments::table.on(role_assignments::tenant_id
                            .eq(memberships::tenant_id)
                            .and(role_assignments::user_id.eq(memberships::user_id))),
                    )
                    .filter(role_assignments::role.eq(Role::Professional.as_str()))
                    .filter(memberships::status.eq("active"))
                    .select((
                        users::id,
                        users::name,
                        users::photo_ref,
                        users::bio,
                        users::specialties,
                        users::professional_registry,
                    ))
                    .order((users::name, users::id))
                    .into_boxed();
                if let Some(user) = only {
                    query = query.filter(users::id.eq(user));
                }
                let rows: Vec<(
                    Uuid,
                    String,
                    Option<String>,
                    Option<String>,
                    Vec<String>,
                    Option<String>,
                )> = query.load(conn).await?;
                Ok::<_, Error>(
                    rows.into_iter()
                        .map(
                            |(
                                user_id,
                                name,
                                photo_ref,
                                bio,
                                specialties,
                                professional_registry,
                            )| Professional {
                                user_id,
                                name,
                                photo_ref,
                                bio,
                                specialties,
                                professional_registry,
                            },
                        )
                        .collect(),
                )
            }
            .scope_boxed()
        })
        .await
}

async fn load_profile(kernel: &Kernel, actor: &Actor) -> Result<UserProfile, Error> {
    let user = actor.user_id;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                users::table
                    .find(user)
                    .select(UserProfile::as_select())
                    .first(conn)
                    .await
                    .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await
}

async fn load_clinic(kernel: &Kernel, actor: &Actor) -> Result<Clinic, Error> {
    let tenant = actor.tenant_id;
    kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                tenants::table
                    .find(tenant)
                    .select(Clinic::as_select())
                    .first(conn)
                    .await
                    .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await
}

fn validate_profile(update: ProfileUpdate) -> Result<ProfileChanges, Error> {
    let mut fields = Fields::default();
    let name = update
        .name
        .and_then(|v| fields.check("name", validate::name(&v)));
    let mut text = |field: &str, value: MaybeUndefined<String>, max: usize| match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => fields.check(field, validate::text(&v, max, true)).map(Some),
    };
    let phone = text("phone", update.phone, 20);
    let photo_ref = text("photo_ref", update.photo_ref, 500);
    let bio = text("bio", update.bio, 4000);
    let professional_registry = text("professional_registry", update.professional_registry, 64);
    let specialties = update.specialties.and_then(|list| {
        let ok = list.len() <= 20
            && list
                .iter()
                .all(|s| validate::text(s, 80, true).is_ok() && !s.trim().is_empty());
        fields
            .check(
                "specialties",
                ok.then_some(list)
                    .ok_or("at most 20 entries of 1 to 80 characters"),
            )
            .map(|list| list.into_iter().map(|s| s.trim().to_owned()).collect())
    });
    fields.finish()?;
    Ok(ProfileChanges {
        name,
        phone,
        photo_ref,
        bio,
        specialties,
        professional_registry,
        updated_at: Utc::now(),
    })
}
