"""White-label overrides: hostile values and files refused, link over workspace over agency, the
admin preview is the client page, uploaded images served safely."""

from __future__ import annotations

import io
import re
import struct
import zlib

import pytest

from portal.demo_assets import demo_logo_png
from portal.errors import ValidationFailed
from portal.models import Agency, BrandAsset, ConnectLink, Workspace
from portal.services import branding
from portal.services.audit import SYSTEM
from tests.helpers import connect, csrf_from, fresh, login, make_link, make_member, make_workspace, setup_link

PNG = demo_logo_png(16)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x11" * 64 + b"\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00" \
      b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
WEBP_BODY = b"WEBPVP8 " + struct.pack("<I", 10) + b"\x00" * 10
WEBP = b"RIFF" + struct.pack("<I", len(WEBP_BODY)) + WEBP_BODY


def _png_with_text(text: bytes) -> bytes:
    chunk = b"tEXt" + b"Comment\x00" + text
    body = struct.pack(">I", len(text) + 8) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return PNG[:33] + body + PNG[33:]  # after IHDR, still a whole PNG ending in IEND


# Files ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, mime", [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                        (WEBP, "image/webp")])
def test_real_images_are_accepted_with_their_sniffed_type(data, mime):
    assert branding.sniff_image(data) == mime


@pytest.mark.parametrize("data, message", [
    (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(1)</script></svg>", "SVG"),
    (b"<?xml version='1.0'?><svg><script>alert(1)</script></svg>", "SVG"),
    (b"GIF89a<svg onload=alert(1)>;", "SVG"),
    (PNG + b"<html><script>alert(1)</script></html>", "must be a PNG"),  # trailing polyglot payload
    (_png_with_text(b"<script>alert(document.domain)</script>"), "markup or script"),
    (GIF[:-1] + b"PK\x03\x04" + b"\x00" * 30, "must be a PNG"),  # GIFAR: a zip glued to a GIF
    (b"%PDF-1.7\n" + b"\x00" * 100, "must be a PNG"),  # wrong magic
    (b"MZ" + b"\x00" * 100, "must be a PNG"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "must be a PNG"),  # right magic, not a whole image
    (b"RIFF" + struct.pack("<I", 999) + b"WEBP" + b"\x00" * 20, "must be a PNG"),  # lying RIFF size
    (b"", "Choose an image"),
])
def test_hostile_files_are_refused(data, message):
    with pytest.raises(ValidationFailed) as caught:
        branding.sniff_image(data)
    assert message in caught.value.public_message


def test_oversize_images_are_refused():
    big = PNG[:-12] + b"\x00" * (branding.MAX_ASSET_BYTES["logo"]) + PNG[-12:]
    with pytest.raises(ValidationFailed, match="at most 512 KB"):
        branding.sniff_image(big)
    with pytest.raises(ValidationFailed, match="at most 64 KB"):
        branding.sniff_image(PNG[:-12] + b"\x00" * 70_000 + PNG[-12:], "favicon")


def test_upload_through_the_admin_refuses_svg_and_serves_images_with_nosniff(client, db):
    member = make_member(db)
    login(client, member.email)
    token = csrf_from(client, "/admin/branding")
    svg = client.post("/admin/branding/assets", data={"csrf_token": token, "kind": "logo", "back": "/admin/branding",
                                                      "image": (io.BytesIO(b"<svg onload=alert(1)/>"), "x.png")},
                      follow_redirects=True)
    assert "SVG can carry scripts" in svg.get_data(as_text=True)
    big = client.post("/admin/branding/assets", data={"csrf_token": token, "kind": "logo",
                                                      "image": (io.BytesIO(b"\x89PNG" + b"\0" * 600_000), "x.png")},
                      follow_redirects=True)
    assert "at most 512 KB" in big.get_data(as_text=True)
    assert fresh(db).query(BrandAsset).count() == 0  # nothing half-written
    client.post("/admin/branding/assets", data={"csrf_token": token, "kind": "logo",
                                                "image": (io.BytesIO(PNG), "logo.png")})
    asset = fresh(db).query(BrandAsset).one()
    served = client.get(f"/brand/asset/{asset.id}")
    assert served.status_code == 200 and served.data == PNG
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"]
    assert client.get("/brand/asset/../../etc/passwd").status_code == 404
    assert client.get("/brand/asset/" + "0" * 32).status_code == 404


def test_agency_favicon_is_used_by_client_pages(client, db, runtime):
    member, _, _, path = setup_link(db, runtime.deps)
    login(client, member.email)
    token = csrf_from(client, "/admin/branding")
    bad = client.post("/admin/branding/favicon", data={"csrf_token": token,
                                                       "favicon": (io.BytesIO(b"<svg/>"), "f.svg")},
                      follow_redirects=True)
    assert "must be a PNG" in bad.get_data(as_text=True)
    client.post("/admin/branding/favicon", data={"csrf_token": token, "favicon": (io.BytesIO(PNG), "f.png")})
    page = client.get(path).get_data(as_text=True)
    assert f'<link rel="icon" href="/brand/{member.agency_id}/favicon?v=1">' in page
    assert "favicon.svg" not in page
    icon = client.get(f"/brand/{member.agency_id}/favicon?v=1")
    assert icon.data == PNG and icon.headers["X-Content-Type-Options"] == "nosniff"


# Override values --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("name", "evil\u202egnp.exe", "not allowed"),
    ("name", "nul\x00byte", "not allowed"),
    ("name", "x" * 121, "at most 120"),
    ("color", "red", "#4f46e5"),
    ("color", "#12345", "#4f46e5"),
    ("color", "#1234567", "#4f46e5"),
    ("color", "#12345g", "#4f46e5"),
    ("color", "#123456;}body{display:none", "#4f46e5"),
    ("support_url", "javascript:alert(1)", "https://"),
    ("support_url", "http://plain.example", "https://"),
    ("support_url", "https://x.example/\"onmouseover=alert(1)", "https://"),
    ("headline", "x" * 121, "at most 120"),
    ("instructions", "bidi\u2066override", "not allowed"),
    ("theme", "neon", "light or dark"),
    ("show_powered_by", "maybe", "shown or hidden"),
    ("logo", "0" * 32, "Unknown logo"),
    ("logo", "../../x", "Unknown logo"),
    ("evil_key", "1", "Unknown branding fields"),
])
def test_hostile_override_values_are_refused(db, field, value, message):
    member = make_member(db)
    with pytest.raises(ValidationFailed) as caught:
        branding.clean_overrides(db, member.agency_id, {field: value})
    assert message in caught.value.public_message


