"""Keep link tokens, OAuth codes and states out of access logs."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    (re.compile(r"/c/[A-Za-z0-9_\-.]{20,}"), "/c/<link>"),
    # Widget: the phone hand-off (a short-lived way into a link) and the session handle (reads its outcome);
    # a host page's return address may carry its own secrets in its query.
    (re.compile(r"/widget/v1/(handoff|status)/[^/\s?\"']+"), r"/widget/v1/\1/<redacted>"),
    (re.compile(r"([?&](?:code|state|token|access_token|refresh_token|code_verifier|client_secret"
                r"|fb_exchange_token|password|session|widget_session|join|return_url|widget_return_url)=)"
                r"[^&\s\"']+"), r"\1<redacted>"),
    # A team invitation: its token is a single-use credential to join the agency.
    (re.compile(r"/admin/invite/[^/\s?\"']+"), "/admin/invite/<redacted>"),
    # Telegram's Bot API puts the bot token in the path: /bot<token>/<method>, /file/bot<token>/...
    (re.compile(r"/bot[^/\s?\"']{8,}/"), "/bot<redacted>/"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(logger_names: tuple[str, ...] = ("werkzeug", "gunicorn.access", "gunicorn.error",
                                            "urllib3.connectionpool")) -> None:
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
