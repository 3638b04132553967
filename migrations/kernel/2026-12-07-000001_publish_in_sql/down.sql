DROP FUNCTION data_key_insert(uuid, uuid, bytea);
DROP FUNCTION outbox_publish(uuid, uuid, text, jsonb);
