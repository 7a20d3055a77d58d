-- Non-idle appearances (Kamailio keeps none: calls survive a sipsca restart).
CREATE TABLE IF NOT EXISTS sipsca_appearances (
    aor VARCHAR(255) NOT NULL,
    idx INTEGER NOT NULL,
    state VARCHAR(32) NOT NULL,
    owner TEXT NOT NULL,
    callee TEXT NOT NULL,
    uri TEXT NOT NULL,
    call_id TEXT NOT NULL,
    from_tag TEXT NOT NULL,
    to_tag TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL,
    private_owner TEXT NOT NULL,
    PRIMARY KEY (aor, idx)
)${table_options};
