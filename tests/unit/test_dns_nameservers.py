"""PORTAL_DNS_NAMESERVERS: the resolvers asked for custom-domain proofs are IP literals with valid ports."""

from __future__ import annotations

import pytest

from portal.config import ConfigError, load_settings


def test_nameservers_are_ips_with_optional_ports(tmp_path):
    settings = load_settings({"PORTAL_DNS_NAMESERVERS": "1.1.1.1, 127.0.0.1:5353,2606:4700::1111,[::1]:5300"},
                             instance_path=tmp_path)
    assert settings.dns_nameservers == (("1.1.1.1", 53), ("127.0.0.1", 5353), ("2606:4700::1111", 53),
                                        ("::1", 5300))
    assert load_settings({}, instance_path=tmp_path).dns_nameservers == ()  # the system's resolver


@pytest.mark.parametrize("value", ["dns.google", "1.1.1.1:0", "1.1.1.1:65536", "1.1.1.1:dns", "[::1]5300",
                                   "1.1.1.1:53:53", "999.1.1.1"])
def test_anything_else_stops_the_start(tmp_path, value):
    with pytest.raises(ConfigError, match="PORTAL_DNS_NAMESERVERS"):
        load_settings({"PORTAL_DNS_NAMESERVERS": value}, instance_path=tmp_path)
