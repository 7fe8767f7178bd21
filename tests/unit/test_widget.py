"""The widget's pure parts: the event contract, origin and return-URL validation (hostile values),
frame-ancestors, the hand-off signer, in-app browser detection."""

from __future__ import annotations

import pytest

from portal.errors import ValidationFailed
from portal.security.framing import baseline_headers, content_security_policy, frame_ancestors
from portal.security.signing import HandoffSigner, LinkSigner
from portal.services import widget

# The event contract ----------------------------------------------------------------------------------------


def test_every_event_carries_source_version_and_type():
    assert widget.event("ready", session="s", mode="popup") == {
        "source": "easyconnect", "version": 1, "type": "ready", "session": "s", "mode": "popup"}
    assert set(widget.EVENT_FIELDS) == {"ready", "platform_selected", "popup_blocked", "success", "error", "exit"}


@pytest.mark.parametrize(("kind", "fields"), [
    ("success", {"access_token": "x"}), ("success", {"refresh_token": "x"}), ("error", {"state": "x"}),
    ("ready", {"link": "x"}), ("token", {}), ("SUCCESS", {}), ("", {})])
def test_unknown_types_and_fields_are_refused(kind, fields):
    with pytest.raises(ValueError):
        widget.event(kind, **fields)


def test_no_event_type_may_carry_anything_secret_looking():
    for fields in widget.EVENT_FIELDS.values():
        assert not any(word in field for field in fields for word in ("token", "secret", "code_", "state", "link"))


def test_error_events_carry_the_typed_code_and_its_plain_message():
    assert widget.error_message("consent_denied").startswith("You ") or widget.error_message("consent_denied")
    assert widget.error_message("link_expired") != widget.error_message("no-such-code")
    assert "<" not in widget.error_message("oauth_failed")


# Embed origins ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("https://agency.example", "https://agency.example"),
    ("  HTTPS://Agency.Example/  ", "https://agency.example"),
    ("https://agency.example:443", "https://agency.example"),
    ("https://agency.example:8443", "https://agency.example:8443"),
    ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ("https://203.0.113.9", "https://203.0.113.9"),
    ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ("http://localhost:8000", "http://localhost:8000"),
    ("http://127.0.0.1:80", "http://127.0.0.1"),
])
def test_origins_are_normalised_as_browsers_write_them(raw, expected):
    assert widget.normalise_origin(raw, allow_local_http=True) == expected


@pytest.mark.parametrize("raw", [
    "", "null", "*", "https://*.agency.example", "agency.example", "//agency.example", "https://",
    "https://user@agency.example", "https://user:pass@agency.example", "https://agency.example@evil.example",
    "https://agency.example/path", "https://agency.example/?q=1", "https://agency.example#frag",
    "https://agency.example?", "javascript:alert(1)", "data:text/html,<script>", "file:///etc/passwd",
    "ftp://agency.example", "ws://agency.example", "https://bücher.example", "https://agency.example\u202e",
    "https://agency.example\x00", "https://agency .example", "https://agency.example\\@evil.example",
    "https://agency.example:99999", "https://agency.example:0", "https://agency.example:-1",
    "https://agency.example:abc", "https://-agency.example", "https://agency..example", "https://agency.example.",
    "https://999.1.1.1", "https://" + "a" * 300 + ".example", "https://" + "a." * 200 + "example",
])
def test_hostile_origins_are_refused(raw):
    with pytest.raises(ValidationFailed):
        widget.normalise_origin(raw, allow_local_http=True)


@pytest.mark.parametrize("raw", ["http://agency.example", "http://localhost.evil.example", "http://127.0.0.2",
                                 "http://10.0.0.1"])
def test_http_is_only_for_localhost_outside_production(raw):
    with pytest.raises(ValidationFailed):
        widget.normalise_origin(raw, allow_local_http=True)
    with pytest.raises(ValidationFailed):
        widget.normalise_origin("http://localhost:8000", allow_local_http=False)


def test_the_origin_check_is_exact():
    class Agency:
        embed_origins = ["https://agency.example", "http://localhost:8000"]

    agency = Agency()
    for ok in ("https://agency.example", "http://localhost:8000"):
        assert widget.origin_allowed(agency, ok)  # type: ignore[arg-type]
    for bad in (None, "", "null", "https://agency.example/", "https://AGENCY.example", "https://agency.example:443",
                "https://evil.example.agency.example", "https://agency.example.evil.example", "http://agency.example",
                "http://localhost:8001", "https://agency.example\x00"):
        assert not widget.origin_allowed(agency, bad)  # type: ignore[arg-type]


