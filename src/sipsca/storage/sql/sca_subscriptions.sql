-- Kamailio's sca table, table version 2 (utils/kamctl/*/sca-create.sql); the name is the
-- configurable subs_table. The version row is written by the code, not here.
CREATE TABLE IF NOT EXISTS ${table} (
    id ${id_column},
    subscriber VARCHAR(255) NOT NULL,
    aor VARCHAR(255) NOT NULL,
    event INTEGER DEFAULT 0 NOT NULL,
    expires INTEGER DEFAULT 0 NOT NULL,
    state INTEGER DEFAULT 0 NOT NULL,
    app_idx INTEGER DEFAULT 0 NOT NULL,
    call_id VARCHAR(255) NOT NULL,
    from_tag VARCHAR(128) NOT NULL,
    to_tag VARCHAR(128) NOT NULL,
    record_route TEXT,
    notify_cseq INTEGER NOT NULL,
    subscribe_cseq INTEGER NOT NULL,
    server_id INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT ${index_prefix}sca_subscriptions_idx UNIQUE (subscriber, call_id, from_tag, to_tag)
)${table_options};
CREATE INDEX ${index_prefix}sca_expires_idx ON ${table} (server_id, expires);
CREATE INDEX ${index_prefix}sca_subscribers_idx ON ${table} (subscriber, event);
