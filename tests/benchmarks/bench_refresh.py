"""Refresh throughput: real `python -m workers` processes against the sandbox with added latency, next to a
plain pooled HTTP client making the same token requests at the same concurrency; then where a refresh's time
goes (round trips counted in-process, one worker profiled with py-spy).

Run: ``.venv/bin/python -m tests.benchmarks.bench_refresh`` (see tests/benchmarks/README.md). Needs
PostgreSQL (schema easyconnect_bench, dropped and recreated) and Redis DB 8 (flushed), both on loopback.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import timeit
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import event

from portal.db import utcnow
from portal.models import Agency, Connection, Workspace, new_id
from portal.oauth import TokenGrant
from portal.runtime import Runtime, build_runtime
from portal.sandbox import SandboxServer
from portal.services.connections import write_tokens
from tests.benchmarks import _support as sup
from workers import jobs

TARGET_RATE = 140.0  # 1 million connections / 7,200 s (2-hour tokens), rounded up
TARGET_RATIO = 0.70
REDIRECT = sup.PORTAL_BASE + "/oauth/callback/sandbox"
POOL = jobs.REFRESH_THREADS
CAP_ENV = "PORTAL_PLATFORM_REFRESHES_PER_SECOND"


@dataclass
class Rate:
    label: str
    concurrency: int
    count: int
    seconds: float
    cpu: sup.CpuUse | None = None
    wall: float = 0.0
    startup: float = 0.0
    errors: int = 0
    platform_calls: int = 0
    cpu_count: int = 0  # refreshes the CPU window covers

    def cpu_ms(self, group: str) -> float:
        assert self.cpu is not None
        return self.cpu.per(self.cpu_count, group)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


class RefreshBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ok = False
        self.pg = sup.raw_pg()
        self.redis = sup.fresh_redis()
        self.env = sup.BenchEnv.create(sup.fresh_schema())
        # Every benchmark connection is on one platform: lift the per-platform refresh rate, if the settings
        # read it from the environment, so the run measures the refresh path (the cap is reported).
        self.env.values[CAP_ENV] = str(args.platform_cap)
        self.sandbox: sup.SandboxProcess | None = None
        self.sampler: sup.CpuSampler | None = None

    def setup(self) -> None:
        print("Setting up: schema, Redis DB 8, sandbox (gunicorn), connections ...")
        import portal.views.sandbox  # noqa: F401 - registers every sandbox table, so all are created here once

        args = self.args
        self.platform = SandboxServer(sup.database_url(sup.SANDBOX_APP_NAME), sup.SANDBOX_CLIENT, sup.SANDBOX_SECRET,
                                      REDIRECT, sup.ACCESS_LIFETIME, 90 * 86400)  # creates the sandbox's tables
        self.sandbox = sandbox = sup.SandboxProcess(self.env, workers=args.sandbox_workers)
        sup.require_loopback(sandbox.url)
        settings = self.env.settings()
        self.worker_cap: int | None = getattr(settings, "platform_refreshes_per_second", None)
        if self.worker_cap is not None:  # this process's own runtime (anatomy) runs uncapped either way
            settings = replace(settings, platform_refreshes_per_second=args.platform_cap)
        self.rt: Runtime = build_runtime(settings)
        self.sampler = sup.CpuSampler(sandbox.proc.pid)
        with sup.timed(f"{args.connections} connections with live sandbox tokens"):
            self.ids = self._seed(args.connections)
            self.spare = [self._issue() for _ in range(POOL * args.max_workers + 1)]  # the raw client's chains
        sandbox.set_latency(args.latency_ms)

    @property
    def site(self) -> sup.SandboxProcess:
        assert self.sandbox is not None
        return self.sandbox

    @property
    def meter(self) -> sup.CpuSampler:
        assert self.sampler is not None
        return self.sampler

    def close(self) -> None:
        """Stop what was started, however far set-up got."""
        if self.sampler is not None:
            self.sampler.stop()
        if hasattr(self, "rt"):
            self.rt.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        if hasattr(self, "platform"):
            self.platform.engine.dispose()
        self.pg.close()
        self.redis.flushdb()
        if self.ok and not self.args.keep:
            self.env.cleanup()  # on failure the logs and the schema stay for reading
            sup.drop_schema()
        else:
            print(f"logs and profiles kept in {self.env.instance}", file=sys.stderr)

    # Data ---------------------------------------------------------------------------------------------------

    def _issue(self) -> str:
        code = self.platform.issue_code(sup.SANDBOX_CLIENT, REDIRECT, "sbx-1001", "profile publish", None)
        return self.platform.exchange_code(sup.SANDBOX_CLIENT, code, REDIRECT, None).refresh_token

    def _seed(self, count: int) -> list[str]:
        with ThreadPoolExecutor(8) as pool:
            tokens = list(pool.map(lambda _: self._issue(), range(count)))
        now = utcnow()
        db = self.rt.session_factory()
        agency = Agency(name="Bench Agency")
        db.add(agency)
        db.flush()
        workspace = Workspace(agency_id=agency.id, name="Bench")
        db.add(workspace)
        db.flush()
        ids = []
        for i, refresh_token in enumerate(tokens):
            row = Connection(id=new_id(), agency_id=agency.id, workspace_id=workspace.id, platform="sandbox",
                             external_id=f"bench-{i}", display_name=f"Bench {i}", grant_id=new_id(),
                             refresh_due_at=now - timedelta(minutes=1), token_version=0)
            write_tokens(self.rt.deps, row, TokenGrant("seeded-access", refresh_token,
                                                       now + timedelta(seconds=sup.ACCESS_LIFETIME), None,
                                                       ("profile", "publish")))
            db.add(row)
            ids.append(row.id)
            if i % 1000 == 999:
                db.commit()
        db.commit()
        db.close()
        return ids

    def _make_due(self, ids: list[str] | None = None) -> None:
        past = utcnow() - timedelta(minutes=1)
        if ids is None:
            self.pg.execute("UPDATE connections SET refresh_due_at = %s", (past,))
        else:
            self.pg.execute("UPDATE connections SET refresh_due_at = %s WHERE id = ANY(%s)", (past, ids))
        self.pg.execute("VACUUM ANALYZE connections")
        self.redis.flushdb()

    def _refreshed_since(self, since: Any) -> int:
        return sup.count(self.pg, "SELECT count(*) FROM connections WHERE last_refreshed_at >= %s", (since,))

    def _platform_refreshes(self, since: Any) -> int:
        """Refresh grants the sandbox served since ``since``: each one spent (revoked) a refresh token. Its own
        counters lose increments between two gunicorn processes, so they are not used here."""
        return sup.count(self.pg, "SELECT count(*) FROM sandbox_tokens WHERE kind = 'refresh' AND revoked_at >= %s",
                         (since,))

    def _unhealthy(self) -> int:
        return sup.count(self.pg, "SELECT count(*) FROM connections WHERE health <> 'healthy' OR refresh_failures > 0")

    # Raw pooled client -------------------------------------------------------------------------------------

    def raw(self, threads: int, seconds: float, warmup: float = 1.0) -> Rate:
        """Refresh-token grants from a plain requests.Session with a pool of ``threads`` connections."""
        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=threads))
        auth = (sup.SANDBOX_CLIENT, sup.SANDBOX_SECRET)
        done: list[float] = []
        errors: list[int] = []
        start = time.monotonic()
        stop_at = start + warmup + seconds

        def chain(token: str) -> str:
            while time.monotonic() < stop_at:
                answer = session.post(self.site.token_url, auth=auth, timeout=10,
                                      data={"grant_type": "refresh_token", "refresh_token": token})
                if answer.status_code != 200:
                    errors.append(answer.status_code)
                    return token
                token = answer.json()["refresh_token"]
                done.append(time.monotonic())
            return token

        before = self.meter.snapshot()
        with ThreadPoolExecutor(threads) as pool:
            self.spare[:threads] = list(pool.map(chain, self.spare[:threads]))
        cpu = sup.cpu_between(before, self.meter.snapshot())
        session.close()
        counted = [t for t in done if start + warmup <= t <= stop_at]
        return Rate(f"raw pooled client, {threads} threads", threads, len(counted), seconds, cpu,
                    errors=len(errors), platform_calls=len(done), cpu_count=len(done))

    # Worker processes --------------------------------------------------------------------------------------

    def workers(self, count: int) -> Rate:
        """``count`` long-running `python -m workers` processes, fed by a sweep every second (as RQ cron would,
        only more often: refreshes a platform's rate limit deferred come back at the next sweep)."""
        if self.site.proc.poll() is not None:
            raise SystemExit(f"the sandbox exited; see {self.env.instance}/sandbox.log")
        self._make_due()
        enqueued = jobs.sweep_refreshes(runtime=self.rt)
        assert enqueued == len(self.ids), enqueued
        since = utcnow()
        started = time.monotonic()
        logs = [open(self.env.instance / f"worker-{count}-{i}.log", "w") for i in range(count)]  # noqa: SIM115
        procs = [subprocess.Popen([sys.executable, "-m", "workers"], cwd=sup.ROOT, env=self.env.process_env(),
                                  stdout=log, stderr=subprocess.STDOUT) for log in logs]
        for proc in procs:
            self.meter.watch(proc.pid)
        try:
            marks = self._follow(procs, since, started)
        finally:
            for proc in procs:  # RQ's warm shutdown: the queue is empty by now
                proc.send_signal(signal.SIGTERM)
            for proc, log in zip(procs, logs, strict=True):
                proc.wait(60)
                log.close()
        (t10, n10, s10), (t90, n90, s90) = marks["10"], marks["90"]
        return Rate(f"{count} worker process{'es' if count > 1 else ''}", POOL * count, n90 - n10, t90 - t10,
                    sup.cpu_between(s10, s90), wall=marks["all"][0] - started, startup=marks["first"][0] - started,
                    errors=self._unhealthy() + (len(self.ids) - self._refreshed_since(since)),
                    platform_calls=self._platform_refreshes(since), cpu_count=n90 - n10)

    def _follow(self, procs: list[subprocess.Popen[bytes]], since: Any,
                started: float) -> dict[str, tuple[float, int, sup.CpuSnapshot]]:
        """Poll progress until every connection is refreshed, sweeping once a second; note the first refresh
        and when 10 %, 90 % and all of the connections were done."""
        total, marks, last_sweep = len(self.ids), {}, time.monotonic()
        while "all" not in marks:
            time.sleep(0.2)
            done, now = self._refreshed_since(since), time.monotonic()
            for key, share in (("first", 1 / total), ("10", 0.1), ("90", 0.9), ("all", 1.0)):
                if key not in marks and done >= share * total:
                    marks[key] = (now, done, self.meter.snapshot())
            if any(proc.poll() is not None for proc in procs):
                raise SystemExit(f"a worker exited early; see {self.env.instance}")
            if now > started + self.args.phase_timeout:
                raise SystemExit(f"{done} of {total} refreshed after {self.args.phase_timeout} s; "
                                 f"see {self.env.instance}")
            if now - last_sweep >= 1.0:
                jobs.sweep_refreshes(runtime=self.rt)
                last_sweep = now
        return marks

    # Where the time goes -------------------------------------------------------------------------------------

    def anatomy(self) -> dict[str, Any]:
        """One worker's refresh path run in this process, counted: round trips, connections, latency."""
        result: dict[str, Any] = {}
        sample = self.ids[:30]
        self._make_due(sample)
        latencies = []
        for cid in sample:
            started = time.monotonic()
            jobs.refresh_connection(cid, runtime=self.rt)
            latencies.append(time.monotonic() - started)
        result["sequential refresh"] = sup.median(latencies)
        result["sequential raw pooled"] = self._raw_sequential(pooled=True)
        result["sequential raw new session"] = self._raw_sequential(pooled=False)
        batch = self.ids[30:30 + 4 * jobs.BATCH_SIZE]
        self._make_due(batch)
        walls = []
        with counting(self.rt) as counts:
            for start in range(0, len(batch), jobs.BATCH_SIZE):
                started = time.monotonic()
                jobs.refresh_batch(*batch_args(batch[start:start + jobs.BATCH_SIZE]), runtime=self.rt)
                walls.append(time.monotonic() - started)
        result["counts"] = {key: value / len(batch) for key, value in counts.items()}
        result["batch wall"] = sup.median(walls)
        result["batch ideal"] = math.ceil(jobs.BATCH_SIZE / POOL) * result["sequential raw pooled"]
        result["micro"] = micro_costs(self.rt)
        return result

    def _raw_sequential(self, pooled: bool, count: int = 30) -> float:
        token, session, latencies = self.spare[-1], requests.Session(), []
        for _ in range(count):
            if not pooled:
                session.close()
                session = requests.Session()
            started = time.monotonic()
            answer = session.post(self.site.token_url, auth=(sup.SANDBOX_CLIENT, sup.SANDBOX_SECRET), timeout=10,
                                  data={"grant_type": "refresh_token", "refresh_token": token})
            latencies.append(time.monotonic() - started)
            token = answer.json()["refresh_token"]
        session.close()
        self.spare[-1] = token
        return sup.median(latencies)

    def profile(self, wall: bool) -> dict[str, float] | None:
        """py-spy over one `python -m workers --burst` process. CPU: samples of the thread holding the GIL
        (the process is one core's worth of Python); ``wall``: every sample of the refresh threads."""
        spy = os.environ.get("BENCH_PYSPY") or shutil.which("py-spy")
        if not spy or not Path(spy).exists():
            return None
        subset = self.ids[: self.args.profile_connections]
        self._make_due(subset)
        jobs.sweep_refreshes(runtime=self.rt)
        out = self.env.instance / f"profile-{'wall' if wall else 'cpu'}.txt"
        command = [spy, "record", "--format", "raw", "--rate", str(PROFILE_HZ), "--nonblocking", "-o", str(out),
                   "--idle" if wall else "--gil", "--", sys.executable, "-m", "workers", "--burst"]
        since = utcnow()
        subprocess.run(command, cwd=sup.ROOT, env=self.env.process_env(), capture_output=True, timeout=600,
                       check=True)
        return categorize(out, wall, self._refreshed_since(since))


def batch_args(ids: list[str]) -> list[str]:
    """refresh_batch's arguments: the platform first where the job takes one (per-platform rate limits)."""
    takes_platform = next(iter(inspect.signature(jobs.refresh_batch).parameters)) == "platform"
    return ["sandbox", *ids] if takes_platform else ids


@contextmanager
def counting(rt: Runtime) -> Iterator[Counter[str]]:
    """Count SQL statements, transactions, pool checkouts (each pre-pinged), Redis commands and new HTTP
    connections while the block runs, through SQLAlchemy events, Redis MONITOR and urllib3's log."""
    counts: Counter[str] = Counter()

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        counts[f"SQL {sql.split(None, 1)[0].upper()}"] += 1

    listeners: list[tuple[Any, str, Callable[..., Any]]] = [
        (rt.engine, "before_cursor_execute", statement),
        (rt.engine, "begin", lambda _c: counts.update(["DB transactions begun"])),
        (rt.engine, "commit", lambda _c: counts.update(["DB commits"])),
        (rt.engine, "rollback", lambda _c: counts.update(["DB rollbacks"])),
        (rt.engine.pool, "checkout", lambda *_: counts.update(["DB pool checkouts (each pings)"])),
    ]
    for target, name, fn in listeners:
        event.listen(target, name, fn)

    class HttpLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if str(record.msg).startswith("Starting new HTTP"):
                counts["new HTTP connections"] += 1

    http_log, handler = logging.getLogger("urllib3.connectionpool"), HttpLog()
    level, propagate = http_log.level, http_log.propagate
    http_log.setLevel(logging.DEBUG)  # setLevel, not .level: the logger caches what it last allowed
    http_log.propagate = False
    http_log.addHandler(handler)
    try:
        with sup.RedisCommands() as commands:
            yield counts
        counts.update({f"Redis {name}": calls for name, calls in commands.items()})
    finally:
        http_log.removeHandler(handler)
        http_log.setLevel(level)
        http_log.propagate = propagate
        for target, name, fn in listeners:
            event.remove(target, name, fn)


def micro_costs(rt: Runtime, rounds: int = 300) -> dict[str, float]:
    """Microseconds for pieces each refresh pays: an Authlib session built and closed (as OAuthClient does
    per call), a thread started and joined (the lock keeper), a token encrypted and decrypted."""
    from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]

    def per_call(fn: Any) -> float:
        return 1e6 * min(timeit.repeat(fn, number=rounds // 5, repeat=5)) / (rounds // 5)

    def session() -> None:
        OAuth2Session(client_id="c", client_secret="s", token_endpoint_auth_method="client_secret_basic",
                      scope="profile publish", code_challenge_method="S256", default_timeout=(5, 15)).close()

    def thread() -> None:
        worker = threading.Thread(target=lambda: None, daemon=True)
        worker.start()
        worker.join()

    cipher = rt.deps.cipher
    return {"Authlib OAuth2Session built + closed": per_call(session), "thread start + join": per_call(thread),
            "token encrypt + decrypt": per_call(lambda: cipher.decrypt(cipher.encrypt("x" * 40, "c"), "c"))}


PROFILE_HZ = 100
CATEGORIES = (
    ("database", ("(sqlalchemy/", "(psycopg")),
    ("HTTP client", ("(requests/", "(urllib3/", "(authlib/", "(http/client.py", "(socket.py")),
    ("Redis", ("(redis/",)), ("crypto", ("(cryptography/",)), ("RQ", ("(rq/",)), ("logging", ("(logging/",)),
    ("JSON", ("(json/",)), ("thread start", ("Thread.start",)),
)


def categorize(path: Path, wall: bool, refreshes: int) -> dict[str, float]:
    """Milliseconds per refresh by where the samples fell, from py-spy's collapsed stacks. A sample belongs to
    the first library met going from the thread's root to its leaf, named with the deepest frame of our code
    above it; stacks in no library are named by that frame alone. The wall view keeps the refresh threads
    and adds what the pool's slots lost: idle inside a job (batch tails), and no job at all (start-up, RQ's
    work between jobs), counted for every slot."""
    totals: Counter[str] = Counter()
    idle_in_job = main_outside_job = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, samples = stack.split(";"), int(count)
        if not wall:
            totals[_category(frames)] += samples
        elif any("<locals>.one (workers/jobs.py" in f for f in frames):
            totals[_category(frames)] += samples
        elif any("_worker (concurrent/futures/thread.py" in f for f in frames):
            idle_in_job += samples
        elif "runpy" in stack and not any("refresh_batch (workers/jobs.py" in f for f in frames):
            main_outside_job += samples
    ms = 1000 / PROFILE_HZ / max(refreshes, 1)
    result = {name: samples * ms for name, samples in totals.most_common()}
    result["total"] = sum(result.values())
    if wall:
        result["(pool threads idle inside a job: batch tails)"] = idle_in_job * ms
        result[f"(no job running: start-up and RQ between jobs, x {POOL} slots)"] = POOL * main_outside_job * ms
    return result


def _category(frames: list[str]) -> str:
    ours = "-"
    for frame in frames:
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return f"{name}, from {ours}"
        if " (portal/" in frame or " (workers/" in frame:
            function, _, where = frame.partition(" (")
            ours = "start-up imports" if function == "<module>" else f"{where.split(':')[0]}:{function}"
    return f"own code, in {ours}" if ours != "-" else "thread machinery, no frame of ours"


# Report ---------------------------------------------------------------------------------------------------------

def report(args: argparse.Namespace, raws: dict[int, Rate], runs: dict[int, Rate], anatomy: dict[str, Any],
           profiles: dict[str, dict[str, float] | None], worker_cap: int | None) -> None:
    print(f"\nRefresh throughput: sandbox token endpoint with {args.latency_ms} ms added latency, "
          f"{args.connections} due connections per run, {POOL} threads per worker process, batches of "
          f"{jobs.BATCH_SIZE}")
    if worker_cap is not None and worker_cap < args.platform_cap:
        print(f"NOTE: the workers cap each platform at {worker_cap} refreshes/s (platform_refreshes_per_second; "
              f"{CAP_ENV} is not read from the environment) and every connection here is on one platform: the "
              "worker rates below show that cap, not what the refresh path can do")
    elif worker_cap is not None:
        print(f"(per-platform refresh rate lifted to {worker_cap}/s through {CAP_ENV}: all connections here are on "
              "one platform)")
    rows = []
    for count, run in runs.items():
        raw = raws[POOL * count]
        rows.append([run.label, run.concurrency, f"{run.per_second:.0f}/s", f"{raw.per_second:.0f}/s",
                     f"{run.per_second / raw.per_second:.0%}", f"{run.wall:.1f} s", f"{run.startup:.1f} s",
                     run.errors, f"{run.platform_calls}", verdict_rate(run), verdict_ratio(run, raw)])
    print(sup.table(["refresher", "concurrency", "sustained", "raw pooled", "ratio", "wall", "startup",
                     "errors", "platform calls", f">= {TARGET_RATE:.0f}/s", f">= {TARGET_RATIO:.0%} of raw"], rows))
    print("\n(sustained: rate between 10 % and 90 % of the connections refreshed; raw pooled: a requests.Session "
          "with as many pooled connections and threads, same grant, same sandbox)")
    print("\nCPU per refresh (ms), steady state; the machine has 2 cores = 2,000 ms of CPU per second")
    groups = ["sandbox", "postgres:portal", "postgres:sandbox", "postgres:other", "redis", "bench"]
    cpu_rows = []
    for rate in [*raws.values(), *runs.values()]:
        assert rate.cpu is not None
        busy = rate.cpu.machine_busy / rate.cpu.seconds / 2
        kernel = 1000 * rate.cpu.system_by_group.get("workers", 0.0) / max(rate.cpu_count, 1)
        workers = f"{rate.cpu_ms('workers'):.2f} ({kernel:.2f})"
        ours = sum(cpu for group, cpu in rate.cpu.by_group.items() if not group.startswith("other:"))
        others = (rate.cpu.machine_busy - ours) / rate.cpu.seconds / 2
        cpu_rows.append([rate.label, workers, *(f"{rate.cpu_ms(g):.2f}" for g in groups),
                         f"{1000 * rate.cpu.machine_busy / max(rate.cpu_count, 1):.2f}", f"{busy:.0%}",
                         f"{max(others, 0.0):.0%}"])
    print(sup.table(["run", "workers (of it kernel)", *groups, "whole machine", "machine busy", "of it others"],
                    cpu_rows))
    print("  (others: CPU of processes that are not part of this benchmark, and of the kernel; above ~5 % the "
          "rates are understated. Busiest:")
    for rate in [*raws.values(), *runs.values()]:
        assert rate.cpu is not None
        print(f"     {rate.label}: " + ", ".join(f"{name} {share:.0%}" for name, share in rate.cpu.others()) + ")")
    for rate in runs.values():
        own = rate.cpu_ms("workers") + rate.cpu_ms("postgres:portal") + rate.cpu_ms("redis")
        print(f"  {rate.label}: the portal's own CPU (workers + its PostgreSQL backends + Redis) is {own:.1f} ms "
              f"per refresh: at most {2000 / own:.0f}/s on 2 cores even with the platform elsewhere")
    print_anatomy(anatomy)
    for name, profile in profiles.items():
        if profile is None:
            print(f"\n{name}: py-spy not found (pip install py-spy, or set BENCH_PYSPY); skipped")
            continue
        print(f"\n{name} (py-spy, one worker process, {args.profile_connections} refreshes), ms per refresh:")
        shown = [(k, v) for k, v in profile.items() if v >= 0.1 or not k[0].isalpha()]
        print(sup.table(["where", "ms"], [[k, f"{v:.2f}"] for k, v in shown[:18]]))


def verdict_rate(run: Rate) -> str:
    return sup.verdict(run.per_second >= TARGET_RATE)


def verdict_ratio(run: Rate, raw: Rate) -> str:
    return sup.verdict(run.per_second >= TARGET_RATIO * raw.per_second)


def print_anatomy(anatomy: dict[str, Any]) -> None:
    print("\nOne refresh, measured in-process (same code as the workers):")
    ms = {key: f"{1000 * value:.1f} ms" for key, value in anatomy.items() if isinstance(value, float)}
    rows = [["latency, sequential, portal refresh", ms["sequential refresh"]],
            ["latency, sequential, raw pooled request", ms["sequential raw pooled"]],
            ["latency, sequential, raw request on a new session", ms["sequential raw new session"]],
            [f"refresh_batch of {jobs.BATCH_SIZE} with {POOL} threads, wall", ms["batch wall"]],
            [f"  ideal: ceil({jobs.BATCH_SIZE}/{POOL}) waves x raw latency", ms["batch ideal"]]]
    rows += [[f"per refresh: {key}", f"{value:.2f}"] for key, value in sorted(anatomy["counts"].items())]
    rows += [[f"micro: {key}", f"{value:.0f} us"] for key, value in anatomy["micro"].items()]
    print(sup.table(["what", "value"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4000, help="due connections per worker run")
    parser.add_argument("--latency-ms", type=int, default=50, help="added latency at the token endpoint")
    parser.add_argument("--raw-seconds", type=float, default=12.0, help="length of each raw-client run")
    parser.add_argument("--max-workers", type=int, default=2, help="runs with 1 .. N worker processes")
    parser.add_argument("--sandbox-workers", type=int, default=2, help="gunicorn processes serving the sandbox")
    parser.add_argument("--profile-connections", type=int, default=1500, help="refreshes per py-spy run")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep logs, py-spy output and the schema")
    parser.add_argument("--platform-cap", type=int, default=100_000,
                        help=f"per-platform refreshes per second given to the workers ({CAP_ENV})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sup.report_quiet()
    bench = RefreshBench(args)
    try:
        bench.setup()
        raws, runs = {}, {}
        for count in range(1, args.max_workers + 1):
            with sup.timed(f"raw pooled client, {POOL * count} threads"):
                raws[POOL * count] = bench.raw(POOL * count, args.raw_seconds)
            with sup.timed(f"{count} worker process(es)"):
                runs[count] = bench.workers(count)
        with sup.timed("in-process anatomy"):
            anatomy = bench.anatomy()
        profiles: dict[str, dict[str, float] | None] = {}
        if not args.no_profile:
            with sup.timed("py-spy runs"):
                profiles["CPU (GIL-holding samples)"] = bench.profile(wall=False)
                profiles["Wall time of the refresh threads"] = bench.profile(wall=True)
        report(args, raws, runs, anatomy, profiles, bench.worker_cap)
        bench.ok = True
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
