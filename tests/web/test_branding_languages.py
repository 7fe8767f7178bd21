"""Every client page in en/es/fr/de/pt, the language chosen per link or by the agency's default, the
client's switch still winning; the catalogs cover the Bluesky, Mastodon, Telegram and self-service pages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from markupsafe import escape

from portal.models import Agency, ConnectLink
from portal.services import link_mail
from tests.helpers import all_platforms_link, connect, setup_link

ROOT = Path(__file__).resolve().parents[2]
LANGS = ("en", "es", "fr", "de", "pt")
# A message each page shows whatever its state: found translated in the page's HTML.
PAGES = {
    "link": ("", "Connect your accounts"),
    "manage": ("/manage", "Your connections"),
    "bluesky": ("/app-password/bluesky", "Handle, email or DID"),
    "mastodon": ("/instance-oauth/mastodon", "Your server"),
    "telegram": ("/bot-code/telegram", "Post this message in the channel:"),
}


def _t(lang: str, message: str) -> str:
    return str(link_mail.translations(lang).gettext(message))


def _shows(html: str, text: str) -> bool:
    """Jinja's _() output is markup-safe (not escaped); run-time texts (|translate) are escaped."""
    return text in html or str(escape(text)) in html


@pytest.mark.parametrize("lang", LANGS)
def test_every_client_page_renders_in_each_language(client, db, runtime, lang):
    *_, path = all_platforms_link(db, runtime.deps, ["sandbox", "bluesky", "mastodon", "telegram"])
    for name, (suffix, message) in PAGES.items():
        response = client.get(f"{path}{suffix}?lang={lang}")
        html = response.get_data(as_text=True)
        assert response.status_code == 200, (name, html[:300])
        assert f'<html lang="{lang}">' in html and _shows(html, _t(lang, message)), (name, lang)
    done = client.get(connect(client, path).headers["Location"] + f"?lang={lang}").get_data(as_text=True)
    assert _shows(done, _t(lang, "You're connected")) and _shows(done, _t(lang, "Manage your connections"))
    missing = client.get(f"/c/not-a-link?lang={lang}").get_data(as_text=True)
    assert _shows(missing, _t(lang, "We couldn't finish connecting"))
    generic = client.get(f"/nowhere?lang={lang}")
    assert generic.status_code == 404
    assert _shows(generic.get_data(as_text=True), _t(lang, "We could not find that page."))


def test_link_language_then_agency_default_then_browser(client, db, runtime):
    member, workspace, link, path = setup_link(db, runtime.deps, language="pt")
    german = {"Accept-Language": "de-DE,de;q=0.9"}
    assert '<html lang="pt">' in client.get(path, headers=german).get_data(as_text=True)  # the link's wins
    db.get(Agency, member.agency_id).default_language = "es"
    db.get(ConnectLink, link.id).language = None
    db.commit()
    assert '<html lang="es">' in client.get(path, headers=german).get_data(as_text=True)  # then the agency's
    db.get(Agency, member.agency_id).default_language = None
    db.commit()
    assert '<html lang="de">' in client.get(path, headers=german).get_data(as_text=True)  # then the browser's
    # The client's own switch beats all of them, and is remembered.
    db.get(ConnectLink, link.id).language = "pt"
    db.commit()
    assert '<html lang="fr">' in client.get(path + "?lang=fr", headers=german).get_data(as_text=True)
    assert '<html lang="fr">' in client.get(path, headers=german).get_data(as_text=True)


def test_error_page_of_an_expired_link_speaks_the_links_language(client, db, runtime):
    _, _, link, path = setup_link(db, runtime.deps, language="de")
    db.get(ConnectLink, link.id).expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 410 and _shows(html, _t("de", "This link no longer works"))


def test_link_language_is_validated_at_creation(db, runtime):
    from portal.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="Language must be one of"):
        setup_link(db, runtime.deps, language="xx")


def _msgids(template: Path) -> set[str]:
    return {m for _, m, _, _ in extract_from_file("jinja2", str(template)) if isinstance(m, str) and m}


@pytest.mark.parametrize("lang", LANGS[1:])
def test_catalogs_cover_every_client_template_and_the_link_email(lang):
    needed: set[str] = set()
    for template in [*(ROOT / "templates" / "connect").glob("*.html"), ROOT / "templates" / "errors" / "error.html"]:
        needed |= _msgids(template)
    needed |= {"%(agency)s: connect your accounts", "Open this link to start:",
               "Keep this email to yourself: anyone with the link can connect accounts to it."}
    with open(ROOT / "portal" / "translations" / lang / "LC_MESSAGES" / "messages.po", "rb") as handle:
        have = {str(m.id) for m in read_po(handle) if m.id and m.string}
    assert not needed - have, f"{lang} lacks: {sorted(needed - have)}"


def test_api_sets_the_links_language(client, db, runtime):
    from urllib.parse import urlsplit

    from tests.api.support import auth, make_key
    from tests.helpers import make_member, make_workspace

    member = make_member(db)
    workspace = make_workspace(db, member.agency_id)
    key = make_key(db, runtime, member.agency_id)
    made = client.post("/api/v1/links", headers=auth(key),
                       json={"workspace_id": workspace.id, "platforms": ["sandbox"], "language": "pt"})
    assert made.status_code == 201 and made.get_json()["language"] == "pt"
    page = client.get(urlsplit(made.get_json()["url"]).path, headers={"Accept-Language": "de"})
    assert '<html lang="pt">' in page.get_data(as_text=True)
    refused = client.post("/api/v1/links", headers=auth(key),
                          json={"workspace_id": workspace.id, "platforms": ["sandbox"], "language": "xx"})
    assert refused.status_code == 400 and "Language must be one of" in refused.get_data(as_text=True)
