"""What reaches a session: the handle of a submitted turn, and the actor's inbox commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ._approvals import Decision
from ._budget import Budget
from ._loop import RunResult


class RunHandle:
    """A submitted turn. ``await handle`` gives its :class:`RunResult`."""

    def __init__(
        self,
        run_id: str,
        prompt: str | None,
        future: asyncio.Future[RunResult],
        cancel: Callable[[str], bool],
    ) -> None:
        self.run_id = run_id
        self.prompt = prompt
        self._future = future
        self._cancel = cancel

    def cancel(self) -> bool:
        """Stop this turn: a running one stops, a queued one never starts. False if done."""
        if self._future.done():
            return False
        return self._cancel(self.run_id)

    @property
    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> RunResult:
        return await asyncio.shield(self._future)

    def __await__(self) -> Generator[Any, None, RunResult]:
        return self.result().__await__()


# -- inbox commands ---------------------------------------------------------------------


@dataclass
class Turn:
    run_id: str
    prompt: str | None
    """None continues the conversation as it stands (``Session.resume``)."""
    future: asyncio.Future[RunResult]
    tag: str | None = None
    budget: Budget | None = None
    """This turn's budget, in place of the session's."""
    model_params: dict[str, Any] = field(default_factory=dict)
    """This turn's model parameters, over the session's."""
    ask_budget: bool = False
    """At its budget the turn waits for a person (continue or stop)."""


@dataclass
class Decide:
    decision: Decision


@dataclass
class Cancel:
    run_id: str | None = None
    """Cancel this run (running or queued); None cancels the running one."""


@dataclass
class Steer:
    text: str


@dataclass
class Close:
    pass


@dataclass
class RunDone:
    run_id: str


Command = Turn | Decide | Cancel | Steer | Close | RunDone
