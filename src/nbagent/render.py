"""The static transcript of a run: HTML, Markdown and plain text, safe by construction.

A :class:`Transcript` is built from the run's typed events (the same ones the live view
gets) and renders to a MIME bundle that reads on GitHub, nbviewer and in nbconvert
without any widget state. Everything that comes from the model or a tool is escaped;
the model's Markdown is rendered with raw HTML turned into text, only ``http``,
``https`` and ``mailto`` links kept, and images shown as links (nothing loads).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import (
    ApprovalDecided,
    ApprovalRequested,
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
    ToolFinished,
    ToolStarted,
    Usage,
)

MimeBundle = dict[str, Any]
DisplayItem = dict[str, str]
"""One tool display as shown: ``{"kind": "image", "mime", "data", "alt"}`` (validated
base64 PNG/JPEG) or ``{"kind": "text", "text"}``."""

_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_CODE_KEYS = frozenset({"code", "source", "script", "command", "cmd", "sql", "query", "patch"})

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

_IMAGE_MIMES = ("image/png", "image/jpeg")
_IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_PNG_VOLATILE = (b"tEXt", b"zTXt", b"iTXt", b"tIME")
"""PNG chunks that hold no pixels but a tool's name and version or a date (matplotlib
writes ``Software: Matplotlib version3.x.y``): dropped so that a figure is the same bytes
on every machine, and a replayed notebook's transcript compares equal under nbval."""


# -- the model of a transcript --------------------------------------------------------------


