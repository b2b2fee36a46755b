"""Supervision: the monthly ledger of time limits kept, per department and matter."""
