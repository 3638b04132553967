DROP TABLE data_keys;
DROP FUNCTION data_keys_stay_shredded();
DROP TABLE tenant_keys;
