"""The HTML emitter: formats a walked transcript and its cards; decides nothing.

The live view shows these same cards (the page adds the buttons), so a card looks the same
while it waits, when the run ends and in the saved notebook. Inline styles carry the look,
so it reads the same in JupyterLab, nbviewer, GitHub and nbconvert, none of which load a
stylesheet of ours; and it follows the page's theme: text keeps the page's colour, tints
are translucent, and coloured text is mixed from the page's text colour
(``color-mix(in srgb, currentColor …)``), so every colour keeps its contrast on a light
and on a dark background (``tests/test_card_design.py`` computes it). Viewers that
sanitise styles drop the colours and keep the structure. Everything is escaped; model text
arrives here already rendered by the safe Markdown pipeline.
"""

from __future__ import annotations

from .displays import is_image
from .highlight import Run
from .parts import (
    Arguments,
    CardParts,
    CardSection,
    Changes,
    Displays,
    Note,
    Notice,
    RawArguments,
    Result,
    TextPart,
    TranscriptParts,
)
from .safe_markdown import escape_html as _e

MONO = "font-family:Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12px"
"""Code, results and outputs: monospace everywhere (nbconvert's default is not)."""
TINT = "rgba(128,128,128,0.12)"
"""The background of code and results: grey over any page colour."""
BORDER = "rgba(128,128,128,0.35)"
PRE = f"{MONO};line-height:1.45;background:{TINT};padding:6px 8px;margin:4px 0;border-radius:4px;border:0;white-space:pre-wrap;overflow-wrap:anywhere;text-align:left"  # noqa: E501
MUTED = "opacity:0.78"
"""Secondary text: the page's text colour, a little lighter (contrast stays above 4.5)."""


def mix(hue: str, share: int = 60) -> str:
    """A text colour: ``hue`` mixed with the page's text colour (``share`` percent hue)."""
    return f"color-mix(in srgb,currentColor {100 - share}%,{hue})"


STATUS_COLOUR = {
    "proposed": "#8c959f",
    "pending": "#bf8700",
    "approved": "#0969da",
    "running": "#0969da",
    "ok": "#1a7f37",
    "error": "#cf222e",
    "denied": "#cf222e",
    "cancelled": "#8c959f",
}
"""The stripe on a card's left edge, by state."""
STATUS_MARK = {
    "pending": "●",
    "approved": "▸",
    "running": "▸",
    "ok": "✓",
    "error": "✗",
    "denied": "⊘",
    "cancelled": "–",
}
TOKEN_STYLE = {
    "k": f"color:{mix('#cf222e')}",
    "s": f"color:{mix('#0a7d2c')}",
    "m": f"color:{mix('#0550ae')}",
    "c": f"color:{mix('#6e7781', 50)};font-style:italic",
    "f": f"color:{mix('#8250df')}",
    "b": f"color:{mix('#953800')}",
}
"""Code tokens (see ``highlight``)."""
DIFF_STYLE = {
    "add": "background:rgba(46,160,67,0.22)",
    "del": "background:rgba(248,81,73,0.22)",
    "hunk": f"color:{mix('#0969da')};background:rgba(9,105,218,0.10)",
    "meta": "font-weight:bold",
}
RED = mix("#cf222e", 65)
"""Error text."""


def transcript_html(t: TranscriptParts) -> str:
    out = [
        '<div class="nbagent-transcript" style="line-height:1.5;border-left:3px solid #1976d2;'
        'padding:2px 0 0 10px;margin:2px 0;text-align:left">',
        header_html(t.model, t.session, t.context_note),
    ]
    for block in t.blocks:
        out.append(text_html(block) if isinstance(block, TextPart) else card_html(block))
    out.extend(notice_html(notice) for notice in t.notices)
    out.append(
        f'<div class="nbagent-status" style="{MUTED};font-size:90%;margin-top:4px">'
        f"{_e(t.status_line)}</div></div>"
    )
    return "".join(out)


