"""Security headers as data: the content security policy, with frames denied unless a page opts in.

Only the client link page opened as an iframe widget passes the agency's exact embed origins as
``frame_ancestors`` (and then sends no X-Frame-Options, which would contradict it); every other page,
the admin panel included, is framed by nobody. Widget pages in a popup keep ``window.opener`` so they
can tell the host page what happened; every other page severs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# What a stored, normalised embed origin looks like; anything else never reaches a header.
_ORIGIN = re.compile(r"^https?://[a-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$")


def frame_ancestors(origins: Iterable[str]) -> str:
    """The ``frame-ancestors`` source list for these exact origins; ``'none'`` when there are none."""
    allowed = [origin for origin in origins if _ORIGIN.match(origin)]
    return " ".join(allowed) if allowed else "'none'"


def content_security_policy(nonce: str, form_targets: str = "", frame_ancestors: str = "'none'") -> str:
    before, after = _policy_around_nonce(form_targets, frame_ancestors)
    return before + nonce + after


@lru_cache(maxsize=512)  # built once per setting: every response sends one, with only its nonce new
def _policy_around_nonce(form_targets: str, frame_ancestors: str) -> tuple[str, str]:
    policy = "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'nonce-\0'",
        "img-src 'self' data: https:",
        "object-src 'none'",
        "base-uri 'none'",
        # Connect buttons post here and are redirected to the platform's consent page.
        f"form-action 'self' https: {form_targets}".strip(),
        f"frame-ancestors {frame_ancestors}",
    ])
    before, _, after = policy.partition("\0")
    return before, after


@lru_cache(maxsize=16)
def baseline_headers(secure: bool, framed: bool = False,
                     keep_opener: bool = False) -> tuple[tuple[str, str], ...]:
    """The headers every response carries, as (name, value) pairs (shared between responses: immutable)."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        # A widget popup must keep its opener (the agency's page); everything else is isolated from it.
        "Cross-Origin-Opener-Policy": "unsafe-none" if keep_opener else "same-origin-allow-popups",
    }
    if not framed:  # X-Frame-Options cannot name origins, so a page framed by some sends none
        headers["X-Frame-Options"] = "DENY"
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return tuple(headers.items())
