-- Digest users: HA1 hashes only, never the password.
CREATE TABLE IF NOT EXISTS sipsca_subscriber (
    username VARCHAR(128) NOT NULL,
    domain VARCHAR(128) NOT NULL,
    ha1_md5 VARCHAR(64) NOT NULL,
    ha1_sha256 VARCHAR(64) NOT NULL,
    PRIMARY KEY (username, domain)
)${table_options};
