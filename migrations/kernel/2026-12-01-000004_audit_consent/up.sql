-- Append-only logs: who accessed whose personal data, and who consented to what.
-- The application role may only read and append; triggers refuse changes even from
-- the owner, so a bug or an injected statement cannot rewrite history.

CREATE TABLE audit_events (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_kind text NOT NULL CHECK (actor_kind IN ('user', 'assistant', 'plugin', 'system')),
    actor_id uuid,
    subject_kind text,
    subject_id uuid,
    resource text NOT NULL,
    action text NOT NULL,
    ip inet,
    user_agent text,
    request_id text,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_events_time_idx ON audit_events (tenant_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_subject_idx ON audit_events (tenant_id, subject_id, occurred_at DESC);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();
GRANT SELECT, INSERT ON audit_events TO harmony_app, harmony_system;

CREATE TABLE consent_records (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    subject_kind text NOT NULL,
    subject_id uuid NOT NULL,
    purpose text NOT NULL,
    legal_basis text NOT NULL,
    policy_version text NOT NULL,
    granted boolean NOT NULL,
    channel text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by uuid,
    ip inet,
    user_agent text,
    evidence jsonb,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX consent_records_subject_idx
    ON consent_records (tenant_id, subject_kind, subject_id, purpose, recorded_at DESC, id DESC);
ALTER TABLE consent_records ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON consent_records
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE TRIGGER consent_records_append_only BEFORE UPDATE OR DELETE ON consent_records
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
CREATE TRIGGER consent_records_no_truncate BEFORE TRUNCATE ON consent_records
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();
GRANT SELECT, INSERT ON consent_records TO harmony_app;
