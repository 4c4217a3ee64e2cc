"""The kernel's registry owns every session, log and task, and closes them all: on
``%unload_ext nbagent`` and at interpreter exit, with or without a loop left."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
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
@pytest.mark.loop_gone
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


def test_no_task_is_left_pending_after_unload(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import asyncio
        from IPython.core.async_helpers import get_asyncio_loop
        from IPython.core.interactiveshell import InteractiveShell
        from nbagent.testing import ScriptedServer, say

        with ScriptedServer([say("one"), say("two")]) as server:
            ip = InteractiveShell.instance()
            ip.run_line_magic("load_ext", "nbagent")
            assert ip.run_cell(f"%%agent --api-base {server.url}\\nhi").success
            ip.run_line_magic("agent", "new")  # drops the first session while no loop runs
            assert ip.run_cell(f"%%agent --api-base {server.url}\\nhi").success
            ip.run_line_magic("unload_ext", "nbagent")
        print(sorted(t.get_name() for t in asyncio.all_tasks(get_asyncio_loop())))
        """
    )
    env = {**os.environ, "NBAGENT_HOME": str(tmp_path), "OPENAI_API_KEY": "sk-test"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1:] == ["[]"], out.stdout + out.stderr


def test_the_transformer_awaits_the_commands_that_start_work_on_the_loop(
    shell: InteractiveShell,
) -> None:
    from nbagent.magics import AWAITED
    from nbagent.notebook.commands import COMMANDS

    for line in AWAITED:
        assert line.split()[0] in COMMANDS
        assert shell.transform_cell(f"%agent {line} x").startswith("await ")
    for name in set(COMMANDS) - {line.split()[0] for line in AWAITED}:
        assert not shell.transform_cell(f"%agent {name}").startswith("await ")


class _View:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_finished_views_stay_open_until_their_cell_runs_again_or_the_registry_closes() -> None:
    registry = KernelRegistry()
    first, again, other = _View(), _View(), _View()
    registry.keep_view(first, "cell-a")
    registry.keep_view(other, None)
    assert not first.closed  # a page reloaded later still gets its final state
    registry.keep_view(again, "cell-a")  # the cell ran again: its old view goes
    assert first.closed and not again.closed
    asyncio.run(registry.aclose())
    assert again.closed and other.closed
