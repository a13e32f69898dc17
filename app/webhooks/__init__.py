"""Webhook delivery: the worker that POSTs the outbox (:mod:`.deliver`) and its command
(:mod:`.cli`). What an event is, and the queue, are the clearing domain's
(:mod:`app.clearing.events`, :mod:`app.clearing.webhook_queue`)."""
