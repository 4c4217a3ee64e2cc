"""Model Markdown made safe, and the escaping helpers every format uses.

The model's Markdown is rendered with raw HTML turned into text, only ``http``, ``https``
and ``mailto`` links kept (and in-page ``#`` fragments), and images shown as links:
nothing loads and nothing runs.
"""

from __future__ import annotations

import html
from typing import Any

_SAFE_SCHEMES = ("http://", "https://", "mailto:")


def safe_url(url: str) -> str | None:
    """The URL if its scheme is http(s)/mailto (or it is a fragment), else None."""
    cleaned = "".join(ch for ch in html.unescape(url) if ch.isprintable() and not ch.isspace())
    lowered = cleaned.lower()
    if lowered.startswith(_SAFE_SCHEMES) or lowered.startswith("#"):
        return cleaned
    return None


_html_md: Any = None
_md_md: Any = None


def _renderers() -> tuple[Any, Any]:
    """The two mistune pipelines (Markdown → HTML, Markdown → Markdown), built lazily:
    mistune is not imported until something is rendered, so ``%load_ext`` stays fast."""
    global _html_md, _md_md
    if _html_md is None:
        import mistune
        from mistune.renderers.html import HTMLRenderer
        from mistune.renderers.markdown import MarkdownRenderer

        class SafeHTML(HTMLRenderer):
            def link(self, text: str, url: str, title: str | None = None) -> str:
                safe = safe_url(url)
                if safe is None:
                    return text
                return (
                    f'<a href="{escape_html(safe)}" rel="noopener noreferrer nofollow">{text}</a>'
                )

            def image(self, text: str, url: str, title: str | None = None) -> str:
                safe = safe_url(url)
                label = f"[image: {text}]" if text else "[image]"
                if safe is None:
                    return escape_html(label)
                return (
                    f'<a href="{escape_html(safe)}" rel="noopener noreferrer nofollow">'
                    f"{escape_html(label)}</a>"
                )

        class SafeMarkdown(MarkdownRenderer):
            def inline_html(self, token: dict[str, Any], state: Any) -> str:
                return html.escape(str(token["raw"]), quote=False)

            def block_html(self, token: dict[str, Any], state: Any) -> str:
                return html.escape(str(token["raw"]), quote=False) + "\n\n"

            def link(self, token: dict[str, Any], state: Any) -> str:
                url = safe_url(str(token.get("attrs", {}).get("url", "")))
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


def escape_html(text: str) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(text, quote=True)


def code_span(text: str) -> str:
    """Text for inside a Markdown code span (a backtick would end it)."""
    return text.replace("`", "'")


def fence(text: str, lang: str = "") -> str:
    """A Markdown code fence around ``text``, longer than any backtick run inside it."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
