DROP TABLE event_failures;
DROP TABLE event_cursors;
DROP TABLE outbox_events;
