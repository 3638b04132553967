DROP TABLE consent_records;
DROP TABLE audit_events;
