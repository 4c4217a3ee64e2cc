"""Running the tool calls of one model response: validate, decide, run, report.

Calls of a response run concurrently (bounded). Each ends with exactly one
``ToolFinished`` (ok, error, denied or cancelled), whose result the conversation keeps:
a call that never ran still gets a result, so the next request stays valid.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._approvals import ApprovalGate, Decision
from ._budget import Budget
from ._redact import redact
from .approval import ReplayedCall
from .conversation import UsageTotals
from .errors import RunInterrupted
from .events import (
    ApprovalDecided,
    Event,
    Provenance,
    ToolCall,
    ToolCallProposed,
    ToolFinished,
    ToolStarted,
    ToolStatus,
)
from .hooks import Hooks, RunContext, call_hooks
from .replay import arguments_digest
from .tools import (
    Tool,
    ToolArgumentsError,
    ToolOutput,
    cap_display,
    sanitize,
    to_text,
    truncate,
)

CANCELLED_RESULT = "The tool call was cancelled before it finished: the user stopped the run."


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call of a run, with how it ended."""

    id: str
    name: str
    arguments: dict[str, Any]
    status: ToolStatus
    result: str


@dataclass
class RunState:
    """Per-run bookkeeping, owned by the run task."""

    ctx: RunContext
    usage: UsageTotals = field(default_factory=UsageTotals)
    records: list[ToolCallRecord] = field(default_factory=list)
    last_text: str = ""
    replayed: Provenance | None = None
    """Where the response whose calls run now came from (None: a plain model)."""
    refused_replay: str | None = None
    """A replayed side-effecting call that was not allowed to run (the run stops)."""
    budget: Budget | None = None
    """This run's budget, in place of the session's (a cell's ``--max-cost``)."""
    ask_budget: bool = False
    """At its budget the run asks a person (continue or stop) instead of stopping."""
    budget_step: Budget | None = None
    """What "continue" adds to the budget (the run's first budget), once raised."""
    model_params: dict[str, Any] = field(default_factory=dict)
    """This run's model parameters, over the session's (a cell's ``-p``)."""


