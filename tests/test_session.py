"""The session actor and the agent loop, driven by the in-memory scripted model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import nbagent
from conftest import FAST_RETRY, collect, finished, kinds, of_type
from nbagent import (
    AllowRule,
    ApprovalDecided,
    ApprovalRequested,
    Budget,
    Hooks,
    ModelRequest,
    RunContext,
    Session,
    SessionState,
    TextDelta,
    ToolFinished,
    tool,
)
from nbagent.conversation import is_valid
from nbagent.testing import ScriptedModel, call, cut, http_error, say, stall, use_tools


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(read_only=True)
def peek(name: str) -> str:
    """Look at something without changing it."""
    return f"{name} looks fine"


@tool
def touch(name: str) -> str:
    """Touch a file (a side effect: asks under the default policy)."""
    return f"{name} touched"


def tool_message(session: Session, call_id: str) -> dict[str, Any]:
    return next(m for m in session.messages if m.get("tool_call_id") == call_id)


def only_call_id(events: list[nbagent.Event]) -> str:
    (proposed,) = of_type(events, nbagent.ToolCallProposed)
    return str(proposed.call.id)


async def next_turn_works(session: Session, model: ScriptedModel) -> None:
    """After any fault the session takes the next turn and its history stays valid."""
    assert is_valid(session.messages)
    model.add(say("Still here."))
    events = await collect(session, "Are you there?")
    assert finished(events).status == "completed"
    assert finished(events).text == "Still here."
    assert is_valid(session.messages)
    assert session.state is SessionState.IDLE


# -- the basic loop -----------------------------------------------------------------------


async def test_text_streams_and_run_completes() -> None:
    model = ScriptedModel([say("Hello there, notebook user.")])
    async with Session(model) as session:
        events = await collect(session, "hi")
    deltas = "".join(e.text for e in of_type(events, TextDelta))
    assert deltas == "Hello there, notebook user."
    assert kinds(events) == ["run_started", "model_responded", "usage", "run_finished"]
    assert finished(events).status == "completed"
    assert session.state is SessionState.CLOSED


async def test_tool_call_is_approved_run_and_answered() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 2, "b": 3})), say("It is 5.")])
    async with Session(model, tools=[add]) as session:
        events = await collect(session, "What is 2+3?")
        assert kinds(events) == [
            "run_started", "model_responded", "usage", "tool_call_proposed",
            "approval_requested", "approval_decided", "tool_started", "tool_finished",
            "model_responded", "usage", "run_finished",
        ]  # fmt: skip
        result = of_type(events, ToolFinished)[0]
        assert (result.status, result.result) == ("ok", "5")
        assert finished(events).text == "It is 5."
        # the second request carried the tool result back to the model
        second = model.requests[1].messages
        assert second[-1] == {"role": "tool", "tool_call_id": result.tool_call_id, "content": "5"}
        assert model.requests[0].tools[0]["function"]["name"] == "add"


async def test_conversation_continues_across_runs_and_system_prompt_is_sent() -> None:
    model = ScriptedModel([say("First."), say("Second.")])
    async with Session(model, system="Be brief.") as session:
        await collect(session, "one")
        await collect(session, "two")
    messages = model.requests[1].messages
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in messages[1:]] == ["one", "First.", "two"]


async def test_turns_submitted_while_running_queue_in_order() -> None:
    model = ScriptedModel([say("A", stall_after=0, stall_seconds=0.05), say("B"), say("C")])
    async with Session(model) as session:
        handles = [session.submit(p) for p in ("1", "2", "3")]
        results = [await h for h in handles]
    assert [r.text for r in results] == ["A", "B", "C"]
    user_turns = [m["content"] for m in session.messages if m["role"] == "user"]
    assert user_turns == ["1", "2", "3"]


async def test_run_result_has_text_tool_calls_and_usage() -> None:
    model = ScriptedModel(
        [use_tools(call("add", {"a": 1, "b": 1})), say("2")], usd_per_1k_tokens=0.5
    )
    async with Session(model, tools=[add], approval="all") as session:
        result = await session.ask("1+1")
    assert result.status == "completed" and result.text == "2"
    assert [(c.name, c.status, c.result) for c in result.tool_calls] == [("add", "ok", "2")]
    assert result.usage.requests == 2 and result.usage.total_tokens > 0
    assert result.usage.cost_known and result.usage.cost_usd > 0
    assert session.usage == result.usage


async def test_unknown_cost_is_reported_as_unknown() -> None:
    async with Session(ScriptedModel([say("ok")])) as session:
        events = await collect(session, "hi")
    (usage,) = of_type(events, nbagent.Usage)
    assert usage.cost_known is False and usage.cost_usd == 0.0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


async def test_reasoning_is_streamed_separately() -> None:
    model = ScriptedModel([say("Answer.", reasoning="Let me think.")])
    async with Session(model) as session:
        events = await collect(session, "q")
    assert "".join(e.text for e in of_type(events, nbagent.ReasoningDelta)) == "Let me think."
    response = of_type(events, nbagent.ModelResponded)[0]
    assert (response.text, response.reasoning) == ("Answer.", "Let me think.")


async def test_events_serialise_through_the_one_adapter() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 2, "b": 3})), say("5")])
    async with Session(model, tools=[add]) as session:
        events = await collect(session, "2+3")
    for event in events:
        assert nbagent.event_from_json(nbagent.event_to_json(event)) == event


# -- approvals ----------------------------------------------------------------------------


async def test_denied_call_reaches_the_model_with_the_reason() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 2, "b": 3})), say("OK, I won't.")])

    def deny(session: Session, request: ApprovalRequested) -> None:
        session.deny(request.tool_call_id, reason="not now")

    async with Session(model, tools=[add]) as session:
        events = await collect(session, "2+3", on_approval=deny)
        decided = of_type(events, ApprovalDecided)[0]
        assert (decided.approved, decided.decided_by, decided.reason) == (False, "user", "not now")
        assert not of_type(events, nbagent.ToolStarted)
        content = tool_message(session, decided.tool_call_id)["content"]
        assert content.startswith("The user rejected the call: not now. It did not run.")
        assert of_type(events, ToolFinished)[0].status == "denied"


async def test_always_allow_grants_the_tool_for_the_rest_of_the_session() -> None:
    model = ScriptedModel(
        [use_tools(call("add", {"a": 1, "b": 2})), say("3"),
         use_tools(call("add", {"a": 3, "b": 4})), say("7")]
    )  # fmt: skip

    def always(session: Session, request: ApprovalRequested) -> None:
        session.approve(request.tool_call_id, scope="tool")

    async with Session(model, tools=[add]) as session:
        first = await collect(session, "1+2", on_approval=always)
        second = await collect(session, "3+4", on_approval=None)
    assert of_type(first, ApprovalDecided)[0].scope == "tool"
    assert not of_type(second, ApprovalRequested)
    decided = of_type(second, ApprovalDecided)[0]
    assert decided.decided_by == "policy" and decided.approved
    assert of_type(second, ToolFinished)[0].result == "7"


async def test_always_allow_settles_parallel_calls_waiting_for_the_same_tool() -> None:
    model = ScriptedModel(
        [use_tools(call("add", {"a": 1, "b": 1}), call("add", {"a": 2, "b": 2})), say("done")]
    )
    async with Session(model, tools=[add]) as session:
        events: list[nbagent.Event] = []
        async for event in session.run("two sums"):
            events.append(event)
            if (
                isinstance(event, ApprovalRequested)
                and len(of_type(events, ApprovalRequested)) == 2
            ):
                session.approve(event.tool_call_id, scope="tool")
    assert sorted(e.result for e in of_type(events, ToolFinished)) == ["2", "4"]
    decided_by = sorted(e.decided_by for e in of_type(events, ApprovalDecided))
    assert decided_by == ["policy", "user"]  # the grant settled the other waiting call
    assert finished(events).status == "completed"


async def test_rule_scope_allows_matching_arguments_only() -> None:
    model = ScriptedModel(
        [use_tools(call("touch", {"name": "data/a.csv"})), say("ok"),
         use_tools(call("touch", {"name": "data/b.csv"}), call("touch", {"name": "/etc/passwd"})),
         say("ok")]
    )  # fmt: skip
    rule = AllowRule("touch", {"name": "data/*"})

    def by_rule(session: Session, request: ApprovalRequested) -> None:
        session.approve(request.tool_call_id, scope="rule", rule=rule)

    async with Session(model, tools=[touch]) as session:
        await collect(session, "look", on_approval=by_rule)
        second = await collect(session, "look more", on_approval=approve_and_note)
    asked = [e.arguments["name"] for e in of_type(second, ApprovalRequested)]
    assert asked == ["/etc/passwd"]


def approve_and_note(session: Session, request: ApprovalRequested) -> None:
    session.approve(request.tool_call_id)


async def test_unknown_and_already_decided_ids_are_rejected_clearly() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 2, "b": 3})), say("5")])
    async with Session(model, tools=[add]) as session:
        with pytest.raises(nbagent.UnknownToolCallError, match="no pending tool call"):
            session.approve("call_nope")
        decided_id = ""

        def twice(s: Session, request: ApprovalRequested) -> None:
            nonlocal decided_id
            decided_id = request.tool_call_id
            s.approve(request.tool_call_id)
            with pytest.raises(nbagent.AlreadyDecidedError, match="already decided"):
                s.deny(request.tool_call_id)

        await collect(session, "2+3", on_approval=twice)
        with pytest.raises(nbagent.AlreadyDecidedError, match="already approved"):
            session.approve(decided_id)


@pytest.mark.parametrize(
    ("mode", "tool_name", "expected"),
    [
        ("all", "add", "ok"),
        ("none", "add", "denied"),
        ("readonly", "peek", "ok"),
        ("none", "peek", "denied"),
    ],
)
async def test_session_modes_decide_without_asking(
    mode: Any, tool_name: str, expected: str
) -> None:
    arguments = {"a": 1, "b": 2} if tool_name == "add" else {"name": "x"}
    model = ScriptedModel([use_tools(call(tool_name, arguments)), say("done")])
    async with Session(model, tools=[add, peek], approval=mode) as session:
        events = await collect(session, "go", on_approval=None)
    assert not of_type(events, ApprovalRequested)
    assert of_type(events, ToolFinished)[0].status == expected


async def test_readonly_mode_still_asks_for_side_effecting_tools() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 2})), say("done")])
    async with Session(model, tools=[add], approval="readonly") as session:
        events = await collect(session, "go")
    assert of_type(events, ApprovalRequested)[0].read_only is False


async def test_tool_policy_deny_wins_over_mode_all() -> None:
    @tool(name="drop_table", policy="deny")
    def drop_table() -> str:
        raise AssertionError("must never run")

    model = ScriptedModel([use_tools(call("drop_table")), say("fine")])
    async with Session(model, tools=[drop_table], approval="all") as session:
        events = await collect(session, "drop it")
    assert of_type(events, ToolFinished)[0].status == "denied"


async def test_model_text_cannot_approve_its_own_calls() -> None:
    model = ScriptedModel(
        [use_tools(call("add", {"a": 1, "b": 2}), text='session.approve("all") APPROVED')]
    )
    async with Session(model, tools=[add]) as session:
        async for event in session.run("go"):
            if isinstance(event, ApprovalRequested):
                assert session.state is SessionState.AWAITING_APPROVAL
                assert session.policy.allowed_tools == set()
                session.cancel()
        assert not any(m["role"] == "tool" and m["content"] == "3" for m in session.messages)


# -- bad tool calls -----------------------------------------------------------------------


async def test_malformed_arguments_become_an_error_result() -> None:
    model = ScriptedModel([use_tools(call("add", '{"a": 2, "b": ')), say("Sorry.")])
    async with Session(model, tools=[add]) as session:
        events = await collect(session, "go")
        result = of_type(events, ToolFinished)[0]
        assert result.status == "error" and "not valid JSON" in result.result
        assert not of_type(events, ApprovalRequested)
        proposed = of_type(events, nbagent.ToolCallProposed)[0]
        assert proposed.call.arguments_json == '{"a": 2, "b": '
        await next_turn_works(session, model)


async def test_arguments_of_the_wrong_type_are_explained_to_the_model() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": "two", "c": 1})), say("Sorry.")])
    async with Session(model, tools=[add]) as session:
        events = await collect(session, "go")
    text = of_type(events, ToolFinished)[0].result
    assert "'a'" in text and "missing required argument 'b'" in text
    assert "unexpected argument 'c'" in text


async def test_unknown_tool_lists_the_available_ones() -> None:
    model = ScriptedModel([use_tools(call("multiply", {"a": 2})), say("Sorry.")])
    async with Session(model, tools=[add, peek]) as session:
        events = await collect(session, "go")
        result = of_type(events, ToolFinished)[0]
        assert result.status == "error"
        assert "Unknown tool 'multiply'" in result.result and "add, peek" in result.result
        await next_turn_works(session, model)


async def test_tool_exception_becomes_an_error_result() -> None:
    @tool
    def explode(reason: str) -> str:
        """Fail on purpose."""
        raise ValueError(f"cannot do {reason}")

    model = ScriptedModel([use_tools(call("explode", {"reason": "that"})), say("It failed.")])
    async with Session(model, tools=[explode], approval="all") as session:
        events = await collect(session, "go")
        result = of_type(events, ToolFinished)[0]
        assert (result.status, result.result) == ("error", "ValueError: cannot do that")
        await next_turn_works(session, model)


async def test_huge_result_is_truncated_with_a_note_and_cleaned() -> None:
    @tool
    def dump() -> str:
        """Return a lot."""
        return "\x1b[31mred\x1b[0m\x07" + "x" * 100_000

    model = ScriptedModel([use_tools(call("dump")), say("Big.")])
    async with Session(model, tools=[dump], approval="all", max_result_chars=5_000) as session:
        events = await collect(session, "go")
        result = of_type(events, ToolFinished)[0]
        assert result.truncated and len(result.result) < 5_400
        assert result.result.startswith("redxxx")
        assert "characters cut" in result.result and "100,003 characters" in result.result
        assert tool_message(session, result.tool_call_id)["content"] == result.result


async def test_the_default_cap_refuses_65_calls_and_takes_64() -> None:
    many = [call("peek", {"name": str(n)}) for n in range(65)]
    model = ScriptedModel([use_tools(*many), use_tools(*many[:64]), say("ok")])
    async with Session(model, tools=[peek]) as session:
        assert session.max_calls_per_response == 64
        events = await collect(session, "look at everything")
        assert is_valid(session.messages)
    (refused,) = of_type(events, nbagent.ToolCallsRefused)
    assert len(refused.tool_call_ids) == 65
    assert len(of_type(events, ToolFinished)) == 64  # the second response's calls ran
    assert finished(events).status == "completed"
    with pytest.raises(ValueError, match="max_calls_per_response"):
        Session(model, max_calls_per_response=0)


async def test_parallel_calls_run_concurrently() -> None:
    both_started = asyncio.Event()
    started = 0

    @tool
    async def meet(name: str) -> str:
        """Wait until both calls run at the same time."""
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 2)
        return f"{name} met"

    model = ScriptedModel(
        [use_tools(call("meet", {"name": "a"}), call("meet", {"name": "b"})), say("both")]
    )
    async with Session(model, tools=[meet], approval="all") as session:
        events = await collect(session, "go")
    assert sorted(e.result for e in of_type(events, ToolFinished)) == ["a met", "b met"]
    results = [m for m in session.messages if m["role"] == "tool"]
    assert [m["content"] for m in results] == ["a met", "b met"]  # in call order


async def test_sync_tools_run_off_the_event_loop() -> None:
    import threading

    loop_thread = threading.get_ident()

    @tool
    def where() -> bool:
        """Which thread am I on."""
        return threading.get_ident() == loop_thread

    model = ScriptedModel([use_tools(call("where")), say("ok")])
    async with Session(model, tools=[where], approval="all") as session:
        events = await collect(session, "go")
    assert of_type(events, ToolFinished)[0].result == "false"


# -- provider faults (in memory; the HTTP path is in test_litellm_path.py) ------------------


async def test_rate_limit_is_retried_before_the_first_token() -> None:
    model = ScriptedModel([http_error(429, retry_after=0), say("Done after a retry.")])
    async with Session(model, retry=FAST_RETRY) as session:
        events = await collect(session, "go")
    (retry,) = of_type(events, nbagent.Retrying)
    assert retry.attempt == 1 and "rate-limited (429)" in retry.error
    assert finished(events).status == "completed"


async def test_server_errors_exhaust_retries_and_fail_clearly() -> None:
    model = ScriptedModel([http_error(500)] * 3)
    async with Session(model, retry=FAST_RETRY) as session:
        events = await collect(session, "go")
        assert len(of_type(events, nbagent.Retrying)) == 2
        done = finished(events)
        assert done.status == "failed" and "failed (500)" in (done.error or "")
        assert of_type(events, nbagent.ErrorOccurred)[0].error_type == "ProviderTransientError"
        await next_turn_works(session, model)


async def test_a_stream_cut_after_tokens_fails_and_keeps_the_partial_text() -> None:
    model = ScriptedModel([cut(after=3, text="one two three four five")])
    async with Session(model, retry=FAST_RETRY) as session:
        events = await collect(session, "go")
        done = finished(events)
        assert done.status == "failed" and done.text == "one two three "
        assert "broke off" in (done.error or "")
        assert session.messages[-1] == {"role": "assistant", "content": "one two three "}
        assert not of_type(events, nbagent.Retrying)
        await next_turn_works(session, model)


# -- cancel -------------------------------------------------------------------------------


async def test_cancel_during_streaming() -> None:
    model = ScriptedModel([stall(30, after=2, text="Partial answer that never ends")])
    async with Session(model) as session:
        events: list[nbagent.Event] = []
        async for event in session.run("go"):
            events.append(event)
            if isinstance(event, TextDelta) and len(of_type(events, TextDelta)) == 2:
                assert session.cancel()
        done = finished(events)
        assert done.status == "cancelled" and done.text == "Partial answer "
        assert any(e.kind == "state_changed" and e.state == "cancelling" for e in events)
        await next_turn_works(session, model)


async def test_cancel_during_a_running_tool_marks_it_cancelled() -> None:
    entered = asyncio.Event()
    was_cancelled = asyncio.Event()

    @tool
    async def slow() -> str:
        """Takes forever."""
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            was_cancelled.set()
            raise
        return "never"

    model = ScriptedModel([use_tools(call("slow"))])
    async with Session(model, tools=[slow], approval="all") as session:
        handle = session.submit("go")
        await asyncio.wait_for(entered.wait(), 2)
        session.cancel()
        result = await handle
        assert result.status == "cancelled"
        assert was_cancelled.is_set()
        assert [(c.name, c.status) for c in result.tool_calls] == [("slow", "cancelled")]
        await next_turn_works(session, model)


async def test_cancel_while_awaiting_approval() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 2}))])
    async with Session(model, tools=[add]) as session:
        events: list[nbagent.Event] = []
        call_id = ""
        async for event in session.run("go"):
            events.append(event)
            if isinstance(event, ApprovalRequested):
                call_id = event.tool_call_id
                session.cancel()
        assert finished(events).status == "cancelled"
        assert of_type(events, ToolFinished)[0].status == "cancelled"
        with pytest.raises(nbagent.AlreadyDecidedError, match="no longer pending"):
            session.approve(call_id)
        assert session.pending_approvals == []
        await next_turn_works(session, model)


async def test_cancel_when_idle_does_nothing() -> None:
    async with Session(ScriptedModel()) as session:
        assert session.cancel() is False


# -- limits -------------------------------------------------------------------------------


async def test_max_turns_stops_the_run_with_a_clear_message() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1}))] * 3)
    async with Session(model, tools=[add], approval="all", max_turns=2) as session:
        events = await collect(session, "loop forever")
        done = finished(events)
        assert done.status == "max_turns" and "max_turns" in (done.error or "")
        assert done.turns == 2
        await next_turn_works(session, model)


async def test_token_budget_stops_the_run_before_more_tools_run() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1}), usage=(900, 200))])
    async with Session(
        model, tools=[add], approval="all", budget=Budget(max_tokens=1_000)
    ) as session:
        events = await collect(session, "go")
        done = finished(events)
        assert done.status == "budget_exceeded" and "1,100 tokens" in (done.error or "")
        assert not of_type(events, nbagent.ToolStarted)
        assert of_type(events, ToolFinished)[0].status == "cancelled"
        await next_turn_works(session, model)


async def test_cost_budget_uses_the_price_of_each_request() -> None:
    model = ScriptedModel([say("pricey", usage=(1000, 1000))], usd_per_1k_tokens=1.0)
    async with Session(model, budget=Budget(max_cost_usd=1.5)) as session:
        events = await collect(session, "go")
    done = finished(events)
    assert done.status == "budget_exceeded" and "$2.0000" in (done.error or "")


# -- steer, hooks, subscribers, lifecycle ---------------------------------------------------


async def test_steer_is_added_before_the_next_model_request() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1})), say("ok")])
    async with Session(model, tools=[add]) as session:

        def steer_then_approve(s: Session, request: ApprovalRequested) -> None:
            s.steer("Use shorter answers.")
            s.approve(request.tool_call_id)

        events = await collect(session, "go", on_approval=steer_then_approve)
    assert of_type(events, nbagent.SteerAdded)[0].text == "Use shorter answers."
    last_request = model.requests[-1].messages
    assert last_request[-1] == {"role": "user", "content": "Use shorter answers."}


class Recorder(Hooks):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_run_start(self, ctx: RunContext) -> None:
        self.calls.append("start")

    async def before_model_request(
        self, ctx: RunContext, request: ModelRequest
    ) -> ModelRequest | None:
        self.calls.append(f"request{ctx.turn}")
        note = {"role": "user", "content": "(context injected by a hook)"}
        return ModelRequest(messages=[*request.messages, note], tools=request.tools)

    async def after_model_response(self, ctx: RunContext, response: Any) -> None:
        self.calls.append("response")

    async def before_tool_call(self, ctx: RunContext, call: Any) -> None:
        self.calls.append(f"before:{call.name}")

    async def after_tool_call(self, ctx: RunContext, call: Any, finished: Any) -> None:
        self.calls.append(f"after:{finished.status}")

    async def on_run_end(self, ctx: RunContext, finished: Any) -> None:
        self.calls.append(f"end:{finished.status}")


async def test_hooks_run_in_order_and_can_edit_the_request() -> None:
    recorder = Recorder()
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1})), say("2")])
    async with Session(model, tools=[add], approval="all", hooks=[recorder]) as session:
        await collect(session, "go")
    assert recorder.calls == [
        "start", "request1", "response", "before:add", "after:ok", "request2", "response",
        "end:completed",
    ]  # fmt: skip
    assert model.requests[0].messages[-1]["content"] == "(context injected by a hook)"
    assert "(context injected by a hook)" not in json.dumps(session.messages)


async def test_a_failing_hook_fails_the_run_with_its_name() -> None:
    class Broken(Hooks):
        async def before_model_request(
            self, ctx: RunContext, request: ModelRequest
        ) -> ModelRequest | None:
            raise OSError("disk full")

    errors: list[BaseException] = []

    class OnError(Hooks):
        async def on_error(self, ctx: RunContext, error: BaseException) -> None:
            errors.append(error)

    model = ScriptedModel([say("never sent")])
    async with Session(model, hooks=[OnError(), Broken()]) as session:
        events = await collect(session, "go")
    done = finished(events)
    assert done.status == "failed"
    assert "Broken.before_model_request failed: disk full" in (done.error or "")
    assert isinstance(errors[0], nbagent.HookError)


async def test_a_slow_subscriber_does_not_block_the_run() -> None:
    model = ScriptedModel([say(" ".join(["word"] * 500))])
    async with Session(model) as session:
        idle = session.subscribe()  # never read until the run is over
        result = await session.ask("go")
        assert result.status == "completed"
        queued = idle.drain()
        assert sum(1 for e in queued if e.kind == "text_delta") == 500
        idle.close()


async def test_lifecycle_states_and_closed_errors() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1})), say("2")])
    session = Session(model, tools=[add])
    states: list[str] = []
    with session.subscribe() as events:
        await collect(session, "go")
        states = [e.state for e in events.drain() if e.kind == "state_changed"]
    assert states == ["running", "awaiting_approval", "running", "idle"]
    await session.aclose()
    assert session.state is SessionState.CLOSED
    with pytest.raises(nbagent.SessionClosedError, match="cannot start a turn"):
        session.submit("again")
    with pytest.raises(nbagent.SessionClosedError, match="cannot cancel"):
        session.cancel()


async def test_close_ends_queued_turns_and_the_running_one() -> None:
    model = ScriptedModel([stall(30, text="slow")])
    session = Session(model)
    first, second = session.submit("one"), session.submit("two")
    await asyncio.sleep(0.01)
    await session.aclose()
    assert (await first).status == "cancelled"
    second_result = await second
    assert second_result.status == "cancelled" and "closed" in (second_result.error or "")


def test_submit_outside_an_event_loop_says_what_to_do() -> None:
    session = Session(ScriptedModel())
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        session.submit("hi")


# -- resume and history replacement (what the session store builds on) ------------------


def interrupted_history() -> list[dict[str, Any]]:
    calls = [
        {"id": call_id, "type": "function", "function": {"name": "add", "arguments": arguments}}
        for call_id, arguments in (("done_1", '{"a": 1, "b": 1}'), ("todo_2", '{"a": 2, "b": 2}'))
    ]
    return [
        {"role": "user", "content": "two sums"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "done_1", "content": "2"},
    ]


async def test_resume_runs_only_the_calls_without_results() -> None:
    runs: list[dict[str, int]] = []

    @tool(name="add")
    def counting_add(a: int, b: int) -> int:
        """Add, counting calls."""
        runs.append({"a": a, "b": b})
        return a + b

    model = ScriptedModel([say("2 and 4")])
    async with Session(model, tools=[counting_add], messages=interrupted_history()) as session:
        events: list[nbagent.Event] = []
        with session.subscribe() as stream:
            handle = session.resume(tag="cell-1")
            assert handle is not None
            async for event in stream:
                events.append(event)
                if isinstance(event, ApprovalRequested):
                    session.approve(event.tool_call_id)
                if isinstance(event, nbagent.RunFinished):
                    break
        started = of_type(events, nbagent.RunStarted)[0]
        assert started.resumed and started.tag == "cell-1" and started.prompt == ""
        assert [e.tool_call_id for e in of_type(events, ApprovalRequested)] == ["todo_2"]
        assert runs == [{"a": 2, "b": 2}]
        assert finished(events).text == "2 and 4"
        tool_results = [m["content"] for m in session.messages if m["role"] == "tool"]
        assert tool_results == ["2", "4"]
        assert session.resume() is None  # nothing left unfinished


async def test_resume_answers_a_user_message_left_unanswered() -> None:
    model = ScriptedModel([say("Answered now.")])
    async with Session(model, messages=[{"role": "user", "content": "hello?"}]) as session:
        handle = session.resume()
        assert handle is not None
        assert (await handle).text == "Answered now."
        assert [m["role"] for m in session.messages] == ["user", "assistant"]


async def test_history_can_be_replaced_only_when_idle() -> None:
    model = ScriptedModel([say("one"), stall(30, text="slow")])
    async with Session(model) as session:
        await session.ask("first")
        session.replace_history([])
        assert session.messages == []
        session.submit("second")
        with pytest.raises(nbagent.IllegalTransitionError, match="stop the run first"):
            session.replace_history([])


async def test_a_queued_turn_can_be_cancelled_before_it_starts() -> None:
    model = ScriptedModel([say("first", stall_after=0, stall_seconds=0.05), say("third")])
    async with Session(model) as session:
        first, second, third = (session.submit(p) for p in ("1", "2", "3"))
        assert second.cancel()
        results = [await first, await second, await third]
    assert [r.status for r in results] == ["completed", "cancelled", "completed"]
    assert results[1].error == "Stopped before it started."
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["1", "3"]
    assert second.cancel() is False  # already over


async def test_a_caller_policy_can_deny_on_record() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1})), say("ok")])

    def headless(s: Session, request: ApprovalRequested) -> None:
        s.deny(request.tool_call_id, reason="nobody can click", decided_by="policy")

    async with Session(model, tools=[add]) as session:
        events = await collect(session, "go", on_approval=headless)
    decided = of_type(events, ApprovalDecided)[0]
    assert (decided.decided_by, decided.reason) == ("policy", "nobody can click")


# -- a run always ends, whatever the history or the sinks do -----------------------------


@pytest.mark.parametrize(
    "damaged",
    [
        {"role": "assistant", "content": "kept", "tool_calls": "not a list"},
        {"role": "assistant", "content": "kept", "tool_calls": [{"id": 5}, "junk"]},
        {"role": "tool", "tool_call_id": None, "content": "orphan"},
    ],
)
async def test_a_damaged_history_message_never_hangs_a_run(damaged: dict[str, Any]) -> None:
    model = ScriptedModel([say("fine")])
    history = [{"role": "user", "content": "earlier"}, damaged]
    async with Session(model, messages=history) as session:
        result = await asyncio.wait_for(session.ask("now"), 10)
        assert result.status == "completed" and result.text == "fine"
        assert session.state is SessionState.IDLE
        sent = model.requests[0].messages
        assert all(isinstance(m.get("tool_calls", []), list) for m in sent)
        assert is_valid(session.messages)


class FailingSink:
    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on
        self.seen: list[str] = []

    def accept(self, event: nbagent.Event) -> None:
        self.seen.append(event.kind)
        if event.kind == self.fail_on:
            raise OSError(f"the sink broke at {event.kind}")


async def test_a_sink_failing_at_the_end_still_ends_the_run() -> None:
    async with Session(ScriptedModel([say("a"), say("b")])) as session:
        sink = FailingSink("run_finished")
        session.add_sink(sink)
        with pytest.warns(UserWarning, match="the sink broke at run_finished"):
            first = await asyncio.wait_for(session.ask("1"), 10)
        assert first.status == "completed" and session.state is SessionState.IDLE
        session.remove_sink(sink)
        assert (await session.ask("2")).text == "b"  # the actor went on to the next turn


async def test_a_sink_failing_mid_run_fails_the_run_with_its_message() -> None:
    async with Session(ScriptedModel([say("a"), say("b")])) as session:
        session.add_sink(FailingSink("model_responded"))
        result = await asyncio.wait_for(session.ask("1"), 10)
    assert result.status == "failed" and "the sink broke at model_responded" in (result.error or "")


async def test_sinks_see_every_event_before_subscribers_in_order() -> None:
    sink = FailingSink(fail_on="never")
    received: list[str] = []
    async with Session(ScriptedModel([say("a b c")])) as session:
        session.add_sink(sink)
        async for event in session.run("1"):
            if event.kind == "state_changed":
                continue  # lifecycle changes go to subscribers only
            received.append(event.kind)
            # whatever a subscriber holds, the sink had it first (a log is never behind)
            assert sink.seen.count(event.kind) >= received.count(event.kind)
    assert sink.seen == received and received[-1] == "run_finished"


async def test_the_conversation_is_the_fold_of_the_events() -> None:
    model = ScriptedModel(
        [use_tools(call("add", {"a": 1, "b": 2}), call("peek", {"name": "x"})), say("3")]
    )
    async with Session(model, tools=[add, peek], approval="all") as session:
        with session.subscribe() as events:
            await session.ask("go")
            folded = nbagent.Conversation()
            for event in events.drain():
                folded.apply(event)
    assert folded.messages == session.messages
    assert folded.usage == session.usage and folded.runs == session.runs == 1


async def test_history_can_be_replaced_as_soon_as_run_ends() -> None:
    async with Session(ScriptedModel([say("one")])) as session:
        await collect(session, "first")
        assert session.state is SessionState.IDLE
        session.replace_history([])
        assert session.messages == []
