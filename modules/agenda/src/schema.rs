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

diesel::table! {
    time_off (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        professional_id -> Nullable<Uuid>,
        resource_id -> Nullable<Uuid>,
        during -> Range<Timestamptz>,
        reason -> Nullable<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
    }
}

diesel::table! {
    appointment_series (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        every_weeks -> Int4,
        occurrences -> Nullable<Int4>,
        until -> Nullable<Date>,
        created_at -> Timestamptz,
        on_conflict -> Text,
    }
}

diesel::table! {
    appointments (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        visit_id -> Uuid,
        series_id -> Nullable<Uuid>,
        patient_id -> Uuid,
        professional_id -> Uuid,
        service_id -> Uuid,
        resource_id -> Nullable<Uuid>,
        during -> Range<Timestamptz>,
        blocks -> Range<Timestamptz>,
        status -> Text,
        price_cents -> Int8,
        currency -> Text,
        notes -> Nullable<Text>,
        cancel_reason -> Nullable<Text>,
        cancelled_by -> Nullable<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        starts_at -> Timestamptz,
        blocked_from -> Timestamptz,
        blocked_until -> Timestamptz,
        booked_by -> Text,
        confirmed_at -> Nullable<Timestamptz>,
        checked_in_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
        reminder_sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    waitlist_entries (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        patient_id -> Uuid,
        service_id -> Uuid,
        professional_id -> Nullable<Uuid>,
        periods -> Jsonb,
        earliest -> Nullable<Date>,
        latest -> Nullable<Date>,
        status -> Text,
        created_at -> Timestamptz,
        notes -> Nullable<Text>,
        notified_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    calendar_feeds (tenant_id, professional_id) {
        tenant_id -> Uuid,
        professional_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    services,
    service_professionals,
    resources,
    service_resources,
    working_hours,
    appointments,
    appointment_series,
    waitlist_entries
);
