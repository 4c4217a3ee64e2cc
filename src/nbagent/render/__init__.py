"""What a run shows, outside the live page: the static transcript, safe by construction.

``transcript`` builds the model of a run from its events; ``card`` holds a tool card and
the one walker that decides what a card shows (``parts``); ``as_html``, ``as_markdown``
and ``as_plain`` format the walked parts; ``safe_markdown`` renders model text without
raw HTML or unsafe links; ``displays`` checks what tools displayed and splits previews
into diff lines; ``tables`` holds the small table and history views.
"""

from __future__ import annotations

from .card import STATUS_LABELS, ToolCard, card_parts
from .displays import (
    MAX_CARD_IMAGE_CHARS,
    MAX_DISPLAY_TEXT,
    MAX_DISPLAYS,
    MAX_IMAGE_CHARS,
    MAX_PREVIEW_CHARS,
    DiffKind,
    DisplayItem,
    display_items,
    preview_lines,
)
from .parts import CardParts, TextPart, TranscriptParts
from .safe_markdown import markdown_escape, markdown_html, markdown_safe
from .tables import Table, render_history
from .transcript import Block, MimeBundle, TextBlock, ToolInfo, Transcript, format_cost

__all__ = [
    "MAX_CARD_IMAGE_CHARS",
    "MAX_DISPLAYS",
    "MAX_DISPLAY_TEXT",
    "MAX_IMAGE_CHARS",
    "MAX_PREVIEW_CHARS",
    "STATUS_LABELS",
    "Block",
    "CardParts",
    "DiffKind",
    "DisplayItem",
    "MimeBundle",
    "Table",
    "TextBlock",
    "TextPart",
    "ToolCard",
    "ToolInfo",
    "Transcript",
    "TranscriptParts",
    "card_parts",
    "display_items",
    "format_cost",
    "markdown_escape",
    "markdown_html",
    "markdown_safe",
    "preview_lines",
    "render_history",
]
