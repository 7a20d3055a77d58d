-- Kamailio's `version` table (utils/kamctl/*/standard-create.sql), created only when missing.
-- ${index_prefix} is "version_" on SQLite/PostgreSQL and empty on MySQL, as Kamailio names it.
CREATE TABLE IF NOT EXISTS version (
    id ${id_column},
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT ${index_prefix}table_name_idx UNIQUE (table_name)
)${table_options};
INSERT INTO version (table_name, table_version) VALUES ('version', 1);
