//! Times `Rbac::is_allowed` with the role links of N clinics loaded.
//!
//! Usage: `rbac_cost <app database url> <admin database url> <clinics>...`. For each count it
//! creates that many clinics (five members each) in the database, loads the enforcer and
//! prints `clinics µs-per-check`.

use std::time::Instant;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use harmony_core::config::Config;
use harmony_core::db::Db;
use harmony_core::rbac::{POLICY, Rbac};
use harmony_core::tenancy::perm;

#[tokio::main]
#[expect(clippy::print_stdout, reason = "the figures are the program's output")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: rbac_cost <app url> <admin url> <clinics>..."
    );
    let mut config = Config::load(None)?;
    config.database.url = args[1].clone();
    let db = Db::connect(&config.database)?;
    let mut admin = AsyncPgConnection::establish(&args[2]).await?;

    for count in &args[3..] {
        let clinics: i64 = count.parse()?;
        populate(&mut admin, clinics).await?;
        let rbac = Rbac::load(db.clone(), POLICY).await?;
        // A clinic in the middle of the table: its owner may read members, its
        // professional may not.
        let middle = clinics / 2 + 1;
        let tenant = clinic_id(middle);
        let (owner, professional) = (user_id((middle - 1) * 5 + 1), user_id((middle - 1) * 5 + 2));

        let rounds = 200_000u32;
        let started = Instant::now();
        let mut allowed = 0u32;
        for i in 0..rounds {
            let user = if i % 2 == 0 { owner } else { professional };
            allowed += u32::from(rbac.is_allowed(tenant, user, &perm::MEMBERS_READ).await);
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        anyhow::ensure!(allowed == rounds / 2, "unexpected decisions: {allowed}");
        println!("{clinics} {micros:.2}");
    }
    Ok(())
}

/// Makes the database hold exactly `clinics` clinics of five members each.
async fn populate(admin: &mut AsyncPgConnection, clinics: i64) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica; -- lets the bench clear the append-only logs
             TRUNCATE tenants, users, memberships, role_assignments CASCADE;
             SET session_replication_role = origin;
             INSERT INTO tenants (id, name)
               SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(t), 12, '0'))::uuid, 'Bench ' || t
               FROM generate_series(1, {clinics}) t;
             INSERT INTO users (id, email, name)
               SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(u), 12, '0'))::uuid,
                      'u' || u || '@bench.test', 'User ' || u
               FROM generate_series(1, {clinics} * 5) u;
             INSERT INTO memberships (tenant_id, user_id)
               SELECT ('00000000-0000-0000-0000-' || lpad(to_hex((u - 1) / 5 + 1), 12, '0'))::uuid,
                      ('00000000-0000-0000-0001-' || lpad(to_hex(u), 12, '0'))::uuid
               FROM generate_series(1, {clinics} * 5) u;
             INSERT INTO role_assignments (tenant_id, user_id, role)
               SELECT tenant_id, user_id,
                      (ARRAY['owner', 'professional', 'receptionist', 'finance', 'professional'])
                        [(row_number() OVER (PARTITION BY tenant_id ORDER BY user_id) - 1) % 5 + 1]
               FROM memberships;"
        ))
        .await?;
    Ok(())
}

fn clinic_id(n: i64) -> uuid::Uuid {
    uuid::Uuid::from_u128(n as u128)
}

fn user_id(n: i64) -> uuid::Uuid {
    uuid::Uuid::from_u128((1u128 << 48) | n as u128)
}
