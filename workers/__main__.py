"""`python -m workers`: run an RQ worker on the EasyConnect queue with the process runtime."""

from __future__ import annotations

import logging
import sys

from rq import Queue, SimpleWorker

from portal.queue import DEFAULT_QUEUE
from workers import runtime


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The refresh threads mostly wait on the network; a shorter GIL switch interval lets a thread whose answer
    # has arrived run sooner instead of waiting up to 5 ms behind a busy one at every round trip.
    sys.setswitchinterval(0.001)
    rt = runtime.current()
    if rt.redis is None:
        print("REDIS_URL is not set: jobs run inline in the web process; no worker is needed.", file=sys.stderr)
        return 2
    # SimpleWorker runs jobs in this process (no fork per job): the runtime's connection pools are reused.
    worker = SimpleWorker([Queue(DEFAULT_QUEUE, connection=rt.redis)], connection=rt.redis)
    # --burst: work until the queue is empty, then exit (tests, one-off catch-up runs).
    worker.work(burst="--burst" in args, with_scheduler=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
