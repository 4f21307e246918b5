-- Repository secrets, encrypted by the coordinator (AEAD; the key stays in its key file), and
-- what a stage produced (a build's image, a scan's verdict) for later stages and deploy gates.

ALTER TABLE jobs ADD COLUMN outputs TEXT; -- JSON
-- `approval: required` stages wait in 'pending' after their needs passed until approved.
ALTER TABLE jobs ADD COLUMN approval_required BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE jobs ADD COLUMN approved_by TEXT;
ALTER TABLE jobs ADD COLUMN approved_at INTEGER;

CREATE TABLE secrets (
    repo_id    INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL, -- which key of the key ring sealed it
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name)
);
