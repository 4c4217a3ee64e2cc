"""The kernel's registry owns every session, log and task, and closes them all: on
``%unload_ext nbagent`` and at interpreter exit, with or without a loop left."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbagent import Session, SessionState
from nbagent.notebook.registry import KernelRegistry
from nbagent.store import SessionStore, attach
from nbagent.testing import ScriptedModel, ScriptedServer, say


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("NBAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbagent")
    yield ip
    if "agent" in ip.magics_manager.magics["line"]:
        ip.run_line_magic("unload_ext", "nbagent")


def test_unload_closes_every_session_the_kernel_had(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(say("one"), say("two"))
    registry = shell.find_magic("agent").__self__.registry
    assert shell.run_cell(f"%%agent --api-base {server.url}\nhi").success
    first = registry.sessions["default"]
    shell.run_line_magic("agent", "new other")  # drops 'default' while no loop runs
    assert shell.run_cell(f"%%agent --api-base {server.url}\nhi").success
    second = registry.sessions["other"]
    logs = [r.log for r in registry.recorders.values()]

    shell.run_line_magic("unload_ext", "nbagent")
    assert first.state is SessionState.CLOSED and second.state is SessionState.CLOSED
    assert all(log.closed for log in logs)
    assert not registry.tasks


async def _one_turn(registry: KernelRegistry, session: Session) -> None:
    registry.bind_loop()
    await session.ask("hi")


def test_at_exit_the_stopped_loop_closes_the_sessions(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    registry = KernelRegistry()
    session = Session(ScriptedModel([say("hello")]))
    registry.sessions["default"] = session
    registry.recorders["default"] = attach(session, SessionStore(tmp_path).open("default"))
    loop.run_until_complete(_one_turn(registry, session))
    assert session.state is SessionState.IDLE  # its actor waits on the stopped loop

    registry.close_at_exit()
    assert session.state is SessionState.CLOSED
    assert not asyncio.all_tasks(loop)
    loop.close()


def test_without_a_loop_the_logs_are_released_at_once(tmp_path: Path) -> None:
    registry = KernelRegistry()  # sessions opened from their logs, never run: no loop
    session = Session(ScriptedModel())
    recorder = attach(session, SessionStore(tmp_path).open("default"))
    registry.sessions["default"], registry.recorders["default"] = session, recorder
    registry.close_at_exit()
    assert recorder.log.closed


# The actor left waiting on the closed loop is Python's to collect (it warns about it).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_when_the_loop_is_gone_the_logs_are_still_released(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    registry = KernelRegistry()
    session = Session(ScriptedModel([say("hello")]))
    recorder = attach(session, SessionStore(tmp_path).open("default"))
    registry.sessions["default"], registry.recorders["default"] = session, recorder
    loop.run_until_complete(_one_turn(registry, session))
    loop.close()  # the kernel's loop is gone at exit

    registry.close_at_exit()
    assert recorder.log.closed
    log = SessionStore(tmp_path).open("default")  # the lock is free
    try:
        assert log.load().runs == 1  # and the turn is in it
    finally:
        log.close()
    del session, recorder, registry
    gc.collect()  # the stranded actor goes here, not in a later test


async def test_inside_a_running_loop_closing_is_a_task_that_ends() -> None:
    registry = KernelRegistry()
    session = Session(ScriptedModel([say("hello")]))
    registry.sessions["default"] = session
    await _one_turn(registry, session)
    closing = registry.close()
    assert closing is not None
    await asyncio.wait_for(closing, 5)
    assert session.state is SessionState.CLOSED
    assert registry.close() is None  # closed once
