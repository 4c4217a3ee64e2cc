"""The static transcript: what it shows, and that nothing from the model can run."""

from __future__ import annotations

from html.parser import HTMLParser

import mistune
import pytest

from nbagent import Session
from nbagent._cell import AgentResult
from nbagent.render import Table, Transcript, markdown_html, markdown_safe, render_history
from nbagent.testing import ScriptedModel, call, say, use_tools

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
    assert "<pre style='margin:0'><code>print(&#x27;&lt;hi&gt;&#x27;)\nx = 1</code></pre>" in html
    assert "```\n    print('<hi>')\n    x = 1\n    ```" in md
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
        assert "Denied" in text and "not today" in text


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
