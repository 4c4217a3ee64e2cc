"""The real path: litellm over HTTP to the scripted OpenAI-compatible SSE server."""

from __future__ import annotations

import asyncio
import os

import pytest

import nbagent
from conftest import FAST_RETRY, collect, finished, of_type
from nbagent import LiteLLMModel, Session, TextDelta, ToolFinished, tool
from nbagent.conversation import is_valid
from nbagent.testing import ScriptedServer, call, cut, http_error, say, stall, use_tools

MODEL = "openai/gpt-4o-mini"
KEY = "sk-test-not-a-real-key-123456"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def session_for(server: ScriptedServer, **options: object) -> Session:
    return Session(MODEL, api_base=server.url, api_key=KEY, retry=FAST_RETRY, **options)  # type: ignore[arg-type]


async def test_streamed_text_arrives_in_chunks(server: ScriptedServer) -> None:
    server.add(say("Streaming works over real HTTP and SSE.", words_per_chunk=2))
    async with session_for(server) as session:
        events = await collect(session, "hi")
    deltas = [e.text for e in of_type(events, TextDelta)]
    assert len(deltas) > 1
    assert "".join(deltas) == "Streaming works over real HTTP and SSE."
    assert finished(events).status == "completed"
    body = server.requests[0]
    assert body["stream"] is True and body["messages"][-1] == {"role": "user", "content": "hi"}


async def test_tool_call_fragments_are_assembled_and_answered(server: ScriptedServer) -> None:
    server.add(
        use_tools(call("add", {"a": 20, "b": 22}), text="Adding.", argument_fragment=3),
        say("It is 42."),
    )
    async with session_for(server, tools=[add]) as session:
        events = await collect(session, "20+22?")
    assert of_type(events, nbagent.ToolCallProposed)[0].call.arguments == {"a": 20, "b": 22}
    assert of_type(events, ToolFinished)[0].result == "42"
    assert finished(events).text == "It is 42."
    tools = server.requests[0]["tools"]
    assert tools[0]["function"]["name"] == "add"
    assert server.requests[1]["messages"][-1]["content"] == "42"


@pytest.mark.parametrize("style", ["fragments", "whole", "index_zero"])
async def test_parallel_tool_calls_in_every_streaming_style(
    server: ScriptedServer, style: str
) -> None:
    server.add(
        use_tools(call("add", {"a": 1, "b": 2}), call("add", {"a": 3, "b": 4}), call_style=style),
        say("3 and 7"),
    )
    async with session_for(server, tools=[add], approval="all") as session:
        events = await collect(session, "two sums")
    calls = [e.call for e in of_type(events, nbagent.ToolCallProposed)]
    assert [c.arguments for c in calls] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert len({c.id for c in calls}) == 2
    assert sorted(e.result for e in of_type(events, ToolFinished)) == ["3", "7"]


