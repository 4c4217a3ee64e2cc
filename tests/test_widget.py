"""The live view in the kernel: what it syncs to the page and when (no page needed)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from nbagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    TextDelta,
    ToolCall,
    ToolCallProposed,
    ToolFinished,
)
from nbagent.render import TextBlock, Transcript
from nbagent.render import transcript as transcript_module
from nbagent.widget import AgentView


async def test_text_that_stops_streaming_reaches_the_page_as_rendered_html() -> None:
    view = AgentView(Transcript(), flush_interval=0.01, text_sync_interval=0.05)
    rendered = asyncio.Event()
    sent = view.send

    def send(content: dict[str, Any], buffers: Any = None) -> None:
        if content.get("type") == "patch" and any(
            "<strong>bold</strong>" in block.get("html", "") for _, block in content["blocks"]
        ):
            rendered.set()
        sent(content, buffers)

    view.send = send  # type: ignore[method-assign]
    try:
        for piece in ("Some ", "**bold", "** text <script>x</script>"):
            view.feed(TextDelta(run_id="r", text=piece))
        # no event follows the last piece: the view patches the text once the stream pauses
        await asyncio.wait_for(rendered.wait(), timeout=5)
        block = view.blocks[0]  # the synced state holds it too (a reloaded page gets it)
        assert block["text"] == "Some **bold** text <script>x</script>"
        assert "&lt;script&gt;" in block["html"] and "<script>" not in block["html"]
        assert view.messages_sent == 1  # the three pieces went as one delta message
    finally:
        view.close()


def test_cards_reach_the_page_as_walked_parts_with_labels() -> None:
    transcript = Transcript()
    view = AgentView(transcript)
    try:
        view.feed(
            ToolCallProposed(
                run_id="r",
                call=ToolCall(id="c", name="run", arguments={"code": "1/0"}, arguments_json=""),
            )
        )
        view.feed(
            ApprovalRequested(
                run_id="r",
                tool_call_id="c",
                name="run",
                arguments={},
                read_only=False,
                preview="-a\n+b",
            )
        )
        card = view.blocks[0]
        assert card["label"] == "waiting for approval" and card["awaits_decision"] is True
        assert card["sections"] == ["arguments", "preview"] and card["changes_open"] is True
        view.feed(
            ApprovalDecided(
                run_id="r",
                tool_call_id="c",
                name="run",
                approved=False,
                scope="call",
                decided_by="user",
                reason="no",
            )
        )
        view.feed(
            ToolFinished(
                run_id="r", tool_call_id="c", name="run", status="denied", result="x", duration_s=0
            )
        )
        card = view.blocks[0]
        assert card["label"] == "denied" and card["awaits_decision"] is False
        assert card["decision"] is None and card["denied"] == "rejected by you: no"
        assert card["sections"] == ["arguments", "preview", "denied"]  # no result shown
        assert card["result"] is None and card["changes_open"] is False
        assert view.status["label"] == "queued"
        assert view.status["details"] == "0 tokens · $0.0000"  # no model named yet
    finally:
        view.close()


def test_a_long_streaming_answer_spends_at_most_a_tenth_of_the_kernel_on_markdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]

    def slow_markdown(text: str) -> str:
        clock[0] += 0.1  # a long answer: 100 ms per rendering
        return f"<p>{text}</p>"

    monkeypatch.setattr(transcript_module, "markdown_html", slow_markdown)
    monkeypatch.setattr(transcript_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    block = TextBlock(["a"])
    assert block.rendered(fresh=False) == ("<p>a</p>", "")
    block.parts.append("b")
    clock[0] = 0.5  # 0.4 s after a 0.1 s rendering: too soon while streaming
    assert block.rendered(fresh=False) == ("<p>a</p>", "b")
    assert block.to_json(fresh=False)["tail"] == "b"
    clock[0] = 1.0  # nine times the cost later
    assert block.rendered(fresh=False) == ("<p>ab</p>", "")
    block.parts.append("c")
    assert block.rendered() == ("<p>abc</p>", "")  # the static twin and final syncs: always
    block.parts.append("d")
    block.closed = True  # a finished block will not change again: render it now
    assert block.rendered(fresh=False) == ("<p>abcd</p>", "")
