//! The demo clinic that `harmony demo` creates, so a newcomer can log in and look around.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::Kernel;
use crate::error::Error;
use crate::module::{DemoClinic, Module};
use crate::rbac::Role;
use crate::schema::{tenants, users};
use crate::tenancy::insert_member;

/// The password of every demo login. The demo runs in development mode only.
pub const DEMO_PASSWORD: &str = "harmonia-demo";

/// Demo staff: one per role, `<role>@demo.harmony.local`.
pub const DEMO_STAFF: [(Role, &str); 5] = [
    (Role::Owner, "Beatriz Andrade"),
    (Role::Admin, "Carlos Menezes"),
    (Role::Professional, "Dra. Helena Vasconcelos"),
    (Role::Receptionist, "Juliana Ribeiro"),
    (Role::Finance, "Marcos Tavares"),
];

pub fn demo_email(role: Role) -> String {
    format!("{}@demo.harmony.local", role.as_str())
}

/// Creates the demo clinic and its staff if missing, then lets every module add its part.
pub async fn seed(kernel: &Kernel, modules: &[&dyn Module]) -> anyhow::Result<DemoClinic> {
    let clinic = ensure_clinic(kernel).await?;
    for (role, user) in &clinic.members {
        kernel
            .rbac
            .set_roles(clinic.tenant_id, *user, &[*role])
            .await?;
    }
    for module in modules {
        module.seed_demo(kernel, &clinic).await?;
    }
    Ok(clinic)
}

async fn ensure_clinic(kernel: &Kernel) -> anyhow::Result<DemoClinic> {
    let owner_email = demo_email(Role::Owner);
    let mut hashes = Vec::new();
    for _ in DEMO_STAFF {
        hashes.push(kernel.auth.hash_password(DEMO_PASSWORD).await?);
    }
    let clinic = kernel
        .db
        .system("demo.seed", |conn| {
            async move {
                let existing: Option<Uuid> = users::table
                    .filter(users::email.eq(&owner_email))
                    .select(users::id)
                    .first(conn)
                    .await
                    .optional()?;
                let tenant_id = match existing {
                    Some(owner) => {
                        let tenant: Uuid = crate::schema::memberships::table
                            .filter(crate::schema::memberships::user_id.eq(owner))
                            .select(crate::schema::memberships::tenant_id)
                            .first(conn)
                            .await?;
                        let mut members = Vec::new();
                        for (role, _) in DEMO_STAFF {
                            let id: Uuid = users::table
                                .filter(users::email.eq(demo_email(role)))
                                .select(users::id)
                                .first(conn)
                                .await?;
                            members.push((role, id));
                        }
                        return Ok::<_, Error>(DemoClinic {
                            tenant_id: tenant,
                            members,
                        });
                    }
                    None => Uuid::now_v7(),
                };
                diesel::insert_into(tenants::table)
                    .values((
                        tenants::id.eq(tenant_id),
                        tenants::name.eq("Clínica Harmonia (demo)"),
                        tenants::legal_name.eq("Harmonia Estética Avançada Ltda."),
                        tenants::cnpj.eq("11222333000181"),
                        tenants::contact_email.eq("contato@demo.harmony.local"),
                        tenants::contact_phone.eq("+55 11 3000-0000"),
                    ))
                    .execute(conn)
                    .await?;
                let mut members = Vec::new();
                for ((role, name), hash) in DEMO_STAFF.into_iter().zip(hashes) {
                    let id = Uuid::now_v7();
                    diesel::insert_into(users::table)
                        .values((
                            users::id.eq(id),
                            users::email.eq(demo_email(role)),
                            users::name.eq(name),
                            users::password_hash.eq(hash),
                        ))
                        .execute(conn)
                        .await?;
                    insert_member(conn, tenant_id, id, None, &[role]).await?;
                    members.push((role, id));
                }
                Ok(DemoClinic { tenant_id, members })
            }
            .scope_boxed()
        })
        .await?;
    Ok(clinic)
}

/// The kernel's part of the demo: the professional's public profile.
pub(crate) async fn seed_kernel(kernel: &Kernel, clinic: &DemoClinic) -> anyhow::Result<()> {
    let Some(professional) = clinic.member(Role::Professional) else {
        return Ok(());
    };
    let scope = crate::db::TenantScope {
        tenant_id: clinic.tenant_id,
        user_id: Some(professional),
    };
    kernel
        .db
        .tenant(scope, |conn| {
            async move {
                diesel::update(users::table.find(professional))
                    .set((
                        users::bio
                            .eq("Dermatologista com 12 anos de experiência em estética facial."),
                        users::specialties.eq(vec![
                            "dermatologia".to_owned(),
                            "toxina botulínica".to_owned(),
                        ]),
                        users::professional_registry.eq("CRM-SP 123456"),
                    ))
                    .execute(conn)
                    .await?;
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await?;
    Ok(())
}
