"""The test kit's scripts: replies that fit a request by what it asks (``when``), so tests
of concurrent sessions do not depend on whose request reaches the server first."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import deque
from typing import Any

import pytest

from nbagent import Session
from nbagent.testing import ScriptedModel, ScriptedServer, load_script, say, use_tools, when
from nbagent.testing._script import take_reply


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def test_the_first_reply_that_fits_the_last_user_message_is_taken() -> None:
    replies = deque([*when("one", say("A1"), say("A2")), *when("two", say("B")), say("any")])
    assert take_reply(replies, user("number two, please")).text == "B"  # type: ignore[union-attr]
    assert take_reply(replies, user("number one")).text == "A1"  # type: ignore[union-attr]
    # a tool result keeps the run's prompt as the last user message
    tool_turn = [*user("one"), {"role": "assistant", "content": "x"},
                 {"role": "tool", "tool_call_id": "c", "content": "5"}]  # fmt: skip
    assert take_reply(replies, tool_turn).text == "A2"  # type: ignore[union-attr]
    assert take_reply(replies, user("three")).text == "any"  # type: ignore[union-attr]
    assert not replies


def test_a_request_nothing_fits_takes_nothing() -> None:
    replies = deque(when("one", say("A")))
    assert take_reply(replies, user("two")) is None
    assert [r.text for r in replies] == ["A"]


def test_untagged_replies_keep_their_order() -> None:
    replies = deque([say("first"), say("second")])
    assert take_reply(replies, user("second?")).text == "first"  # type: ignore[union-attr]


def test_when_survives_a_json_script() -> None:
    (reply,) = load_script(json.dumps([{"text": "A", "when": "one"}]))
    assert reply.when == "one" and reply.fits(user("one")) and not reply.fits(user("two"))


def post(server: ScriptedServer, prompt: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": "scripted", "messages": user(prompt)}).encode()
    request = urllib.request.Request(
        f"{server.url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_server_answers_by_what_is_asked_not_by_arrival(server: ScriptedServer) -> None:
    server.add(*when("one", say("alpha")), *when("two", say("beta")))
    # the second session's request arrives first
    assert post(server, "two")[1]["choices"][0]["message"]["content"] == "beta"
    assert post(server, "one")[1]["choices"][0]["message"]["content"] == "alpha"
    assert server.remaining == 0


def test_the_server_says_why_nothing_fits(server: ScriptedServer) -> None:
    server.add(*when("one", say("alpha")))
    status, body = post(server, "two")
    assert status == 500
    assert "none of the 1 scripted replies left fits" in body["error"]["message"]
    assert "'two'" in body["error"]["message"]
    assert server.remaining == 1


async def test_concurrent_sessions_on_one_model_get_their_own_replies() -> None:
    model = ScriptedModel([*when("two", say("beta")), *when("one", say("alpha"))])
    async with Session(model) as first, Session(model) as second:
        # submitted in the opposite order of the script
        one, two = first.submit("one"), second.submit("two")
        results = [await one, await two]
    assert [r.text for r in results] == ["alpha", "beta"]


async def test_the_model_says_why_nothing_fits() -> None:
    async with Session(ScriptedModel(when("one", say("alpha")))) as session:
        result = await session.ask("two")
    assert result.status == "failed"
    assert "none of the 1 scripted replies left fits" in (result.error or "")


@pytest.mark.parametrize("reply", [say("x"), use_tools()])
def test_an_untagged_reply_fits_any_request(reply: Any) -> None:
    assert reply.fits(user("anything")) and reply.fits([])
