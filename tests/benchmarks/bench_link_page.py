"""Benchmark: requests per second of the branded link page against a bare Flask route, same gunicorn.

    .venv/bin/python -m tests.benchmarks.bench_link_page [--seconds 8] [--rounds 2] [--only sqlite|postgresql]

For each database (SQLite file in its own instance folder; PostgreSQL schema ``easyconnect_bench2``) it
builds a branded agency (logo, colours, texts, workspace and link overrides), a workspace with one
connection and a link, then starts one gunicorn (2 sync workers) serving two apps side by side:
``/_bare`` is a plain Flask app returning a short text, everything else is the portal. ``wrk`` (Debian's,
``apt-get install wrk``) loads each path in turn with keep-alive connections; the rounds alternate so
drift hits both. It prints requests per second, the ratio and the issue's targets (SQLite >= 50 %,
PostgreSQL >= 40 % of bare). Every link page view is a real one: signature check, database reads, the
opened counter, the render. A sample response is checked for the branding before measuring.

Other processes on the machine skew both figures; the ratio is what to read, and still only roughly.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from portal.config import load_settings, new_token_key
from tests.benchmarks._support import PG_URL, ROOT, free_port, require_loopback, stop_process

SCHEMA = "easyconnect_bench2"
BASE = "http://portal.bench"
TARGETS = {"sqlite": 0.50, "postgresql": 0.40}
WORKERS = 2


def bench_app() -> Any:
    """gunicorn's entry point: the portal, with a bare Flask app mounted at /_bare beside it."""
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from portal.app import create_app

    bare = Flask("bare")

    @bare.get("/")
    def hello() -> str:
        return "ok"

    portal = create_app(load_settings())
    portal.wsgi_app = DispatcherMiddleware(portal.wsgi_app, {"/_bare": bare})  # type: ignore[method-assign]
    return portal


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    instance: Path

    @classmethod
    def create(cls, name: str) -> Backend:
        instance = Path(tempfile.mkdtemp(prefix=f"easyconnect-bench2-{name}-"))
        if name == "sqlite":
            url = f"sqlite:///{instance / 'portal.db'}"
        else:
            require_loopback(PG_URL.replace("+psycopg", ""))
            engine = sa.create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
            engine.dispose()
            url = PG_URL + f"?options=-csearch_path%3D{SCHEMA}&application_name=easyconnect_bench2"
        env = {"PORTAL_MODE": "test", "PORTAL_INSTANCE_PATH": str(instance), "PORTAL_BASE_URL": BASE,
               "PORTAL_SECRET_KEYS": "bench2-session-key", "PORTAL_LINK_KEYS": "bench2-link-key",
               "PORTAL_TOKEN_KEYS": new_token_key(), "PORTAL_SANDBOX_CLIENT_SECRET": "bench2-sandbox-secret",
               "PORTAL_SANDBOX_URL": "http://127.0.0.1:9/sandbox", "DATABASE_URL": url}
        return cls(name, env, instance)

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
        env.update(self.env, PYTHONPATH=str(ROOT))
        return env

    def cleanup(self) -> None:
        shutil.rmtree(self.instance, ignore_errors=True)
        if self.name == "postgresql":
            engine = sa.create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            engine.dispose()


