"""Recurring sweeps for RQ's cron scheduler: `rq cron workers.cron --url $REDIS_URL`.

Each sweep only finds work and enqueues it; a worker (`python -m workers`) does it.
"""

from __future__ import annotations

from rq import cron

from portal.queue import DEFAULT_QUEUE
from workers import jobs

cron.register(jobs.sweep_refreshes, DEFAULT_QUEUE, interval=120, result_ttl=600)
cron.register(jobs.sweep_checks, DEFAULT_QUEUE, interval=900, result_ttl=600)
cron.register(jobs.recover_stuck_refreshes, DEFAULT_QUEUE, interval=300, result_ttl=600)
cron.register(jobs.purge_expired_attempts, DEFAULT_QUEUE, interval=3600, result_ttl=600)
cron.register(jobs.poll_telegram, DEFAULT_QUEUE, interval=5, result_ttl=60)
cron.register(jobs.warn_expiring, DEFAULT_QUEUE, interval=3600, result_ttl=600)
cron.register(jobs.send_outbox, DEFAULT_QUEUE, interval=60, result_ttl=60)
cron.register(jobs.purge_idempotency_records, DEFAULT_QUEUE, interval=3600, result_ttl=600)
cron.register(jobs.send_digests, DEFAULT_QUEUE, interval=3600, result_ttl=600)
cron.register(jobs.deliver_webhooks, DEFAULT_QUEUE, interval=30, result_ttl=60)
cron.register(jobs.emit_link_expired, DEFAULT_QUEUE, interval=300, result_ttl=600)
cron.register(jobs.purge_history, DEFAULT_QUEUE, interval=3600, result_ttl=600)
cron.register(jobs.purge_offboarded, DEFAULT_QUEUE, interval=3600, result_ttl=600)
