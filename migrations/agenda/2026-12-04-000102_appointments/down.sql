DROP INDEX time_off_starts_idx;
ALTER TABLE time_off DROP COLUMN starts_at, DROP COLUMN ends_at;
ALTER TABLE calendar_feeds DROP COLUMN last_used_at;
DROP INDEX waitlist_patient_idx;
DROP INDEX waitlist_waiting_idx;
ALTER TABLE waitlist_entries DROP CONSTRAINT waitlist_dates_ordered,
    DROP COLUMN notes, DROP COLUMN notified_at, DROP COLUMN updated_at;
ALTER TABLE appointment_series DROP COLUMN on_conflict;
DROP INDEX appointments_reminder_idx;
DROP INDEX appointments_resource_busy_idx;
DROP INDEX appointments_professional_busy_idx;
DROP INDEX appointments_visit_idx;
DROP INDEX appointments_patient_idx;
DROP INDEX appointments_start_idx;
ALTER TABLE appointments
    DROP CONSTRAINT appointments_bounded,
    DROP CONSTRAINT appointments_blocks_within_a_day,
    DROP COLUMN reminder_sent_at, DROP COLUMN cancelled_at, DROP COLUMN completed_at,
    DROP COLUMN checked_in_at, DROP COLUMN confirmed_at, DROP COLUMN booked_by,
    DROP COLUMN blocked_until, DROP COLUMN blocked_from, DROP COLUMN starts_at;
CREATE INDEX appointments_patient_idx ON appointments (tenant_id, patient_id, during);
CREATE INDEX appointments_start_idx ON appointments (tenant_id, lower(during));
