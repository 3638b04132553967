DROP TABLE whatsapp_notices;
DROP TABLE whatsapp_statuses;
DROP TABLE whatsapp_messages;
DROP TABLE whatsapp_conversations;
DROP TABLE whatsapp_settings;
DROP TABLE whatsapp_routes;
DROP FUNCTION whatsapp_status_rank(text);
