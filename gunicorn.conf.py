"""gunicorn settings read from the working directory (the README's production command, the benchmarks).

A threaded worker's request thread gives up the GIL for every database and Redis round trip and must win it back
to go on; with CPython's default 5 ms switch interval it can wait that long behind a thread that is rendering.
At 1 ms the access-token endpoint serves 16 % more requests at 32 clients and its p99 falls from 63 to 47 ms
(tests/benchmarks/bench_access_token.py); the workers use the same interval (workers/__main__.py).
"""

import sys


def post_worker_init(worker: object) -> None:
    sys.setswitchinterval(0.001)