def header_html(model: str, session: str, context_note: str) -> str:
    """``agent · <model> · session <name>``: the first line of the transcript and of the
    live view."""
    context = f" · {_e(context_note)}" if context_note else ""
    return (
        f'<div class="nbagent-header" style="{MUTED};font-size:90%;margin-bottom:4px">'
        f"<b>agent</b> · <code>{_e(model)}</code> · session <code>{_e(session)}</code>"
        f"{context}</div>"
    )


def notice_html(notice: Notice) -> str:
    """A failure in red with a red stripe; anything else (the user stopped the run) as a
    plain note with a grey stripe."""
    if notice.tone == "error":
        return (
            f'<div class="nbagent-notice" style="border-left:3px solid #cf222e;padding:2px 8px;'
            f'margin:6px 0;color:{RED};font-weight:600">{_e(notice.text)}</div>'
        )
    return (
        f'<div class="nbagent-notice" style="border-left:3px solid {BORDER};padding:2px 8px;'
        f'margin:6px 0">{_e(notice.text)}</div>'
    )


def text_html(block: TextPart) -> str:
    return f'<div class="nbagent-text">{block.html}</div>' if block.text else ""


def card_html(card: CardParts, *, live: bool = False) -> str:
    """One card. ``live``: for the live view, whose images come from its media (each
    image is a placeholder the page fills) and which adds the buttons itself."""
    status = card.header.status
    stripe = STATUS_COLOUR.get(status, "#8c959f")
    out = [
        f'<div class="nbagent-tool" data-status="{_e(status)}" style="border:1px solid {BORDER};'
        f"border-left:4px solid {stripe};border-radius:6px;padding:6px 10px;margin:8px 0;"
        'text-align:left">',
        _head_html(card),
    ]
    out.extend(section_html(section, card.id, live=live) for section in card.sections)
    out.append("</div>")
    return "".join(out)


def _head_html(card: CardParts) -> str:
    header = card.header
    title = f' title="{_e(header.description)}"' if header.description else ""
    parts = [
        f'<div class="nbagent-tool-head" style="margin-bottom:2px">'
        f'<code class="nbagent-tool-name" style="{MONO};font-size:13px;font-weight:600;'
        f'background:none;padding:0"'
        f"{title}>{_e(header.name)}</code>"
    ]
    if header.badge:
        parts.append(
            f' <span class="nbagent-badge" style="font-size:80%;border:1px solid {BORDER};'
            f'border-radius:9px;padding:0 6px;{MUTED}">{_e(header.badge)}</span>'
        )
    if header.origin:
        parts.append(f' <span style="{MUTED};font-size:90%">· {_e(header.origin)}</span>')
    mark = STATUS_MARK.get(header.status, "")
    colour = f";color:{RED}" if header.status in ("error", "denied") else ""
    parts.append(
        f' <span class="nbagent-state" style="font-size:90%{colour}">'
        f"— {_e((mark + ' ') if mark else '')}{_e(header.summary)}</span></div>"
    )
    return "".join(parts)


def code_html(runs: tuple[Run, ...], text: str) -> str:
    """Code: its highlighted runs, or the text when it has none."""
    if not runs:
        return _e(text)
    return "".join(
        f'<span style="{TOKEN_STYLE[token]}">{_e(chunk)}</span>' if token else _e(chunk)
        for token, chunk in runs
    )


def section_html(section: CardSection, card_id: str = "", *, live: bool = False) -> str:
    if isinstance(section, Arguments):
        rows = []
        for arg in section.items:
            key = f'<span style="{MONO};{MUTED}">{_e(arg.key)}</span>'
            if arg.shown_as == "code":
                rows.append(
                    f'<div class="nbagent-arg">{key}<pre class="nbagent-code" style="{PRE}">'
                    f"{code_html(arg.runs, arg.text)}</pre></div>"
                )
            else:
                rows.append(
                    f'<div class="nbagent-arg">{key} <code style="{MONO};background:none;'
                    f'padding:0;white-space:pre-wrap;overflow-wrap:anywhere">{_e(arg.text)}</code></div>'
                )
        return f'<div class="nbagent-args" style="margin:2px 0">{"".join(rows)}</div>'
    if isinstance(section, RawArguments):
        return f'<pre class="nbagent-code" style="{PRE}">{_e(section.text)}</pre>'
    if isinstance(section, Note):
        return _note_html(section)
    if isinstance(section, Changes):
        return _changes_html(section)
    if isinstance(section, Result):
        return _result_html(section)
    return _displays_html(section, card_id, live=live)