async def test_malformed_tool_json_from_the_provider(server: ScriptedServer) -> None:
    server.add(use_tools(call("add", '{"a": 1, "b": }')), say("Let me fix that."))
    async with session_for(server, tools=[add]) as session:
        events = await collect(session, "go")
        result = of_type(events, ToolFinished)[0]
        assert result.status == "error" and "not valid JSON" in result.result
        assert finished(events).status == "completed"
        assert is_valid(session.messages)
    # the next request was accepted: the broken arguments went back as a valid object
    sent = server.requests[1]["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert sent == "{}"


async def test_usage_and_cost_come_from_the_price_map(server: ScriptedServer) -> None:
    server.add(say("priced", usage=(1_000, 1_000)))
    async with session_for(server) as session:
        events = await collect(session, "go")
    (usage,) = of_type(events, nbagent.Usage)
    assert (usage.prompt_tokens, usage.completion_tokens) == (1_000, 1_000)
    assert usage.cost_known and usage.cost_usd == pytest.approx(0.00075)


async def test_rate_limit_then_success(server: ScriptedServer) -> None:
    server.add(http_error(429, "slow down", retry_after=0), say("Done."))
    async with session_for(server) as session:
        events = await collect(session, "go")
    assert len(of_type(events, nbagent.Retrying)) == 1
    assert finished(events).status == "completed"
    assert len(server.requests) == 2  # our retry only: the client's own retries are off


async def test_server_error_exhausted(server: ScriptedServer) -> None:
    server.add(*[http_error(500, "upstream exploded")] * 3, say("Recovered."))
    async with session_for(server) as session:
        events = await collect(session, "go")
        done = finished(events)
        assert done.status == "failed" and "upstream exploded" in (done.error or "")
        assert len(server.requests) == 3
        again = await collect(session, "try again")
        assert finished(again).text == "Recovered."


async def test_unauthorised_names_where_the_key_came_from_and_never_the_key(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.add(http_error(401, f"Incorrect API key provided: {KEY}"))
    async with session_for(server) as session:
        events = await collect(session, "go")
    done = finished(events)
    assert done.status == "failed"
    assert "the key was given in code" in (done.error or "")
    assert "\n" not in (done.error or "") and "litellm." not in (done.error or "")
    assert not of_type(events, nbagent.Retrying)
    for event in events:
        assert KEY not in nbagent.event_to_json(event)
        assert KEY[:12] not in nbagent.event_to_json(event)


async def test_secrets_in_the_environment_never_reach_events(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-" + os.urandom(8).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    @tool
    def leak() -> str:
        """Return the key (a tool gone wrong)."""
        raise RuntimeError(f"failed with key {secret}")

    server.add(use_tools(call("leak")), http_error(400, f"bad request from {secret}"))
    async with session_for(server, tools=[leak], approval="all") as session:
        events = await collect(session, "go")
    text = "\n".join(nbagent.event_to_json(e) for e in events)
    assert secret not in text and "[redacted]" in text


async def test_stream_cut_mid_way_keeps_the_partial_text(server: ScriptedServer) -> None:
    server.add(cut(after=4, text="alpha beta gamma delta epsilon zeta"), say("Resumed."))
    async with session_for(server) as session:
        events = await collect(session, "go")
        done = finished(events)
        assert done.status == "failed" and done.text == "alpha beta gamma delta "
        assert "broke off" in (done.error or "")
        assert session.messages[-1]["content"] == "alpha beta gamma delta "
        again = await collect(session, "continue")
        assert finished(again).text == "Resumed."
        assert is_valid(session.messages)


async def test_a_stalled_stream_is_bounded_by_the_timeout(server: ScriptedServer) -> None:
    server.add(stall(30, after=2, text="one two three"), say("Back."))
    model = LiteLLMModel(MODEL, api_base=server.url, api_key=KEY, timeout=1.0)
    async with Session(model, retry=FAST_RETRY) as session:
        events = await asyncio.wait_for(collect(session, "go"), 20)
        done = finished(events)
        assert done.status == "failed" and done.text == "one two "
        again = await collect(session, "again")
        assert finished(again).text == "Back."


async def test_cancel_during_an_http_stream(server: ScriptedServer) -> None:
    server.add(stall(30, after=3, text="never finishing answer here"), say("Fresh."))
    async with session_for(server) as session:
        events: list[nbagent.Event] = []
        async for event in session.run("go"):
            events.append(event)
            if isinstance(event, TextDelta) and len(of_type(events, TextDelta)) == 3:
                session.cancel()
        done = finished(events)
        assert done.status == "cancelled" and done.text == "never finishing answer "
        again = await collect(session, "again")
        assert finished(again).text == "Fresh."


async def test_a_response_with_more_calls_than_the_cap_is_refused(server: ScriptedServer) -> None:
    """Five calls against a cap of three: nothing asks or runs, each call gets the error
    (the next request carries five tool results), and the model goes on with fewer."""
    ran: list[int] = []

    @tool
    def record(n: int) -> str:
        """Note a number."""
        ran.append(n)
        return f"noted {n}"

    server.add(
        use_tools(*(call("record", {"n": n}) for n in range(5))),
        use_tools(call("record", {"n": 7})),
        say("Done, one at a time."),
    )
    async with session_for(server, tools=[record], max_calls_per_response=3) as session:
        events = await collect(session, "note five numbers")
        assert is_valid(session.messages)
    assert finished(events).status == "completed"
    assert ran == [7]  # only the call of the second response ran
    (refused,) = of_type(events, nbagent.ToolCallsRefused)
    assert len(refused.tool_call_ids) == 5 and refused.limit == 3
    assert len(of_type(events, nbagent.ApprovalRequested)) == 1  # the one allowed call
    results = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == list(refused.tool_call_ids)
    assert all("more than the 3 one response may propose" in m["content"] for m in results)
    assert "none of them ran" in results[0]["content"]


@pytest.mark.parametrize("depth", [100_000, 200])
async def test_deeply_nested_arguments_are_an_error_result_the_model_sees(
    server: ScriptedServer, depth: int
) -> None:
    nested = '{"a": ' + "[" * depth + "]" * depth + "}"
    server.add(use_tools(call("add", nested)), say("I will send flatter arguments."))
    async with session_for(server, tools=[add], approval="all") as session:
        events = await collect(session, "go")
    done = finished(events)
    assert done.status == "completed" and done.text == "I will send flatter arguments."
    (result,) = of_type(events, ToolFinished)
    assert result.status == "error"
    assert result.result.startswith("The arguments are nested too deeply (more than 64 levels")
    assert server.requests[1]["messages"][-1]["content"] == result.result
