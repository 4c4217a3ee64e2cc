"""The approval gate: tool calls that wait for a person, and the decisions that reach them.

A run that reached its budget waits at the same gate (continue or stop), under the id of
its ``BudgetReached``; a decision on it is a :class:`Decision` too (approved: go on).

Decisions are data keyed by ``tool_call_id``. A decision for a call that is not pending is
refused with an error that says why (unknown id, already decided, its run ended). An
"always" decision becomes a grant of the session's policy and settles the other pending
calls it now covers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._redact import redact
from .approval import AllowRule, ApprovalPolicy
from .errors import AlreadyDecidedError, UnknownToolCallError
from .events import ApprovalRequested, ApprovalScope, BudgetReached, Event, ToolCall
from .tools import Tool, sanitize


@dataclass(frozen=True)
class Decision:
    """A person's (or a caller's policy's) decision on one pending call."""

    tool_call_id: str
    approved: bool
    scope: ApprovalScope = "call"
    rule: AllowRule | None = None
    reason: str | None = None
    decided_by: Literal["user", "policy"] = "user"
    recorded: bool = False
    """Replayed from a trusted recording: the person who recorded the call decided."""


@dataclass
class _Pending:
    request: ApprovalRequested | BudgetReached
    future: asyncio.Future[Decision]
    decided: bool = False


class ApprovalGate:
    """The calls of a session that wait for a decision.

    ``on_waiting(run_id, waiting)`` is told when the first call starts waiting and when the
    last one stops (the session moves between RUNNING and AWAITING_APPROVAL).
    """

    def __init__(
        self,
        policy: ApprovalPolicy,
        tools: dict[str, Tool],
        emit: Callable[[Event], None],
        on_waiting: Callable[[str, bool], None],
    ) -> None:
        self.policy = policy
        self._tools = tools
        self._emit = emit
        self._on_waiting = on_waiting
        self._pending: dict[str, _Pending] = {}
        self._closed: dict[str, str] = {}
        """Calls that no longer wait for a decision, with why (for clear errors)."""

    @property
    def waiting(self) -> list[ApprovalRequested]:
        """The calls waiting for a decision, oldest first."""
        return [
            p.request
            for p in self._pending.values()
            if not p.decided and isinstance(p.request, ApprovalRequested)
        ]

    @property
    def budget_pause(self) -> BudgetReached | None:
        """The run's pause at its budget, while it waits for a decision."""
        for pending in self._pending.values():
            if not pending.decided and isinstance(pending.request, BudgetReached):
                return pending.request
        return None

    def check(self, decision: Decision) -> None:
        """Accept a decision for delivery, or raise an error that says why not."""
        pending = self._pending.get(decision.tool_call_id)
        if pending is None:
            if decision.tool_call_id in self._closed:
                raise AlreadyDecidedError(
                    f"tool call {decision.tool_call_id!r} {self._closed[decision.tool_call_id]}"
                )
            waiting = ", ".join(self._pending) or "none"
            raise UnknownToolCallError(
                f"no pending tool call has the id {decision.tool_call_id!r} (pending: {waiting})"
            )
        if pending.decided:
            raise AlreadyDecidedError(f"tool call {decision.tool_call_id!r} was already decided")
        if isinstance(pending.request, BudgetReached) and (decision.scope, decision.rule) != (
            "call",
            None,
        ):
            raise ValueError("a decision on a budget covers that pause only (scope 'call')")
        pending.decided = True

    def deliver(self, decision: Decision) -> None:
        """Hand a checked decision to the call that waits for it."""
        pending = self._pending.get(decision.tool_call_id)
        if pending is not None and not pending.future.done():
            pending.future.set_result(decision)

    async def ask_budget(self, request: BudgetReached) -> Decision:
        """Ask a person whether the run goes on past its budget; wait for the decision."""
        return await self._wait(request.decision_id, request, request.run_id)

    async def ask(
        self, run_id: str, call: ToolCall, tool: Tool, note: str | None = None
    ) -> Decision:
        """Ask a person about ``call`` and wait for the decision."""
        request = ApprovalRequested(
            run_id=run_id,
            tool_call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            read_only=tool.read_only,
            preview=_preview(tool, call.arguments),
            note=note,
        )
        decision = await self._wait(call.id, request, run_id)
        self.grant(call.name, decision)
        return decision

    async def _wait(
        self, key: str, request: ApprovalRequested | BudgetReached, run_id: str
    ) -> Decision:
        pending = _Pending(request, asyncio.get_running_loop().create_future())
        first = not any(not p.decided for p in self._pending.values())
        self._pending[key] = pending
        if first:
            self._on_waiting(run_id, True)
        self._emit(request)
        decision: Decision | None = None
        try:
            decision = await pending.future
        finally:
            self._pending.pop(key, None)
            self._closed[key] = (
                "is no longer pending: its run ended"
                if decision is None
                else "was already approved"
                if decision.approved
                else "was already denied"
            )
            if not any(not p.decided for p in self._pending.values()):
                self._on_waiting(run_id, False)
        return decision

    def grant(self, name: str, decision: Decision) -> None:
        """Make an "always" decision a grant of the session's policy."""
        policy = self.policy
        if decision.scope == "tool":
            if decision.approved:
                policy.grant_tool(name)
            else:
                policy.block_tool(name)
        elif decision.approved and decision.scope == "rule" and decision.rule is not None:
            policy.add_rule(decision.rule)
        if decision.scope != "call":
            self._settle_covered()

    def _settle_covered(self) -> None:
        """After an "always" decision, settle the other pending calls it now covers."""
        for pending in list(self._pending.values()):
            if pending.decided or not isinstance(pending.request, ApprovalRequested):
                continue
            tool = self._tools.get(pending.request.name)
            if tool is None:
                continue
            verdict = self.policy.decide(tool, pending.request.arguments)
            if verdict.verdict != "ask":
                pending.decided = True
                pending.future.set_result(
                    Decision(
                        pending.request.tool_call_id,
                        verdict.verdict == "allow",
                        reason=verdict.reason,
                        decided_by="policy",
                    )
                )


def _preview(tool: Tool, arguments: dict[str, Any]) -> str | None:
    """The tool's own description of what a call would change (optional ``preview``)."""
    preview = getattr(tool, "preview", None)
    if preview is None:
        return None
    try:
        text = preview(arguments)
    except Exception as exc:
        return f"(no preview: {type(exc).__name__}: {exc})"
    return redact(sanitize(str(text))) if text else None
