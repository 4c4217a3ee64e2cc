"""First contact with a provider, through real litellm over HTTP: keys, one-line errors,
bounded retries, non-stream answers, budgets while streaming, the size cap, parameters
and the request timeout."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import nbagent
from conftest import FAST_RETRY, collect, finished, of_type
from nbagent import Budget, LiteLLMModel, RetryPolicy, Session, Usage
from nbagent.model import NO_KEY, ModelRequest, import_litellm
from nbagent.replay import RecordBook, ReplayModel, RequestKey
from nbagent.testing import ScriptedModel, ScriptedServer, http_error, raw, say, stall

MODEL = "openai/gpt-4o-mini"
KEY = "sk-test-not-a-real-key-987654"


def session_for(server: ScriptedServer, **options: Any) -> Session:
    options.setdefault("api_key", KEY)
    options.setdefault("retry", FAST_RETRY)
    return Session(MODEL, api_base=server.url, **options)


def one_line(text: str | None) -> str:
    assert text and "\n" not in text, text
    assert "litellm." not in text and "Exception -" not in text, text
    return text


# -- keys ------------------------------------------------------------------------------------


async def test_a_missing_key_fails_at_once_without_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sent: list[dict[str, Any]] = []

    async def no_request(**kwargs: Any) -> None:
        sent.append(kwargs)
        raise AssertionError("a request was sent without a key")

    monkeypatch.setattr(import_litellm(), "acompletion", no_request)
    async with Session(MODEL, retry=FAST_RETRY) as session:
        events = await collect(session, "hello")
    done = finished(events)
    assert done.status == "failed" and not sent
    assert one_line(done.error).startswith("OPENAI_API_KEY is not set: set it in the kernel's")
    assert "--api-key-env" in done.error and "%agent doctor" in done.error
    assert not of_type(events, nbagent.Retrying)
    assert of_type(events, nbagent.ErrorOccurred)[0].error_type == "ProviderAuthError"


async def test_a_local_api_base_needs_no_key(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.add(say("Local and keyless."))
    async with Session(MODEL, api_base=server.url, retry=FAST_RETRY) as session:
        events = await collect(session, "hi")
    assert finished(events).text == "Local and keyless."
    assert server.headers[0]["authorization"] == f"Bearer {NO_KEY}"


async def test_api_key_env_is_read_at_request_time_and_never_shown(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-default-variable-000000")
    secret = "custom-secret-value-1234567890"
    server.add(say("Read from the other variable."), http_error(401, f"bad key {secret}"))
    async with Session(
        MODEL, api_base=server.url, api_key_env="NBAGENT_TEST_LLM_CRED", retry=FAST_RETRY
    ) as session:
        unset = await collect(session, "before")
        monkeypatch.setenv("NBAGENT_TEST_LLM_CRED", secret)
        ok = await collect(session, "after")
        refused = await collect(session, "again")
    assert one_line(finished(unset).error).startswith("NBAGENT_TEST_LLM_CRED is not set")
    assert finished(ok).text == "Read from the other variable."
    assert server.headers[0]["authorization"] == f"Bearer {secret}"
    assert len(server.requests) == 2  # the unset variable sent nothing
    error = one_line(finished(refused).error)
    assert "401" in error and "the key was read from NBAGENT_TEST_LLM_CRED" in error
    for event in [*unset, *ok, *refused]:
        assert secret not in nbagent.event_to_json(event)
    assert secret not in repr(session.model) and "NBAGENT_TEST_LLM_CRED" in repr(session.model)


# -- errors and retries ----------------------------------------------------------------------


async def test_a_server_error_is_one_line_of_the_providers_message(server: ScriptedServer) -> None:
    server.add(*[http_error(500, "The engine is warming up")] * 3)
    async with session_for(server) as session:
        events = await collect(session, "go")
    error = one_line(finished(events).error)
    assert error == "openai/gpt-4o-mini failed (500): The engine is warming up"
    assert len(of_type(events, nbagent.Retrying)) == 2


async def test_a_bad_request_is_not_retried(server: ScriptedServer) -> None:
    server.add(http_error(400, "temperature must be at most 2"))
    async with session_for(server) as session:
        events = await collect(session, "go")
    assert "temperature must be at most 2" in one_line(finished(events).error)
    assert not of_type(events, nbagent.Retrying) and len(server.requests) == 1


@pytest.mark.parametrize("hint", [math.nan, math.inf, -5.0, 1e12])
async def test_an_unusable_retry_after_still_retries_promptly(
    server: ScriptedServer, hint: float
) -> None:
    server.add(http_error(429, "slow down", retry_after=hint), say("Done."))
    policy = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.05)
    async with session_for(server, retry=policy) as session:
        events = await collect(session, "go")
    (retry,) = of_type(events, nbagent.Retrying)
    assert math.isfinite(retry.delay_s) and 0 <= retry.delay_s <= 0.05
    assert finished(events).text == "Done."


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("nan", None), ("-3", 0.0), ("soon", None), ("1e9", 120.0), ("inf", None)],
)
def test_retry_after_headers_are_finite_and_bounded(value: str, expected: float | None) -> None:
    class Response:
        def __init__(self) -> None:
            self.headers = {"retry-after": value}

    class RateLimited(Exception):
        status_code = 429
        response = Response()

    error = nbagent.model.provider_error(RateLimited("slow"), MODEL)
    assert error.retry_after == expected


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        ("<html><body>Welcome to the dashboard</body></html>", "text/html", "text/html"),
        (
            json.dumps(
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                }
            ),
            "application/json",
            "application/json",
        ),
    ],
)
async def test_a_200_that_is_not_a_stream_is_an_error_and_never_recorded(
    server: ScriptedServer, body: str, content_type: str, shown: str
) -> None:
    server.add(raw(body, content_type=content_type))
    book = RecordBook()
    live = LiteLLMModel(MODEL, api_base=server.url, api_key=KEY)
    async with Session(ReplayModel(live, book), retry=FAST_RETRY) as session:
        events = await collect(session, "hi")
    done = finished(events)
    assert done.status == "failed" and shown in one_line(done.error)
    assert "api_base" in (done.error or "")
    assert not of_type(events, nbagent.Retrying) and len(book) == 0


async def test_an_empty_200_is_an_error_not_an_empty_answer(server: ScriptedServer) -> None:
    server.add(*[raw("", content_type="text/event-stream")] * 3)
    book = RecordBook()
    live = LiteLLMModel(MODEL, api_base=server.url, api_key=KEY)
    async with Session(ReplayModel(live, book), retry=FAST_RETRY) as session:
        events = await collect(session, "hi")
    done = finished(events)
    assert done.status == "failed" and "empty response" in one_line(done.error)
    assert len(book) == 0 and session.messages[-1]["role"] == "user"


async def test_a_stall_before_the_first_token_is_bounded_by_the_timeout(
    server: ScriptedServer,
) -> None:
    server.add(stall(60, after=0), say("never needed"))
    async with session_for(server, timeout=0.5) as session:
        events = await collect(session, "hi")
    done = finished(events)
    assert done.status == "failed" and "timeout" in one_line(done.error)
    assert of_type(events, nbagent.ErrorOccurred)[0].error_type == "ProviderTimeoutError"
    assert not of_type(events, nbagent.Retrying) and len(server.requests) == 1


# -- budgets and the size cap ---------------------------------------------------------------

RUNAWAY = " ".join(f"word{i}" for i in range(20_000))
"""An answer that goes on and on (no two chunks alike: litellm stops a repeating one)."""


async def test_a_token_budget_stops_a_runaway_answer_while_it_streams(
    server: ScriptedServer,
) -> None:
    server.add(say(RUNAWAY))
    async with session_for(server, budget=Budget(max_tokens=300)) as session:
        events = await collect(session, "write forever")
        usage = session.usage
        messages = session.messages
    done = finished(events)
    assert done.status == "budget_exceeded" and "300" in (done.error or "")
    assert done.text.startswith("word0 word1") and len(done.text) < 2_000
    assert messages[-1] == {"role": "assistant", "content": done.text}
    (reported,) = of_type(events, Usage)
    assert reported.estimated and reported.completion_tokens >= len(done.text) // 4
    assert usage.estimated and usage.total_tokens == reported.total_tokens


async def test_a_cost_budget_stops_a_priced_model_while_it_streams(
    server: ScriptedServer,
) -> None:
    server.add(say(RUNAWAY))
    async with session_for(server, budget=Budget(max_cost_usd=0.0002)) as session:
        events = await collect(session, "write forever")
    done = finished(events)
    assert done.status == "budget_exceeded" and "$0.0002" in (done.error or "")
    assert 0 < len(done.text) < 8_000
    (reported,) = of_type(events, Usage)
    assert reported.cost_known and reported.estimated and reported.cost_usd > 0.0002


async def test_the_size_cap_ends_a_runaway_stream_whatever_the_budget(
    server: ScriptedServer,
) -> None:
    server.add(say(RUNAWAY))
    async with session_for(server, max_response_chars=1_000) as session:
        events = await collect(session, "write forever")
    done = finished(events)
    assert done.status == "failed" and "max_response_chars" in one_line(done.error)
    assert of_type(events, nbagent.ErrorOccurred)[0].error_type == "ResponseTooLargeError"
    assert 1_000 < len(done.text) < 1_300
    assert of_type(events, Usage)[0].estimated


async def test_a_stopped_run_keeps_the_usage_it_consumed() -> None:
    model = ScriptedModel([stall(60, after=3, text="one two three four five six")])
    async with Session(model) as session:
        events = []
        async for event in session.run("go"):
            events.append(event)
            if isinstance(event, nbagent.TextDelta) and len(events) < 10:
                session.cancel()
        usage = session.usage
    assert finished(events).status == "cancelled"
    (reported,) = of_type(events, Usage)
    assert reported.estimated and reported.completion_tokens > 0 and reported.prompt_tokens > 0
    assert usage.total_tokens == reported.total_tokens


async def test_a_completed_answer_without_usage_is_estimated() -> None:
    class NoUsage(ScriptedModel):
        async def stream(self, request: ModelRequest):  # type: ignore[no-untyped-def, override]
            async for chunk in super().stream(request):
                if not isinstance(chunk, nbagent.model.UsageChunk):
                    yield chunk

    async with Session(NoUsage([say("twelve chars")])) as session:
        events = await collect(session, "hi")
    (reported,) = of_type(events, Usage)
    assert reported.estimated and reported.completion_tokens == 3


# -- parameters ------------------------------------------------------------------------------

PARAMS = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "seed": 7, "reasoning_effort": "low"}


async def test_model_params_reach_the_request(server: ScriptedServer) -> None:
    server.add(say("Tuned."))
    async with Session(
        "openai/local-model", api_base=server.url, model_params=PARAMS, retry=FAST_RETRY
    ) as session:
        events = await collect(session, "hi")
    assert finished(events).text == "Tuned."
    body = server.requests[0]
    assert {key: body.get(key) for key in PARAMS} == PARAMS
    assert of_type(events, nbagent.RunStarted)[0].params == PARAMS  # the run's provenance


async def test_a_parameter_the_model_does_not_take_fails_before_the_request(
    server: ScriptedServer,
) -> None:
    async with session_for(server, model_params={"reasoning_effort": "low"}) as session:
        events = await collect(session, "hi")
    error = one_line(finished(events).error)
    assert "reasoning_effort" in error and "drop_params=True" in error
    assert not server.requests and not of_type(events, nbagent.Retrying)


async def test_model_params_are_part_of_the_replay_fingerprint() -> None:
    request = ModelRequest(messages=[{"role": "user", "content": "hi"}], tools=[], params={})
    warm = ModelRequest(request.messages, [], {"temperature": 0.9})
    assert RequestKey.of(MODEL, request).fingerprint != RequestKey.of(MODEL, warm).fingerprint

    book = RecordBook()
    async with Session(
        ReplayModel(ScriptedModel([say("recorded")]), book), model_params={"temperature": 0.0}
    ) as session:
        await collect(session, "hi")
    assert len(book) == 1
    async with Session(
        ReplayModel(ScriptedModel(), book, "replay"), model_params={"temperature": 0.0}
    ) as same:
        assert finished(await collect(same, "hi")).text == "recorded"
    async with Session(
        ReplayModel(ScriptedModel(), book, "replay"), model_params={"temperature": 1.0}
    ) as other:
        done = finished(await collect(other, "hi"))
    assert done.status == "failed" and "no recording matches" in (done.error or "")


def test_tiny_costs_are_not_shown_as_zero() -> None:
    from nbagent.render import format_cost

    assert format_cost(0.00004, True) == "<$0.0001"
    assert format_cost(0.00009, True) == "$0.0001"
    assert format_cost(0.0, True) == "$0.0000"
    assert format_cost(0.0123, True) == "$0.0123"
    assert format_cost(0.0, False) == "cost unknown"


async def test_a_turns_own_budget_and_params_apply_to_that_turn_only() -> None:
    model = ScriptedModel([say(RUNAWAY, words_per_chunk=5), say("short"), say("last")])
    async with Session(model, model_params={"seed": 1}) as session:
        capped = session.submit("one", budget=Budget(max_tokens=200), model_params={"top_p": 0.5})
        free = session.submit("two")
        tuned = session.submit("three", model_params={"seed": 2})
        results = [await capped, await free, await tuned]
    assert [r.status for r in results] == ["budget_exceeded", "completed", "completed"]
    assert [r.params for r in model.requests] == [
        {"seed": 1, "top_p": 0.5},
        {"seed": 1},
        {"seed": 2},
    ]
