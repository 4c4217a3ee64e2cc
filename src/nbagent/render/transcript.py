"""The transcript of a run: built from its typed events, walked into parts, emitted.

A :class:`Transcript` is fed the run's events (the same ones the live view gets) with
``add`` and renders to a MIME bundle that reads on GitHub, nbviewer and in nbconvert
without any widget state. :meth:`Transcript.parts` is the one walk over it; the HTML,
Markdown and plain emitters and the live view format what it yields.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .._budget import CHARS_PER_TOKEN
from ..events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetDecided,
    BudgetReached,
    ErrorOccurred,
    Event,
    ModelResponded,
    Retrying,
    RunFinished,
    RunStarted,
    RunStatus,
    StateChanged,
    TextDelta,
    ToolCallProposed,
    ToolCallsRefused,
    ToolFinished,
    ToolStarted,
    Usage,
)
from .as_html import header_html, transcript_html
from .as_markdown import transcript_markdown
from .as_plain import transcript_plain
from .budget import BudgetCard
from .card import ToolCard
from .displays import DisplayItem, display_items, is_image
from .parts import CardParts, CardSection, Displays, Notice, TextPart, TranscriptParts
from .safe_markdown import markdown_html

MimeBundle = dict[str, Any]
ImagesShown = Literal["below", "inline"]
"""Where a static transcript shows the images tools displayed: as outputs of their own
after it (referred to in the transcript), or inside their cards."""

LIVE_PLACEHOLDER = (
    "a live run: its transcript replaces this when it ends. Saved before the end (the page "
    "was reloaded or closed)? Run the cell again; %agent history shows the conversation."
)


@dataclass
class TextBlock:
    """Answer text of one model response, in streamed pieces (joined on demand)."""

    parts: list[str] = field(default_factory=list)
    closed: bool = False
    _html: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    """The last text rendered and its HTML."""
    _next_render: float = field(default=0.0, repr=False, compare=False)
    """When a live view may render again (see :meth:`rendered`)."""

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    @property
    def html(self) -> str:
        """The text as safe HTML (see :func:`markdown_html`)."""
        return self.rendered()[0]

    def rendered(self, *, fresh: bool = True) -> tuple[str, str]:
        """The safe HTML of the text, and the text streamed since that the HTML lacks.

        A live view asks every second while text streams. Markdown is rendered again only
        when the text grew, and with ``fresh`` False only when that spends at most a tenth
        of the kernel's time (a long answer costs tens of ms per rendering): until then
        the page shows the newer text as plain text.
        """
        text = self.text
        cached = self._html
        if cached is not None and text.startswith(cached[0]):
            now = time.monotonic()
            if cached[0] == text or (not fresh and not self.closed and now < self._next_render):
                return cached[1], text[len(cached[0]) :]
        started = time.monotonic()
        self._html = (text, markdown_html(text))
        done = time.monotonic()
        self._next_render = done + 9 * (done - started)
        return self._html[1], ""

    def part(self) -> TextPart:
        return TextPart(self.text, self.html)

    def to_json(self, *, fresh: bool = True) -> dict[str, Any]:
        """The block as the live view gets it: the Markdown, its safe HTML, and the text
        the HTML does not hold yet (see :meth:`rendered`)."""
        html, tail = self.rendered(fresh=fresh)
        return {"kind": "text", "text": self.text, "html": html, "tail": tail}


Block = TextBlock | ToolCard | BudgetCard


def format_cost(cost: float, known: bool, *, estimated: bool = False) -> str:
    """``$0.0123``; ``<$0.0001`` for a cost that four decimals would round to zero (never
    a false ``$0.0000``); ``~`` before an estimate, ``≥`` before a lower bound."""
    if not known and cost == 0:
        return "cost unknown"
    text = f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
    if 0 < cost < 0.00005:  # would show as $0.0000
        text = "<$0.0001"
    if not known:
        return f"≥ {text}"
    return f"~{text}" if estimated else text


@dataclass(frozen=True)
class ToolInfo:
    """What a card says of its tool: the description (on hover) and whether it is
    read-only (the badge)."""

    description: str
    read_only: bool


class Transcript:
    """Everything one run showed, built from its events; renders as a MIME bundle.

    ``add`` returns what changed so a live view can forward it cheaply: ``"text"`` for
    a streamed delta, ``"blocks"`` when a card or block changed, ``"status"`` for state
    and usage, ``None`` for events it ignores.
    """

    def __init__(
        self, *, prompt: str = "", model: str = "", session: str = "", context_tokens: int = 0
    ) -> None:
        self.prompt = prompt
        self.model = model
        self.session = session
        self.context_tokens = context_tokens
        """About how many tokens the conversation sends with the run (0: not known)."""
        self.run_id: str | None = None
        self.blocks: list[Block] = []
        self.cards: dict[str, ToolCard] = {}
        self.notices: list[Notice] = []
        self.state = "queued"
        self.status: RunStatus | None = None
        self.error: str | None = None
        self.turns = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.cost_known = True
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.can_trust = False
        """A person can trust the notebook of a replayed call from its card (the kernel
        knows which notebook it runs)."""
        self.responses = 0
        """Model responses so far."""
        self.replayed = 0
        """Of those, how many were served from a recording."""
        self.tools: dict[str, ToolInfo] = {}
        """What the view knows of the run's tools, by name (their cards show it)."""
        self.estimated = False
        """Some request's usage was estimated (the provider reported none): "~"."""
        self.streamed_chars = 0
        """Characters streamed since the last reported usage (estimated while live)."""
        self.price: Callable[[int, int], float | None] | None = None
        """The model's price of (prompt, completion) tokens, for the live estimate of a
        response that streams; None (or a None price): the estimate leaves cost as is."""
        self.waiting: str | None = None
        """What the run waits for now, in the live status line ("loading the model
        library…"); None when it waits for nothing in particular."""

    # -- building --------------------------------------------------------------------------

    def open_text(self) -> TextBlock:
        """The text block streamed text goes to (a new one after a card or a response)."""
        last = self.blocks[-1] if self.blocks else None
        if isinstance(last, TextBlock) and not last.closed:
            return last
        block = TextBlock()
        self.blocks.append(block)
        return block

    def add(self, event: Event) -> str | None:
        if isinstance(event, TextDelta):
            self.open_text().parts.append(event.text)
            self.streamed_chars += len(event.text)
            return "text"
        if isinstance(event, ModelResponded):
            last = self.blocks[-1] if self.blocks else None
            if isinstance(last, TextBlock):
                last.closed = True
            self.turns = event.turn
            self.responses += 1
            if event.provenance is not None and event.provenance.source == "replayed":
                self.replayed += 1
                return "status"
            return None
        if isinstance(event, ToolCallProposed):
            call = event.call
            card = ToolCard(
                id=call.id,
                name=call.name,
                arguments=dict(call.arguments),
                arguments_json=call.arguments_json,
                problem=call.error,
            )
            info = self.tools.get(call.name)
            if info is not None:
                card.description = info.description
                card.badge = "read-only" if info.read_only else "side effects"
            self.cards[call.id] = card
            self.blocks.append(card)
            return "blocks"
        if isinstance(event, ApprovalRequested):
            card = self._card(event.tool_call_id)
            card.status = "pending"
            card.read_only = event.read_only
            card.preview = event.preview
            card.note = event.note
            card.offers_trust = self.can_trust and event.note is not None
            return "blocks"
        if isinstance(event, ApprovalDecided):
            card = self._card(event.tool_call_id)
            card.status = "approved" if event.approved else "denied"
            # a person's decision reads "by you", replayed from a recording too (the
            # recording person's); a person rejects, a policy (a headless run's) denies
            who = "you" if event.decided_by == "user" else "policy"
            verb = "approved" if event.approved else "rejected" if who == "you" else "denied"
            always = {
                "call": "",
                "tool": " (always, for this session)",
                "rule": " (always for matching calls, this session)",
            }[event.scope]
            card.decision = f"{verb} by {who}{always}" + (
                f": {event.reason}" if event.reason else ""
            )
            return "blocks"
        if isinstance(event, BudgetReached):
            self.blocks.append(BudgetCard.of(event))
            return "blocks"
        if isinstance(event, BudgetDecided):
            for block in self.blocks:
                if isinstance(block, BudgetCard) and block.id == event.decision_id:
                    block.decide(event, "you")  # only a person decides a pause
            return "blocks"
        if isinstance(event, ToolStarted):
            self._card(event.tool_call_id).status = "running"
            return "blocks"
        if isinstance(event, ToolFinished):
            card = self._card(event.tool_call_id)
            card.status = event.status
            card.result = event.result
            card.duration_s = event.duration_s
            card.truncated = event.truncated
            card.display, card.display_note = display_items(event.display)
            return "blocks"
        return self._add_run_event(event)

    def _add_run_event(self, event: Event) -> str | None:
        """Usage, state and the run's start, retries, errors and end."""
        if isinstance(event, Usage):
            self.prompt_tokens += event.prompt_tokens
            self.completion_tokens += event.completion_tokens
            self.cost_usd += event.cost_usd
            self.cost_known = self.cost_known and event.cost_known
            self.estimated = self.estimated or event.estimated
            self.streamed_chars = 0
            return "status"
        if isinstance(event, StateChanged):
            self.state = event.state
            return "status"
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            self.started_at = event.at
            self.model = event.model
            self.state = "running"
            return "status"
        if isinstance(event, Retrying):
            self.notices.append(
                Notice(
                    f"The provider failed ({event.error}); retrying in {event.delay_s:.1f} s.",
                    "info",
                )
            )
            return "status"
        if isinstance(event, ToolCallsRefused):
            self.notices.append(
                Notice(
                    f"The model proposed {len(event.tool_call_ids):,} tool calls in one "
                    f"response, more than {event.limit} (max_calls_per_response): none of them "
                    "ran, and the model was told so."
                )
            )
            return "status"
        if isinstance(event, ErrorOccurred):
            self.notices.append(Notice(event.message))
            return "status"
        if isinstance(event, RunFinished):
            self.status = event.status
            self.error = event.error
            self.turns = event.turns
            self.finished_at = event.at
            self.state = "finished"
            for block in self.blocks:
                if isinstance(block, TextBlock):
                    block.closed = True
            return "status"
        return None

    def _card(self, tool_call_id: str) -> ToolCard:
        card = self.cards.get(tool_call_id)
        if card is None:  # a decision for a call we did not see proposed
            card = ToolCard(id=tool_call_id, name="?", arguments={}, arguments_json="")
            self.cards[tool_call_id] = card
            self.blocks.append(card)
        return card

    # -- derived ---------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The answer text of the last model response that had any."""
        for block in reversed(self.blocks):
            if isinstance(block, TextBlock) and block.text:
                return block.text
        return ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def elapsed(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        return max(0.0, end - self.started_at)

    @property
    def state_label(self) -> str:
        """The run's state as people read it: its outcome once finished."""
        return self.status or self.state.replace("_", " ")

    def status_line(self) -> str:
        """``completed · 2 turns · 1,234 tokens · $0.0012`` (plain text).

        The saved output holds no wall-clock time and does not say whether the responses
        were replayed, so a notebook run live and saved reproduces it exactly when replayed
        (nbval); the live view shows the elapsed time and :meth:`replay_note`, and the
        output metadata each response's source."""
        parts = [self.state_label]
        if self.turns:
            parts.append(f"{self.turns} turn{'s' if self.turns != 1 else ''}")
        tokens, cost = self.usage_texts(live=False)
        parts.append(tokens)
        if self.context_tokens > 0:
            parts.append(self.context_note())
        parts.append(cost)
        return " · ".join(parts)

    def usage_texts(self, *, live: bool) -> tuple[str, str]:
        """``1,234 tokens`` and ``$0.0012``, marked "~" when estimated. ``live``: a
        response that streams counts too, estimated, until the provider reports it."""
        tokens, cost, known = self.total_tokens, self.cost_usd, self.cost_known
        estimated = self.estimated
        if live and self.finished_at is None and self.streamed_chars:
            streamed = -(-self.streamed_chars // CHARS_PER_TOKEN)
            price = self.price(0, streamed) if self.price is not None else None
            tokens, cost, estimated = tokens + streamed, cost + (price or 0.0), True
        mark = "~" if estimated else ""
        return f"{mark}{tokens:,} tokens", format_cost(cost, known, estimated=estimated)

    def replay_note(self) -> str:
        """``replayed`` when every response came from a recording, ``1 of 2 responses
        replayed`` when some did, empty when none did."""
        if not self.replayed:
            return ""
        if self.replayed == self.responses:
            return "replayed"
        return f"{self.replayed} of {self.responses} responses replayed"

    def context_note(self) -> str:
        """``context ~1,234 tokens``, or empty when the size is not known."""
        return f"context ~{self.context_tokens:,} tokens" if self.context_tokens > 0 else ""

    def all_notices(self) -> list[Notice]:
        """Notices, and the run's error when no notice says it already (a run the user
        stopped is news, not an error)."""
        notices = list(self.notices)
        if self.error and all(n.text != self.error for n in notices):
            notices.append(Notice(self.error, "info" if self.status == "cancelled" else "error"))
        return notices

    def status_json(self) -> dict[str, Any]:
        """The status as the live view gets it; ``label`` and ``details`` are its status
        line around the elapsed time, which the page keeps ticking."""
        tokens, cost = self.usage_texts(live=True)
        details = [tokens, self.context_note(), cost, self.model, self.replay_note()]
        return {
            "state": self.state,
            "status": self.status,
            "error": self.error,
            "notices": [n.text for n in self.all_notices()],
            "notice_tones": [n.tone for n in self.all_notices()],
            "model": self.model,
            "session": self.session,
            "turns": self.turns,
            "replayed": self.replayed,
            "tokens": self.total_tokens,
            "context_tokens": max(0, self.context_tokens),
            "cost": cost,
            "elapsed_s": round(self.elapsed(), 3),
            "finished": self.finished_at is not None,
            "label": self.waiting
            if self.waiting and self.finished_at is None
            else self.state_label,
            "header_html": header_html(self.model, self.session, self.context_note()),
            "details": " · ".join(part for part in details if part),
        }

    # -- rendering -------------------------------------------------------------------------

    def parts(self, *, images: ImagesShown = "below") -> TranscriptParts:
        """The one walk over the transcript: every format renders what it yields.

        ``images="below"`` (the saved transcript): each image a tool displayed is a
        reference, ``[image: shown below]``, and the image itself one of
        :meth:`image_outputs`, shown after the transcript as an ordinary output (renderers
        that sanitise HTML, GitHub's among them, drop ``data:`` images inside it).
        ``"inline"``: the images stay inside their cards.
        """
        count = len(self.images()) if images == "below" else 0
        numbers = iter(range(1, count + 1)) if count else None
        counted = count > 1
        blocks: list[TextPart | CardParts] = []
        for block in self.blocks:
            if isinstance(block, BudgetCard):
                continue
            if isinstance(block, TextBlock):
                blocks.append(block.part())
            elif numbers is None:
                blocks.append(block.parts())
            else:
                blocks.append(_images_below(block.parts(), numbers, counted))
        return TranscriptParts(
            model=self.model,
            session=self.session,
            context_note=self.context_note(),
            blocks=tuple(blocks),
            # the static formats say how each pause at the budget was decided, in a line
            notices=tuple(
                [
                    Notice(f"{b.parts().summary}.", "info")
                    for b in self.blocks
                    if isinstance(b, BudgetCard)
                ]
                + self.all_notices()
            ),
            status_line=self.status_line(),
        )

    def images(self) -> list[DisplayItem]:
        """The images the tools displayed (checked PNG and JPEG), in order."""
        return [
            item
            for block in self.blocks
            if isinstance(block, ToolCard)
            for item in block.display
            if is_image(item)
        ]

    def image_outputs(self) -> list[MimeBundle]:
        """The images as outputs of their own, to show after the transcript: ordinary
        ``image/png`` (or jpeg) outputs with their text, which every renderer shows."""
        return [
            {item["mime"]: item["data"], "text/plain": item.get("alt") or item["mime"]}
            for item in self.images()
        ]

    def to_html(self) -> str:
        return transcript_html(self.parts())

    def to_markdown(self) -> str:
        return transcript_markdown(self.parts())

    def to_plain(self) -> str:
        return transcript_plain(self.parts())

    def placeholder_bundle(self) -> MimeBundle:
        """What a live view's output holds besides the view until the run ends: viewers
        without the widget (GitHub, nbconvert, a page that saved the notebook after a
        reload, whose final update never came) read this, not a stale "queued" line."""
        return self.mimebundle(status_line=LIVE_PLACEHOLDER, images="inline")

    def mimebundle(
        self, *, status_line: str | None = None, images: ImagesShown = "below"
    ) -> MimeBundle:
        """The transcript as static output; with ``images="below"`` (the default) its
        images are :meth:`image_outputs` to show after it."""
        parts = self.parts(images=images)
        if status_line is not None:
            parts = dataclasses.replace(parts, status_line=status_line)
        return {
            "text/plain": transcript_plain(parts),
            "text/html": transcript_html(parts),
            "text/markdown": transcript_markdown(parts),
        }


def _images_below(card: CardParts, numbers: Iterator[int], counted: bool) -> CardParts:
    """``card`` with each image replaced by a reference to the image output below."""
    sections: list[CardSection] = []
    for section in card.sections:
        if isinstance(section, Displays) and any(is_image(item) for item in section.items):
            items = tuple(
                image_reference(next(numbers) if counted else None, item)
                if is_image(item)
                else item
                for item in section.items
            )
            section = dataclasses.replace(section, items=items)
        sections.append(section)
    return dataclasses.replace(card, sections=tuple(sections))


def image_reference(number: int | None, image: DisplayItem) -> DisplayItem:
    """What the saved transcript shows in place of an image: ``[image 2: shown below]``
    (kind ``image_ref``; the emitters show its ``text``)."""
    label = "image" if number is None else f"image {number}"
    return {
        "kind": "image_ref",
        "mime": image["mime"],
        "alt": image.get("alt", ""),
        "text": f"[{label}: shown below]",
    }
