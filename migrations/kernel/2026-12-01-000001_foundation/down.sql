DROP TABLE system_access_log;
DROP FUNCTION forbid_change();
DROP FUNCTION app_current_user();
DROP FUNCTION app_current_tenant();
