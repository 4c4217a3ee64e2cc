"""The HTML emitter: formats a walked transcript and its cards; decides nothing.

Inline styles carry the look, so the output reads the same in JupyterLab, nbviewer,
GitHub and nbconvert, none of which load a stylesheet of ours. Everything is escaped;
model text arrives here already rendered by the safe Markdown pipeline.
"""

from __future__ import annotations

from .displays import is_image
from .parts import (
    Arguments,
    CardParts,
    CardSection,
    Changes,
    Displays,
    Note,
    RawArguments,
    Result,
    TextPart,
    TranscriptParts,
)
from .safe_markdown import escape_html as _e

_BORDER = {"denied": "#c62828", "error": "#c62828", "ok": "#2e7d32"}
_DIFF_STYLE = {
    "add": "color:#116329;background:#dafbe1",
    "del": "color:#82071e;background:#ffebe9",
    "hunk": "color:#0550ae",
    "meta": "color:#57606a;font-weight:bold",
}


def transcript_html(t: TranscriptParts) -> str:
    context = f" · {_e(t.context_note)}" if t.context_note else ""
    out = [
        '<div class="nbagent-transcript">',
        '<div class="nbagent-header" style="color:#666;font-size:90%"><b>agent</b> · '
        f"<code>{_e(t.model)}</code> · session <code>{_e(t.session)}</code>{context}</div>",
    ]
    for block in t.blocks:
        out.append(text_html(block) if isinstance(block, TextPart) else card_html(block))
    out.extend(
        '<div class="nbagent-notice" style="border-left:3px solid #c62828;padding-left:8px">'
        f"<b>{_e(notice)}</b></div>"
        for notice in t.notices
    )
    out.append(
        '<div class="nbagent-status" style="color:#666;font-size:90%">'
        f"{_e(t.status_line)}</div></div>"
    )
    return "".join(out)


def text_html(block: TextPart) -> str:
    return f'<div class="nbagent-text">{block.html}</div>' if block.text else ""


def card_html(card: CardParts) -> str:
    status = card.header.status
    out = [
        f'<div class="nbagent-tool" data-status="{_e(status)}" '
        f'style="border:1px solid {_BORDER.get(status, "#999")};border-radius:4px;'
        'padding:4px 8px;margin:6px 0">',
        f"<div><b>tool</b> <code>{_e(card.header.name)}</code> · {_e(card.header.summary)}</div>",
    ]
    out.extend(section_html(section) for section in card.sections)
    out.append("</div>")
    return "".join(out)


def section_html(section: CardSection) -> str:
    if isinstance(section, Arguments):
        rows = []
        for arg in section.items:
            shown = (
                f"<pre style='margin:0'><code>{_e(arg.text)}</code></pre>"
                if arg.shown_as == "code"
                else f"<code>{_e(arg.text)}</code>"
            )
            rows.append(
                f"<tr><td style='vertical-align:top;text-align:left'><b>{_e(arg.key)}</b></td>"
                f"<td style='text-align:left'>{shown}</td></tr>"
            )
        return "<table>" + "".join(rows) + "</table>"
    if isinstance(section, RawArguments):
        return f"<pre><code>{_e(section.text)}</code></pre>"
    if isinstance(section, Note):
        if section.kind == "denied":
            return f"<div><b>Denied:</b> {_e(section.text)}</div>"
        return f"<div><i>{_e(section.text)}</i></div>"
    if isinstance(section, Changes):
        return _changes_html(section)
    if isinstance(section, Result):
        cut = " (truncated)" if section.truncated else ""
        return (
            f"<details open><summary>result{cut}</summary>"
            f"<pre style='white-space:pre-wrap'>{_e(section.text)}</pre></details>"
        )
    return _displays_html(section)


def _changes_html(changes: Changes) -> str:
    """The changes a call would make: escaped lines, coloured by kind via classes."""
    lines = []
    for kind, line in changes.lines:
        style = _DIFF_STYLE.get(kind)
        lines.append(
            f'<span class="nbagent-diff-{kind}" style="{style}">{_e(line)}</span>'
            if style
            else _e(line)
        )
    is_open = " open" if changes.open else ""
    return (
        f'<details class="nbagent-changes"{is_open}><summary>changes</summary>'
        "<pre class=\"nbagent-diff\" style='white-space:pre-wrap'>"
        + "\n".join(lines)
        + "</pre></details>"
    )


def _displays_html(displays: Displays) -> str:
    out = ['<div class="nbagent-displays">']
    for item in displays.items:
        if is_image(item):
            out.append(
                f'<img class="nbagent-display" src="data:{item["mime"]};base64,{item["data"]}" '
                f'alt="{_e(item.get("alt", ""))}" style="max-width:100%">'
            )
        else:
            out.append(
                "<pre class=\"nbagent-display\" style='white-space:pre-wrap'>"
                f"{_e(item.get('text', item.get('alt', '')))}</pre>"
            )
    if displays.note:
        out.append(f"<div><i>{_e(displays.note)}</i></div>")
    out.append("</div>")
    return "".join(out)
