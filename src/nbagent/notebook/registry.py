"""``KernelRegistry``: the owner of everything an nbagent kernel keeps between cells.

It holds the named sessions, the recorders that write their logs, the notebook's tools,
the MCP servers and the tasks of runs that outlive their cell, and it closes all of them
in one ``aclose()``: on ``%unload_ext nbagent`` and at interpreter exit (bounded; when the
kernel's loop is gone by then, what can be closed without it is closed at once).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..replay import RecordBook
from ..session import RunResult, Session
from ..store import SessionRecorder
from ..tools import Tool

if TYPE_CHECKING:
    from ..tools.mcp import McpManager

CLOSE_TIMEOUT_S = 5.0
"""How long the sessions may take to stop, and then their runs' tasks."""

EXIT_TIMEOUT_S = 3.0
"""How long closing may hold up the interpreter's exit (a frontend kills it soon after)."""

BUSY_STATES = ("running", "awaiting_approval", "cancelling")

MAX_FINISHED_VIEWS = 100
"""Finished live views kept open (the oldest closes first; a re-run cell closes its own)."""


class FinishedView(Protocol):
    """A live view whose run ended (``nbagent.widget.AgentView`` after ``retire``)."""

    def close(self) -> None: ...


class KernelRegistry:
    """The named sessions of one kernel and everything that belongs to them."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.current = "default"
        """The session of cells without ``--session``."""
        self.recorders: dict[str, SessionRecorder] = {}
        """The log writer of each persisted session."""
        self.last_runs: dict[str, RunResult] = {}
        """The latest run of each session (``%agent code`` shows its code)."""
        self.fresh: set[str] = set()
        """Sessions that start over: their log rewinds to empty when they open."""
        self.builtin_tools: dict[str, Tool] = {}
        """The notebook tool group, made on first use."""
        self.recorded_tools: dict[str, set[str]] = {}
        """Per session: tool name patterns whose recorded results replay."""
        self.book: RecordBook | None = None
        """The recordings of this notebook's agent cells, by request fingerprint."""
        self.mcp: McpManager | None = None
        """The kernel's MCP servers, made on first use."""
        self.views: dict[str, FinishedView] = {}
        """Finished live views by cell id (or run), kept so that a page reloaded during a
        run shows its final transcript: it gets widget state, never the final display."""
        self.followed: set[Path] = set()
        """Store folders already checked for sessions left under another notebook name."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """Runs that outlive their cell and sessions being closed."""
        self._retired: list[Session] = []
        """Sessions dropped while no loop ran: closed by the next task or ``aclose``."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        atexit.register(self.close_at_exit)

    # -- sessions -------------------------------------------------------------------------

    def running(self) -> list[str]:
        """Names of the sessions with a turn running or waiting for approval."""
        return [name for name, s in self.sessions.items() if s.state.value in BUSY_STATES]

    def own(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the kernel's loop that ``aclose`` waits for."""
        self.bind_loop()
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        while self._retired:  # a loop runs now: close what was dropped without one
            session = self._retired.pop()
            self.own(session.aclose(), f"nbagent-close-{session.id[:8]}")
        return task

    def bind_loop(self) -> None:
        """Remember the running loop: the sessions' actors live on it."""
        self._loop = asyncio.get_running_loop()

    def forget(self, name: str) -> None:
        """Drop a session: release its log at once, stop its run and close it (now when
        a loop runs, else with the next task the registry owns, or its ``aclose``)."""
        session = self.sessions.pop(name, None)
        self.last_runs.pop(name, None)
        self.recorded_tools.pop(name, None)
        recorder = self.recorders.pop(name, None)
        if recorder is not None:
            recorder.close_now()  # the log is free at once (a new session may open it)
        if session is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._retired.append(session)
            return
        self.own(session.aclose(), f"nbagent-close-{name}")

    def keep_view(self, view: FinishedView, key: str | None) -> None:
        """Keep a finished view open; the cell's previous one (same key) closes."""
        old = self.views.pop(key or f"run-{id(view)}", None)
        if old is not None and old is not view:
            _close_quietly(old)
        self.views[key or f"run-{id(view)}"] = view
        while len(self.views) > MAX_FINISHED_VIEWS:
            _close_quietly(self.views.pop(next(iter(self.views))))

    def close_views(self) -> None:
        views = list(self.views.values())
        self.views.clear()
        for view in views:
            _close_quietly(view)

    # -- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every session, then the runs' tasks, then the logs and MCP servers (so
        a cancelled run's last events still reach its log). Bounded in time."""
        self._closed = True
        atexit.unregister(self.close_at_exit)
        sessions = [*self.sessions.values(), *self._retired]
        self.sessions.clear()
        self._retired.clear()
        await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=CLOSE_TIMEOUT_S)
            for task in self.tasks:
                task.cancel()
        self.close_views()
        closing = [r.aclose() for r in self.recorders.values()]
        if self.mcp is not None:
            closing.append(self.mcp.aclose())
        self.recorders.clear()
        self.last_runs.clear()
        self.mcp = None
        await asyncio.gather(*closing, return_exceptions=True)

    def close_now(self) -> None:
        """Close without the loop: release the logs and kill the MCP servers. Running
        sessions are left to the loop's end (nothing can stop them without it)."""
        self._closed = True
        atexit.unregister(self.close_at_exit)
        self.views.clear()  # no loop: the comms die with the kernel
        for recorder in self.recorders.values():
            try:
                recorder.close_now()
            except Exception:
                # Its timer's loop is closed: write what is left and release the log here.
                with contextlib.suppress(Exception):
                    recorder.flush(fsync=True)
                with contextlib.suppress(Exception):
                    recorder.log.close()
        self.recorders.clear()
        if self.mcp is not None:
            self.mcp.close_now()
            self.mcp = None
        self.sessions.clear()
        self._retired.clear()

    def close(self, timeout: float = 2 * CLOSE_TIMEOUT_S) -> asyncio.Task[None] | None:
        """Close from synchronous code (``%unload_ext``): inside a running loop the closing
        is a task (returned; the registry keeps it until done); on the kernel's stopped
        loop it runs to the end (bounded); without a loop it is :meth:`close_now`."""
        if self._closed:
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            task: asyncio.Task[None] = running.create_task(
                self._aclose_bounded(timeout), name="nbagent-close-kernel"
            )
            _closing.add(task)
            task.add_done_callback(_closing.discard)
            return task
        loop = self._loop  # no loop bound: no actor, ticker or server ever started
        if loop is not None and not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._aclose_bounded(timeout))
                return None
        self.close_now()
        return None

    def close_at_exit(self) -> None:
        """At interpreter exit: close as :meth:`close` can, and at least release the logs."""
        with contextlib.suppress(Exception):
            self.close(EXIT_TIMEOUT_S)
        self.close_now()

    async def _aclose_bounded(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.aclose(), timeout)
        except Exception:  # a timeout included
            self.close_now()


def _close_quietly(view: FinishedView) -> None:
    with contextlib.suppress(Exception):
        view.close()


_closing: set[asyncio.Task[None]] = set()
"""Registries closing in the background after ``%unload_ext`` (their registry is gone)."""
