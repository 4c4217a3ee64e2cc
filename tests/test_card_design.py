"""The saved card's design, checked from the HTML itself: every piece of text keeps 4.5:1
contrast on a light and on a dark page (computed from the inline styles, the way a browser
composes them), code and results are monospace, invisible characters are shown, long
results fold after their first lines, and the live view gets the same card."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from nbagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    RunFinished,
    ToolCall,
    ToolCallProposed,
    ToolFinished,
)
from nbagent.render import Transcript
from nbagent.render.as_html import MONO
from nbagent.render.card import ToolCard
from nbagent.widget import AgentView

RGB = tuple[float, float, float]

THEMES: dict[str, tuple[RGB, RGB]] = {
    # (the page's text colour, the page's background)
    "JupyterLab light": ((33, 33, 33), (255, 255, 255)),
    "JupyterLab dark": ((230, 230, 230), (17, 17, 17)),
    "nbconvert / GitHub light": ((31, 35, 40), (255, 255, 255)),
    "GitHub dark": ((230, 237, 243), (13, 17, 23)),
}

TROJAN = 'if access_level != "user\u202e \u2066# Check if admin\u2069 \u2066":\n    grant()'


def _channel(c: float) -> float:
    c = c / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(rgb: RGB) -> float:
    r, g, b = (_channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: RGB, b: RGB) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def blend(top: RGB, bottom: RGB, alpha: float) -> RGB:
    return (
        top[0] * alpha + bottom[0] * (1 - alpha),
        top[1] * alpha + bottom[1] * (1 - alpha),
        top[2] * alpha + bottom[2] * (1 - alpha),
    )


def parse_colour(value: str, current: RGB) -> tuple[RGB, float]:
    """A CSS colour of the kinds our styles use, with its alpha."""
    value = value.strip()
    if value == "currentColor":
        return current, 1.0
    if value == "none":
        return current, 0.0
    if m := re.fullmatch(r"#([0-9a-f]{6})", value, re.I):
        h = m.group(1)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)), 1.0
    if m := re.fullmatch(r"rgba\(([\d.]+),([\d.]+),([\d.]+),([\d.]+)\)", value):
        r, g, b, a = (float(x) for x in m.groups())
        return (r, g, b), a
    if m := re.fullmatch(r"color-mix\(in srgb,currentColor (\d+)%,(#[0-9a-f]{6})\)", value, re.I):
        share = int(m.group(1)) / 100
        hue, _ = parse_colour(m.group(2), current)
        return blend(current, hue, share), 1.0
    raise AssertionError(f"a colour this test does not know: {value!r}")


def declarations(style: str) -> dict[str, str]:
    out = {}
    for part in re.split(r";(?![^(]*\))", style):
        if ":" in part:
            key, value = part.split(":", 1)
            out[key.strip()] = value.strip()
    return out


class TextColours(HTMLParser):
    """Walk the HTML as a browser composes it: each text run with its colour and the
    background under it, on one theme."""

    def __init__(self, text: RGB, page: RGB) -> None:
        super().__init__()
        self.stack: list[tuple[str, RGB, RGB, float]] = [("", text, page, 1.0)]
        self.runs: list[tuple[str, RGB, RGB]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        _, colour, background, opacity = self.stack[-1]
        style = declarations(dict(attrs).get("style") or "")
        if "background" in style:
            tint, alpha = parse_colour(style["background"], colour)
            background = blend(tint, background, alpha)
        if "color" in style:
            colour, _ = parse_colour(style["color"], colour)
        if "opacity" in style:
            opacity *= float(style["opacity"])
        if tag not in ("br", "img"):
            self.stack.append((tag, colour, background, opacity))

    def handle_endtag(self, tag: str) -> None:
        if len(self.stack) > 1:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            _, colour, background, opacity = self.stack[-1]
            self.runs.append((data.strip(), blend(colour, background, opacity), background))


def rich_transcript() -> Transcript:
    """A run with every kind of section and state a card has."""
    t = Transcript(model="openai/gpt-4o-mini", session="default")
    code = "import pandas as pd\n# totals\nx = pd.Series([1, 2.5])\nprint(len(x), 'done')"
    events = [
        ToolCallProposed(run_id="r", call=ToolCall(id="a", name="run_python",
                         arguments={"code": code}, arguments_json="")),
        ToolFinished(run_id="r", tool_call_id="a", name="run_python", status="ok",
                     result="\n".join(f"line {i}" for i in range(40)), duration_s=0.1),
        ToolCallProposed(run_id="r", call=ToolCall(id="b", name="write_file",
                         arguments={"path": "n.md", "text": TROJAN}, arguments_json="")),
        ApprovalRequested(run_id="r", tool_call_id="b", name="write_file", arguments={},
                          read_only=False, preview="--- a/n.md\n+++ b/n.md\n@@ -1 +1 @@\n-a\n+b"),
        ApprovalDecided(run_id="r", tool_call_id="b", name="write_file", approved=False,
                        scope="call", decided_by="user", reason="not there"),
        ToolFinished(run_id="r", tool_call_id="b", name="write_file", status="denied",
                     result="x", duration_s=0),
        ToolCallProposed(run_id="r", call=ToolCall(id="c", name="mcp__fs__read",
                         arguments={"path": "a"}, arguments_json="")),
        ToolFinished(run_id="r", tool_call_id="c", name="mcp__fs__read", status="error",
                     result="boom", duration_s=0),
        RunFinished(run_id="r", status="failed", error="The provider failed.", turns=2, text=""),
    ]  # fmt: skip
    for event in events:
        t.add(event)
    return t


@pytest.mark.parametrize("theme", THEMES, ids=list(THEMES))
def test_every_text_of_the_saved_transcript_keeps_4_5_contrast(theme: str) -> None:
    text, page = THEMES[theme]
    parser = TextColours(text, page)
    parser.feed(rich_transcript().to_html())
    assert len(parser.runs) > 30
    worst = min(parser.runs, key=lambda run: contrast(run[1], run[2]))
    assert contrast(worst[1], worst[2]) >= 4.5, worst


def test_code_results_and_outputs_are_monospace_and_long_results_fold() -> None:
    html = rich_transcript().to_html()
    for pre in re.findall(r"<pre [^>]*>", html):
        assert MONO in pre, pre
    # the first 15 lines show; the other 25 are behind "show 25 more lines"
    assert "line 14</pre>" in html and "show 25 more lines" in html
    assert re.search(r"<details class=\"nbagent-more\">.*line 15\n", html, re.S)


def test_invisible_and_bidi_characters_are_shown_with_a_warning_in_every_format() -> None:
    bundle = rich_transcript().mimebundle()
    for text in bundle.values():
        assert "⟨U+202E⟩" in text and "⟨U+2066⟩" in text and "⟨U+2069⟩" in text
        assert "\u202e" not in text and "\u2066" not in text
        assert "The arguments hold invisible or text" in text


def test_a_card_says_where_its_tool_comes_from_and_what_it_is() -> None:
    t = Transcript()
    from nbagent.render import ToolInfo

    t.tools = {"read": ToolInfo("Read a file.", read_only=True)}
    t.add(ToolCallProposed(run_id="r", call=ToolCall(id="a", name="read", arguments={},
                                                     arguments_json="")))  # fmt: skip
    html = t.to_html()
    assert 'title="Read a file."' in html and ">read-only</span>" in html
    assert "MCP server fs" in rich_transcript().to_html()


def test_a_run_the_user_stopped_is_news_not_an_error() -> None:
    t = Transcript()
    t.add(
        RunFinished(run_id="r", status="cancelled", error="Stopped by the user.", turns=1, text="")
    )
    html = t.to_html()
    notice = re.search(r'<div class="nbagent-notice" style="([^"]*)">Stopped by the user', html)
    assert notice and "#cf222e" not in notice.group(1)
    failed = rich_transcript().to_html()
    assert re.search(r'<div class="nbagent-notice" style="[^"]*#cf222e[^"]*">The provider', failed)


def test_the_live_view_gets_the_saved_card_with_image_slots_instead_of_data() -> None:
    card = ToolCard(id="a", name="plot", arguments={}, arguments_json="", status="ok",
                    display=[{"kind": "image", "mime": "image/png", "data": "iVBORw0KGgo=",
                              "alt": "fig"}])  # fmt: skip
    live = card.to_json()["html"]
    assert 'class="nbagent-image" data-ref="a/0"' in live and "base64" not in live
    view = AgentView(Transcript())
    try:
        assert view.blocks == []
    finally:
        view.close()
