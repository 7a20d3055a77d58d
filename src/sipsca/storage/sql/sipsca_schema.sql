-- One row: the version of sipsca's own tables (storage.base.SCHEMA_VERSION).
CREATE TABLE IF NOT EXISTS sipsca_schema (
    version INTEGER NOT NULL
)${table_options};
