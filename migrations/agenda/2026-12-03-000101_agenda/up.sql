-- The agenda: services, resources, working hours, time off, the clinic's calendar, and
-- appointments that the database itself keeps from overlapping.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Per-clinic scheduling rules.
CREATE TABLE agenda_settings (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
    granularity_minutes integer NOT NULL DEFAULT 15 CHECK (granularity_minutes IN (5, 10, 15, 20, 30, 60)),
    min_notice_minutes integer NOT NULL DEFAULT 60 CHECK (min_notice_minutes BETWEEN 0 AND 10080),
    max_advance_days integer NOT NULL DEFAULT 90 CHECK (max_advance_days BETWEEN 1 AND 730),
    feed_shows_patient_name boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE services (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    description text CHECK (length(description) <= 2000),
    category text NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 720),
    buffer_after_minutes integer NOT NULL DEFAULT 0 CHECK (buffer_after_minutes BETWEEN 0 AND 240),
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency text NOT NULL DEFAULT 'BRL' CHECK (currency ~ '^[A-Z]{3}$'),
    color text CHECK (color ~ '^#[0-9a-f]{6}$'),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- Who performs each service.
CREATE TABLE service_professionals (
    tenant_id uuid NOT NULL,
    service_id uuid NOT NULL,
    professional_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, service_id, professional_id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, professional_id) REFERENCES memberships (tenant_id, user_id)
);
CREATE INDEX service_professionals_professional_idx ON service_professionals (tenant_id, professional_id);

-- Rooms and equipment with calendars of their own.
CREATE TABLE resources (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    kind text NOT NULL CHECK (kind IN ('room', 'equipment')),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- The resources a service can use (any one of them will do).
CREATE TABLE service_resources (
    tenant_id uuid NOT NULL,
    service_id uuid NOT NULL,
    resource_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, service_id, resource_id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, resource_id) REFERENCES resources (tenant_id, id)
);

-- Weekly working hours in the clinic's local time; weekday 1 = Monday ... 7 = Sunday.
CREATE TABLE working_hours (
    tenant_id uuid NOT NULL,
    professional_id uuid NOT NULL,
    weekday smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts_at time NOT NULL,
    ends_at time NOT NULL CHECK (ends_at > starts_at),
    PRIMARY KEY (tenant_id, professional_id, weekday, starts_at),
    FOREIGN KEY (tenant_id, professional_id) REFERENCES memberships (tenant_id, user_id),
    EXCLUDE USING gist (tenant_id WITH =, professional_id WITH =, weekday WITH =,
                        tsrange('2000-01-01'::date + starts_at, '2000-01-01'::date + ends_at) WITH &&)
);

-- Blocked periods: a professional's time off, a resource's maintenance, or the whole clinic.
CREATE TABLE time_off (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    professional_id uuid,
    resource_id uuid,
    during tstzrange NOT NULL CHECK (NOT isempty(during)),
    reason text CHECK (length(reason) <= 200),
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, professional_id) REFERENCES memberships (tenant_id, user_id),
    FOREIGN KEY (tenant_id, resource_id) REFERENCES resources (tenant_id, id),
    CHECK (professional_id IS NULL OR resource_id IS NULL)
);
CREATE INDEX time_off_during_idx ON time_off USING gist (tenant_id, during);

-- The clinic's own calendar: open on a holiday, or closed on any other day.
CREATE TABLE calendar_days (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    day date NOT NULL,
    open boolean NOT NULL,
    name text CHECK (length(name) <= 120),
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE appointment_series (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    every_weeks integer NOT NULL CHECK (every_weeks BETWEEN 1 AND 52),
    occurrences integer,
    until date,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE appointments (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    -- The appointments booked together in one visit share it.
    visit_id uuid NOT NULL,
    series_id uuid,
    patient_id uuid NOT NULL,
    professional_id uuid NOT NULL,
    service_id uuid NOT NULL,
    resource_id uuid,
    -- When the service happens, and what it keeps busy (with the cleanup buffer).
    during tstzrange NOT NULL CHECK (NOT isempty(during)),
    blocks tstzrange NOT NULL CHECK (blocks @> during),
    status text NOT NULL DEFAULT 'scheduled'
        CHECK (status IN ('scheduled', 'confirmed', 'checked_in', 'completed', 'cancelled', 'no_show')),
    price_cents bigint NOT NULL,
    currency text NOT NULL,
    notes text CHECK (length(notes) <= 2000),
    cancel_reason text CHECK (length(cancel_reason) <= 500),
    cancelled_by text CHECK (cancelled_by IN ('clinic', 'patient')),
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id),
    FOREIGN KEY (tenant_id, professional_id) REFERENCES memberships (tenant_id, user_id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES services (tenant_id, id),
    FOREIGN KEY (tenant_id, resource_id) REFERENCES resources (tenant_id, id),
    FOREIGN KEY (tenant_id, series_id) REFERENCES appointment_series (tenant_id, id),
    -- No double booking, by the database: two live appointments of one professional, or
    -- of one room or machine, never share a moment.
    CONSTRAINT appointments_professional_no_overlap EXCLUDE USING gist
        (tenant_id WITH =, professional_id WITH =, blocks WITH &&) WHERE (status <> 'cancelled'),
    CONSTRAINT appointments_resource_no_overlap EXCLUDE USING gist
        (tenant_id WITH =, resource_id WITH =, blocks WITH &&)
        WHERE (status <> 'cancelled' AND resource_id IS NOT NULL)
);
CREATE INDEX appointments_patient_idx ON appointments (tenant_id, patient_id, during);
CREATE INDEX appointments_start_idx ON appointments (tenant_id, lower(during));

-- Patients waiting for a slot to free up.
CREATE TABLE waitlist_entries (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    service_id uuid NOT NULL,
    professional_id uuid,
    -- Preferred periods: [{"weekday": 1..7, "from": "HH:MM", "to": "HH:MM"}, ...]; empty: any.
    periods jsonb NOT NULL DEFAULT '[]',
    earliest date,
    latest date,
    status text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'notified', 'booked', 'withdrawn')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id),
    FOREIGN KEY (tenant_id, service_id) REFERENCES services (tenant_id, id)
);

-- Secret calendar-feed URLs, one per professional; only the hash of the secret is kept.
CREATE TABLE calendar_feeds (
    tenant_id uuid NOT NULL,
    professional_id uuid NOT NULL,
    token_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, professional_id),
    FOREIGN KEY (tenant_id, professional_id) REFERENCES memberships (tenant_id, user_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agenda_settings', 'services', 'service_professionals', 'resources',
        'service_resources', 'working_hours', 'time_off', 'calendar_days', 'appointment_series',
        'appointments', 'waitlist_entries', 'calendar_feeds']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant()) '
                       'WITH CHECK (tenant_id = app_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO harmony_app', t);
    END LOOP;
END $$;
