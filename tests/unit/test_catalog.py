"""The platform catalog: every entry valid; invalid entries fail loudly."""

from __future__ import annotations

import pytest

from portal.providers import CatalogError, load_catalog, parse_catalog
from portal.providers.adapters import Adapter, adapter_class

VALID = """
[demo]
display_name = "Demo"
account_kind = "profile"
base_url = "https://api.demo.example"
authorize_url = "{base}/authorize"
token_url = "{base}/token"
userinfo_url = "{base}/me"
scopes = ["read", "write"]
required_scopes = ["write"]
[demo.userinfo_fields]
id = "id"
name = "name"
"""


PLATFORMS = {"sandbox", "facebook", "instagram", "instagram-standalone", "threads", "linkedin", "linkedin-page", "x",
             "tiktok", "youtube", "gmb", "pinterest", "discord", "bluesky", "mastodon", "telegram"}


def test_shipped_catalog_is_valid_and_complete():
    catalog = load_catalog()
    assert set(catalog) == PLATFORMS
    for spec in catalog.values():
        assert issubclass(adapter_class(spec.adapter), Adapter), spec.name
        if spec.auth_kind in ("oauth2", "instance_oauth"):
            assert spec.scopes and spec.authorize_url and spec.token_url, spec.name
            assert set(spec.required_scopes) <= set(spec.scopes)


def test_sandboxed_specs_route_every_url_to_the_sandbox():
    for spec in load_catalog().values():
        resolved = spec.resolve("http://127.0.0.1:9/sandbox", sandboxed=True)
        for url in (resolved.authorize_url, resolved.token_url, resolved.userinfo_url, resolved.revoke_url):
            assert not url or url.startswith(("http://127.0.0.1:9/sandbox", "{instance}")), (spec.name, url)
        real = spec.resolve("http://127.0.0.1:9/sandbox", sandboxed=False)
        if not spec.sandbox_only and spec.auth_kind == "oauth2":
            assert real.token_url.startswith("https://"), spec.name


def test_valid_entry_parses():
    spec = parse_catalog(VALID)["demo"]
    assert spec.resolve("http://sandbox", sandboxed=False).token_url == "https://api.demo.example/token"
    assert spec.resolve("http://sandbox", sandboxed=True).token_url == "http://sandbox/p/api.demo.example/token"


@pytest.mark.parametrize("change, message", [
    (('account_kind = "profile"', 'account_kind = "planet"'), "account_kind"),
    (('token_url = "{base}/token"', 'token_url = "http://evil.example/token"'), "token_url"),
    (('required_scopes = ["write"]', 'required_scopes = ["admin"]'), "required_scopes"),
    (('scopes = ["read", "write"]', 'scopes = "read"'), "scopes"),
    (('display_name = "Demo"', 'display_name = "Demo"\nclient_secret = "oops"'), "unknown fields"),
    (('id = "id"', 'ident = "id"'), "userinfo_fields"),
    (('display_name = "Demo"\n', ''), "missing display_name"),
    (("[demo]\n", '["Bad Name"]\n'), "name must be"),
])
def test_invalid_entries_fail(change, message):
    broken = VALID.replace(*change)
    with pytest.raises(CatalogError, match=message):
        parse_catalog(broken)


def test_broken_toml_fails():
    with pytest.raises(CatalogError, match="not valid TOML"):
        parse_catalog("[demo")
