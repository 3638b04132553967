-- Clinics, the people who work in them, and who works where with which roles.

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    legal_name text CHECK (length(legal_name) <= 200),
    cnpj text CHECK (cnpj ~ '^[0-9]{14}$'),
    time_zone text NOT NULL DEFAULT 'America/Sao_Paulo',
    locale text NOT NULL DEFAULT 'pt-BR',
    contact_email text,
    contact_phone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = app_current_tenant()) WITH CHECK (id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON tenants TO harmony_app;
GRANT SELECT, INSERT ON tenants TO harmony_system;

-- One identity per e-mail, across clinics.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone text,
    photo_ref text,
    bio text CHECK (length(bio) <= 4000),
    specialties text[] NOT NULL DEFAULT '{}',
    professional_registry text CHECK (length(professional_registry) <= 64),
    -- NULL until an invited user chooses a password.
    password_hash text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    user_id uuid NOT NULL REFERENCES users (id),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    invited_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON memberships TO harmony_app;
GRANT SELECT, INSERT ON memberships TO harmony_system;

-- A user's identity is visible to themself and to the clinics they belong to.
ALTER TABLE users ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY member_or_self ON users
    USING (id = app_current_user() OR EXISTS (
        SELECT 1 FROM memberships m
        WHERE m.tenant_id = app_current_tenant() AND m.user_id = users.id))
    WITH CHECK (id = app_current_user() OR EXISTS (
        SELECT 1 FROM memberships m
        WHERE m.tenant_id = app_current_tenant() AND m.user_id = users.id));
GRANT SELECT, INSERT, UPDATE ON users TO harmony_app;
GRANT SELECT, INSERT, UPDATE ON users TO harmony_system;

-- The only per-tenant RBAC data: which user holds which role where. What a role may do
-- is defined once, in config/rbac_policy.csv, for every clinic.
CREATE TABLE role_assignments (
    tenant_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text NOT NULL CHECK (role ~ '^[a-z_]{1,32}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES memberships (tenant_id, user_id) ON DELETE CASCADE
);
ALTER TABLE role_assignments ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON role_assignments
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, DELETE ON role_assignments TO harmony_app;
GRANT SELECT, INSERT ON role_assignments TO harmony_system;

CREATE TABLE invitations (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    token_hash bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES memberships (tenant_id, user_id) ON DELETE CASCADE
);
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON invitations TO harmony_app;
GRANT SELECT, INSERT ON invitations TO harmony_system;
