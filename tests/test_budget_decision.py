"""A run that can ask a person pauses at its budget: continue with another budget of the
same size, or stop. Runs that cannot ask (headless, the Python API without
``ask_budget``) stop there as before (``test_session.py``, ``test_provider.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import nbagent
from conftest import FAST_RETRY, finished, of_type
from nbagent import (
    Budget,
    BudgetDecided,
    BudgetReached,
    Event,
    Session,
    ToolFinished,
    tool,
)
from nbagent.errors import UnknownToolCallError
from nbagent.render import Transcript
from nbagent.testing import ScriptedModel, ScriptedServer, call, say, use_tools


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


Answer = Callable[[Session, BudgetReached], None]


async def run_asking(session: Session, prompt: str, answer: Answer) -> list[Event]:
    """One turn that asks at its budget; ``answer`` decides each pause."""
    events: list[Event] = []
    with session.subscribe() as stream:
        handle = session.submit(prompt, ask_budget=True)
        async for event in stream:
            if getattr(event, "run_id", None) != handle.run_id:
                continue
            events.append(event)
            if isinstance(event, BudgetReached):
                assert session.conversation.budget_pause == event
                assert session.state is nbagent.SessionState.AWAITING_APPROVAL
                answer(session, event)
            if isinstance(event, nbagent.RunFinished):
                return events
    raise AssertionError("the run did not finish")


def go_on(session: Session, pause: BudgetReached) -> None:
    session.decide_budget(pause.decision_id, go_on=True)


def stop(session: Session, pause: BudgetReached) -> None:
    session.decide_budget(pause.decision_id, go_on=False)


async def test_continue_raises_the_budget_by_its_size_and_the_run_goes_on() -> None:
    model = ScriptedModel(
        [use_tools(call("add", {"a": 1, "b": 2}), usage=(900, 200)), say("3", usage=(50, 5))]
    )
    async with Session(
        model, tools=[add], approval="all", budget=Budget(max_tokens=1_000)
    ) as session:
        events = await run_asking(session, "add", go_on)
        assert session.conversation.budget_pause is None
    assert finished(events).status == "completed"
    (pause,) = of_type(events, BudgetReached)
    assert (pause.max_tokens, pause.step_tokens) == (1_000, 1_000)
    assert "1,100 tokens" in pause.reason
    (decided,) = of_type(events, BudgetDecided)
    assert decided.go_on and decided.max_tokens == 2_000
    assert of_type(events, ToolFinished)[0].status == "ok"


async def test_stop_ends_the_run_at_its_budget_and_runs_no_more_tools() -> None:
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 2}), usage=(900, 200))])
    async with Session(
        model, tools=[add], approval="all", budget=Budget(max_tokens=1_000)
    ) as session:
        events = await run_asking(session, "add", stop)
    done = finished(events)
    assert done.status == "budget_exceeded"
    assert "Stopped at the budget (1,000 tokens) by you" in (done.error or "")
    assert not of_type(events, nbagent.ToolStarted)
    assert of_type(events, BudgetDecided)[0].go_on is False


async def test_a_decision_on_an_unknown_pause_is_refused() -> None:
    async with Session(ScriptedModel([say("hi")])) as session:
        await session.ask("hi")
        with pytest.raises(UnknownToolCallError):
            session.decide_budget("budget-nope", go_on=True)


RUNAWAY = " ".join(f"word{i}" for i in range(20_000))


async def test_a_streaming_answer_pauses_at_the_budget_and_continues_after_it(
    server: ScriptedServer,
) -> None:
    """Over HTTP through litellm: the stream waits while the person decides; continue
    lets it stream to the next step; stop then keeps the partial answer."""
    server.add(say(RUNAWAY))
    answers = [go_on, stop]

    def answer(session: Session, pause: BudgetReached) -> None:
        answers.pop(0)(session, pause)

    async with Session(
        "openai/gpt-4o-mini",
        api_base=server.url,
        api_key="sk-test-not-a-real-key-1",
        retry=FAST_RETRY,
        budget=Budget(max_tokens=300),
    ) as session:
        events = await run_asking(session, "write forever", answer)
    done = finished(events)
    assert done.status == "budget_exceeded" and not answers
    assert [p.max_tokens for p in of_type(events, BudgetReached)] == [300, 600]
    assert done.text.startswith("word0 word1") and 600 < len(done.text) < 4_000


def test_the_transcript_shows_the_pause_with_buttons_then_the_decision() -> None:
    transcript = Transcript(model="m")
    pause = BudgetReached(
        run_id="r", decision_id="budget-1", reason="over", max_cost_usd=0.5,
        max_tokens=None, step_cost_usd=0.5, step_tokens=None,
    )  # fmt: skip
    assert transcript.add(pause) == "blocks"
    (card,) = transcript.blocks
    assert card.to_json() == {
        "kind": "budget",
        "id": "budget-1",
        "label": "budget reached ($0.50)",
        "decision": None,
        "awaits_decision": True,
        "buttons": [["Continue with another $0.50", "continue"], ["Stop", "stop"]],
    }
    transcript.add(
        BudgetDecided(
            run_id="r", decision_id="budget-1", go_on=True, max_cost_usd=1.0, max_tokens=None
        )
    )
    assert card.to_json()["decision"] == "continued with another $0.50 by you"
    assert not card.to_json()["awaits_decision"]
    assert "budget reached ($0.50) · continued with another $0.50 by you." in (
        transcript.to_plain()
    )
