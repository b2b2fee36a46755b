-- 0004: escalation: the highest deadline threshold already raised for a task's running
-- clock ('due_soon' or 'overdue'); NULL when none, and again after the clock stood still.
-- Same token rules as 0001.

ALTER TABLE tasks ADD COLUMN escalated TEXT;
