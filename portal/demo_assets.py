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