def test_another_agencys_image_cannot_be_used(db):
    mine, theirs = make_member(db), make_member(db, "Other Agency")
    asset = branding.store_asset(db, theirs.agency_id, "logo", PNG, SYSTEM)
    db.commit()
    with pytest.raises(ValidationFailed, match="Unknown logo"):
        branding.clean_overrides(db, mine.agency_id, {"logo": asset.id})
    with pytest.raises(ValidationFailed, match="Unknown favicon"):  # right agency, wrong kind
        branding.clean_overrides(db, theirs.agency_id, {"favicon": asset.id})


def test_link_overrides_workspace_overrides_agency(db, runtime):
    member = make_member(db)
    workspace = make_workspace(db, member.agency_id)
    link, _ = make_link(db, runtime.deps, workspace)
    logo = branding.store_asset(db, member.agency_id, "logo", PNG, SYSTEM)
    branding.save_workspace_branding(db, member.agency_id, workspace.id,
                                     {"name": "Workspace Name", "color": "#00AA00", "headline": "WS headline",
                                      "theme": "dark", "logo": logo.id}, SYSTEM)
    branding.save_link_branding(db, member.agency_id, link.id, {"headline": "Link headline", "color": "",
                                                                "show_powered_by": "0"}, "de", SYSTEM)
    db.commit()
    agency = fresh(db).get(Agency, member.agency_id)
    brand = branding.for_link(agency, db.get(ConnectLink, link.id))
    assert brand.name == "Workspace Name" and brand.color == "#00aa00" and brand.theme == "dark"
    assert brand.headline == "Link headline" and brand.show_powered_by is False
    assert brand.logo_url == f"/brand/asset/{logo.id}"
    assert db.get(ConnectLink, link.id).language == "de"
    bare = branding.resolve(agency)
    assert bare.name == agency.name and bare.headline == "" and bare.show_powered_by is True
    # An empty value inherits; clearing the workspace's overrides brings the agency's back.
    branding.save_workspace_branding(db, member.agency_id, workspace.id, {"name": ""}, SYSTEM)
    db.commit()
    assert fresh(db).get(Workspace, workspace.id).branding is None
    assert branding.for_link(db.get(Agency, member.agency_id), db.get(ConnectLink, link.id)).name == agency.name


