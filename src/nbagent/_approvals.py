"""The approval gate: tool calls that wait for a person, and the decisions that reach them.

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
from .events import ApprovalRequested, ApprovalScope, Event, ToolCall
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
    request: ApprovalRequested
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
        return [p.request for p in self._pending.values() if not p.decided]

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
        pending.decided = True

    def deliver(self, decision: Decision) -> None:
        """Hand a checked decision to the call that waits for it."""
        pending = self._pending.get(decision.tool_call_id)
        if pending is not None and not pending.future.done():
            pending.future.set_result(decision)

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
        pending = _Pending(request, asyncio.get_running_loop().create_future())
        first = not self.waiting
        self._pending[call.id] = pending
        if first:
            self._on_waiting(run_id, True)
        self._emit(request)
        decision: Decision | None = None
        try:
            decision = await pending.future
        finally:
            self._pending.pop(call.id, None)
            self._closed[call.id] = (
                "is no longer pending: its run ended"
                if decision is None
                else "was already approved"
                if decision.approved
                else "was already denied"
            )
            if not self.waiting:
                self._on_waiting(run_id, False)
        self.grant(call.name, decision)
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
            if pending.decided:
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
