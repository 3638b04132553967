DROP FUNCTION outbox_publish(uuid, uuid, text, jsonb);
