"""Command line: ``easyconnect demo | init-db | create-agency | create-link | rotate-token-keys | ...``.

The same commands are available as ``flask --app wsgi <command>``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import select

from portal import migrate
from portal.config import ConfigError, load_settings, new_token_key
from portal.db import session_scope
from portal.models import Agency, ConnectLink, Member, Workspace
from portal.runtime import Runtime
from portal.services import agencies, keys, links, platforms
from portal.services.audit import SYSTEM

DEMO_EMAIL = "demo@agency.example"
DEMO_AGENCY = "Brightside Social"


def _runtime(app: Flask) -> Runtime:
    return app.extensions["easyconnect"]  # type: ignore[no-any-return]


def _current_runtime() -> Runtime:
    from flask import current_app

    return _runtime(current_app)  # type: ignore[arg-type]


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database schema (Alembic)."""
    migrate.upgrade(_current_runtime().settings.database_url)
    click.echo("database is up to date")


@click.command("create-agency")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.password_option()
@with_appcontext
def create_agency(name: str, email: str, password: str) -> None:
    """Create an agency and its first member (owner)."""
    with session_scope(_current_runtime().session_factory) as db:
        member = agencies.sign_up(db, name, email, password)
        click.echo(f"agency {member.agency_id} created; log in as {member.email}")


@click.command("create-link")
@click.option("--workspace-id", required=True)
@click.option("--platform", "platform_names", multiple=True, default=["sandbox"])
@click.option("--hours", default=168, show_default=True)
@click.option("--max-uses", type=int, default=None)
@click.option("--label", default="")
@with_appcontext
def create_link(workspace_id: str, platform_names: tuple[str, ...], hours: int, max_uses: int | None,
                label: str) -> None:
    """Create an EasyConnect link for a workspace and print its URL."""
    rt = _current_runtime()
    with session_scope(rt.session_factory) as db:
        workspace = db.get(Workspace, workspace_id)
        if workspace is None:
            raise click.ClickException("no such workspace")
        link = links.create_link(db, rt.deps, workspace.agency_id, SYSTEM, workspace_id=workspace.id,
                                 platforms=platform_names,
                                 available=platforms.offered(db, rt.deps, workspace.agency_id),
                                 lifetime=timedelta(hours=hours), max_uses=max_uses, label=label)
        click.echo(links.link_url(rt.deps, link))


@click.command("rotate-token-keys")
@with_appcontext
def rotate_token_keys() -> None:
    """Re-encrypt every stored token and secret under the newest PORTAL_TOKEN_KEYS key."""
    rt = _current_runtime()
    rotated = keys.rotate_all(rt.session_factory, rt.deps.cipher)
    click.echo(f"re-encrypted {rotated} values under key {rt.deps.cipher.current_kid}")


@click.command("new-token-key")
def new_key() -> None:
    """Print a fresh key entry to prepend to PORTAL_TOKEN_KEYS."""
    click.echo(new_token_key())


def ensure_demo(rt: Runtime) -> tuple[str, str, str]:
    """The demo agency, member, workspace and an active link; returns (email, password, link URL)."""
    password_file = rt.settings.instance_path / "demo.json"
    with session_scope(rt.session_factory) as db:
        member = db.scalar(select(Member).where(Member.email == DEMO_EMAIL))
        if member is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            if member is None:
                member = agencies.sign_up(db, DEMO_AGENCY, DEMO_EMAIL, password)
                _brand_demo(db, member.agency_id)
            else:
                from portal.security.passwords import hash_password

                member.password_hash = hash_password(password)
            _write_private(password_file, {"email": DEMO_EMAIL, "password": password})
        password = json.loads(password_file.read_text())["password"]
        workspace = db.scalar(select(Workspace).where(Workspace.agency_id == member.agency_id,
                                                      Workspace.archived_at.is_(None)))
        if workspace is None:
            workspace = agencies.create_workspace(db, member.agency_id, "Blue Bottle Bakery", SYSTEM)
        now = rt.deps.now()
        link = next((candidate for candidate in db.scalars(
            select(ConnectLink).where(ConnectLink.workspace_id == workspace.id, ConnectLink.label == "Demo link")
            .order_by(ConnectLink.created_at.desc())) if candidate.state(now) == "active"), None)
        offered = platforms.offered(db, rt.deps, member.agency_id)
        if link is None or set(link.allowed_platforms) != set(offered):
            link = links.create_link(db, rt.deps, member.agency_id, SYSTEM, workspace_id=workspace.id,
                                     platforms=list(offered), available=offered, lifetime=timedelta(days=30),
                                     max_uses=None, label="Demo link")
        return DEMO_EMAIL, password, links.link_url(rt.deps, link)