def _note_html(note: Note) -> str:
    if note.kind == "denied":
        return f'<div class="nbagent-denied" style="margin:4px 0;color:{RED}">{_e(note.text)}</div>'
    if note.kind == "warning":
        return (
            f'<div class="nbagent-warning" style="margin:4px 0;padding:2px 8px;'
            f'background:rgba(191,135,0,0.16);border-radius:4px">⚠ {_e(note.text)}</div>'
        )
    return f'<div class="nbagent-note" style="margin:4px 0;{MUTED}"><i>{_e(note.text)}</i></div>'


_LINE = "display:block"


def _summary(text: str) -> str:
    return f'<summary style="cursor:pointer;{MUTED};font-size:90%">{text}</summary>'


def _changes_html(changes: Changes) -> str:
    """The changes a call would make: escaped lines, tinted by kind."""
    lines = []
    for kind, line in changes.lines:
        style = DIFF_STYLE.get(kind)
        lines.append(
            f'<span class="nbagent-diff-{kind}" style="{style};{_LINE}">{_e(line) or " "}</span>'
            if style
            else f'<span style="{_LINE}">{_e(line) or " "}</span>'
        )
    added = sum(1 for kind, _ in changes.lines if kind == "add")
    removed = sum(1 for kind, _ in changes.lines if kind == "del")
    count = f" · +{added} −{removed}" if changes.is_diff else ""
    is_open = " open" if changes.open else ""
    return (
        f'<details class="nbagent-changes"{is_open}>{_summary("changes" + count)}'
        f'<pre class="nbagent-diff" style="{PRE}">' + "".join(lines) + "</pre></details>"
    )


def _result_html(result: Result) -> str:
    """What the tool returned: its first lines, and the rest folded."""
    lines = result.line_count
    label = "result" + (f" · {lines} lines" if lines > 1 else "")
    label += " (truncated)" if result.truncated else ""
    out = [
        f'<div class="nbagent-result"><div style="{MUTED};font-size:90%">{label}</div>'
        f'<pre class="nbagent-output" style="{PRE}">{_e(result.head)}</pre>'
    ]
    if result.rest:
        more = lines - result.head.count("\n") - 1
        out.append(
            f'<details class="nbagent-more">{_summary(f"show {more} more lines")}'
            f'<pre class="nbagent-output" style="{PRE}">{_e(result.rest)}</pre></details>'
        )
    out.append("</div>")
    return "".join(out)


def _displays_html(displays: Displays, card_id: str, *, live: bool) -> str:
    out = ['<div class="nbagent-displays">']
    for i, item in enumerate(displays.items):
        if is_image(item) and live:
            out.append(
                f'<span class="nbagent-image" data-ref="{_e(card_id)}/{i}">'
                f"{_e(item.get('alt', ''))}</span>"
            )
        elif is_image(item):
            out.append(
                f'<img class="nbagent-display" src="data:{item["mime"]};base64,{item["data"]}" '
                f'alt="{_e(item.get("alt", ""))}" style="max-width:100%;{_LINE};margin:4px 0">'
            )
        elif item.get("kind") == "image_ref":  # the image is an output of its own, below
            out.append(f'<div class="nbagent-image-ref"><i>{_e(item.get("text", ""))}</i></div>')
        else:
            out.append(
                f'<pre class="nbagent-display" style="{PRE}">'
                f"{_e(item.get('text', item.get('alt', '')))}</pre>"
            )
    if displays.note:
        out.append(f'<div style="{MUTED}"><i>{_e(displays.note)}</i></div>')
    out.append("</div>")
    return "".join(out)
