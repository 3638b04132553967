-- The transactional outbox. An event is written in the same transaction as the change it
-- describes; the dispatcher delivers it to each subscriber at least once.
--
-- Delivery order is (txid, seq). A subscriber only reads events whose transaction is older
-- than every transaction still running (pg_snapshot_xmin), so an event committed late by
-- a long transaction can never slip behind a subscriber's cursor.

CREATE TABLE outbox_events (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    topic text NOT NULL,
    payload jsonb NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX outbox_events_order_idx ON outbox_events (txid, seq);
ALTER TABLE outbox_events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox_events
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT ON outbox_events TO harmony_app;
GRANT SELECT ON outbox_events TO harmony_system;

-- How far each subscriber has got.
CREATE TABLE event_cursors (
    subscriber text PRIMARY KEY,
    last_txid bigint NOT NULL DEFAULT 0,
    last_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON event_cursors TO harmony_system;

-- Deliveries that failed: retried with backoff, parked after too many attempts.
CREATE TABLE event_failures (
    subscriber text NOT NULL,
    tenant_id uuid NOT NULL,
    event_id uuid NOT NULL,
    attempts integer NOT NULL,
    last_error text NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    parked boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, tenant_id, event_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON event_failures TO harmony_system;
