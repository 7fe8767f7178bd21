"""Sweep cost: the due-connection query (``sweeps.due_batch``) and the sweeper's memory with 10 thousand,
100 thousand and 1 million connections on PostgreSQL.

Run: ``.venv/bin/python -m tests.benchmarks.bench_sweep`` (see tests/benchmarks/README.md). Needs PostgreSQL
(schema easyconnect_bench, dropped and recreated) and Redis DB 8 (flushed), both on loopback.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from portal.db import make_engine, make_session_factory
from portal.services import sweeps
from tests.benchmarks import _support as sup

SIZES = (10_000, 100_000, 1_000_000)
BATCH = 1000
CYCLE_SECONDS = 7200  # 2-hour tokens: every connection comes due once per cycle
DUE_SECONDS = 720  # due when the sweep runs: 10 % of the cycle (a sweep 12 minutes late, or a backlog)
TARGET_BATCH_MS = 5.0
FLAT_RATIO = 1.5  # "flat": 1 million rows at most this much slower (or bigger) than 10 thousand
FLAT_MEMORY_MB = 5.0

# Rows as the portal writes them (two encrypted tokens of realistic length); due times spread evenly over one
# 2-hour cycle by a permutation of i (no two rows due at the same millisecond), in random heap order.
INSERT = """
INSERT INTO connections (id, agency_id, workspace_id, platform, external_id, account_kind, display_name, handle,
    access_token_enc, refresh_token_enc, token_expires_at, refresh_expires_at, scopes, active, health,
    health_reason, token_version, created_at, updated_at, grant_id, refresh_due_at, refresh_failures)
SELECT md5('c' || i), %(agency)s, %(workspace)s, 'sandbox', i::text, 'profile', 'Account ' || i, 'account' || i,
    'k1:' || repeat(md5('a' || i), 4), 'k1:' || repeat(md5('r' || i), 4), due + interval '15 minutes',
    %(t0)s + interval '90 days', 'profile publish', true, 'healthy', '', 1, %(t0)s, %(t0)s, md5('g' || i), due, 0
FROM generate_series(%(first)s::int, %(last)s::int) AS i,
     LATERAL (SELECT %(t0)s::timestamptz + make_interval(
         secs => ((i::bigint * 104729) %% (%(cycle)s::int * 1000)) / 1000.0 - %(due)s::int)) AS spread(due)
