DROP TABLE calendar_feeds, waitlist_entries, appointments, appointment_series, calendar_days,
    time_off, working_hours, service_resources, resources, service_professionals, services,
    agenda_settings;
