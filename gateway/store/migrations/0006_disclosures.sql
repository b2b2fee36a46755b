-- 0006: disclosures — which department system received which personal fields of an
-- application, one row per task dispatched (written in the dispatching transaction, so a
-- row exists exactly when the task went to the outbox). Field names only, never values.
-- Same token rules as 0001.

CREATE TABLE disclosures (
    id              {{SERIAL_ID}},
    application_id  TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    system          TEXT NOT NULL,
    operation       TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    fields_json     TEXT NOT NULL,
    at              DOUBLE PRECISION NOT NULL
);

CREATE INDEX disclosures_application ON disclosures (application_id, at);
