-- Envelope encryption: each clinic's key wrapped by the master key, each data subject's key
-- wrapped by their clinic's key. Destroying a subject's key (crypto-shredding) leaves the
-- row with no key and a time of destruction; it can never get a key again.

CREATE TABLE tenant_keys (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
    -- Which master key wraps this one (a fingerprint, not the key).
    master_key_id text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keys
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT ON tenant_keys TO harmony_app;
GRANT SELECT, UPDATE ON tenant_keys TO harmony_system;

CREATE TABLE data_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    subject_id uuid NOT NULL,
    wrapped_key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    shredded_at timestamptz,
    PRIMARY KEY (tenant_id, subject_id),
    CHECK ((wrapped_key IS NULL) = (shredded_at IS NOT NULL))
);
ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON data_keys
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON data_keys TO harmony_app;

CREATE FUNCTION data_keys_stay_shredded() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.shredded_at IS NOT NULL THEN
        RAISE EXCEPTION 'the data key of subject % was destroyed', OLD.subject_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER data_keys_stay_shredded BEFORE UPDATE ON data_keys
    FOR EACH ROW EXECUTE FUNCTION data_keys_stay_shredded();
