"""The live status line: estimated tokens and cost ("~") while an answer streams, exact
once the provider reports usage, kept for runs that stopped; and no silent wait while
the model library loads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from nbagent import _provider
from nbagent.events import RunFinished, RunStarted, TextDelta, Usage
from nbagent.model import LiteLLMModel, ModelRequest
from nbagent.render import Transcript
from nbagent.testing import ScriptedServer, say


def usage(prompt: int, completion: int, cost: float, *, estimated: bool = False) -> Usage:
    return Usage(
        run_id="r", model="m", prompt_tokens=prompt, completion_tokens=completion,
        total_tokens=prompt + completion, cost_usd=cost, cost_known=True, estimated=estimated,
    )  # fmt: skip


def details(transcript: Transcript) -> str:
    return str(transcript.status_json()["details"])


def test_streaming_text_is_counted_as_an_estimate_until_the_provider_reports() -> None:
    transcript = Transcript(model="m")
    transcript.price = lambda prompt, completion: completion * 0.001
    transcript.add(RunStarted(run_id="r", session_id="s", prompt="hi", model="m"))
    assert details(transcript).startswith("0 tokens · $0.0000")
    transcript.add(TextDelta(run_id="r", text="x" * 400))  # ~100 tokens
    assert details(transcript).startswith("~100 tokens · ~$0.1000")
    transcript.add(usage(20, 90, 0.09))  # the provider's own count, at the end
    assert details(transcript).startswith("110 tokens · $0.0900")
    transcript.add(RunFinished(run_id="r", status="completed", text="x"))
    assert "110 tokens · $0.0900" in transcript.status_line()


def test_a_stopped_run_keeps_its_estimate_marked() -> None:
    transcript = Transcript(model="m")
    transcript.add(RunStarted(run_id="r", session_id="s", prompt="hi", model="m"))
    transcript.add(TextDelta(run_id="r", text="x" * 40))
    transcript.add(usage(5, 10, 0.002, estimated=True))
    transcript.add(RunFinished(run_id="r", status="cancelled", text="x", error="Stopped."))
    assert "~15 tokens · ~$0.0020" in transcript.status_line()
    assert details(transcript).startswith("~15 tokens · ~$0.0020")


def test_without_a_price_the_estimate_keeps_the_cost_so_far() -> None:
    transcript = Transcript(model="m")
    transcript.add(usage(10, 10, 0.01))
    transcript.add(TextDelta(run_id="r", text="x" * 8))
    assert details(transcript).startswith("~22 tokens · ~$0.0100")


class HeldImport:
    """``import_litellm`` held until released: the state right after ``%load_ext``, while
    its background import has not finished."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        real = _provider.import_litellm

        def held() -> Any:
            self.release.wait(30)
            return real()

        monkeypatch.setattr(_provider, "_LOADED", threading.Event())
        monkeypatch.setattr(_provider, "import_litellm", held)


async def test_a_request_that_waits_for_the_model_library_says_so(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    held = HeldImport(monkeypatch)
    heard: list[bool] = []
    waiting = asyncio.Event()

    def listener(loading: bool) -> None:
        heard.append(loading)
        if loading:
            waiting.set()

    server.add(say("hello"))
    model = LiteLLMModel("openai/gpt-4o-mini", api_base=server.url, api_key="sk-test-1")
    _provider.LOADING_LISTENERS.add(listener)
    try:
        stream = model.stream(ModelRequest([{"role": "user", "content": "hi"}], []))
        first = asyncio.ensure_future(anext(stream))
        await waiting.wait()
        assert heard == [True] and not first.done() and not server.requests
        held.release.set()
        assert await first == "hello"
        assert heard == [True, False]
        async for _ in stream:
            pass
    finally:
        _provider.LOADING_LISTENERS.discard(listener)
    assert _provider.litellm_ready()


def test_the_live_status_line_names_the_wait() -> None:
    transcript = Transcript(model="m")
    transcript.add(RunStarted(run_id="r", session_id="s", prompt="hi", model="m"))
    transcript.waiting = _provider.LOADING_NOTE
    assert transcript.status_json()["label"] == "loading the model library…"
    transcript.waiting = None
    assert transcript.status_json()["label"] == "running"


async def test_a_request_waits_for_the_warm_up_of_the_first_request_and_says_so(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    """litellm is imported but the background warm-up (its tokenizers and response types)
    is not done: the request waits for it (no race for litellm's lazy setup), announced."""
    _provider.import_litellm()
    warming = threading.Event()
    monkeypatch.setattr(_provider, "_WARMED", warming)
    heard: list[bool] = []
    _provider.LOADING_LISTENERS.add(heard.append)
    server.add(say("hello"))
    model = LiteLLMModel("openai/gpt-4o-mini", api_base=server.url, api_key="sk-test-1")
    try:
        stream = model.stream(ModelRequest([{"role": "user", "content": "hi"}], []))
        first = asyncio.ensure_future(anext(stream))
        while not heard:
            await asyncio.sleep(0)
        assert heard == [True] and not server.requests
        warming.set()
        assert await first == "hello" and heard == [True, False]
        async for _ in stream:
            pass
    finally:
        _provider.LOADING_LISTENERS.discard(heard.append)


def test_the_warm_up_runs_litellm_s_first_request_path_offline() -> None:
    _provider._warm("openai/gpt-4o-mini")
    assert _provider._WARMED.is_set() and _provider.litellm_ready()
