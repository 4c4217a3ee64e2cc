"""Turn tool results into clean, bounded text for the model."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

DEFAULT_MAX_RESULT_CHARS = 20_000
"""Results longer than this are cut in the middle, with a note saying so."""

_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC … BEL / ST (titles, hyperlinks)
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI sequences (colours, cursor moves)
    r"|\x1b[@-Z\\-_]"  # two-character escapes
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")


def sanitize(text: str) -> str:
    """Remove ANSI escapes and control characters (keeping newlines and tabs)."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` to about ``limit`` characters, keeping its head and tail.

    Returns the text and whether it was cut. The note in the middle tells the model how
    much is missing, so it can ask for a narrower result instead of guessing.
    """
    if len(text) <= limit:
        return text, False
    head = int(limit * 0.8)
    tail = limit - head
    cut = len(text) - head - tail
    note = (
        f"\n[… {cut:,} characters cut: the result had {len(text):,} characters and the "
        f"limit is {limit:,}. Ask for a smaller or filtered result if you need the rest. …]\n"
    )
    return text[:head] + note + (text[-tail:] if tail else ""), True


def to_text(value: Any) -> str:
    """Render a tool's return value as text: strings as they are, data as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(no result)"
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


MAX_DISPLAY_BYTES = 1_000_000
"""Largest single output format (one MIME type of a display bundle) kept with a tool
result: bigger ones would make the log, the notebook and the live view that large."""


def cap_display(bundle: dict[str, Any], limit: int = MAX_DISPLAY_BYTES) -> dict[str, Any]:
    """``bundle`` without the formats larger than ``limit``; a note in ``text/plain``
    names what was left out and its size. The same object when nothing is too large."""
    sizes = {mime: _size(data) for mime, data in bundle.items()}
    large = {mime: size for mime, size in sizes.items() if size > limit}
    if not large:
        return bundle
    kept = {mime: data for mime, data in bundle.items() if mime not in large}
    dropped = ", ".join(f"{mime}: {size:,} bytes" for mime, size in large.items())
    note = f"[display too large to keep ({dropped}; the limit is {limit:,} bytes)]"
    plain = kept.get("text/plain")
    kept["text/plain"] = f"{plain}\n{note}" if isinstance(plain, str) else note
    return kept


def _size(data: Any) -> int:
    if isinstance(data, str):
        return len(data) if data.isascii() else len(data.encode("utf-8", "replace"))
    if isinstance(data, bytes):
        return len(data)
    try:
        return len(json.dumps(data, default=str))
    except (TypeError, ValueError):
        return 0
