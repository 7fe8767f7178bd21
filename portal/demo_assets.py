"""The demo agency's logo, drawn as a small PNG so the demo ships no binary files."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def demo_logo_png(size: int = 96) -> bytes:
    """A sun over a horizon in the demo agency's colours."""
    orange, cream, navy = (228, 87, 46), (255, 244, 230), (30, 41, 80)
    rows = []
    center, radius = size / 2, size * 0.28
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            inside_circle = (x - center) ** 2 + (y - size * 0.55) ** 2 <= radius ** 2
            if y > size * 0.62:
                color = navy
            elif inside_circle:
                color = orange
            else:
                color = cream
            row.extend(color)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + _chunk(b"IEND", b""))


def widget_host_page(portal_base_url: str, link_url: str) -> str:
    """A stand-in for the agency's own site, to be served on another origin than the portal: the
    documented snippet with three modes and an event log (also written to the console)."""
    import html
    import json

    link = json.dumps(link_url).replace("<", "\\u003c")
    script = html.escape(f"{portal_base_url}/widget/v1/connect.js")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Brightside Social · our own site</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 760px; padding: 0 1rem; }}
button {{ margin: 0 .5rem .5rem 0; padding: .6rem 1rem; }} #frame iframe {{ margin-top: 1rem; }}
pre {{ background: #f3f4f6; padding: 1rem; white-space: pre-wrap; min-height: 3rem; }}</style>
<script src="{script}"></script>
</head><body>
<h1>Brightside Social: our own site</h1>
<p>This page lives on another origin than EasyConnect and embeds the connect flow with the widget.</p>
<p><button id="popup" type="button">Connect in a popup</button>
<button id="iframe" type="button">Connect in an iframe</button>
<button id="redirect" type="button">Connect by redirect</button></p>
<div id="frame"></div>
<h2>Events</h2><pre id="events"></pre>
<script>
(function () {{
  var link = {link};
  var log = document.getElementById("events");
  window.easyconnectEvents = [];
  function options(mode) {{
    return {{url: link, mode: mode, container: "#frame", onEvent: function (event) {{
      window.easyconnectEvents.push(event);
      log.textContent += JSON.stringify(event) + "\\n";
      console.log("easyconnect " + JSON.stringify(event));
    }}}};
  }}
  ["popup", "iframe", "redirect"].forEach(function (mode) {{
    document.getElementById(mode).addEventListener("click", function () {{
      window.easyconnectFlow = EasyConnect.open(options(mode));
    }});
  }});
  EasyConnect.resume(options("redirect"));  // back from a redirect: report how it ended
  var auto = new URLSearchParams(location.search).get("auto");  // opened without a click: popup blockers say no
  if (auto) {{
    history.replaceState(null, "", location.pathname);  // come back without opening it again
    window.easyconnectFlow = EasyConnect.open(options(auto));
  }}
}}());
</script>
</body></html>
"""
