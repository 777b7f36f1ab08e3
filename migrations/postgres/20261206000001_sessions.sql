-- Dashboard sign-ins. The cookie holds a random session id; only its SHA-256 is stored, with
-- the SHA-256 of the API token it was opened with (a token removed from the configuration ends
-- its sessions) and when it expires (milliseconds since the epoch). Signing out deletes the row.
CREATE TABLE sessions (
    id_sha256    TEXT PRIMARY KEY NOT NULL,
    token_sha256 TEXT NOT NULL,
    expires_ms   BIGINT NOT NULL
);
