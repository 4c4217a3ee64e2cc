"""The plain-text emitter: formats a walked transcript and its cards; decides nothing."""

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

_HANG = "\n          "
"""Continuation lines of a result or an output line up under its first line."""


def transcript_plain(t: TranscriptParts) -> str:
    out = [f"agent · {t.model} · session {t.session}"]
    if t.context_note:
        out[0] += " · " + t.context_note
    for block in t.blocks:
        if isinstance(block, TextPart):
            if block.text:
                out.append(block.text)
        else:
            out.append(card_plain(block))
    out.extend(f"! {n.text}" if n.tone == "error" else f"· {n.text}" for n in t.notices)
    out.append(t.status_line)
    return "\n\n".join(out)


def card_plain(card: CardParts) -> str:
    header = card.header
    extra = "".join(f" · {x}" for x in (header.badge, header.origin) if x)
    lines = [f"[tool {header.name}{extra}] {header.summary}"]
    lines.extend(section_plain(section) for section in card.sections)
    return "\n".join(lines)


def section_plain(section: CardSection) -> str:
    if isinstance(section, Arguments):
        return "\n".join(
            f"  {arg.key}:\n" + "\n".join("    " + line for line in arg.text.splitlines())
            if arg.shown_as == "code"
            else f"  {arg.key}: {arg.text}"
            for arg in section.items
        )
    if isinstance(section, RawArguments):
        return f"  arguments: {section.text}"
    if isinstance(section, Note):
        if section.kind == "denied":  # "rejected by you": says it
            return f"  {section.text}"
        label = {"warning": "warning", "problem": "problem"}[section.kind]
        return f"  {label}: {section.text}"
    if isinstance(section, Changes):
        shown = "\n".join("    " + line for _, line in section.lines)
        return "  changes:\n" + shown if shown else "  changes: (none)"
    if isinstance(section, Result):
        return "  result: " + section.text.replace("\n", _HANG)
    return _displays_plain(section)


def _displays_plain(displays: Displays) -> str:
    lines = []
    for item in displays.items:
        if is_image(item):
            text = f"[{item['mime']}] {item.get('alt', '')}".rstrip()
        else:
            text = item.get("text", "")
        lines.append("  output: " + text.replace("\n", _HANG))
    if displays.note:
        lines.append(f"  ({displays.note})")
    return "\n".join(lines)
