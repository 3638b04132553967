//! Envelope encryption against the database: fields round-trip, blind indexes are stable
//! per clinic, shredding is final, and a master-key rotation re-wraps without re-encrypting.

use harmony_core::db::TenantScope;
use harmony_core::error::Error;
use scoped_futures::ScopedFutureExt;
use secrecy::SecretString;
use uuid::Uuid;

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn a_subjects_fields_round_trip_until_their_key_is_shredded() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let scope = TenantScope::clinic(owner.tenant_id);
    let crypto = &app.kernel.crypto;
    let tenant = owner.tenant_id;
    let (patient, other) = (Uuid::now_v7(), Uuid::now_v7());

    let sealed = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let cipher = crypto
                    .subject(conn, tenant, patient)
                    .await?
                    .expect("a fresh key");
                let sealed = cipher.encrypt("patient.notes", "alergia a látex".as_bytes());
                // The same subject's key comes back on the next call.
                let again = crypto
                    .subject(conn, tenant, patient)
                    .await?
                    .expect("the same key");
                assert_eq!(
                    again.decrypt_text("patient.notes", &sealed)?,
                    "alergia a látex"
                );
                // Another subject's key, or another field, does not open it.
                let stranger = crypto.subject(conn, tenant, other).await?.expect("key");
                assert!(stranger.decrypt("patient.notes", &sealed).is_err());
                assert!(again.decrypt("patient.cpf", &sealed).is_err());
                Ok::<_, Error>(sealed)
            }
            .scope_boxed()
        })
        .await
        .unwrap();

    app.kernel
        .db
        .tenant(scope, |conn| {
            async move {
                crypto.shred(conn, tenant, patient).await?;
                crypto.shred(conn, tenant, patient).await?;
                assert!(
                    crypto.subject(conn, tenant, patient).await?.is_none(),
                    "no key after shredding"
                );
                let ciphers = crypto.subjects(conn, tenant, &[patient, other]).await?;
                assert!(!ciphers.contains_key(&patient) && ciphers.contains_key(&other));
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert!(!sealed.is_empty());

    // Not even the schema owner can give a shredded subject a key again.
    let mut admin = app.db.admin_connection().await;
    let revived = diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE data_keys SET wrapped_key = '\\x00', shredded_at = NULL WHERE subject_id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(patient),
        &mut admin,
    )
    .await;
    assert!(revived.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn blind_indexes_are_stable_within_a_clinic_and_differ_across_clinics() {
    let app = TestApp::start().await;
    let a = app.signup("Clínica Aurora").await;
    let b = app.signup("Clínica Boreal").await;
    let crypto = &app.kernel.crypto;
    let index = |tenant: Uuid| {
        app.kernel
            .db
            .tenant(TenantScope::clinic(tenant), move |conn| {
                async move {
                    crypto
                        .blind_index(conn, tenant, "cpf", b"52998224725")
                        .await
                }
                .scope_boxed()
            })
    };
    let (a1, a2, b1) = (
        index(a.tenant_id).await.unwrap(),
        index(a.tenant_id).await.unwrap(),
        index(b.tenant_id).await.unwrap(),
    );
    assert_eq!(a1, a2);
    assert_ne!(a1, b1);
    assert_eq!(a1.len(), 16);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_master_key_rewraps_clinic_keys_and_old_data_still_opens() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let scope = TenantScope::clinic(owner.tenant_id);
    let tenant = owner.tenant_id;
    let patient = Uuid::now_v7();
    let crypto = &app.kernel.crypto;
    let sealed = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let cipher = crypto.subject(conn, tenant, patient).await?.expect("key");
                Ok::<_, Error>(cipher.encrypt("patient.cpf", b"52998224725"))
            }
            .scope_boxed()
        })
        .await
        .unwrap();

    // A new master key, with the old one still accepted, re-wraps the clinic's key.
    let old = app.kernel.config.crypto.master_key.clone().unwrap();
    let new = SecretString::from("bmV3LW1hc3Rlci1rZXktMzItYnl0ZXMtbG9uZy0tLS0");
    let rotated = harmony_core::crypto::Crypto::new(&new, &[old]).unwrap();
    assert_eq!(rotated.rewrap_tenant_keys(&app.kernel.db).await.unwrap(), 1);

    // With only the new key, the data written before the rotation still opens.
    let only_new = harmony_core::crypto::Crypto::new(&new, &[]).unwrap();
    let only_new = &only_new;
    let opened = app
        .kernel
        .db
        .tenant(scope, |conn| {
            async move {
                let cipher = only_new.subject(conn, tenant, patient).await?.expect("key");
                cipher.decrypt_text("patient.cpf", &sealed)
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(opened, "52998224725");
}
