-- 0003: clocks that stop and start: when a task's clock stood still (a correction asked of
-- the citizen, a suspension); NULL while it runs. Same token rules as 0001.

ALTER TABLE tasks ADD COLUMN clock_stopped_at DOUBLE PRECISION;
