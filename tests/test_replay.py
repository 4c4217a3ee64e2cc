"""Record and replay of model responses by request fingerprint."""

from __future__ import annotations

import nbagent
from conftest import collect, finished, of_type
from nbagent import ApprovalRequested, Session, ToolFinished, tool
from nbagent.model import ModelRequest
from nbagent.replay import RecordBook, Recorded, ReplayModel, RequestKey
from nbagent.testing import ScriptedModel, call, say, use_tools

calls: list[int] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    calls.append(a + b)
    return a + b


@tool(read_only=True)
def peek(name: str) -> str:
    """Look without touching."""
    return f"{name} is fine"


def script() -> list[nbagent.testing.Reply]:
    return [use_tools(call("add", {"a": 2, "b": 3})), say("It is 5.")]


async def ask_traced(
    session: Session, book: RecordBook, prompt: str
) -> tuple[nbagent.RunResult, list[Recorded]]:
    """Run a turn; also return the recorded entries its responses came from or went to
    (each response's provenance names its entry)."""
    with session.subscribe() as events:
        result = await session.ask(prompt)
        responses = [e for e in events.drain() if isinstance(e, nbagent.ModelResponded)]
    entries = [book.get(r.provenance.fingerprint) for r in responses if r.provenance]
    return result, [e for e in entries if e is not None]


async def record(book: RecordBook, prompt: str = "2+3?") -> list[Recorded]:
    model = ReplayModel(ScriptedModel(script()), book)
    async with Session(model, tools=[add], approval="all") as session:
        result, used = await ask_traced(session, book, prompt)
    assert result.text == "It is 5."
    return used


async def test_a_recorded_run_replays_offline_and_tools_run_again() -> None:
    book = RecordBook()
    recorded = await record(book)
    assert len(recorded) == 2 and len(book) == 2
    calls.clear()
    offline = ReplayModel(ScriptedModel(), book, "replay")  # the inner model has nothing
    async with Session(offline, tools=[add], approval="all") as session:
        result, used = await ask_traced(session, book, "2+3?")
    assert result.text == "It is 5." and calls == [5]  # the tool ran again, for real
    assert [e.fingerprint for e in used] == [e.fingerprint for e in recorded]
    assert result.usage.total_tokens == sum(sum(e.usage) for e in recorded)


async def test_a_replay_shows_the_recorded_cost_whatever_the_prices_are_now() -> None:
    book = RecordBook()
    model = ReplayModel(ScriptedModel(script(), usd_per_1k_tokens=0.5), book)
    async with Session(model, tools=[add], approval="all") as session:
        live, recorded = await ask_traced(session, book, "2+3?")
    assert [e.cost for e in recorded] == [sum(e.usage) * 0.5 / 1000 for e in recorded]
    assert Recorded.from_json(recorded[0].to_json(), "here").cost == recorded[0].cost
    # replayed where the price map says something else (or the model is unknown): same cost
    for price in (5.0, None):
        offline = ReplayModel(ScriptedModel(usd_per_1k_tokens=price), book, "replay")
        async with Session(offline, tools=[add], approval="all") as session:
            again = await session.ask("2+3?")
        assert again.usage.cost_usd == live.usage.cost_usd > 0 and again.usage.cost_known


async def test_a_changed_message_fails_replay_mode_with_what_differs() -> None:
    book = RecordBook()
    await record(book)
    offline = ReplayModel(ScriptedModel(), book, "replay")
    async with Session(offline, tools=[add], approval="all") as session:
        result = await session.ask("2+4?")
    assert result.status == "failed"
    assert "message 1 (user) differs" in (result.error or "")
    assert "content" in (result.error or "") and "2+4?" in (result.error or "")


async def test_auto_mode_goes_live_for_what_was_never_recorded() -> None:
    book = RecordBook()
    await record(book)
    live = ScriptedModel([say("Six.")])
    model = ReplayModel(live, book, "auto")
    async with Session(model) as session:
        assert (await session.ask("2+4?")).text == "Six."
    assert len(live.requests) == 1 and len(book) == 3


