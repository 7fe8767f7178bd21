"""Client pages in English, Spanish, French, German and Portuguese; the translations are complete."""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from portal import errors
from portal.models import ConnectLink
from portal.providers import load_catalog
from tests.helpers import setup_link

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "portal" / "translations"
LANGS = ("es", "fr", "de", "pt")
HEADLINE = {"en": "Connect your accounts", "es": "Conecta tus cuentas", "fr": "Connectez vos comptes",
            "de": "Verbinden Sie Ihre Konten", "pt": "Conecte as suas contas"}


@pytest.mark.parametrize("lang", ["en", *LANGS])
def test_link_page_in_each_language(client, db, runtime, lang):
    *_, path = setup_link(db, runtime.deps)
    html = client.get(f"{path}?lang={lang}").get_data(as_text=True)
    assert HEADLINE[lang] in html and f'<html lang="{lang}">' in html
    assert client.get(path).get_data(as_text=True).count(HEADLINE[lang]) >= 1  # remembered (cookie)


def test_browser_language_is_used_when_nothing_was_chosen(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    html = client.get(path, headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert HEADLINE["de"] in html
    assert HEADLINE["en"] in client.get(path, headers={"Accept-Language": "ja"}).get_data(as_text=True)


def test_error_pages_are_translated(client, db, runtime):
    _, _, link, path = setup_link(db, runtime.deps)
    db.get(ConnectLink, link.id).expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    html = client.get(f"{path}?lang=fr").get_data(as_text=True)
    assert "Ce lien ne fonctionne plus" in html and "Ce lien a expiré" in html


def _catalog(lang: str) -> set[str]:
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as handle:
        return {str(m.id) for m in read_po(handle) if m.id and m.string}


def _needed() -> set[str]:
    # Only the messages of the core pages are required so far (see README: Bluesky, Mastodon and
    # Telegram pages are English until their strings are extracted).
    core = {"base.html", "link.html", "select.html", "done.html", "error.html"}
    needed = {message for _, _, message, _ in _extract_with_files(core) if isinstance(message, str) and message}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.PortalError) and cls.__dict__.get("public_message"):
            needed.add(cls.public_message)
    needed.update(spec.description for spec in load_catalog().values() if spec.description)
    return needed


def _extract_with_files(names: set[str]):
    from babel.messages.extract import extract_from_file

    for name in names:
        for lineno, message, comments, _context in extract_from_file(
                "jinja2", str(ROOT / "templates" / "connect" / name)):
            yield name, lineno, message, comments


@pytest.mark.parametrize("lang", LANGS)
def test_translations_are_complete(lang):
    missing = _needed() - _catalog(lang)
    assert not missing, f"{lang} lacks: {sorted(missing)}"


@pytest.mark.parametrize("lang", LANGS)
def test_compiled_catalogs_match_their_sources(lang):
    folder = TRANSLATIONS / lang / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as handle:
        source = {str(m.id): m.string for m in read_po(handle) if m.id}
    with open(folder / "messages.mo", "rb") as handle:
        compiled = {str(m.id): m.string for m in read_mo(handle) if m.id}
    assert compiled == source, "run: pybabel compile -d portal/translations"