# Return URLs ------------------------------------------------------------------------------------------------

ORIGIN = "https://agency.example"


@pytest.mark.parametrize("url", ["https://agency.example", "https://agency.example/onboarding?step=2#top",
                                 "https://agency.example:443/x", "HTTPS://AGENCY.EXAMPLE/x"])
def test_return_urls_on_the_host_origin_are_kept(url):
    assert widget.validate_return_url(url, ORIGIN) == url


@pytest.mark.parametrize("url", [
    "https://evil.example/", "https://agency.example.evil.example/", "https://evil.example.agency.example/",
    "https://agency.example@evil.example/", "https://user:pw@agency.example/", "https://agency.example:8443/",
    "http://agency.example/", "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "//evil.example/",
    "/relative/path", "https://agency.example\\@evil.example", "https://agency.example/\x00",
    "https://agency.example/ x", "https://agency.example/\u2028", " https://agency.example/",
    "https://agency.example/" + "a" * 3000, "", "null",
])
def test_hostile_return_urls_are_refused(url):
    with pytest.raises(ValidationFailed):
        widget.validate_return_url(url, ORIGIN)


# Frames ----------------------------------------------------------------------------------------------------

def test_frame_ancestors_lists_exact_origins_and_defaults_to_none():
    assert frame_ancestors([]) == "'none'"
    assert frame_ancestors(["https://a.example", "http://localhost:8000"]) == "https://a.example http://localhost:8000"
    # Anything that is not a stored, normalised origin never reaches the header (no directive injection).
    assert frame_ancestors(["https://a.example; script-src *", "*", "'self'", "https://a.example\r\nX: y"]) == "'none'"
    assert "frame-ancestors 'none'" in content_security_policy("n")


def test_x_frame_options_is_dropped_only_where_frame_ancestors_names_origins():
    assert dict(baseline_headers(False))["X-Frame-Options"] == "DENY"
    assert "X-Frame-Options" not in dict(baseline_headers(False, framed=True))
    assert dict(baseline_headers(False))["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    assert dict(baseline_headers(False, keep_opener=True))["Cross-Origin-Opener-Policy"] == "unsafe-none"


# The phone hand-off ------------------------------------------------------------------------------------------

NOW = 1_800_000_000


def test_handoff_tokens_are_signed_timed_and_of_their_own_purpose():
    signer = HandoffSigner(["key-new", "key-old"])
    token = signer.sign({"l": "link-id", "n": "nonce"}, NOW)
    assert signer.unsign(token, NOW, 600) == {"l": "link-id", "n": "nonce"}
    assert HandoffSigner(["key-other", "key-new"]).unsign(token, NOW, 600) is not None  # rotation: old keys verify
    assert HandoffSigner(["another"]).unsign(token, NOW, 600) is None
    assert LinkSigner(["key-new"]).unsign(token) is None  # another salt: not a link token
    assert signer.unsign(LinkSigner(["key-new"]).sign("link-id"), NOW, 600) is None
    assert signer.unsign(token[:-2] + "xx", NOW, 600) is None
    assert signer.unsign("x" * 500, NOW, 600) is None
    assert signer.unsign(token, NOW + 601, 600) is None  # expired


def test_a_handoff_signed_by_a_clock_running_ahead_still_works():
    """M3: itsdangerous' timed serializer refused any negative age; up to 5 minutes ahead is accepted now."""
    signer = HandoffSigner(["key"])
    assert signer.unsign(signer.sign({"n": "x"}, NOW + 299), NOW, 600) == {"n": "x"}
    assert signer.unsign(signer.sign({"n": "x"}, NOW + 301), NOW, 600) is None  # not from the far future
    assert signer.unsign(signer.sign({"n": "x"}, NOW - 600), NOW, 600) == {"n": "x"}
    assert signer.unsign(signer.sign({"n": "x"}, NOW - 601), NOW, 600) is None


def test_a_handoff_without_a_proper_issue_time_is_refused():
    from itsdangerous import URLSafeSerializer

    from portal.security.signing import HANDOFF_KEY_INFO, HANDOFF_SALT, derive_key

    forge = URLSafeSerializer(derive_key("key", HANDOFF_KEY_INFO), salt=HANDOFF_SALT)
    signer = HandoffSigner(["key"])
    for payload in ({"n": "x"}, {"n": "x", "iat": str(NOW)}, {"n": "x", "iat": True}, ["n"], {"n": 1, "iat": NOW}):
        assert signer.unsign(forge.dumps(payload), NOW, 600) is None
    assert signer.unsign(forge.dumps({"n": "x", "iat": NOW}), NOW, 600) == {"n": "x"}


def test_the_handoff_key_is_derived_not_the_link_key_itself():
    """L6: the raw link key with the hand-off salt must not verify (nor make) a hand-off token."""
    from itsdangerous import URLSafeSerializer

    from portal.security.signing import HANDOFF_SALT

    raw = URLSafeSerializer("key", salt=HANDOFF_SALT)
    signer = HandoffSigner(["key"])
    assert signer.unsign(raw.dumps({"n": "x", "iat": NOW}), NOW, 600) is None
    token = signer.sign({"n": "x"}, NOW)
    assert raw.loads_unsafe(token)[0] is False  # the link key does not verify it either


# In-app browsers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("agent", "expected"), [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Instagram 309.0.0.0", "Instagram"),
    ("Mozilla/5.0 (iPhone) Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0;FBBV/1]", "Facebook"),
    ("Mozilla/5.0 (Linux; Android 14) Chrome/120 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/440.0.0.0;]", "Facebook"),
    ("Mozilla/5.0 (iPhone) Mobile/15E148 Safari Line/13.1.0", "LINE"),
    ("Mozilla/5.0 (Linux; Android 13) Mobile Safari/537.36 musical_ly_2023102030 BytedanceWebview/d8a21c6", "TikTok"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", None),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile/15E148 Safari/604.1", None),
    ("", None), (None, None),
])
def test_in_app_browsers_are_recognised(agent, expected):
    assert widget.in_app_browser(agent) == expected


