"""Lifecycle hooks: middleware around each model request and each tool call.

Subclass :class:`Hooks` and override what you need; pass instances to ``Session(hooks=)``.
Hooks run in the order given, inside the session's run. An exception in a hook fails the
run with a message naming the hook (except in ``on_error`` and ``on_run_end``, where it is
reported and the run still ends cleanly). The session store plugs in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .events import ModelResponded, RunFinished, ToolCall, ToolFinished
from .model import ModelRequest

if TYPE_CHECKING:
    from .session import Session


@dataclass
class RunContext:
    """What a hook knows about the run it is called in."""

    session: Session
    run_id: str
    prompt: str
    turn: int = 0
    """The number of the current model request in this run (1, 2, …)."""
    state: dict[str, Any] = field(default_factory=dict)
    """Free space for hooks to keep per-run data."""


class Hooks:
    """Override any of these; the defaults do nothing."""

    async def on_run_start(self, ctx: RunContext) -> None:
        """The user message is in the conversation; nothing was sent yet (baseline)."""

    async def before_model_request(
        self, ctx: RunContext, request: ModelRequest
    ) -> ModelRequest | None:
        """Inspect or edit the request (messages, tools, params); return a new one or None."""
        return None

    async def after_model_response(self, ctx: RunContext, response: ModelResponded) -> None:
        """A model response is complete and part of the conversation."""

    async def before_tool_call(self, ctx: RunContext, call: ToolCall) -> None:
        """An approved call is about to run."""

    async def after_tool_call(
        self, ctx: RunContext, call: ToolCall, finished: ToolFinished
    ) -> None:
        """A call ended (ran, failed, was denied or cancelled)."""

    async def on_error(self, ctx: RunContext, error: BaseException) -> None:
        """The run failed with ``error``; the conversation is already repaired."""

    async def on_run_end(self, ctx: RunContext, finished: RunFinished) -> None:
        """The run ended (any status); called before ``RunFinished`` is emitted."""
