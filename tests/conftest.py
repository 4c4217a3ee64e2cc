"""Shared fixtures: no test reaches the network or needs an API key, and no test leaves
nbagent tasks behind (``NBAGENT_LEAK_CHECK=0`` turns that check off)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import tempfile

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Session logs of every test (and of the kernels tests start) go to a scratch folder.
os.environ["NBAGENT_HOME"] = tempfile.mkdtemp(prefix="nbagent-tests-")

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import nbagent
from nbagent import Event, RetryPolicy, Session
from nbagent.testing import ScriptedServer

FAST_RETRY = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)


# -- leaked tasks ---------------------------------------------------------------------------

LEAK_CHECK = os.environ.get("NBAGENT_LEAK_CHECK", "1") != "0"
_NBAGENT_SOURCE = str(Path(nbagent.__file__).resolve().parent)


def is_nbagent_task(task: asyncio.Task[object]) -> bool:
    """A task of the runtime: named ``nbagent-…``, or running a coroutine of the package
    (so unnamed runtime tasks are caught too)."""
    if task.get_name().startswith("nbagent-"):
        return True
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and str(Path(code.co_filename).resolve()).startswith(_NBAGENT_SOURCE)


def describe_task(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', coro)})"


class DestroyedTasks(logging.Handler):
    """Collects asyncio's "Task was destroyed but it is pending!" reports."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Task was destroyed but it is pending" in message:
            self.reports.append(" ".join(message.split()))


@pytest.fixture(autouse=True)
def _no_destroyed_pending_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which (or at whose loop close) a pending task was garbage
    collected: someone started it and nobody owned it."""
    if not LEAK_CHECK or request.node.get_closest_marker("loop_gone") is not None:
        yield
        return
    handler = DestroyedTasks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield  # the test, its fixtures, and the close of its event loop
        # A dropped pending task sits in a reference cycle: collect it now, while the test
        # it belongs to is still the one being torn down. Freezing what survives keeps
        # the next collection to this test's objects (a full one costs ~0.2 s).
        gc.collect()
        gc.freeze()
    finally:
        logger.removeHandler(handler)
    if handler.reports:
        pytest.fail("a pending task was destroyed:\n" + "\n".join(handler.reports), pytrace=False)


@pytest.fixture(autouse=True)
def _no_leaked_nbagent_tasks(
    request: pytest.FixtureRequest, _no_destroyed_pending_tasks: None
) -> Iterator[None]:
    """Fail an async test that leaves nbagent tasks pending after itself and its
    fixtures: close every Session (``async with Session(...)`` or ``await
    session.aclose()``) and every recorder."""
    marker = request.node.get_closest_marker("asyncio")
    if not LEAK_CHECK or marker is None:
        yield
        return
    scope = (
        marker.kwargs.get("loop_scope")
        or request.config.getini("asyncio_default_test_loop_scope")
        or "function"
    )
    # pytest-asyncio's runner for the test's loop; depending on it keeps the loop open
    # until this fixture's teardown, which runs after the test's other fixtures.
    runner = request.getfixturevalue(f"_{scope}_scoped_runner")
    yield
    if scope != "function":
        return  # a shared loop's tasks may belong to the next test
    leaked = [t for t in asyncio.all_tasks(runner.get_loop()) if is_nbagent_task(t)]
    if leaked:
        names = ", ".join(sorted(describe_task(t) for t in leaked))
        pytest.fail(f"nbagent tasks still pending after the test: {names}", pytrace=False)


# -- scripted models ---------------------------------------------------------------------------


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
