"""Lifecycle hooks: middleware around each model request and each tool call.

Subclass :class:`Hooks` and override what you need; pass instances to ``Session(hooks=)``.
Hooks run in the order given, inside the session's run. An exception in a hook fails the
run with a message naming the hook (except in ``on_error`` and ``on_run_end``, where it is
reported and the run still ends cleanly). The session store plugs in here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._redact import redact
from .errors import HookError, ModelError
from .events import ErrorOccurred, Event, ModelResponded, RunFinished, ToolCall, ToolFinished
from .model import Model, ModelRequest


class SessionView(Protocol):
    """What a hook sees of the session (an ``nbagent.Session``)."""

    @property
    def id(self) -> str: ...

    @property
    def model(self) -> Model: ...

    @property
    def messages(self) -> list[dict[str, Any]]: ...

    @property
    def runs(self) -> int: ...


@dataclass
class RunContext:
    """What a hook knows about the run it is called in."""

    session: SessionView
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
        """The run failed with ``error`` (the conversation is repaired when it ends)."""

    async def on_run_end(self, ctx: RunContext, finished: RunFinished) -> None:
        """The run ended (any status); called before ``RunFinished`` is emitted."""


async def call_hooks(hooks: list[Hooks], name: str, *args: Any) -> None:
    """Call ``name`` on every hook in order; a failure becomes a :class:`HookError` that
    names the hook (cancellation and model errors pass through)."""
    for hook in hooks:
        await _named(hook, name, getattr(hook, name)(*args))


async def edit_request(hooks: list[Hooks], ctx: RunContext, request: ModelRequest) -> ModelRequest:
    """The request after every hook's ``before_model_request`` (each sees the last edit)."""
    for hook in hooks:
        edited = await _named(hook, "before_model_request", hook.before_model_request(ctx, request))
        request = edited or request
    return request


async def _named(hook: Hooks, name: str, awaitable: Any) -> Any:
    try:
        return await awaitable
    except (asyncio.CancelledError, ModelError):
        raise
    except Exception as exc:
        raise HookError(f"the hook {type(hook).__name__}.{name} failed: {exc}") from exc


async def call_hooks_quietly(
    hooks: list[Hooks], name: str, ctx: RunContext, emit: Callable[[Event], None], *args: Any
) -> None:
    """Call ``name`` on every hook; a failure is reported as an event, never raised."""
    for hook in hooks:
        try:
            await getattr(hook, name)(ctx, *args)
        except Exception as exc:
            emit(
                ErrorOccurred(
                    run_id=ctx.run_id,
                    error_type=type(exc).__name__,
                    message=redact(f"the hook {type(hook).__name__}.{name} failed: {exc}"),
                )
            )
