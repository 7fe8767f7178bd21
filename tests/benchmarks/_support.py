"""Plumbing shared by the benchmarks: a scratch PostgreSQL schema and Redis DB, settings, the sandbox
served by gunicorn in processes of its own, CPU accounting from /proc, and table printing.

Everything here talks to loopback only: ``require_loopback`` stops a run pointed anywhere else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis as redis_lib
import requests
import sqlalchemy as sa

from portal.config import Settings, load_settings, new_token_key

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SCHEMA = "easyconnect_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
SANDBOX_SECRET = "sandbox-bench-secret"
SANDBOX_CLIENT = "easyconnect-demo"
PORTAL_BASE = "http://portal.bench"
ACCESS_LIFETIME = 2 * 3600  # the "2-hour tokens"
PORTAL_APP_NAME = "easyconnect_bench_portal"  # PostgreSQL application_name: whose backend is whose
SANDBOX_APP_NAME = "easyconnect_bench_sandbox"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def require_loopback(*urls: str) -> None:
    """Benchmarks send load: never to anything but this machine."""
    for url in urls:
        host = urlsplit(url).hostname or ""
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise SystemExit(f"benchmarks only run against loopback, not {host!r}")


# Databases ---------------------------------------------------------------------------------------------

def database_url(application_name: str = PORTAL_APP_NAME) -> str:
    return PG_URL + f"?options=-csearch_path%3D{PG_SCHEMA}&application_name={application_name}"


def fresh_schema() -> str:
    """Drop and recreate the benchmark schema, migrate it; returns the portal's URL into it."""
    from portal.migrate import upgrade

    require_loopback(PG_URL.replace("+psycopg", ""), REDIS_URL)
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
    engine.dispose()
    url = database_url()
    upgrade(url)
    return url


def drop_schema() -> None:
    """Leave nothing behind (a million rows take half a gigabyte)."""
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
    engine.dispose()


def raw_pg() -> psycopg.Connection[Any]:
    """A plain autocommit connection (VACUUM, EXPLAIN, pg_stat_activity)."""
    conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(conninfo, autocommit=True, options=f"-csearch_path={PG_SCHEMA}",
                           application_name="easyconnect_bench_meter")


def fresh_redis() -> redis_lib.Redis:
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.flushdb()
    return client


# Settings and processes ------------------------------------------------------------------------------------

@dataclass
class BenchEnv:
    """The environment every process of a run shares: the portal's, the workers' and the sandbox's."""

    instance: Path
    values: dict[str, str]

    @classmethod
    def create(cls, portal_db: str, sandbox_url: str = "http://127.0.0.1:9/sandbox") -> BenchEnv:
        instance = Path(tempfile.mkdtemp(prefix="easyconnect-bench-"))
        return cls(instance, {
            "PORTAL_MODE": "test", "PORTAL_INSTANCE_PATH": str(instance),
            "PORTAL_SECRET_KEYS": "bench-session-key", "PORTAL_LINK_KEYS": "bench-link-key",
            "PORTAL_TOKEN_KEYS": new_token_key(), "PORTAL_BASE_URL": PORTAL_BASE,
            "PORTAL_SANDBOX_CLIENT_ID": SANDBOX_CLIENT, "PORTAL_SANDBOX_CLIENT_SECRET": SANDBOX_SECRET,
            "PORTAL_SANDBOX_DATABASE_URL": database_url(SANDBOX_APP_NAME), "PORTAL_SANDBOX_URL": sandbox_url,
            "DATABASE_URL": portal_db, "REDIS_URL": REDIS_URL,
        })

    def settings(self) -> Settings:
        return load_settings(self.values, sandbox_access_lifetime=ACCESS_LIFETIME)

    def process_env(self) -> dict[str, str]:
        """os.environ without anything of ours, plus this run's values (like tests' ``_worker_env``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
        env.update(self.values)
        env["PYTHONPATH"] = str(ROOT)
        return env

    def cleanup(self) -> None:
        shutil.rmtree(self.instance, ignore_errors=True)


def sandbox_app() -> Any:
    """gunicorn's entry point for the sandbox (``tests.benchmarks._support:sandbox_app()``): the platform alone,
    as a remote platform would be, without the portal's request hooks."""
    from portal.app import create_platform_app

    return create_platform_app(load_settings(sandbox_access_lifetime=ACCESS_LIFETIME))


