-- Plugins: which clinic enabled which plugin with which capabilities, and each plugin's
-- own key-value store per clinic.

CREATE TABLE plugin_installations (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    plugin text NOT NULL CHECK (plugin ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    -- The plugin's own subject in this clinic: its RBAC links and audit records use it.
    subject_id uuid NOT NULL UNIQUE,
    enabled boolean NOT NULL,
    -- Capabilities the clinic granted (a subset of those the plugin requests).
    granted text[] NOT NULL DEFAULT '{}',
    changed_by uuid NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plugin)
);
ALTER TABLE plugin_installations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON plugin_installations
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON plugin_installations TO harmony_app;
-- Loading RBAC links and running scheduled plugin tasks cross clinics.
GRANT SELECT ON plugin_installations TO harmony_system;

CREATE TABLE plugin_kv (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    plugin text NOT NULL,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 256),
    value jsonb NOT NULL CHECK (pg_column_size(value) <= 65536),
    version bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plugin, key)
);
ALTER TABLE plugin_kv ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON plugin_kv
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON plugin_kv TO harmony_app;
