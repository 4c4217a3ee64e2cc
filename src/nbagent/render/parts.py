"""The parts of a transcript and of a tool card: what to show, decided once.

:func:`~nbagent.render.card.card_parts` walks a card and yields these parts; the HTML,
Markdown and plain-text emitters and the live view only format them. A part holds text
as it should read (labels, sentences, escaped nowhere): each format escapes for itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .displays import DiffKind, DisplayItem


@dataclass(frozen=True)
class CardHeader:
    """The first line of a card: ``tool <name> · <label> · <decision>``."""

    name: str
    """The tool's name."""
    status: str
    """The card's state: proposed, pending, approved, running, ok, error, denied, cancelled."""
    label: str
    """The state as people read it (``waiting for approval``, ``done``, ``failed``)."""
    decision: str | None
    """Who decided and why (``approved by you``); None before a decision, and for a denied
    call, whose :class:`Note` says it."""

    @property
    def summary(self) -> str:
        """``done · approved by you``: the label and the decision (no duration, so saved
        outputs replay identically)."""
        return " · ".join([self.label, *([self.decision] if self.decision else [])])


@dataclass(frozen=True)
class Argument:
    """One argument of the call: code-like strings as code, everything else as JSON."""

    key: str
    shown_as: Literal["code", "json"]
    text: str


@dataclass(frozen=True)
class Arguments:
    """The call's arguments, in the order the model sent them."""

    items: tuple[Argument, ...]
    kind: Literal["arguments"] = "arguments"


@dataclass(frozen=True)
class RawArguments:
    """Arguments that did not parse as an object: the JSON text as sent."""

    text: str
    kind: Literal["arguments_json"] = "arguments_json"


@dataclass(frozen=True)
class Note:
    """A sentence about the call: why it could not run as sent, or why it was denied."""

    kind: Literal["problem", "denied"]
    text: str


@dataclass(frozen=True)
class Changes:
    """What the call would change (the tool's preview), line by line."""

    lines: tuple[tuple[DiffKind, str], ...]
    is_diff: bool
    """Whether the preview is a unified diff (the Markdown fence says ``diff``)."""
    open: bool
    """Shown unfolded: the call still waits for a decision."""
    kind: Literal["preview"] = "preview"


@dataclass(frozen=True)
class Result:
    """What the tool returned to the model."""

    text: str
    truncated: bool
    kind: Literal["result"] = "result"


@dataclass(frozen=True)
class Displays:
    """What the tool displayed (checked images and text), and what was left out."""

    items: tuple[DisplayItem, ...]
    note: str | None
    kind: Literal["display"] = "display"


CardSection = Arguments | RawArguments | Note | Changes | Result | Displays
"""One section of a card body; a card shows its sections in the order walked."""


@dataclass(frozen=True)
class CardParts:
    """Everything a card shows, in order, as the walker decided it."""

    id: str
    header: CardHeader
    sections: tuple[CardSection, ...]
    awaits_decision: bool
    """A person can still approve or reject the call (the live view shows buttons)."""
    duration_s: float
    """How long the tool ran (the live view shows it; saved outputs do not)."""

    def section(self, kind: str) -> CardSection | None:
        return next((s for s in self.sections if s.kind == kind), None)

    def to_json(self) -> dict[str, Any]:
        """The parts as the live view gets them: every section under its kind (empty or
        None when not shown) and ``sections``, the kinds to show in order."""
        arguments = self.section("arguments")
        raw = self.section("arguments_json")
        changes = self.section("preview")
        result = self.section("result")
        displays = self.section("display")
        problem, denied = self.section("problem"), self.section("denied")
        return {
            "kind": "tool",
            "id": self.id,
            "name": self.header.name,
            "status": self.header.status,
            "label": self.header.label,
            "decision": self.header.decision,
            "duration": f"{self.duration_s:.2f} s" if self.duration_s else None,
            "awaits_decision": self.awaits_decision,
            "arguments": [
                [a.key, a.shown_as, a.text]
                for a in (arguments.items if isinstance(arguments, Arguments) else ())
            ],
            "arguments_json": raw.text if isinstance(raw, RawArguments) else "",
            "problem": problem.text if isinstance(problem, Note) else None,
            "preview": [list(line) for line in changes.lines]
            if isinstance(changes, Changes)
            else None,
            "changes_open": isinstance(changes, Changes) and changes.open,
            "denied": denied.text if isinstance(denied, Note) else None,
            "result": result.text if isinstance(result, Result) else None,
            "truncated": isinstance(result, Result) and result.truncated,
            "display": [dict(item) for item in displays.items]
            if isinstance(displays, Displays)
            else [],
            "display_note": displays.note if isinstance(displays, Displays) else None,
            "sections": [s.kind for s in self.sections],
        }


@dataclass(frozen=True)
class TextPart:
    """Answer text of one model response: the Markdown as sent, and as safe HTML."""

    text: str
    html: str


@dataclass(frozen=True)
class TranscriptParts:
    """A whole transcript, walked: header, blocks, notices and the status line."""

    model: str
    session: str
    context_note: str
    """``context ~1,234 tokens``, or empty when the size is not known."""
    blocks: tuple[TextPart | CardParts, ...]
    notices: tuple[str, ...]
    status_line: str
