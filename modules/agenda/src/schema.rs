//! Diesel table definitions of the agenda (see `migrations/agenda`).

diesel::table! {
    agenda_settings (tenant_id) {
        tenant_id -> Uuid,
        granularity_minutes -> Int4,
        min_notice_minutes -> Int4,
        max_advance_days -> Int4,
        feed_shows_patient_name -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    services (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        name -> Text,
        description -> Nullable<Text>,
        category -> Text,
        duration_minutes -> Int4,
        buffer_after_minutes -> Int4,
        price_cents -> Int8,
        currency -> Text,
        color -> Nullable<Text>,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    service_professionals (tenant_id, service_id, professional_id) {
        tenant_id -> Uuid,
        service_id -> Uuid,
        professional_id -> Uuid,
    }
}

diesel::table! {
    resources (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        name -> Text,
        kind -> Text,
        active -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    service_resources (tenant_id, service_id, resource_id) {
        tenant_id -> Uuid,
        service_id -> Uuid,
        resource_id -> Uuid,
    }
}

diesel::table! {
    working_hours (tenant_id, professional_id, weekday, starts_at) {
        tenant_id -> Uuid,
        professional_id -> Uuid,
        weekday -> Int2,
        starts_at -> Time,
        ends_at -> Time,
    }
}

diesel::table! {
    calendar_days (tenant_id, day) {
        tenant_id -> Uuid,
        day -> Date,
        open -> Bool,
        name -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    services,
    service_professionals,
    resources,
    service_resources,
    working_hours
);
