"""Test helpers: data factories with overridable defaults, and a client that walks the real flow."""

from __future__ import annotations

import html
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import requests
from sqlalchemy.orm import Session

from portal.models import Connection, ConnectLink, Member, Workspace
from portal.services import agencies, links
from portal.services.audit import SYSTEM

PASSWORD = "correct horse battery"


@dataclass
class LiveServer:
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)

    def counters(self) -> dict[str, int]:
        return dict(requests.get(self.url + "/sandbox/_control", timeout=5).json()["counters"])

    def fail(self, endpoint: str, mode: str, times: int = 1) -> None:
        response = requests.post(self.url + "/sandbox/_control", json={"endpoint": endpoint, "mode": mode,
                                                                       "times": times}, timeout=5)
        response.raise_for_status()

    def reset(self) -> None:
        for endpoint in ("token", "userinfo"):
            self.fail(endpoint, "none", 0)


# Factories ---------------------------------------------------------------------------------------------

def make_member(db: Session, agency_name: str = "Acme Agency", email: str | None = None) -> Member:
    import secrets

    member = agencies.sign_up(db, agency_name, email or f"owner-{secrets.token_hex(4)}@agency.example", PASSWORD)
    db.commit()
    return member


def make_workspace(db: Session, agency_id: str, name: str = "Client Co") -> Workspace:
    workspace = agencies.create_workspace(db, agency_id, name, SYSTEM)
    db.commit()
    return workspace


def make_link(db: Session, deps: Any, workspace: Workspace, **overrides: Any) -> tuple[ConnectLink, str]:
    """A link and its URL path (/c/<token>)."""
    values: dict[str, Any] = {"platforms": ["sandbox"], "available": ["sandbox"], "lifetime": timedelta(days=7),
                              "max_uses": None, "label": "test link"}
    values.update(overrides)
    link = links.create_link(db, deps, workspace.agency_id, SYSTEM, workspace_id=workspace.id, **values)
    db.commit()
    return link, urlsplit(links.link_url(deps, link)).path


def setup_link(db: Session, deps: Any, **overrides: Any) -> tuple[Member, Workspace, ConnectLink, str]:
    member = make_member(db)
    workspace = make_workspace(db, member.agency_id)
    link, path = make_link(db, deps, workspace, **overrides)
    return member, workspace, link, path


# Walking the connect flow -----------------------------------------------------------------------------------

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def start_flow(client: Any, link_path: str, platform: str = "sandbox") -> str:
    """Open the link page, press Connect; returns the platform's authorize URL."""
    assert client.get(link_path).status_code == 200
    response = client.post(f"{link_path}/connect/{platform}")
    assert response.status_code == 303, response.status_code
    return str(response.headers["Location"])


def consent(authorize_url: str, account: str = "sbx-1001", decision: str = "approve",
            scopes: list[str] | None = None, choice: str | None = None) -> str:
    """Act as the user on the sandbox's consent page (a real HTTP round trip); returns the callback URL.

    ``scopes``: the permissions left ticked (default all); ``choice``: e.g. Discord's server."""
    page = requests.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text[:500]
    form = dict(_HIDDEN.findall(page.text))
    form.update(account=account, decision=decision)
    if choice is not None:
        form["choice"] = choice
    data: dict[str, Any] = {**form, "scope": scopes if scopes is not None else form["requested_scope"].split()}
    base = f"{urlsplit(authorize_url).scheme}://{urlsplit(authorize_url).netloc}"
    action = html.unescape(_ACTION.search(page.text).group(1))
    answer = requests.post(base + action, data=data, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:500]
    return str(answer.headers["Location"])


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def connect(client: Any, link_path: str, account: str = "sbx-1001", platform: str = "sandbox",
            scopes: list[str] | None = None, choice: str | None = None) -> Any:
    """The whole flow; returns the callback response (303 to the done or the select page on success)."""
    callback = consent(start_flow(client, link_path, platform), account=account, scopes=scopes, choice=choice)
    return client.get(local_path(callback))


def select(client: Any, select_path: str, chosen: list[str]) -> Any:
    """The account picker: check that it lists the candidates, then submit the chosen ids."""
    page = client.get(select_path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return client.post(select_path, data={"account": chosen})


def candidates_on(client: Any, select_path: str) -> list[str]:
    return re.findall(r'name="account" value="([^"]+)"', client.get(select_path).get_data(as_text=True))


def all_platforms_link(db: Session, deps: Any, platforms: list[str], **overrides: Any) -> tuple[Any, Any, Any, str]:
    """A member, workspace and link offering the given platforms."""
    return setup_link(db, deps, platforms=platforms, available=platforms, **overrides)


def fresh(db: Session) -> Session:
    """End the test session's snapshot and forget loaded rows: see what the app committed."""
    db.rollback()
    db.expire_all()
    return db


def connections_in(db: Session, workspace_id: str) -> list[Connection]:
    from sqlalchemy import select

    fresh(db)
    return list(db.scalars(select(Connection).where(Connection.workspace_id == workspace_id)))


def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token})


def csrf_from(client: Any, path: str = "/admin/") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on " + path
    return match.group(1)


class DnsServer:
    """A real DNS server on 127.0.0.1 (UDP, random port) for custom-domain proofs: answers TXT questions from
    ``records`` (name -> values; an empty list is a name with no TXT record), NXDOMAIN for any other name.
    ``silent`` never answers, so lookups time out; ``on_question`` (if set) runs before each answer, for
    something to happen while a lookup is under way."""

    def __init__(self, silent: bool = False) -> None:
        self.records: dict[str, list[str]] = {}
        self.silent = silent
        self.on_question: Callable[[str], None] | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()
        return str(host), int(port)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                wire, sender = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            if not self.silent:
                self._socket.sendto(self._answer(wire), sender)

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        if self.on_question is not None:
            self.on_question(name)
        values = self.records.get(name)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and values:
            response.answer.append(dns.rrset.from_rdata_list(question.name, 60, [
                dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()]) for value in values]))
        return response.to_wire()
