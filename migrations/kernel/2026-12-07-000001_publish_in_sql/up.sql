-- Publishing an event from SQL, for a statement that reports its own change only when the
-- change happened (an insert that may turn out to be a duplicate, say):
--
--   WITH m AS (INSERT ... ON CONFLICT DO NOTHING RETURNING id)
--   SELECT outbox_publish($tenant, $event_id, 'topic', jsonb_build_object('id', m.id)) FROM m
--
-- It is the one definition of an outbox row: `events::publish` calls it too. It runs as its
-- caller, so the row-level policy still holds the event to the caller's clinic.
-- Arguments: the clinic, the event's id, its topic, its payload. PL/pgSQL keeps the
-- insert's plan for the session; an SQL function would plan it on every call.
CREATE FUNCTION outbox_publish(uuid, uuid, text, jsonb)
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO outbox_events (tenant_id, id, topic, payload) VALUES ($1, $2, $3, $4);
    RETURN $2;
END
$$;
REVOKE EXECUTE ON FUNCTION outbox_publish(uuid, uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_publish(uuid, uuid, text, jsonb) TO harmony_app;

-- The same for a data key: the statement that creates a subject's row (a conversation,
-- say) stores the key `Crypto::fresh_subject` made for it, and nothing is stored when the
-- row turned out to exist. Returns the wrapped key.
CREATE FUNCTION data_key_insert(uuid, uuid, bytea)
RETURNS bytea LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO data_keys (tenant_id, subject_id, wrapped_key) VALUES ($1, $2, $3);
    RETURN $3;
END
$$;
REVOKE EXECUTE ON FUNCTION data_key_insert(uuid, uuid, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION data_key_insert(uuid, uuid, bytea) TO harmony_app;