async def test_live_mode_records_nothing_and_record_mode_ignores_recordings() -> None:
    book = RecordBook()
    await record(book)
    live = ReplayModel(ScriptedModel(script()), book, "live")
    async with Session(live, tools=[add], approval="all") as session:
        _, used = await ask_traced(session, book, "2+3?")
    assert used == [] and len(book) == 2
    fresh = ScriptedModel(script())
    recording = ReplayModel(fresh, book, "record")
    async with Session(recording, tools=[add], approval="all") as session:
        _, used = await ask_traced(session, book, "2+3?")
    assert len(fresh.requests) == 2 and len(used) == 2


def test_fingerprints_ignore_call_ids_and_key_order() -> None:
    def request(call_id: str, arguments: str) -> ModelRequest:
        return ModelRequest(
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function",
                     "function": {"name": "add", "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": call_id, "content": "5"},
            ],
            tools=[],
        )  # fmt: skip

    first = RequestKey.of("m", request("call_abc", '{"a": 2, "b": 3}'))
    second = RequestKey.of("m", request("call_xyz", '{"b":3,"a":2}'))
    assert first.fingerprint == second.fingerprint
    assert RequestKey.of("other", request("c", "{}")).fingerprint != first.fingerprint


async def test_replayed_side_effects_need_trust() -> None:
    trusted = RecordBook()
    await record(trusted)
    untrusted = RecordBook(trusted.entries())
    calls.clear()
    model = ReplayModel(ScriptedModel(), untrusted, "replay")
    async with Session(model, tools=[add], approval="all") as session:
        events = await collect(session, "2+3?", on_approval=lambda s, r: s.deny(r.tool_call_id))
    (asked,) = of_type(events, ApprovalRequested)
    assert asked.note is not None and "nbagent trust" in asked.note
    assert "recording made elsewhere" in asked.note
    assert calls == [] and of_type(events, ToolFinished)[0].status == "denied"

    model = ReplayModel(ScriptedModel(), RecordBook(trusted.entries(), source="nb.ipynb",
                                                    trusted=True), "replay")  # fmt: skip
    async with Session(model, tools=[add], approval="all") as session:
        events = await collect(session, "2+3?", on_approval=None)
    assert not of_type(events, ApprovalRequested) and calls == [5]


async def test_read_only_tools_replay_without_trust() -> None:
    book = RecordBook()
    model = ReplayModel(ScriptedModel([use_tools(call("peek", {"name": "x"})), say("ok")]), book)
    async with Session(model, tools=[peek], approval="readonly") as session:
        _, used = await ask_traced(session, book, "look")
    untrusted = RecordBook(used)
    replay = ReplayModel(ScriptedModel(), untrusted, "replay")
    async with Session(replay, tools=[peek], approval="readonly") as session:
        events = await collect(session, "look", on_approval=None)
    assert finished(events).status == "completed" and not of_type(events, ApprovalRequested)


async def test_recorded_tools_serve_their_recorded_result() -> None:
    from nbagent.replay import RecordedTool, tool_result_record

    ticks: list[int] = []

    @tool(name="clock")
    def clock() -> str:
        """The time (changes on every call)."""
        ticks.append(1)
        return f"tick {len(ticks)}"

    book = RecordBook()
    model = ReplayModel(ScriptedModel([use_tools(call("clock")), say("Noted the time.")]), book)
    async with Session(model, tools=[clock], approval="all") as session:
        result = await session.ask("What time is it?")
    for record in result.tool_calls:
        book.add_tool_result(tool_result_record(record.name, record.arguments, record.result,
                                                record.status))  # fmt: skip
    assert ticks == [1]

    # replayed without serving the recorded result: the clock moved, the replay diverges
    plain = ReplayModel(ScriptedModel(), book, "replay")
    async with Session(plain, tools=[clock], approval="all") as session:
        diverged = await session.ask("What time is it?")
    assert diverged.status == "failed" and "message 3 (tool)" in (diverged.error or "")

    served = ReplayModel(ScriptedModel(), book, "replay")
    wrapped = RecordedTool(clock, book, "replay")
    async with Session(served, tools=[wrapped], approval="all") as session:
        again = await session.ask("What time is it?")
    assert again.text == "Noted the time." and again.tool_calls[0].result == "tick 1"
    assert ticks == [1, 1]  # only the diverging run called it; the served one did not
