"""Small static views besides the transcript: a table and a session's history."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .safe_markdown import (
    code_span,
    escape_html,
    fence,
    markdown_escape,
    markdown_html,
    markdown_safe,
)

MimeBundle = dict[str, Any]


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
        head = "".join(f"<th style='text-align:left'>{escape_html(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'>{escape_html(c)}</td>" for c in r)
            + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return self.to_plain()


_ENDED = {
    "cancelled": "stopped",
    "failed": "failed",
    "max_turns": "stopped at the limit of model requests",
    "budget_exceeded": "stopped at its budget",
}
_STOPPED_BY_YOU = "Stopped by the user."


def turn_end_note(status: str, error: str | None) -> str:
    """``⏹ turn stopped by you``, ``✗ turn failed: <the error's first line>``."""
    if status == "cancelled" and error in (None, _STOPPED_BY_YOU):
        return "⏹ turn stopped by you"
    symbol = "✗" if status == "failed" else "⏹"
    first = (error or "").strip().splitlines()[0][:300] if (error or "").strip() else ""
    return f"{symbol} turn {_ENDED.get(status, status)}" + (f": {first}" if first else "")


def render_history(
    name: str,
    messages: Sequence[Mapping[str, Any]],
    ended: Mapping[int, tuple[str, str | None]] | None = None,
) -> MimeBundle:
    """A session's conversation (OpenAI-format messages) as a static bundle; ``ended``
    marks the turns that did not complete: index of a turn's last message -> (status,
    error)."""
    _e = escape_html
    html_out = [f'<div class="nbagent-history"><div><b>session</b> <code>{_e(name)}</code></div>']
    md_out = [f"**session** `{code_span(name)}`"]
    plain = [f"session {name}"]
    marks = {index: turn_end_note(*end) for index, end in (ended or {}).items()}
    for index, message in enumerate(messages):
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
        md_body = markdown_safe(text) if role == "assistant" else fence(text) if text else ""
        md_out.append(
            f"**{markdown_escape(role)}**\n\n{md_body}"
            + "".join(f"\n\n`{code_span(c)}`" for c in calls)
        )
        plain.append(f"{role}: {text}" + "".join(f"\n  -> {c}" for c in calls))
        if (mark := marks.get(index)) is not None:
            html_out.append(f"<div class='nbagent-turn-end'><i>{_e(mark)}</i></div>")
            md_out.append(f"*{markdown_escape(mark)}*")
            plain.append(f"[{mark}]")
    html_out.append("</div>")
    return {
        "text/plain": "\n".join(plain),
        "text/html": "".join(html_out),
        "text/markdown": "\n\n".join(md_out) + "\n",
    }