def _brand_demo(db: object, agency_id: str) -> None:
    from portal.demo_assets import demo_logo_png

    agency = db.get(Agency, agency_id)  # type: ignore[attr-defined]
    agency.brand_color = "#e4572e"
    agency.logo = demo_logo_png()
    agency.logo_type = "image/png"
    agency.logo_version = 1


def _write_private(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Set up and print the demo lines, then exit.")
def demo(host: str, port: int, no_serve: bool) -> None:
    """Set up the demo (database, agency, workspace, link) and serve the portal."""
    from portal.app import create_app

    os.environ.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    try:
        app = create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    rt = _runtime(app)
    migrate.upgrade(rt.settings.database_url)
    email, password, url = ensure_demo(rt)
    click.echo(f"EasyConnect demo ({rt.settings.mode} mode, database {rt.settings.database_url.split('://')[0]}, "
               f"jobs {'on RQ' if rt.redis else 'inline'}, sandbox platform on)")
    click.echo(f"Admin: {rt.settings.base_url}/admin/ ({email} / {password})")
    click.echo(f"EasyConnect link: {url}")
    click.echo(f"Sandbox controls (make platforms fail, to see every health state): "
               f"{rt.settings.sandbox_url}/controls")
    widget_page = ensure_widget_demo(rt, port + 1)
    click.echo(f"Widget demo (the agency's own site, another origin, embedding the link): {widget_page}")
    sys.stdout.flush()
    if not no_serve:
        serve_widget_demo(host, port + 1, rt.settings.base_url, url)
        app.run(host=host, port=port, threaded=True, use_reloader=False)


def ensure_widget_demo(rt: Runtime, port: int) -> str:
    """Allow http://localhost:<port> as the demo agency's embed origin; returns that page's URL."""
    from portal.services import widget

    origin = f"http://localhost:{port}"
    with session_scope(rt.session_factory) as db:
        member = db.scalar(select(Member).where(Member.email == DEMO_EMAIL))
        agency = db.get(Agency, member.agency_id) if member else None
        if agency is not None and origin not in (agency.embed_origins or []):
            widget.add_embed_origin(db, agency, origin, SYSTEM, production=rt.settings.production)
    return origin + "/"


def serve_widget_demo(host: str, port: int, portal_base_url: str, link_url: str) -> None:
    """A stand-in for the agency's site on another origin (another port), in a background thread."""
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    from portal.demo_assets import widget_host_page

    page = widget_host_page(portal_base_url, link_url)
    server = make_server(host, port, Response(page, mimetype="text/html"), threaded=True)
    threading.Thread(target=server.serve_forever, name="widget-demo", daemon=True).start()


COMMANDS = [init_db, create_agency, create_link, rotate_token_keys, new_key, demo]


def register_commands(app: Flask) -> None:
    for command in COMMANDS:
        if command is not demo:
            app.cli.add_command(command)


def main() -> None:
    """The ``easyconnect`` console script."""

    @click.group()
    def cli() -> None:
        """EasyConnect: the white-label connection portal."""

    from flask.cli import ScriptInfo

    def _load() -> Flask:
        from portal.app import create_app

        try:
            return create_app(load_settings())
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc

    for command in COMMANDS:
        cli.add_command(command)
    cli(obj=ScriptInfo(create_app=_load))
