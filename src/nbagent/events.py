"""Typed events: everything a run does, as frozen dataclasses tagged by ``kind``.

The same events drive every consumer (the live widget, the session log, the static
transcript, the tests). ``Event`` is one discriminated union over all of them and
:data:`EVENT_ADAPTER` is the one place that turns them into JSON and back.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Discriminator, TypeAdapter

RunStatus = Literal["completed", "cancelled", "failed", "max_turns", "budget_exceeded"]
"""How a run ended."""

ToolStatus = Literal["ok", "error", "denied", "cancelled"]
"""How one tool call ended."""

ApprovalScope = Literal["call", "tool", "rule"]
"""What an approval decision covers: this call, this tool for the session, or a rule."""

SessionStateName = Literal["idle", "running", "awaiting_approval", "cancelling", "closed"]


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One tool call proposed by the model, complete and parsed."""

    id: str
    """The provider's ``tool_call_id`` (or one we made up when the provider sent none)."""
    name: str
    """The tool name the model asked for (it may not exist)."""
    arguments: dict[str, Any]
    """The parsed arguments; empty when they could not be parsed."""
    arguments_json: str
    """The arguments exactly as the model sent them."""
    error: str | None = None
    """Why the call cannot run as sent (bad JSON, unknown tool), or ``None``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    """A user turn started running."""

    run_id: str
    """Identifies the run; every event of the run carries it."""
    session_id: str
    """The session the run belongs to."""
    prompt: str
    """The user's message."""
    model: str
    """The model name the run uses."""
    tag: str | None = None
    """An opaque label from the caller (the notebook passes the cell id)."""
    resumed: bool = False
    """True when the run continues an interrupted conversation (``prompt`` is empty)."""
    tools: tuple[str, ...] = ()
    """The names of the tools the run can call (a restored session finds them again)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The model parameters of the run's requests (the session's, then the turn's own):
    part of what produced its answers, and of their replay fingerprint."""
    at: float = field(default_factory=_now)
    """Wall-clock time (seconds since the epoch)."""
    kind: Literal["run_started"] = "run_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class SteerAdded:
    """A steering message was added to the conversation before a model request."""

    run_id: str
    text: str
    """The steering message, added as a user message."""
    kind: Literal["steer_added"] = "steer_added"


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """A piece of the answer text as it streams in."""

    run_id: str
    text: str
    """The new text (append it to what came before)."""
    kind: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningDelta:
    """A piece of the model's reasoning, for providers that stream it."""

    run_id: str
    text: str
    """The new reasoning text."""
    kind: Literal["reasoning_delta"] = "reasoning_delta"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedDecision:
    """How a tool call of a recorded response was decided when it was recorded."""

    name: str
    """The tool's name."""
    arguments: str
    """A digest of the call's arguments (``nbagent.replay.arguments_digest``)."""
    approved: bool
    scope: ApprovalScope = "call"
    """``tool`` / ``rule``: the person chose "always allow" (or "always deny")."""
    decided_by: Literal["user", "policy"] = "user"
    reason: str | None = None
    rule: dict[str, Any] | None = None
    """The allow rule of a ``rule`` decision: ``{"tool", "arguments"}``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a model response came from; a recording model streams it with the response."""

    source: Literal["live", "replayed"]
    """``live``: the provider answered (and the response was recorded); ``replayed``: it
    was served from a recording."""
    fingerprint: str
    """The request fingerprint the response is recorded under."""
    trusted: bool = True
    """False for a response replayed from a recording this machine has no trust for: its
    side-effecting tool calls need a person (see ``ApprovalPolicy.decide``)."""
    cost_usd: float | None = None
    """The cost recorded with the response (a replay shows the recorded figure)."""
    decisions: tuple[RecordedDecision | None, ...] = ()
    """For a replayed response: how each of its tool calls was decided when it was
    recorded, by position (None: not recorded)."""
    source_notebook: str | None = None
    """For a replayed response: the notebook file its recording was read from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponded:
    """One model response is complete (text and tool calls assembled)."""

    run_id: str
    turn: int
    """1 for the first model request of the run, 2 for the next, …"""
    text: str
    """The full text of this response."""
    reasoning: str
    """The full reasoning text, empty when the provider sends none."""
    tool_calls: tuple[ToolCall, ...]
    """The tool calls of this response, in the order the model gave them."""
    finish_reason: str | None
    """The provider's finish reason (``stop``, ``tool_calls``, ``length``, …); None for a
    response that broke off (its partial text is kept in the conversation)."""
    message: dict[str, Any]
    """The assistant message as it enters the conversation (OpenAI format)."""
    provenance: Provenance | None = None
    """Where the response came from, when the model records or replays (else None)."""
    kind: Literal["model_responded"] = "model_responded"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallProposed:
    """The model proposed a tool call (complete, arguments parsed)."""

    run_id: str
    call: ToolCall
    """The call; ``call.error`` says why it cannot run, if so."""
    kind: Literal["tool_call_proposed"] = "tool_call_proposed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested:
    """A tool call waits for a human decision (``Session.approve`` / ``Session.deny``)."""

    run_id: str
    tool_call_id: str
    name: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The parsed arguments the tool would run with."""
    read_only: bool
    """Whether the tool declares that it has no side effects."""
    preview: str | None = None
    """What the call would change, when the tool can tell (a diff for ``write_file``)."""
    note: str | None = None
    """Why a person is asked although the policy would allow (an untrusted replay)."""
    kind: Literal["approval_requested"] = "approval_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalDecided:
    """A tool call was approved or denied, by a person or by policy."""

    run_id: str
    tool_call_id: str
    name: str
    approved: bool
    scope: ApprovalScope
    """What the decision covers beyond this call (``call`` = only this one)."""
    decided_by: Literal["user", "policy"]
    reason: str | None = None
    """Why, when denied (shown to the model) or when decided by policy."""
    recorded: bool = False
    """The decision was replayed from a trusted recording: the person who recorded the
    call made it (the transcript reads the same whoever replays it)."""
    rule: dict[str, Any] | None = None
    """The allow rule of a ``rule`` decision: ``{"tool", "arguments"}``."""
    kind: Literal["approval_decided"] = "approval_decided"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetReached:
    """The run reached its budget and waits for a person: continue with another step of
    the same size, or stop (``Session.decide_budget``). Only runs that can ask (a live
    view) wait; others stop with status ``budget_exceeded``."""

    run_id: str
    decision_id: str
    """The id a decision on this pause names (``Session.decide_budget``)."""
    reason: str
    """What was used, over which limit (a sentence)."""
    max_cost_usd: float | None
    """The cost limit that was reached (None: no cost limit)."""
    max_tokens: int | None
    """The token limit that was reached (None: no token limit)."""
    step_cost_usd: float | None
    """How much more cost "continue" allows (the run's first budget)."""
    step_tokens: int | None
    """How many more tokens "continue" allows."""
    kind: Literal["budget_reached"] = "budget_reached"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetDecided:
    """A person decided on a reached budget: ``go_on`` continues the run with the budget
    raised by one step, else the run stops (status ``budget_exceeded``)."""

    run_id: str
    decision_id: str
    go_on: bool
    max_cost_usd: float | None
    """The cost limit from now on (raised when ``go_on``)."""
    max_tokens: int | None
    """The token limit from now on (raised when ``go_on``)."""
    kind: Literal["budget_decided"] = "budget_decided"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolStarted:
    """An approved tool call started running."""

    run_id: str
    tool_call_id: str
    name: str
    kind: Literal["tool_started"] = "tool_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolFinished:
    """A tool call ended; ``result`` is the text the model sees."""

    run_id: str
    tool_call_id: str
    name: str
    status: ToolStatus
    result: str
    """What the model receives (sanitised, truncated if too long)."""
    duration_s: float
    """Time the tool ran, 0 when it did not run."""
    truncated: bool = False
    """Whether ``result`` was cut to the size limit."""
    display: tuple[dict[str, Any], ...] = ()
    """MIME bundles the tool showed (tables, figures) for the notebook view; the model
    gets ``result`` only."""
    kind: Literal["tool_finished"] = "tool_finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallsRefused:
    """A response proposed more tool calls than a run takes from one response
    (``max_calls_per_response``): none of them was asked about or ran, and each got
    ``result`` as its result (the model reads it; the conversation stays valid)."""

    run_id: str
    tool_call_ids: tuple[str, ...]
    """Every call of the response, in order."""
    limit: int
    """The most calls one response may propose."""
    result: str
    """The error each call got, which the model reads."""
    kind: Literal["tool_calls_refused"] = "tool_calls_refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token use and cost of one model request."""

    run_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    """The cost from litellm's price map; 0 when unknown."""
    cost_known: bool
    """False when the model is not in the price map (``cost_usd`` is then 0)."""
    estimated: bool = False
    """True when the provider reported no usage for this request (it was stopped, broke
    off, or never sends usage): the counts are estimated from the characters streamed
    (about four per token), and a renderer shows them with "~"."""
    kind: Literal["usage"] = "usage"


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrying:
    """A model request failed before any output and will be sent again."""

    run_id: str
    attempt: int
    """The attempt that failed (1 = the first)."""
    delay_s: float
    """How long the loop waits before the next attempt."""
    error: str
    kind: Literal["retrying"] = "retrying"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorOccurred:
    """Something went wrong; the message says what and what to do."""

    run_id: str | None
    error_type: str
    """The exception class name (``ProviderAuthError``, ``StreamBrokenError``, …)."""
    message: str
    kind: Literal["error"] = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """The run ended. This is always the last event of a run."""

    run_id: str
    status: RunStatus
    text: str
    """The final answer text (the partial text when the run did not complete)."""
    error: str | None = None
    """Why the run did not complete, for every status but ``completed``."""
    turns: int = 0
    """How many model requests the run made."""
    at: float = field(default_factory=_now)
    kind: Literal["run_finished"] = "run_finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    """The session moved to another lifecycle state."""

    state: SessionStateName
    previous: SessionStateName
    run_id: str | None = None
    kind: Literal["state_changed"] = "state_changed"


Event = Annotated[
    RunStarted
    | SteerAdded
    | TextDelta
    | ReasoningDelta
    | ModelResponded
    | ToolCallProposed
    | ApprovalRequested
    | ApprovalDecided
    | BudgetReached
    | BudgetDecided
    | ToolStarted
    | ToolFinished
    | ToolCallsRefused
    | Usage
    | Retrying
    | ErrorOccurred
    | RunFinished
    | StateChanged,
    Discriminator("kind"),
]
"""Any event of a run or of the session lifecycle."""


@functools.cache
def event_adapter() -> TypeAdapter[Event]:
    """The one TypeAdapter of the event union (built on first use: ~30 ms, kept off the
    import path so that ``%load_ext nbagent`` stays fast)."""
    return TypeAdapter(Event)


def __getattr__(name: str) -> Any:
    if name == "EVENT_ADAPTER":  # the adapter under its documented name, built lazily
        return event_adapter()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def event_to_json(event: Event) -> str:
    """Serialise one event to a JSON string."""
    return event_adapter().dump_json(event).decode()


def event_from_json(data: str | bytes) -> Event:
    """Parse one event from JSON written by :func:`event_to_json`."""
    return event_adapter().validate_json(data)
