//! Diesel table definitions of the patients module (see `migrations/patients`).

diesel::table! {
    referral_origins (tenant_id, code) {
        tenant_id -> Uuid,
        code -> Text,
        label -> Text,
        active -> Bool,
    }
}

diesel::table! {
    patients (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        full_name -> Text,
        nickname -> Nullable<Text>,
        search_text -> Text,
        cpf_cipher -> Nullable<Bytea>,
        cpf_index -> Nullable<Bytea>,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        phone_e164 -> Nullable<Text>,
        birth_date -> Nullable<Date>,
        gender -> Nullable<Text>,
        gender_description -> Nullable<Text>,
        address_cep -> Nullable<Text>,
        address_street -> Nullable<Text>,
        address_number -> Nullable<Text>,
        address_complement -> Nullable<Text>,
        address_district -> Nullable<Text>,
        address_city -> Nullable<Text>,
        address_state -> Nullable<Text>,
        referral_origin -> Nullable<Text>,
        photo_id -> Nullable<Uuid>,
        notes_cipher -> Nullable<Bytea>,
        tags -> Array<Text>,
        status -> Text,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    patient_search_terms (tenant_id, term, sort_key, patient_id) {
        tenant_id -> Uuid,
        term -> Text,
        sort_key -> Text,
        patient_id -> Uuid,
        active -> Bool,
    }
}

diesel::table! {
    guardians (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        patient_id -> Uuid,
        name -> Text,
        cpf_cipher -> Bytea,
        phone -> Text,
        phone_e164 -> Text,
        relationship -> Text,
        created_at -> Timestamptz,
        removed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    patient_photos (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        patient_id -> Uuid,
        storage_key -> Text,
        content_type -> Text,
        size_bytes -> Int4,
        width -> Int4,
        height -> Int4,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// The kernel's `data_keys`, read-only, so that a patient's row and wrapped key come
    /// back in one query; the key is opened with `Crypto::open_wrapped`.
    #[sql_name = "data_keys"]
    patient_keys (tenant_id, subject_id) {
        tenant_id -> Uuid,
        subject_id -> Uuid,
        wrapped_key -> Nullable<Bytea>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(patients, patient_keys);

diesel::allow_tables_to_appear_in_same_query!(
    patients,
    patient_photos,
    patient_search_terms,
    guardians,
    referral_origins
);
