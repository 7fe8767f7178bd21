"""The platform catalog: every entry valid; invalid entries fail loudly."""

from __future__ import annotations

import pytest

from portal.providers import CatalogError, load_catalog, parse_catalog

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


def test_shipped_catalog_is_valid():
    catalog = load_catalog()
    assert "sandbox" in catalog
    for spec in catalog.values():
        assert spec.userinfo_fields and spec.scopes


def test_valid_entry_parses():
    spec = parse_catalog(VALID)["demo"]
    assert spec.resolve("http://sandbox").token_url == "https://api.demo.example/token"


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
