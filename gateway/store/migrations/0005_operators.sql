-- 0005: the operator surface. Same token rules as 0001.
--
-- A dead letter is parked until an operator replays or purges it; a purge keeps who, when
-- and why but drops the body and headers (the personal data). Edits are copies: the
-- original letter is never changed. The audit table is only ever inserted into.

ALTER TABLE dead_letters ADD COLUMN status TEXT NOT NULL DEFAULT 'parked';
ALTER TABLE dead_letters ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN replayed_at DOUBLE PRECISION;
ALTER TABLE dead_letters ADD COLUMN replayed_by TEXT;
ALTER TABLE dead_letters ADD COLUMN replay_reason TEXT;
ALTER TABLE dead_letters ADD COLUMN purged_at DOUBLE PRECISION;
ALTER TABLE dead_letters ADD COLUMN purged_by TEXT;
ALTER TABLE dead_letters ADD COLUMN purge_reason TEXT;

CREATE INDEX dead_letters_status ON dead_letters (status, id);
CREATE INDEX dead_letters_matter ON dead_letters (matter, id);

-- the idempotency key of a task's current attempt when it is not derived from the attempt
-- (an operator's edited copy goes as <task id>.r<n>)
ALTER TABLE tasks ADD COLUMN request_key TEXT;

CREATE TABLE dead_letter_edits (
    id              {{SERIAL_ID}},
    dead_letter_id  BIGINT NOT NULL,
    task_id         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    diff_json       TEXT NOT NULL,
    body            {{BYTES}} NOT NULL,
    reason          TEXT NOT NULL,
    operator        TEXT NOT NULL,
    at              DOUBLE PRECISION NOT NULL
);

CREATE INDEX dead_letter_edits_letter ON dead_letter_edits (dead_letter_id, id);

CREATE TABLE audit (
    id           {{SERIAL_ID}},
    at           DOUBLE PRECISION NOT NULL,
    operator     TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    reason       TEXT,
    details_json TEXT NOT NULL
);

CREATE INDEX audit_operator ON audit (operator, id);
CREATE INDEX audit_target ON audit (target, id);
