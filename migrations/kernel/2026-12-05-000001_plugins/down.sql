DROP TABLE plugin_kv;
DROP TABLE plugin_installations;
