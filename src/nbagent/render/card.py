"""A tool card: one proposed call and everything that happened to it, and the one
walker (:func:`card_parts`) that decides what the card shows.

Every view of a card (HTML, Markdown, plain text, the live page) formats the parts the
walker yields; none of them decides again what to show or how a state is called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .as_html import card_html
from .displays import DisplayItem, is_diff, preview_lines
from .highlight import highlight
from .invisible import WARNING, reveal
from .parts import (
    Argument,
    Arguments,
    CardHeader,
    CardParts,
    CardSection,
    Changes,
    Displays,
    Note,
    RawArguments,
    Result,
)

_CODE_KEYS = frozenset({"code", "source", "script", "command", "cmd", "sql", "query", "patch"})

TRUST_LABEL = "Trust this notebook"
"""The button that trusts the notebook of a replayed call waiting for a person."""

STATUS_LABELS = {
    "proposed": "proposed",
    "pending": "waiting for approval",
    "approved": "approved",
    "running": "running",
    "ok": "done",
    "error": "failed",
    "denied": "denied",
    "cancelled": "cancelled",
}
"""A card's state as people read it."""


@dataclass
class ToolCard:
    """One proposed tool call and everything that happened to it."""

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str
    status: str = "proposed"
    """proposed, pending (waits for a person), approved, running, ok, error, denied,
    cancelled."""
    decision: str | None = None
    """Who decided and why, as a sentence."""
    result: str | None = None
    duration_s: float = 0.0
    truncated: bool = False
    read_only: bool = False
    problem: str | None = None
    """Why the call could not run as sent (bad JSON, unknown tool)."""
    note: str | None = None
    """Why a person is asked (a call replayed from a recording made elsewhere); shown
    while the call waits, so the saved transcript does not depend on who replayed it."""
    offers_trust: bool = False
    """The call waits because its recording was made elsewhere, and the kernel knows the
    notebook it came from: a person may trust that notebook from the card."""
    preview: str | None = None
    """What the call would change (a unified diff for ``write_file``), as the tool said."""
    display: list[DisplayItem] = field(default_factory=list)
    """What the tool displayed, checked and cut down (see :func:`display_items`)."""
    display_note: str | None = None
    """What was left out of ``display`` and why."""
    description: str | None = None
    """The tool's description, when the view knows the tool."""
    badge: str | None = None
    """``read-only`` or ``side effects``, when the view knows the tool."""

    def parts(self) -> CardParts:
        """What this card shows (see :func:`card_parts`)."""
        return card_parts(self)

    def to_json(self) -> dict[str, Any]:
        """The card's parts as the live view gets them, with ``html``: the card as the
        saved transcript shows it (images by reference into the view's media)."""
        parts = card_parts(self)
        return {**parts.to_json(), "html": card_html(parts, live=True)}


def argument(key: str, value: Any) -> tuple[Argument, bool]:
    """How to show one argument (code-like strings as highlighted code, anything else as
    JSON), and whether it held invisible characters, now shown as markers."""
    if isinstance(value, str) and ("\n" in value or key.lower() in _CODE_KEYS):
        text, revealed = reveal(value)
        return Argument(key, "code", text, highlight(key, text)), revealed
    text, revealed = reveal(json.dumps(value, ensure_ascii=False))
    return Argument(key, "json", text), revealed


def origin(name: str) -> str | None:
    """Where a tool comes from, read from its name: ``mcp__fs__read`` → ``MCP server fs``."""
    if name.startswith("mcp__") and name.count("__") >= 2:
        return f"MCP server {name.split('__')[1]}"
    return None


def card_parts(card: ToolCard) -> CardParts:
    """Walk a card: its header, then the sections it shows, in order."""
    denied = card.status == "denied"
    header = CardHeader(
        name=reveal(card.name)[0],
        status=card.status,
        label=STATUS_LABELS.get(card.status, card.status),
        decision=None if denied else card.decision,
        badge=card.badge,
        origin=origin(card.name),
        description=card.description,
    )
    sections: list[CardSection] = []
    revealed = False
    if card.arguments:
        shown = [argument(k, v) for k, v in card.arguments.items()]
        revealed = any(r for _, r in shown)
        sections.append(Arguments(tuple(a for a, _ in shown)))
    elif card.arguments_json:
        text, revealed = reveal(card.arguments_json)
        sections.append(RawArguments(text))
    if revealed:
        sections.append(Note("warning", WARNING))
    if card.problem:
        sections.append(Note("problem", card.problem))
    elif card.note and card.status == "pending":
        sections.append(Note("problem", card.note))
    if card.preview is not None:
        lines = [(kind, reveal(line)) for kind, line in preview_lines(card.preview)]
        if any(hidden for _, (_, hidden) in lines) and not revealed:
            revealed = True
            sections.append(Note("warning", WARNING))
        sections.append(
            Changes(
                lines=tuple((kind, line) for kind, (line, _) in lines),
                is_diff=is_diff(card.preview),
                open=card.status in ("proposed", "pending"),
            )
        )
    if denied and card.decision:
        sections.append(Note("denied", card.decision))
    if card.result is not None and not denied:
        sections.append(Result(card.result, card.truncated))
    if card.display or card.display_note:
        sections.append(Displays(tuple(card.display), card.display_note))
    return CardParts(
        id=card.id,
        header=header,
        sections=tuple(sections),
        awaits_decision=card.status == "pending",
        trust_label=TRUST_LABEL if card.status == "pending" and card.offers_trust else None,
        duration_s=card.duration_s,
    )
