//! Diesel table definitions of the kernel's tables (see `migrations/kernel`).

diesel::table! {
    tenants (id) {
        id -> Uuid,
        name -> Text,
        legal_name -> Nullable<Text>,
        cnpj -> Nullable<Text>,
        time_zone -> Text,
        locale -> Text,
        contact_email -> Nullable<Text>,
        contact_phone -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        phone -> Nullable<Text>,
        photo_ref -> Nullable<Text>,
        bio -> Nullable<Text>,
        specialties -> Array<Text>,
        professional_registry -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (tenant_id, user_id) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        status -> Text,
        invited_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    role_assignments (tenant_id, user_id, role) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invitations (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_throttle (key) {
        key -> Bytea,
        window_started_at -> Timestamptz,
        failures -> Int4,
    }
}

diesel::table! {
    use diesel::sql_types::*;

    audit_events (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        occurred_at -> Timestamptz,
        actor_kind -> Text,
        actor_id -> Nullable<Uuid>,
        subject_kind -> Nullable<Text>,
        subject_id -> Nullable<Uuid>,
        resource -> Text,
        action -> Text,
        ip -> Nullable<Inet>,
        user_agent -> Nullable<Text>,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;

    consent_records (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        subject_kind -> Text,
        subject_id -> Uuid,
        purpose -> Text,
        legal_basis -> Text,
        policy_version -> Text,
        granted -> Bool,
        channel -> Text,
        recorded_at -> Timestamptz,
        recorded_by -> Nullable<Uuid>,
        ip -> Nullable<Inet>,
        user_agent -> Nullable<Text>,
        evidence -> Nullable<Jsonb>,
    }
}

diesel::table! {
    outbox_events (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        seq -> Int8,
        txid -> Int8,
        topic -> Text,
        payload -> Jsonb,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    event_cursors (subscriber) {
        subscriber -> Text,
        last_txid -> Int8,
        last_seq -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    event_failures (subscriber, tenant_id, event_id) {
        subscriber -> Text,
        tenant_id -> Uuid,
        event_id -> Uuid,
        attempts -> Int4,
        last_error -> Text,
        next_attempt_at -> Timestamptz,
        parked -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    job_runs (job, tick) {
        job -> Text,
        tick -> Timestamptz,
        status -> Text,
        attempts -> Int4,
        claimed_by -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    idempotency_keys (tenant_id, user_id, key) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        key -> Text,
        request_hash -> Bytea,
        response_status -> Nullable<Int4>,
        response_body -> Nullable<Bytea>,
        response_content_type -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    tenant_keys (tenant_id) {
        tenant_id -> Uuid,
        master_key_id -> Text,
        wrapped_key -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    data_keys (tenant_id, subject_id) {
        tenant_id -> Uuid,
        subject_id -> Uuid,
        wrapped_key -> Nullable<Bytea>,
        created_at -> Timestamptz,
        shredded_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    plugin_installations (tenant_id, plugin) {
        tenant_id -> Uuid,
        plugin -> Text,
        subject_id -> Uuid,
        enabled -> Bool,
        granted -> Array<Text>,
        changed_by -> Uuid,
        changed_at -> Timestamptz,
    }
}

diesel::table! {
    plugin_kv (tenant_id, plugin, key) {
        tenant_id -> Uuid,
        plugin -> Text,
        key -> Text,
        value -> Jsonb,
        version -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(memberships -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(tenants, users, memberships, role_assignments);