def stop_process(proc: subprocess.Popen[bytes], log: Any) -> None:
    """SIGTERM (gunicorn's graceful stop), SIGKILL if it lingers, then close its log."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """The sandbox platform served by gunicorn (gthread) in its own processes, so it never shares
    the GIL of the process being measured."""

    def __init__(self, env: BenchEnv, workers: int = 2, threads: int = 48) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env.values["PORTAL_SANDBOX_URL"] = self.url + "/sandbox"
        self.log = open(env.instance / "sandbox.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "gthread",
             "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--keep-alive", "30",
             "--log-level", "warning", "--graceful-timeout", "5", "tests.benchmarks._support:sandbox_app()"],
            cwd=ROOT, env=env.process_env(), stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sandbox did not start; see {self.log.name}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/sandbox/_control", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("the sandbox did not answer within 60 s")

    @property
    def token_url(self) -> str:
        return self.url + "/sandbox/oauth/token"

    def set_latency(self, latency_ms: int) -> None:
        requests.post(self.url + "/sandbox/_control", json={"endpoint": "token", "latency_ms": latency_ms},
                      timeout=5).raise_for_status()

    def stop(self) -> None:
        stop_process(self.proc, self.log)


# CPU accounting from /proc ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcInfo:
    pid: int
    comm: str
    ppid: int
    user: float  # seconds
    system: float


def _read_proc(pid: int) -> ProcInfo | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return ProcInfo(pid, comm, int(fields[1]), int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot. Guest time is already inside user time, and
    steal (the hypervisor's) is nobody's work here."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    busy = user + nice + system + irq + softirq
    return busy / CLOCK_TICKS, (busy + idle + iowait + steal) / CLOCK_TICKS


@dataclass
class CpuSnapshot:
    at: float
    per_pid: dict[int, tuple[str, float, float]]  # group, user, system
    machine: tuple[float, float]


@dataclass
class CpuSampler:
    """Samples every process's CPU time twice a second and files each pid under a group, so the CPU of
    processes that exit mid-run (workers, their PostgreSQL backends) is still counted.

    Groups: ``workers`` (pids added with ``watch``), ``sandbox`` (gunicorn and its children),
    ``postgres:portal`` / ``postgres:sandbox`` (backends by application_name), ``postgres:other``,
    ``redis``, ``bench`` (this process), and ``other:<command>`` for everything else."""

    sandbox_pid: int
    interval: float = 0.5
    _seen: dict[int, tuple[str, float, float]] = field(default_factory=dict)
    _watched: set[int] = field(default_factory=set)
    _pg_apps: dict[int, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._pg = raw_pg()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        with self._lock:
            self._watched.add(pid)

    def _group(self, info: ProcInfo) -> str | None:
        if info.pid in self._watched or info.ppid in self._watched:
            return "workers"
        if info.pid == self.sandbox_pid or info.ppid == self.sandbox_pid:
            return "sandbox"
        if info.comm == "postgres":
            app = self._pg_apps.get(info.pid, "")
            return {PORTAL_APP_NAME: "postgres:portal", SANDBOX_APP_NAME: "postgres:sandbox"}.get(app,
                                                                                                  "postgres:other")
        if info.comm.startswith("redis-server"):
            return "redis"
        if info.pid == os.getpid():
            return "bench"
        return f"other:{info.comm}"

    def sample(self) -> None:
        with self._lock:
            with contextlib.suppress(psycopg.Error):
                rows = self._pg.execute("SELECT pid, application_name FROM pg_stat_activity").fetchall()
                self._pg_apps.update({pid: app for pid, app in rows})
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                info = _read_proc(int(name))
                if info is None:
                    continue
                group = self._seen[info.pid][0] if info.pid in self._seen else self._group(info)
                if group is not None:
                    self._seen[info.pid] = (group, info.user, info.system)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def snapshot(self) -> CpuSnapshot:
        self.sample()
        with self._lock:
            return CpuSnapshot(time.monotonic(), dict(self._seen), _machine_busy())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pg.close()


@dataclass(frozen=True)
class CpuUse:
    seconds: float
    by_group: dict[str, float]  # user + system CPU-seconds
    system_by_group: dict[str, float]
    machine_busy: float  # CPU-seconds the whole machine spent busy

    def others(self, top: int = 3) -> list[tuple[str, float]]:
        """The busiest processes outside the benchmark, as shares of the machine's cores."""
        found = [(g.removeprefix("other:"), cpu) for g, cpu in self.by_group.items() if g.startswith("other:")]
        cores = os.cpu_count() or 1
        return [(name, cpu / self.seconds / cores) for name, cpu in sorted(found, key=lambda x: -x[1])[:top]]

    def per(self, count: int, group: str) -> float:
        """Milliseconds of CPU per unit of work for one group."""
        return 1000 * self.by_group.get(group, 0.0) / max(count, 1)


