//! `/api/v1/auth/*`: signup, login, refresh, logout and accepting an invitation.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::{TokenPair, refresh, throttle};
use crate::ApiTags;
use crate::Kernel;
use crate::db::TenantScope;
use crate::error::Error;
use crate::http::JsonBody;
use crate::http::{ApiResult, RequestContext};
use crate::rbac::Role;
use crate::schema::{memberships, role_assignments, tenants, users};
use crate::tenancy::{NewClinic, insert_member};
use crate::validate::{self, Email, Fields};

/// Signs up a clinic and its owner.
#[derive(Debug, Object)]
pub struct SignupRequest {
    pub clinic: NewClinic,
    pub owner: NewOwner,
}

/// The person who creates the clinic; they become its owner.
#[derive(Debug, Object)]
pub struct NewOwner {
    pub name: String,
    pub email: String,
    /// At least 10 characters.
    #[oai(write_only)]
    pub password: String,
    #[oai(nullable)]
    pub phone: Option<String>,
}

#[derive(Debug, Object)]
pub struct SignupResponse {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub tokens: TokenPair,
}

#[derive(Debug, ApiResponse)]
pub enum SignupResult {
    /// The clinic and its owner were created; the tokens act as the owner.
    #[oai(status = 201)]
    Created(Json<SignupResponse>),
}

#[derive(Debug, Object)]
pub struct LoginRequest {
    pub email: String,
    #[oai(write_only)]
    pub password: String,
    /// The clinic to act in; defaults to the first clinic the user joined.
    #[oai(nullable)]
    pub tenant_id: Option<Uuid>,
}

/// A clinic the user belongs to.
#[derive(Debug, Clone, Object)]
pub struct ClinicMembership {
    pub tenant_id: Uuid,
    pub name: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Object)]
pub struct LoginResponse {
    pub tokens: TokenPair,
    /// Every clinic where the user is an active member; log in again with `tenant_id` to
    /// act in another one.
    pub clinics: Vec<ClinicMembership>,
}

#[derive(Debug, Object)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Object)]
pub struct AcceptInvitationRequest {
    /// The token from the invitation.
    pub token: String,
    /// Required when the invited person has no password yet; ignored otherwise (an
    /// existing account's credentials are never replaced by an invitation).
    #[oai(write_only)]
    #[oai(nullable)]
    pub password: Option<String>,
}

#[derive(Debug, ApiResponse)]
pub enum NoContent {
    #[oai(status = 204)]
    Done,
}

fn invalid_credentials() -> Error {
    Error::Unauthenticated {
        code: "invalid_credentials",
        detail: "wrong e-mail or password",
    }
}

