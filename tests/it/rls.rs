//! Row-level security as the backstop: the application role sees only the current
//! tenant's rows, nothing without a tenant, and the setting never reaches the next user of
//! a pooled connection.

use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use harmony_core::db::{Db, TenantScope};
use harmony_core::error::Error;
use scoped_futures::ScopedFutureExt;

use crate::support::{TestApp, TestDb};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(mut conn: &diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .map(|c| c.n)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_role_is_not_privileged_and_owns_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.app_connection().await;
    #[derive(diesel::QueryableByName)]
    struct Role {
        #[diesel(sql_type = Bool)]
        rolsuper: bool,
        #[diesel(sql_type = Bool)]
        rolbypassrls: bool,
    }
    let role: Role = diesel::sql_query(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(!role.rolsuper && !role.rolbypassrls);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) AS n FROM pg_tables WHERE tableowner = current_user"
        )
        .await,
        0
    );

    // Every table holding a tenant_id that the application can read has forced row-level
    // security (the others are reachable only through the audited system role).
    let unprotected = count(
        &conn,
        "SELECT count(*) AS n FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace AND a.attname = 'tenant_id' \
           AND has_table_privilege('harmony_app', c.oid, 'SELECT') \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
    .await;
    assert!(
        count(
            &conn,
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'"
        )
        .await
            > 10
    );
    assert_eq!(unprotected, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_tenant_the_application_sees_no_rows() {
    let app = TestApp::start().await;
    app.actors().await;
    let conn = app.db.app_connection().await;
    for table in [
        "tenants",
        "users",
        "memberships",
        "role_assignments",
        "refresh_tokens",
        "invitations",
    ] {
        assert_eq!(
            count(&conn, &format!("SELECT count(*) AS n FROM {table}")).await,
            0,
            "{table}"
        );
    }
    let admin = app.db.admin_connection().await;
    assert_eq!(count(&admin, "SELECT count(*) AS n FROM tenants").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_that_forgets_the_tenant_filter_still_sees_one_clinic() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let scope = TenantScope::clinic(a.owner.tenant_id);
    let (members, tenants, users) = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                Ok::<_, Error>((
                    count(conn, "SELECT count(*) AS n FROM memberships").await,
                    count(conn, "SELECT count(*) AS n FROM tenants").await,
                    count(conn, "SELECT count(*) AS n FROM users").await,
                ))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!((members, tenants, users), (4, 1, 4));
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_a_row_into_another_tenant_is_rejected_by_the_database() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let scope = TenantScope::clinic(a.owner.tenant_id);
    let other = a.other_owner.tenant_id;
    let user = a.other_owner.user_id;
    let result = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                diesel::sql_query("INSERT INTO role_assignments (tenant_id, user_id, role) VALUES ($1, $2, 'admin')")
                    .bind::<diesel::sql_types::Uuid, _>(other)
                    .bind::<diesel::sql_types::Uuid, _>(user)
                    .execute(conn)
                    .await
                    .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await;
    assert!(
        result.is_err(),
        "the row-level security policy must refuse the insert"
    );
    let updated = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                diesel::sql_query("UPDATE tenants SET name = 'hijacked' WHERE id = $1")
                    .bind::<diesel::sql_types::Uuid, _>(other)
                    .execute(conn)
                    .await
                    .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(updated, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_never_carries_a_tenant_to_its_next_user() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let mut config = app.db.config();
    config.database.pool_size = 1;
    let db = Db::connect(&config.database).unwrap();

    for round in 0..10 {
        let (tenant, expected) = if round % 2 == 0 {
            (a.owner.tenant_id, 4)
        } else {
            (a.other_owner.tenant_id, 1)
        };
        let scope = TenantScope::clinic(tenant);
        // Transactions and session-level reads, alternating tenants.
        let seen = if round < 4 {
            db.tenant(scope, |conn| {
                async move { Ok::<_, Error>(count(conn, "SELECT count(*) AS n FROM memberships").await) }.scope_boxed()
            })
            .await
            .unwrap()
        } else {
            db.tenant_read(scope, |conn| {
                async move { Ok::<_, Error>(count(conn, "SELECT count(*) AS n FROM memberships").await) }.scope_boxed()
            })
            .await
            .unwrap()
        };
        assert_eq!(seen, expected, "round {round}");
        // The same (only) connection, outside a tenant transaction, sees nothing.
        let leaked = db
            .unscoped(|conn| {
                async move {
                    #[derive(diesel::QueryableByName)]
                    struct Setting {
                        #[diesel(sql_type = Text)]
                        value: String,
                    }
                    let setting: Setting = diesel::sql_query(
                        "SELECT coalesce(current_setting('app.tenant_id', true), '') AS value",
                    )
                    .get_result(conn)
                    .await?;
                    Ok::<_, Error>((
                        setting.value,
                        count(conn, "SELECT count(*) AS n FROM memberships").await,
                    ))
                }
                .scope_boxed()
            })
            .await
            .unwrap();
        assert_eq!(leaked, (String::new(), 0), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transaction_leaves_no_tenant_behind_either() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let mut config = app.db.config();
    config.database.pool_size = 1;
    let db = Db::connect(&config.database).unwrap();
    let scope = TenantScope::clinic(a.owner.tenant_id);
    let failed = db
        .tenant(scope, |conn| {
            async move {
                conn.batch_execute("SELECT 1/0").await?;
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await;
    assert!(failed.is_err());
    let seen = db
        .unscoped(|conn| async move { Ok::<_, Error>(count(conn, "SELECT count(*) AS n FROM memberships").await) }.scope_boxed())
        .await
        .unwrap();
    assert_eq!(seen, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_and_consent_logs_cannot_be_rewritten() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let scope = TenantScope {
        tenant_id: a.owner.tenant_id,
        user_id: Some(a.owner.user_id),
    };
    let tenant = a.owner.tenant_id;
    app.kernel
        .db
        .tenant(scope, |conn| {
            async move {
                conn.batch_execute(&format!(
                    "INSERT INTO audit_events (tenant_id, id, actor_kind, resource, action) \
                     VALUES ('{tenant}', gen_random_uuid(), 'user', 'patient', 'read'); \
                     INSERT INTO consent_records (tenant_id, id, subject_kind, subject_id, purpose, legal_basis, \
                       policy_version, granted, channel) \
                     VALUES ('{tenant}', gen_random_uuid(), 'patient', gen_random_uuid(), 'marketing', 'consent', \
                       '2026-01', true, 'web')"
                ))
                .await?;
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    for statement in [
        "UPDATE audit_events SET action = 'nothing'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE consent_records SET granted = false",
        "DELETE FROM consent_records",
    ] {
        let result = app
            .kernel
            .db
            .tenant(scope, |conn| {
                async move { conn.batch_execute(statement).await.map_err(Error::from) }
                    .scope_boxed()
            })
            .await;
        assert!(result.is_err(), "{statement} must fail for the application");
    }
    // Not even the owner of the tables can rewrite them.
    let mut owner: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(
            &app.kernel.config.database.owner_url,
        )
        .await
        .unwrap();
    owner
        .batch_execute(&format!(
            "SELECT set_config('app.tenant_id', '{tenant}', false)"
        ))
        .await
        .unwrap();
    for statement in [
        "DELETE FROM audit_events",
        "UPDATE consent_records SET granted = false",
        "TRUNCATE audit_events",
    ] {
        assert!(
            owner.batch_execute(statement).await.is_err(),
            "{statement} must fail for the owner"
        );
    }
    let admin = app.db.admin_connection().await;
    assert_eq!(
        count(&admin, "SELECT count(*) AS n FROM audit_events").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_current_consent_is_derived_from_the_latest_decision() {
    let app = TestApp::start().await;
    let a = app.actors().await;
    let actor = harmony_core::auth::Actor {
        kind: harmony_core::auth::ActorKind::User,
        user_id: a.owner.user_id,
        tenant_id: a.owner.tenant_id,
        request: std::sync::Arc::new(test_request()),
    };
    let subject = uuid::Uuid::now_v7();
    let actor_ref = &actor;
    let states = app
        .kernel
        .db
        .tenant(actor.scope(), |conn| {
            async move {
                use harmony_core::consent::{self, ConsentEntry};
                let entry = |purpose, granted| ConsentEntry {
                    subject_kind: "patient",
                    subject_id: subject,
                    purpose,
                    legal_basis: "consent",
                    policy_version: "2026-12",
                    granted,
                    channel: "in_person",
                    evidence: None,
                };
                consent::record(conn, actor_ref, entry("marketing", true)).await?;
                consent::record(conn, actor_ref, entry("whatsapp_contact", true)).await?;
                consent::record(conn, actor_ref, entry("marketing", false)).await?;
                let current = consent::current(conn, "patient", subject).await?;
                let whatsapp =
                    consent::is_granted(conn, "patient", subject, "whatsapp_contact").await?;
                let photos = consent::is_granted(conn, "patient", subject, "photos").await?;
                Ok::<_, Error>((current, whatsapp, photos))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    let (current, whatsapp, photos) = states;
    let summary: Vec<(String, bool)> = current
        .into_iter()
        .map(|c| (c.purpose, c.granted))
        .collect();
    assert_eq!(
        summary,
        [
            ("marketing".to_owned(), false),
            ("whatsapp_contact".to_owned(), true)
        ]
    );
    assert!(whatsapp);
    assert!(!photos, "a purpose never consented to is not granted");
}

pub fn test_request() -> harmony_core::http::RequestContext {
    harmony_core::http::RequestContext::new(
        "test-request".into(),
        Some("127.0.0.1".parse().unwrap()),
        Some("tests".into()),
    )
}
