-- The patient registry. Names, contacts and address are plain (they are searched and
-- shown on every screen); CPF and notes are encrypted by the application under the
-- patient's data key, and the CPF is found through a keyed blind index.

CREATE TABLE referral_origins (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    code text NOT NULL CHECK (code ~ '^[a-z0-9_]{1,40}$'),
    label text NOT NULL CHECK (length(label) BETWEEN 1 AND 80),
    active boolean NOT NULL DEFAULT true,
    PRIMARY KEY (tenant_id, code)
);
ALTER TABLE referral_origins ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON referral_origins
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON referral_origins TO harmony_app;

CREATE TABLE patients (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    full_name text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    nickname text CHECK (length(nickname) <= 80),
    -- Lower case, unaccented name and nickname: the order of name sorting.
    search_text text COLLATE "C" NOT NULL,
    cpf_cipher bytea,
    cpf_index bytea,
    email text,
    phone text,
    phone_e164 text,
    birth_date date,
    gender text,
    gender_description text,
    address_cep text,
    address_street text,
    address_number text,
    address_complement text,
    address_district text,
    address_city text,
    address_state text,
    referral_origin text,
    photo_id uuid,
    notes_cipher bytea,
    tags text[] NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, referral_origin) REFERENCES referral_origins (tenant_id, code)
);
CREATE INDEX patients_name_idx ON patients (tenant_id, search_text, id);
CREATE INDEX patients_created_idx ON patients (tenant_id, created_at, id);
CREATE INDEX patients_cpf_idx ON patients (tenant_id, cpf_index) WHERE cpf_index IS NOT NULL;
CREATE INDEX patients_phone_idx ON patients (tenant_id, phone_e164) WHERE phone_e164 IS NOT NULL;
CREATE INDEX patients_birth_month_idx ON patients (tenant_id, (extract(month FROM birth_date)));
CREATE INDEX patients_tags_idx ON patients USING gin (tags);
ALTER TABLE patients ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON patients
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON patients TO harmony_app;

-- Name search: one row per word of a patient's name and nickname (lower case, no
-- accents), carrying the patient's sort key so that a page of matches is read from this
-- index alone. A trigram index would not do: under row-level security PostgreSQL may not
-- use an index for LIKE (it is not leakproof), while the range comparisons used here are.
CREATE TABLE patient_search_terms (
    tenant_id uuid NOT NULL,
    term text COLLATE "C" NOT NULL,
    sort_key text COLLATE "C" NOT NULL,
    patient_id uuid NOT NULL,
    active boolean NOT NULL,
    -- Covering, so that a search page is an index-only scan.
    PRIMARY KEY (tenant_id, term, sort_key, patient_id) INCLUDE (active),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX patient_search_terms_patient_idx ON patient_search_terms (tenant_id, patient_id, term);
ALTER TABLE patient_search_terms ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON patient_search_terms
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON patient_search_terms TO harmony_app;

-- Legal guardians of minors. Their CPF is encrypted under the minor's data key.
CREATE TABLE guardians (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    cpf_cipher bytea NOT NULL,
    phone text NOT NULL,
    phone_e164 text NOT NULL,
    relationship text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id)
);
CREATE INDEX guardians_patient_idx ON guardians (tenant_id, patient_id);
ALTER TABLE guardians ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON guardians
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON guardians TO harmony_app;

-- Profile photos; the bytes live encrypted in blob storage under a server-chosen key.
CREATE TABLE patient_photos (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    storage_key text NOT NULL,
    content_type text NOT NULL,
    size_bytes integer NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id)
);
ALTER TABLE patient_photos ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON patient_photos
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, DELETE ON patient_photos TO harmony_app;