"""


@dataclass(frozen=True)
class Page:
    ms: float  # the due_batch call, as the sweeper sees it
    execute_ms: float  # of it, inside the driver's execute (BEGIN and the query's round trip and transfer)
    rows: int


@dataclass
class SizeResult:
    rows: int
    due: int = 0
    insert_seconds: float = 0.0
    passes: list[list[Page]] = field(default_factory=list)
    paging_rss_growth: float = 0.0
    explain_first: dict[str, Any] = field(default_factory=dict)
    explain_last: dict[str, Any] = field(default_factory=dict)
    last_plan: str = ""
    sweeper: dict[str, Any] = field(default_factory=dict)

    def full_pages(self) -> list[Page]:
        """Pages of a whole batch: the last page of a pass is usually short, and cheaper."""
        return [page for run in self.passes for page in run if page.rows == BATCH]

    def all_batches(self) -> list[float]:
        return [page.ms for page in self.full_pages()]

    def first_batches(self) -> list[float]:
        return [run[0].ms for run in self.passes if run and run[0].rows == BATCH]

    def last_full_batches(self) -> list[float]:
        return [[page for page in run if page.rows == BATCH][-1].ms for run in self.passes]


class SweepBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        print("Setting up: schema, Redis DB 8 ...")
        self.redis = sup.fresh_redis()
        self.url = sup.fresh_schema()
        self.env = sup.BenchEnv.create(self.url)
        self.engine = make_engine(self.url)
        self.sessions = make_session_factory(self.engine)
        self.pg = sup.raw_pg()
        self.t0 = datetime.now(UTC).replace(microsecond=0)
        self.agency, self.workspace = self._tenant()
        self.inserted = 0

    def close(self) -> None:
        self.pg.close()
        self.engine.dispose()
        self.redis.flushdb()
        self.env.cleanup()
        if not self.args.keep:
            sup.drop_schema()

    def _tenant(self) -> tuple[str, str]:
        from portal.models import Agency, Workspace

        with self.sessions() as db:
            agency = Agency(name="Bench Agency")
            db.add(agency)
            db.flush()
            workspace = Workspace(agency_id=agency.id, name="Bench")
            db.add(workspace)
            db.commit()
            return agency.id, workspace.id

    def grow_to(self, rows: int) -> float:
        started = time.monotonic()
        for first in range(self.inserted + 1, rows + 1, 100_000):
            last = min(rows, first + 99_999)
            self.pg.execute(INSERT, {"agency": self.agency, "workspace": self.workspace, "t0": self.t0,
                                     "first": first, "last": last, "cycle": CYCLE_SECONDS, "due": DUE_SECONDS})
        self.inserted = rows
        self.pg.execute("VACUUM ANALYZE connections")
        return time.monotonic() - started

    def measure(self, rows: int) -> SizeResult:
        result = SizeResult(rows, insert_seconds=self.grow_to(rows))
        result.due = sup.count(self.pg, "SELECT count(*) FROM connections WHERE refresh_due_at <= %s", (self.t0,))
        statements: list[tuple[str, Any]] = []
        rss_before = sup.rss_mb()[0]
        for run in range(self.args.passes + 1):
            pages = self._page(statements if run == 0 else None)
            if run:  # the first pass warms the caches
                result.passes.append(pages)
        result.paging_rss_growth = sup.rss_mb()[0] - rss_before
        last_full = statements[max(result.due // BATCH, 1) - 1]
        result.explain_first = self._explain(*statements[0])
        result.explain_last = self._explain(*last_full)
        result.last_plan = self._explain(*last_full, text=True)["plan"]
        result.sweeper = self._sweeper()
        return result

    def _page(self, capture: list[tuple[str, Any]] | None) -> list[Page]:
        """Page through every due connection the way ``workers.jobs.sweep_refreshes`` does (a rollback after
        each page, on one pinned connection), timing each due_batch call and the driver's execute inside it."""
        execute: list[float] = []

        def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if capture is not None and "refresh_due_at" in statement:
                capture.append((statement, parameters))
            execute.append(time.perf_counter())

        def after_execute(*_: Any) -> None:
            execute[-1] = time.perf_counter() - execute[-1]

        listeners = (("before_cursor_execute", before), ("after_cursor_execute", after_execute))
        for name, fn in listeners:
            event.listen(self.engine, name, fn)
        pages, after = [], None
        connection = self.engine.connect()  # one connection across pages, as the sweeper keeps (_pinned_session)
        db = self.sessions(bind=connection)
        try:
            while True:
                execute.clear()
                started = time.perf_counter()
                batch = sweeps.due_batch(db, self.t0, limit=BATCH, after=after)
                elapsed = time.perf_counter() - started
                db.rollback()
                if not batch:
                    break  # the empty probe at the end is not a page
                pages.append(Page(1000 * elapsed, 1000 * sum(execute), len(batch)))
                after = batch[-1][:2]
        finally:
            db.close()
            connection.close()
            for name, fn in listeners:
                event.remove(self.engine, name, fn)
        if capture:
            capture[:] = capture[:-1]  # the empty probe again
        return pages

    def _explain(self, statement: str, parameters: Any, text: bool = False) -> dict[str, Any]:
        """EXPLAIN ANALYZE of the exact statement due_batch sent, with its parameters."""
        options = "ANALYZE, BUFFERS" + ("" if text else ", FORMAT JSON")
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters).all()
        if text:
            return {"plan": "\n".join(row[0] for row in rows)}
        plan = rows[0][0][0]
        return {"ms": plan["Execution Time"], "nodes": _nodes(plan["Plan"])}

    def _sweeper(self) -> dict[str, Any]:
        """The real sweeper (``workers.jobs.sweep_refreshes``: pages, marks, enqueues) in a fresh process."""
        self.redis.flushdb()
        child = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_sweep", "--sweeper-child",
                                self.t0.isoformat()], cwd=sup.ROOT, env=self.env.process_env(), capture_output=True,
                               text=True, timeout=600, check=False)
        self.redis.flushdb()
        if child.returncode != 0:
            raise SystemExit("the sweeper process failed:\n" + child.stderr[-3000:])
        return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def _nodes(plan: dict[str, Any]) -> list[str]:
    """Plan nodes top-down, with what each index scan threw away."""
    node = plan["Node Type"] + (f" on {plan['Index Name']}" if "Index Name" in plan else "")
    if plan.get("Rows Removed by Filter"):
        node += f" ({plan['Rows Removed by Filter']} rows removed by filter)"
    out = [node]
    for child in plan.get("Plans", []):
        out.extend(_nodes(child))
    return out


