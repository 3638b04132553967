-- Helpers every kernel part and module uses.

-- The tenant of the current transaction, or NULL when none was set: with NULL every
-- tenant policy compares to NULL and the application sees no rows at all. After a
-- transaction that set it, the setting reads '' rather than NULL, hence the NULLIF.
CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE FUNCTION app_current_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;

-- Raised by the triggers of append-only tables (audit and consent logs).
CREATE FUNCTION forbid_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

-- Every use of the system path (the RLS-bypassing role), counted per purpose and minute.
CREATE TABLE system_access_log (
    purpose text NOT NULL,
    minute timestamptz NOT NULL,
    calls bigint NOT NULL,
    PRIMARY KEY (purpose, minute)
);
GRANT SELECT, INSERT, UPDATE ON system_access_log TO harmony_app, harmony_system;

GRANT USAGE ON SCHEMA public TO harmony_app, harmony_system;
