"""The parts of a transcript and of a tool card: what to show, decided once.

:func:`~nbagent.render.card.card_parts` walks a card and yields these parts; the HTML,
Markdown and plain-text emitters and the live view only format them. A part holds text
as it should read (labels, sentences, escaped nowhere): each format escapes for itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .displays import DiffKind, DisplayItem
from .highlight import Run


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
    badge: str | None = None
    """``read-only`` or ``side effects``, when the tool is known."""
    origin: str | None = None
    """Where the tool comes from when not from the notebook (``MCP server fs``)."""
    description: str | None = None
    """The tool's description (shown on hover)."""

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
    """The value as shown: invisible characters replaced by ``⟨U+XXXX⟩`` markers."""
    runs: tuple[Run, ...] = ()
    """``text`` highlighted (code only): ``(token, text)`` runs that join to ``text``."""


@dataclass(frozen=True)
class Arguments:
    """The call's arguments, in the order the model sent them."""

    items: tuple[Argument, ...]
    kind: Literal["arguments"] = "arguments"

    def to_json(self) -> dict[str, Any]:
        return {"arguments": [[a.key, a.shown_as, a.text] for a in self.items]}


@dataclass(frozen=True)
class RawArguments:
    """Arguments that did not parse as an object: the JSON text as sent."""

    text: str
    kind: Literal["arguments_json"] = "arguments_json"

    def to_json(self) -> dict[str, Any]:
        return {"arguments_json": self.text}


@dataclass(frozen=True)
class Note:
    """A sentence about the call: why it could not run as sent, or why it was denied."""

    kind: Literal["problem", "denied", "warning"]
    """``problem``: why the call could not run as sent or why a person is asked;
    ``denied``: why it did not run; ``warning``: what a person must know before deciding
    (invisible characters in the arguments)."""
    text: str

    def to_json(self) -> dict[str, Any]:
        return {self.kind: self.text}


@dataclass(frozen=True)
class Changes:
    """What the call would change (the tool's preview), line by line."""

    lines: tuple[tuple[DiffKind, str], ...]
    is_diff: bool
    """Whether the preview is a unified diff (the Markdown fence says ``diff``)."""
    open: bool
    """Shown unfolded: the call still waits for a decision."""
    kind: Literal["preview"] = "preview"

    def to_json(self) -> dict[str, Any]:
        return {"preview": [list(line) for line in self.lines], "changes_open": self.open}


@dataclass(frozen=True)
class Result:
    """What the tool returned to the model."""

    text: str
    truncated: bool
    kind: Literal["result"] = "result"

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + 1

    @property
    def head(self) -> str:
        """The lines shown before "show all": the whole text when it is short."""
        if self.line_count <= RESULT_HEAD_LINES + 3:
            return self.text
        return "\n".join(self.text.split("\n", RESULT_HEAD_LINES)[:RESULT_HEAD_LINES])

    @property
    def rest(self) -> str:
        """The lines behind "show all" (empty when the result is short)."""
        head = self.head
        return self.text[len(head) + 1 :] if len(head) < len(self.text) else ""

    def to_json(self) -> dict[str, Any]:
        return {"result": self.text, "truncated": self.truncated}


RESULT_HEAD_LINES = 15
"""Lines of a long result shown before it folds."""


@dataclass(frozen=True)
class Displays:
    """What the tool displayed (checked images and text), and what was left out."""

    items: tuple[DisplayItem, ...]
    note: str | None
    kind: Literal["display"] = "display"

    def to_json(self) -> dict[str, Any]:
        return {"display": [dict(item) for item in self.items], "display_note": self.note}


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
    trust_label: str | None
    """The label of the button that trusts the call's notebook, on the card of an
    untrusted replayed call whose notebook the kernel knows; None: no such button."""
    duration_s: float
    """How long the tool ran (the live view shows it; saved outputs do not)."""

    def to_json(self) -> dict[str, Any]:
        """The parts as the live view gets them: every section's fields (empty or None
        when the section is not shown) and ``sections``, the kinds to show in order."""
        out: dict[str, Any] = {
            "kind": "tool",
            "id": self.id,
            "name": self.header.name,
            "status": self.header.status,
            "label": self.header.label,
            "decision": self.header.decision,
            "duration": f"{self.duration_s:.2f} s" if self.duration_s else None,
            "awaits_decision": self.awaits_decision,
            "trust_label": self.trust_label,
            **_no_sections(),
            "sections": [section.kind for section in self.sections],
        }
        for section in self.sections:
            out.update(section.to_json())
        return out


def _no_sections() -> dict[str, Any]:
    """A card's section fields when no section is shown (the page reads them all)."""
    return {
        "arguments": [],
        "arguments_json": "",
        "problem": None,
        "preview": None,
        "changes_open": False,
        "denied": None,
        "warning": None,
        "result": None,
        "truncated": False,
        "display": [],
        "display_note": None,
    }


@dataclass(frozen=True)
class BudgetParts:
    """A run's pause at its budget: the limit reached, then the decision or its buttons."""

    id: str
    """The pause's decision id (what the buttons answer)."""
    label: str
    """``budget reached ($0.50)``."""
    decision: str | None
    """``continued with another $0.50 by you`` / ``stopped by you``; None while it waits."""
    buttons: tuple[tuple[str, str], ...]
    """(label, action) of each button while the run waits; empty once decided."""

    @property
    def summary(self) -> str:
        return " · ".join([self.label, *([self.decision] if self.decision else [])])

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "budget",
            "id": self.id,
            "label": self.label,
            "decision": self.decision,
            "awaits_decision": bool(self.buttons),
            "buttons": [list(button) for button in self.buttons],
        }


@dataclass(frozen=True)
class TextPart:
    """Answer text of one model response: the Markdown as sent, and as safe HTML."""

    text: str
    html: str


@dataclass(frozen=True)
class Notice:
    """A line under the transcript: a failure (``error``), or news such as a retry or a
    run the user stopped (``info``, not styled as an error)."""

    text: str
    tone: Literal["error", "info"] = "error"


@dataclass(frozen=True)
class TranscriptParts:
    """A whole transcript, walked: header, blocks, notices and the status line."""

    model: str
    session: str
    context_note: str
    """``context ~1,234 tokens``, or empty when the size is not known."""
    blocks: tuple[TextPart | CardParts, ...]
    notices: tuple[Notice, ...]
    status_line: str
