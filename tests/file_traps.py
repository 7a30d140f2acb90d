"""Files that trip readers up: damaged images of every kind, a decompression bomb, a tiny .xlsx writer."""

from __future__ import annotations

import os
from pathlib import Path


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> None:
    """A tiny PNG whose header declares a huge image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def damage(base: Path, kind: str) -> Path:
    """Damage img01 of a ``write_paired`` dataset in one way; returns the damaged path."""
    images = base / "lesions" / "lesions" / "images"
    target = images / "img01.jpg"
    if kind == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) - 40])
    elif kind == "corrupt":
        target.write_bytes(b"this is not a JPEG file" * 4)
    elif kind == "too_large":
        target.unlink()
        target = images / "img01.png"
        bomb_png(target)
    elif kind == "symlink_loop":
        target = images / "again"
        os.symlink("..", target)
    elif kind == "empty_file":
        target.write_bytes(b"")
    return target


def write_xlsx(path: Path, rows: list[list[str]]) -> Path:
    """A minimal one-sheet .xlsx: the first cell of each row a shared string, the rest inline strings."""
    import zipfile
    from xml.sax.saxutils import escape

    shared: list[str] = []
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, text in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if not text:
                continue
            if c == 0:
                shared.append(text)
                cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
            else:
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{escape(text)}</t></is></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = f'<?xml version="1.0"?><worksheet xmlns="{ns}"><sheetData>{"".join(xml_rows)}</sheetData></worksheet>'
    strings = "".join(f"<si><t>{escape(s)}</t></si>" for s in shared)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xl/worksheets/sheet1.xml", sheet)
        zf.writestr("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst xmlns="{ns}">{strings}</sst>')
    return path
