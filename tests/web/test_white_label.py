"""White-label: headline, instructions, success text, support link, theme, "powered by" — validated,
shown on the client pages, and the admin preview renders the same page."""

from __future__ import annotations

import pytest

from tests.helpers import connect, csrf_from, login, setup_link


def _save(client, **fields):
    data = {"name": "Acme Social", "color": "#112233", "csrf_token": csrf_from(client, "/admin/branding"), **fields}
    return client.post("/admin/branding", data=data, follow_redirects=True).get_data(as_text=True)


def test_texts_theme_and_powered_by_reach_the_client_pages(client, db, runtime):
    member, _, _, path = setup_link(db, runtime.deps)
    login(client, member.email)
    page = _save(client, headline="Link your socials with Acme", instructions="Two minutes.\nNo passwords.",
                 success_text="Thanks! We'll take it from here.", support_url="mailto:help@acme.example",
                 theme="dark", show_powered_by="")
    assert "Branding saved." in page
    link_page = client.get(path).get_data(as_text=True)
    assert "Link your socials with Acme" in link_page and "Two minutes.\nNo passwords." in link_page
    assert "theme-dark" in link_page and "mailto:help@acme.example" in link_page
    assert "powered by EasyConnect" not in link_page
    done = client.get(connect(client, path).headers["Location"]).get_data(as_text=True)
    assert "Thanks! We&#39;ll take it from here." in done
    preview = client.get("/admin/branding/preview").get_data(as_text=True)
    assert "Link your socials with Acme" in preview and "theme-dark" in preview and "disabled" in preview


@pytest.mark.parametrize("field, value, message", [
    ("support_url", "javascript:alert(1)", "https:// address"),
    ("support_url", "http://plain.example", "https:// address"),
    ("headline", "x" * 200, "at most 120"),
    ("headline", "evil\u202etext", "not allowed"),
    ("instructions", "nul\x00", "not allowed"),
    ("theme", "neon", "light or dark"),
])
def test_hostile_branding_is_refused(client, db, field, value, message):
    from tests.helpers import make_member

    member = make_member(db)
    login(client, member.email)
    page = _save(client, **{field: value})
    assert message in page or "not allowed" in page