class ToolRunner:
    """Runs the calls of a session's responses through its approval gate."""

    def __init__(
        self,
        tools: dict[str, Tool],
        gate: ApprovalGate,
        hooks: list[Hooks],
        emit: Callable[[Event], None],
        *,
        max_parallel: int,
        max_result_chars: int,
    ) -> None:
        self.tools = tools
        self.gate = gate
        self.hooks = hooks
        self.emit = emit
        self.max_parallel = max_parallel
        self.max_result_chars = max_result_chars

    async def run(self, run: RunState, calls: tuple[ToolCall, ...]) -> None:
        """Decide and run ``calls`` concurrently; every call ends with a result."""
        limit = asyncio.Semaphore(self.max_parallel)
        done: set[str] = set()
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(
                self._one(run, call, index, limit, done), name=f"nbagent-tool-{call.id}"
            )
            for index, call in enumerate(calls)
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            raise
        finally:
            for call in calls:
                if call.id not in done:
                    self._finish(run, call, "cancelled", CANCELLED_RESULT, 0.0, done)

    def skip(self, run: RunState, calls: tuple[ToolCall, ...], why: str) -> None:
        """End ``calls`` without running them (the run stops before them)."""
        done: set[str] = set()
        for call in calls:
            self.emit(ToolCallProposed(run_id=run.ctx.run_id, call=call))
            self._finish(run, call, "cancelled", f"Not run: {why}", 0.0, done)

    def _finish(
        self,
        run: RunState,
        call: ToolCall,
        status: ToolStatus,
        text: str,
        duration: float,
        done: set[str],
        limit: int | None = None,
        display: tuple[dict[str, Any], ...] = (),
    ) -> ToolFinished:
        text, truncated = truncate(redact(sanitize(text)), limit or self.max_result_chars)
        finished = ToolFinished(
            run_id=run.ctx.run_id,
            tool_call_id=call.id,
            name=call.name,
            status=status,
            result=text,
            duration_s=duration,
            truncated=truncated,
            display=tuple(cap_display(bundle) for bundle in display),
        )
        done.add(call.id)
        run.records.append(ToolCallRecord(call.id, call.name, call.arguments, status, text))
        self.emit(finished)
        return finished

    async def _one(
        self,
        run: RunState,
        call: ToolCall,
        index: int,
        limit: asyncio.Semaphore,
        done: set[str],
    ) -> None:
        self.emit(ToolCallProposed(run_id=run.ctx.run_id, call=call))
        tool = self.tools.get(call.name)
        if call.error is not None:
            finished = self._finish(run, call, "error", call.error, 0.0, done)
        elif tool is None:
            available = ", ".join(sorted(self.tools)) or "none"
            finished = self._finish(
                run, call, "error",
                f"Unknown tool '{call.name}'. Available tools: {available}.", 0.0, done,
            )  # fmt: skip
        else:
            try:
                arguments = tool.validate(call.arguments)
            except ToolArgumentsError as exc:
                finished = self._finish(run, call, "error", str(exc), 0.0, done)
            else:
                replayed = _replayed(run.replayed, index, call)
                finished = await self._decided(run, call, tool, arguments, replayed, limit, done)
        await call_hooks(self.hooks, "after_tool_call", run.ctx, call, finished)

    async def _decided(
        self,
        run: RunState,
        call: ToolCall,
        tool: Tool,
        arguments: dict[str, Any],
        replayed: ReplayedCall | None,
        limit: asyncio.Semaphore,
        done: set[str],
    ) -> ToolFinished:
        run_id = run.ctx.run_id
        verdict = self.gate.policy.decide(tool, arguments, replayed=replayed)
        note = verdict.reason if verdict.untrusted_replay else None
        if verdict.verdict == "ask":
            decision = await self.gate.ask(run_id, call, tool, note)
        else:
            decision = Decision(
                call.id,
                verdict.verdict == "allow",
                scope=verdict.scope,
                rule=verdict.rule,
                reason=verdict.reason,
                decided_by=verdict.decided_by,
                recorded=verdict.decided_by == "user",
            )
            if decision.scope != "call":
                self.gate.grant(call.name, decision)  # a recorded "always" holds again
        self.emit(
            ApprovalDecided(
                run_id=run_id,
                tool_call_id=call.id,
                name=call.name,
                approved=decision.approved,
                scope=decision.scope,
                decided_by=decision.decided_by,
                reason=decision.reason,
                recorded=decision.recorded,
                rule=(
                    {"tool": decision.rule.tool, "arguments": dict(decision.rule.arguments)}
                    if decision.rule is not None and decision.scope == "rule"
                    else None
                ),
            )
        )
        if not decision.approved:
            if verdict.untrusted_replay:
                run.refused_replay = call.name
            return self._finish(
                run, call, "denied",
                f"{_denied(decision)} Do not retry it unchanged; "
                "ask the user or take another approach.", 0.0, done,
            )  # fmt: skip
        await call_hooks(self.hooks, "before_tool_call", run.ctx, call)
        async with limit:
            self.emit(ToolStarted(run_id=run_id, tool_call_id=call.id, name=call.name))
            started = time.perf_counter()
            status: ToolStatus = "ok"
            display: tuple[dict[str, Any], ...] = ()
            try:
                value = await tool.invoke(arguments)
            except (asyncio.CancelledError, RunInterrupted):
                raise
            except Exception as exc:
                status, text = "error", redact(f"{type(exc).__name__}: {exc}")
            else:
                if isinstance(value, ToolOutput):
                    status = "error" if value.is_error else "ok"
                    text, display = value.text, value.display
                else:
                    text = to_text(value)
            duration = time.perf_counter() - started
        return self._finish(run, call, status, text, duration, done, tool.max_result_chars, display)


def _denied(decision: Decision) -> str:
    """What the model reads about a denied call: who denied it, and why when said."""
    if decision.decided_by == "user" and decision.reason:
        return f"The user rejected the call: {decision.reason.rstrip('.')}. It did not run."
    if decision.decided_by == "user":
        return "The user rejected the call; it did not run."
    why = f" Reason: {decision.reason}." if decision.reason else ""
    return f"The call was denied and did not run.{why}"


def _replayed(provenance: Provenance | None, index: int, call: ToolCall) -> ReplayedCall | None:
    """What the policy needs to know about the ``index``-th call of a replayed response:
    its trust, and the decision recorded for the call at that position when it is the same
    call (same tool, same arguments)."""
    if provenance is None or provenance.source != "replayed":
        return None
    recorded = provenance.decisions[index] if index < len(provenance.decisions) else None
    if recorded is not None and (
        recorded.name != call.name or recorded.arguments != arguments_digest(call.arguments)
    ):
        recorded = None
    return ReplayedCall(trusted=provenance.trusted, recorded=recorded)
