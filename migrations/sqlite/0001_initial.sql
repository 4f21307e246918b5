-- Coordinator schema, SQLite flavour (kept in step with ../postgres/0001_initial.sql).
-- Times are milliseconds since the Unix epoch. Status values are lower-case words; the partial
-- indexes below name them literally, so queries must too for the planner to use them.

CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE,
    description TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE runners (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    token_hash   BLOB    NOT NULL UNIQUE,
    slots        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER
);

CREATE TABLE repos (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT    NOT NULL UNIQUE,
    clone_url          TEXT    NOT NULL,
    forge              TEXT    NOT NULL,
    webhook_secret     TEXT    NOT NULL,
    concurrency        INTEGER,
    cancel_superseded  BOOLEAN NOT NULL,
    protected_branches TEXT    NOT NULL, -- JSON array of patterns
    created_at         INTEGER NOT NULL,
    -- Scheduler bookkeeping:
    run_counter        INTEGER NOT NULL DEFAULT 0, -- last run number handed out
    last_claim_at      INTEGER,
    claim_seq          INTEGER NOT NULL DEFAULT 0, -- order of last claims, 0 = never (jobs_claimed)
    ready              INTEGER NOT NULL DEFAULT 0, -- jobs with status 'ready' (see jobs_count_*)
    running            INTEGER NOT NULL DEFAULT 0  -- jobs with status 'running'
);
CREATE INDEX repos_claim_seq ON repos (claim_seq);
-- The claim walks this in fairness order and only sees repositories with work.
CREATE INDEX repos_claimable ON repos (claim_seq, id) WHERE ready > 0;

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id          INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    branch           TEXT,
    target_branch    TEXT,
    tag              TEXT,
    commit_sha       TEXT    NOT NULL,
    trusted          BOOLEAN NOT NULL,
    trigger_kind     TEXT    NOT NULL,
    actor            TEXT,
    reason           TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (repo_id, number)
);
CREATE INDEX runs_repo_status ON runs (repo_id, status, id);
CREATE INDEX runs_repo_branch ON runs (repo_id, branch, id);
CREATE INDEX runs_status ON runs (status, id);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    repo_id          INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    stage_index      INTEGER NOT NULL,
    name             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    needs            TEXT    NOT NULL, -- JSON array of stage indices
    spec             TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    runner_id        INTEGER, -- kept after the job ends: claim affinity looks at it
    lease_expires_at INTEGER,
    exit_code        INTEGER,
    reason           TEXT,
    when_skipped     BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    ready_at         INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (run_id, stage_index)
);
CREATE INDEX jobs_ready ON jobs (repo_id, ready_at, id) WHERE status = 'ready';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';

-- repos.ready / repos.running count the repository's jobs in those states: the claim reads them
-- instead of counting rows. Triggers keep them, so no code path can forget to.
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
WHEN NEW.status IN ('ready', 'running')
BEGIN
    UPDATE repos
    SET ready = ready + (NEW.status = 'ready'),
        running = running + (NEW.status = 'running')
    WHERE id = NEW.repo_id;
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs
WHEN OLD.status <> NEW.status
 AND (OLD.status IN ('ready', 'running') OR NEW.status IN ('ready', 'running'))
BEGIN
    UPDATE repos
    SET ready = ready + (NEW.status = 'ready') - (OLD.status = 'ready'),
        running = running + (NEW.status = 'running') - (OLD.status = 'running')
    WHERE id = NEW.repo_id;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
WHEN OLD.status IN ('ready', 'running')
BEGIN
    UPDATE repos
    SET ready = ready - (OLD.status = 'ready'),
        running = running - (OLD.status = 'running')
    WHERE id = OLD.repo_id;
END;

-- A job that starts running has just been claimed. The claim's bookkeeping lives here so that
-- a claim is a single statement: the repository goes to the back of the fairness order
-- (claim_seq strictly increasing, served by repos_claim_seq), and a queued run starts.
CREATE TRIGGER jobs_claimed AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status <> 'running'
BEGIN
    UPDATE repos
    SET last_claim_at = NEW.started_at,
        claim_seq = (SELECT MAX(claim_seq) FROM repos) + 1
    WHERE id = NEW.repo_id;
    UPDATE runs
    SET status = 'running', started_at = NEW.started_at
    WHERE id = NEW.run_id AND status = 'queued';
END;

CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id      INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    delivery_id  TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    received_at  INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER,
    processed_at INTEGER,
    error        TEXT,
    UNIQUE (repo_id, delivery_id)
);
CREATE INDEX deliveries_pending ON deliveries (id) WHERE processed_at IS NULL;

CREATE TABLE logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    run_id  INTEGER NOT NULL, -- denormalised for run_logs; cascades through the job
    attempt INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    stream  TEXT    NOT NULL,
    line    TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL,
    UNIQUE (job_id, attempt, seq)
);
CREATE INDEX logs_run ON logs (run_id, id);
CREATE INDEX logs_job ON logs (job_id, id);

-- No foreign key to runs: the audit trail outlives deleted repositories.
CREATE TABLE audit_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms  INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    run_id INTEGER,
    detail TEXT    NOT NULL
);
CREATE INDEX audit_run ON audit_events (run_id, id);