/// The authentication endpoints.
#[derive(Debug, Clone, Copy)]
pub struct AuthApi;

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create a clinic and its owner
    ///
    /// The owner's e-mail must not belong to an existing account: an existing user adds a
    /// clinic by being invited to it instead.
    #[oai(path = "/signup", method = "post", operation_id = "signup")]
    async fn signup(
        &self,
        kernel: Data<&Kernel>,
        body: JsonBody<SignupRequest>,
    ) -> ApiResult<SignupResult> {
        let SignupRequest { clinic, owner } = body.0;
        let mut fields = Fields::default();
        let clinic = clinic.validate(&mut fields, "clinic");
        let name = fields.check("owner.name", validate::name(&owner.name));
        let email = fields.check("owner.email", Email::parse(&owner.email));
        fields.check("owner.password", validate::password(&owner.password));
        fields.finish()?;
        let (Some(clinic), Some(name), Some(email)) = (clinic, name, email) else {
            return Err(Error::invalid("body", "invalid signup").into());
        };
        let hash = kernel.auth.hash_password(&owner.password).await?;

        // Create the identity, the clinic and the membership in one transaction.
        let tenant_id = Uuid::now_v7();
        let user_id = Uuid::now_v7();
        kernel
            .db
            .system("auth.signup", |conn| {
                async move {
                    let taken: bool = diesel::select(diesel::dsl::exists(
                        users::table.filter(
                            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = lower(")
                                .bind::<diesel::sql_types::Text, _>(email.as_str())
                                .sql(")"),
                        ),
                    ))
                    .get_result(conn)
                    .await?;
                    if taken {
                        return Err(email_taken());
                    }
                    diesel::insert_into(tenants::table)
                        .values(clinic.insertable(tenant_id))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(users::table)
                        .values((
                            users::id.eq(user_id),
                            users::email.eq(email.as_str()),
                            users::name.eq(&name),
                            users::phone.eq(owner.phone.as_deref()),
                            users::password_hash.eq(&hash),
                        ))
                        .execute(conn)
                        .await
                        .map_err(unique_email)?;
                    insert_member(conn, tenant_id, user_id, None, &[Role::Owner]).await?;
                    Ok::<_, Error>(())
                }
                .scope_boxed()
            })
            .await?;
        kernel
            .rbac
            .set_roles(tenant_id, user_id, &[Role::Owner])
            .await
            .map_err(Error::internal)?;
        tracing::info!("tenant.id" = %tenant_id, user.id = %user_id, "clinic signed up");

        let tokens = issue_tokens(&kernel, tenant_id, user_id, None).await?;
        Ok(SignupResult::Created(Json(SignupResponse {
            tenant_id,
            user_id,
            tokens,
        })))
    }

    /// Log in with e-mail and password
    ///
    /// An unknown e-mail and a wrong password get the same answer. Repeated failures are
    /// throttled per account and per client address (429 with `Retry-After`).
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        kernel: Data<&Kernel>,
        request: Data<&Arc<RequestContext>>,
        body: JsonBody<LoginRequest>,
    ) -> ApiResult<Json<LoginResponse>> {
        let LoginRequest {
            email,
            password,
            tenant_id,
        } = body.0;
        let keys = throttle::LoginKeys::new(email.trim(), request.ip);
        throttle::check(&kernel.db, kernel.auth.config(), &keys).await?;

        let lookup = email.trim().to_owned();
        let found = kernel
            .db
            .system("auth.login", |conn| {
                async move { find_login(conn, &lookup).await }.scope_boxed()
            })
            .await?;
        let hash = found.as_ref().and_then(|(_, hash, _)| hash.clone());
        if !kernel.auth.verify_password(hash, &password).await {
            throttle::record_failure(&kernel.db, kernel.auth.config(), &keys).await?;
            return Err(invalid_credentials().into());
        }
        let Some((user_id, _, clinics)) = found else {
            return Err(invalid_credentials().into());
        };
        throttle::clear_account(&kernel.db, &keys).await?;

        // Pick the clinic the tokens act in.
        let chosen = match tenant_id {
            Some(wanted) => clinics.iter().find(|c| c.tenant_id == wanted),
            None => <[_]>::first(&clinics),
        };
        let Some(chosen) = chosen else {
            return Err(Error::forbidden(
                "no_active_membership",
                "this account is not an active member of that clinic",
            )
            .into());
        };
        let tokens = issue_tokens(&kernel, chosen.tenant_id, user_id, None).await?;
        Ok(Json(LoginResponse { tokens, clinics }))
    }

    /// Exchange a refresh token for a new token pair
    ///
    /// Each refresh token works once. Presenting one that was already exchanged ends every
    /// session of that login.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh_token")]
    async fn refresh(
        &self,
        kernel: Data<&Kernel>,
        body: JsonBody<RefreshRequest>,
    ) -> ApiResult<Json<TokenPair>> {
        Ok(Json(refresh::rotate(&kernel, &body.0.refresh_token).await?))
    }

    /// Log out
    ///
    /// Revokes the refresh token and every token of its login. Access tokens already issued
    /// stay valid until they expire (at most `expires_in` seconds).
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        kernel: Data<&Kernel>,
        body: JsonBody<RefreshRequest>,
    ) -> ApiResult<NoContent> {
        refresh::revoke(&kernel, &body.0.refresh_token).await?;
        Ok(NoContent::Done)
    }

    /// Accept an invitation to a clinic
    #[oai(
        path = "/accept-invitation",
        method = "post",
        operation_id = "accept_invitation"
    )]
    async fn accept_invitation(
        &self,
        kernel: Data<&Kernel>,
        body: JsonBody<AcceptInvitationRequest>,
    ) -> ApiResult<Json<TokenPair>> {
        let AcceptInvitationRequest { token, password } = body.0;
        let (tenant_id, invitation_id, secret) = crate::tenancy::parse_invitation(&token)?;
        let hash = match &password {
            Some(p) => {
                validate::password(p).map_err(|m| Error::invalid("password", m))?;
                Some(kernel.auth.hash_password(p).await?)
            }
            None => None,
        };
        let scope = TenantScope::clinic(tenant_id);
        let user_id = kernel
            .db
            .tenant(scope, |conn| {
                async move {
                    let user_id =
                        crate::tenancy::redeem_invitation(conn, invitation_id, &secret).await?;
                    let existing: Option<String> = users::table
                        .find(user_id)
                        .select(users::password_hash)
                        .first::<Option<String>>(conn)
                        .await?;
                    if existing.is_none() {
                        let Some(hash) = hash else {
                            return Err(Error::invalid(
                                "password",
                                "choose a password of at least 10 characters",
                            ));
                        };
                        diesel::update(users::table.find(user_id))
                            .set(users::password_hash.eq(hash))
                            .execute(conn)
                            .await?;
                    }
                    Ok::<_, Error>(user_id)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Json(issue_tokens(&kernel, tenant_id, user_id, None).await?))
    }
}

fn email_taken() -> Error {
    Error::conflict(
        "email_taken",
        "an account with this e-mail already exists; log in, or ask the clinic to invite you",
    )
}

fn unique_email(err: diesel::result::Error) -> Error {
    match err {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => email_taken(),
        other => other.into(),
    }
}

async fn issue_tokens(
    kernel: &Kernel,
    tenant: Uuid,
    user: Uuid,
    family: Option<Uuid>,
) -> Result<TokenPair, Error> {
    let scope = TenantScope {
        tenant_id: tenant,
        user_id: Some(user),
    };
    let auth = &kernel.auth;
    kernel
        .db
        .tenant(scope, |conn| {
            async move { refresh::issue(conn, auth, tenant, user, family).await }.scope_boxed()
        })
        .await
}

type LoginLookup = Option<(Uuid, Option<String>, Vec<ClinicMembership>)>;

/// Finds an account by e-mail with its active clinics (system path: no tenant is known yet).
async fn find_login(conn: &mut crate::db::Conn, email: &str) -> Result<LoginLookup, Error> {
    let user: Option<(Uuid, Option<String>)> = users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = lower(")
                .bind::<diesel::sql_types::Text, _>(email)
                .sql(")"),
        )
        .select((users::id, users::password_hash))
        .first(conn)
        .await
        .optional()?;
    let Some((user_id, hash)) = user else {
        return Ok(None);
    };
    let rows: Vec<(Uuid, String, Option<String>)> = memberships::table
        .inner_join(tenants::table.on(tenants::id.eq(memberships::tenant_id)))
        .left_join(
            role_assignments::table.on(role_assignments::tenant_id
                .eq(memberships::tenant_id)
                .and(role_assignments::user_id.eq(memberships::user_id))),
        )
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::status.eq("active"))
        .order((memberships::created_at, memberships::tenant_id))
        .select((
            tenants::id,
            tenants::name,
            role_assignments::role.nullable(),
        ))
        .load(conn)
        .await?;
    let mut clinics: Vec<ClinicMembership> = Vec::new();
    for (tenant_id, name, role) in rows {
        if clinics.last().map(|c| c.tenant_id) != Some(tenant_id) {
            clinics.push(ClinicMembership {
                tenant_id,
                name,
                roles: Vec::new(),
            });
        }
        if let (Some(last), Some(role)) =
            (clinics.last_mut(), role.as_deref().and_then(Role::parse))
        {
            last.roles.push(role);
        }
    }
    for clinic in &mut clinics {
        clinic.roles.sort();
    }
    Ok(Some((user_id, hash, clinics)))
}
