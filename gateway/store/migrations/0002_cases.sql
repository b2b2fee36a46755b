-- 0002: the internal push: tasks per application, its timeline, the transactional outbox
-- and timer rows (polling a department). Same token rules as 0001.

ALTER TABLE applications ADD COLUMN catalogue_version TEXT;
ALTER TABLE applications ADD COLUMN provided_json TEXT NOT NULL DEFAULT '{}';

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    application_id   TEXT NOT NULL,
    matter           TEXT NOT NULL,
    step             TEXT NOT NULL,
    system           TEXT NOT NULL,
    operation        TEXT NOT NULL,
    status           TEXT NOT NULL,
    depends_on       TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    case_number      TEXT,
    certificate      TEXT,
    reason           TEXT,
    gaps_json        TEXT NOT NULL,
    provides_json    TEXT NOT NULL,
    dispatched_at    DOUBLE PRECISION,
    clock_started_at DOUBLE PRECISION,
    due_at           DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    updated_at       DOUBLE PRECISION NOT NULL,
    position         INTEGER NOT NULL
);

CREATE INDEX tasks_application ON tasks (application_id, position);
CREATE INDEX tasks_status_due ON tasks (status, due_at);

CREATE TABLE timeline (
    seq            {{SERIAL_ID}},
    application_id TEXT NOT NULL,
    task_id        TEXT,
    at             DOUBLE PRECISION NOT NULL,
    kind           TEXT NOT NULL,
    detail_json    TEXT NOT NULL
);

CREATE INDEX timeline_application ON timeline (application_id, seq);

CREATE TABLE outbox (
    id             {{SERIAL_ID}},
    exchange       TEXT NOT NULL,
    routing_key    TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    correlation_id TEXT,
    content_type   TEXT NOT NULL,
    type           TEXT,
    headers_json   TEXT NOT NULL,
    body           {{BYTES}} NOT NULL,
    created_at     DOUBLE PRECISION NOT NULL,
    lease_until    DOUBLE PRECISION NOT NULL
);

CREATE INDEX outbox_lease ON outbox (lease_until);

CREATE TABLE timers (
    task_id     TEXT PRIMARY KEY,
    system      TEXT NOT NULL,
    due_at      DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL,
    polls       INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX timers_system_due ON timers (system, due_at);
