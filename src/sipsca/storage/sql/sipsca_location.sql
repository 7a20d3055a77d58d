-- Registrar bindings; path is a JSON array of the Path header values.
CREATE TABLE IF NOT EXISTS sipsca_location (
    aor VARCHAR(255) NOT NULL,
    contact VARCHAR(512) NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    q DOUBLE PRECISION NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    path TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    reg_id INTEGER NOT NULL,
    received TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (aor, contact)
)${table_options};
