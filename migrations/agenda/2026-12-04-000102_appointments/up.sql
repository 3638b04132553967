-- Appointments: the life cycle's timestamps, reminders, and columns that row-level security
-- lets indexes use. Range operators (&&, lower(), upper()) are not leakproof, so under RLS
-- PostgreSQL may not use them in an index scan; plain timestamp comparisons it may.

ALTER TABLE appointments
    ADD COLUMN starts_at timestamptz GENERATED ALWAYS AS (lower(during)) STORED,
    ADD COLUMN blocked_from timestamptz GENERATED ALWAYS AS (lower(blocks)) STORED,
    ADD COLUMN blocked_until timestamptz GENERATED ALWAYS AS (upper(blocks)) STORED,
    ADD COLUMN booked_by text NOT NULL DEFAULT 'clinic' CHECK (booked_by IN ('clinic', 'patient')),
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN checked_in_at timestamptz,
    ADD COLUMN completed_at timestamptz,
    ADD COLUMN cancelled_at timestamptz,
    ADD COLUMN reminder_sent_at timestamptz,
    -- One service (with its cleanup) never keeps anyone busy longer than a day, which lets
    -- an overlap search bound its index range.
    ADD CONSTRAINT appointments_blocks_within_a_day
        CHECK (upper(blocks) - lower(blocks) <= interval '1 day'),
    ADD CONSTRAINT appointments_bounded CHECK (
        NOT lower_inf(blocks) AND NOT upper_inf(blocks)
        AND lower_inc(during) AND NOT upper_inc(during)
        AND lower_inc(blocks) AND NOT upper_inc(blocks));

DROP INDEX appointments_patient_idx;
DROP INDEX appointments_start_idx;
CREATE INDEX appointments_start_idx ON appointments (tenant_id, starts_at, visit_id);
CREATE INDEX appointments_patient_idx ON appointments (tenant_id, patient_id, starts_at);
CREATE INDEX appointments_visit_idx ON appointments (tenant_id, visit_id);
CREATE INDEX appointments_professional_busy_idx
    ON appointments (tenant_id, professional_id, blocked_from) INCLUDE (blocked_until, status);
CREATE INDEX appointments_resource_busy_idx
    ON appointments (tenant_id, resource_id, blocked_from) INCLUDE (blocked_until, status)
    WHERE resource_id IS NOT NULL;
-- Reminders: live appointments by start, not yet reminded.
CREATE INDEX appointments_reminder_idx ON appointments (tenant_id, starts_at)
    WHERE reminder_sent_at IS NULL AND status IN ('scheduled', 'confirmed');

ALTER TABLE appointment_series
    ADD COLUMN on_conflict text NOT NULL DEFAULT 'fail' CHECK (on_conflict IN ('fail', 'skip'));

ALTER TABLE waitlist_entries
    ADD COLUMN notes text CHECK (length(notes) <= 500),
    ADD COLUMN notified_at timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT waitlist_dates_ordered CHECK (latest IS NULL OR earliest IS NULL OR earliest <= latest);
CREATE INDEX waitlist_waiting_idx ON waitlist_entries (tenant_id, service_id, created_at)
    WHERE status IN ('waiting', 'notified');
CREATE INDEX waitlist_patient_idx ON waitlist_entries (tenant_id, patient_id);

ALTER TABLE calendar_feeds ADD COLUMN last_used_at timestamptz;

ALTER TABLE time_off
    ADD COLUMN starts_at timestamptz GENERATED ALWAYS AS (lower(during)) STORED,
    ADD COLUMN ends_at timestamptz GENERATED ALWAYS AS (upper(during)) STORED;
CREATE INDEX time_off_starts_idx ON time_off (tenant_id, starts_at) INCLUDE (ends_at);
