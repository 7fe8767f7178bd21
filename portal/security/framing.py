"""Security headers. Frames are denied unless a route opts in (the widget, in a later issue)."""

from __future__ import annotations

import secrets

from flask import Flask, Response, g


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce  # type: ignore[no-any-return]


def content_security_policy(nonce: str, form_targets: str = "", frame_ancestors: str = "'none'") -> str:
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data: https:",
        "object-src 'none'",
        "base-uri 'none'",
        # Connect buttons post here and are redirected to the platform's consent page.
        f"form-action 'self' https: {form_targets}".strip(),
        f"frame-ancestors {frame_ancestors}",
    ])


def init_app(app: Flask, secure: bool, form_targets: str = "") -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", content_security_policy(csp_nonce(), form_targets))
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin-allow-popups")
        if secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
