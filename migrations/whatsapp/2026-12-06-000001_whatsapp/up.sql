-- The WhatsApp assistant: each clinic's business number, its conversations (one per
-- contact), the messages in and out with their delivery statuses, and the reminders
-- sent. Message text and transcripts are encrypted by the application under a data key
-- per conversation (`key_subject`), so that erasing a conversation destroys its key.

-- Which clinic a Meta phone number id belongs to: read before the clinic is known (by the
-- webhook, through the system role), written when a clinic saves its settings. A platform
-- table, like a Citus reference table: it holds no personal data.
CREATE TABLE whatsapp_routes (
    phone_number_id text PRIMARY KEY CHECK (phone_number_id ~ '^[0-9]{1,32}$'),
    tenant_id uuid NOT NULL UNIQUE REFERENCES tenants (id),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON whatsapp_routes TO harmony_system;

CREATE TABLE whatsapp_settings (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
    enabled boolean NOT NULL DEFAULT true,
    phone_number_id text CHECK (phone_number_id ~ '^[0-9]{1,32}$'),
    display_phone_number text CHECK (length(display_phone_number) <= 32),
    -- The Graph API access token, sealed under the clinic's key (subject = the clinic).
    access_token bytea,
    -- Minutes before the start; one reminder per entry.
    reminder_offsets_minutes integer[] NOT NULL DEFAULT '{1440,120}'
        CHECK (cardinality(reminder_offsets_minutes) <= 4),
    -- Approved templates by use: {"reminder": {"name": "...", "language": "pt_BR"}, ...}.
    templates jsonb NOT NULL DEFAULT '{}',
    -- What the assistant tells patients about the clinic.
    address text CHECK (length(address) <= 500),
    opening_hours text CHECK (length(opening_hours) <= 500),
    -- The assistant's own identity in the clinic (role `assistant`).
    assistant_user_id uuid,
    updated_by uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE whatsapp_settings ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON whatsapp_settings
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON whatsapp_settings TO harmony_app;
GRANT SELECT ON whatsapp_settings TO harmony_system;

CREATE TABLE whatsapp_conversations (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    -- The WhatsApp id exactly as received (it may lack the ninth digit), and the
    -- business-scoped user id; at least one.
    wa_id text CHECK (wa_id ~ '^[0-9]{8,15}$'),
    user_id text CHECK (length(user_id) <= 64),
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL),
    -- The patient this contact is, once known (through the patients module's service API).
    patient_id uuid,
    -- The data-key subject of this conversation's text; replaced when it is erased.
    key_subject uuid NOT NULL,
    profile_name bytea,
    -- From the timestamp of the contact's latest message: the 24-hour window.
    last_inbound_at timestamptz,
    last_message_at timestamptz,
    -- Who answers: the assistant, or staff who took over.
    mode text NOT NULL DEFAULT 'assistant' CHECK (mode IN ('assistant', 'staff')),
    handoff_requested_at timestamptz,
    taken_over_by uuid,
    -- The contact stopped non-essential messages.
    opted_out_at timestamptz,
    -- Staff should look: a person was asked for, or a message could not be delivered.
    needs_attention boolean NOT NULL DEFAULT false,
    -- What is being booked, what was offered, what awaits a yes: ids and times only.
    state jsonb NOT NULL DEFAULT '{}',
    -- One processor at a time per conversation, across replicas.
    lease_until timestamptz,
    lease_owner text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX whatsapp_conversations_wa_id_key ON whatsapp_conversations (tenant_id, wa_id);
CREATE UNIQUE INDEX whatsapp_conversations_user_id_key ON whatsapp_conversations (tenant_id, user_id);
CREATE INDEX whatsapp_conversations_recent_idx
    ON whatsapp_conversations (tenant_id, last_message_at DESC, id DESC);
CREATE INDEX whatsapp_conversations_patient_idx ON whatsapp_conversations (tenant_id, patient_id);
ALTER TABLE whatsapp_conversations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON whatsapp_conversations
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON whatsapp_conversations TO harmony_app;

CREATE TABLE whatsapp_messages (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    direction text NOT NULL CHECK (direction IN ('in', 'out')),
    -- Meta's message id: inbound ones are deduplicated on it; outbound ones get it once sent.
    wamid text CHECK (length(wamid) <= 256),
    -- text, audio, interactive, button, template, other
    kind text NOT NULL,
    -- Sealed text: what was written, the transcript of a voice note, what was sent.
    body bytea,
    -- Structure without personal text: button ids, template name and parameters' count,
    -- the media id of a voice note until it is transcribed.
    detail jsonb NOT NULL DEFAULT '{}',
    -- Inbound: when the contact sent it (Meta's timestamp). Outbound: when it was queued.
    sent_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Inbound: received, processed. Outbound: pending, sending, sent, delivered, read,
    -- played, failed, skipped.
    status text NOT NULL,
    status_at timestamptz NOT NULL DEFAULT now(),
    error_code integer,
    error_detail text CHECK (length(error_detail) <= 1000),
    -- Who wrote it: the contact, the assistant, a staff member, or the clinic's automations.
    author text NOT NULL CHECK (author IN ('contact', 'assistant', 'staff', 'automation')),
    author_user_id uuid,
    -- Outbound: why it was sent (reply, confirmation, reminder, waitlist, manual, notice).
    purpose text,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    lease_until timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES whatsapp_conversations (tenant_id, id)
);
CREATE UNIQUE INDEX whatsapp_messages_wamid_key ON whatsapp_messages (tenant_id, wamid);
CREATE INDEX whatsapp_messages_conversation_idx
    ON whatsapp_messages (tenant_id, conversation_id, sent_at, id);
CREATE INDEX whatsapp_messages_pending_idx ON whatsapp_messages (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX whatsapp_messages_unprocessed_idx ON whatsapp_messages (tenant_id, conversation_id)
    WHERE direction = 'in' AND status = 'received';
ALTER TABLE whatsapp_messages ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON whatsapp_messages
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON whatsapp_messages TO harmony_app;
-- The retry sweep finds due messages of every clinic.
GRANT SELECT ON whatsapp_messages TO harmony_system;

-- How far along a delivery status is: statuses only move forward, so duplicates and late
-- arrivals (a `delivered` after its `read`) change nothing; a failure is final.
CREATE FUNCTION whatsapp_status_rank(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3
                       WHEN 'played' THEN 4 WHEN 'failed' THEN 5 ELSE 0 END;

-- Every delivery status received, once per (message, status): duplicates and late or
-- out-of-order deliveries change nothing twice.
CREATE TABLE whatsapp_statuses (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    wamid text NOT NULL,
    status text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'played', 'failed')),
    occurred_at timestamptz NOT NULL,
    error_code integer,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, wamid, status)
);
ALTER TABLE whatsapp_statuses ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON whatsapp_statuses
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, DELETE ON whatsapp_statuses TO harmony_app;

-- One notice per appointment, kind and start: a reminder goes out once even when ticks
-- overlap or replicas race, and again after a reschedule (the start changed).
CREATE TABLE whatsapp_notices (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    -- The appointment (for a waitlist offer: the waitlist entry).
    appointment_id uuid NOT NULL,
    -- confirmation, reminder:<minutes>, waitlist
    kind text NOT NULL CHECK (length(kind) <= 80),
    starts_at timestamptz NOT NULL,
    message_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, appointment_id, kind, starts_at)
);
ALTER TABLE whatsapp_notices ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON whatsapp_notices
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON whatsapp_notices TO harmony_app;
