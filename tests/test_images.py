"""Images tools display reach a model that can see: after the tool results, as image
parts of a user message, bounded; never part of the conversation's text."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from conftest import collect, finished
from nbagent import Session, ToolOutput, tool
from nbagent._images import MAX_MODEL_IMAGES, display_images
from nbagent.store import SessionStore, attach
from nbagent.testing import ScriptedModel, ScriptedServer, call, say, use_tools

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
URL = f"data:image/png;base64,{PNG}"


@tool(read_only=True)
def plot(title: str) -> ToolOutput:
    """Draw a chart."""
    return ToolOutput(f"drew {title}", display=({"image/png": PNG, "text/plain": "<Figure>"},))


def image_parts(messages: list[dict[str, Any]]) -> list[str]:
    return [
        part["image_url"]["url"]
        for m in messages
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if part.get("type") == "image_url"
    ]


def test_only_real_png_and_jpeg_data_counts_as_an_image() -> None:
    jpeg = base64.b64encode(b"\xff\xd8\xff" + b"x" * 9).decode()
    bundles = [
        {"image/png": PNG},
        {"image/jpeg": jpeg},
        {"image/png": base64.b64encode(b"<svg onload=alert(1)>").decode()},
        {"image/png": "not base64!"},
        {"text/plain": "no image"},
    ]
    assert display_images(bundles) == [URL, f"data:image/jpeg;base64,{jpeg}"]


@pytest.mark.parametrize("send", [True, False])
async def test_a_plot_reaches_the_next_request_only_when_images_are_sent(send: bool) -> None:
    model = ScriptedModel([use_tools(call("plot", {"title": "sales"})), say("Rising.")])
    async with Session(model, tools=[plot], send_images=send) as session:
        events = await collect(session, "plot the sales")
    assert finished(events).text == "Rising."
    second = model.requests[1].messages
    assert image_parts(second) == ([URL] if send else [])
    if send:
        roles = [m["role"] for m in second]
        assert roles[-2:] == ["tool", "user"]  # right after the results it belongs to
    assert image_parts(session.messages) == []  # the conversation's text stays text


async def test_only_the_latest_images_are_sent() -> None:
    calls = [call("plot", {"title": str(i)}, id=f"c{i}") for i in range(MAX_MODEL_IMAGES + 2)]
    model = ScriptedModel([use_tools(*calls), say("done")])
    async with Session(model, tools=[plot], send_images=True, approval="all") as session:
        await session.ask("plot them all")
    assert len(image_parts(model.requests[1].messages)) == MAX_MODEL_IMAGES


async def test_a_restored_session_shows_the_same_images(tmp_path: Path) -> None:
    model = ScriptedModel([use_tools(call("plot", {"title": "x"})), say("ok")])
    async with Session(model, tools=[plot], send_images=True, approval="all") as session:
        recorder = attach(session, SessionStore(tmp_path).open("s"))
        await session.ask("plot")
        await recorder.aclose()
    restored = SessionStore(tmp_path).load("s").conversation
    assert restored.images == session.conversation.images != {}
    assert restored.request_messages(images=True) == session.conversation.request_messages(
        images=True
    )


async def test_images_travel_through_litellm_to_the_server(server: ScriptedServer) -> None:
    server.add(use_tools(call("plot", {"title": "sales"})), say("Rising."))
    async with Session(
        "openai/gpt-4o-mini", api_base=server.url, tools=[plot], send_images=True, approval="all"
    ) as session:
        result = await session.ask("plot the sales")
    assert result.text == "Rising."
    assert image_parts(server.requests[1]["messages"]) == [URL]
