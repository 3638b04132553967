-- Refresh tokens (stored hashed, rotated, revoked by family) and login throttling.

CREATE TABLE refresh_tokens (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    family_id uuid NOT NULL,
    user_id uuid NOT NULL,
    token_hash bytea NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set when the token was exchanged for a new one; a second use revokes the family.
    used_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES memberships (tenant_id, user_id)
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (tenant_id, family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (tenant_id, user_id);
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO harmony_app;

-- Failed logins per key (a hash of the account's e-mail or of the client address) in a
-- fixed window. Not tenant data: a login happens before any tenant is known.
CREATE TABLE login_throttle (
    key bytea PRIMARY KEY,
    window_started_at timestamptz NOT NULL,
    failures integer NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO harmony_app;