def sweeper_child(t0: str) -> int:
    """Run one sweep at the benchmark's fixed clock; print time, count and memory as JSON."""
    from portal.config import load_settings
    from portal.runtime import build_runtime
    from workers import jobs

    now = datetime.fromisoformat(t0)
    rt = build_runtime(load_settings())
    rt.deps = replace(rt.deps, clock=lambda: now)  # the rows' due times are relative to the benchmark's start
    with rt.session_factory() as db:  # connect once, so the first batch is not charged for it
        sweeps.due_batch(db, now, limit=1)
    sup.reset_peak_rss()
    rss_before, _ = sup.rss_mb()
    started = time.perf_counter()
    enqueued = jobs.sweep_refreshes(runtime=rt)
    seconds = time.perf_counter() - started
    rss_after, peak = sup.rss_mb()
    rt.close()
    print(json.dumps({"enqueued": enqueued, "seconds": seconds, "rss_before": rss_before, "rss_after": rss_after,
                      "peak": peak}))
    return 0


def report(results: list[SizeResult]) -> None:
    print(f"\nSweep: sweeps.due_batch pages of {BATCH}, {DUE_SECONDS / CYCLE_SECONDS:.0%} of the connections due "
          "(due times spread over a 2-hour cycle), PostgreSQL, warm cache; client-side ms per full page")
    rows = []
    for r in results:
        every = r.all_batches()
        rows.append([f"{r.rows:,}", f"{r.due:,}", len(r.full_pages()) // max(len(r.passes), 1),
                     f"{sup.median(r.first_batches()):.2f}", f"{sup.median(every):.2f}",
                     f"{sup.percentile(every, 95):.2f}", f"{max(every):.2f}",
                     f"{sup.median(r.last_full_batches()):.2f}",
                     f"{sup.median([page.execute_ms for page in r.full_pages()]):.2f}",
                     f"{r.explain_first['ms']:.2f} / {r.explain_last['ms']:.2f}", f"{r.insert_seconds:.0f} s"])
    print(sup.table(["connections", "due", "full pages", "first", "median", "p95", "max", "last full",
                     "median in execute", "server ms first / last", "insert + vacuum"], rows))
    print("  (execute: the driver's call, i.e. BEGIN, the query's round trip and the rows' transfer; the rest is "
          "SQLAlchemy binding the query and building the result)")
    print("\nThe sweeper process (workers.jobs.sweep_refreshes: pages, Redis markers, RQ jobs), one full sweep:")
    rows = []
    for r in results:
        s = r.sweeper
        rows.append([f"{r.rows:,}", f"{s['enqueued']:,}", f"{s['seconds']:.2f} s",
                     f"{1000 * s['seconds'] / max(1, s['enqueued'] / BATCH):.1f} ms",
                     f"{s['rss_before']:.1f}", f"{s['rss_after']:.1f}", f"{s['peak'] - s['rss_before']:+.1f}",
                     f"{r.paging_rss_growth:+.1f}"])
    print(sup.table(["connections", "enqueued", "sweep time", "per 1,000", "RSS before MiB", "RSS after MiB",
                     "peak growth MiB", "paging-only growth MiB"], rows))
    print("\nPlan of the last full page at the largest size:")
    print("\n".join("    " + line for line in results[-1].last_plan.splitlines()))
    verdicts(results)


def verdicts(results: list[SizeResult]) -> None:
    small, large = results[0], results[-1]
    p95 = sup.percentile(large.all_batches(), 95)
    ratio = sup.median(large.all_batches()) / sup.median(small.all_batches())
    first_ratio = sup.median(large.first_batches()) / sup.median(small.first_batches())
    growth = {r.rows: r.sweeper["peak"] - r.sweeper["rss_before"] for r in (small, large)}
    print("\nTargets:")
    print(f"  <= {TARGET_BATCH_MS:.0f} ms per batch of {BATCH} at {large.rows:,} rows (p95): {p95:.2f} ms  "
          f"{sup.verdict(p95 <= TARGET_BATCH_MS)}")
    print(f"  flat from {small.rows:,} to {large.rows:,} (median per batch within {FLAT_RATIO}x): {ratio:.2f}x "
          f"(first batch {first_ratio:.2f}x)  {sup.verdict(max(ratio, first_ratio) <= FLAT_RATIO)}")
    print(f"  memory flat (sweeper peak growth within {FLAT_MEMORY_MB:.0f} MiB): {growth[small.rows]:+.1f} MiB -> "
          f"{growth[large.rows]:+.1f} MiB  {sup.verdict(growth[large.rows] - growth[small.rows] <= FLAT_MEMORY_MB)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated connection counts")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the due connections per size")
    parser.add_argument("--keep", action="store_true", help="keep the schema with its rows afterwards")
    parser.add_argument("--sweeper-child", metavar="T0", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sweeper_child:
        return sweeper_child(args.sweeper_child)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    sup.report_quiet()
    bench = SweepBench(args)
    try:
        results = []
        for rows in sizes:
            with sup.timed(f"{rows:,} connections"):
                results.append(bench.measure(rows))
        report(results)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
