//! The module's tables, as diesel sees them.

diesel::table! {
    whatsapp_settings (tenant_id) {
        tenant_id -> Uuid,
        enabled -> Bool,
        phone_number_id -> Nullable<Text>,
        display_phone_number -> Nullable<Text>,
        access_token -> Nullable<Bytea>,
        reminder_offsets_minutes -> Array<Int4>,
        templates -> Jsonb,
        address -> Nullable<Text>,
        opening_hours -> Nullable<Text>,
        assistant_user_id -> Nullable<Uuid>,
        updated_by -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    whatsapp_conversations (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        wa_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        patient_id -> Nullable<Uuid>,
        key_subject -> Uuid,
        profile_name -> Nullable<Bytea>,
        last_inbound_at -> Nullable<Timestamptz>,
        last_message_at -> Nullable<Timestamptz>,
        mode -> Text,
        handoff_requested_at -> Nullable<Timestamptz>,
        taken_over_by -> Nullable<Uuid>,
        opted_out_at -> Nullable<Timestamptz>,
        needs_attention -> Bool,
        state -> Jsonb,
        lease_until -> Nullable<Timestamptz>,
        lease_owner -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    whatsapp_messages (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        conversation_id -> Uuid,
        direction -> Text,
        wamid -> Nullable<Text>,
        kind -> Text,
        body -> Nullable<Bytea>,
        detail -> Jsonb,
        sent_at -> Timestamptz,
        received_at -> Timestamptz,
        status -> Text,
        status_at -> Timestamptz,
        error_code -> Nullable<Int4>,
        error_detail -> Nullable<Text>,
        author -> Text,
        author_user_id -> Nullable<Uuid>,
        purpose -> Nullable<Text>,
        attempts -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        lease_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    whatsapp_statuses (tenant_id, wamid, status) {
        tenant_id -> Uuid,
        wamid -> Text,
        status -> Text,
        occurred_at -> Timestamptz,
        error_code -> Nullable<Int4>,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    whatsapp_notices (tenant_id, appointment_id, kind, starts_at) {
        tenant_id -> Uuid,
        appointment_id -> Uuid,
        kind -> Text,
        starts_at -> Timestamptz,
        message_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(whatsapp_conversations, whatsapp_messages);