@dataclass
class TextBlock:
    """Answer text of one model response, in streamed pieces (joined on demand)."""

    parts: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": "text", "text": self.text}


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
    preview: str | None = None
    """What the call would change (a unified diff for ``write_file``), as the tool said."""
    display: list[DisplayItem] = field(default_factory=list)
    """What the tool displayed, checked and cut down (see :func:`display_items`)."""
    display_note: str | None = None
    """What was left out of ``display`` and why."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "tool",
            "id": self.id,
            "name": self.name,
            "arguments": [[k, *_argument_view(k, v)] for k, v in self.arguments.items()],
            "arguments_json": self.arguments_json if not self.arguments else "",
            "status": self.status,
            "decision": self.decision,
            "result": self.result,
            "duration_s": round(self.duration_s, 3),
            "truncated": self.truncated,
            "read_only": self.read_only,
            "problem": self.problem,
            "preview": preview_lines(self.preview) if self.preview is not None else None,
            "display": [dict(item) for item in self.display],
            "display_note": self.display_note,
        }


Block = TextBlock | ToolCard


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
        self.notices: list[str] = []
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
        self.decider = "you"
        """Who answers approval requests (a headless run answers by policy)."""

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
            return "text"
        if isinstance(event, ModelResponded):
            last = self.blocks[-1] if self.blocks else None
            if isinstance(last, TextBlock):
                last.closed = True
            self.turns = event.turn
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
            self.cards[call.id] = card
            self.blocks.append(card)
            return "blocks"
        if isinstance(event, ApprovalRequested):
            card = self._card(event.tool_call_id)
            card.status = "pending"
            card.read_only = event.read_only
            card.preview = event.preview
            return "blocks"
        if isinstance(event, ApprovalDecided):
            card = self._card(event.tool_call_id)
            card.status = "approved" if event.approved else "denied"
            who = self.decider if event.decided_by == "user" else "policy"
            verb = "approved" if event.approved else "denied"
            always = " (always, for this session)" if event.scope != "call" else ""
            card.decision = f"{verb} by {who}{always}" + (
                f": {event.reason}" if event.reason else ""
            )
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
        if isinstance(event, Usage):
            self.prompt_tokens += event.prompt_tokens
            self.completion_tokens += event.completion_tokens
            self.cost_usd += event.cost_usd
            self.cost_known = self.cost_known and event.cost_known
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
                f"The provider failed ({event.error}); retrying in {event.delay_s:.1f} s."
            )
            return "status"
        if isinstance(event, ErrorOccurred):
            self.notices.append(event.message)
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

    def status_line(self) -> str:
        """``completed · 2 turns · 1,234 tokens · $0.0012`` (plain text).

        The saved output holds no wall-clock time, so a replayed notebook reproduces it
        exactly (nbval); the live view shows the elapsed time."""
        parts = [self.status or self.state.replace("_", " ")]
        if self.turns:
            parts.append(f"{self.turns} turn{'s' if self.turns != 1 else ''}")
        parts.append(f"{self.total_tokens:,} tokens")
        if self.context_tokens > 0:
            parts.append(self.context_note())
        parts.append(format_cost(self.cost_usd, self.cost_known))
        return " · ".join(parts)

    def context_note(self) -> str:
        """``context ~1,234 tokens``, or empty when the size is not known."""
        return f"context ~{self.context_tokens:,} tokens" if self.context_tokens > 0 else ""

    def status_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "status": self.status,
            "error": self.error,
            "notices": list(self.notices),
            "model": self.model,
            "session": self.session,
            "turns": self.turns,
            "tokens": self.total_tokens,
            "context_tokens": max(0, self.context_tokens),
            "cost": format_cost(self.cost_usd, self.cost_known),
            "elapsed_s": round(self.elapsed(), 3),
            "finished": self.finished_at is not None,
        }

    # -- rendering -------------------------------------------------------------------------

    def to_html(self) -> str:
        out = ['<div class="nbagent-transcript">', _header_html(self)]
        for block in self.blocks:
            if isinstance(block, TextBlock):
                if block.text:
                    out.append(f'<div class="nbagent-text">{markdown_html(block.text)}</div>')
            else:
                out.append(_card_html(block))
        out.extend(_notices_html(self))
        out.append(
            '<div class="nbagent-status" style="color:#666;font-size:90%">'
            f"{_e(self.status_line())}</div></div>"
        )
        return "".join(out)

    def to_markdown(self) -> str:
        out = [f"**agent** · `{_code_span(self.model)}` · session `{_code_span(self.session)}`"]
        if self.context_tokens > 0:
            out[0] += " · " + markdown_escape(self.context_note())
        for block in self.blocks:
            if isinstance(block, TextBlock):
                if block.text:
                    out.append(markdown_safe(block.text))
            else:
                out.append(_card_markdown(block))
        for notice in _notices(self):
            out.append("> **" + markdown_escape(notice) + "**")
        out.append("*" + markdown_escape(self.status_line()) + "*")
        return "\n\n".join(out) + "\n"

    def to_plain(self) -> str:
        out = [f"agent · {self.model} · session {self.session}"]
        if self.context_tokens > 0:
            out[0] += " · " + self.context_note()
        for block in self.blocks:
            if isinstance(block, TextBlock):
                if block.text:
                    out.append(block.text)
            else:
                out.append(_card_plain(block))
        out.extend(f"! {notice}" for notice in _notices(self))
        out.append(self.status_line())
        return "\n\n".join(out)

    def mimebundle(self) -> MimeBundle:
        return {
            "text/plain": self.to_plain(),
            "text/html": self.to_html(),
            "text/markdown": self.to_markdown(),
        }


def _notices(t: Transcript) -> list[str]:
    notices = list(t.notices)
    if t.error and t.error not in notices:
        notices.append(t.error)
    return notices


# -- Markdown, made safe -----------------------------------------------------------------


def _safe_url(url: str) -> str | None:
    """The URL if its scheme is http(s)/mailto (or it is a fragment), else None."""
    cleaned = "".join(ch for ch in html.unescape(url) if ch.isprintable() and not ch.isspace())
    lowered = cleaned.lower()
    if lowered.startswith(_SAFE_SCHEMES) or lowered.startswith("#"):
        return cleaned
    return None


_html_md: Any = None
_md_md: Any = None


def _renderers() -> tuple[Any, Any]:
    global _html_md, _md_md
    if _html_md is None:
        import mistune
        from mistune.renderers.html import HTMLRenderer
        from mistune.renderers.markdown import MarkdownRenderer

        class SafeHTML(HTMLRenderer):
            def link(self, text: str, url: str, title: str | None = None) -> str:
                safe = _safe_url(url)
                if safe is None:
                    return text
                return f'<a href="{_e(safe)}" rel="noopener noreferrer nofollow">{text}</a>'

            def image(self, text: str, url: str, title: str | None = None) -> str:
                safe = _safe_url(url)
                label = f"[image: {text}]" if text else "[image]"
                if safe is None:
                    return _e(label)
                return f'<a href="{_e(safe)}" rel="noopener noreferrer nofollow">{_e(label)}</a>'

        class SafeMarkdown(MarkdownRenderer):
            def inline_html(self, token: dict[str, Any], state: Any) -> str:
                return html.escape(str(token["raw"]), quote=False)

            def block_html(self, token: dict[str, Any], state: Any) -> str:
                return html.escape(str(token["raw"]), quote=False) + "\n\n"

            def link(self, token: dict[str, Any], state: Any) -> str:
                url = _safe_url(str(token.get("attrs", {}).get("url", "")))
                if url is None or token.get("label"):
                    return str(self.render_children(token, state))
                return str(super().link(token, state))

            def image(self, token: dict[str, Any], state: Any) -> str:
                return self.link(token, state)

        plugins = ["strikethrough", "table"]
        _html_md = mistune.create_markdown(
            escape=True, renderer=SafeHTML(escape=True), plugins=plugins
        )
        _md_md = mistune.create_markdown(renderer=SafeMarkdown(), plugins=plugins)
    return _html_md, _md_md


def markdown_html(text: str) -> str:
    """Model Markdown as HTML: raw HTML escaped, unsafe links dropped, no images loaded."""
    return str(_renderers()[0](text))


def markdown_safe(text: str) -> str:
    """Model Markdown re-written as Markdown with raw HTML turned into literal text."""
    return str(_renderers()[1](text)).strip()


def markdown_escape(text: str) -> str:
    """Plain text that renders literally inside Markdown (no markup, no HTML)."""
    escaped = html.escape(text, quote=False)
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|~>" else ch for ch in escaped)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _code_span(text: str) -> str:
    return text.replace("`", "'")


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def format_cost(cost: float, known: bool) -> str:
    if not known and cost == 0:
        return "cost unknown"
    text = f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
    return text if known else f"≥ {text}"


# -- approval previews and tool displays ----------------------------------------------------


def _is_diff(text: str) -> bool:
    lines = text.splitlines()
    return any(line.startswith("@@ ") for line in lines) or (
        len(lines) > 1 and lines[0].startswith("--- ") and lines[1].startswith("+++ ")
    )


def preview_lines(text: str) -> list[list[str]]:
    """An approval preview as ``[kind, line]`` pairs, ``kind`` one of ``add``, ``del``,
    ``hunk``, ``meta`` (file headers) or ``ctx``; a preview that is no diff is all ``ctx``.
    Lines are text: the views colour them by kind and never parse them."""
    if len(text) > MAX_PREVIEW_CHARS:
        cut = len(text) - MAX_PREVIEW_CHARS
        text = text[:MAX_PREVIEW_CHARS] + f"\n[… {cut:,} characters of the preview not shown]"
    lines = text.splitlines()
    if not _is_diff(text):
        return [["ctx", line] for line in lines]
    out: list[list[str]] = []
    header = True  # before the first hunk of a file
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
        out.append([kind, line])
    return out


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
    data = _checked_image_data(mime, value)
    if data is None or mime != "image/png":
        return data
    raw = base64.b64decode(data)
    clean = _strip_png_metadata(raw)
    return data if clean is raw else base64.b64encode(clean).decode("ascii")


def _checked_image_data(mime: str, value: Any) -> str | None:
    if isinstance(value, bytes):
        if value.startswith(_IMAGE_MAGIC[mime]):
            return base64.b64encode(value).decode("ascii")
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    data = value.replace("\n", "").replace("\r", "")
    if len(data) % 4 or not _BASE64.fullmatch(data):
        return None
    try:
        head = base64.b64decode(data[:16], validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if head.startswith(_IMAGE_MAGIC[mime]) else None


def _cut_text(text: str) -> str:
    if len(text) <= MAX_DISPLAY_TEXT:
        return text
    return text[:MAX_DISPLAY_TEXT] + f"\n[… {len(text) - MAX_DISPLAY_TEXT:,} characters not shown]"


def display_items(bundles: Sequence[object]) -> tuple[list[DisplayItem], str | None]:
    """What to show of a tool's MIME bundles, and a note on what was left out.

    Only PNG and JPEG images are shown as images, after checking that the payload is
    base64 of such an image; everything else (HTML, SVG, JSON, …) shows its
    ``text/plain``. Nothing a tool displays is ever used as markup.
    """
    items: list[DisplayItem] = []
    notes: list[str] = []
    image_budget = MAX_CARD_IMAGE_CHARS
    for bundle in list(bundles)[:MAX_DISPLAYS]:
        if not isinstance(bundle, Mapping):
            continue
        plain = bundle.get("text/plain")
        alt = plain if isinstance(plain, str) else ""
        shown = False
        for mime in _IMAGE_MIMES:
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


# -- tool cards ------------------------------------------------------------------------------


def _argument_view(key: str, value: Any) -> tuple[str, str]:
    """How to show one argument: ``("code", text)`` for code-like strings, else JSON."""
    if isinstance(value, str) and ("\n" in value or key.lower() in _CODE_KEYS):
        return "code", value
    return "json", json.dumps(value, ensure_ascii=False)


_STATUS_LABEL = {
    "proposed": "proposed",
    "pending": "waiting for approval",
    "approved": "approved",
    "running": "running",
    "ok": "done",
    "error": "failed",
    "denied": "denied",
    "cancelled": "cancelled",
}


def _card_summary(card: ToolCard) -> str:
    parts = [_STATUS_LABEL.get(card.status, card.status)]
    if card.decision and card.status != "denied":
        parts.append(card.decision)
    return " · ".join(parts)  # no duration: saved outputs must replay identically


def _card_html(card: ToolCard) -> str:
    border = {"denied": "#c62828", "error": "#c62828", "ok": "#2e7d32"}.get(card.status, "#999")
    out = [
        f'<div class="nbagent-tool" data-status="{_e(card.status)}" '
        f'style="border:1px solid {border};border-radius:4px;padding:4px 8px;margin:6px 0">',
        f"<div><b>tool</b> <code>{_e(card.name)}</code> · {_e(_card_summary(card))}</div>",
    ]
    if card.arguments:
        rows = []
        for key, value in card.arguments.items():
            how, text = _argument_view(key, value)
            shown = (
                f"<pre style='margin:0'><code>{_e(text)}</code></pre>"
                if how == "code"
                else f"<code>{_e(text)}</code>"
            )
            rows.append(
                f"<tr><td style='vertical-align:top;text-align:left'><b>{_e(key)}</b></td>"
                f"<td style='text-align:left'>{shown}</td></tr>"
            )
        out.append("<table>" + "".join(rows) + "</table>")
    elif card.arguments_json:
        out.append(f"<pre><code>{_e(card.arguments_json)}</code></pre>")
    if card.problem:
        out.append(f"<div><i>{_e(card.problem)}</i></div>")
    if card.preview is not None:
        out.append(_preview_html(card))
    if card.status == "denied" and card.decision:
        out.append(f"<div><b>Denied:</b> {_e(card.decision)}</div>")
    if card.result is not None and card.status != "denied":
        cut = " (truncated)" if card.truncated else ""
        out.append(
            f"<details open><summary>result{cut}</summary>"
            f"<pre style='white-space:pre-wrap'>{_e(card.result)}</pre></details>"
        )
    if card.display or card.display_note:
        out.append(_display_html(card))
    out.append("</div>")
    return "".join(out)


_DIFF_STYLE = {
    "add": "color:#116329;background:#dafbe1",
    "del": "color:#82071e;background:#ffebe9",
    "hunk": "color:#0550ae",
    "meta": "color:#57606a;font-weight:bold",
}


def _preview_html(card: ToolCard) -> str:
    """The changes a call would make: escaped lines, coloured by kind via classes."""
    lines = []
    for kind, line in preview_lines(card.preview or ""):
        style = _DIFF_STYLE.get(kind)
        lines.append(
            f'<span class="nbagent-diff-{kind}" style="{style}">{_e(line)}</span>'
            if style
            else _e(line)
        )
    is_open = " open" if card.status in ("proposed", "pending") else ""
    return (
        f'<details class="nbagent-changes"{is_open}><summary>changes</summary>'
        "<pre class=\"nbagent-diff\" style='white-space:pre-wrap'>"
        + "\n".join(lines)
        + "</pre></details>"
    )


def _is_image(item: DisplayItem) -> bool:
    """An image item (checked again here: a card's items may have been set by hand)."""
    return (
        item.get("kind") == "image"
        and item.get("mime") in _IMAGE_MIMES
        and _BASE64.fullmatch(item.get("data", "")) is not None
    )


def _display_html(card: ToolCard) -> str:
    out = ['<div class="nbagent-displays">']
    for item in card.display:
        if _is_image(item):
            out.append(
                f'<img class="nbagent-display" src="data:{item["mime"]};base64,{item["data"]}" '
                f'alt="{_e(item.get("alt", ""))}" style="max-width:100%">'
            )
        else:
            out.append(
                "<pre class=\"nbagent-display\" style='white-space:pre-wrap'>"
                f"{_e(item.get('text', item.get('alt', '')))}</pre>"
            )
    if card.display_note:
        out.append(f"<div><i>{_e(card.display_note)}</i></div>")
    out.append("</div>")
    return "".join(out)


def _card_markdown(card: ToolCard) -> str:
    lines = [f"**tool** `{_code_span(card.name)}` · {markdown_escape(_card_summary(card))}"]
    arguments = []
    for key, value in card.arguments.items():
        how, text = _argument_view(key, value)
        if how == "code":
            arguments.append(f"- {markdown_escape(key)}:\n\n{_indent(_fence(text))}")
        else:
            arguments.append(f"- {markdown_escape(key)}: `{_code_span(text)}`")
    if arguments:
        lines.append("\n".join(arguments))
    if not card.arguments and card.arguments_json:
        lines.append(_fence(card.arguments_json, "json"))
    if card.problem:
        lines.append(f"*{markdown_escape(card.problem)}*")
    if card.preview is not None:
        lang = "diff" if _is_diff(card.preview) else ""
        shown = "\n".join(line for _, line in preview_lines(card.preview))
        lines.append("changes:\n\n" + _fence(shown, lang))
    if card.status == "denied" and card.decision:
        lines.append(f"**Denied:** {markdown_escape(card.decision)}")
    if card.result is not None and card.status != "denied":
        lines.append("result:\n\n" + _fence(card.result))
    for item in card.display:
        if _is_image(item):
            lines.append(f"![output](data:{item['mime']};base64,{item['data']})")
        else:
            lines.append(_fence(item.get("text", item.get("alt", "")), "text"))
    if card.display_note:
        lines.append(f"*{markdown_escape(card.display_note)}*")
    return "\n\n".join(lines)


def _card_plain(card: ToolCard) -> str:
    lines = [f"[tool {card.name}] {_card_summary(card)}"]
    for key, value in card.arguments.items():
        how, text = _argument_view(key, value)
        if how == "code":
            lines.append(f"  {key}:\n" + "\n".join("    " + line for line in text.splitlines()))
        else:
            lines.append(f"  {key}: {text}")
    if not card.arguments and card.arguments_json:
        lines.append(f"  arguments: {card.arguments_json}")
    if card.problem:
        lines.append(f"  problem: {card.problem}")
    if card.preview is not None:
        shown = "\n".join("    " + line for _, line in preview_lines(card.preview))
        lines.append("  changes:\n" + shown if shown else "  changes: (none)")
    if card.status == "denied" and card.decision:
        lines.append(f"  Denied: {card.decision}")
    if card.result is not None and card.status != "denied":
        lines.append("  result: " + card.result.replace("\n", "\n          "))
    for item in card.display:
        if _is_image(item):
            text = f"[{item['mime']}] {item.get('alt', '')}".rstrip()
        else:
            text = item.get("text", "")
        lines.append("  output: " + text.replace("\n", "\n          "))
    if card.display_note:
        lines.append(f"  ({card.display_note})")
    return "\n".join(lines)


def _header_html(t: Transcript) -> str:
    context = f" · {_e(t.context_note())}" if t.context_tokens > 0 else ""
    return (
        '<div class="nbagent-header" style="color:#666;font-size:90%"><b>agent</b> · '
        f"<code>{_e(t.model)}</code> · session <code>{_e(t.session)}</code>{context}</div>"
    )


def _notices_html(t: Transcript) -> list[str]:
    return [
        '<div class="nbagent-notice" style="border-left:3px solid #c62828;padding-left:8px">'
        f"<b>{_e(n)}</b></div>"
        for n in _notices(t)
    ]


# -- tables and history ---------------------------------------------------------------------


class Table:
    """A small table that displays as HTML, Markdown-free plain text, and nothing else."""

    def __init__(self, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        self.header = list(header)
        self.rows = [[str(cell) for cell in row] for row in rows]

    def _repr_mimebundle_(self, **_: Any) -> MimeBundle:
        return {"text/plain": self.to_plain(), "text/html": self.to_html()}

    def to_plain(self) -> str:
        widths = [max([len(h), *(len(r[i]) for r in self.rows)]) for i, h in enumerate(self.header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(self.header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(line.rstrip() for line in lines)

    def to_html(self) -> str:
        head = "".join(f"<th style='text-align:left'>{_e(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{_e(c)}</td>" for c in r) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return self.to_plain()


def render_history(name: str, messages: Sequence[Mapping[str, Any]]) -> MimeBundle:
    """A session's conversation (OpenAI-format messages) as a static bundle."""
    html_out = [f'<div class="nbagent-history"><div><b>session</b> <code>{_e(name)}</code></div>']
    md_out = [f"**session** `{_code_span(name)}`"]
    plain = [f"session {name}"]
    for message in messages:
        role = str(message.get("role", "?"))
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content) if content else ""
        functions = [c.get("function") or {} for c in message.get("tool_calls") or ()]
        calls = [f"{f.get('name', '?')}({f.get('arguments', '')})" for f in functions]
        body_html = markdown_html(text) if role == "assistant" else f"<pre>{_e(text)}</pre>"
        html_out.append(
            f"<div style='margin:4px 0'><b>{_e(role)}</b>{body_html}"
            + "".join(f"<div><code>{_e(c)}</code></div>" for c in calls)
            + "</div>"
        )
        md_body = markdown_safe(text) if role == "assistant" else _fence(text) if text else ""
        md_out.append(
            f"**{markdown_escape(role)}**\n\n{md_body}"
            + "".join(f"\n\n`{_code_span(c)}`" for c in calls)
        )
        plain.append(f"{role}: {text}" + "".join(f"\n  -> {c}" for c in calls))
    html_out.append("</div>")
    return {
        "text/plain": "\n".join(plain),
        "text/html": "".join(html_out),
        "text/markdown": "\n\n".join(md_out) + "\n",
    }
