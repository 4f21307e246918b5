-- Token lifecycle (kept in step with ../postgres/0005_tokens.sql). Every bearer token now lives
-- in `tokens`, runner tokens included, so one list shows them and one id revokes any of them:
-- registration tokens expire, admin tokens record when they were last used.

ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
-- Kind 'runner': the runner this token authenticates.
ALTER TABLE tokens ADD COLUMN runner_id INTEGER REFERENCES runners (id) ON DELETE CASCADE;
CREATE INDEX tokens_runner ON tokens (runner_id);

-- Runner tokens move here. `runners.token_hash` stays (SQLite cannot drop a UNIQUE column)
-- and keeps the hash it was created with; authentication reads `tokens` only, so revoking a
-- runner's token (deleting its row here) locks the runner out.
INSERT INTO tokens (kind, hash, description, created_at, runner_id)
    SELECT 'runner', token_hash, name, created_at, id FROM runners;

-- Registration tokens made before they could expire get the default lifetime (1 h) from
-- their creation: an old unused one no longer registers a runner.
UPDATE tokens SET expires_at = created_at + 3600000 WHERE kind = 'registration';

-- This installation's identity: random, made once. Job ids are unique only within one
-- database; runners label containers with this id too, so that several installations can
-- share a Docker engine without mistaking each other's jobs.
CREATE TABLE installation (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id        TEXT    NOT NULL
);
INSERT INTO installation (singleton, id) VALUES (1, lower(hex(randomblob(16))));
