-- A conversation is created by a new contact's first message, and statuses and notices
-- arrive with every message sent: as for the kernel's log tables, a foreign key to
-- `tenants` would have each of those transactions share-lock the clinic's one row, which
-- at hundreds a second costs more than the webhook itself. Row-level security already
-- holds each row to its clinic.
ALTER TABLE whatsapp_conversations DROP CONSTRAINT whatsapp_conversations_tenant_id_fkey;
ALTER TABLE whatsapp_statuses DROP CONSTRAINT whatsapp_statuses_tenant_id_fkey;
ALTER TABLE whatsapp_notices DROP CONSTRAINT whatsapp_notices_tenant_id_fkey;
