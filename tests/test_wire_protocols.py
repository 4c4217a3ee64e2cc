"""nbagent through real litellm over the Anthropic Messages SSE protocol and Ollama's
native ``/api/chat`` NDJSON stream, each served for real by the scripted server."""

from __future__ import annotations

import json
from typing import Any

import pytest

import nbagent
from conftest import FAST_RETRY, collect, finished, of_type
from nbagent import Session, TextDelta, ToolFinished, Usage, tool
from nbagent.model import NO_KEY
from nbagent.testing import ScriptedServer, call, http_error, raw, say, use_tools

ANTHROPIC = "anthropic/claude-haiku-4-5"
OLLAMA = "ollama_chat/llama3.2"
MODELS = [pytest.param(ANTHROPIC, id="anthropic"), pytest.param(OLLAMA, id="ollama")]
ROUTES = {ANTHROPIC: "/v1/messages", OLLAMA: "/api/chat"}


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def session_for(model: str, server: ScriptedServer, **options: Any) -> Session:
    options.setdefault("retry", FAST_RETRY)
    return Session(model, api_base=server.root, **options)


@pytest.mark.parametrize("model", MODELS)
async def test_streamed_text_and_reported_usage(model: str, server: ScriptedServer) -> None:
    server.add(say("Three protocols, one agent loop.", usage=(21, 8)))
    async with session_for(model, server) as session:
        events = await collect(session, "hello")
    done = finished(events)
    assert done.status == "completed" and done.text == "Three protocols, one agent loop."
    assert len(of_type(events, TextDelta)) > 1
    (usage,) = of_type(events, Usage)
    assert (usage.prompt_tokens, usage.completion_tokens) == (21, 8)
    assert not usage.estimated
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["messages"][-1]["role"] == "user"


async def test_anthropic_usage_is_priced_and_the_keyless_request_carries_the_placeholder(
    server: ScriptedServer,
) -> None:
    server.add(say("Priced.", usage=(1000, 100)))
    async with session_for(ANTHROPIC, server) as session:
        events = await collect(session, "hello")
    (usage,) = of_type(events, Usage)
    assert usage.cost_known and usage.cost_usd > 0
    assert server.headers[0]["x-api-key"] == NO_KEY


@pytest.mark.parametrize("model", MODELS)
async def test_parallel_tool_calls_are_assembled_and_answered(
    model: str, server: ScriptedServer
) -> None:
    server.add(
        use_tools(
            call("add", {"a": 1, "b": 2}),
            call("add", {"a": 30, "b": 12}),
            text="Adding both.",
            argument_fragment=4,
        ),
        say("3 and 42."),
    )
    async with session_for(model, server, tools=[add]) as session:
        events = await collect(session, "1+2 and 30+12?")
    calls = of_type(events, nbagent.ModelResponded)[0].tool_calls
    assert [c.arguments for c in calls] == [{"a": 1, "b": 2}, {"a": 30, "b": 12}]
    assert len({c.id for c in calls}) == 2
    assert sorted(e.result for e in of_type(events, ToolFinished)) == ["3", "42"]
    assert finished(events).text == "3 and 42."
    declared = json.dumps(server.requests[0]["tools"])
    assert '"add"' in declared
    follow_up = json.dumps(server.requests[1]["messages"])
    for call_ in calls:
        assert call_.id in follow_up or model == OLLAMA  # Ollama's calls carry no id
    assert '"42"' in follow_up or "42" in follow_up


@pytest.mark.parametrize("model", MODELS)
async def test_reasoning_arrives_apart_from_the_answer(model: str, server: ScriptedServer) -> None:
    server.add(say("The answer.", reasoning="First think it over."))
    async with session_for(model, server) as session:
        events = await collect(session, "think")
    (response,) = of_type(events, nbagent.ModelResponded)
    assert response.text == "The answer."
    assert "think it over" in response.reasoning


@pytest.mark.parametrize("model", MODELS)
async def test_a_401_is_one_line_naming_the_variable(model: str, server: ScriptedServer) -> None:
    server.add(http_error(401, "invalid x-api-key"))
    async with session_for(model, server) as session:
        events = await collect(session, "hello")
    error = finished(events).error or ""
    assert "\n" not in error and "invalid x-api-key" in error and "{" not in error
    assert "not set" in error  # the request went out with no key from the environment
    assert of_type(events, nbagent.ErrorOccurred)[0].error_type == "ProviderAuthError"
    assert not of_type(events, nbagent.Retrying) and len(server.requests) == 1


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("status", "message"), [(429, "Number of requests exceeded"), (529, "Overloaded")]
)
async def test_rate_limits_and_overload_are_retried(
    model: str, status: int, message: str, server: ScriptedServer
) -> None:
    server.add(http_error(status, message), say("Back again."))
    async with session_for(model, server) as session:
        events = await collect(session, "hello")
    (retry,) = of_type(events, nbagent.Retrying)
    assert message in retry.error and "\n" not in retry.error
    assert finished(events).text == "Back again."
    assert len(server.requests) == 2


@pytest.mark.parametrize("model", MODELS)
async def test_each_protocol_reaches_its_own_route(model: str, server: ScriptedServer) -> None:
    server.add(say("routed"))
    async with session_for(model, server) as session:
        events = await collect(session, "hello")
    assert finished(events).text == "routed"
    assert server.paths == [ROUTES[model]]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("body", "kind", "shown"),
    [
        ("<html>Sign in</html>", "text/html", "text/html, not a stream"),
        ('{"id": "msg_1", "content": []}', "application/json", "application/json, not a stream"),
        ("", "text/event-stream", "empty response"),
    ],
)
async def test_a_200_that_is_not_a_stream_is_an_error(
    model: str, body: str, kind: str, shown: str, server: ScriptedServer
) -> None:
    server.add(*[raw(body, content_type=kind)] * 3)
    async with session_for(model, server) as session:
        events = await collect(session, "hello")
    done = finished(events)
    assert done.status == "failed" and shown in (done.error or "")
    assert session.messages[-1]["role"] == "user"  # no empty answer was kept
