"""What a tool showed, checked: displays (images and text) and approval previews (diffs).

Only PNG and JPEG images are shown as images, after checking that the payload is base64
of such an image; everything else a tool displays (HTML, SVG, JSON, …) shows its
``text/plain``. Nothing a tool displays is ever used as markup. Previews are split into
lines tagged with their diff kind; the views colour lines by kind and never parse them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._images import BASE64, checked_image_data

DisplayItem = dict[str, str]
"""One tool display as shown: ``{"kind": "image", "mime", "data", "alt"}`` (validated
base64 PNG/JPEG) or ``{"kind": "text", "text"}``; in a saved transcript an image is
``{"kind": "image_ref", "mime", "alt", "text"}``, its ``text`` saying where it is."""

DiffKind = Literal["add", "del", "hunk", "meta", "ctx"]
"""How a preview line reads: added, deleted, a hunk header, a file header, or context."""

MAX_DISPLAYS = 8
"""Tool displays shown per card; more are summed up in a note."""
MAX_IMAGE_CHARS = 4_000_000
"""Largest image shown (base64 characters, about 3 MB of image)."""
MAX_CARD_IMAGE_CHARS = 8_000_000
"""All images of one card together (base64 characters)."""
MAX_DISPLAY_TEXT = 20_000
"""Longest text/plain of one display."""
MAX_PREVIEW_CHARS = 100_000
"""Longest approval preview (a diff) shown."""

IMAGE_MIMES = ("image/png", "image/jpeg")
_PNG_VOLATILE = (b"tEXt", b"zTXt", b"iTXt", b"tIME")
"""PNG chunks that hold no pixels but a tool's name and version or a date (matplotlib
writes ``Software: Matplotlib version3.x.y``): dropped so that a figure is the same bytes
on every machine, and a replayed notebook's transcript compares equal under nbval."""


# -- approval previews ------------------------------------------------------------------------


def is_diff(text: str) -> bool:
    """Whether a preview reads as a unified diff (a hunk, or a pair of file headers)."""
    lines = text.splitlines()
    return any(line.startswith("@@ ") for line in lines) or (
        len(lines) > 1 and lines[0].startswith("--- ") and lines[1].startswith("+++ ")
    )


def preview_lines(text: str) -> list[tuple[DiffKind, str]]:
    """An approval preview as ``(kind, line)`` pairs (see :data:`DiffKind`); a preview
    that is no diff is all ``ctx``. Long previews are cut with a note."""
    if len(text) > MAX_PREVIEW_CHARS:
        cut = len(text) - MAX_PREVIEW_CHARS
        text = text[:MAX_PREVIEW_CHARS] + f"\n[… {cut:,} characters of the preview not shown]"
    lines = text.splitlines()
    if not is_diff(text):
        return [("ctx", line) for line in lines]
    out: list[tuple[DiffKind, str]] = []
    header = True  # before the first hunk of a file
    kind: DiffKind
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("--- ") and following.startswith("+++ "):
            kind, header = "meta", True
        elif header and line.startswith(("+++ ", "diff ", "index ", "new file", "deleted file")):
            kind = "meta"
        elif line.startswith("@@"):
            kind, header = "hunk", False
        elif line.startswith("+") and not header:
            kind = "add"
        elif line.startswith("-") and not header:
            kind = "del"
        else:
            kind = "meta" if header else "ctx"
        out.append((kind, line))
    return out


# -- images ------------------------------------------------------------------------------------


def _strip_png_metadata(raw: bytes) -> bytes:
    """``raw`` without its text and time chunks; unchanged if it has none or is not a
    well-formed chunk sequence."""
    kept = [raw[:8]]
    at, dropped = 8, False
    while at + 12 <= len(raw):
        end = at + 12 + int.from_bytes(raw[at : at + 4], "big")
        if end > len(raw):
            return raw
        if raw[at + 4 : at + 8] in _PNG_VOLATILE:
            dropped = True
        else:
            kept.append(raw[at:end])
        at = end
    return b"".join(kept) if dropped and at == len(raw) else raw


def _image_data(mime: str, value: Any) -> str | None:
    """``value`` as clean base64 if it is a PNG/JPEG in base64 (or raw bytes), else None.
    PNG text and time chunks are dropped (see ``_PNG_VOLATILE``)."""
    data = checked_image_data(mime, value)
    if data is None or mime != "image/png":
        return data
    raw = base64.b64decode(data)
    clean = _strip_png_metadata(raw)
    return data if clean is raw else base64.b64encode(clean).decode("ascii")


def is_image(item: DisplayItem) -> bool:
    """An image item (checked again where it is shown: a card's items may have been set
    by hand)."""
    return (
        item.get("kind") == "image"
        and item.get("mime") in IMAGE_MIMES
        and BASE64.fullmatch(item.get("data", "")) is not None
    )


# -- displays ----------------------------------------------------------------------------------


def _cut_text(text: str) -> str:
    if len(text) <= MAX_DISPLAY_TEXT:
        return text
    return text[:MAX_DISPLAY_TEXT] + f"\n[… {len(text) - MAX_DISPLAY_TEXT:,} characters not shown]"


def display_items(bundles: Sequence[object]) -> tuple[list[DisplayItem], str | None]:
    """What to show of a tool's MIME bundles, and a note on what was left out."""
    items: list[DisplayItem] = []
    notes: list[str] = []
    image_budget = MAX_CARD_IMAGE_CHARS
    for bundle in list(bundles)[:MAX_DISPLAYS]:
        if not isinstance(bundle, Mapping):
            continue
        plain = bundle.get("text/plain")
        alt = plain if isinstance(plain, str) else ""
        shown = False
        for mime in IMAGE_MIMES:
            if mime not in bundle:
                continue
            data = _image_data(mime, bundle[mime])
            if data is None:
                notes.append(f"an {mime} output that is not a valid {mime} was not shown")
            elif len(data) > min(MAX_IMAGE_CHARS, image_budget):
                notes.append(f"an image of {len(data) * 3 // 4 / 1e6:.1f} MB is too large to show")
            else:
                image_budget -= len(data)
                items.append({"kind": "image", "mime": mime, "data": data, "alt": alt[:200]})
                shown = True
            break
        if shown:
            continue
        if isinstance(plain, str):
            items.append({"kind": "text", "text": _cut_text(plain)})
        else:
            kinds = ", ".join(sorted(str(k) for k in bundle)) or "empty"
            items.append({"kind": "text", "text": f"[output not shown: {kinds}]"})
    if len(bundles) > MAX_DISPLAYS:
        notes.append(f"{len(bundles) - MAX_DISPLAYS} more outputs not shown")
    return items, "; ".join(notes) or None