def seed(backend: Backend) -> str:
    """A branded agency, a workspace with one connection, a link with overrides; returns the link's path."""
    from portal.db import make_engine, make_session_factory
    from portal.demo_assets import demo_logo_png
    from portal.migrate import upgrade
    from portal.models import Connection
    from portal.runtime import build_runtime
    from portal.services import agencies, branding, links
    from portal.services.audit import SYSTEM

    settings = load_settings(backend.env)
    upgrade(settings.database_url)
    runtime = build_runtime(settings)
    session = make_session_factory(make_engine(settings.database_url))()
    member = agencies.sign_up(session, "Brightside Social", "bench@agency.example", "correct horse battery")
    agencies.update_branding(session, member.agency_id, SYSTEM, name="Brightside Social", color="#e4572e",
                             logo=demo_logo_png(), texts={"headline": "Connect your socials", "support_url":
                                                          "https://help.brightside.example/", "theme": "light",
                                                          "show_powered_by": "1", "instructions": "",
                                                          "success_text": "Thanks!"})
    workspace = agencies.create_workspace(session, member.agency_id, "Blue Bottle Bakery", SYSTEM)
    branding.save_workspace_branding(session, member.agency_id, workspace.id, {"color": "#1e2950"}, SYSTEM)
    link = links.create_link(session, runtime.deps, member.agency_id, SYSTEM, workspace_id=workspace.id,
                             platforms=["sandbox", "bluesky", "mastodon"],
                             available=["sandbox", "bluesky", "mastodon"], lifetime=timedelta(days=30),
                             max_uses=None, label="bench", language="en")
    branding.save_link_branding(session, member.agency_id, link.id, {"headline": "Hello Blue Bottle"}, "en", SYSTEM)
    session.add(Connection(agency_id=member.agency_id, workspace_id=workspace.id, platform="sandbox",
                           external_id="sbx-1", display_name="Blue Bottle Bakery", handle="bluebottle"))
    session.commit()
    path = "/c/" + runtime.deps.signer.sign(link.token_id)
    session.close()
    runtime.close()
    return path


class Server:
    def __init__(self, backend: Backend) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(backend.instance / "gunicorn.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync",
             "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
             "tests.benchmarks.bench_link_page:bench_app()"],
            cwd=ROOT, env=backend.process_env(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn did not start; see {self.log.name}")
            with suppress(requests.RequestException):
                if requests.get(self.url + "/_bare/", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("gunicorn did not answer within 60 s")

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def wrk(url: str, seconds: int, connections: int = 8) -> float:
    """Requests per second by wrk (2 threads, keep-alive); fails on any non-2xx answer."""
    done = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True)
    out = done.stdout
    if done.returncode != 0:
        raise SystemExit(f"wrk failed on {url}: {done.stderr or out}")
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors on {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def check_page(url: str) -> None:
    response = requests.get(url, timeout=10)
    html = response.text
    assert response.status_code == 200, html[:500]
    assert "Hello Blue Bottle" in html and "--brand: #1e2950" in html and "/brand/" in html, "not the branded page"
    assert "Blue Bottle Bakery" in html and response.headers["Cache-Control"] == "no-store"


def run(name: str, seconds: int, rounds: int) -> tuple[float, float]:
    backend = Backend.create(name)
    server = None
    try:
        path = seed(backend)
        server = Server(backend)
        link_url, bare_url = server.url + path, server.url + "/_bare/"
        check_page(link_url)
        wrk(link_url, 2), wrk(bare_url, 2)  # warm-up: imports, pools, template and catalog caches
        bare, page = [], []
        for _ in range(rounds):
            bare.append(wrk(bare_url, seconds))
            page.append(wrk(link_url, seconds))
        return max(bare), max(page)
    finally:
        if server:
            server.stop()
        backend.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=sorted(TARGETS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    load = os.getloadavg()[0]
    print(f"load average before the run: {load:.2f} on {os.cpu_count()} cores (other work skews the figures)")
    print(f"{'database':<11} {'bare req/s':>11} {'link page req/s':>16} {'ratio':>7} {'target':>7}  verdict")
    failed = False
    for name in [args.only] if args.only else ["sqlite", "postgresql"]:
        bare, page = run(name, args.seconds, args.rounds)
        ratio = page / bare
        ok = ratio >= TARGETS[name]
        failed |= not ok
        print(f"{name:<11} {bare:>11.0f} {page:>16.0f} {ratio:>6.0%} {TARGETS[name]:>6.0%}  {'ok' if ok else 'BELOW'}",
              flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
