"""Languages of the client-facing pages: English, Spanish, French, German and Portuguese.

The language comes from the page's switch (``?lang=``, remembered in a first-party cookie when the
browser allows one), then the link's language or its agency's default (set by the view that resolved
the link, with ``use_language``: no extra query), then the browser's Accept-Language, then English. Translations live in
portal/translations (.po sources and their compiled .mo files, checked by a test).
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from flask_babel import Babel, get_locale, gettext, refresh

from portal.text import Text

LANGUAGES = {"en": "English", "es": "Español", "fr": "Français", "de": "Deutsch", "pt": "Português"}
COOKIE = "easyconnect_lang"


def select_locale() -> str:
    chosen = request.args.get("lang") or request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    preferred = g.get("page_language")
    if preferred in LANGUAGES:
        return str(preferred)
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


def translate(text: Text | str) -> str:
    """``text`` in the request's language: a ``Text`` (its parameters inserted after translation, themselves
    translated when they are ``Text``) or a plain English sentence the catalog may know. Always plain text, so
    templates escape it."""
    if isinstance(text, Text):
        translated = gettext(text.template)
        if not text.params:
            return str(translated)
        return str(translated) % {name: translate(value) if isinstance(value, Text) else value
                                  for name, value in text.params.items()}
    return str(gettext(str(text)))


def use_language(language: str | None) -> None:
    """The page's own language (a link's, or its agency's default), below the client's switch."""
    if language in LANGUAGES and g.get("page_language") != language:
        g.page_language = language
        refresh()  # a locale computed earlier in this request must not stick


def init_app(app: Flask, translations: str) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories=translations)
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    # For messages known only at run time (error texts): translated when the catalog has them, and
    # always escaped, unlike Jinja's _() which would mark the (possibly user-influenced) text safe.
    app.jinja_env.filters["translate"] = translate

    @app.context_processor
    def _locale() -> dict[str, str]:
        return {"current_locale": str(get_locale() or "en")}

    @app.after_request
    def _remember_language(response: Response) -> Response:
        chosen = request.args.get("lang")
        if chosen in LANGUAGES and request.cookies.get(COOKIE) != chosen:
            response.set_cookie(COOKIE, chosen, max_age=365 * 86400, samesite="Lax", httponly=True)
        return response
