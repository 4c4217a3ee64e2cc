"""The conversation restored from a session's log equals the live one.

Every scenario of the agent loop (``test_session.py``: tools approved, denied, in
parallel, cancelled at every stage, broken streams, retries, limits, steer, resume, …) is
recorded into a log; loading the log must give back the live session's messages, usage
and run count exactly. Each runs on the in-memory scripted model and over HTTP through
litellm to the scripted server.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import nbagent
from conftest import FAST_RETRY, approve_all, collect
from nbagent import (
    AllowRule,
    ApprovalRequested,
    Budget,
    BudgetReached,
    Hooks,
    ModelRequest,
    RunContext,
    Session,
    TextDelta,
    tool,
)
from nbagent.store import (
    SessionRecorder,
    SessionStore,
    attach,
    compact,
    restore_session,
    rewind_before_tag,
    undo,
)
from nbagent.testing import (
    Reply,
    ScriptedModel,
    ScriptedServer,
    call,
    cut,
    http_error,
    say,
    stall,
    use_tools,
)

MODEL = "openai/gpt-4o-mini"
KEY = "sk-test-not-a-real-key-123456"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(read_only=True)
def peek(name: str) -> str:
    """Look at something without changing it."""
    return f"{name} looks fine"


@tool
def explode(reason: str) -> str:
    """Fail on purpose."""
    raise ValueError(f"cannot do {reason}")


@tool
def dump() -> str:
    """Return a lot."""
    return "\x1b[31mred\x1b[0m" + "x" * 100_000


@dataclass
class Live:
    """The session being recorded; a scenario may swap it for a restored one."""

    session: Session
    recorder: SessionRecorder
    store: SessionStore
    new_model: Callable[[list[Reply]], Any]
    options: dict[str, Any] = field(default_factory=dict)


Play = Callable[[Live], Awaitable[None]]


@dataclass
class Scenario:
    replies: list[Reply]
    play: Play
    options: dict[str, Any] = field(default_factory=dict)
    ends: tuple[str, ...] = ()
    """The status of each run the log holds, in order: the scenario did what it says."""


def turns(*prompts: str, on_approval: Any = approve_all) -> Play:
    async def play(live: Live) -> None:
        for prompt in prompts:
            await collect(live.session, prompt, on_approval=on_approval)

    return play


def deny(session: Session, request: ApprovalRequested) -> None:
    session.deny(request.tool_call_id, reason="not now")


def always(session: Session, request: ApprovalRequested) -> None:
    session.approve(request.tool_call_id, scope="tool")


def by_rule(session: Session, request: ApprovalRequested) -> None:
    if request.arguments.get("name", "").startswith("data/"):
        session.approve(
            request.tool_call_id, scope="rule", rule=AllowRule("peek", {"name": "data/*"})
        )
    else:
        session.deny(request.tool_call_id, reason="outside data/")


def steer_then_approve(session: Session, request: ApprovalRequested) -> None:
    session.steer("Use shorter answers.")
    session.approve(request.tool_call_id)


async def cancel_after_two_deltas(live: Live) -> None:
    deltas = 0
    async for event in live.session.run("go"):
        if isinstance(event, TextDelta):
            deltas += 1
            if deltas == 2:
                live.session.cancel()
    await collect(live.session, "Are you there?")


async def cancel_at_approval(live: Live) -> None:
    async for event in live.session.run("go"):
        if isinstance(event, ApprovalRequested):
            live.session.cancel()
    await collect(live.session, "Are you there?")


@tool
async def slow() -> str:
    """Takes until it is cancelled."""
    await asyncio.get_running_loop().create_future()
    return "never"


async def cancel_a_running_tool(live: Live) -> None:
    async for event in live.session.run("go"):
        if isinstance(event, nbagent.ToolStarted):
            live.session.cancel()
    await collect(live.session, "Are you there?")


async def queue_three_and_cancel_the_second(live: Live) -> None:
    first, second, third = (live.session.submit(p) for p in ("1", "2", "3"))
    second.cancel()
    for handle in (first, second, third):
        await handle


async def resume_after_the_kernel_died(live: Live) -> None:
    """The kernel dies while one of two calls waits for approval (the recorder stops
    writing there); a session restored from the log resumes the run."""
    finished_first = asked_second = False
    async with aclosing(live.session.run("two sums")) as events:
        async for event in events:
            if isinstance(event, ApprovalRequested):
                if event.arguments == {"a": 1, "b": 1}:
                    live.session.approve(event.tool_call_id)
                else:
                    asked_second = True
            if isinstance(event, nbagent.ToolFinished):
                finished_first = True
            if finished_first and asked_second:
                break
    live.recorder.close_now()
    await live.session.aclose()
    session, recorder, state = restore_session(
        live.store, "s", model=live.new_model([say("2 and 4")]), **live.options
    )
    assert state.interrupted_run is not None and len(state.pending) == 1
    live.session, live.recorder = session, recorder
    with session.subscribe() as stream:
        handle = session.resume()
        assert handle is not None
        async for event in stream:
            if isinstance(event, ApprovalRequested):
                session.approve(event.tool_call_id)
            if isinstance(event, nbagent.RunFinished):
                break
    assert (await handle).status == "completed"


async def undo_the_last_turn(live: Live) -> None:
    # ``ask``, not ``run``: when ``run`` yields RunFinished the turn is not yet off the
    # session's books, and ``undo`` would be refused (see test_session.py).
    await live.session.ask("one")
    await live.session.ask("two")
    undo(live.recorder)
    await live.session.ask("three")


async def rerun_a_cell(live: Live) -> None:
    await live.session.submit("first", tag="cell-1")
    await live.session.submit("second", tag="cell-2")
    rewind_before_tag(live.recorder, "cell-1")
    await live.session.submit("first, edited", tag="cell-1")


async def compact_older_turns(live: Live) -> None:
    await live.session.ask("1")
    await live.session.ask("2")
    await compact(live.recorder, keep_turns=1)
    await live.session.ask("3")


def at_budget(*answers: bool) -> Play:
    """One turn that asks at its budget; each pause is answered in turn (True: continue)."""

    async def play(live: Live) -> None:
        left = list(answers)
        with live.session.subscribe() as stream:
            handle = live.session.submit("go", ask_budget=True)
            async for event in stream:
                if isinstance(event, BudgetReached):
                    live.session.decide_budget(event.decision_id, go_on=left.pop(0))
                if isinstance(event, nbagent.RunFinished) and event.run_id == handle.run_id:
                    break
        await handle
        assert not left

    return play


async def die_at_a_budget_pause(live: Live) -> None:
    """The kernel dies while the run waits at its budget: the log says so."""
    await die_and_restore_at_a_budget_pause(live, [say("Still here.")])
    await live.session.ask("Are you there?")


async def die_and_restore_at_a_budget_pause(live: Live, replies: list[Reply]) -> None:
    with live.session.subscribe() as stream:
        live.session.submit("go", ask_budget=True)
        async for event in stream:
            if isinstance(event, BudgetReached):
                pause = event
                break
    live.recorder.close_now()
    await live.session.aclose()
    session, recorder, state = restore_session(
        live.store, "s", model=live.new_model(replies), **live.options
    )
    assert state.budget_pause == pause and state.interrupted_run == pause.run_id
    live.session, live.recorder = session, recorder


async def resume_at_a_budget_pause(live: Live) -> None:
    """The kernel dies at the pause; the restored session's resume asks again, and
    "continue" runs the call the response proposed."""
    await die_and_restore_at_a_budget_pause(live, [say("2")])
    session = live.session
    with session.subscribe() as stream:
        handle = session.resume(ask_budget=True)
        assert handle is not None
        async for event in stream:
            if isinstance(event, BudgetReached):
                assert event.max_tokens == 1_000
                session.decide_budget(event.decision_id, go_on=True)
            if isinstance(event, nbagent.RunFinished):
                break
    result = await handle
    assert result.status == "completed" and [c.result for c in result.tool_calls] == ["2"]


class EditsRequests(Hooks):
    async def before_model_request(
        self, ctx: RunContext, request: ModelRequest
    ) -> ModelRequest | None:
        note = {"role": "user", "content": "(context injected by a hook)"}
        return ModelRequest(messages=[*request.messages, note], tools=request.tools)


class Broken(Hooks):
    async def before_model_request(
        self, ctx: RunContext, request: ModelRequest
    ) -> ModelRequest | None:
        raise OSError("disk full")


ADD = use_tools(call("add", {"a": 2, "b": 3}))
TWO_SUMS = use_tools(call("add", {"a": 1, "b": 1}), call("add", {"a": 2, "b": 2}))

SCENARIOS: dict[str, Scenario] = {
    "text only": Scenario(
        [say("Hello there."), say("Again.")], turns("hi", "more"), ends=("completed", "completed")
    ),
    "reasoning": Scenario(
        [say("Answer.", reasoning="Let me think.")], turns("q"), ends=("completed",)
    ),
    "tool approved": Scenario(
        [ADD, say("It is 5.")], turns("2+3"), {"tools": [add]}, ends=("completed",)
    ),
    "tool denied": Scenario(
        [ADD, say("OK, I won't.")],
        turns("2+3", on_approval=deny),
        {"tools": [add]},
        ends=("completed",),
    ),
    "parallel calls": Scenario(
        [TWO_SUMS, say("2 and 4")], turns("two sums"), {"tools": [add]}, ends=("completed",)
    ),
    "too many calls in one response are refused": Scenario(
        [use_tools(*(call("add", {"a": i, "b": 1}) for i in range(5))), TWO_SUMS, say("2, 4")],
        turns("many sums"),
        {"tools": [add], "max_calls_per_response": 3},
        ends=("completed",),
    ),
    "always allow then policy": Scenario(
        [ADD, say("5"), ADD, say("5 again")],
        turns("2+3", "again", on_approval=always),
        {"tools": [add]},
        ends=("completed", "completed"),
    ),
    "rule allows some, denies others": Scenario(
        [
            use_tools(call("peek", {"name": "data/a.csv"}), call("peek", {"name": "/etc/passwd"})),
            say("ok"),
        ],
        turns("look", on_approval=by_rule),
        {"tools": [peek]},
        ends=("completed",),
    ),
    "mode none denies without asking": Scenario(
        [use_tools(call("add", {"a": 1, "b": 2}), call("peek", {"name": "x"})), say("done")],
        turns("go", on_approval=None),
        {"tools": [add, peek], "approval": "none"},
        ends=("completed",),
    ),
    "mode readonly asks only for side effects": Scenario(
        [use_tools(call("add", {"a": 1, "b": 2}), call("peek", {"name": "x"})), say("done")],
        turns("go"),
        {"tools": [add, peek], "approval": "readonly"},
        ends=("completed",),
    ),
    "malformed arguments": Scenario(
        [use_tools(call("add", '{"a": 2, "b": ')), say("Sorry."), say("Still here.")],
        turns("go", "Are you there?"),
        {"tools": [add]},
        ends=("completed", "completed"),
    ),
    "unknown tool": Scenario(
        [use_tools(call("multiply", {"a": 2})), say("Sorry.")],
        turns("go"),
        {"tools": [add]},
        ends=("completed",),
    ),
    "tool raises": Scenario(
        [use_tools(call("explode", {"reason": "that"})), say("It failed.")],
        turns("go"),
        {"tools": [explode]},
        ends=("completed",),
    ),
    "huge result truncated": Scenario(
        [use_tools(call("dump")), say("Big.")],
        turns("go"),
        {"tools": [dump], "max_result_chars": 5_000},
        ends=("completed",),
    ),
    "rate limit retried": Scenario(
        [http_error(429, retry_after=0), say("Done.")], turns("go"), ends=("completed",)
    ),
    "server errors exhaust retries": Scenario(
        [http_error(500)] * 3 + [say("Still here.")],
        turns("go", "Are you there?"),
        ends=("failed", "completed"),
    ),
    "broken stream keeps partial text": Scenario(
        [cut(after=3, text="one two three four five"), say("Still here.")],
        turns("go", "Are you there?"),
        ends=("failed", "completed"),
    ),
    "cancel mid-stream": Scenario(
        [stall(30, after=2, text="Partial answer that never ends"), say("Still here.")],
        cancel_after_two_deltas,
        ends=("cancelled", "completed"),
    ),
    "cancel at approval": Scenario(
        [ADD, say("Still here.")],
        cancel_at_approval,
        {"tools": [add]},
        ends=("cancelled", "completed"),
    ),
    "cancel a running tool": Scenario(
        [use_tools(call("slow")), say("Still here.")],
        cancel_a_running_tool,
        {"tools": [slow], "approval": "all"},
        ends=("cancelled", "completed"),
    ),
    "queued turn cancelled before it starts": Scenario(
        [say("first"), say("third")],
        queue_three_and_cancel_the_second,
        # the second turn ends (in the log too) when it is cancelled, before the first ends
        ends=("cancelled", "completed", "completed"),
    ),
    "max turns": Scenario(
        [use_tools(call("add", {"a": 1, "b": 1}))] * 2 + [say("Still here.")],
        turns("loop forever", "Are you there?"),
        {"tools": [add], "approval": "all", "max_turns": 2},
        ends=("max_turns", "completed"),
    ),
    "token budget exceeded": Scenario(
        [use_tools(call("add", {"a": 1, "b": 1}), usage=(900, 200))],
        turns("go"),
        {"tools": [add], "approval": "all", "budget": Budget(max_tokens=1_000)},
        ends=("budget_exceeded",),
    ),
    "token budget reached, continued": Scenario(
        [use_tools(call("add", {"a": 1, "b": 1}), usage=(900, 200)), say("2", usage=(10, 1))],
        at_budget(True),
        {"tools": [add], "approval": "all", "budget": Budget(max_tokens=1_000)},
        ends=("completed",),
    ),
    "token budget reached, stopped": Scenario(
        [use_tools(call("add", {"a": 1, "b": 1}), usage=(900, 200))],
        at_budget(False),
        {"tools": [add], "approval": "all", "budget": Budget(max_tokens=1_000)},
        ends=("budget_exceeded",),
    ),
    "kernel died at a budget pause": Scenario(
        [use_tools(call("add", {"a": 1, "b": 1}), usage=(900, 200))],
        die_at_a_budget_pause,
        {"tools": [add], "approval": "all", "budget": Budget(max_tokens=1_000)},
        ends=("completed",),
    ),
    "resume at a budget pause, continued": Scenario(
        [use_tools(call("add", {"a": 1, "b": 1}), usage=(900, 200))],
        resume_at_a_budget_pause,
        {"tools": [add], "approval": "all", "budget": Budget(max_tokens=1_000)},
        ends=("completed",),
    ),
    "cost budget exceeded": Scenario(
        [say("pricey", usage=(100_000, 100_000))],
        turns("go"),
        {"budget": Budget(max_cost_usd=0.01)},
        ends=("budget_exceeded",),
    ),
    "steer": Scenario(
        [ADD, say("ok")],
        turns("go", on_approval=steer_then_approve),
        {"tools": [add]},
        ends=("completed",),
    ),
    "hook edits the request": Scenario(
        [ADD, say("5")],
        turns("go"),
        {"tools": [add], "hooks": [EditsRequests()]},
        ends=("completed",),
    ),
    "failing hook": Scenario(
        [say("never sent")], turns("go"), {"hooks": [Broken()]}, ends=("failed",)
    ),
    "resume after the kernel died": Scenario(
        [TWO_SUMS], resume_after_the_kernel_died, {"tools": [add]}, ends=("completed",)
    ),
    "undo": Scenario(
        [say("one"), say("two"), say("three")],
        undo_the_last_turn,
        ends=("completed", "completed", "completed"),
    ),
    "re-run a cell": Scenario(
        [say("one"), say("two"), say("one again")],
        rerun_a_cell,
        ends=("completed", "completed", "completed"),
    ),
    "compact": Scenario(
        [say("a"), say("b"), say("Summary: a"), say("c")],
        compact_older_turns,
        ends=("completed", "completed", "completed"),
    ),
}


@dataclass
class Backend:
    """Where the scripted replies are served: in memory, or over HTTP through litellm."""

    server: ScriptedServer | None

    def model(self, replies: list[Reply]) -> ScriptedModel | str:
        if self.server is None:
            return ScriptedModel(replies, usd_per_1k_tokens=0.01)
        self.server.add(*replies)
        return MODEL

    def options(self) -> dict[str, Any]:
        if self.server is None:
            return {"retry": FAST_RETRY}
        return {"retry": FAST_RETRY, "api_base": self.server.url, "api_key": KEY}


@pytest.fixture(params=["memory", "http"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend(None)
    return Backend(request.getfixturevalue("server"))


def run_statuses(log: Path) -> list[str]:
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    return [
        r["event"]["status"]
        for r in records
        if r["type"] == "event" and r["event"]["kind"] == "run_finished"
    ]


def cases() -> list[Any]:
    return [
        pytest.param(
            name,
            id=re.sub(r"[^a-z0-9]+", "-", name).strip("-"),  # easy to pick with -k
        )
        for name in SCENARIOS
    ]


@pytest.mark.parametrize("name", cases())
async def test_the_restored_conversation_equals_the_live_one(
    name: str, backend: Backend, tmp_path: Path
) -> None:
    scenario = SCENARIOS[name]
    options = {**backend.options(), **scenario.options}
    store = SessionStore(tmp_path)
    session = Session(backend.model(scenario.replies), **options)
    live = Live(session, attach(session, store.open("s")), store, backend.model, options)
    try:
        await scenario.play(live)
    finally:
        await live.recorder.aclose()
        await live.session.aclose()
        await session.aclose()
    assert run_statuses(tmp_path / "s.jsonl") == list(scenario.ends)
    state = SessionStore(tmp_path).load("s")
    assert state.messages == live.session.messages
    assert state.usage == live.session.usage
    assert state.runs == live.session.runs
    assert state.conversation.ended == live.session.conversation.ended  # history's marks
