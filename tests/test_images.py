"""Images tools display reach a model that can see: after the tool results, as image
parts of a user message, bounded; never part of the conversation's text."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from conftest import collect, finished
from nbagent import Hooks, RunContext, Session, ToolOutput, tool
from nbagent._images import MAX_MODEL_IMAGES, ImageMode, display_images, image_note
from nbagent.model import ModelRequest
from nbagent.replay import RecordBook, ReplayModel
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
    async with Session(model, tools=[plot], images="on" if send else "off") as session:
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
    async with Session(model, tools=[plot], images="on", approval="all") as session:
        await session.ask("plot them all")
    assert len(image_parts(model.requests[1].messages)) == MAX_MODEL_IMAGES


async def test_a_restored_session_shows_the_same_images(tmp_path: Path) -> None:
    model = ScriptedModel([use_tools(call("plot", {"title": "x"})), say("ok")])
    async with Session(model, tools=[plot], images="on", approval="all") as session:
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
        "openai/gpt-4o-mini", api_base=server.url, tools=[plot], images="on", approval="all"
    ) as session:
        result = await session.ask("plot the sales")
    assert result.text == "Rising."
    assert image_parts(server.requests[1]["messages"]) == [URL]


# -- images auto | on | off ------------------------------------------------------------------

ONE_PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@tool(read_only=True)
def dot() -> ToolOutput:
    """Draw a dot."""
    return ToolOutput("drew a dot", display=({"image/png": ONE_PIXEL, "text/plain": "<Dot>"},))


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m["content"]) for m in messages if m.get("role") == "tool"]


def test_an_image_note_says_what_the_model_did_not_see() -> None:
    assert image_note(f"data:image/png;base64,{ONE_PIXEL}") == (
        "[image: 1×1 PNG, not shown to the model]"
    )


@pytest.mark.parametrize("vision", [True, False])
async def test_auto_shows_images_to_a_model_that_sees_and_notes_them_for_one_that_does_not(
    vision: bool,
) -> None:
    model = ScriptedModel([use_tools(call("dot")), say("A dot.")], vision=vision)
    async with Session(model, tools=[dot]) as session:  # images="auto" is the default
        await session.ask("draw")
    sent = model.requests[1].messages
    note = "drew a dot\n[image: 1×1 PNG, not shown to the model]"
    if vision:
        assert image_parts(sent) == [f"data:image/png;base64,{ONE_PIXEL}"]
        assert tool_results(sent) == ["drew a dot"]
    else:
        assert image_parts(sent) == [] and tool_results(sent) == [note]
    assert tool_results(session.messages) == ["drew a dot"]  # the conversation is unchanged


@pytest.mark.parametrize(
    ("model", "sees"), [("openai/gpt-4o-mini", True), ("openai/gpt-3.5-turbo", False)]
)
async def test_auto_asks_litellm_and_the_image_reaches_the_server(
    server: ScriptedServer, model: str, sees: bool
) -> None:
    """The vision round trip over HTTP: litellm says whether the model sees; the image
    is in the request body the server got, or the result says it was not shown."""
    server.add(use_tools(call("dot")), say("A dot."))
    async with Session(
        model, api_base=server.url, api_key="sk-test-key-1", tools=[dot], images="auto"
    ) as session:
        await session.ask("draw")
    body = server.requests[1]["messages"]
    assert image_parts(body) == ([f"data:image/png;base64,{ONE_PIXEL}"] if sees else [])
    assert ("not shown to the model" in tool_results(body)[0]) is not sees


class NeverLive:
    """A model a replay must not touch: no request, no question about vision."""

    name = "scripted"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return None

    async def sees_images(self) -> bool:
        raise AssertionError("a replay asked whether the model sees")

    def stream(self, request: ModelRequest) -> Any:
        raise AssertionError("a replay went live")


class BeforeNotes(Hooks):
    """Sends requests as nbagent did before image notes: text only."""

    async def before_model_request(
        self, ctx: RunContext, request: ModelRequest
    ) -> ModelRequest | None:
        return ModelRequest(request.messages, request.tools, request.params)


@pytest.mark.parametrize("recorded_with", ["on", "off", "before notes"])
async def test_a_replay_finds_the_recording_in_any_form_without_asking_the_model(
    recorded_with: str,
) -> None:
    """Recordings made with images shown, noted, or before notes existed (existing
    notebooks keep their fingerprints) replay under ``auto``, offline."""
    book = RecordBook()
    hooks = [BeforeNotes()] if recorded_with == "before notes" else []
    images: ImageMode = "on" if recorded_with == "on" else "off"
    scripted = ScriptedModel([use_tools(call("dot")), say("A dot.")])
    async with Session(
        ReplayModel(scripted, book), tools=[dot], images=images, hooks=hooks
    ) as session:
        await session.ask("draw")
    noted = "not shown to the model" in tool_results(scripted.requests[1].messages)[0]
    assert noted is (recorded_with == "off")
    replay = ReplayModel(NeverLive(), book, mode="replay")
    async with Session(replay, tools=[dot], images="auto") as session:
        result = await session.ask("draw")
    assert (result.status, result.text) == ("completed", "A dot.")