def test_the_snippet_loads_the_versioned_script_and_names_the_link():
    text = widget.snippet("https://connect.example.com", "https://connect.example.com/c/abc")
    assert '<script src="https://connect.example.com/widget/v1/connect.js" defer></script>' in text
    assert 'url: "https://connect.example.com/c/abc"' in text and "EasyConnect.button(" in text


def test_the_qr_code_is_an_inline_svg():
    uri = widget.qr_code_data_uri("https://connect.example.com/widget/v1/handoff/abc")
    assert uri.startswith("data:image/svg+xml")


def test_widget_handles_and_handoff_urls_stay_out_of_access_logs():
    from portal.logsafe import redact

    line = ('"GET /widget/v1/handoff/eyJsIjoieCJ9.abc.def HTTP/1.1" "GET /widget/v1/status/AbCdEfGhIjKlMnOpQrStUvWx '
            'HTTP/1.1" "GET /c/IjBQRzlLRlFTZVN2bW1kalp4aGpsSUswSjNrM2FMM3dDeGlRcUZHNDdiWk0i.sig?embed=popup&'
            'origin=https://a.example&session=AbCdEfGhIjKlMnOpQrStUvWx HTTP/1.1"')
    cleaned = redact(line)
    assert "eyJsIjoieCJ9" not in cleaned and "AbCdEfGhIjKlMnOpQrStUvWx" not in cleaned
    assert "/widget/v1/handoff/<redacted>" in cleaned and "/widget/v1/status/<redacted>" in cleaned
    assert "origin=https://a.example" in cleaned  # not a secret, useful when debugging an embed


def test_return_urls_and_join_tickets_stay_out_of_access_logs():
    """L4: a host page's return address may hold its own secrets; the phone's join ticket opens a session."""
    from portal.logsafe import redact

    line = ('"GET /c/abc?embed=redirect&return_url=https%3A%2F%2Fa.example%2Freset%3Ftoken%3Dhostsecret&x=1 '
            'HTTP/1.1" "GET /c/abc?embed=handoff&join=JoinTicketJoinTicket123 HTTP/1.1"')
    cleaned = redact(line)
    assert "hostsecret" not in cleaned and "JoinTicket" not in cleaned and "&x=1" in cleaned
