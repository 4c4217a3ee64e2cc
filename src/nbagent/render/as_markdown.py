"""The Markdown emitter: formats a walked transcript and its cards; decides nothing.

Text from the model goes through the safe Markdown pipeline; everything else is escaped
or fenced, so even a viewer that lets raw HTML through finds nothing active.
"""

from __future__ import annotations

from .displays import is_image
from .highlight import language_of
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
from .safe_markdown import code_span, fence, indent, markdown_escape, markdown_safe


def transcript_markdown(t: TranscriptParts) -> str:
    out = [f"**agent** · `{code_span(t.model)}` · session `{code_span(t.session)}`"]
    if t.context_note:
        out[0] += " · " + markdown_escape(t.context_note)
    for block in t.blocks:
        if isinstance(block, TextPart):
            if block.text:
                out.append(markdown_safe(block.text))
        else:
            out.append(card_markdown(block))
    out.extend(
        "> **" + markdown_escape(n.text) + "**"
        if n.tone == "error"
        else "> " + markdown_escape(n.text)
        for n in t.notices
    )
    out.append("*" + markdown_escape(t.status_line) + "*")
    return "\n\n".join(out) + "\n"


def card_markdown(card: CardParts) -> str:
    header = card.header
    extra = "".join(f" · {markdown_escape(x)}" for x in (header.badge, header.origin) if x)
    lines = [f"**tool** `{code_span(header.name)}`{extra} — {markdown_escape(header.summary)}"]
    lines.extend(section_markdown(section) for section in card.sections)
    return "\n\n".join(lines)


def section_markdown(section: CardSection) -> str:
    if isinstance(section, Arguments):
        return "\n".join(
            f"- {markdown_escape(arg.key)}:\n\n{indent(fence(arg.text, language_of(arg.key)))}"
            if arg.shown_as == "code"
            else f"- {markdown_escape(arg.key)}: `{code_span(arg.text)}`"
            for arg in section.items
        )
    if isinstance(section, RawArguments):
        return fence(section.text, "json")
    if isinstance(section, Note):
        if section.kind == "denied":
            return f"**{markdown_escape(section.text)}**"
        if section.kind == "warning":
            return f"> ⚠ {markdown_escape(section.text)}"
        return f"*{markdown_escape(section.text)}*"
    if isinstance(section, Changes):
        shown = "\n".join(line for _, line in section.lines)
        return "changes:\n\n" + fence(shown, "diff" if section.is_diff else "")
    if isinstance(section, Result):
        return "result:\n\n" + fence(section.text)
    return _displays_markdown(section)


def _displays_markdown(displays: Displays) -> str:
    lines = []
    for item in displays.items:
        if is_image(item):
            lines.append(f"![output](data:{item['mime']};base64,{item['data']})")
        elif item.get("kind") == "image_ref":  # the image is an output of its own, below
            lines.append(f"*{markdown_escape(item.get('text', ''))}*")
        else:
            lines.append(fence(item.get("text", item.get("alt", "")), "text"))
    if displays.note:
        lines.append(f"*{markdown_escape(displays.note)}*")
    return "\n\n".join(lines)
