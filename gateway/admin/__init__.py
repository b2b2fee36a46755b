"""The operator surface: the dead-letter desk, the admin API and the ``dlq``/``apps``
commands, with roles, department scopes and the audit trail.

    auth.py   Bearer token → Operator (roles, systems); 401 / 403 as typed errors
    copies.py what a replay sends: the original message, or an edited copy (pure)
    desk.py   dead letters: list, show, groups, replay, edit-and-replay, purge; the
              application search; every action and unmasked read in the audit trail
    replay.py, edit.py, purge.py  the desk's actions, one module each
    casework.py  what they share: a visible letter, its marks and audit rows, a planner
              transition committed with them and its outbox published
    outcomes.py  what the desk answers, and its typed refusals (404 / 409)
    resubmit.py  a gw.intake letter replayed through intake as its portal
    views.py  masked (or, with ``unmask``, full) JSON views of letters and applications
    http.py   /v1/admin/… routes (aiohttp)
    cli.py    ``gateway dlq …`` and ``gateway apps …``
"""
