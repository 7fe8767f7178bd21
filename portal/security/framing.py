"""Security headers as data: the content security policy, with frames denied unless a page opts in.

Only widget pages (a later issue) will pass the agency's exact embed origins as ``frame_ancestors``;
every other page is framed by nobody.
"""

from __future__ import annotations


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


def baseline_headers(secure: bool) -> dict[str, str]:
    headers = {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin-allow-popups",
    }
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers
