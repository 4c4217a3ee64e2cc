"""Shared fixtures: no test reaches the network or needs an API key."""

from __future__ import annotations

import os
import tempfile

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Session logs of every test (and of the kernels tests start) go to a scratch folder.
os.environ["NBAGENT_HOME"] = tempfile.mkdtemp(prefix="nbagent-tests-")

from collections.abc import Awaitable, Callable, Iterator

import pytest

import nbagent
from nbagent import Event, RetryPolicy, Session
from nbagent.testing import ScriptedServer

FAST_RETRY = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


Decider = Callable[[Session, nbagent.ApprovalRequested], None]


def approve_all(session: Session, request: nbagent.ApprovalRequested) -> None:
    session.approve(request.tool_call_id)


async def collect(
    session: Session, prompt: str, on_approval: Decider | None = approve_all
) -> list[Event]:
    """Run one turn and return its events, answering approvals with ``on_approval``."""
    events: list[Event] = []
    async for event in session.run(prompt):
        events.append(event)
        if isinstance(event, nbagent.ApprovalRequested) and on_approval is not None:
            on_approval(session, event)
    return events


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events if e.kind not in ("text_delta", "state_changed")]


def finished(events: list[Event]) -> nbagent.RunFinished:
    last = events[-1]
    assert isinstance(last, nbagent.RunFinished), last
    return last


def of_type(events: list[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


AsyncCheck = Callable[[], Awaitable[None]]
