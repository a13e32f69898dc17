"""The clearing domain: partners, programs, agreements, members, operations, settlement,
and the webhook outbox and delivery queue (no HTTP: the worker is :mod:`app.webhooks`).

Plain Python over SQLAlchemy, no Flask: functions take the session first and only flush;
the caller's unit of work (``ledger.unit_of_work.run``) owns the commit.
"""