def cpu_between(start: CpuSnapshot, end: CpuSnapshot) -> CpuUse:
    total: dict[str, float] = {}
    system: dict[str, float] = {}
    for pid, (group, user, sys_) in end.per_pid.items():
        _, user_before, sys_before = start.per_pid.get(pid, (group, 0.0, 0.0))
        total[group] = total.get(group, 0.0) + max(0.0, user + sys_ - user_before - sys_before)
        system[group] = system.get(group, 0.0) + max(0.0, sys_ - sys_before)
    return CpuUse(end.at - start.at, total, system, end.machine[0] - start.machine[0])


class RedisCommands:
    """Commands sent to the benchmark's Redis DB while a block runs, seen through MONITOR (server-wide
    counters would include other clients and the calls made inside Lua scripts)."""

    def __init__(self, url: str = REDIS_URL) -> None:
        self.client = redis_lib.Redis.from_url(url)
        self.db = int(self.client.connection_pool.connection_kwargs.get("db", 0))
        self.counts: Counter[str] = Counter()
        self._mark = f"easyconnect-bench-stop-{os.getpid()}-{time.monotonic_ns()}"

    def __enter__(self) -> Counter[str]:
        self.monitor = self.client.monitor()
        self.monitor.__enter__()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        return self.counts

    def _listen(self) -> None:
        for command in self.monitor.listen():
            words = command["command"].split()
            if words[:2] == ["ECHO", self._mark]:
                return
            if command["db"] == self.db and command["client_type"] != "lua" and words:
                self.counts[words[0].upper()] += 1

    def __exit__(self, *_: object) -> None:
        self.client.echo(self._mark)
        self.thread.join(10)
        self.monitor.__exit__()
        self.client.close()


# Small helpers ---------------------------------------------------------------------------------------------

def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def report_quiet(seconds: float = 3.0) -> None:
    """Say how busy the machine is before the run: anything else running makes every rate lower."""
    busy, total = _machine_busy()
    time.sleep(seconds)
    busy_after, total_after = _machine_busy()
    share = (busy_after - busy) / max(total_after - total, 1e-9)
    note = "" if share < 0.1 else "  <- other work is running: expect lower rates than on a quiet machine"
    print(f"machine busy before the run: {share:.0%} of {os.cpu_count()} cores{note}")


def reset_peak_rss() -> None:
    """Start VmHWM afresh (Linux: clear_refs 5), so the peak that follows belongs to what is measured."""
    Path("/proc/self/clear_refs").write_text("5")


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def count(conn: psycopg.Connection[Any], sql: str, params: Sequence[object] = ()) -> int:
    """The first column of the first row, as an int (a count)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


@contextlib.contextmanager
def timed(label: str, out: Callable[[str], None] = print) -> Iterator[None]:
    started = time.monotonic()
    yield
    out(f"  {label}: {time.monotonic() - started:.1f} s")