def test_agency_branding_cache_follows_changes(db):
    member = make_member(db)
    agency = db.get(Agency, member.agency_id)
    first = branding.agency_branding(agency)
    assert branding.agency_branding(agency) is first  # cached
    agency.name, agency.brand_color = "Renamed", "#abcdef"
    changed = branding.agency_branding(agency)
    assert changed.name == "Renamed" and changed.color == "#abcdef"


# Through the admin panel, onto the client pages -----------------------------------------------------------------

def _main(html: str) -> str:
    """The client card, without what legitimately differs: nonce, token, the preview banner and disabled buttons."""
    body = html[html.index('<main class="client-card">'):html.index("</main>")]
    body = re.sub(r'<p class="sandbox-banner">.*?</p>', "", body, flags=re.S)
    body = re.sub(r"/c/[^/\"]+", "/c/TOKEN", body).replace(" disabled", "")
    body = body.replace('href="#"', 'href="/c/TOKEN/manage"')
    return re.sub(r"\s+", " ", body)


def test_admin_edits_link_overrides_and_the_preview_is_the_client_page(client, db, runtime):
    member, workspace, link, path = setup_link(db, runtime.deps)
    connect(client, path)  # something connected, so both pages list it
    login(client, member.email)
    token = csrf_from(client, f"/admin/workspaces/{workspace.id}/branding")
    saved = client.post(f"/admin/workspaces/{workspace.id}/branding",
                        data={"csrf_token": token, "name": "Client Co Studio", "color": "#223344", "theme": "dark"},
                        follow_redirects=True)
    assert "Workspace branding saved." in saved.get_data(as_text=True)
    client.post(f"/admin/links/{link.id}/branding", data={"csrf_token": token, "headline": "Hello from the link",
                                                          "instructions": "Line one <b>not bold</b>",
                                                          "support_url": "https://help.example/x", "language": "fr"})
    bad = client.post(f"/admin/links/{link.id}/branding", data={"csrf_token": token, "color": "javascript:1"},
                      follow_redirects=True)
    assert "#4f46e5" in bad.get_data(as_text=True)
    assert fresh(db).get(ConnectLink, link.id).branding["headline"] == "Hello from the link"  # kept
    preview = client.get(f"/admin/links/{link.id}/branding/preview").get_data(as_text=True)
    page = client.get(path).get_data(as_text=True)
    assert "Hello from the link" in page and "Client Co Studio" in page and "theme-dark" in page
    assert "Line one &lt;b&gt;not bold&lt;/b&gt;" in page and '<html lang="fr">' in page
    assert _main(preview) == _main(page)
    live = client.get(f"/admin/links/{link.id}/branding/preview?live=1&headline=Typed+not+saved").get_data(
        as_text=True)
    assert "Typed not saved" in live and "Hello from the link" not in live
    ws_preview = client.get(f"/admin/workspaces/{workspace.id}/branding/preview").get_data(as_text=True)
    assert "Client Co Studio" in ws_preview and "theme-dark" in ws_preview


def test_overrides_of_another_agency_are_404(client, db, runtime):
    _, workspace, link, _ = setup_link(db, runtime.deps)
    intruder = make_member(db, "Intruder")
    login(client, intruder.email)
    token = csrf_from(client, "/admin/branding")
    for url in (f"/admin/workspaces/{workspace.id}/branding", f"/admin/links/{link.id}/branding",
                f"/admin/links/{link.id}/branding/preview", f"/admin/workspaces/{workspace.id}/branding/preview"):
        assert client.get(url).status_code == 404, url
        assert client.post(url, data={"csrf_token": token, "name": "pwned"}).status_code in (404, 405), url
    assert fresh(db).get(Workspace, workspace.id).branding is None
