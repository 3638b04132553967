ALTER TABLE whatsapp_conversations ADD CONSTRAINT whatsapp_conversations_tenant_id_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE whatsapp_statuses ADD CONSTRAINT whatsapp_statuses_tenant_id_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE whatsapp_notices ADD CONSTRAINT whatsapp_notices_tenant_id_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenants (id);
