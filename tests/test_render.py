"""The static transcript: what it shows, and that nothing from the model can run."""

from __future__ import annotations

import base64
import re
import zlib
from html import unescape
from html.parser import HTMLParser
from typing import Any

import mistune
import pytest

from nbagent import Session, render
from nbagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    TextDelta,
    ToolCall,
    ToolCallProposed,
    ToolFinished,
)
from nbagent.notebook.cell import AgentResult
from nbagent.render import (
    Table,
    ToolCard,
    Transcript,
    markdown_html,
    markdown_safe,
    render_history,
)
from nbagent.testing import ScriptedModel, call, say, use_tools
from nbagent.tools import ToolOutput, function_tool
from nbagent.widget import AgentView

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "![img](javascript:alert(1))",
    "![img](http://tracker.example/pixel.png)",
    '<svg onload="alert(1)"></svg>',
    "<iframe src=//evil.example></iframe>",
    "<div style='background:url(javascript:alert(1))'>x</div>",
    "```html\n<script>alert(1)</script>\n```",
    "`<script>alert(1)</script>`",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "<details open ontoggle=alert(1)>",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
]

ACTIVE_TAGS = {"script", "img", "svg", "iframe", "style", "object", "embed", "details"}


class _Active(HTMLParser):
    """Collects what a browser would act on: active tags, handlers, script URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS - {"details"}:
            self.found.append(tag)
        for name, value in attrs:
            url = "".join((value or "").split()).lower()
            if name.startswith("on") or url.startswith(("javascript:", "data:", "vbscript:")):
                self.found.append(f"{tag} {name}={value}")
            if name == "style" and "url(" in url:
                self.found.append(f"{tag} style")


def pre_texts(html: str, cls: str) -> list[str]:
    """The text of each ``<pre class=cls>`` in ``html`` (markup of highlighting removed)."""
    found = re.findall(rf'<pre class="{cls}"[^>]*>(.*?)</pre>', html, re.S)
    return [unescape(re.sub(r"<[^>]+>", "", inner)) for inner in found]


def active(html: str) -> list[str]:
    parser = _Active()
    parser.feed(html)
    return parser.found


def permissive(markdown: str) -> str:
    """Markdown rendered the way a notebook viewer may do it: raw HTML passes."""
    return str(mistune.create_markdown(escape=False, plugins=["table"])(markdown))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_model_markdown_cannot_run_anything(payload: str) -> None:
    html = markdown_html(f"Hello {payload} world")
    assert not active(html), html
    md = markdown_safe(f"Hello {payload} world")
    # even a viewer that lets raw HTML through finds nothing active in the Markdown twin
    assert not active(permissive(md)), md


def test_markdown_still_renders_formatting_and_safe_links() -> None:
    html = markdown_html("**bold** `code` [docs](https://example.org)\n\n```py\nx < y\n```")
    assert "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">docs</a>' in html
    assert "x &lt; y" in html


async def run_events(replies: list, approval: str = "ask", decide: str | None = None) -> Transcript:
    session = Session(ScriptedModel(replies), tools=[shout], approval=approval)  # type: ignore[arg-type]
    transcript = Transcript(prompt="go", model="scripted", session="s1")
    async for event in session.run("go"):
        transcript.add(event)
        if event.kind == "approval_requested" and decide == "approve":
            session.approve(event.tool_call_id)
        elif event.kind == "approval_requested":
            session.deny(event.tool_call_id, reason="not today")
    await session.aclose()
    return transcript


def shout(code: str) -> str:
    """Return the code in capitals."""
    return code.upper() + " <b>done</b>"


async def test_a_transcript_shows_text_cards_results_and_status_in_three_formats() -> None:
    transcript = await run_events(
        [
            use_tools(call("shout", {"code": "print('<hi>')\nx = 1"}), text="Running it."),
            say("All **done**."),
        ],
        decide="approve",
    )
    bundle = transcript.mimebundle()
    assert set(bundle) == {"text/plain", "text/html", "text/markdown"}
    html, md, plain = bundle["text/html"], bundle["text/markdown"], bundle["text/plain"]
    # code arguments are shown as code, escaped
    assert "print('<hi>')\nx = 1" in pre_texts(html, "nbagent-code")
    assert "```python\n    print('<hi>')\n    x = 1\n    ```" in md
    assert "    print('<hi>')" in plain
    # the tool result is escaped everywhere it is shown
    assert "&lt;b&gt;done&lt;/b&gt;" in html and "<b>done</b>" not in html
    assert "approved by you" in plain and "completed · 2 turns" in plain
    assert "<strong>done</strong>" in html
    assert transcript.text == "All **done**."
    assert not active(html) and not active(permissive(md))


async def test_a_denied_call_is_shown_with_its_reason() -> None:
    transcript = await run_events([use_tools(call("shout", {"code": "rm"})), say("ok")])
    for text in transcript.mimebundle().values():
        assert "rejected by you: not today" in text


async def test_a_rejected_call_says_so_once_and_the_model_hears_who() -> None:
    session = Session(ScriptedModel([use_tools(call("shout", {"code": "rm"})), say("ok")]),
                      tools=[shout])  # fmt: skip
    transcript = Transcript(prompt="go", model="scripted", session="s1")
    async for event in session.run("go"):
        transcript.add(event)
        if event.kind == "approval_requested":
            session.deny(event.tool_call_id)  # the Reject button: no reason given
    told = next(m for m in session.messages if m["role"] == "tool")["content"]
    await session.aclose()
    assert told.startswith("The user rejected the call; it did not run.")
    for text in (transcript.to_plain(), transcript.to_markdown()):
        assert text.count("rejected") == 1 and "rejected by you" in text
        assert "denied by" not in text and "Denied" not in text


async def test_a_failed_run_shows_its_error() -> None:
    transcript = await run_events([])  # the scripted model has no reply: the run fails
    plain = transcript.to_plain()
    assert plain.splitlines()[-1].startswith("failed")
    assert "! " in plain and "no reply left" in plain
    assert "nbagent-notice" in transcript.to_html()


async def test_the_result_object_displays_as_the_transcript() -> None:
    session = Session(ScriptedModel([say("hi")]))
    transcript = Transcript(model="scripted", session="s")
    handle = session.submit("x")
    async for event in session.subscribe():
        transcript.add(event)
        if event.kind == "run_finished":
            break
    result = AgentResult(await handle, transcript, "s")
    await session.aclose()
    assert result.text == "hi" and result.status == "completed"
    assert result._repr_mimebundle_() == transcript.mimebundle()
    assert "AgentResult completed" in repr(result)


def test_tables_and_history_escape_their_content() -> None:
    table = Table(["name", "model"], [("<b>x</b>", "m")])
    assert "&lt;b&gt;x&lt;/b&gt;" in table.to_html()
    assert table.to_plain().splitlines()[1].startswith("<b>x</b>")
    history = render_history(
        "s",
        [
            {"role": "user", "content": "<script>alert(1)</script>"},
            {
                "role": "assistant",
                "content": "<img src=x onerror=alert(1)>",
                "tool_calls": [{"function": {"name": "f", "arguments": '{"a": "<i>"}'}}],
            },
        ],
    )
    assert not active(history["text/html"])
    assert not active(permissive(history["text/markdown"]))
    assert "f({&quot;a&quot;: &quot;&lt;i&gt;&quot;})" in history["text/html"]


async def test_history_marks_a_stopped_turn_after_its_last_message() -> None:
    model = ScriptedModel([say("a long answer " * 50, words_per_chunk=1), say("Here.")])
    async with Session(model) as session:
        async for event in session.run("talk"):
            if isinstance(event, TextDelta):
                session.cancel()
        await session.ask("still there?")
        (end,) = session.conversation.ended
        ended = {end.after: (end.status, end.error)}
        history = render_history("s", session.messages, ended)
    plain = history["text/plain"].splitlines()
    assert plain[1] == "user: talk" and plain[3] == "[⏹ turn stopped by you]"
    assert plain[4] == "user: still there?"
    failed = render_history("s", [{"role": "user", "content": "x"}], {0: ("failed", "<b>x</b>\n2")})
    assert "<i>✗ turn failed: &lt;b&gt;x&lt;/b&gt;</i>" in failed["text/html"]
    assert not active(failed["text/html"]) and not active(permissive(failed["text/markdown"]))


# -- approval previews and tool displays ----------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(60)).decode()
DIFF = (
    "--- a/<b>notes</b>.md\n+++ b/<b>notes</b>.md\n@@ -1,2 +1,2 @@\n"
    " keep <i>me</i>\n-<script>alert(1)</script>\n+<img src=x onerror=alert(1)>\n"
)
SAFE_IMG = re.compile(r"img src=data:image/(png|jpeg);base64,[A-Za-z0-9+/]+={0,2}")


def inert(found: list[str]) -> list[str]:
    """What ``active`` found, less the checked data-URI images the transcript may show."""
    return [f for f in found if f != "img" and not SAFE_IMG.fullmatch(f)]


def tool_events(
    *, preview: str | None = None, display: tuple[dict[str, Any], ...] = (), finish: bool = True
) -> Transcript:
    transcript = Transcript(model="m", session="s")
    arguments = {"path": "notes.md", "content": "keep\nnew"}
    transcript.add(
        ToolCallProposed(
            run_id="r",
            call=ToolCall(id="c1", name="write_file", arguments=arguments, arguments_json="{}"),
        )
    )
    transcript.add(
        ApprovalRequested(
            run_id="r",
            tool_call_id="c1",
            name="write_file",
            arguments=arguments,
            read_only=False,
            preview=preview,
        )
    )
    if finish:
        transcript.add(
            ApprovalDecided(
                run_id="r",
                tool_call_id="c1",
                name="write_file",
                approved=True,
                scope="call",
                decided_by="user",
            )
        )
        transcript.add(
            ToolFinished(
                run_id="r",
                tool_call_id="c1",
                name="write_file",
                status="ok",
                result="wrote it",
                duration_s=0.1,
                display=display,
            )
        )
    return transcript


def test_a_diff_preview_is_escaped_and_coloured_line_by_line() -> None:
    waiting = tool_events(preview=DIFF, finish=False)
    html = waiting.to_html()
    # open while the call waits for approval
    assert re.search(r'<details class="nbagent-changes" open><summary[^>]*>changes · \+1 −1<', html)
    assert re.search(
        r'<span class="nbagent-diff-del" style="background:rgba\([^"]*">'
        r"-&lt;script&gt;alert\(1\)&lt;/script&gt;</span>",
        html,
    )
    assert '<span class="nbagent-diff-add"' in html and "+&lt;img src=x onerror=" in html
    assert '<span class="nbagent-diff-hunk"' in html
    assert '<span class="nbagent-diff-meta"' in html and "--- a/&lt;b&gt;notes" in html
    assert '<span style="display:block"> keep &lt;i&gt;me&lt;/i&gt;</span>' in html  # plain
    assert "<script>" not in html and not active(html)
    assert waiting.blocks[0].to_json()["preview"][3:6] == [
        ["ctx", " keep <i>me</i>"],
        ["del", "-<script>alert(1)</script>"],
        ["add", "+<img src=x onerror=alert(1)>"],
    ]

    done = tool_events(preview=DIFF)
    html = done.to_html()
    assert re.search(r'<details class="nbagent-changes"><summary', html)  # kept, closed
    md = done.to_markdown()
    assert "changes:\n\n```diff\n--- a/<b>notes</b>.md" in md
    assert not active(permissive(md))
    plain = done.to_plain()
    assert "  changes:\n    --- a/<b>notes</b>.md" in plain
    assert "    -<script>alert(1)</script>" in plain


def test_code_arguments_show_as_code_blocks() -> None:
    transcript = Transcript()
    transcript.add(
        ToolCallProposed(
            run_id="r",
            call=ToolCall(
                id="c", name="run_python", arguments={"code": "df.plot()"}, arguments_json="{}"
            ),
        )
    )
    assert transcript.blocks[0].to_json()["arguments"] == [["code", "code", "df.plot()"]]
    assert pre_texts(transcript.to_html(), "nbagent-code") == ["df.plot()"]


def test_a_preview_that_is_no_diff_is_plain_text() -> None:
    transcript = tool_events(preview="+1 -1 would be coloured in a diff\n(no change)")
    assert "nbagent-diff-add" not in transcript.to_html()
    assert transcript.blocks[0].to_json()["preview"][0][0] == "ctx"
    assert "```\n+1 -1 would be" in transcript.to_markdown()


def test_images_are_outputs_of_their_own_and_the_transcript_refers_to_them() -> None:
    transcript = tool_events(
        display=(
            {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
            {"text/plain": "a table"},
            {"image/jpeg": JPEG, "text/plain": "photo"},
        )
    )
    bundle = transcript.mimebundle()
    html, md, plain = bundle["text/html"], bundle["text/markdown"], bundle["text/plain"]
    assert "data:" not in html and "<img" not in html and "data:" not in md
    refs = '<div class="nbagent-image-ref"><i>[image 1: shown below]</i></div>'
    assert refs in html and "[image 2: shown below]" in html
    assert html.index("wrote it") < html.index("[image 1") < html.index("a table")
    assert "*\\[image 1: shown below\\]*" in md and "image 2: shown below" in md
    assert "  output: [image 1: shown below]" in plain
    assert transcript.image_outputs() == [
        {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
        {"image/jpeg": JPEG, "text/plain": "photo"},
    ]
    # one image: no number; the live view keeps its images inside the card
    single = tool_events(display=({"image/png": PNG},))
    assert "[image: shown below]" in single.to_html()
    assert single.image_outputs() == [{"image/png": PNG, "text/plain": "image/png"}]
    assert single.blocks[0].to_json()["display"][0]["kind"] == "image"


def test_png_and_jpeg_displays_show_as_data_uri_images_inline() -> None:
    transcript = tool_events(
        display=(
            {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
            {"image/jpeg": JPEG, "text/plain": "photo"},
        )
    )
    inline = transcript.mimebundle(images="inline")
    html, md, plain = inline["text/html"], inline["text/markdown"], inline["text/plain"]
    assert f'<img class="nbagent-display" src="data:image/png;base64,{PNG}" ' in html
    assert 'alt="&lt;Figure size 640x480 with 1 Axes&gt;"' in html
    assert f'src="data:image/jpeg;base64,{JPEG}"' in html
    assert f"![output](data:image/png;base64,{PNG})" in md
    assert f"![output](data:image/jpeg;base64,{JPEG})" in md
    assert "  output: [image/png] <Figure size 640x480 with 1 Axes>" in plain
    assert not inert(active(html)) and not inert(active(permissive(md)))
    # the transcript's images come after the result
    assert html.index("wrote it") < html.index("<img")
    # raw image bytes are taken too; whitespace in base64 (as in nbformat) is dropped
    raw = tool_events(display=({"image/png": base64.b64decode(PNG)},)).blocks[0]
    wrapped = tool_events(display=({"image/png": PNG[:40] + "\n" + PNG[40:]},)).blocks[0]
    assert isinstance(raw, ToolCard) and isinstance(wrapped, ToolCard)
    assert raw.display[0]["data"] == wrapped.display[0]["data"] == PNG


def test_png_text_and_time_chunks_are_dropped_so_figures_replay_identically() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    raw = base64.b64decode(PNG)
    head, rest = raw[:33], raw[33:]  # signature + IHDR, then IDAT + IEND
    stamped = (
        head
        + chunk(b"tEXt", b"Software\x00Matplotlib version3.11.2, https://matplotlib.org/")
        + chunk(b"tIME", bytes(7))
        + chunk(b"iTXt", b"Creation Time\x00\x00\x00\x00\x002026-01-01")
        + rest
    )
    card = tool_events(display=({"image/png": base64.b64encode(stamped).decode()},)).blocks[0]
    assert isinstance(card, ToolCard)
    assert card.display[0]["data"] == PNG  # the pixels stay, byte for byte
    truncated = base64.b64encode(stamped[:-5]).decode()  # not a chunk sequence: kept as is
    card = tool_events(display=({"image/png": truncated},)).blocks[0]
    assert isinstance(card, ToolCard) and card.display[0]["data"] == truncated


MALICIOUS_DISPLAYS: list[dict[str, Any]] = [
    {"image/png": 'x" onerror="alert(1)', "text/plain": "<img src=x onerror=alert(1)>"},
    {"image/png": "javascript:alert(1)"},
    {"image/png": PNG + '" onload="alert(1)'},
    {"image/jpeg": PNG},  # a PNG claiming to be a JPEG
    {"image/png": base64.b64encode(b"<svg onload=alert(1)>").decode()},  # base64, not a PNG
    {"image/png": {"nested": "<script>alert(1)</script>"}},
    {"image/svg+xml": "<svg onload='alert(1)'><script>alert(1)</script></svg>"},
    {"image/svg+xml": "<svg onload='alert(1)'/>", "text/plain": "<Figure svg>"},
    {"text/html": "<script>alert(1)</script><b>table</b>", "text/plain": "   a\n0  1"},
    {"text/html": "<img src=x onerror=alert(1)>"},
    {"text/plain": "<script>alert(1)</script> ```\n<img src=x onerror=alert(1)>"},
    {"text/markdown": "[x](javascript:alert(1))", "application/javascript": "alert(1)"},
]


@pytest.mark.parametrize("bundle", MALICIOUS_DISPLAYS)
def test_tool_displays_cannot_run_anything(bundle: dict[str, Any]) -> None:
    transcript = tool_events(display=(bundle,))
    html, md, plain = transcript.to_html(), transcript.to_markdown(), transcript.to_plain()
    assert not active(html), html
    assert not active(permissive(md)), md
    assert "data:" not in html and "data:" not in md
    card = transcript.blocks[0].to_json()
    assert [item["kind"] for item in card["display"]] == ["text"]
    text = card["display"][0]["text"]
    if isinstance(bundle.get("text/plain"), str):
        assert text == bundle["text/plain"]  # its text/plain, as text
        assert text.splitlines()[0] in plain
    else:
        assert text.startswith("[output not shown: ")
    if "image/png" in bundle or "image/jpeg" in bundle:
        assert card["display_note"] and "not a valid" in card["display_note"]


def test_a_dataframe_shows_its_text_table_and_svg_its_text() -> None:
    transcript = tool_events(
        display=(
            {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "   a\n0  1"},
            {"image/svg+xml": "<svg/>", "text/plain": "<Figure size 1x1>"},
        )
    )
    html = transcript.to_html()
    assert "<table><tr><td>1" not in html and "<svg" not in html
    assert "   a\n0  1" in pre_texts(html, "nbagent-display")
    assert "&lt;Figure size 1x1&gt;" in html
    assert "```text\n   a\n0  1\n```" in transcript.to_markdown()


def test_displays_are_kept_to_a_sane_size() -> None:
    many = tuple({"text/plain": f"output {i}"} for i in range(12))
    card = tool_events(display=many).blocks[0]
    assert isinstance(card, ToolCard)
    assert len(card.display) == render.MAX_DISPLAYS
    assert card.display_note == "4 more outputs not shown"
    assert "4 more outputs not shown" in tool_events(display=many).to_plain()

    big = "iVBORw0KGgo" + "A" * (render.MAX_IMAGE_CHARS + 1)
    big = big[: len(big) // 4 * 4]
    card = tool_events(display=({"image/png": big, "text/plain": "huge"},)).blocks[0]
    assert isinstance(card, ToolCard)
    assert card.display == [{"kind": "text", "text": "huge"}]
    assert card.display_note and "too large to show" in card.display_note

    long_text = "x" * (render.MAX_DISPLAY_TEXT + 10)
    card = tool_events(display=({"text/plain": long_text},)).blocks[0]
    assert isinstance(card, ToolCard)
    assert card.display[0]["text"].endswith("[… 10 characters not shown]")


def test_the_context_size_shows_in_the_status_line_and_the_header() -> None:
    transcript = Transcript(model="m", session="s", context_tokens=1234)
    assert "context ~1,234 tokens" in transcript.status_line()
    assert transcript.status_json()["context_tokens"] == 1234
    bundle = transcript.mimebundle()
    for text in bundle.values():
        assert text.count("context ~1,234 tokens") + text.count("context \\~1,234 tokens") == 2
    assert "context" not in Transcript(model="m", session="s").to_plain()


async def test_a_session_tool_preview_and_display_reach_the_transcript() -> None:
    def plot(title: str) -> ToolOutput:
        """Plot something."""
        return ToolOutput(text="plotted", display=({"image/png": PNG, "text/plain": title},))

    tool = function_tool(plot)
    tool.preview = lambda arguments: f"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+{arguments['title']}"
    session = Session(
        ScriptedModel([use_tools(call("plot", {"title": "<b>t</b>"})), say("ok")]), tools=[tool]
    )
    transcript = Transcript(model="scripted", session="s")
    async for event in session.run("go"):
        transcript.add(event)
        if event.kind == "approval_requested":
            assert transcript.blocks[-1].to_json()["preview"][-1] == ["add", "+<b>t</b>"]
            session.approve(event.tool_call_id)
    await session.aclose()
    card = transcript.cards[next(iter(transcript.cards))]
    assert card.display == [{"kind": "image", "mime": "image/png", "data": PNG, "alt": "<b>t</b>"}]
    assert transcript.image_outputs() == [{"image/png": PNG, "text/plain": "<b>t</b>"}]


def test_the_live_view_gets_previews_and_sends_images_once() -> None:
    transcript = tool_events(preview=DIFF, finish=False)
    view = AgentView(transcript)
    try:
        card = view.blocks[0]
        assert card["preview"][4] == ["del", "-<script>alert(1)</script>"]
        assert card["display"] == [] and view.media == {}
        for event in (
            ApprovalDecided(
                run_id="r",
                tool_call_id="c1",
                name="write_file",
                approved=True,
                scope="call",
                decided_by="user",
            ),
            ToolFinished(
                run_id="r",
                tool_call_id="c1",
                name="write_file",
                status="ok",
                result="done",
                duration_s=0.1,
                display=(
                    {"image/png": PNG, "text/plain": "<Figure>"},
                    {"text/html": "<script>alert(1)</script>", "text/plain": "table"},
                    {"image/png": 'x" onerror="alert(1)', "text/plain": "bad"},
                ),
            ),
        ):
            view.feed(event)
        card = view.blocks[0]
        assert card["display"] == [
            {"kind": "image", "mime": "image/png", "alt": "<Figure>", "ref": "c1/0"},
            {"kind": "text", "text": "table"},
            {"kind": "text", "text": "bad"},
        ]
        assert "not a valid image/png" in card["display_note"]
        assert view.media == {"c1/0": {"mime": "image/png", "data": PNG}}
        assert card["preview"] is not None  # kept after the decision
        # later syncs carry the key, not the image; the media trait is not re-sent
        media = view.media
        view._sync_all()
        assert view.media is media and "data" not in view.blocks[0]["display"][0]
        # the transcript itself is untouched by the view's bookkeeping
        assert transcript.blocks[0].to_json()["display"][0]["data"] == PNG
    finally:
        view.close()
